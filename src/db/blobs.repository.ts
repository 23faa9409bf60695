/**
 * Queries on `blobs`: the reference count of every stored object. A row's lock is what
 * serialises publishing a blob (ingest) with deleting it (collector); see blobs/blob-store.ts.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Database } from './types.js';

type Executor = Kysely<Database> | Transaction<Database>;

export interface BlobReference {
  key: string;
  sha256: string;
  size: number;
  /** How many new rows reference it. */
  count: number;
}

/**
 * Adds references, creating rows as needed, and locks every row until the transaction ends.
 * Rows are touched in key order so concurrent ingests cannot deadlock.
 */
export async function addReferences(trx: Transaction<Database>, refs: BlobReference[]): Promise<void> {
  const merged = new Map<string, BlobReference>();
  for (const r of refs) {
    const prev = merged.get(r.key);
    merged.set(r.key, prev ? { ...prev, count: prev.count + r.count } : { ...r });
  }
  const rows = [...merged.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  if (rows.length === 0) return;
  await trx
    .insertInto('blobs')
    .values(rows.map((r) => ({ key: r.key, sha256: r.sha256, size: r.size, refcount: r.count })))
    .onConflict((oc) => oc.column('key').doUpdateSet({ refcount: sql`blobs.refcount + excluded.refcount` }))
    .execute();
}

/** Drops references (message deletion); rows that reach zero are left for the collector. */
export async function removeReferences(trx: Transaction<Database>, keys: string[]): Promise<void> {
  const counts = new Map<string, number>();
  for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1);
  for (const key of [...counts.keys()].sort()) {
    await trx
      .updateTable('blobs')
      .set({ refcount: sql`greatest(refcount - ${counts.get(key)}, 0)` })
      .where('key', '=', key)
      .execute();
  }
}

/** Unreferenced rows older than `before`, for the collector. */
export async function findUnreferenced(db: Executor, before: Date, limit: number): Promise<string[]> {
  const rows = await db
    .selectFrom('blobs')
    .select('key')
    .where('refcount', '=', 0)
    .where('created_at', '<', before)
    .limit(limit)
    .execute();
  return rows.map((r) => r.key);
}

/** Which of `keys` have a row (referenced or not). */
export async function existingKeys(db: Executor, keys: string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const rows = await db.selectFrom('blobs').select('key').where('key', 'in', keys).execute();
  return new Set(rows.map((r) => r.key));
}

/**
 * Locks `key` for deletion: the existing row if it has no references, or a placeholder row for
 * an orphan file. Returns false when the key is referenced or locked by someone else (an ingest
 * publishing it right now), in which case the collector leaves it alone.
 */
export async function lockForDeletion(trx: Transaction<Database>, key: string): Promise<boolean> {
  const inserted = await trx
    .insertInto('blobs')
    .values({ key, sha256: '', size: 0, refcount: 0 })
    .onConflict((oc) => oc.column('key').doNothing())
    .returning('key')
    .executeTakeFirst();
  if (inserted) return true;
  const locked = await sql<{ key: string }>`
    SELECT key FROM blobs WHERE key = ${key} AND refcount = 0 FOR UPDATE SKIP LOCKED
  `.execute(trx);
  return locked.rows.length > 0;
}

export async function deleteRow(trx: Transaction<Database>, key: string): Promise<void> {
  await trx.deleteFrom('blobs').where('key', '=', key).where('refcount', '=', 0).execute();
}
