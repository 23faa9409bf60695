/**
 * Real .eml specimens (test/fixtures, listed in its README) sent over a real SMTP session and read
 * back: the blob must hold exactly the bytes sent (after dot-unstuffing), the raw readback must be
 * our trace header fields followed by those bytes, and the parsed fields and attachments must be
 * right. Attachment bytes are decoded here independently of mailparser (base64 / quoted-printable
 * straight from the specimen) and compared with what was stored. Everything runs twice: with the
 * default inline limit (small blobs kept in their database row) and with BLOB_INLINE_MAX_BYTES=0
 * (every blob in the blob store); the bytes read back must be the same either way.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readAll } from '../../src/blobs/blob-store.js';
import type { AddressJson, Mailbox } from '../../src/db/types.js';
import { seedMailbox, startTestServer, type TestServer } from '../helpers/harness.js';
import { RawSmtp } from '../helpers/smtp-client.js';

// compiled to dist/test/integration: the specimens stay in the source tree
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const FIXTURES = path.join(ROOT, 'test/fixtures');
const RCPT = 'alice@acme.test';

interface ExpectedAttachment {
  filename: string | null;
  contentType: string;
  disposition: string | null;
  contentId: string | null;
  /** Text inside the part's own header block that identifies it in the specimen. */
  marker: string;
}

interface Specimen {
  file: string;
  subject: string;
  from: AddressJson;
  to: string[];
  sentAt: string | null;
  text: string | RegExp | null;
  html?: RegExp;
  hasAttachments: boolean;
  attachments: ExpectedAttachment[];
  mailFrom?: string;
  smtputf8?: boolean;
  nul?: boolean;
}

