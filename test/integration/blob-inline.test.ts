/**
 * Small blobs kept in their database row (BLOB_INLINE_MAX_BYTES), through the real server: the
 * boundary (a raw message or an attachment of exactly the limit is kept in the row, one byte more
 * goes to the blob store), BLOB_INLINE_MAX_BYTES=0 (everything in the store), the same bytes
 * arriving under a different limit (a row and a file for one key), and the collector (an
 * unreferenced row goes without the store being touched, also while an ingest races it). Every
 * read goes through BlobReader and must give back exactly the bytes sent.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { blobKey, readAll, STAGING_PREFIX } from '../../src/blobs/blob-store.js';
import { createLogger } from '../../src/core/logger.js';
import { removeReferences } from '../../src/db/blobs.repository.js';
import type { Mailbox } from '../../src/db/types.js';
import { createDnsResolver } from '../../src/services/dns-resolver.js';
import { InboundAuthService } from '../../src/services/inbound-auth.service.js';
import { IngestService } from '../../src/services/ingest.service.js';
import { seedMailbox, startTestServer, type TestServer } from '../helpers/harness.js';
import { RawSmtp } from '../helpers/smtp-client.js';

const LIMIT = 4096;
const GRACE_MS = 60 * 60 * 1000;
const RCPT = 'inline@acme.test';
const RACE_ITERATIONS = 10;

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** CRLF lines of letters (no line starts with '.', so no dot-stuffing) totalling exactly `bytes`. */
function filler(bytes: number): string {
  const lines: string[] = [];
  let left = bytes;
  while (left > 160) {
    lines.push(`${'a'.repeat(76)}\r\n`);
    left -= 78;
  }
  const first = Math.floor(left / 2);
  if (first >= 2) lines.push(`${'b'.repeat(first - 2)}\r\n`);
  lines.push(`${'c'.repeat(left - (first >= 2 ? first : 0) - 2)}\r\n`);
  return lines.join('');
}

/** A plain message of exactly `total` bytes, ending with CRLF. */
function messageOfSize(total: number, subject: string): Buffer {
  const head = `From: sender@example.org\r\nTo: ${RCPT}\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.org>\r\n\r\n`;
  const bytes = Buffer.from(head + filler(total - head.length));
  assert.equal(bytes.length, total);
  return bytes;
}

/** A multipart message with one base64 attachment per entry of `contents`. */
function messageWithAttachments(subject: string, contents: Buffer[]): Buffer {
  const parts = contents.map((c, i) =>
    [
      '--inline-boundary',
      `Content-Type: application/octet-stream; name="part${i}.bin"`,
      `Content-Disposition: attachment; filename="part${i}.bin"`,
      'Content-Transfer-Encoding: base64',
      '',
      (c.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n'),
    ].join('\r\n'),
  );
  return Buffer.from(
    [
      'From: sender@example.org',
      `To: ${RCPT}`,
      `Subject: ${subject}`,
      `Message-ID: <${subject}@example.org>`,
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="inline-boundary"',
      '',
      '--inline-boundary',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'see attached',
      ...parts,
      '--inline-boundary--',
      '',
    ].join('\r\n'),
  );
}

async function deliver(t: TestServer, bytes: Buffer, recipients = [RCPT]): Promise<string> {
  const c = await RawSmtp.connect(t.smtpPort);
  try {
    await c.hello();
    assert.match((await c.command('MAIL FROM:<sender@example.org>')).text, /^250 /);
    for (const r of recipients) assert.match((await c.command(`RCPT TO:<${r}>`)).text, /^250 /);
    return (await c.data(bytes)).text;
  } finally {
    c.close();
  }
}

async function messageBySubject(t: TestServer, subject: string) {
  return t.services.db.selectFrom('messages').selectAll().where('subject', '=', subject).orderBy('received_at').execute();
}

async function attachmentsOf(t: TestServer, messageId: string) {
  return t.services.db.selectFrom('attachments').selectAll().where('message_id', '=', messageId).orderBy('position').execute();
}

/** Where the bytes of `key` are: in its row, in the store, both or neither; plus its refcount. */
async function placeOf(t: TestServer, key: string): Promise<{ row: boolean; file: boolean; refcount: number | null }> {
  const row = await t.services.db.selectFrom('blobs').select(['data', 'refcount']).where('key', '=', key).executeTakeFirst();
  return { row: Boolean(row?.data), file: (await t.services.blobs.stat(key)) !== null, refcount: row ? row.refcount : null };
}

async function readBack(t: TestServer, key: string): Promise<Buffer> {
  return readAll(await t.services.blobReader.open(key));
}

async function storeKeys(t: TestServer): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of t.services.blobs.list()) keys.push(info.key);
  return keys.sort();
}

