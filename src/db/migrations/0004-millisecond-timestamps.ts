/**
 * Migration 0004: the timestamps lists are ordered and paginated by are kept to milliseconds.
 * A cursor carries (timestamp, id) through JavaScript, whose Date has millisecond precision;
 * with PostgreSQL's microseconds, two rows within one millisecond could straddle a page and the
 * second be skipped. Rounded at write time, a cursor round-trips exactly.
 */
import { sql, type Kysely } from 'kysely';

const COLUMNS: [table: string, column: string][] = [
  ['users', 'created_at'],
  ['domains', 'created_at'],
  ['audit_logs', 'created_at'],
  ['messages', 'received_at'],
  ['providers', 'created_at'],
  ['outbound', 'created_at'],
];

export async function up(db: Kysely<unknown>): Promise<void> {
  for (const [table, column] of COLUMNS) {
    await sql`ALTER TABLE ${sql.table(table)} ALTER COLUMN ${sql.ref(column)} TYPE timestamptz(3)`.execute(db);
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const [table, column] of COLUMNS) {
    await sql`ALTER TABLE ${sql.table(table)} ALTER COLUMN ${sql.ref(column)} TYPE timestamptz`.execute(db);
  }
}