const SPECIMENS: Specimen[] = [
  {
    file: 'plain-text.eml',
    subject: 'Plain text specimen',
    from: { name: 'Sender Example', address: 'sender@example.org' },
    to: [RCPT],
    sentAt: '2026-03-03T09:15:00.000Z',
    text: 'Hello Alice,\n\nThis is a plain US-ASCII message with a trailing signature.\n\n-- \nSender\n',
    hasAttachments: false,
    attachments: [],
  },
  {
    file: 'alternative-text-html.eml',
    subject: 'Alternative text and HTML',
    from: { name: 'Newsletter', address: 'news@example.org' },
    to: [RCPT],
    sentAt: '2026-03-04T08:00:00.000Z',
    text: 'The plain version: café au lait, €3.50, and a soft line break that joins.\n',
    html: /<b>HTML<\/b> version: café au lait, €3\.50\./,
    hasAttachments: false,
    attachments: [],
  },
  {
    file: 'mixed-binary-and-text-attachments.eml',
    subject: 'Quarterly data (two attachments)',
    from: { name: 'Reports', address: 'reports@example.org' },
    to: [RCPT],
    sentAt: '2026-03-05T17:00:00.000Z',
    text: 'Two files attached: a binary dump and some notes.\n',
    hasAttachments: true,
    attachments: [
      { filename: 'dump.bin', contentType: 'application/octet-stream', disposition: 'attachment', contentId: null, marker: 'filename="dump.bin"' },
      { filename: 'notes.txt', contentType: 'text/plain', disposition: 'attachment', contentId: null, marker: 'filename="notes.txt"' },
    ],
  },
  {
    file: 'related-inline-image.eml',
    subject: 'Inline logo',
    from: { name: 'Designer', address: 'design@example.org' },
    to: [RCPT],
    sentAt: '2026-03-06T09:30:00.000Z',
    text: 'Our logo is shown in the HTML version.',
    html: /<img src="cid:logo\.4@example\.org"/,
    // an inline part with a Content-ID is part of the HTML, not an attachment to list
    hasAttachments: false,
    attachments: [{ filename: 'logo.png', contentType: 'image/png', disposition: 'inline', contentId: '<logo.4@example.org>', marker: 'filename="logo.png"' }],
  },
  {
    file: 'encoded-words-latin1-cp1252.eml',
    // the whitespace between two adjacent encoded-words is dropped (RFC 2047 section 6.2)
    subject: 'Café crème à la française Preis €5 “günstig”…',
    from: { name: 'André Müller', address: 'andre@example.de' },
    to: [RCPT],
    sentAt: '2026-03-07T17:45:00.000Z',
    text: 'Grüße aus Köln, à bientôt. Ça coûte 5 ¤ (ISO-8859-1 hat kein Euro).\nZweite Zeile: äöüß ÄÖÜ éèê ñ ø å.\n',
    hasAttachments: false,
    attachments: [],
  },
  {
    file: 'raw-latin1-subject.eml',
    subject: 'Grüße aus Köln - Anmeldebestätigung',
    from: { name: 'Jürgen Weiß', address: 'juergen@example.de' },
    to: [RCPT],
    sentAt: '2026-03-08T06:00:00.000Z',
    text: 'Die Betreffzeile steht in rohem ISO-8859-1, ohne RFC-2047-Kodierung: Grüße.\n',
    hasAttachments: false,
    attachments: [],
  },
  {
    file: 'forwarded-rfc822-with-attachment.eml',
    subject: 'Fwd: Invoice 2026-031',
    from: { name: 'Bob', address: 'bob@acme.test' },
    to: [RCPT],
    sentAt: '2026-03-09T14:00:00.000Z',
    text: 'Forwarding the supplier invoice, original attached.\n',
    hasAttachments: true,
    // the forwarded message is one attachment: the whole original, its own PDF inside it
    attachments: [
      { filename: 'Invoice 2026-031.eml', contentType: 'message/rfc822', disposition: 'attachment', contentId: null, marker: 'filename="Invoice 2026-031.eml"' },
    ],
  },
  {
    file: 'broken-multipart-no-closing-boundary.eml',
    subject: 'Multipart without its closing boundary',
    from: { name: 'Truncated', address: 'trunc@example.org' },
    to: [RCPT],
    sentAt: '2026-03-10T10:00:00.000Z',
    text: 'The first part is complete and readable.\n\nThe second part runs to the end of the message with no closing delimiter.\n',
    hasAttachments: false,
    attachments: [],
  },
  {
    file: 'broken-multipart-boundary-missing.eml',
    subject: 'Multipart whose boundary never appears',
    from: { name: 'Mismatch', address: 'mismatch@example.org' },
    to: [RCPT],
    sentAt: '2026-03-10T10:05:00.000Z',
    // with no matching delimiter the whole body is preamble: no text part can be read
    text: null,
    hasAttachments: false,
    attachments: [],
  },
  {
    file: 'no-message-id-no-date.eml',
    subject: 'Sent by a script without Message-ID or Date',
    from: { name: '', address: 'script@example.org' },
    to: [RCPT],
    sentAt: null,
    text: 'A cron job wrote this with only From, To and Subject.\n',
    hasAttachments: false,
    attachments: [],
  },
  {
    file: 'leading-dot-lines.eml',
    subject: 'Lines that start with a dot',
    from: { name: 'Dots', address: 'dots@example.org' },
    to: [RCPT],
    sentAt: '2026-03-11T16:20:00.000Z',
    text: 'The next line is a single dot; unstuffed it would end DATA early:\n.\n..two dots\n.hidden-file\n...\nThe end (after the dots).\n.\n',
    hasAttachments: false,
    attachments: [],
  },
  {
    file: 'nul-in-body.eml',
    subject: 'NUL byte in the body',
    from: { name: 'Nul Body', address: 'nul@example.org' },
    to: [RCPT],
    sentAt: '2026-03-12T08:00:00.000Z',
    text: 'Before the NULafter the NUL.\nSecond line.\n',
    hasAttachments: false,
    attachments: [],
    nul: true,
  },
  {
    file: 'nul-in-header.eml',
    subject: 'NULin the subject',
    from: { name: 'NulName', address: 'nulhdr@example.org' },
    to: [RCPT],
    sentAt: '2026-03-12T08:05:00.000Z',
    text: 'The NUL bytes are in the From display name and the Subject.\n',
    hasAttachments: false,
    attachments: [],
    nul: true,
  },
  {
    file: 'long-lines-utf8-smtputf8.eml',
    subject: 'Grüße 👋 — 長い行 (SMTPUTF8)',
    from: { name: 'Jörg Bücher', address: 'jörg@bücher.example' },
    to: ['用户@例子.测试', RCPT],
    sentAt: '2026-03-13T12:00:00.000Z',
    text: new RegExp(`^Lorem ipsum dolor sit amet, (ünïcödé→✓ ){300}\nShort line in between\\.\ny{4000}\n$`),
    hasAttachments: false,
    attachments: [],
    mailFrom: 'jörg@bücher.example',
    smtputf8: true,
  },
];

let t: TestServer;
let mailbox: Mailbox;
const seen = new Set<string>();

const STORAGE: { name: string; env: Record<string, string>; inRow: boolean }[] = [
  { name: 'blobs in their database row', env: {}, inRow: true },
  { name: 'BLOB_INLINE_MAX_BYTES=0, blobs in the blob store', env: { BLOB_INLINE_MAX_BYTES: '0' }, inRow: false },
];

