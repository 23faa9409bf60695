/**
 * Table-driven tests of the webmail search parser (src/services/mail-search.ts): every operator,
 * quoting, free text, things that only look like operators, and every class of bad value refused
 * with validation_failed naming the term (details path `q`).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError } from '../../src/core/errors.js';
import { likeContains } from '../../src/db/webmail.repository.js';
import { MAX_QUERY_CHARS, parseMailQuery, type MailCondition } from '../../src/services/mail-search.js';

describe('parseMailQuery', () => {
  const day = (s: string): Date => new Date(`${s}T00:00:00.000Z`);
  const accepted: [string, MailCondition[]][] = [
    ['', []],
    ['   ', []],
    ['hello', [{ kind: 'text', value: 'hello' }]],
    ['hello world', [{ kind: 'text', value: 'hello world' }]],
    ['"exact phrase" more', [{ kind: 'text', value: '"exact phrase" more' }]],
    ['"unclosed phrase', [{ kind: 'text', value: '"unclosed phrase"' }]],
    ['from:alice', [{ kind: 'from', value: 'alice' }]],
    ['FROM:Alice', [{ kind: 'from', value: 'Alice' }]],
    ['from:"Alice Smith"', [{ kind: 'from', value: 'Alice Smith' }]],
    ['to:bob cc:carol', [{ kind: 'to', value: 'bob' }, { kind: 'cc', value: 'carol' }]],
    ['subject:"quarterly report" budget', [{ kind: 'subject', value: 'quarterly report' }, { kind: 'text', value: 'budget' }]],
    ['has:attachment', [{ kind: 'has_attachment' }]],
    ['has:Attachment', [{ kind: 'has_attachment' }]],
    ['is:unread', [{ kind: 'flag', flag: 'seen', value: false }]],
    ['is:read', [{ kind: 'flag', flag: 'seen', value: true }]],
    ['is:flagged', [{ kind: 'flag', flag: 'flagged', value: true }]],
    ['is:starred', [{ kind: 'flag', flag: 'flagged', value: true }]],
    ['is:answered', [{ kind: 'flag', flag: 'answered', value: true }]],
    ['before:2024-03-01', [{ kind: 'before', date: day('2024-03-01') }]],
    ['after:2024/02/29', [{ kind: 'after', date: day('2024-02-29') }]],
    ['in:inbox', [{ kind: 'in', folder: 'inbox' }]],
    ['in:"My Projects"', [{ kind: 'in', folder: 'My Projects' }]],
    ['in:anywhere x', [{ kind: 'in', folder: 'anywhere' }, { kind: 'text', value: 'x' }]],
    // not operators: free text as typed
    ['http://example.org re:meeting', [{ kind: 'text', value: 'http://example.org re:meeting' }]],
    ['100% under_score', [{ kind: 'text', value: '100% under_score' }]],
  ];
  for (const [q, expected] of accepted) {
    it(`when the search is ${JSON.stringify(q)}, then it reads ${JSON.stringify(expected)}`, () => {
      assert.deepEqual(parseMailQuery(q), expected);
    });
  }

  const refused: [string, RegExp][] = [
    ['before:yesterday', /before:yesterday/],
    ['after:2024-02-30', /after:2024-02-30/],
    ['before:2024-1-5', /before:2024-1-5/],
    ['has:pony', /has:pony/],
    ['is:whatever', /is:whatever/],
    ['from:', /from:/],
    ['subject:""', /subject:""/],
    ['in:', /in:/],
    ['x'.repeat(MAX_QUERY_CHARS + 1), /longer than 500/],
  ];
  for (const [q, message] of refused) {
    it(`when the search is ${JSON.stringify(q.slice(0, 40))}, then validation_failed names it`, () => {
      assert.throws(
        () => parseMailQuery(q),
        (err: unknown) => {
          assert.ok(err instanceof AppError);
          assert.equal(err.code, 'validation_failed');
          assert.match(err.message, message);
          assert.deepEqual((err.details as { path: string }[]).map((d) => d.path), ['q']);
          return true;
        },
      );
    });
  }
});

describe('likeContains', () => {
  it('when a value holds LIKE wildcards and backslashes, then they are escaped', () => {
    assert.equal(likeContains('50%_off\\'), '%50\\%\\_off\\\\%');
  });
});
