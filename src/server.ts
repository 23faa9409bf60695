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
import type { BlobStore } from './blobs/blob-store.js';
import { openBlobStore } from './blobs/open-blob-store.js';
import type { Config } from './config/load.js';
import { describeError } from './core/errors.js';
import { JOBS_POOL_SIZE, JOBS_STOP_TIMEOUT_MS } from './core/limits.js';
import type { Logger } from './core/logger.js';
import { Metrics } from './core/metrics.js';
import { startMetricsServer } from './core/metrics-server.js';
import { checkDurability, createDb, migrate, type Db } from './db/database.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './db/embedded-postgres.js';
import { AccountsService } from './services/accounts.service.js';
import { AuditService } from './services/audit.service.js';
import { AuthService } from './services/auth.service.js';
import { BlobCollector } from './services/blob-gc.service.js';
import { BlobReader } from './services/blob-reader.service.js';
import { QuotaFolder } from './services/quota.service.js';
import { createDnsResolver, type DnsResolve } from './services/dns-resolver.js';
import { createDomainQueues, DomainVerifier } from './services/domain-verification.service.js';
import { DomainsService } from './services/domains.service.js';
import { InboundAuthService } from './services/inbound-auth.service.js';
import { IngestService } from './services/ingest.service.js';
import { MessagesService } from './services/messages.service.js';
import { RecipientService } from './services/recipient.service.js';
import { createLimiter } from './services/rate-limit.service.js';
import { SecretBox } from './services/secret-box.js';
import { SmtpSettingsService } from './services/smtp-settings.service.js';
import { ProvidersService } from './services/providers.service.js';
import { TokenService } from './services/token.service.js';
import { UsersService } from './services/users.service.js';
import { MailsService } from './services/mails.service.js';
import { MailEvents } from './services/mail-events.js';
import { WebmailService } from './services/webmail.service.js';
import { DeliveryEventsService } from './services/delivery-events.service.js';
import { MailgunWebhook } from './delivery/webhooks/mailgun.js';
import { SendgridWebhook } from './delivery/webhooks/sendgrid.js';
import { SesWebhook } from './delivery/webhooks/ses.js';
import { SnsVerifier } from './delivery/webhooks/sns.js';
import { CertificateWatcher, loadTlsMaterial } from './services/tls-material.service.js';
import { startSmtpServer, type ListenerKind, type RunningSmtpServer } from './smtp/smtp.server.js';
import { SubmissionService } from './services/submission.service.js';
import { DkimSigner } from './delivery/dkim-signer.js';
import { OutboundQueue } from './delivery/queue.js';
import { RoutePlanner } from './delivery/routes.js';
import { createMxTransport } from './delivery/transports/mx.transport.js';
import { createSmtpTransport, parseRelayUrl } from './delivery/transports/smtp.transport.js';

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
  /** The one send path (SMTP submission, API, webmail). */
  submission: SubmissionService;
  /** Outbound delivery (started by the worker role). */
  queue: OutboundQueue;
  audit: AuditService;
  /** Per-user SMTP relays: the API manages them, the delivery queue sends through them. */
  smtpSettings: SmtpSettingsService;
  /** Tenants' ESP providers: the API manages them, the delivery queue sends through them. */
  providers: ProvidersService;
  /** This server's Prometheus metrics (its own registry): served at /metrics and METRICS_PORT. */
  metrics: Metrics;
}

