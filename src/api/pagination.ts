/**
 * Cursor pagination for list endpoints (API.md: `?limit=50&cursor=<opaque>` →
 * `{data, next_cursor}`). A cursor is the (timestamp, id) of the last row returned, base64url
 * encoded; lists are ordered newest first by (created_at DESC, id DESC), so the next page is
 * every row strictly before that pair. A malformed cursor is a 400, never a silent first page.
 */
import { z } from 'zod';
import { AppError } from '../core/errors.js';

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 200;

export const pageQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(MAX_PAGE_SIZE).default(DEFAULT_PAGE_SIZE),
  cursor: z.string().max(200).optional(),
});

export interface CursorPosition {
  at: Date;
  id: string;
}

export function encodeCursor(p: CursorPosition): string {
  return Buffer.from(JSON.stringify([p.at.toISOString(), p.id])).toString('base64url');
}

export function decodeCursor(cursor: string | undefined): CursorPosition | null {
  if (cursor === undefined) return null;
  try {
    const [at, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [unknown, unknown];
    const date = new Date(typeof at === 'string' ? at : NaN);
    if (Number.isNaN(date.getTime()) || typeof id !== 'string' || !/^[0-9a-f-]{36}$/i.test(id)) throw new Error('bad cursor');
    return { at: date, id };
  } catch {
    throw new AppError('validation_failed', 'invalid cursor: pass the next_cursor of a previous page unchanged', {
      details: [{ in: 'query', path: 'cursor', message: 'invalid cursor' }],
    });
  }
}

/** Builds `{data, next_cursor}` from rows fetched with limit + 1 (the extra row says a next page exists). */
export function page<T>(rows: T[], limit: number, position: (row: T) => CursorPosition): { data: T[]; next_cursor: string | null } {
  const data = rows.slice(0, limit);
  const last = data[data.length - 1];
  return { data, next_cursor: rows.length > limit && last ? encodeCursor(position(last)) : null };
}