/** Deletes a message the way message deletion will: its row and its blob references, in one transaction. */
async function deleteMessage(t: TestServer, id: string): Promise<string[]> {
  const message = await t.services.db.selectFrom('messages').select('raw_blob_key').where('id', '=', id).executeTakeFirstOrThrow();
  const keys = [message.raw_blob_key, ...(await attachmentsOf(t, id)).map((a) => a.blob_key)];
  await t.services.db.transaction().execute(async (trx) => {
    await trx.deleteFrom('messages').where('id', '=', id).execute();
    await removeReferences(trx, keys);
  });
  return keys;
}

/** Moves a row past the grace period (and the file under its key, if any). */
async function age(t: TestServer, key: string): Promise<void> {
  const then = new Date(Date.now() - 2 * GRACE_MS);
  await t.services.db.updateTable('blobs').set({ created_at: then }).where('key', '=', key).execute();
  await fs.utimes(path.join(t.dataDir, 'blobs', ...key.split('/')), then, then).catch(() => undefined);
}

/** An ingest of the same server with another inline limit, as after an operator changed it. */
function ingestWithLimit(t: TestServer, inlineMaxBytes: number): IngestService {
  const auth = new InboundAuthService(createDnsResolver({ servers: ['127.0.0.1:9'], timeoutMs: 100 }), t.config.MAIL_HOSTNAME);
  return new IngestService(t.services.db, t.services.blobs, auth, t.config.MAIL_HOSTNAME, inlineMaxBytes, createLogger('silent'));
}

async function ingestDirect(ingest: IngestService, mailbox: Mailbox, bytes: Buffer): Promise<string> {
  const result = await ingest.acceptMessage(
    Readable.from([bytes]),
    [{ tenantId: mailbox.tenant_id, mailboxId: mailbox.id, address: mailbox.address }],
    { mailFrom: 'sender@example.org', protocol: 'ESMTP', transactionId: `direct-${randomBytes(4).toString('hex')}` },
    { maxBytes: 1024 * 1024, verify: false, maxReceived: 30 },
  );
  return result.messageIds[0]!;
}

