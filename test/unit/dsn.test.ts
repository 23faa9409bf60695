/**
 * RFC 3464 delivery status notifications (src/delivery/dsn.ts): the message is checked twice,
 * through mailparser (what a mail client sees) and by hand (the exact bytes: CRLF, field names,
 * folding), including the ways a hostile remote reply or address could try to add headers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { simpleParser } from 'mailparser';
import { AppError } from '../../src/core/errors.js';
import { buildDsn, headerBlock, statusFromReply, type DsnInput } from '../../src/delivery/dsn.js';

const ORIGINAL_HEADERS = 'From: Alice <alice@example.org>\r\nTo: bob@remote.test\r\nSubject: Quarterly report\r\nMessage-ID: <orig-1@example.org>\r\n';

function input(overrides: Partial<DsnInput> = {}): DsnInput {
  return {
    hostname: 'mail.example.org',
    originalSender: 'alice@example.org',
    recipients: [{ address: 'bob@remote.test', action: 'failed', status: '5.1.1', diagnostic: '550 5.1.1 <bob@remote.test>: User unknown', remoteMta: 'mx1.remote.test' }],
    originalHeaders: Buffer.from(ORIGINAL_HEADERS),
    originalMessageId: '<orig-1@example.org>',
    arrivalDate: new Date('2026-01-01T00:00:00Z'),
    lastAttemptDate: new Date('2026-01-01T01:00:00Z'),
    date: new Date('2026-01-01T01:00:05Z'),
    ...overrides,
  };
}

interface Part {
  headers: Map<string, string>;
  body: string;
}

/** Splits a message into its unfolded header fields (lower-cased names) and body. */
function split(text: string): Part {
  const end = text.indexOf('\r\n\r\n');
  const head = end === -1 ? text : text.slice(0, end);
  const headers = new Map<string, string>();
  for (const field of head.replace(/\r\n(?=[ \t])/g, '').split('\r\n')) {
    const colon = field.indexOf(':');
    headers.set(field.slice(0, colon).toLowerCase(), field.slice(colon + 1).trim());
  }
  return { headers, body: end === -1 ? '' : text.slice(end + 4) };
}

/** The top-level header fields, the MIME parts in order, and the raw text. */
function dissect(raw: Buffer): { top: Map<string, string>; parts: Part[]; text: string } {
  const text = raw.toString('utf8');
  const top = split(text);
  const boundary = /boundary="([^"]+)"/.exec(top.headers.get('content-type') ?? '')?.[1];
  assert.ok(boundary, 'a boundary parameter');
  const closing = top.body.indexOf(`\r\n--${boundary}--\r\n`);
  assert.ok(closing > 0, 'a closing delimiter');
  const parts = top.body
    .slice(0, closing)
    .split(`\r\n--${boundary}\r\n`)
    .slice(1)
    .map((chunk) => split(chunk));
  return { top: top.headers, parts, text };
}

/** The delivery-status body as blocks of unfolded fields: [per-message, ...per-recipient]. */
function reportBlocks(body: string): Map<string, string>[] {
  return body
    .replace(/\r\n(?=[ \t])/g, '')
    .split('\r\n\r\n')
    .filter((b) => b.trim() !== '')
    .map((block) => {
      const fields = new Map<string, string>();
      for (const line of block.split('\r\n').filter((l) => l !== '')) {
        const colon = line.indexOf(':');
        assert.ok(colon > 0, `a field line: ${JSON.stringify(line)}`);
        assert.ok(!fields.has(line.slice(0, colon)), `no repeated field ${line.slice(0, colon)}`);
        fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
      }
      return fields;
    });
}

