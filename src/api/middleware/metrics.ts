/**
 * HTTP metrics for the API app (app.ts): `GET /metrics` (Prometheus text, no auth, API.md
 * "Health and metrics") and the request-duration middleware behind
 * mailserver_http_request_duration_seconds.
 *
 * The route label is the Express route pattern that answered (`/api/users/:id`), never the raw
 * URL: ids would make one series per request. A request no route answered is `unmatched`
 * (404s, rate-limited requests refused before routing), except successful GETs of the webmail's
 * files, which are `static`. /metrics itself is never timed, so scraping does not move the
 * numbers it reads, whatever the method.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Metrics } from '../../core/metrics.js';

export const METRICS_PATH = '/metrics';

export function metricsHandler(metrics: Metrics): RequestHandler {
  return async (_req: Request, res: Response) => {
    const body = await metrics.render();
    res.setHeader('Cache-Control', 'no-store');
    res.type(metrics.contentType).send(body);
  };
}

export function timeRequests(metrics: Metrics): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    if (req.path === METRICS_PATH) return next();
    const started = process.hrtime.bigint();
    // 'close' comes for finished and aborted responses alike (an aborted event stream included)
    res.once('close', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.httpRequest(req.method, routeLabel(req, res), res.statusCode, seconds);
    });
    next();
  };
}

function routeLabel(req: Request, res: Response): string {
  const route: unknown = req.route;
  const pattern = route && typeof route === 'object' && 'path' in route ? route.path : undefined;
  if (typeof pattern === 'string') return `${req.baseUrl}${pattern}`;
  const page = (req.method === 'GET' || req.method === 'HEAD') && res.statusCode < 400 && !req.originalUrl.startsWith('/api/');
  return page ? 'static' : 'unmatched';
}
