/**
 * BackupService.backup(dir): a consistent, logical backup of the database and the blob store
 * while the server keeps running (scripts/backup, src/cli/backup.ts). Layout: backup-manifest.ts.
 *
 * Why not pg_dump: the embedded PostgreSQL (18) ships none, and an older pg_dump refuses a newer
 * server. So the dump is our own: one REPEATABLE READ READ ONLY transaction (one snapshot for
 * every table) and `COPY <table> TO STDOUT` in text format for every table of the public schema,
 * Kysely's migration table included (it names the schema version); runtime-only tables are left
 * out (EXCLUDED_TABLES). Text format, because it loads into any later PostgreSQL.
 *
 * Blobs kept in their database row travel with the `blobs` table; the others (data IS NULL) are
 * copied from the BlobStore, whichever driver, each checked against the SHA-256 and size in its
 * row. The backup lock (backup-lock.ts) is held shared from before the snapshot until the last
 * blob is copied, so the collector cannot delete a blob the snapshot references.
 *
 * Everything is written to a hidden sibling directory that is renamed to `dir` only when
 * complete, with manifest.json last: an interrupted backup never looks like a backup.
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip, type Gzip } from 'node:zlib';
import pg from 'pg';
import { assertSafeKey, type BlobStore } from '../blobs/blob-store.js';
import { AppError, isAppError } from '../core/errors.js';
import { holdBackupLock } from './backup-lock.js';
import { copyOut } from './backup-copy.js';
import {
  BACKUP_FORMAT,
  BACKUP_FORMAT_VERSION,
  BLOB_INDEX_FILE,
  BLOBS_DIR,
  DB_DIR,
  EXCLUDED_TABLES,
  forEachLine,
  HashingMeter,
  MANIFEST_FILE,
  secretsKeyCheck,
  type Manifest,
  type ManifestTable,
} from './backup-manifest.js';

/** Blobs copied at once: hides the round trips of a remote store (Azure) without flooding it. */
const BLOB_COPY_CONCURRENCY = 4;
const PROGRESS_EVERY_BLOBS = 500;
const PENDING_INDEX = 'blobs.pending.tsv.gz';

export interface BackupOptions {
  databaseUrl: string;
  blobs: BlobStore;
  appVersion: string;
  secretsKey: string;
  /** One line per step, for the operator. */
  progress: (line: string) => void;
}

export interface BackupSummary {
  dir: string;
  tables: number;
  rows: number;
  blobs: number;
  blobBytes: number;
  /** Bytes written to the backup directory. */
  bytes: number;
  durationMs: number;
}

interface Snapshot {
  postgresVersion: string;
  migrations: string[];
  tables: ManifestTable[];
}

export class BackupService {
  constructor(private readonly options: BackupOptions) {}

