// PM2 apps (docs/operations.md, "PM2").
//
// All-in-one (the default): one process runs every role (api, smtp, worker) and, when DATABASE_URL
// is unset, the embedded PostgreSQL.
//   pm2 start ecosystem.config.js
//   pm2 reload mailserver       # graceful: SMTP transactions in flight finish, nothing accepted is lost
//
// Split: the API in cluster mode, the SMTP listeners and the delivery worker as separate apps,
// chosen with ROLES. The processes share one database, so the split needs DATABASE_URL (a
// PostgreSQL server; the embedded one belongs to a single process and a second one is refused).
//   MAILSERVER_LAYOUT=split DATABASE_URL=postgres://... pm2 start ecosystem.config.js
//   pm2 reload mailserver-api mailserver-smtp   # cluster mode: a new instance is ready before the old one stops
// MAILSERVER_API_INSTANCES sets the API's instance count (default 2). Processes without the api
// role serve Prometheus metrics on METRICS_PORT (smtp 9101, worker 9102 unless set).
//
// Every app's environment is PM2's own environment (the shell that ran `pm2 start`, or the .env file
// the server loads) plus the values below. `npm run build` first: PM2 runs dist/src/main.js.
// Logs: LOG_DIR (default ./logs), one file per app with a time prefix; rotate them with
// `pm2 install pm2-logrotate`.
//
// `wait_ready`: the server sends 'ready' once every listener is bound (src/main.ts), so PM2 only
// stops an old instance when its replacement accepts connections. `kill_timeout` exceeds
// SMTP_SHUTDOWN_GRACE_MS (20 s) so a transaction in flight finishes before PM2 would SIGKILL.
// exit 78 (EX_CONFIG) is a configuration error: restarting cannot fix it.
//
// This package is ESM ("type": "module"); PM2 loads this file with require(), which on
// Node >= 22.12 returns the export named 'module.exports' of an ES module.
import path from 'node:path';

const cwd = import.meta.dirname;
const logDir = process.env.LOG_DIR ?? path.join(cwd, 'logs');

/** What every app shares: the compiled entry point, graceful stop and start, logs. */
function app(name, roles, extra = {}) {
  return {
    name,
    script: 'dist/src/main.js',
    cwd,
    wait_ready: true,
    // migrations and the embedded PostgreSQL's first start can take a while
    listen_timeout: 60_000,
    kill_timeout: 30_000,
    max_memory_restart: '1G',
    stop_exit_codes: [78],
    out_file: path.join(logDir, `${name}.out.log`),
    error_file: path.join(logDir, `${name}.err.log`),
    merge_logs: true,
    time: true,
    ...extra,
    env: { NODE_ENV: 'production', ROLES: roles, ...extra.env },
  };
}

const allInOne = [app('mailserver', 'api,smtp,worker')];

const split = [
  app('mailserver-api', 'api', {
    exec_mode: 'cluster',
    instances: Number(process.env.MAILSERVER_API_INSTANCES ?? 2),
  }),
  // cluster mode with one instance: the listening sockets stay open in PM2 while `pm2 reload`
  // swaps the process, so no connection is refused during a reload
  app('mailserver-smtp', 'smtp', {
    exec_mode: 'cluster',
    instances: 1,
    env: { METRICS_PORT: process.env.SMTP_METRICS_PORT ?? '9101' },
  }),
  app('mailserver-worker', 'worker', {
    env: { METRICS_PORT: process.env.WORKER_METRICS_PORT ?? '9102' },
  }),
];

const config = { apps: process.env.MAILSERVER_LAYOUT === 'split' ? split : allInOne };

export default config;
export { config as 'module.exports' };
