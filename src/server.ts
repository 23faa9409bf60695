/**
 * createServer(): the composition root. Builds every object from a Config (nothing else
 * constructs services) and starts the roles in ROLES: `api` (HTTP), `smtp` (listeners),
 * `worker` (background jobs: blob collection now, delivery later). stop() undoes it in reverse:
 * listeners first, so transactions in flight finish before the database goes away.
 */
import type { Server } from 'node:http';
import path from 'node:path';
import { createApiApp } from './api/app.js';
import { AzureBlobStore } from './blobs/azure.blob-store.js';
import type { BlobStore } from './blobs/blob-store.js';
import { LocalBlobStore } from './blobs/local.blob-store.js';
import type { Config } from './config/load.js';
import { describeError } from './core/errors.js';
import type { Logger } from './core/logger.js';
import { checkDurability, createDb, migrate, type Db } from './db/database.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './db/embedded-postgres.js';
import { AccountsService } from './services/accounts.service.js';
import { BlobCollector } from './services/blob-gc.service.js';
import { QuotaFolder } from './services/quota.service.js';
import { createDnsResolver } from './services/dns-resolver.js';
import { InboundAuthService } from './services/inbound-auth.service.js';
import { IngestService } from './services/ingest.service.js';
import { MessagesService } from './services/messages.service.js';
import { RecipientService } from './services/recipient.service.js';
import { SecretBox } from './services/secret-box.js';
import { loadTlsMaterial } from './services/tls-material.service.js';
import { startMxServer, type RunningSmtpServer } from './smtp/mx.server.js';

export interface Services {
  db: Db;
  blobs: BlobStore;
  accounts: AccountsService;
  messages: MessagesService;
  ingest: IngestService;
  recipients: RecipientService;
  collector: BlobCollector;
  quota: QuotaFolder;
}

export interface RunningServer {
  services: Services;
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
  const { db } = createDb({ url, poolSize: config.DATABASE_POOL_SIZE, logger });
  try {
    await checkDurability(db);
    await migrate(db, logger);
    const blobs: BlobStore =
      config.STORAGE_DRIVER === 'azure'
        ? await new AzureBlobStore(config.AZURE_STORAGE_CONNECTION_STRING ?? '', config.AZURE_STORAGE_CONTAINER).init()
        : await new LocalBlobStore(path.join(config.DATA_DIR, 'blobs')).init();
    const resolver = createDnsResolver({ servers: config.DNS_SERVERS, timeoutMs: config.DNS_TIMEOUT_MS });
    const auth = new InboundAuthService(resolver, config.MAIL_HOSTNAME);
    const services: Services = {
      db,
      blobs,
      accounts: new AccountsService(db, new SecretBox(config.SECRETS_KEY), config.DEFAULT_QUOTA_MB),
      messages: new MessagesService(db, blobs),
      ingest: new IngestService(db, blobs, auth, config.MAIL_HOSTNAME, logger),
      recipients: new RecipientService(db),
      collector: new BlobCollector(db, blobs, config.BLOB_GC_GRACE_MS, logger),
      quota: new QuotaFolder(db, logger),
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
    if (config.ROLES.includes('api')) {
      const http = await listen(createApiApp({ db: services.db, blobs: services.blobs }), config.BIND_HOST, config.API_PORT);
      ports.api = (http.address() as { port: number }).port;
      logger.info({ host: config.BIND_HOST, port: ports.api }, `API listening on http://${config.BIND_HOST}:${ports.api}`);
      stops.push(() => closeHttp(http));
    }
    if (config.ROLES.includes('worker')) {
      services.collector.start(config.BLOB_GC_INTERVAL_MS);
      stops.push(() => services.collector.stop());
      services.quota.start();
      stops.push(() => services.quota.stop());
    }
  } catch (err) {
    await stopAll(stops, logger);
    await opened.close();
    throw err;
  }
  return {
    services,
    ports,
    async stop() {
      await stopAll(stops, logger);
      await opened.close();
    },
  };
}

async function stopAll(stops: (() => Promise<void>)[], logger: Logger): Promise<void> {
  for (const stop of stops.reverse()) {
    await stop().catch((err: unknown) => logger.error({ err: describeError(err) }, 'error while stopping'));
  }
}

function listen(app: ReturnType<typeof createApiApp>, host: string, port: number): Promise<Server> {
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
