/**
 * Migration 0005: the table rate-limiter-flexible's PostgreSQL store keeps its counters in
 * (its own schema: key, points, expire). Created here rather than by the library at start-up:
 * several limiters creating it at once on a fresh database collide (42710 "type already
 * exists"), which made a first boot fail now and then.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE IF NOT EXISTS rate_limits (
      key varchar(255) PRIMARY KEY,
      points integer NOT NULL DEFAULT 0,
      expire bigint
    )
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE rate_limits`.execute(db);
}
