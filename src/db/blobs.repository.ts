/**
 * Queries on `blobs`: the reference count of every stored object, and the bytes themselves for
 * small ones (`data`, migration 0003). A row's lock is what serialises publishing a blob (ingest)
 * with deleting it (collector); see blobs/blob-store.ts.
 */
import { sql, type Kysely, type RawBuilder, type Transaction } from 'kysely';
import type { Database } from './types.js';

type Executor = Kysely<Database> | Transaction<Database>;

export interface BlobReference {
  key: string;
  sha256: string;
  size: number;
  /** How many new rows reference it. */
  count: number;
  /** The bytes, when they are to be kept in the row (inline); null when they are in the blob store. */
  data: Buffer | null;
}

/**
 * Adds references, creating rows as needed, and locks every row until the transaction ends.
 * Rows are touched in key order so concurrent ingests cannot deadlock.
 *
 * Inline bytes always end up in the row: a row that so far pointed at the blob store gets them
 * too (the same content, by its key), so it no longer depends on that file, which becomes an
 * orphan for the collector once the row goes. A row that already holds bytes keeps them.
 * Returns the keys whose row holds the bytes: for those, nothing needs publishing.
 */
export async function addReferences(trx: Transaction<Database>, refs: BlobReference[]): Promise<Set<string>> {
  if (refs.length === 0) return new Set();
  const result = await upsertReferences(refs).execute(trx);
  return new Set(result.rows.filter((r) => r.in_row).map((r) => r.key));
}

/**
 * The statement addReferences() runs, for use as a CTE in a larger statement (the ingest's
 * recordDelivery): the same rows, order and conflict rule. One VALUES row per key: the planner
 * sees the real number of rows, which keeps a prepared statement on its generic plan.
 */
export function upsertReferences(refs: BlobReference[]): RawBuilder<{ key: string; in_row: boolean }> {
  const merged = new Map<string, BlobReference>();
  for (const r of refs) {
    const prev = merged.get(r.key);
    merged.set(r.key, prev ? { ...prev, count: prev.count + r.count, data: prev.data ?? r.data } : { ...r });
  }
  const rows = [...merged.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return sql<{ key: string; in_row: boolean }>`
    INSERT INTO blobs (key, sha256, size, refcount, data)
    VALUES ${sql.join(rows.map((r) => sql`(${r.key}::text, ${r.sha256}::text, ${r.size}::bigint, ${r.count}::int, ${r.data}::bytea)`))}
    ON CONFLICT (key) DO UPDATE SET refcount = blobs.refcount + excluded.refcount, data = coalesce(blobs.data, excluded.data)
    RETURNING key, data IS NOT NULL AS in_row
  `;
}

/** The bytes kept in the row of `key`: undefined when there is no row, null when they are in the blob store. */
export async function inlineData(db: Executor, key: string): Promise<Buffer | null | undefined> {
  const row = await db.selectFrom('blobs').select('data').where('key', '=', key).executeTakeFirst();
  return row ? row.data : undefined;
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
 * an orphan file. Returns where its bytes are (`row`: inline, the blob store is not involved;
 * `store`: a file to delete), or false when the key is referenced or locked by someone else (an
 * ingest publishing it right now), in which case the collector leaves it alone.
 */
export async function lockForDeletion(trx: Transaction<Database>, key: string): Promise<'row' | 'store' | false> {
  const inserted = await trx
    .insertInto('blobs')
    .values({ key, sha256: '', size: 0, refcount: 0 })
    .onConflict((oc) => oc.column('key').doNothing())
    .returning('key')
    .executeTakeFirst();
  if (inserted) return 'store';
  const locked = await sql<{ in_row: boolean }>`
    SELECT data IS NOT NULL AS in_row FROM blobs WHERE key = ${key} AND refcount = 0 FOR UPDATE SKIP LOCKED
  `.execute(trx);
  const row = locked.rows[0];
  if (!row) return false;
  return row.in_row ? 'row' : 'store';
}

export async function deleteRow(trx: Transaction<Database>, key: string): Promise<void> {
  await trx.deleteFrom('blobs').where('key', '=', key).where('refcount', '=', 0).execute();
}
