/**
 * BlobCollector on the local driver, through the real server: what it removes (staged files
 * and published files nobody recorded, once older than the grace period; blobs whose last
 * reference was dropped) and what it never removes (anything a stored message references, even
 * while an ingest of the same bytes races the deletion). The grace period is one hour; a test
 * makes something "old" by moving its file's mtime and its row's created_at two hours back.
 * The server runs with BLOB_INLINE_MAX_BYTES=0, so every blob is a file in the store; the
 * collection of blobs kept in their database row is tested in blob-inline.test.ts.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { blobKey, readAll, STAGING_PREFIX } from '../../src/blobs/blob-store.js';
import { addReferences, removeReferences } from '../../src/db/blobs.repository.js';
import { seedMailbox, startTestServer, type TestServer } from '../helpers/harness.js';
import { sendWithNodemailer } from '../helpers/smtp-client.js';

const GRACE_MS = 60 * 60 * 1000;
const AGE_MS = 2 * GRACE_MS;
const RACE_ITERATIONS = 20;

let t: TestServer;

before(async () => {
  t = await startTestServer({ BLOB_GC_GRACE_MS: String(GRACE_MS), BLOB_INLINE_MAX_BYTES: '0' });
  await seedMailbox(t.services, 'gc@acme.test');
  await seedMailbox(t.services, 'race@acme.test');
});

after(async () => {
  await t?.stop();
});

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function fileOf(key: string): string {
  return path.join(t.dataDir, 'blobs', ...key.split('/'));
}

async function exists(key: string): Promise<boolean> {
  return (await t.services.blobs.stat(key)) !== null;
}

/** The SHA-256 of the bytes stored at `key`, read the way messages are (rejects when the blob is missing). */
async function storedSha(key: string): Promise<string> {
  return sha256(await readAll(await t.services.blobReader.open(key)));
}

async function refcount(key: string): Promise<number | null> {
  const row = await t.services.db.selectFrom('blobs').select('refcount').where('key', '=', key).executeTakeFirst();
  return row ? row.refcount : null;
}

/** Moves a blob past the grace period: its file's mtime and its row's created_at (if any). */
async function age(key: string): Promise<void> {
  const then = new Date(Date.now() - AGE_MS);
  await fs.utimes(fileOf(key), then, then);
  await t.services.db.updateTable('blobs').set({ created_at: then }).where('key', '=', key).execute();
}

async function stagedKeys(): Promise<Set<string>> {
  const keys = new Set<string>();
  for await (const info of t.services.blobs.list()) if (info.key.startsWith(STAGING_PREFIX)) keys.add(info.key);
  return keys;
}

function sendWithAttachment(to: string, subject: string, content: Buffer): Promise<string> {
  return sendWithNodemailer(t.smtpPort, {
    from: 'sender@example.org',
    to,
    subject,
    text: 'see attached',
    attachments: [{ filename: 'report.bin', content, contentType: 'application/octet-stream' }],
  });
}

