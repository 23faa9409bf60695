/**
 * createServer(): the composition root. Builds every object from a Config (nothing else
 * constructs services) and starts the roles in ROLES: `api` (HTTP), `smtp` (listeners),
 * `worker` (background jobs: blob collection, domain DNS checks through pg-boss; delivery
 * later). stop() undoes it in reverse: listeners first, so transactions in flight finish before
 * the database goes away.
 */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import path from 'node:path';
import type { Express } from 'express';
import type pg from 'pg';
import { PgBoss } from 'pg-boss';
import { createApiApp } from './api/app.js';
import { AzureBlobStore } from './blobs/azure.blob-store.js';
import type { BlobStore } from './blobs/blob-store.js';
import { LocalBlobStore } from './blobs/local.blob-store.js';
import type { Config } from './config/load.js';
import { describeError } from './core/errors.js';
import { JOBS_POOL_SIZE, JOBS_STOP_TIMEOUT_MS } from './core/limits.js';
import type { Logger } from './core/logger.js';
import { checkDurability, createDb, migrate, type Db } from './db/database.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './db/embedded-postgres.js';
import { AccountsService } from './services/accounts.service.js';
import { AuditService } from './services/audit.service.js';
import { AuthService } from './services/auth.service.js';
import { BlobCollector } from './services/blob-gc.service.js';
import { BlobReader } from './services/blob-reader.service.js';
import { QuotaFolder } from './services/quota.service.js';
import { createDnsResolver } from './services/dns-resolver.js';
import { createDomainQueues, DomainVerifier } from './services/domain-verification.service.js';
import { DomainsService } from './services/domains.service.js';
import { InboundAuthService } from './services/inbound-auth.service.js';
import { IngestService } from './services/ingest.service.js';
import { MessagesService } from './services/messages.service.js';
import { RecipientService } from './services/recipient.service.js';
import { createLimiter } from './services/rate-limit.service.js';
import { SecretBox } from './services/secret-box.js';
import { TokenService } from './services/token.service.js';
import { UsersService } from './services/users.service.js';
import { loadTlsMaterial } from './services/tls-material.service.js';
import { startMxServer, type RunningSmtpServer } from './smtp/mx.server.js';

export interface Services {
  db: Db;
  pool: pg.Pool;
  /** The database actually used (DATABASE_URL or the embedded server's): pg-boss opens its own pool on it. */
  databaseUrl: string;
  blobs: BlobStore;
  /** Reads blob bytes by key, from the database row or the blob store: the only way to read them. */
  blobReader: BlobReader;
  accounts: AccountsService;
  messages: MessagesService;
  ingest: IngestService;
  recipients: RecipientService;
  collector: BlobCollector;
  quota: QuotaFolder;
  /** Domain DNS checks (worker role, through pg-boss). */
  domainVerifier: DomainVerifier;
}

export interface RunningServer {
  services: Services;
  /** The HTTP app, when the api role runs (tests list its routes). */
  api?: Express;
  /** Ports actually bound, by listener. */
  ports: { api?: number; smtp?: number };
  stop(): Promise<void>;
}

/**
 * Opens the database and the blob store and builds the services, without starting listeners.
 * `shared` (admin CLI): use the embedded PostgreSQL of a running server instead of refusing.
 */
