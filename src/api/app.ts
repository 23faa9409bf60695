/**
 * The HTTP app on API_PORT. Issue 1 serves the health endpoints; the REST API of API.md is
 * mounted here as it lands. `/healthz` answers while the process runs; `/readyz` checks the
 * database and the blob store and answers 503 with the failing part named when one is down.
 */
import express, { type Express } from 'express';
import { sql } from 'kysely';
import type { BlobStore } from '../blobs/blob-store.js';
import { describeError } from '../core/errors.js';
import type { Db } from '../db/database.js';

export function createApiApp(deps: { db: Db; blobs: BlobStore }): Express {
  const app = express();
  app.disable('x-powered-by');

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/readyz', async (_req, res) => {
    const checks: Record<string, string> = {};
    const [dbCheck, blobCheck] = await Promise.allSettled([sql`SELECT 1`.execute(deps.db), deps.blobs.check()]);
    checks.database = dbCheck.status === 'fulfilled' ? 'ok' : `error: ${describeError(dbCheck.reason)}`;
    checks.blob_store = blobCheck.status === 'fulfilled' ? 'ok' : `error: ${describeError(blobCheck.reason)}`;
    const ready = dbCheck.status === 'fulfilled' && blobCheck.status === 'fulfilled';
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not_ready', checks });
  });

  app.use((_req, res) => {
    res.status(404).json({ error: 'Not found', code: 'not_found' });
  });
  return app;
}
