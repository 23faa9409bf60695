/**
 * parseMailQuery(): the webmail's Gmail-like search box (`q` of GET /api/webmail/messages) turned
 * into a list of conditions, all of which must hold. WebmailService resolves `in:` folder names
 * and webmail.repository.ts turns the conditions into SQL.
 *
 * Terms are separated by whitespace; a value may be "quoted" to hold spaces. Operators:
 * from: to: cc: subject: (substring, case-insensitive), has:attachment, is:unread|read|flagged|
 * starred|answered, before:/after: a date (YYYY-MM-DD or YYYY/MM/DD, UTC; before is exclusive,
 * after inclusive), in:<folder> (or in:anywhere). Anything else is free text for PostgreSQL
 * full-text search (websearch_to_tsquery, which understands "phrases", `or` and `-word`); a word
 * that merely looks like an operator (`http://x`, `re:`) is free text too. A known operator with a
 * bad value is refused with validation_failed naming the term, so a typo never silently widens or
 * empties a search.
 */
import { AppError } from '../core/errors.js';

export const MAX_QUERY_CHARS = 500;

export type MailCondition =
  | { kind: 'from' | 'to' | 'cc' | 'subject'; value: string }
  | { kind: 'has_attachment' }
  | { kind: 'flag'; flag: 'seen' | 'flagged' | 'answered'; value: boolean }
  | { kind: 'before' | 'after'; date: Date }
  | { kind: 'in'; folder: string }
  | { kind: 'text'; value: string };

const TEXT_OPERATORS = new Set(['from', 'to', 'cc', 'subject']);
const OPERATORS = new Set([...TEXT_OPERATORS, 'has', 'is', 'before', 'after', 'in']);

const IS_VALUES: Record<string, { flag: 'seen' | 'flagged' | 'answered'; value: boolean }> = {
  unread: { flag: 'seen', value: false },
  read: { flag: 'seen', value: true },
  flagged: { flag: 'flagged', value: true },
  starred: { flag: 'flagged', value: true },
  answered: { flag: 'answered', value: true },
};

/** One whitespace-separated term: an optional operator and its value, or a free-text word or "phrase". */
const TERM = /(?:([A-Za-z]+):("[^"]*"?|[^\s"]*)|("[^"]*"?)|(\S+))/y;

export function parseMailQuery(q: string): MailCondition[] {
  if (q.length > MAX_QUERY_CHARS) throw bad(`the search is longer than ${MAX_QUERY_CHARS} characters`);
  const conditions: MailCondition[] = [];
  const text: string[] = [];
  let at = 0;
  while (at < q.length) {
    if (/\s/.test(q[at]!)) {
      at++;
      continue;
    }
    TERM.lastIndex = at;
    const m = TERM.exec(q);
    if (!m) throw bad(`cannot read the search at "${q.slice(at, at + 20)}"`);
    at = TERM.lastIndex;
    const [whole, op, value, phrase] = m;
    if (op !== undefined && OPERATORS.has(op.toLowerCase())) {
      conditions.push(operator(op.toLowerCase(), unquote(value ?? ''), whole));
    } else if (phrase !== undefined) {
      text.push(phrase.endsWith('"') && phrase.length > 1 ? phrase : `${phrase}"`);
    } else {
      text.push(whole);
    }
  }
  const words = text.join(' ').trim();
  if (words !== '') conditions.push({ kind: 'text', value: words });
  return conditions;
}

function operator(op: string, value: string, term: string): MailCondition {
  if (TEXT_OPERATORS.has(op)) {
    if (value.trim() === '') throw bad(`"${term}" needs a value, e.g. ${op}:someone`);
    return { kind: op as 'from' | 'to' | 'cc' | 'subject', value: value.trim() };
  }
  switch (op) {
    case 'has':
      if (value.toLowerCase() !== 'attachment') throw bad(`"${term}": only has:attachment is known`);
      return { kind: 'has_attachment' };
    case 'is': {
      const flag = IS_VALUES[value.toLowerCase()];
      if (!flag) throw bad(`"${term}": use is:unread, is:read, is:flagged, is:starred or is:answered`);
      return { kind: 'flag', ...flag };
    }
    case 'before':
    case 'after':
      return { kind: op, date: parseDay(value, term) };
    default:
      if (value.trim() === '') throw bad(`"${term}" needs a folder name, e.g. in:inbox`);
      return { kind: 'in', folder: value.trim() };
  }
}

/** Midnight UTC of a real calendar day written YYYY-MM-DD or YYYY/MM/DD. */
function parseDay(value: string, term: string): Date {
  const m = /^(\d{4})[-/](\d{2})[-/](\d{2})$/.exec(value);
  const date = m ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : null;
  if (!m || !date || date.getUTCFullYear() !== Number(m[1]) || date.getUTCMonth() !== Number(m[2]) - 1 || date.getUTCDate() !== Number(m[3])) {
    throw bad(`"${term}": the date must be written YYYY-MM-DD (or YYYY/MM/DD)`);
  }
  return date;
}

function unquote(value: string): string {
  if (!value.startsWith('"')) return value;
  return value.slice(1, value.endsWith('"') && value.length > 1 ? -1 : undefined);
}

export function bad(message: string): AppError {
  return new AppError('validation_failed', `invalid search: ${message}`, { details: [{ in: 'query', path: 'q', message }] });
}

