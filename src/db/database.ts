/**
 * Opens the database: the PostgreSQL at DATABASE_URL, or the embedded one. Runs the migrations
 * and refuses to continue when the server would not keep committed transactions across a crash
 * (fsync or synchronous_commit off), because SMTP answers 250 only after a commit.
 */
import { Kysely, PostgresDialect, sql } from 'kysely';
import { Migrator, type Migration, type MigrationProvider } from 'kysely/migration';
import pg from 'pg';
import type { Logger } from '../core/logger.js';
import { usePreparedStatements } from './prepared-statements.js';
import * as m0001 from './migrations/0001-initial.js';
import * as m0002 from './migrations/0002-quota-ledger.js';
import * as m0003 from './migrations/0003-inline-blobs.js';
import * as m0004 from './migrations/0004-millisecond-timestamps.js';
import * as m0005 from './migrations/0005-rate-limits.js';
import * as m0006 from './migrations/0006-outbound.js';
import * as m0007 from './migrations/0007-mailbox-list-index.js';
import type { Database } from './types.js';

export type Db = Kysely<Database>;

// bigint columns (sizes, quotas) come back as strings unless told otherwise; our sizes stay far
// below 2^53, so numbers are safe and simpler everywhere above this layer
pg.types.setTypeParser(pg.types.builtins.INT8, (v: string) => Number(v));

const MIGRATIONS: Record<string, Migration> = {
  '0001-initial': m0001,
  '0002-quota-ledger': m0002,
  '0003-inline-blobs': m0003,
  '0004-millisecond-timestamps': m0004,
  '0005-rate-limits': m0005,
  '0006-outbound': m0006,
  '0007-mailbox-list-index': m0007,
};

class StaticMigrationProvider implements MigrationProvider {
  getMigrations(): Promise<Record<string, Migration>> {
    return Promise.resolve(MIGRATIONS);
  }
}

export interface OpenDatabaseOptions {
  url: string;
  poolSize: number;
  logger: Logger;
}

export function createDb(options: OpenDatabaseOptions): { db: Db; pool: pg.Pool } {
  const pool = new pg.Pool({ connectionString: options.url, max: options.poolSize });
  // an idle client losing its connection must not crash the process; the next query reconnects
  pool.on('error', (err) => options.logger.warn({ err: err.message }, 'idle database connection lost'));
  usePreparedStatements(pool);
  return { db: new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }), pool };
}

/** Refuses to run on a server that may lose committed transactions. */
export async function checkDurability(db: Db): Promise<void> {
  const rows = await sql<{ name: string; setting: string }>`
    SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit')
  `.execute(db);
  const bad = rows.rows.filter((r) => r.setting === 'off').map((r) => `${r.name}=off`);
  if (bad.length > 0) {
    throw new Error(
      `PostgreSQL has ${bad.join(' and ')}: a crash could lose mail already answered with 250. ` +
        'Turn them on (postgresql.conf) before starting the mail server.',
    );
  }
}

/** The migrations this code knows, oldest first (a backup names the last one its schema had). */
export function migrationNames(): string[] {
  return Object.keys(MIGRATIONS).sort();
}

/** Migrates up or down to exactly `name` (restore: the schema a backup was taken at). */
export async function migrateTo(db: Db, name: string, logger: Logger): Promise<void> {
  const migrator = new Migrator({ db, provider: new StaticMigrationProvider() });
  const { error, results } = await migrator.migrateTo(name);
  for (const r of results ?? []) {
    if (r.status === 'Success') logger.info({ event: 'db.migrated', migration: r.migrationName, direction: r.direction }, 'migration applied');
  }
  if (error) throw new Error(`database migration to ${name} failed`, { cause: error });
}

export async function migrate(db: Db, logger: Logger): Promise<void> {
  const migrator = new Migrator({ db, provider: new StaticMigrationProvider() });
  const { error, results } = await migrator.migrateToLatest();
  for (const r of results ?? []) {
    if (r.status === 'Success') logger.info({ event: 'db.migrated', migration: r.migrationName }, 'migration applied');
  }
  if (error) throw new Error('database migration failed', { cause: error });
}
