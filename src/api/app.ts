/**
 * The HTTP app on API_PORT (Express 5): security headers (helmet), CORS from CORS_ORIGINS, a
 * JSON body limit, request ids and pino-http logs, the REST routes of API.md, the OpenAPI
 * document and docs page, health endpoints, Prometheus /metrics, per-caller rate limits, and
 * one error handler that turns every error into `{error, code, details?}` JSON.
 */
import { randomUUID } from 'node:crypto';
import cors from 'cors';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import helmet from 'helmet';
import { sql } from 'kysely';
import { pinoHttp } from 'pino-http';
import type { BlobStore } from '../blobs/blob-store.js';
import { AppError, describeError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Db } from '../db/database.js';
import type { AccountsService } from '../services/accounts.service.js';
import type { AuditService } from '../services/audit.service.js';
import type { AuthService } from '../services/auth.service.js';
import type { DomainsService } from '../services/domains.service.js';
import type { Limiter } from '../services/rate-limit.service.js';
import type { TokenService } from '../services/token.service.js';
import type { UsersService } from '../services/users.service.js';
import type { MailsService } from '../services/mails.service.js';
import type { DeliveryEventsService } from '../services/delivery-events.service.js';
import type { SmtpSettingsService } from '../services/smtp-settings.service.js';
import type { ProvidersService } from '../services/providers.service.js';
import type { WebmailService } from '../services/webmail.service.js';
import { bearerClaims, createAuthenticate } from './middleware/authenticate.js';
import { createErrorHandler } from './middleware/errors.js';
import { METRICS_PATH, metricsHandler, timeRequests } from './middleware/metrics.js';
import type { Metrics } from '../core/metrics.js';
import { buildOpenApi, docsPage, DOCS_CSS, DOCS_JS } from './openapi.js';
import { RouteRegistry, type RouteDeps } from './route.js';
import { registerAuditRoutes } from './routes/audit.routes.js';
import { registerAuthRoutes } from './routes/auth.routes.js';
import { registerDomainRoutes } from './routes/domains.routes.js';
import { registerUserRoutes } from './routes/users.routes.js';
import { registerMailRoutes } from './routes/mails.routes.js';
import { registerWebhookRoutes, WEBHOOKS_PATH } from './routes/webhooks.routes.js';
import { registerSmtpSettingsRoutes } from './routes/smtp-settings.routes.js';
import { registerProviderRoutes } from './routes/providers.routes.js';
import { registerWebmailRoutes } from './routes/webmail.routes.js';
import { serveWebmail } from './webmail-static.js';

export interface ApiDeps {
  db: Db;
  blobs: BlobStore;
  logger: Logger;
  tokens: TokenService;
  auth: AuthService;
  audit: AuditService;
  accounts: AccountsService;
  domains: DomainsService;
  users: UsersService;
  mails: MailsService;
  deliveryEvents: DeliveryEventsService;
  smtpSettings: SmtpSettingsService;
  providers: ProvidersService;
  webmail: WebmailService;
  apiLimiter: Limiter;
  corsOrigins: string[];
  bodyLimitBytes: number;
  trustProxy: string;
  version: string;
  /** The built SPA (dist/webmail); undefined: the default next to the compiled server. */
  webmailDir?: string;
  /** Served at /metrics; every request but /metrics is timed into it. */
  metrics: Metrics;
}

export interface ApiApp {
  app: Express;
  registry: RouteRegistry;
}