for (const storage of STORAGE) describe(`fixtures (${storage.name}): specimens stored and read back byte-exact`, () => {
  before(async () => {
    t = await startTestServer(storage.env);
    ({ mailbox } = await seedMailbox(t.services, RCPT));
  });

  after(async () => {
    await t.stop();
  });

  /** The bytes at `key` come from where this configuration keeps them, and only from there. */
  async function assertStoredWhereExpected(key: string): Promise<void> {
    const row = await t.services.db.selectFrom('blobs').select('data').where('key', '=', key).executeTakeFirstOrThrow();
    assert.equal(row.data !== null, storage.inRow, `${key}: bytes in the row`);
    assert.equal((await t.services.blobs.stat(key)) !== null, !storage.inRow, `${key}: file in the blob store`);
  }

  for (const s of SPECIMENS) {
    it(`when ${s.file} is delivered, then the blob holds its exact bytes and the parsed fields are right`, async () => {
      const bytes = readFileSync(path.join(FIXTURES, s.file));
      if (s.nul) assert.ok(bytes.includes(0), 'the specimen itself must contain a NUL byte');

      const reply = await deliver(bytes, { mailFrom: s.mailFrom, smtputf8: s.smtputf8 });
      assert.match(reply, /^250 2\.0\.0 /);
      const row = await newMessage();

      // the raw message, byte for byte
      assert.equal(row.raw_sha256, sha256(bytes));
      assert.equal(Number(row.raw_size), bytes.length);
      await assertStoredWhereExpected(row.raw_blob_key);
      const blob = await readAll(await t.services.blobReader.open(row.raw_blob_key));
      assert.equal(sha256(blob), sha256(bytes));
      assert.ok(blob.equals(bytes), 'the blob differs from the specimen');
      const raw = await readAll(await t.services.messages.openRaw(row));
      assert.ok(raw.equals(Buffer.concat([Buffer.from(row.trace_headers), bytes])), 'openRaw() is not trace headers + specimen');

      // our header fields, kept apart from the blob
      assert.match(row.trace_headers, /^Received: /);
      if (s.file === 'no-message-id-no-date.eml') {
        const generated = /^Message-ID: (<[^>\r\n]+@mx\.test\.local>)\r\n/m.exec(row.trace_headers);
        assert.ok(generated, `no generated Message-ID in ${JSON.stringify(row.trace_headers)}`);
        assert.equal(row.message_id, generated[1]);
      } else {
        assert.doesNotMatch(row.trace_headers, /^Message-ID:/im);
      }

      // parsed fields
      assert.equal(row.subject, s.subject);
      assert.deepEqual({ name: row.from_name, address: row.from_address }, s.from);
      assert.deepEqual(row.to_addresses.map((a) => a.address), s.to);
      assert.equal(row.sent_at?.toISOString() ?? null, s.sentAt);
      if (s.text instanceof RegExp) assert.match(row.text_body ?? '', s.text);
      else assert.equal(row.text_body, s.text);
      if (s.text === null) assert.equal(row.snippet, '');
      if (s.html) assert.match(row.html_body ?? '', s.html);
      assert.equal(row.has_attachments, s.hasAttachments);
      if (s.smtputf8) assert.equal(row.envelope_from, s.mailFrom);

      await checkAttachments(row.id, bytes, s.attachments);
      for (const a of await t.services.db.selectFrom('attachments').select('blob_key').where('message_id', '=', row.id).execute()) {
        await assertStoredWhereExpected(a.blob_key);
      }
      // PostgreSQL text cannot hold NUL: every text column is clean even when the specimen is not
      const atts = await t.services.db.selectFrom('attachments').selectAll().where('message_id', '=', row.id).execute();
      assert.doesNotMatch(JSON.stringify([row, atts]), /\\u0000/);
    });
  }

  it('when two messages carry the same attachment, then one att/ blob is stored with refcount 2', async () => {
    const content = randomBytes(3000);
    const keys: string[] = [];
    for (const n of [1, 2]) {
      const bytes = Buffer.from(sharedAttachmentMessage(n, content));
      assert.match(await deliver(bytes), /^250 2\.0\.0 /);
      const row = await newMessage();
      const atts = await t.services.db.selectFrom('attachments').selectAll().where('message_id', '=', row.id).execute();
      assert.equal(atts.length, 1);
      assert.equal(atts[0]!.sha256, sha256(content));
      keys.push(atts[0]!.blob_key);
    }
    assert.equal(keys[0], keys[1]);
    assert.match(keys[0]!, new RegExp(`^att/[0-9a-f]{2}/[0-9a-f]{2}/${sha256(content)}$`));
    const blob = await t.services.db.selectFrom('blobs').selectAll().where('key', '=', keys[0]!).executeTakeFirstOrThrow();
    assert.equal(blob.refcount, 2);
    await assertStoredWhereExpected(keys[0]!);
    assert.ok((await readAll(await t.services.blobReader.open(keys[0]!))).equals(content));
  });
});

