/**
 * RestoreService.restore(backup): puts a verified backup (backup-verify.ts) back into an empty
 * database and the configured blob store (scripts/restore, src/cli/restore.ts). The store may use
 * another driver than the backup came from (local → azure): everything goes through BlobStore.
 *
 * Order, and why:
 *   1. check the target: no other session on the database (a running server would write into a
 *      half-restored database), no migration this code does not know, and no data unless
 *      `force` (then every table is emptied first);
 *   2. the blobs, each staged, checked against its SHA-256 and published: blobs without rows
 *      are harmless orphans the collector removes if a later step fails, while rows without
 *      blobs would be lost mail;
 *   3. the schema migrated to exactly the backup's last migration, so the COPY columns match;
 *   4. every table loaded with COPY in one transaction, in foreign-key order (parents first),
 *      Kysely's migration rows replaced by the backup's own, identity sequences moved past the
 *      restored ids; all or nothing;
 *   5. the schema migrated to the latest this code knows, as a server start would.
 */
import { createReadStream } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { sql } from 'kysely';
import pg from 'pg';
import type { BlobStore } from '../blobs/blob-store.js';
import { AppError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { migrate, migrateTo, type Db } from '../db/database.js';
import { copyIn } from './backup-copy.js';
import { BLOBS_DIR, EXCLUDED_TABLES, forEachLine, parseBlobLine, type ManifestTable } from './backup-manifest.js';
import { formatBytes, listTables } from './backup.service.js';
import type { VerifiedBackup } from './backup-verify.js';

/** The application_name of the restore's own sessions, which the "server still running" check ignores. */
export const RESTORE_APPLICATION_NAME = 'mailserver-restore';

const BLOB_PUT_CONCURRENCY = 4;
const PROGRESS_EVERY_BLOBS = 500;
/** Tables whose rows do not make a database "in use": the migrator's own and runtime counters. */
const BOOKKEEPING_TABLES = new Set(['kysely_migration', ...Object.keys(EXCLUDED_TABLES)]);

export interface RestoreOptions {
  db: Db;
  /** The same database as `db`, for the COPY session. */
  databaseUrl: string;
  blobs: BlobStore;
  knownMigrations: string[];
  logger: Logger;
  progress: (line: string) => void;
}

export interface RestoreSummary {
  tables: number;
  rows: number;
  blobs: number;
  blobBytes: number;
  durationMs: number;
}

export class RestoreService {
  constructor(private readonly options: RestoreOptions) {}

  async restore(backup: VerifiedBackup, force: boolean): Promise<RestoreSummary> {
    const started = Date.now();
    const { manifest } = backup;
    const nonEmpty = await this.checkTarget(force);
    const blobs = await this.putBlobs(backup);
    if (nonEmpty.length > 0) await this.wipe();
    await migrateTo(this.options.db, manifest.last_migration, this.options.logger);
    this.options.progress(`schema at migration ${manifest.last_migration}`);
    const rows = await this.loadTables(backup);
    await migrate(this.options.db, this.options.logger);
    return { tables: manifest.tables.length, rows, blobs: blobs.count, blobBytes: blobs.bytes, durationMs: Date.now() - started };
  }

  /** Refuses a database in use, newer than this code, or holding data without `force`; returns the tables holding data. */
  private async checkTarget(force: boolean): Promise<string[]> {
    const { db } = this.options;
    const sessions = await sql<{ n: number; apps: string | null }>`
      SELECT count(*)::int AS n, string_agg(DISTINCT coalesce(nullif(application_name, ''), 'unnamed'), ', ') AS apps
      FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
        AND application_name IS DISTINCT FROM ${RESTORE_APPLICATION_NAME}
    `.execute(db);
    const { n, apps } = sessions.rows[0]!;
    if (n > 0) {
      throw new AppError('conflict', `the target database has ${n} other open session(s) (${apps ?? ''}): stop the mail server (every process using this database) before restoring`);
    }
    const applied = await appliedMigrations(db);
    const unknown = applied.filter((name) => !this.options.knownMigrations.includes(name));
    if (unknown.length > 0) {
      throw new AppError('conflict', `the target database was migrated by a newer version of the mail server (${unknown.join(', ')}): restore with that version, or into a new database`);
    }
    const nonEmpty = await tablesWithRows(db);
    if (nonEmpty.length > 0 && !force) {
      throw new AppError('conflict', `the target database is not empty (${nonEmpty.join(', ')} hold rows): restore only goes into an empty database; --force deletes everything in it first`);
    }
    return nonEmpty;
  }

  /** --force: every table emptied in one statement (the migrator's bookkeeping stays, it matches the schema). */
  private async wipe(): Promise<void> {
    const tables = (await publicTables(this.options.db)).filter((t) => t !== 'kysely_migration' && t !== 'kysely_migration_lock');
    await sql`TRUNCATE ${sql.join(tables.map((t) => sql.table(t)))} RESTART IDENTITY CASCADE`.execute(this.options.db);
    this.options.progress(`emptied ${tables.length} tables (--force)`);
  }

  private async putBlobs(backup: VerifiedBackup): Promise<{ count: number; bytes: number }> {
    const { blobs, progress } = this.options;
    const totals = { count: 0, bytes: 0 };
    await forEachLine(path.join(backup.dir, backup.manifest.blobs.index_file), BLOB_PUT_CONCURRENCY, async (line) => {
      const entry = parseBlobLine(line)!;
      const staged = await blobs.stage(createReadStream(path.join(backup.dir, BLOBS_DIR, ...entry.key.split('/'))));
      if (staged.sha256 !== entry.sha256) {
        await staged.discard();
        throw new AppError('validation_failed', `blob ${entry.key} changed in the backup directory during the restore`);
      }
      await staged.publish(entry.key);
      totals.count++;
      totals.bytes += entry.size;
      if (totals.count % PROGRESS_EVERY_BLOBS === 0) progress(`blobs: ${totals.count} stored, ${formatBytes(totals.bytes)}`);
    });
    progress(`blobs: ${totals.count} stored in the ${blobs.driver} blob store, ${formatBytes(totals.bytes)}`);
    return totals;
  }

  /** Every table in one transaction, parents before children; returns the rows loaded. */
  private async loadTables(backup: VerifiedBackup): Promise<number> {
    const client = new pg.Client({ connectionString: this.options.databaseUrl, application_name: RESTORE_APPLICATION_NAME });
    await client.connect();
    try {
      await client.query('BEGIN');
      const target = new Map((await listTables(client)).map((t) => [t.name, new Set(t.columns)]));
      for (const table of backup.manifest.tables) checkColumns(table, target.get(table.name), backup.manifest.last_migration);
      // the migrator wrote these rows moments ago; the backup's carry the original dates
      await client.query('DELETE FROM kysely_migration');
      let rows = 0;
      for (const table of await foreignKeyOrder(client, backup.manifest.tables)) {
        rows += await loadTable(client, backup.dir, table);
        this.options.progress(`table ${table.name}: ${table.rows} rows`);
      }
      await resetSequences(client);
      await client.query('COMMIT');
      return rows;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      await client.end();
    }
  }
}

function checkColumns(table: ManifestTable, columns: Set<string> | undefined, migration: string): void {
  const missing = columns ? table.columns.filter((c) => !columns.has(c)) : table.columns;
  if (!columns || missing.length > 0) {
    throw new AppError('validation_failed', `table ${table.name} of the backup does not match the schema of migration ${migration} (missing: ${columns ? missing.join(', ') : 'the table'})`);
  }
}

async function loadTable(client: pg.Client, dir: string, table: ManifestTable): Promise<number> {
  const source = createGunzip();
  const reading = pipeline(createReadStream(path.join(dir, table.file)), source);
  const columns = table.columns.map((c) => client.escapeIdentifier(c)).join(', ');
  try {
    const rows = await copyIn(client, `COPY ${client.escapeIdentifier(table.name)} (${columns}) FROM STDIN`, source);
    if (rows !== table.rows) throw new AppError('validation_failed', `table ${table.name}: ${rows} rows loaded, the manifest says ${table.rows}`);
    return rows;
  } finally {
    await reading.catch(() => undefined);
  }
}

/** Tables ordered so every table comes after the tables its foreign keys point at. */
async function foreignKeyOrder(client: pg.Client, tables: ManifestTable[]): Promise<ManifestTable[]> {
  const edges = await client.query<{ child: string; parent: string }>(`
    SELECT ch.relname::text AS child, pa.relname::text AS parent
    FROM pg_constraint k
    JOIN pg_class ch ON ch.oid = k.conrelid
    JOIN pg_class pa ON pa.oid = k.confrelid
    WHERE k.contype = 'f' AND k.connamespace = 'public'::regnamespace AND k.conrelid <> k.confrelid
  `);
  const byName = new Map(tables.map((t) => [t.name, t]));
  const parents = new Map(tables.map((t) => [t.name, new Set<string>()]));
  for (const e of edges.rows) if (byName.has(e.child) && byName.has(e.parent)) parents.get(e.child)!.add(e.parent);
  const ordered: ManifestTable[] = [];
  const done = new Set<string>();
  while (ordered.length < tables.length) {
    const ready = tables.filter((t) => !done.has(t.name) && [...parents.get(t.name)!].every((p) => done.has(p)));
    if (ready.length === 0) throw new AppError('internal', 'the foreign keys between the tables form a cycle: no load order exists', { kind: 'bug' });
    for (const t of ready) {
      ordered.push(t);
      done.add(t.name);
    }
  }
  return ordered;
}

/** Identity and serial columns: the next value goes past the largest restored one. */
async function resetSequences(client: pg.Client): Promise<void> {
  const columns = await client.query<{ tbl: string; col: string; seq: string }>(`
    SELECT t.relname::text AS tbl, a.attname::text AS col, pg_get_serial_sequence(quote_ident(t.relname), a.attname) AS seq
    FROM pg_class t
    JOIN pg_namespace n ON n.oid = t.relnamespace
    JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE n.nspname = 'public' AND t.relkind = 'r' AND pg_get_serial_sequence(quote_ident(t.relname), a.attname) IS NOT NULL
  `);
  for (const { tbl, col, seq } of columns.rows) {
    await client.query(`SELECT setval($1, coalesce((SELECT max(${client.escapeIdentifier(col)}) FROM ${client.escapeIdentifier(tbl)}), 0) + 1, false)`, [seq]);
  }
}

async function publicTables(db: Db): Promise<string[]> {
  const result = await sql<{ name: string }>`
    SELECT c.relname::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1
  `.execute(db);
  return result.rows.map((r) => r.name);
}

async function tablesWithRows(db: Db): Promise<string[]> {
  const names: string[] = [];
  for (const table of await publicTables(db)) {
    if (BOOKKEEPING_TABLES.has(table)) continue;
    const result = await sql<{ any: boolean }>`SELECT EXISTS (SELECT 1 FROM ${sql.table(table)}) AS any`.execute(db);
    if (result.rows[0]?.any) names.push(table);
  }
  return names;
}

async function appliedMigrations(db: Db): Promise<string[]> {
  const exists = await sql<{ t: string | null }>`SELECT to_regclass('public.kysely_migration')::text AS t`.execute(db);
  if (!exists.rows[0]?.t) return [];
  const rows = await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name`.execute(db);
  return rows.rows.map((r) => r.name);
}
