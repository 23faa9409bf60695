// PM2 apps. Default: one app running every role (api, smtp, worker) in one process.
//   pm2 start ecosystem.config.js            # all-in-one
//   pm2 start ecosystem.config.js --only mailserver
// The split layout (API, SMTP listeners and the worker as separate apps) comes with the
// operations issue; ROLES already selects what a process runs.
// `npm run build` first (or `npm start` once): PM2 runs the compiled dist/src/main.js.
// This package is ESM ("type": "module"); PM2 loads this file with require(), which on
// Node >= 22.12 returns the export named 'module.exports' of an ES module.
const config = {
  apps: [
    {
      name: 'mailserver',
      script: 'dist/src/main.js',
      cwd: import.meta.dirname,
      env: { NODE_ENV: 'production', ROLES: 'api,smtp,worker' },
      // SIGTERM lets SMTP transactions in flight finish (SMTP_SHUTDOWN_GRACE_MS, 20 s by default)
      kill_timeout: 30000,
      max_memory_restart: '1G',
      // exit 78 (EX_CONFIG) is a configuration error: restarting cannot fix it
      stop_exit_codes: [78],
      time: true,
    },
  ],
};

export default config;
export { config as 'module.exports' };
