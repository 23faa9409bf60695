/**
 * Start-up and health: the server refuses a database that could lose committed transactions,
 * /healthz answers while the process runs, /readyz names the part that is down.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import pg from 'pg';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/core/logger.js';
import { createServer } from '../../src/server.js';
import { createTestDatabase, startTestServer, tempDir, testEnv } from '../helpers/harness.js';

/**
 * A database whose sessions run with synchronous_commit off. (fsync can only be turned off for
 * the whole server, which the other test files share, so this is the setting a test can flip.)
 */
async function databaseWithoutSynchronousCommit(): Promise<string> {
  const url = await createTestDatabase();
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`ALTER DATABASE ${new URL(url).pathname.slice(1)} SET synchronous_commit = off`);
  } finally {
    await client.end();
  }
  return url;
}

describe('lifecycle', () => {
  it('when the database has synchronous_commit off, then the server refuses to start and says why', async () => {
    const url = await databaseWithoutSynchronousCommit();
    const config = loadConfig({ env: testEnv(tempDir(), url), envFile: null });
    await assert.rejects(createServer(config, createLogger('silent')), /synchronous_commit=off: a crash could lose mail already answered with 250/);
  });

  it('when the server runs, then /healthz is ok and /readyz reports the database and blob store ready', async () => {
    const t = await startTestServer();
    try {
      const health = await fetch(`http://127.0.0.1:${t.apiPort}/healthz`);
      assert.equal(health.status, 200);
      assert.deepEqual(await health.json(), { status: 'ok' });
      const ready = await fetch(`http://127.0.0.1:${t.apiPort}/readyz`);
      assert.equal(ready.status, 200);
      assert.deepEqual(await ready.json(), { status: 'ready', checks: { database: 'ok', blob_store: 'ok' } });
    } finally {
      await t.stop();
    }
  });

  it('when the blob store cannot be written, then /readyz answers 503 naming it while /healthz stays ok', async () => {
    const t = await startTestServer();
    const staging = path.join(t.dataDir, 'blobs', 'tmp');
    try {
      await fs.rm(staging, { recursive: true, force: true });
      await fs.writeFile(staging, 'not a directory');
      const ready = await fetch(`http://127.0.0.1:${t.apiPort}/readyz`);
      assert.equal(ready.status, 503);
      const body = (await ready.json()) as { status: string; checks: Record<string, string> };
      assert.equal(body.status, 'not_ready');
      assert.equal(body.checks.database, 'ok');
      assert.match(body.checks.blob_store ?? '', /^error: blob store is not writable/);
      assert.equal((await fetch(`http://127.0.0.1:${t.apiPort}/healthz`)).status, 200);
    } finally {
      await fs.rm(staging, { force: true });
      await fs.mkdir(staging);
      await t.stop();
    }
  });

  it('when an unknown path is requested, then a JSON 404 in the API error shape', async () => {
    const t = await startTestServer();
    try {
      const res = await fetch(`http://127.0.0.1:${t.apiPort}/nope`);
      assert.equal(res.status, 404);
      assert.deepEqual(await res.json(), { error: 'no route for GET /nope', code: 'not_found' });
    } finally {
      await t.stop();
    }
  });
});
