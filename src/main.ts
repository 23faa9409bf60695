/**
 * Process entry point (`npm start`, PM2): loads the config (a bad value stops the boot with
 * every bad key listed), starts the roles, and stops them on SIGTERM/SIGINT: listeners stop
 * accepting, SMTP transactions in flight finish (bounded by SMTP_SHUTDOWN_GRACE_MS), then the
 * database (and the embedded server) stops. Uncaught errors log at fatal and exit 1 so PM2
 * restarts a clean process. SIGHUP reloads the SMTP certificate (certbot's deploy hook).
 * Under PM2 (`wait_ready`), the process tells PM2 it is ready once every listener is bound,
 * so `pm2 reload` only stops the old instance when the new one accepts connections.
 */
import { ConfigError, loadConfig, redactedConfig } from './config/load.js';
import { createLogger } from './core/logger.js';
import { describeError } from './core/errors.js';
import { createServer } from './server.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
  const logger = createLogger(config.LOG_LEVEL);
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception');
    process.exit(1);
  });
  process.on('unhandledRejection', (reason) => {
    logger.fatal({ err: reason }, 'unhandled promise rejection');
    process.exit(1);
  });
  logger.info({ config: redactedConfig(config) }, 'starting');
  const server = await createServer(config, logger);
  logger.info({ event: 'server.started', roles: config.ROLES, ports: server.ports }, 'mail server started');
  process.send?.('ready');

  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ event: 'server.stopping', signal }, 'stopping');
    server.stop().then(
      () => {
        logger.info({ event: 'server.stopped' }, 'stopped');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err: describeError(err) }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGHUP', () => {
    const result = server.reloadTls();
    logger.info({ event: 'server.sighup', tls: result }, `SIGHUP: TLS certificate ${result}`);
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`fatal: ${describeError(err)}${err instanceof Error && err.cause ? ` (${describeError(err.cause)})` : ''}\n`);
  process.exit(1);
});
