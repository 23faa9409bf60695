import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError, ERROR_CODES } from '../../src/core/errors.js';
import { SMTP_REPLIES, smtpReplyFor, toSmtpError } from '../../src/smtp/reply-codes.js';

describe('SMTP reply table', () => {
  const expected: [string, number, string][] = [
    ['mailbox_not_found', 550, '5.1.1'],
    ['relay_denied', 550, '5.7.1'],
    ['quota_exceeded', 452, '4.2.2'],
    ['too_many_recipients', 452, '4.5.3'],
    ['message_too_large', 552, '5.3.4'],
    ['bare_line_ending', 550, '5.5.2'],
    ['mail_loop', 554, '5.4.6'],
    ['too_many_connections', 421, '4.7.0'],
    ['storage_unavailable', 451, '4.3.0'],
    ['database_unavailable', 451, '4.3.0'],
  ];
  for (const [code, basic, enhanced] of expected) {
    it(`when a service fails with ${code}, then the reply is ${basic} ${enhanced}`, () => {
      const reply = smtpReplyFor(new AppError(code as never, 'x'));
      assert.equal(reply.code, basic);
      assert.equal(reply.enhanced, enhanced);
    });
  }

  it('when every error code is listed, then each has a reply whose class matches its basic code', () => {
    for (const code of ERROR_CODES) {
      const r = SMTP_REPLIES[code];
      assert.equal(String(r.code)[0], r.enhanced[0], `${code}: ${r.code} vs ${r.enhanced}`);
    }
  });

  it('when the error is not an AppError, then the reply is 451 4.3.0 with no internals', () => {
    const reply = smtpReplyFor(new Error('connect ECONNREFUSED 127.0.0.1:5432'));
    assert.deepEqual([reply.code, reply.enhanced], [451, '4.3.0']);
    assert.ok(!reply.text.includes('ECONNREFUSED'));
  });

  it('when a temporary infrastructure error has a detailed message, then the client sees a generic text', () => {
    const reply = smtpReplyFor(new AppError('storage_unavailable', 'EIO on /data/blobs/tmp/abc'));
    assert.ok(!reply.text.includes('/data'));
  });

  it('when an error is turned into an smtp-server error, then responseCode and the enhanced prefix are set', () => {
    const err = toSmtpError({ code: 550, enhanced: '5.1.1', text: 'no such user' });
    assert.equal(err.responseCode, 550);
    assert.equal(err.message, '5.1.1 no such user');
  });
});
