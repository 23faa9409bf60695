/**
 * The layout of a backup directory and its manifest, shared by backup and restore:
 *
 *   <backup>/manifest.json          written last: a directory without it is not a backup
 *   <backup>/db/<table>.copy.gz     each table as COPY text format, gzip'd
 *   <backup>/blobs.tsv.gz           one line per blob-store object: key, sha256, size (tab-separated)
 *   <backup>/blobs/<key>            the object's bytes (keys are content-addressed: raw/ab/cd/<sha256>)
 *
 * The manifest records what restore checks before it touches anything: each file's SHA-256 and
 * row count, the last migration the schema had, and a fingerprint of SECRETS_KEY (an HMAC, not
 * the key), since encrypted DKIM keys and relay credentials only decrypt with the same key.
 */
import { createHash, createHmac } from 'node:crypto';
import { createReadStream } from 'node:fs';
import readline from 'node:readline';
import { Transform, type TransformCallback } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { z } from 'zod';

export const BACKUP_FORMAT = 'mailserver-backup';
export const BACKUP_FORMAT_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';
export const BLOB_INDEX_FILE = 'blobs.tsv.gz';
export const DB_DIR = 'db';
export const BLOBS_DIR = 'blobs';

/**
 * Tables of the public schema a backup leaves out, and why. pg-boss keeps its jobs in its own
 * schema (`pgboss`), which is not backed up either: its queues are created at start-up, the
 * daily domain re-check is re-scheduled by the worker, and a one-off DNS check lost with it is
 * done again by that re-check.
 */
export const EXCLUDED_TABLES: Readonly<Record<string, string>> = {
  rate_limits: 'runtime state: login lockout, signup and send-rate counters that expire within a day',
  kysely_migration_lock: "runtime state: the migrator's lock row, created by the migrator itself",
};

const tableSchema = z.strictObject({
  name: z.string().regex(/^[a-z_][a-z0-9_]*$/),
  file: z.string().regex(/^db\/[a-z_][a-z0-9_]*\.copy\.gz$/),
  columns: z.array(z.string().regex(/^[a-z_][a-z0-9_]*$/)).min(1),
  rows: z.number().int().min(0),
  bytes: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});

export const manifestSchema = z.strictObject({
  format: z.literal(BACKUP_FORMAT),
  format_version: z.literal(BACKUP_FORMAT_VERSION),
  app_version: z.string(),
  created_at: z.iso.datetime(),
  duration_ms: z.number().int().min(0),
  postgres_version: z.string(),
  last_migration: z.string().min(1),
  migrations: z.array(z.string()).min(1),
  storage_driver: z.enum(['local', 'azure']),
  secrets_key_check: z.string().regex(/^[0-9a-f]{32}$/),
  excluded_tables: z.record(z.string(), z.string()),
  tables: z.array(tableSchema).min(1),
  blobs: z.strictObject({
    index_file: z.literal(BLOB_INDEX_FILE),
    index_sha256: z.string().regex(/^[0-9a-f]{64}$/),
    count: z.number().int().min(0),
    bytes: z.number().int().min(0),
    /** Unreferenced rows (refcount 0, awaiting the collector) whose file was already gone. */
    skipped_unreferenced: z.number().int().min(0),
  }),
});

export type Manifest = z.infer<typeof manifestSchema>;
export type ManifestTable = z.infer<typeof tableSchema>;

export interface BlobEntry {
  key: string;
  sha256: string;
  size: number;
}

/** A fingerprint of SECRETS_KEY: tells whether two keys are the same without revealing either. */
export function secretsKeyCheck(secretsKey: string): string {
  return createHmac('sha256', Buffer.from(secretsKey, 'hex')).update('mailserver backup secrets-key check').digest('hex').slice(0, 32);
}

/** Passes bytes through while counting and hashing them. */
export class HashingMeter extends Transform {
  private readonly hash = createHash('sha256');
  bytes = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    done(null, chunk);
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

/** SHA-256 and size of a file. */
export async function hashFile(file: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/** One line of blobs.tsv.gz (the COPY text output of key, sha256, size). */
export function parseBlobLine(line: string): BlobEntry | null {
  const [key, sha256, size] = line.split('\t');
  if (!key || !sha256 || size === undefined || !/^[0-9a-f]{64}$/.test(sha256) || !/^\d+$/.test(size)) return null;
  return { key, sha256, size: Number(size) };
}

/**
 * Calls `fn` for every line of a gzip'd text file, `concurrency` at a time. The first failure
 * stops the others from taking new lines; every call in flight finishes before this rejects,
 * so the caller can clean up knowing nothing still writes.
 */
export async function forEachLine(file: string, concurrency: number, fn: (line: string) => Promise<void>): Promise<void> {
  const input = createReadStream(file).pipe(createGunzip());
  const lines = readline.createInterface({ input, crlfDelay: Infinity })[Symbol.asyncIterator]();
  let failed = false;
  const worker = async (): Promise<void> => {
    try {
      for (let next = await lines.next(); !next.done && !failed; next = await lines.next()) await fn(next.value);
    } catch (err) {
      failed = true;
      throw err;
    }
  };
  const results = await Promise.allSettled(Array.from({ length: concurrency }, worker));
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) {
    await lines.return?.();
    input.destroy();
    throw failure.reason;
  }
}