describe(`blobs kept in their database row (BLOB_INLINE_MAX_BYTES=${LIMIT})`, () => {
  let t: TestServer;
  let mailbox: Mailbox;

  before(async () => {
    t = await startTestServer({ BLOB_INLINE_MAX_BYTES: String(LIMIT), BLOB_GC_GRACE_MS: String(GRACE_MS) });
    ({ mailbox } = await seedMailbox(t.services, RCPT));
  });

  after(async () => {
    await t?.stop();
  });

  it('when a raw message is exactly the limit, then it is kept in its row only and read back byte-exact', async () => {
    const bytes = messageOfSize(LIMIT, 'exactly-the-limit');
    assert.match(await deliver(t, bytes), /^250 2\.0\.0 /);
    const [m] = await messageBySubject(t, 'exactly-the-limit');
    assert.ok(m);
    assert.equal(m.raw_sha256, sha256(bytes));
    assert.equal(m.raw_blob_key, blobKey('raw', sha256(bytes)));
    assert.deepEqual(await placeOf(t, m.raw_blob_key), { row: true, file: false, refcount: 1 });
    assert.ok((await readBack(t, m.raw_blob_key)).equals(bytes));
    const raw = await readAll(await t.services.messages.openRaw(m));
    assert.ok(raw.equals(Buffer.concat([Buffer.from(m.trace_headers), bytes])), 'openRaw() is not trace headers + the bytes sent');
  });

  it('when a raw message is one byte over the limit, then it is in the blob store only and read back byte-exact', async () => {
    const bytes = messageOfSize(LIMIT + 1, 'one-over-the-limit');
    assert.match(await deliver(t, bytes), /^250 2\.0\.0 /);
    const [m] = await messageBySubject(t, 'one-over-the-limit');
    assert.ok(m);
    assert.equal(m.raw_sha256, sha256(bytes));
    assert.equal(m.raw_blob_key, blobKey('raw', sha256(bytes)));
    assert.deepEqual(await placeOf(t, m.raw_blob_key), { row: false, file: true, refcount: 1 });
    assert.ok((await readBack(t, m.raw_blob_key)).equals(bytes));
    assert.ok((await readAll(await t.services.blobs.read(m.raw_blob_key))).equals(bytes), 'the file holds the bytes');
    const raw = await readAll(await t.services.messages.openRaw(m));
    assert.ok(raw.equals(Buffer.concat([Buffer.from(m.trace_headers), bytes])), 'openRaw() is not trace headers + the bytes sent');
  });

  it('when attachments are exactly the limit and one byte over, then the first is kept in its row, the second in the store, both byte-exact', async () => {
    const small = randomBytes(LIMIT);
    const large = randomBytes(LIMIT + 1);
    const empty = Buffer.alloc(0);
    assert.match(await deliver(t, messageWithAttachments('attachments-at-the-limit', [small, large, empty])), /^250 2\.0\.0 /);
    const [m] = await messageBySubject(t, 'attachments-at-the-limit');
    assert.ok(m);
    const atts = await attachmentsOf(t, m.id);
    assert.deepEqual(
      atts.map((a) => [Number(a.size), a.sha256, a.blob_key]),
      [small, large, empty].map((c) => [c.length, sha256(c), blobKey('att', sha256(c))]),
    );
    assert.deepEqual(await placeOf(t, atts[0]!.blob_key), { row: true, file: false, refcount: 1 });
    assert.deepEqual(await placeOf(t, atts[1]!.blob_key), { row: false, file: true, refcount: 1 });
    // an empty attachment is kept in its row too: zero bytes, not "in the store"
    const emptyRow = await t.services.db.selectFrom('blobs').select('data').where('key', '=', atts[2]!.blob_key).executeTakeFirstOrThrow();
    assert.ok(emptyRow.data?.equals(empty));
    assert.equal(await t.services.blobs.stat(atts[2]!.blob_key), null);
    for (const [i, content] of [small, large, empty].entries()) {
      assert.ok((await readBack(t, atts[i]!.blob_key)).equals(content), `attachment ${i}`);
      assert.ok((await readAll(await t.services.messages.openAttachment(atts[i]!))).equals(content), `attachment ${i} via MessagesService`);
    }
    // the raw message itself is over the limit
    assert.deepEqual(await placeOf(t, m.raw_blob_key), { row: false, file: true, refcount: 1 });
  });

  it('when the same small attachment arrives twice, then one row holds it with refcount 2', async () => {
    const content = randomBytes(1000);
    for (const n of [1, 2]) assert.match(await deliver(t, messageWithAttachments(`shared-inline-${n}`, [content])), /^250 /);
    const key = blobKey('att', sha256(content));
    assert.deepEqual(await placeOf(t, key), { row: true, file: false, refcount: 2 });
    assert.ok((await readBack(t, key)).equals(content));
  });

  it('when a message with attachments goes to two mailboxes, then each copy has its attachment rows and every blob is referenced twice', async () => {
    await seedMailbox(t.services, 'inline2@acme.test');
    const small = randomBytes(700);
    const large = randomBytes(LIMIT * 2);
    const bytes = messageWithAttachments('two-copies', [small, large]);
    assert.match(await deliver(t, bytes, [RCPT, 'inline2@acme.test']), /^250 2\.0\.0 /);
    const copies = await messageBySubject(t, 'two-copies');
    assert.deepEqual(copies.map((m) => m.envelope_to).sort(), [RCPT, 'inline2@acme.test'].sort());
    for (const m of copies) {
      const atts = await attachmentsOf(t, m.id);
      assert.deepEqual(atts.map((a) => a.sha256), [sha256(small), sha256(large)]);
      for (const [i, content] of [small, large].entries()) assert.ok((await readBack(t, atts[i]!.blob_key)).equals(content));
      const raw = await readAll(await t.services.messages.openRaw(m));
      assert.ok(raw.equals(Buffer.concat([Buffer.from(m.trace_headers), bytes])));
    }
    assert.deepEqual(await placeOf(t, blobKey('att', sha256(small))), { row: true, file: false, refcount: 2 });
    assert.deepEqual(await placeOf(t, blobKey('att', sha256(large))), { row: false, file: true, refcount: 2 });
    assert.deepEqual(await placeOf(t, copies[0]!.raw_blob_key), { row: false, file: true, refcount: 2 });
  });

  it('when an inline blob loses its last reference, then after the grace period the collector deletes its row and leaves the blob store alone', async () => {
    const content = randomBytes(2000);
    const bytes = messageOfSize(3000, 'inline-collected');
    assert.match(await deliver(t, bytes), /^250 /);
    assert.match(await deliver(t, messageWithAttachments('inline-collected-att', [content])), /^250 /);
    const [plain] = await messageBySubject(t, 'inline-collected');
    const [withAtt] = await messageBySubject(t, 'inline-collected-att');
    assert.ok(plain && withAtt);
    const attKey = blobKey('att', sha256(content));
    const keys = [...(await deleteMessage(t, plain.id)), ...(await deleteMessage(t, withAtt.id))];
    assert.ok(keys.includes(attKey));
    for (const key of keys) assert.equal((await placeOf(t, key)).refcount, 0);

    // a file under the raw key (a copy from before the bytes were inlined): not the row's to delete
    const copy = await t.services.blobs.stage(bytes);
    await copy.publish(plain.raw_blob_key);
    const storeBefore = await storeKeys(t);

    await t.services.collector.collect();
    for (const key of keys) assert.equal((await placeOf(t, key)).refcount, 0, `${key} was collected before the grace period ended`);

    for (const key of keys) await t.services.db.updateTable('blobs').set({ created_at: new Date(Date.now() - 2 * GRACE_MS) }).where('key', '=', key).execute();
    await t.services.collector.collect();
    for (const key of keys) assert.equal((await placeOf(t, key)).refcount, null, `${key} still has a row`);
    assert.deepEqual(await storeKeys(t), storeBefore, 'collecting inline rows changed the blob store');
    assert.ok((await readAll(await t.services.blobs.read(plain.raw_blob_key))).equals(bytes));

    // without its row, that file is now an ordinary orphan for the file pass
    await age(t, plain.raw_blob_key);
    await t.services.collector.collect();
    assert.equal(await t.services.blobs.stat(plain.raw_blob_key), null);
  });

  it('when bytes stored in the blob store arrive again under the inline limit, then the row takes a copy, and both are collected after the last reference goes', async () => {
    const bytes = messageOfSize(2500, 'store-then-inline');
    const first = await ingestDirect(ingestWithLimit(t, 0), mailbox, bytes);
    const key = blobKey('raw', sha256(bytes));
    assert.deepEqual(await placeOf(t, key), { row: false, file: true, refcount: 1 });

    assert.match(await deliver(t, bytes), /^250 /);
    assert.deepEqual(await placeOf(t, key), { row: true, file: true, refcount: 2 });
    // the row no longer needs the file: reading works without it
    const file = path.join(t.dataDir, 'blobs', ...key.split('/'));
    await fs.rename(file, `${file}.away`);
    assert.ok((await readBack(t, key)).equals(bytes));
    await fs.rename(`${file}.away`, file);

    const copies = await messageBySubject(t, 'store-then-inline');
    assert.deepEqual(copies.map((m) => m.id).filter((id) => id === first), [first]);
    for (const m of copies) await deleteMessage(t, m.id);
    await age(t, key);
    await t.services.collector.collect();
    assert.deepEqual(await placeOf(t, key), { row: false, file: false, refcount: null });
  });

  it('when bytes kept in a row arrive again with BLOB_INLINE_MAX_BYTES=0, then no file is written and the row serves both messages', async () => {
    const bytes = messageOfSize(2600, 'inline-then-store');
    assert.match(await deliver(t, bytes), /^250 /);
    const key = blobKey('raw', sha256(bytes));
    assert.deepEqual(await placeOf(t, key), { row: true, file: false, refcount: 1 });
    const staging = new Set((await storeKeys(t)).filter((k) => k.startsWith(STAGING_PREFIX)));

    const id = await ingestDirect(ingestWithLimit(t, 0), mailbox, bytes);
    assert.deepEqual(await placeOf(t, key), { row: true, file: false, refcount: 2 });
    assert.deepEqual((await storeKeys(t)).filter((k) => k.startsWith(STAGING_PREFIX) && !staging.has(k)), [], 'the staged copy was not discarded');
    const message = await t.services.db.selectFrom('messages').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    const raw = await readAll(await t.services.messages.openRaw(message));
    assert.ok(raw.equals(Buffer.concat([Buffer.from(message.trace_headers), bytes])));
  });

  it('when an ingest of the same small bytes races the collection of their unreferenced rows, then every stored message stays readable', async (ctx) => {
    const rounds = new Map<number, number>();
    for (let i = 0; i < RACE_ITERATIONS; i++) {
      const bytes = messageWithAttachments(`inline-race-${i}`, [randomBytes(1500)]);
      assert.ok(bytes.length <= LIMIT);
      const started = Date.now();
      assert.match(await deliver(t, bytes), /^250 /);
      const sendMs = Date.now() - started;
      const [first] = await messageBySubject(t, `inline-race-${i}`);
      assert.ok(first);
      const keys = await deleteMessage(t, first.id);
      for (const key of keys) await age(t, key);

      const jitterMs = Math.round((i / (RACE_ITERATIONS - 1)) * sendMs * 1.2);
      const [collected, reply] = await Promise.all([
        new Promise((resolve) => setTimeout(resolve, jitterMs)).then(() => t.services.collector.collect()),
        deliver(t, bytes),
      ]);
      assert.match(reply, /^250 /);
      rounds.set(collected.deleted, (rounds.get(collected.deleted) ?? 0) + 1);
      const [second] = await messageBySubject(t, `inline-race-${i}`);
      assert.ok(second);
      assert.equal(second.raw_blob_key, first.raw_blob_key);
      assert.ok((await readBack(t, second.raw_blob_key)).equals(bytes));
      for (const a of await attachmentsOf(t, second.id)) assert.equal(sha256(await readBack(t, a.blob_key)), a.sha256);
      for (const key of keys) assert.deepEqual(await placeOf(t, key), { row: true, file: false, refcount: 1 });
    }
    ctx.diagnostic(`rows deleted by the racing collection → rounds: ${JSON.stringify(Object.fromEntries(rounds))}`);
  });
});