export async function openServices(
  config: Config,
  logger: Logger,
  dbMode: 'own' | 'shared' = 'own',
): Promise<{ services: Services; close(): Promise<void> }> {
  let embedded: EmbeddedDatabase | null = null;
  let url = config.DATABASE_URL;
  if (!url) {
    embedded = await startEmbeddedPostgres(config.DATA_DIR, config.EMBEDDED_PG_PORT, logger, dbMode);
    url = embedded.url;
  }
  const { db, pool } = createDb({ url, poolSize: config.DATABASE_POOL_SIZE, logger });
  try {
    await checkDurability(db);
    await migrate(db, logger);
    const blobs: BlobStore =
      config.STORAGE_DRIVER === 'azure'
        ? await new AzureBlobStore(config.AZURE_STORAGE_CONNECTION_STRING ?? '', config.AZURE_STORAGE_CONTAINER).init()
        : await new LocalBlobStore(path.join(config.DATA_DIR, 'blobs')).init();
    const resolver = createDnsResolver({ servers: config.DNS_SERVERS, timeoutMs: config.DNS_TIMEOUT_MS });
    const auth = new InboundAuthService(resolver, config.MAIL_HOSTNAME);
    const blobReader = new BlobReader(db, blobs);
    const services: Services = {
      db,
      pool,
      databaseUrl: url,
      blobs,
      blobReader,
      accounts: new AccountsService(db, new SecretBox(config.SECRETS_KEY), config.DEFAULT_QUOTA_MB),
      messages: new MessagesService(db, blobReader),
      ingest: new IngestService(db, blobs, auth, config.MAIL_HOSTNAME, config.BLOB_INLINE_MAX_BYTES, logger),
      recipients: new RecipientService(db),
      collector: new BlobCollector(db, blobs, config.BLOB_GC_GRACE_MS, logger),
      quota: new QuotaFolder(db, logger),
      domainVerifier: new DomainVerifier(db, resolver, new AuditService(db), config.MAIL_HOSTNAME, logger),
    };
    return {
      services,
      async close() {
        await blobs.close();
        await db.destroy();
        await embedded?.stop();
      },
    };
  } catch (err) {
    await db.destroy().catch(() => undefined);
    await embedded?.stop();
    throw err;
  }
}

export async function createServer(config: Config, logger: Logger): Promise<RunningServer> {
  const opened = await openServices(config, logger);
  const { services } = opened;
  const stops: (() => Promise<void>)[] = [];
  const ports: RunningServer['ports'] = {};
  let api: Express | undefined;
  try {
    if (config.ROLES.includes('smtp')) {
      const tls = await loadTlsMaterial({
        certFile: config.TLS_CERT_FILE,
        keyFile: config.TLS_KEY_FILE,
        dataDir: config.DATA_DIR,
        hostname: config.MAIL_HOSTNAME,
        logger,
      });
      const mx: RunningSmtpServer = await startMxServer(
        {
          host: config.BIND_HOST,
          port: config.SMTP_PORT,
          hostname: config.MAIL_HOSTNAME,
          maxMessageBytes: config.MAX_MESSAGE_SIZE,
          maxRecipients: config.MAX_RECIPIENTS,
          maxConnections: config.SMTP_MAX_CONNECTIONS,
          maxConnectionsPerIp: config.SMTP_MAX_CONNECTIONS_PER_IP,
          idleTimeoutMs: config.SMTP_IDLE_TIMEOUT_MS,
          sessionMaxMs: config.SMTP_SESSION_MAX_MS,
          shutdownGraceMs: config.SMTP_SHUTDOWN_GRACE_MS,
          maxReceivedHeaders: config.SMTP_MAX_RECEIVED_HEADERS,
          verifyInbound: config.INBOUND_AUTH_ENABLED,
          tls,
        },
        { ingest: services.ingest, recipients: services.recipients, logger },
      );
      ports.smtp = mx.port;
      stops.push(() => mx.stop());
    }
    // the job queue: the api sends to it, the worker works it (any process may do either)
    const jobs = config.ROLES.includes('api') || config.ROLES.includes('worker') ? await startJobQueue(config, services, logger) : null;
    if (jobs) stops.push(() => jobs.stop({ graceful: true, timeout: JOBS_STOP_TIMEOUT_MS }));
    if (config.ROLES.includes('api')) {
      api = buildApi(config, services, logger, jobs!);
      const http = await listen(api, config.BIND_HOST, config.API_PORT);
      ports.api = (http.address() as { port: number }).port;
      logger.info({ host: config.BIND_HOST, port: ports.api }, `API listening on http://${config.BIND_HOST}:${ports.api}`);
      stops.push(() => closeHttp(http));
    }
    if (config.ROLES.includes('worker')) {
      services.collector.start(config.BLOB_GC_INTERVAL_MS);
      stops.push(() => services.collector.stop());
      services.quota.start();
      stops.push(() => services.quota.stop());
      await services.domainVerifier.startWorker(jobs!);
    }
  } catch (err) {
    await stopAll(stops, logger);
    await opened.close();
    throw err;
  }
  return {
    services,
    api,
    ports,
    async stop() {
      await stopAll(stops, logger);
      await opened.close();
    },
  };
}

