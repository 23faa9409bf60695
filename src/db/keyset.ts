/**
 * Keyset pagination for lists ordered newest first by (timestamp, id): the condition that
 * selects the rows strictly after a cursor position. The timestamp columns are kept to
 * milliseconds (migration 0004), so a position carried through a JavaScript Date compares exactly.
 */
import { sql, type RawBuilder } from 'kysely';

export interface KeysetPosition {
  at: Date;
  id: string;
}

export function olderThan(column: string, before: KeysetPosition): RawBuilder<boolean> {
  return sql<boolean>`(${sql.ref(column)}, id) < (${before.at}, ${before.id}::uuid)`;
}