  async backup(dir: string): Promise<BackupSummary> {
    const started = Date.now();
    const target = path.resolve(dir);
    await assertUsableTarget(target);
    const work = path.join(path.dirname(target), `.${path.basename(target)}.partial-${process.pid}`);
    await fs.rm(work, { recursive: true, force: true });
    await fs.mkdir(path.join(work, DB_DIR), { recursive: true });
    const client = new pg.Client({ connectionString: this.options.databaseUrl, application_name: 'mailserver-backup' });
    await client.connect();
    try {
      await holdBackupLock(client, () => this.options.progress('waiting for the blob collector to finish the deletion in progress...'));
      const snapshot = await this.dumpDatabase(client, work);
      const blobs = await this.copyBlobs(work);
      const manifest: Manifest = {
        format: BACKUP_FORMAT,
        format_version: BACKUP_FORMAT_VERSION,
        app_version: this.options.appVersion,
        created_at: new Date(started).toISOString(),
        duration_ms: Date.now() - started,
        postgres_version: snapshot.postgresVersion,
        last_migration: snapshot.migrations.at(-1)!,
        migrations: snapshot.migrations,
        storage_driver: this.options.blobs.driver,
        secrets_key_check: secretsKeyCheck(this.options.secretsKey),
        excluded_tables: { ...EXCLUDED_TABLES },
        tables: snapshot.tables,
        blobs,
      };
      await fs.writeFile(path.join(work, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`, { flush: true });
      await fs.rmdir(target).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      });
      await fs.rename(work, target);
      const rows = snapshot.tables.reduce((n, t) => n + t.rows, 0);
      const bytes = snapshot.tables.reduce((n, t) => n + t.bytes, 0) + blobs.bytes;
      return { dir: target, tables: snapshot.tables.length, rows, blobs: blobs.count, blobBytes: blobs.bytes, bytes, durationMs: Date.now() - started };
    } catch (err) {
      await fs.rm(work, { recursive: true, force: true });
      throw err;
    } finally {
      // ending the session releases the backup lock
      await client.end();
    }
  }

  /** Every table, and the list of blob-store objects, from one snapshot. */
  private async dumpDatabase(client: pg.Client, work: string): Promise<Snapshot> {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      const postgresVersion = (await client.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version;
      const migrations = await appliedMigrations(client);
      const tables: ManifestTable[] = [];
      for (const { name, columns } of await listTables(client)) {
        const table = await this.dumpTable(client, work, name, columns);
        this.options.progress(`table ${name}: ${table.rows} rows, ${formatBytes(table.bytes)}`);
        tables.push(table);
      }
      // the objects to copy: bytes not kept in their row; refcount tells a lost file that matters from garbage
      await gzipCopy(client, `COPY (SELECT key, sha256, size, refcount FROM blobs WHERE data IS NULL ORDER BY key) TO STDOUT`, path.join(work, PENDING_INDEX));
      await client.query('COMMIT');
      return { postgresVersion, migrations, tables };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }

  private async dumpTable(client: pg.Client, work: string, name: string, columns: string[]): Promise<ManifestTable> {
    const file = `${DB_DIR}/${name}.copy.gz`;
    const columnList = columns.map((c) => client.escapeIdentifier(c)).join(', ');
    const { rows, sha256, bytes } = await gzipCopy(client, `COPY ${client.escapeIdentifier(name)} (${columnList}) TO STDOUT`, path.join(work, file));
    return { name, file, columns, rows, bytes, sha256 };
  }

  /** Copies every listed object from the blob store, verified; writes the index of what was copied. */
  private async copyBlobs(work: string): Promise<Manifest['blobs']> {
    const pending = path.join(work, PENDING_INDEX);
    const totals = { count: 0, bytes: 0, skipped_unreferenced: 0 };
    const { sha256 } = await writeGzipFile(path.join(work, BLOB_INDEX_FILE), (gzip) =>
      forEachLine(pending, BLOB_COPY_CONCURRENCY, async (line) => {
        const [key, sha256, size, refcount] = line.split('\t') as [string, string, string, string];
        if (!(await this.copyBlob(work, key, sha256, Number(size), Number(refcount) > 0))) {
          totals.skipped_unreferenced++;
          return;
        }
        totals.count++;
        totals.bytes += Number(size);
        if (!gzip.write(`${key}\t${sha256}\t${size}\n`)) await once(gzip, 'drain');
        if (totals.count % PROGRESS_EVERY_BLOBS === 0) this.options.progress(`blobs: ${totals.count} copied, ${formatBytes(totals.bytes)}`);
      }),
    );
    await fs.rm(pending);
    this.options.progress(`blobs: ${totals.count} copied, ${formatBytes(totals.bytes)}`);
    return { index_file: BLOB_INDEX_FILE, index_sha256: sha256, ...totals };
  }

  /** Copies one object and checks it; false when an unreferenced object is already gone (nothing lost). */
  private async copyBlob(work: string, key: string, sha256: string, size: number, referenced: boolean): Promise<boolean> {
    assertSafeKey(key);
    let source;
    try {
      source = await this.options.blobs.read(key);
    } catch (err) {
      if (isAppError(err) && err.code === 'not_found') {
        if (!referenced) return false;
        throw new AppError('not_found', `blob ${key} is referenced by the database but missing from the blob store: the backup cannot be complete`);
      }
      throw err;
    }
    const dest = path.join(work, BLOBS_DIR, ...key.split('/'));
    await fs.mkdir(path.dirname(dest), { recursive: true });
    const meter = new HashingMeter();
    await pipeline(source, meter, createWriteStream(dest, { flush: true }));
    const actual = meter.digest();
    if (actual !== sha256 || meter.bytes !== size) {
      throw new AppError(
        'validation_failed',
        `blob ${key} in the blob store does not match its database row (sha256 ${actual}, ${meter.bytes} bytes; expected ${sha256}, ${size} bytes)`,
      );
    }
    return true;
  }
}

/** A backup goes to a new path, or an empty directory; never over anything. */
async function assertUsableTarget(target: string): Promise<void> {
  let entries: string[];
  try {
    entries = await fs.readdir(target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      await fs.access(path.dirname(target)).catch(() => {
        throw new AppError('not_found', `the parent directory of ${target} does not exist`);
      });
      return;
    }
    if (code === 'ENOTDIR') throw new AppError('conflict', `${target} exists and is not a directory`);
    throw err;
  }
  if (entries.length > 0) throw new AppError('conflict', `${target} already exists and is not empty: give a new directory for each backup`);
}

async function appliedMigrations(client: pg.Client): Promise<string[]> {
  const exists = await client.query<{ t: string | null }>(`SELECT to_regclass('public.kysely_migration')::text AS t`);
  if (!exists.rows[0]?.t) throw new AppError('not_found', 'this database has no kysely_migration table: it is not a mail server database');
  const rows = await client.query<{ name: string }>('SELECT name FROM kysely_migration ORDER BY name');
  if (rows.rows.length === 0) throw new AppError('not_found', 'this database has no migrations applied: there is nothing to back up');
  return rows.rows.map((r) => r.name);
}

/** The tables of the public schema with their stored (non-generated) columns, minus EXCLUDED_TABLES. */
export async function listTables(client: pg.ClientBase): Promise<{ name: string; columns: string[] }[]> {
  const result = await client.query<{ name: string; columns: string[] }>(`
    SELECT c.relname::text AS name, array_agg(a.attname::text ORDER BY a.attnum) AS columns
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
    GROUP BY c.relname
    ORDER BY c.relname
  `);
  return result.rows.filter((t) => !(t.name in EXCLUDED_TABLES));
}

/** Runs a COPY TO STDOUT into a gzip'd file; its row count, size and SHA-256 (of the file). */
async function gzipCopy(client: pg.Client, text: string, file: string): Promise<{ rows: number; bytes: number; sha256: string }> {
  let rows = 0;
  const written = await writeGzipFile(file, async (gzip) => {
    rows = await copyOut(client, text, gzip);
  });
  return { rows, ...written };
}

/**
 * Writes what `fill` puts into the gzip stream to `file` (flushed); the file's size and SHA-256.
 * When `fill` fails the stream is torn down before the error goes on.
 */
async function writeGzipFile(file: string, fill: (gzip: Gzip) => Promise<void>): Promise<{ bytes: number; sha256: string }> {
  const gzip: Gzip = createGzip();
  const meter = new HashingMeter();
  const written = pipeline(gzip, meter, createWriteStream(file, { flush: true }));
  try {
    await fill(gzip);
  } catch (err) {
    gzip.destroy();
    await written.catch(() => undefined);
    throw err;
  }
  gzip.end();
  await written;
  return { bytes: meter.bytes, sha256: meter.digest() };
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GB`;
}
