#!/usr/bin/env node
// Runs the compiled test suites (dist/test/**/*.test.js) with node's test runner against one
// fresh embedded PostgreSQL for the whole run (temporary data dir, random port); each test file
// creates its own database in it. Extra arguments are passed to `node --test` (e.g. a file).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { startEmbeddedPostgres } = await import(path.join(root, 'dist/src/db/embedded-postgres.js'));
const { createLogger } = await import(path.join(root, 'dist/src/core/logger.js'));

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const dataDir = mkdtempSync(path.join(os.tmpdir(), 'mailserver-test-pg-'));
chmodSync(dataDir, 0o755);
const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'warn', { name: 'test-pg' });
const pg = await startEmbeddedPostgres(dataDir, await freePort(), logger);
let code = 1;
try {
  const args = process.argv.slice(2);
  const files = args.length > 0 ? args : ['dist/test/**/*.test.js'];
  code = await new Promise((resolve) => {
    const child = spawn(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=300000', ...files], {
      cwd: root,
      stdio: 'inherit',
      env: { ...process.env, TEST_PG_ADMIN_URL: pg.url },
    });
    child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0)));
  });
} finally {
  await pg.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
process.exit(code);