describe('DSN message (RFC 3464)', () => {
  it('when a recipient failed, then mailparser sees a multipart/report with the three parts in order', async () => {
    const parsed = await simpleParser(buildDsn(input()), { keepDeliveryStatus: true });
    const type = parsed.headers.get('content-type') as { value: string; params: Record<string, string> };
    assert.equal(type.value, 'multipart/report');
    assert.equal(type.params['report-type'], 'delivery-status');
    assert.equal(parsed.subject, 'Undelivered Mail Returned to Sender');
    assert.deepEqual(parsed.from?.value, [{ address: 'MAILER-DAEMON@mail.example.org', name: 'Mail Delivery System' }]);
    assert.equal(parsed.headers.get('auto-submitted'), 'auto-replied');
    assert.equal(parsed.inReplyTo, '<orig-1@example.org>');
    assert.equal(parsed.references, '<orig-1@example.org>');
    assert.match(parsed.messageId ?? '', /^<[^@>]+@mail\.example\.org>$/);
    assert.equal(parsed.date?.toISOString(), '2026-01-01T01:00:05.000Z');
    assert.match(parsed.text ?? '', /could not be delivered/);
    assert.match((parsed.text ?? '').replace(/\s+/g, ' '), /<bob@remote\.test>: host mx1\.remote\.test said: 550 5\.1\.1 <bob@remote\.test>: User unknown/);
    assert.deepEqual(
      parsed.attachments.map((a) => a.contentType),
      ['message/delivery-status', 'text/rfc822-headers'],
    );
    assert.equal(parsed.attachments[1]!.content.toString(), ORIGINAL_HEADERS);
  });

  it('when built, then the top headers, the part headers and every report field are exact', () => {
    const { top, parts } = dissect(buildDsn(input()));
    assert.equal(top.get('from'), '"Mail Delivery System" <MAILER-DAEMON@mail.example.org>');
    assert.equal(top.get('to'), '<alice@example.org>');
    assert.equal(top.get('date'), 'Thu, 01 Jan 2026 01:00:05 +0000');
    assert.equal(top.get('mime-version'), '1.0');
    assert.match(top.get('content-type')!, /^multipart\/report; report-type=delivery-status; boundary="[^"]+"$/);
    assert.equal(parts.length, 3);
    assert.equal(parts[0]!.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(parts[1]!.headers.get('content-type'), 'message/delivery-status');
    assert.equal(parts[2]!.headers.get('content-type'), 'text/rfc822-headers');
    assert.equal(parts[2]!.body, ORIGINAL_HEADERS);

    const [perMessage, perRecipient, ...rest] = reportBlocks(parts[1]!.body);
    assert.deepEqual(Object.fromEntries(perMessage!), { 'Reporting-MTA': 'dns; mail.example.org', 'Arrival-Date': 'Thu, 01 Jan 2026 00:00:00 +0000' });
    assert.deepEqual(Object.fromEntries(perRecipient!), {
      'Final-Recipient': 'rfc822; bob@remote.test',
      Action: 'failed',
      Status: '5.1.1',
      'Remote-MTA': 'dns; mx1.remote.test',
      'Diagnostic-Code': 'smtp; 550 5.1.1 <bob@remote.test>: User unknown',
      'Last-Attempt-Date': 'Thu, 01 Jan 2026 01:00:00 +0000',
    });
    assert.equal(rest.length, 0);
  });

  it('when built, then every line ends with CRLF and none is longer than 998 characters', () => {
    const text = buildDsn(input({ originalHeaders: Buffer.from('From: a@example.org\nSubject: bare LF\n') })).toString('utf8');
    assert.ok(!/[^\r]\n/.test(text), 'no bare LF');
    assert.ok(!/\r(?!\n)/.test(text), 'no bare CR');
    assert.ok(text.endsWith('\r\n'));
    for (const line of text.split('\r\n')) assert.ok(line.length <= 998);
    assert.match(text, /\r\nFrom: a@example\.org\r\nSubject: bare LF\r\n/);
  });

  it('when a recipient is delayed, then the subject, action, status and retry date say so', async () => {
    const raw = buildDsn(
      input({
        recipients: [{ address: 'carol@remote.test', action: 'delayed', status: '4.4.1', diagnostic: 'connect to mx.remote.test: Connection refused' }],
        willRetryUntil: new Date('2026-01-04T00:00:00Z'),
      }),
    );
    const { top, parts } = dissect(raw);
    assert.equal(top.get('subject'), 'Delayed Mail (still being retried)');
    const recipient = reportBlocks(parts[1]!.body)[1]!;
    assert.equal(recipient.get('Action'), 'delayed');
    assert.equal(recipient.get('Status'), '4.4.1');
    assert.equal(recipient.get('Will-Retry-Until'), 'Sun, 04 Jan 2026 00:00:00 +0000');
    assert.equal(recipient.get('Remote-MTA'), undefined, 'no Remote-MTA when no host answered');
    assert.equal(recipient.get('Diagnostic-Code'), 'X-mail-server; connect to mx.remote.test: Connection refused');
    const parsed = await simpleParser(raw);
    assert.match((parsed.text ?? '').replace(/\s+/g, ' '), /will keep trying until Sun, 04 Jan 2026 00:00:00 \+0000/);
  });

  it('when some recipients failed and others are delayed, then one report lists each with its own action', () => {
    const { top, parts } = dissect(
      buildDsn(
        input({
          recipients: [
            { address: 'bob@remote.test', action: 'failed', status: '5.1.1', diagnostic: '550 5.1.1 unknown' },
            { address: 'carol@remote.test', action: 'delayed', status: '4.2.2', diagnostic: '452 4.2.2 mailbox full' },
          ],
          willRetryUntil: new Date('2026-01-04T00:00:00Z'),
        }),
      ),
    );
    assert.equal(top.get('subject'), 'Undelivered Mail Returned to Sender');
    const blocks = reportBlocks(parts[1]!.body);
    assert.deepEqual(
      blocks.slice(1).map((b) => [b.get('Final-Recipient'), b.get('Action'), b.get('Status'), b.get('Will-Retry-Until')]),
      [
        ['rfc822; bob@remote.test', 'failed', '5.1.1', undefined],
        ['rfc822; carol@remote.test', 'delayed', '4.2.2', 'Sun, 04 Jan 2026 00:00:00 +0000'],
      ],
    );
  });

  it('when a diagnostic is long, then its field is folded at spaces within 78 columns and unfolds to the reply', () => {
    const reply = `550 5.7.1 ${'this message was refused by policy because '.repeat(8).trim()}`;
    const { parts } = dissect(buildDsn(input({ recipients: [{ address: 'bob@remote.test', action: 'failed', status: '5.7.1', diagnostic: reply }] })));
    const lines = parts[1]!.body.split('\r\n');
    const start = lines.findIndex((l) => l.startsWith('Diagnostic-Code:'));
    assert.ok(lines[start + 1]!.startsWith(' '), 'continued on the next line');
    for (const line of lines) assert.ok(line.length <= 78, `line within 78: ${line}`);
    assert.equal(reportBlocks(parts[1]!.body)[1]!.get('Diagnostic-Code'), `smtp; ${reply}`);
  });

  it('when a diagnostic is one huge word, then it is cut to 1000 characters and no line exceeds 998', () => {
    const reply = `550 ${'x'.repeat(5000)}`;
    const raw = buildDsn(input({ recipients: [{ address: 'bob@remote.test', action: 'failed', status: '5.0.0', diagnostic: reply }] }));
    for (const line of raw.toString().split('\r\n')) assert.ok(line.length <= 998);
    const { parts } = dissect(raw);
    const code = reportBlocks(parts[1]!.body)[1]!.get('Diagnostic-Code')!;
    assert.ok(code.replace(/ /g, '').length <= 'smtp;'.length + 1000);
  });

  it('when a remote reply, address, host or message id carries CR/LF, then no header or report field is added', async () => {
    const raw = buildDsn(
      input({
        hostname: 'mail.example.org\r\nBcc: evil@attacker.test',
        originalSender: 'alice@example.org>\r\nBcc: <evil@attacker.test',
        originalMessageId: '<orig@example.org>\r\nX-Injected: yes',
        recipients: [
          {
            address: 'bob@remote.test\r\nAction: delivered',
            action: 'failed',
            status: '5.1.1\r\nStatus: 2.0.0',
            diagnostic: '550 5.1.1 no\r\n\r\nFinal-Recipient: rfc822; fake@x\r\nAction: delivered\nStatus: 2.0.0',
            remoteMta: 'mx.remote.test\r\nX-Injected: yes',
          },
        ],
      }),
    );
    const { top, parts, text } = dissect(raw);
    assert.ok(!top.has('bcc') && !top.has('x-injected'), 'no injected top header');
    assert.ok(!/\r\n(Bcc|X-Injected):/i.test(text.slice(0, text.indexOf('\r\n\r\n'))));
    const blocks = reportBlocks(parts[1]!.body);
    assert.equal(blocks.length, 2, 'no injected recipient block');
    const recipient = blocks[1]!;
    assert.deepEqual([...recipient.keys()], ['Final-Recipient', 'Action', 'Status', 'Remote-MTA', 'Diagnostic-Code', 'Last-Attempt-Date']);
    assert.equal(recipient.get('Action'), 'failed');
    assert.equal(recipient.get('Status'), '5.1.1', 'an invalid status is derived from the reply');
    assert.equal(recipient.get('Diagnostic-Code'), 'smtp; 550 5.1.1 no Final-Recipient: rfc822; fake@x Action: delivered Status: 2.0.0');
    assert.equal(recipient.get('Remote-MTA'), 'dns; mx.remote.testX-Injected:yes');
    const parsed = await simpleParser(raw);
    assert.equal(parsed.headers.get('bcc'), undefined);
    assert.equal(parsed.headers.get('x-injected'), undefined);
    assert.equal((parsed.to as { value: { address: string }[] }).value.length, 1);
  });

  it('when the status contradicts the action, then the status follows the action', () => {
    const { parts } = dissect(buildDsn(input({ recipients: [{ address: 'bob@remote.test', action: 'failed', status: '4.4.1', diagnostic: 'connection timed out' }] })));
    assert.equal(reportBlocks(parts[1]!.body)[1]!.get('Status'), '5.0.0');
  });

  it('when an address is not ASCII, then the report uses the RFC 6533 utf-8 type and the text part stays readable', async () => {
    const raw = buildDsn(input({ recipients: [{ address: 'jörg+tag@bücher.test', action: 'failed', status: '5.1.1', diagnostic: '550 5.1.1 unknown user' }] }));
    const { parts } = dissect(raw);
    assert.equal(reportBlocks(parts[1]!.body)[1]!.get('Final-Recipient'), 'utf-8; j\\x{F6}rg\\x{2B}tag@b\\x{FC}cher.test');
    assert.equal(parts[0]!.headers.get('content-transfer-encoding'), 'quoted-printable');
    assert.ok(/^[\t\r\n\x20-\x7e]*$/.test(parts[1]!.body), 'the report is US-ASCII');
    const parsed = await simpleParser(raw);
    assert.match(parsed.text ?? '', /<jörg\+tag@bücher\.test>: 550 5\.1\.1 unknown user/);
  });

  it('when the original headers hold 8-bit bytes, then they are kept and the part says 8bit', () => {
    const headers = Buffer.from('Subject: Grüße\r\nFrom: a@example.org\r\n', 'utf8');
    const raw = buildDsn(input({ originalHeaders: headers }));
    const { parts } = dissect(raw);
    assert.equal(parts[2]!.headers.get('content-transfer-encoding'), '8bit');
    assert.ok(raw.includes(headers));
  });

  it('when the original message id is missing, then there is no In-Reply-To or References', () => {
    const { top } = dissect(buildDsn(input({ originalMessageId: undefined })));
    assert.equal(top.has('in-reply-to'), false);
    assert.equal(top.has('references'), false);
  });

  it('when the original sender is the null sender, then no DSN is built (a bounce is never bounced)', () => {
    assert.throws(() => buildDsn(input({ originalSender: '' })), (err: unknown) => err instanceof AppError && err.code === 'internal' && err.kind === 'bug');
    assert.throws(() => buildDsn(input({ originalSender: ' \r\n' })), AppError);
  });

  it('when there are no recipients, or a delay has no retry limit, then it refuses', () => {
    assert.throws(() => buildDsn(input({ recipients: [] })), /at least one recipient/);
    assert.throws(() => buildDsn(input({ recipients: [{ address: 'b@remote.test', action: 'delayed', status: '4.0.0', diagnostic: 'x' }] })), /willRetryUntil/);
  });
});

describe('statusFromReply', () => {
  const cases: [string, string, string][] = [
    ['550 5.1.1 <bob@remote.test>: Recipient address rejected', '5.0.0', '5.1.1'],
    ['550-5.7.1 first line\n550 5.7.1 second line', '5.0.0', '5.7.1'],
    ['452 4.2.2 Mailbox full', '4.0.0', '4.2.2'],
    ['554 5.7.10 policy', '5.0.0', '5.7.10'],
    ['550 no enhanced code here', '4.0.0', '5.0.0'],
    ['421 Service not available', '5.0.0', '4.0.0'],
    ['550 4.1.1 contradicting class', '5.0.0', '5.0.0'],
    ['550', '4.0.0', '5.0.0'],
    ['5501 not a reply', '4.4.1', '4.4.1'],
    ['connect ECONNREFUSED 127.0.0.1:25', '4.4.1', '4.4.1'],
    ['250 2.0.0 Ok', '5.0.0', '5.0.0'],
    ['', '4.0.0', '4.0.0'],
  ];
  for (const [reply, fallback, expected] of cases) {
    it(`when the reply is ${JSON.stringify(reply)}, then the status is ${expected}`, () => {
      assert.equal(statusFromReply(reply, fallback), expected);
    });
  }
});

describe('headerBlock', () => {
  const cases: [string, string, string][] = [
    ['a CRLF message', 'From: a\r\nSubject: b\r\n\r\nbody\r\n\r\nmore', 'From: a\r\nSubject: b\r\n'],
    ['a bare LF message', 'From: a\nSubject: b\n\nbody', 'From: a\nSubject: b\n'],
    ['a message with a folded header', 'Subject: a\r\n b\r\n\r\nbody', 'Subject: a\r\n b\r\n'],
    ['all header, no body', 'From: a\r\nSubject: b\r\n', 'From: a\r\nSubject: b\r\n'],
    ['empty', '', ''],
  ];
  for (const [name, raw, expected] of cases) {
    it(`when the message is ${name}, then the header block is the bytes before the first empty line`, () => {
      assert.equal(headerBlock(Buffer.from(raw)).toString(), expected);
    });
  }
});