/** A multipart message with one base64 attachment, byte for byte the same on every call. */
function messageWithAttachment(subject: string, content: Buffer): Buffer {
  const base64 = (content.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n');
  return Buffer.from(
    [
      'From: sender@example.org',
      'To: race@acme.test',
      `Subject: ${subject}`,
      'Date: Sat, 21 Nov 2026 06:00:00 +0000',
      `Message-ID: <${subject}@example.org>`,
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="gc-boundary"',
      '',
      '--gc-boundary',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'see attached',
      '--gc-boundary',
      'Content-Type: application/octet-stream; name="data.bin"',
      'Content-Disposition: attachment; filename="data.bin"',
      'Content-Transfer-Encoding: base64',
      '',
      base64,
      '--gc-boundary--',
      '',
    ].join('\r\n'),
  );
}

interface Stored {
  id: string;
  rawKey: string;
  rawSha: string;
  attachments: { key: string; sha: string }[];
}

async function storedBySubject(subject: string): Promise<Stored[]> {
  const rows = await t.services.db.selectFrom('messages').select(['id', 'raw_blob_key', 'raw_sha256']).where('subject', '=', subject).execute();
  return Promise.all(rows.map((r) => stored(r)));
}

async function stored(r: { id: string; raw_blob_key: string; raw_sha256: string }): Promise<Stored> {
  const atts = await t.services.db.selectFrom('attachments').select(['blob_key', 'sha256']).where('message_id', '=', r.id).orderBy('position').execute();
  return { id: r.id, rawKey: r.raw_blob_key, rawSha: r.raw_sha256, attachments: atts.map((a) => ({ key: a.blob_key, sha: a.sha256 })) };
}

/** Deletes a message the way message deletion will: its row and its blob references, in one transaction. */
async function deleteMessage(m: Stored): Promise<void> {
  await t.services.db.transaction().execute(async (trx) => {
    await trx.deleteFrom('messages').where('id', '=', m.id).execute();
    await removeReferences(trx, [m.rawKey, ...m.attachments.map((a) => a.key)]);
  });
}

async function assertReadable(m: Stored): Promise<void> {
  assert.equal(await storedSha(m.rawKey), m.rawSha, `raw blob of message ${m.id}`);
  for (const a of m.attachments) assert.equal(await storedSha(a.key), a.sha, `attachment blob ${a.key} of message ${m.id}`);
  // BLOB_INLINE_MAX_BYTES=0: what was read came from a file in the store
  for (const key of [m.rawKey, ...m.attachments.map((a) => a.key)]) assert.ok(await exists(key), `${key} is not in the blob store`);
}

describe('blob collection', () => {
  it('when a staged tmp/ file is older than the grace period, then it is collected, and not before', async () => {
    const before = await stagedKeys();
    const staged = await t.services.blobs.stage(randomBytes(2000)); // an ingest that crashed before publishing
    const [tmpKey] = [...(await stagedKeys())].filter((k) => !before.has(k));
    assert.ok(tmpKey);

    await t.services.collector.collect();
    assert.ok(await exists(tmpKey), 'a fresh staged file must survive');

    await age(tmpKey);
    await t.services.collector.collect();
    assert.equal(await exists(tmpKey), false);
    assert.equal(await refcount(tmpKey), null, 'the collector leaves no row behind for an orphan');
    assert.equal(staged.size, 2000);
  });

  it('when a published blob has no row (crash between publish and commit), then it is kept within the grace period and collected after it', async () => {
    const bytes = randomBytes(3000);
    const staged = await t.services.blobs.stage(bytes);
    const key = blobKey('att', staged.sha256);
    await staged.publish(key);
    assert.equal(await refcount(key), null);

    await t.services.collector.collect();
    assert.equal(await storedSha(key), sha256(bytes), 'an orphan younger than the grace period must survive');

    await age(key);
    const result = await t.services.collector.collect();
    assert.ok(result.deleted >= 1);
    assert.equal(await exists(key), false);
    assert.equal(await refcount(key), null);
  });

  it('when a blob is referenced by a stored message, then no collection removes it, however old', async () => {
    const content = randomBytes(20_000);
    assert.match(await sendWithAttachment('gc@acme.test', 'gc kept', content), /^250 /);
    const [m] = await storedBySubject('gc kept');
    assert.ok(m);
    assert.equal(m.attachments.length, 1);
    assert.equal(m.attachments[0]!.key, blobKey('att', sha256(content)));
    for (const key of [m.rawKey, m.attachments[0]!.key]) await age(key);

    await t.services.collector.collect();
    await t.services.collector.collect();
    await assertReadable(m);
    assert.equal(await refcount(m.rawKey), 1);
    assert.equal(await refcount(m.attachments[0]!.key), 1);
  });

  it('when a message is deleted and its references drop to zero, then the next collection past the grace period deletes the files and the rows', async () => {
    assert.match(await sendWithAttachment('gc@acme.test', 'gc deleted', randomBytes(20_000)), /^250 /);
    const [m] = await storedBySubject('gc deleted');
    assert.ok(m);
    const keys = [m.rawKey, ...m.attachments.map((a) => a.key)];
    await deleteMessage(m);
    for (const key of keys) assert.equal(await refcount(key), 0);

    await t.services.collector.collect();
    for (const key of keys) assert.ok(await exists(key), `${key} was collected before the grace period ended`);

    for (const key of keys) await age(key);
    await t.services.collector.collect();
    for (const key of keys) {
      assert.equal(await exists(key), false, `${key} is still stored`);
      assert.equal(await refcount(key), null, `${key} still has a row`);
    }
  });

  it('when two messages carry the same attachment, then they share one att/ blob with refcount 2, and deleting one keeps it', async () => {
    const content = randomBytes(30_000);
    assert.match(await sendWithAttachment('gc@acme.test', 'gc shared one', content), /^250 /);
    assert.match(await sendWithAttachment('gc@acme.test', 'gc shared two', content), /^250 /);
    const [one] = await storedBySubject('gc shared one');
    const [two] = await storedBySubject('gc shared two');
    assert.ok(one && two);
    const key = blobKey('att', sha256(content));
    assert.equal(one.attachments[0]?.key, key);
    assert.equal(two.attachments[0]?.key, key);
    assert.notEqual(one.rawKey, two.rawKey);
    assert.equal(await refcount(key), 2);

    await deleteMessage(one);
    assert.equal(await refcount(key), 1);
    for (const k of [key, one.rawKey]) await age(k);
    await t.services.collector.collect();
    assert.equal(await exists(one.rawKey), false, 'the deleted message’s own raw blob is collected');
    await assertReadable(two);
    assert.equal(await refcount(key), 1);
  });

  it('when a row wrongly says nothing references a blob that a message still uses, then the collector keeps the file and collects the rest', async () => {
    assert.match(await sendWithAttachment('gc@acme.test', 'gc miscounted', randomBytes(10_000)), /^250 /);
    const [m] = await storedBySubject('gc miscounted');
    assert.ok(m);
    // a bug elsewhere (say a double decrement) must not turn into lost mail: the foreign keys say the truth
    await t.services.db.updateTable('blobs').set({ refcount: 0 }).where('key', '=', m.rawKey).execute();
    try {
      await age(m.rawKey);
      const orphan = await t.services.blobs.stage(randomBytes(1000));
      const orphanKey = blobKey('att', orphan.sha256);
      await orphan.publish(orphanKey);
      await age(orphanKey);

      await t.services.collector.collect();
      await assertReadable(m);
      assert.equal(await exists(orphanKey), false, 'one bad key must not stop the rest of the pass');
    } finally {
      await t.services.db.updateTable('blobs').set({ refcount: 1 }).where('key', '=', m.rawKey).execute();
    }
  });

  it('when an ingest holds the row of an unreferenced blob, then the collector does not delete it and it survives the commit', async () => {
    const bytes = randomBytes(5000);
    const first = await t.services.blobs.stage(bytes);
    const key = blobKey('att', first.sha256);
    await first.publish(key);
    await t.services.db.transaction().execute((trx) => addReferences(trx, [{ key, sha256: first.sha256, size: bytes.length, count: 1, data: null }]));
    await t.services.db.transaction().execute((trx) => removeReferences(trx, [key]));
    await age(key);

    // what IngestService.store() does: reference the row (locking it), publish, commit; here the
    // collector runs between the first two steps, while the old file is still in place
    let locked!: () => void;
    let release!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    const again = await t.services.blobs.stage(bytes);
    const ingest = t.services.db.transaction().execute(async (trx) => {
      await addReferences(trx, [{ key, sha256: first.sha256, size: bytes.length, count: 1, data: null }]);
      locked();
      await released;
      await again.publish(key);
    });
    await isLocked;
    const collecting = t.services.collector.collect();
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(await storedSha(key), sha256(bytes), 'deleted while an ingest held the row');
    release();
    await ingest;
    await collecting;
    await t.services.collector.collect();
    assert.equal(await storedSha(key), sha256(bytes));
    assert.equal(await refcount(key), 1);
    await t.services.db.transaction().execute((trx) => removeReferences(trx, [key]));
  });

  it('when an ingest of the same bytes races the collection of their unreferenced blobs, then every stored message stays readable', async (ctx) => {
    const before = new Set((await storedBySubject('gc race')).map((m) => m.id));
    // how many of the two shared blobs the collector deleted in each round: 2 when it ran ahead
    // of the ingest, 0 when the ingest referenced them first
    const rounds = new Map<number, number>();
    for (let i = 0; i < RACE_ITERATIONS; i++) {
      const raw = messageWithAttachment('gc race', randomBytes(40_000));
      const sendStarted = Date.now();
      assert.match(await sendWithNodemailer(t.smtpPort, { from: 'sender@example.org', to: 'race@acme.test', raw }), /^250 /);
      const sendMs = Date.now() - sendStarted;
      const [first] = (await storedBySubject('gc race')).filter((m) => !before.has(m.id));
      assert.ok(first);
      await deleteMessage(first);
      for (const key of [first.rawKey, ...first.attachments.map((a) => a.key)]) await age(key);

      // the same bytes again, while the collector deletes the blobs they will share; the
      // collection starts at a point that sweeps across the whole ingest from round to round
      const jitterMs = Math.round((i / (RACE_ITERATIONS - 1)) * sendMs * 1.2);
      const [collected, reply] = await Promise.all([
        new Promise((resolve) => setTimeout(resolve, jitterMs)).then(() => t.services.collector.collect()),
        sendWithNodemailer(t.smtpPort, { from: 'sender@example.org', to: 'race@acme.test', raw }),
      ]);
      assert.match(reply, /^250 /);
      rounds.set(collected.deleted, (rounds.get(collected.deleted) ?? 0) + 1);
      const [second] = (await storedBySubject('gc race')).filter((m) => !before.has(m.id));
      assert.ok(second);
      assert.equal(second.rawKey, first.rawKey);
      assert.deepEqual(second.attachments, first.attachments);
      await assertReadable(second);
      before.add(second.id);
    }
    ctx.diagnostic(`blobs deleted by the racing collection → rounds: ${JSON.stringify(Object.fromEntries(rounds))}`);

    // afterwards: everything any stored message points at is there, and every count is right
    await t.services.collector.collect();
    const all = await t.services.db.selectFrom('messages').select(['id', 'raw_blob_key', 'raw_sha256']).execute();
    for (const r of all) await assertReadable(await stored(r));
    const wrong = await sql<{ key: string; refcount: number; actual: number }>`
      SELECT b.key, b.refcount,
        (SELECT count(*) FROM messages m WHERE m.raw_blob_key = b.key)::int
        + (SELECT count(*) FROM attachments a WHERE a.blob_key = b.key)::int AS actual
      FROM blobs b
    `.execute(t.services.db);
    assert.deepEqual(
      wrong.rows.filter((r) => r.refcount !== r.actual),
      [],
      'refcounts match the references',
    );
  });
});
