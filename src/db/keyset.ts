/**
 * Keyset pagination for lists ordered newest first by (timestamp, id): the condition that
 * selects the rows strictly after a cursor position. The timestamp columns are kept to
 * milliseconds (migration 0004), so a position carried through a JavaScript Date compares exactly.
 */
import { sql, type RawBuilder, type SelectQueryBuilder } from 'kysely';

export interface KeysetPosition {
  at: Date;
  id: string;
}

export function olderThan(column: string, before: KeysetPosition): RawBuilder<boolean> {
  return sql<boolean>`(${sql.ref(column)}, id) < (${before.at}, ${before.id}::uuid)`;
}

/**
 * Applies one page of a newest-first list to a query whose table has `created_at` and `id`:
 * rows strictly after `before`, ordered (created_at DESC, id DESC), limit + 1 rows (the extra
 * row tells the caller a next page exists; see api/pagination.ts page()).
 */
export function newestFirst<DB, TB extends keyof DB, O>(
  query: SelectQueryBuilder<DB, TB, O>,
  before: KeysetPosition | null,
  limit: number,
): SelectQueryBuilder<DB, TB, O> {
  return query
    .$if(before !== null, (q) => q.where(olderThan('created_at', before!)))
    .orderBy(sql`created_at`, 'desc')
    .orderBy(sql`id`, 'desc')
    .limit(limit + 1);
}