export interface RunningServer {
  services: Services;
  /** The HTTP app, when the api role runs (tests list its routes). */
  api?: Express;
  /** Ports actually bound, by listener. */
  ports: { api?: number; smtp?: number; submission?: number; smtps?: number; metrics?: number };
  /**
   * Re-reads TLS_CERT_FILE/TLS_KEY_FILE (SIGHUP): the SMTP listeners present the new pair from the
   * next handshake on. 'unchanged' without the smtp role or without certificate files.
   */
  reloadTls(): 'reloaded' | 'unchanged' | 'failed';
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
    const blobs = await openBlobStore(config);
    const resolver = createDnsResolver({ servers: config.DNS_SERVERS, timeoutMs: config.DNS_TIMEOUT_MS });
    const auth = new InboundAuthService(resolver, config.MAIL_HOSTNAME);
    const blobReader = new BlobReader(db, blobs);
    const ingest = new IngestService(db, blobs, auth, config.MAIL_HOSTNAME, config.BLOB_INLINE_MAX_BYTES, logger);
    const sendLimits = {
      hour: createLimiter(pool, { prefix: 'send_hour', points: config.SEND_LIMIT_PER_HOUR, durationMs: 3600_000 }),
      day: createLimiter(pool, { prefix: 'send_day', points: config.SEND_LIMIT_PER_DAY, durationMs: 86_400_000 }),
    };
    const metrics = new Metrics(logger);
    const base: Omit<Services, 'queue'> = {
      metrics,
      db,
      pool,
      databaseUrl: url,
      blobs,
      blobReader,
      accounts: new AccountsService(db, new SecretBox(config.SECRETS_KEY), config.DEFAULT_QUOTA_MB),
      messages: new MessagesService(db, blobReader),
      ingest,
      recipients: new RecipientService(db),
      collector: new BlobCollector(db, blobs, config.BLOB_GC_GRACE_MS, logger),
      quota: new QuotaFolder(db, logger),
      domainVerifier: new DomainVerifier(db, resolver, new AuditService(db), config.MAIL_HOSTNAME, logger, metrics),
      submission: new SubmissionService(
        db,
        ingest,
        sendLimits,
        {
          hostname: config.MAIL_HOSTNAME,
          maxBytes: config.MAX_MESSAGE_SIZE,
          maxReceived: config.SMTP_MAX_RECEIVED_HEADERS,
          maxRecipients: config.MAX_RECIPIENTS,
          limitPerHour: config.SEND_LIMIT_PER_HOUR,
          limitPerDay: config.SEND_LIMIT_PER_DAY,
        },
        logger,
      ),
      audit: new AuditService(db),
      smtpSettings: buildSmtpSettings(config, db),
      providers: buildProviders(config, db, logger),
    };
    const services: Services = { ...base, queue: buildQueue(config, base, resolver, logger) };
    // gauges read at scrape time, in whatever process scrapes
    metrics.watchPool(pool);
    metrics.watchQueue(() => services.queue.pendingStats());
    return {
      services,
      async close() {
        services.smtpSettings.close();
        services.providers.close();
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
  let certificates: CertificateWatcher | null = null;
  const auth = buildAuth(config, services);
  try {
    services.metrics.collectDefaults();
    // processes without the api role (the PM2 split) are scraped here; with it, this is a second door
    if (config.METRICS_PORT !== undefined) {
      const metricsServer = await startMetricsServer(services.metrics, config.BIND_HOST, config.METRICS_PORT, logger);
      ports.metrics = metricsServer.port;
      stops.push(() => metricsServer.stop());
    }
    if (config.ROLES.includes('smtp')) {
      const tls = await loadTlsMaterial({
        certFile: config.TLS_CERT_FILE,
        keyFile: config.TLS_KEY_FILE,
        dataDir: config.DATA_DIR,
        hostname: config.MAIL_HOSTNAME,
        logger,
      });
      const smtpListeners: RunningSmtpServer[] = [];
      const listeners: [ListenerKind, number][] = [
        ['mx', config.SMTP_PORT],
        ['submission', config.SUBMISSION_PORT],
        ['smtps', config.SMTPS_PORT],
      ];
      for (const [kind, port] of listeners) {
        const listener: RunningSmtpServer = await startSmtpServer(
          {
            kind,
            authOnMx: config.SMTP_AUTH_ON_MX,
            host: config.SMTP_BIND_HOST ?? config.BIND_HOST,
            port,
            hostname: config.MAIL_HOSTNAME,
            maxMessageBytes: config.MAX_MESSAGE_SIZE,
            maxRecipients: config.MAX_RECIPIENTS,
            maxConnections: config.SMTP_MAX_CONNECTIONS,
            maxConnectionsPerIp: config.SMTP_MAX_CONNECTIONS_PER_IP,
            idleTimeoutMs: config.SMTP_IDLE_TIMEOUT_MS,
            sessionMaxMs: config.SMTP_SESSION_MAX_MS,
            shutdownGraceMs: config.SMTP_SHUTDOWN_GRACE_MS,
            maxReceivedHeaders: config.SMTP_MAX_RECEIVED_HEADERS,
            junkCommandLimit: config.SMTP_JUNK_COMMAND_LIMIT,
            errorLimit: config.SMTP_ERROR_LIMIT,
            verifyInbound: config.INBOUND_AUTH_ENABLED,
            tls,
          },
          { ingest: services.ingest, recipients: services.recipients, submission: services.submission, auth: auth.auth, logger, metrics: services.metrics },
        );
        ports[kind === 'mx' ? 'smtp' : kind] = listener.port;
        stops.push(() => listener.stop());
        smtpListeners.push(listener);
      }
      if (config.TLS_CERT_FILE && config.TLS_KEY_FILE) {
        const watcher = new CertificateWatcher(
          { certFile: config.TLS_CERT_FILE, keyFile: config.TLS_KEY_FILE },
          tls,
          (material) => smtpListeners.forEach((l) => l.setTls(material)),
          logger,
          { intervalMs: config.TLS_WATCH_INTERVAL },
        );
        watcher.start();
        certificates = watcher;
        stops.push(() => Promise.resolve(watcher.stop()));
      }
    }
    // the job queue: the api sends to it, the worker works it (any process may do either)
    const jobs = config.ROLES.includes('api') || config.ROLES.includes('worker') ? await startJobQueue(config, services, logger) : null;
    if (jobs) stops.push(() => jobs.stop({ graceful: true, timeout: JOBS_STOP_TIMEOUT_MS }));
    if (config.ROLES.includes('api')) {
      // the webmail's live events: one LISTEN connection, fanned out to the event streams
      const events = new MailEvents(services.databaseUrl, logger);
      await events.start();
      stops.push(() => events.stop()); // if what follows fails; stop() may run twice
      api = buildApi(config, services, logger, jobs!, auth, events);
      const http = await listen(api, config.BIND_HOST, config.API_PORT);
      ports.api = (http.address() as { port: number }).port;
      logger.info({ host: config.BIND_HOST, port: ports.api }, `API listening on http://${config.BIND_HOST}:${ports.api}`);
      stops.push(() => closeHttp(http));
      // stopped first (stops run in reverse): open event streams would keep the HTTP server from closing
      stops.push(() => events.stop());
    }
    if (config.ROLES.includes('worker')) {
      services.collector.start(config.BLOB_GC_INTERVAL_MS);
      stops.push(() => services.collector.stop());
      services.quota.start();
      stops.push(() => services.quota.stop());
      await services.domainVerifier.startWorker(jobs!);
      services.submission.onQueued = () => services.queue.wake();
      services.queue.start();
      stops.push(() => services.queue.stop());
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
    reloadTls: () => certificates?.reload('signal') ?? 'unchanged',
    async stop() {
      await stopAll(stops, logger);
      await opened.close();
    },
  };
}

/** Per-user SMTP settings: the host guard policy, our EHLO name, and RELAY_URL's host for display. */
function buildSmtpSettings(config: Config, db: Db): SmtpSettingsService {
  const relay = config.RELAY_URL ? parseRelayUrl(config.RELAY_URL) : null;
  return new SmtpSettingsService(db, new SecretBox(config.SECRETS_KEY), new AuditService(db), {
    allowPrivateHosts: config.ALLOW_PRIVATE_RELAY_HOSTS,
    heloName: config.MAIL_HOSTNAME,
    timeoutMs: config.OUTBOUND_TIMEOUT,
    ca: config.OUTBOUND_TLS_CA_FILE ? [readFileSync(config.OUTBOUND_TLS_CA_FILE, 'utf8')] : undefined,
    globalRelay: relay ? { host: relay.host, port: relay.port, secure: relay.secure } : null,
  });
}

/** Tenants' ESP providers: API base URLs, deadline and SMTP host policy from operator config only. */
function buildProviders(config: Config, db: Db, logger: Logger): ProvidersService {
  return new ProvidersService(
    db,
    new SecretBox(config.SECRETS_KEY),
    new AuditService(db),
    {
      timeoutMs: config.OUTBOUND_TIMEOUT,
      urls: {
        sendgrid: config.SENDGRID_API_URL,
        mailgun: config.MAILGUN_API_URL,
        mailgunEu: config.MAILGUN_EU_API_URL,
        ses: config.SES_API_URL,
        msgraph: config.MSGRAPH_API_URL,
        msgraphLogin: config.MSGRAPH_LOGIN_URL,
      },
      smtp: {
        heloName: config.MAIL_HOSTNAME,
        ca: config.OUTBOUND_TLS_CA_FILE ? [readFileSync(config.OUTBOUND_TLS_CA_FILE, 'utf8')] : undefined,
        allowPrivate: config.ALLOW_PRIVATE_RELAY_HOSTS,
      },
    },
    logger,
  );
}

/** The delivery queue and its routes: per-user relay → tenant providers → RELAY_URL → direct MX. */
function buildQueue(config: Config, services: Omit<Services, 'queue'>, resolver: DnsResolve, logger: Logger): OutboundQueue {
  const ca = config.OUTBOUND_TLS_CA_FILE ? [readFileSync(config.OUTBOUND_TLS_CA_FILE, 'utf8')] : undefined;
  const relay = config.RELAY_URL ? parseRelayUrl(config.RELAY_URL) : null;
  const routes = new RoutePlanner({
    userRelays: services.smtpSettings,
    providers: services.providers,
    globalRelay: relay
      ? createSmtpTransport({ route: 'relay', ...relay, heloName: config.MAIL_HOSTNAME, timeoutMs: config.OUTBOUND_TIMEOUT, ca })
      : null,
    mx: config.DIRECT_DELIVERY
      ? createMxTransport({
          resolve: resolver,
          port: config.DIRECT_DELIVERY_PORT,
          heloName: config.MAIL_HOSTNAME,
          timeoutMs: config.OUTBOUND_TIMEOUT,
          allowPrivate: config.ALLOW_PRIVATE_RELAY_HOSTS,
        })
      : null,
  });
  return new OutboundQueue(
    services.db,
    services.blobReader,
    services.ingest,
    services.recipients,
    routes,
    new DkimSigner(services.db, new SecretBox(config.SECRETS_KEY), logger),
    {
      hostname: config.MAIL_HOSTNAME,
      concurrency: config.OUTBOUND_CONCURRENCY,
      pollIntervalMs: config.OUTBOUND_POLL_INTERVAL,
      leaseMs: config.OUTBOUND_LEASE,
      retrySchedule: config.OUTBOUND_RETRY_SCHEDULE,
      maxAgeMs: config.OUTBOUND_MAX_AGE,
      delayWarningMs: config.OUTBOUND_DELAY_WARNING,
      maxBytes: config.MAX_MESSAGE_SIZE,
      maxReceived: config.SMTP_MAX_RECEIVED_HEADERS,
    },
    logger,
    services.metrics,
  );
}

/** Login checks and lockouts, shared by the API and SMTP AUTH (one set of counters). */
function buildAuth(config: Config, services: Services): { auth: AuthService; tokens: TokenService; audit: AuditService } {
  const lockout = { durationMs: config.LOGIN_LOCKOUT_MS, blockMs: config.LOGIN_LOCKOUT_MS };
  const accountLockout = createLimiter(services.pool, { prefix: 'login_acct', points: config.LOGIN_MAX_FAILURES, ...lockout });
  const ipLockout = createLimiter(services.pool, { prefix: 'login_ip', points: config.LOGIN_MAX_FAILURES_PER_IP, ...lockout });
  const signup = createLimiter(services.pool, { prefix: 'signup', points: config.SIGNUP_RATE_LIMIT_PER_HOUR, durationMs: 3600_000 });
  const tokens = new TokenService(services.db, config.JWT_SECRET);
  const audit = services.audit;
  return { auth: new AuthService(services.db, services.accounts, tokens, audit, { accountLockout, ipLockout, signup }, config.SIGNUP_ENABLED), tokens, audit };
}

function buildApi(
  config: Config,
  services: Services,
  logger: Logger,
  jobs: PgBoss,
  { auth, tokens, audit }: ReturnType<typeof buildAuth>,
  events: MailEvents,
): ReturnType<typeof createApiApp>['app'] {
  const apiLimiter = createLimiter(services.pool, { prefix: 'api', points: config.API_RATE_LIMIT_PER_MINUTE, durationMs: 60_000 });
  const mails = new MailsService(
    services.db,
    services.ingest,
    services.submission,
    services.blobReader,
    {
      maxMessageBytes: config.MAX_MESSAGE_SIZE,
      maxRecipients: config.MAX_RECIPIENTS,
      maxAttachments: config.MAX_ATTACHMENTS,
      maxReceivedHeaders: config.SMTP_MAX_RECEIVED_HEADERS,
    },
    logger,
  );
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
    mails,
    webmail: new WebmailService(services.db, mails, services.messages, events, { keepaliveMs: 25_000, maxStreamsPerUser: 10 }),
    deliveryEvents: buildDeliveryEvents(config, services, logger),
    smtpSettings: services.smtpSettings,
    providers: services.providers,
    apiLimiter,
    corsOrigins: config.CORS_ORIGINS,
    bodyLimitBytes: config.API_BODY_LIMIT_BYTES,
    trustProxy: config.TRUST_PROXY,
    metrics: services.metrics,
    version: PACKAGE_VERSION,
  }).app;
}

/** ESP delivery webhooks: one signature receiver per provider type. */
function buildDeliveryEvents(config: Config, services: Services, logger: Logger): DeliveryEventsService {
  const sns = new SnsVerifier({ certUrlPattern: new RegExp(config.SNS_CERT_URL_PATTERN) });
  return new DeliveryEventsService(services.db, new SecretBox(config.SECRETS_KEY), {
    receivers: { sendgrid: new SendgridWebhook(), mailgun: new MailgunWebhook(), ses: new SesWebhook(sns) },
    logger,
    // a bounce reported after the hand-over reaches the sender like any other
    onBounced: (outboundId, reply) => services.queue.notifyLateBounce(outboundId, reply),
  });
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