export function createApiApp(deps: ApiDeps): ApiApp {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', trustProxyValue(deps.trustProxy));
  app.use(
    helmet({
      strictTransportSecurity: { maxAge: 31536000, includeSubDomains: true, preload: false },
      frameguard: { action: 'deny' },
      contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'self'"] } },
      referrerPolicy: { policy: 'strict-origin-when-cross-origin' },
    }),
  );
  app.use((_req: Request, res: Response, next: NextFunction) => {
    res.setHeader('Permissions-Policy', 'geolocation=(), microphone=(), camera=()');
    next();
  });
  // before the request log and the timing: a scrape every few seconds logs and counts nothing
  app.get(METRICS_PATH, metricsHandler(deps.metrics));
  app.use(timeRequests(deps.metrics));
  app.use(
    pinoHttp({
      logger: deps.logger,
      genReqId: (req, res) => {
        const given = req.headers['x-request-id'];
        const id = typeof given === 'string' && /^[A-Za-z0-9._-]{1,100}$/.test(given) ? given : randomUUID();
        res.setHeader('X-Request-Id', id);
        return id;
      },
      customAttributeKeys: { reqId: 'req_id' },
      serializers: { req: (req: { method: string; url: string }) => ({ method: req.method, url: req.url.split('?')[0] }) },
      autoLogging: { ignore: (req) => req.url === '/healthz' || req.url === '/readyz' },
    }),
  );
  app.use(
    cors({
      origin: (origin, cb) => cb(null, origin !== undefined && deps.corsOrigins.includes(origin)),
      credentials: true,
      exposedHeaders: ['Retry-After', 'X-Request-Id'],
    }),
  );
  // delivery webhooks are signed over the exact bytes: they get them unparsed, whatever the type
  app.use(WEBHOOKS_PATH, express.raw({ type: () => true, limit: deps.bodyLimitBytes }));
  app.use(express.json({ limit: deps.bodyLimitBytes }));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const [dbCheck, blobCheck] = await Promise.allSettled([sql`SELECT 1`.execute(deps.db), deps.blobs.check()]);
    const checks = {
      database: dbCheck.status === 'fulfilled' ? 'ok' : `error: ${describeError(dbCheck.reason)}`,
      blob_store: blobCheck.status === 'fulfilled' ? 'ok' : `error: ${describeError(blobCheck.reason)}`,
    };
    const ready = dbCheck.status === 'fulfilled' && blobCheck.status === 'fulfilled';
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not_ready', checks });
  });

  // per-caller rate limit on the API: by user when a valid token is sent, else by IP
  const authenticate = createAuthenticate(deps.tokens, deps.db);
  app.use('/api', async (req: Request, _res: Response, next: NextFunction) => {
    let key = `ip:${req.ip ?? ''}`;
    if (req.headers.authorization) {
      try {
        key = `user:${bearerClaims(deps.tokens, req).userId}`;
      } catch {
        // an invalid token is refused by the route itself; count it against the IP
      }
    }
    await deps.apiLimiter.consume(key, 'too many requests; slow down');
    next();
  });

  const registry = new RouteRegistry();
  const routeDeps: RouteDeps = { app, registry, authenticate };
  registerAuthRoutes(routeDeps, deps.auth);
  registerAuditRoutes(routeDeps, deps.audit);
  // resource routers (one line each)
  registerDomainRoutes(routeDeps, deps.domains);
  registerUserRoutes(routeDeps, deps.users);
  registerMailRoutes(routeDeps, deps.mails);
  registerWebhookRoutes(routeDeps, deps.deliveryEvents);
  registerSmtpSettingsRoutes(routeDeps, deps.smtpSettings);
  registerProviderRoutes(routeDeps, deps.providers);
  registerWebmailRoutes(routeDeps, deps.webmail, deps.mails);

  app.get('/api/openapi.json', (_req, res) => {
    res.json(buildOpenApi(registry, { version: deps.version }));
  });
  app.get('/api/docs', (_req, res) => {
    res.type('html').send(docsPage());
  });
  app.get('/api/docs/docs.css', (_req, res) => {
    res.type('css').send(DOCS_CSS);
  });
  app.get('/api/docs/docs.js', (_req, res) => {
    res.type('js').send(DOCS_JS);
  });

  serveWebmail(app, deps.webmailDir);

  app.use((req: Request) => {
    throw new AppError('not_found', `no route for ${req.method} ${req.path}`);
  });
  app.use(createErrorHandler(deps.logger));
  return { app, registry };
}

function trustProxyValue(v: string): boolean | number | string {
  if (v === 'true') return true;
  if (v === 'false') return false;
  if (/^\d+$/.test(v)) return Number(v);
  return v;
}