describe('BLOB_INLINE_MAX_BYTES=0: every blob in the blob store', () => {
  let t: TestServer;

  before(async () => {
    t = await startTestServer({ BLOB_INLINE_MAX_BYTES: '0' });
    await seedMailbox(t.services, RCPT);
  });

  after(async () => {
    await t?.stop();
  });

  it('when a small message with a small attachment arrives, then both are files in the store, no row holds bytes, and they read back byte-exact', async () => {
    const content = randomBytes(100);
    const bytes = messageWithAttachments('all-in-store', [content]);
    assert.match(await deliver(t, bytes), /^250 2\.0\.0 /);
    const [m] = await messageBySubject(t, 'all-in-store');
    assert.ok(m);
    const [att] = await attachmentsOf(t, m.id);
    assert.ok(att);
    for (const key of [m.raw_blob_key, att.blob_key]) assert.deepEqual(await placeOf(t, key), { row: false, file: true, refcount: 1 });
    assert.ok((await readBack(t, m.raw_blob_key)).equals(bytes));
    assert.ok((await readBack(t, att.blob_key)).equals(content));
    const raw = await readAll(await t.services.messages.openRaw(m));
    assert.ok(raw.equals(Buffer.concat([Buffer.from(m.trace_headers), bytes])));
    const withData = await t.services.db.selectFrom('blobs').select('key').where('data', 'is not', null).execute();
    assert.deepEqual(withData, []);
  });
});
