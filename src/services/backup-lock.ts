/**
 * The PostgreSQL advisory lock that keeps the blob collector (services/blob-gc.service.ts) away
 * from blobs while a backup copies them. Blobs are immutable, so the only thing that can make a
 * backup inconsistent is the collector deleting a blob between the backup's database snapshot
 * (which still references it) and the moment the backup copies its file.
 *
 * - A backup holds the lock SHARED on its own session for its whole run, taken BEFORE its
 *   snapshot: any deletion committed before that is already invisible to the snapshot, and none
 *   can commit after it. Several backups may run at once.
 * - The collector takes the lock EXCLUSIVE with a try-lock inside every deletion transaction
 *   (released at COMMIT). While a backup holds it, the try fails and the collector skips the rest
 *   of its pass; the next interval tries again. A transaction-level lock needs no connection of
 *   its own, so a pool of one connection cannot deadlock on it.
 * The two 32-bit keys are ASCII "mail" and "bckp": fixed, so every process of every version agrees.
 */
import { sql } from 'kysely';
import type pg from 'pg';
import type { Db } from '../db/database.js';

const LOCK_CLASS = 0x6d61696c;
const LOCK_OBJECT = 0x62636b70;

/**
 * Takes the lock shared on `client`'s session; waits while a collector deletion holds it.
 * Calls `onWait` once when it has to wait, so the operator sees why nothing moves.
 */
export async function holdBackupLock(client: pg.ClientBase, onWait: () => void): Promise<void> {
  const tried = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock_shared($1, $2) AS ok', [LOCK_CLASS, LOCK_OBJECT]);
  if (tried.rows[0]?.ok) return;
  onWait();
  await client.query('SELECT pg_advisory_lock_shared($1, $2)', [LOCK_CLASS, LOCK_OBJECT]);
}

export async function releaseBackupLock(client: pg.ClientBase): Promise<void> {
  await client.query('SELECT pg_advisory_unlock_shared($1, $2)', [LOCK_CLASS, LOCK_OBJECT]);
}

/** In the collector's deletion transaction: true when no backup runs (the lock is then held until COMMIT). */
export async function tryCollectorLock(trx: Db): Promise<boolean> {
  const result = await sql<{ ok: boolean }>`SELECT pg_try_advisory_xact_lock(${LOCK_CLASS}::int, ${LOCK_OBJECT}::int) AS ok`.execute(trx);
  return result.rows[0]?.ok === true;
}

/** Whether a backup holds the lock right now (the collector checks before starting a pass). */
export async function backupRunning(db: Db): Promise<boolean> {
  return db.transaction().execute(async (trx) => !(await tryCollectorLock(trx)));
}
