/**
 * Migration 0003: small blobs kept in their `blobs` row. `data` holds the bytes of a raw message
 * or attachment up to BLOB_INLINE_MAX_BYTES, written in the same transaction as the message rows
 * so the WAL commit makes them durable: no file, rename or fsync of their own. NULL means the
 * bytes are in the blob store under `key`, as before. Keys keep their content-addressed form
 * (`raw/…`, `att/…`) whichever place holds the bytes.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE blobs ADD COLUMN data bytea`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE blobs DROP COLUMN data`.execute(db);
}
