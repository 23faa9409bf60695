/**
 * The metrics listener on METRICS_PORT: a bare node:http server that answers `GET /metrics`
 * (and HEAD) with the Prometheus text of one Metrics object, for processes that run no API (the
 * PM2 split: an SMTP-only or worker-only process) and so have no API port to scrape. Bound to
 * BIND_HOST like every listener. Anything else is 404, another method on /metrics 405: nothing
 * here takes input or changes state. Started and stopped by server.ts.
 */
import http from 'node:http';
import { describeError } from './errors.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

export interface RunningMetricsServer {
  port: number;
  stop(): Promise<void>;
}

export async function startMetricsServer(metrics: Metrics, host: string, port: number, logger: Logger): Promise<RunningMetricsServer> {
  const server = http.createServer((req, res) => void answer(metrics, req, res, logger));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot listen on ${host}:${port}: ${err.message}`, { cause: err })));
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as { port: number }).port;
  logger.info({ host, port: bound }, `metrics listening on http://${host}:${bound}/metrics`);
  return {
    port: bound,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function answer(metrics: Metrics, req: http.IncomingMessage, res: http.ServerResponse, logger: Logger): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (path !== '/metrics') return plain(res, 404, 'not found: metrics are at /metrics\n');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    return plain(res, 405, 'method not allowed: use GET\n');
  }
  try {
    const body = await metrics.render();
    res.writeHead(200, { 'Content-Type': metrics.contentType, 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
  } catch (err) {
    logger.error({ err: describeError(err) }, 'metrics: could not render');
    plain(res, 500, 'metrics unavailable\n');
  }
}

function plain(res: http.ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end(text);
}