/** One SMTP transaction to RCPT; the specimen is dot-stuffed and sent as is (it ends with CRLF). */
async function deliver(bytes: Buffer, opts: { mailFrom?: string; smtputf8?: boolean } = {}): Promise<string> {
  const c = await RawSmtp.connect(t.smtpPort);
  try {
    await c.hello();
    assert.match((await c.command(`MAIL FROM:<${opts.mailFrom ?? 'sender@example.org'}>${opts.smtputf8 ? ' SMTPUTF8' : ''}`)).text, /^250 /);
    assert.match((await c.command(`RCPT TO:<${RCPT}>`)).text, /^250 /);
    assert.ok(bytes.subarray(-2).equals(Buffer.from('\r\n')), 'a specimen must end with CRLF');
    return (await c.data(dotStuff(bytes), '.\r\n')).text;
  } finally {
    c.close();
  }
}

/** The one message row stored since the last call. */
async function newMessage() {
  const rows = await t.services.db.selectFrom('messages').selectAll().where('mailbox_id', '=', mailbox.id).execute();
  const fresh = rows.filter((r) => !seen.has(r.id));
  for (const r of fresh) seen.add(r.id);
  assert.equal(fresh.length, 1, 'exactly one new message row');
  return fresh[0]!;
}

async function checkAttachments(messageId: string, specimen: Buffer, expected: ExpectedAttachment[]): Promise<void> {
  const rows = await t.services.db.selectFrom('attachments').selectAll().where('message_id', '=', messageId).orderBy('position').execute();
  assert.equal(rows.length, expected.length);
  for (const [i, e] of expected.entries()) {
    const row = rows[i]!;
    const content = decodedPart(specimen, e.marker);
    assert.deepEqual(
      { filename: row.filename, contentType: row.content_type, disposition: row.disposition, contentId: row.content_id },
      { filename: e.filename, contentType: e.contentType, disposition: e.disposition, contentId: e.contentId },
    );
    assert.equal(Number(row.size), content.length, `${e.marker}: size`);
    assert.equal(row.sha256, sha256(content), `${e.marker}: sha256`);
    assert.equal(row.blob_key, `att/${row.sha256.slice(0, 2)}/${row.sha256.slice(2, 4)}/${row.sha256}`);
    assert.ok((await readAll(await t.services.blobReader.open(row.blob_key))).equals(content), `${e.marker}: blob bytes`);
    assert.ok((await readAll(await t.services.messages.openAttachment(row))).equals(content), `${e.marker}: openAttachment bytes`);
  }
}

/**
 * The decoded body of the MIME part whose header block contains `marker`, read straight from
 * the specimen: from the blank line after its headers to the next delimiter of its boundary.
 */
function decodedPart(specimen: Buffer, marker: string): Buffer {
  const text = specimen.toString('latin1');
  const at = text.indexOf(marker);
  assert.ok(at !== -1, `marker ${marker} not in specimen`);
  const lineStart = text.lastIndexOf('\r\n--', at) + 2;
  const boundary = text.slice(lineStart, text.indexOf('\r\n', lineStart));
  const bodyStart = text.indexOf('\r\n\r\n', at) + 4;
  const headers = text.slice(lineStart, bodyStart);
  const body = text.slice(bodyStart, text.indexOf(`\r\n${boundary}`, bodyStart));
  const cte = /^content-transfer-encoding:\s*(\S+)/im.exec(headers)?.[1]?.toLowerCase() ?? '7bit';
  if (cte === 'base64') return Buffer.from(body.replace(/\s+/g, ''), 'base64');
  if (cte === 'quoted-printable') {
    return Buffer.from(
      body.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/gi, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))),
      'latin1',
    );
  }
  return Buffer.from(body, 'latin1');
}

/** RFC 5321 section 4.5.2: a line that starts with '.' gets one more. */
function dotStuff(bytes: Buffer): Buffer {
  const out: Buffer[] = [];
  let start = 0;
  while (start < bytes.length) {
    const lf = bytes.indexOf(0x0a, start);
    const stop = lf === -1 ? bytes.length : lf + 1;
    if (bytes[start] === 0x2e) out.push(Buffer.from('.'));
    out.push(bytes.subarray(start, stop));
    start = stop;
  }
  return Buffer.concat(out);
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

function sharedAttachmentMessage(n: number, content: Buffer): string {
  const b64 = content.toString('base64').replace(/.{76}/g, '$&\r\n');
  return [
    'From: sender@example.org',
    `To: ${RCPT}`,
    `Subject: shared attachment ${n}`,
    `Message-ID: <shared-${n}.${Date.now()}@example.org>`,
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="shared"',
    '',
    '--shared',
    'Content-Type: text/plain',
    '',
    `Copy ${n} of the same file.`,
    '--shared',
    'Content-Type: application/octet-stream; name="same.bin"',
    'Content-Disposition: attachment; filename="same.bin"',
    'Content-Transfer-Encoding: base64',
    '',
    b64.replace(/\r\n$/, ''),
    '--shared--',
    '',
  ].join('\r\n');
}
