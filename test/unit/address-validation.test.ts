/**
 * Table-driven tests of the API's address and header-text validation
 * (src/services/address-validation.ts): what is accepted and how it is read, and every class of
 * refused input with the field and element named in the error details.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError } from '../../src/core/errors.js';
import { parseAddressList, parseRecipients, validateHeaderText } from '../../src/services/address-validation.js';

describe('parseAddressList', () => {
  const accepted: [string, { name: string; address: string }][] = [
    ['alice@acme.test', { name: '', address: 'alice@acme.test' }],
    ['  alice@ACME.Test  ', { name: '', address: 'alice@acme.test' }],
    ['Alice.Smith+tag@acme.test', { name: '', address: 'Alice.Smith+tag@acme.test' }],
    ['Alice Smith <alice@acme.test>', { name: 'Alice Smith', address: 'alice@acme.test' }],
    ['<alice@acme.test>', { name: '', address: 'alice@acme.test' }],
    ['"Last, First" <first@acme.test>', { name: 'Last, First', address: 'first@acme.test' }],
    ['"Say \\"hi\\"" <hi@acme.test>', { name: 'Say "hi"', address: 'hi@acme.test' }],
    ['José Müller <jose@acme.test>', { name: 'José Müller', address: 'jose@acme.test' }],
    ['"Ünïcödé; with: specials" <u@acme.test>', { name: 'Ünïcödé; with: specials', address: 'u@acme.test' }],
    ["o'neil@sub.acme.test.", { name: '', address: "o'neil@sub.acme.test" }],
    ['x@xn--bcher-kva.test', { name: '', address: 'x@xn--bcher-kva.test' }],
  ];
  for (const [input, expected] of accepted) {
    it(`when given ${JSON.stringify(input)}, then it reads ${JSON.stringify(expected)}`, () => {
      assert.deepEqual(parseAddressList('to', input), [expected]);
    });
  }

  const refused: [string, string, RegExp][] = [
    ['CRLF header injection', 'a@x.test\r\nBcc: y@z.test', /control characters/],
    ['bare LF', 'a@x.test\nBcc: y@z.test', /control characters/],
    ['bare CR', 'a@x.test\rBcc: y@z.test', /control characters/],
    ['NUL', 'a@x.test\u0000', /control characters/],
    ['ESC', 'Name\u001b <a@x.test>', /control characters/],
    ['TAB', 'a@x.test\t', /control characters/],
    ['DEL', 'a\u007f@x.test', /control characters/],
    ['Unicode line separator', 'Name\u2028 <a@x.test>', /control characters/],
    ['two addresses', 'a@x.test, b@y.test', /more than one address/],
    ['two angle addresses', '<a@x.test> <b@y.test>', /more than one <address>/],
    ['group', 'undisclosed-recipients:;', /groups/],
    ['group with members', 'friends: b@c.test;', /groups/],
    ['semicolon list', 'a@x.test; b@y.test', /groups/],
    ['comment', 'a@x.test (Alice)', /comments/],
    ['source route', '@relay.test:victim@x.test', /source routes/],
    ['source route in brackets', '<@relay.test:victim@x.test>', /source routes/],
    ['address literal', 'victim@[127.0.0.1]', /address literals/],
    ['IPv6 literal', 'victim@[IPv6:::1]', /address literals/],
    ['quoted local part with @', '"victim@gmail.com"@x.test', /quoted local parts/],
    ['quoted local part in brackets', 'Name <"a@b"@x.test>', /quoted local parts/],
    ['@ in a quoted display name', '"boss@acme.test" <evil@x.test>', /@ in the display name/],
    ['@ in a plain display name', 'boss@acme.test <evil@x.test>', /@ in the display name/],
    ['empty local part', '@x.test', /local part/],
    ['empty domain', 'a@', /missing the domain/],
    ['no @', 'alice', /no @/],
    ['two @', 'a@b@x.test', /more than one @/],
    ['single-label domain', 'a@localhost', /invalid domain/],
    ['empty element', '   ', /is empty/],
    ['empty brackets', 'Name <>', /empty address/],
    ['unterminated quote', '"Alice <a@x.test>', /unterminated/],
    ['text after >', '<a@x.test> trailing', /after the closing/],
    ['unmatched <', 'Name <a@x.test', /unmatched </],
    ['percent hack', 'victim%gmail.com@x.test', /routing characters/],
    ['bang path', 'gmail.com!victim@x.test', /routing characters/],
    ['international domain', 'a@bücher.test', /international domain/],
    ['non-ASCII local part', 'jösé@x.test', /non-ASCII/],
    ['white space inside', 'a b@x.test', /white space|characters a display name/],
    ['overlong address', `${'a'.repeat(64)}@${'b'.repeat(50)}.${'c'.repeat(50)}.${'d'.repeat(50)}.${'e'.repeat(50)}.test`, /longer than 254/],
    ['overlong local part', `${'a'.repeat(65)}@x.test`, /local part longer than 64/],
  ];
  for (const [label, input, message] of refused) {
    it(`when given a ${label}, then it is refused with validation_failed naming the element`, () => {
      assert.throws(
        () => parseAddressList('to', ['ok@x.test', input]),
        (err: unknown) => {
          assert.ok(err instanceof AppError);
          assert.equal(err.code, 'validation_failed');
          assert.match(err.message, message);
          const [detail] = err.details as { in: string; path: string; value: string }[];
          assert.equal(detail!.path, 'to.1');
          assert.equal(detail!.value, JSON.stringify(input.slice(0, 120)));
          return true;
        },
      );
    });
  }

  it('when a string is given, then it is one element (path names the field alone)', () => {
    assert.throws(
      () => parseAddressList('cc', 'a@x.test, b@y.test'),
      (err: unknown) => err instanceof AppError && (err.details as { path: string }[])[0]!.path === 'cc',
    );
  });

  it('when the value is absent, empty or an empty array, then there are no addresses', () => {
    assert.deepEqual(parseAddressList('to', undefined), []);
    assert.deepEqual(parseAddressList('to', ''), []);
    assert.deepEqual(parseAddressList('to', []), []);
  });

  it('when more addresses than allowed are given, then they are refused', () => {
    assert.throws(() => parseAddressList('from', ['a@x.test', 'b@x.test'], 1), /too many addresses/);
  });
});

describe('parseRecipients', () => {
  it('when to, cc and bcc repeat an address, then the envelope has it once', () => {
    const r = parseRecipients({ to: ['A@x.test', 'b@x.test'], cc: 'a@X.test', bcc: ['c@x.test', 'B@x.test'] }, 10);
    assert.deepEqual(r.envelope, ['A@x.test', 'b@x.test', 'c@x.test']);
    assert.equal(r.bcc.length, 2);
  });

  it('when there are more recipients than MAX_RECIPIENTS in total, then they are refused', () => {
    assert.throws(
      () => parseRecipients({ to: ['a@x.test', 'b@x.test'], cc: ['c@x.test'], bcc: ['d@x.test'] }, 3),
      (err: unknown) => err instanceof AppError && err.code === 'validation_failed' && /too many recipients: 4/.test(err.message),
    );
  });
});

describe('validateHeaderText', () => {
  it('when the text is plain (TAB and Unicode allowed), then it is returned as is', () => {
    assert.equal(validateHeaderText('subject', 'Grüße\tfrom the team'), 'Grüße\tfrom the team');
  });
  for (const [label, value] of [
    ['CRLF', 'Hello\r\nBcc: victim@x.test'],
    ['LF', 'Hello\nX-Evil: 1'],
    ['NUL', 'Hello\u0000'],
    ['C1 control', 'Hello\u0085there'],
  ] as const) {
    it(`when the text holds ${label}, then it is refused naming the field`, () => {
      assert.throws(
        () => validateHeaderText('subject', value),
        (err: unknown) => err instanceof AppError && err.code === 'validation_failed' && (err.details as { path: string }[])[0]!.path === 'subject',
      );
    });
  }
});