function buildApi(config: Config, services: Services, logger: Logger, jobs: PgBoss): ReturnType<typeof createApiApp>['app'] {
  const lockout = { durationMs: config.LOGIN_LOCKOUT_MS, blockMs: config.LOGIN_LOCKOUT_MS };
  const accountLockout = createLimiter(services.pool, { prefix: 'login_acct', points: config.LOGIN_MAX_FAILURES, ...lockout });
  const ipLockout = createLimiter(services.pool, { prefix: 'login_ip', points: config.LOGIN_MAX_FAILURES_PER_IP, ...lockout });
  const signup = createLimiter(services.pool, { prefix: 'signup', points: config.SIGNUP_RATE_LIMIT_PER_HOUR, durationMs: 3600_000 });
  const apiLimiter = createLimiter(services.pool, { prefix: 'api', points: config.API_RATE_LIMIT_PER_MINUTE, durationMs: 60_000 });
  const tokens = new TokenService(services.db, config.JWT_SECRET);
  const audit = new AuditService(services.db);
  const auth = new AuthService(services.db, services.accounts, tokens, audit, { accountLockout, ipLockout, signup }, config.SIGNUP_ENABLED);
  return createApiApp({
    db: services.db,
    blobs: services.blobs,
    logger,
    tokens,
    auth,
    audit,
    accounts: services.accounts,
    domains: new DomainsService(services.db, services.accounts, new SecretBox(config.SECRETS_KEY), audit, jobs, config.MAIL_HOSTNAME),
    users: new UsersService(services.db, services.accounts, tokens, audit),
    apiLimiter,
    corsOrigins: config.CORS_ORIGINS,
    bodyLimitBytes: config.API_BODY_LIMIT_BYTES,
    trustProxy: config.TRUST_PROXY,
    version: PACKAGE_VERSION,
  }).app;
}

/** pg-boss on the same database with its own small pool; maintenance and cron only where the worker runs. */
async function startJobQueue(config: Config, services: Services, logger: Logger): Promise<PgBoss> {
  const worker = config.ROLES.includes('worker');
  const boss = new PgBoss({ connectionString: services.databaseUrl, max: JOBS_POOL_SIZE, application_name: 'mailserver-jobs', supervise: worker, schedule: worker });
  boss.on('error', (err) => logger.error({ event: 'jobs.error', err: describeError(err) }, 'job queue error'));
  try {
    await boss.start();
    await createDomainQueues(boss);
  } catch (err) {
    await boss.stop({ graceful: false }).catch(() => undefined);
    throw err;
  }
  return boss;
}

const PACKAGE_VERSION = (JSON.parse(readFileSync(path.join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;

async function stopAll(stops: (() => Promise<void>)[], logger: Logger): Promise<void> {
  for (const stop of stops.reverse()) {
    await stop().catch((err: unknown) => logger.error({ err: describeError(err) }, 'error while stopping'));
  }
}

function listen(app: ReturnType<typeof createApiApp>['app'], host: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host);
    server.once('listening', () => resolve(server));
    server.once('error', (err) => reject(new Error(`cannot listen on ${host}:${port}: ${err.message}`, { cause: err })));
  });
}

function closeHttp(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}
