/**
 * Named prepared statements for the few hot statements that ask for them. A statement whose
 * SQL text starts with PREPARED is sent under a name derived from its text, so each pooled
 * connection parses and plans it once and afterwards only binds and executes it. Everything else
 * goes through unchanged (kysely sends unnamed statements, parsed and planned every time).
 *
 * Why: the ingest's one statement (ingest.repository.ts) is large; parsing and planning it on
 * every message was a measured share of PostgreSQL's CPU per message. Only statements of a
 * bounded number of shapes may be marked: every distinct text stays prepared on every connection.
 * A DATABASE_URL through a pooler must keep prepared statements per client connection (PgBouncer
 * 1.21+ in transaction mode with max_prepared_statements set, or session mode).
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';

export const PREPARED = '/* prepared */ ';

/** Statement names by SQL text; the marked shapes are few, this is a guard against a bad caller. */
const names = new Map<string, string>();
const MAX_NAMES = 1000;

function nameOf(text: string): string {
  let name = names.get(text);
  if (!name) {
    if (names.size >= MAX_NAMES) names.clear();
    name = `p_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    names.set(text, name);
  }
  return name;
}

type QueryFn = (...args: unknown[]) => unknown;

/** Makes every client of `pool` send marked statements as named prepared statements. */
export function usePreparedStatements(pool: pg.Pool): void {
  pool.on('connect', (client) => {
    const target = client as unknown as { query: QueryFn };
    const query = target.query.bind(client);
    target.query = (...args: unknown[]) => {
      const [text, values, ...rest] = args;
      if (typeof text === 'string' && text.startsWith(PREPARED)) return query({ name: nameOf(text), text, values }, ...rest);
      return query(...args);
    };
  });
}
