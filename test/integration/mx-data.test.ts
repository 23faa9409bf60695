/**
 * MX DATA phase over real SMTP sessions: SMTP smuggling and bare line endings, size limits,
 * loop detection, and storage/database failures. Every rejection also checks that nothing was
 * stored (no message rows, no blob rows).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { usageOf } from '../../src/db/mailboxes.repository.js';
import { countRows, messagesFor, seedMailbox, startTestServer, type TestServer } from '../helpers/harness.js';
import { RawSmtp, simpleMessage } from '../helpers/smtp-client.js';

let t: TestServer;
const MAX = 20_000;
// small messages are kept in their database row, larger ones go through the blob store
const INLINE_MAX = 4096;
/** A body that takes a message past INLINE_MAX, so the blob store is involved. */
const SPILLED_BODY = Array.from({ length: 100 }, (_, i) => `line ${i} ${'x'.repeat(70)}`).join('\r\n');

before(async () => {
  t = await startTestServer({ MAX_MESSAGE_SIZE: String(MAX), SMTP_MAX_RECEIVED_HEADERS: '5', BLOB_INLINE_MAX_BYTES: String(INLINE_MAX) });
  await seedMailbox(t.services, 'alice@acme.test');
});

after(async () => {
  await t.stop();
});

async function stored(): Promise<{ messages: number; blobs: number }> {
  return { messages: await countRows(t.services, 'messages'), blobs: await countRows(t.services, 'blobs') };
}

/** Opens a session up to the DATA command's 354. */
async function openTransaction(): Promise<RawSmtp> {
  const c = await RawSmtp.connect(t.smtpPort);
  await c.hello();
  assert.match((await c.command('MAIL FROM:<sender@example.org>')).text, /^250 /);
  assert.match((await c.command('RCPT TO:<alice@acme.test>')).text, /^250 /);
  return c;
}

async function expectRejected(body: string | Buffer, reply: RegExp): Promise<void> {
  const before = await stored();
  const c = await openTransaction();
  try {
    const r = await c.data(body);
    assert.match(r.text, reply);
    // the session is still in sync: the next command gets its own reply
    assert.match((await c.command('NOOP')).text, /^250 /);
  } finally {
    c.close();
  }
  assert.deepEqual(await stored(), before, 'nothing may be stored for a rejected message');
}

describe('MX DATA: line endings and SMTP smuggling', () => {
  const smuggle = 'MAIL FROM:<evil@example.org>\r\nRCPT TO:<alice@acme.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n';
  const variants: [string, string][] = [
    ['\\n.\\n', '\n.\n'],
    ['\\n.\\r\\n', '\n.\r\n'],
    ['\\r\\n.\\n', '\r\n.\n'],
    ['\\r.\\r', '\r.\r'],
    ['\\r.\\r\\n', '\r.\r\n'],
  ];
  for (const [name, fakeEnd] of variants) {
    it(`when a message hides a second one behind ${name}, then it is one message rejected 550 5.5.2 and the smuggled one does not exist`, async () => {
      const body = `${simpleMessage({ subject: 'carrier' }).trimEnd()}${fakeEnd}${smuggle}`;
      await expectRejected(body, /^550 5\.5\.2 /);
      const subjects = (await messagesFor(t.services, 'alice@acme.test')).map((m) => m.subject);
      assert.ok(!subjects.includes('smuggled') && !subjects.includes('carrier'));
    });
  }

  it('when a header line ends with a bare LF, then 550 5.5.2', async () => {
    await expectRejected('From: a@example.org\nSubject: bare\r\n\r\nbody\r\n', /^550 5\.5\.2 .*bare LF/);
  });

  it('when the body has a bare CR, then 550 5.5.2', async () => {
    await expectRejected(simpleMessage({ body: 'one\rtwo' }), /^550 5\.5\.2 .*bare CR/);
  });

  it('when a bare CR is the last byte of a TCP segment, then it is still found', async () => {
    const before = await stored();
    const c = await openTransaction();
    try {
      assert.equal((await c.command('DATA')).code, 354);
      c.write(`${simpleMessage({ subject: 'split' }).trimEnd()}\r\nx\r`);
      await new Promise((r) => setTimeout(r, 50));
      c.write('y\r\n.\r\n');
      assert.match((await c.reply()).text, /^550 5\.5\.2 /);
    } finally {
      c.close();
    }
    assert.deepEqual(await stored(), before);
  });

  it('when the message is CRLF throughout and has dot-stuffed lines, then it is stored with the dots unstuffed', async () => {
    const c = await openTransaction();
    try {
      const r = await c.data(simpleMessage({ subject: 'dots', body: '..leading dot\r\n...two dots' }));
      assert.match(r.text, /^250 2\.0\.0 /);
    } finally {
      c.close();
    }
    const row = await t.services.db.selectFrom('messages').select(['text_body']).where('subject', '=', 'dots').executeTakeFirstOrThrow();
    assert.match(row.text_body ?? '', /^\.leading dot\n\.\.two dots/);
  });
});

describe('MX DATA: size, loops', () => {
  it('when the message is larger than MAX_MESSAGE_SIZE, then 552 5.3.4, the stream is drained and nothing is stored', async () => {
    await expectRejected(simpleMessage({ body: 'x'.repeat(76).concat('\r\n').repeat(400) }), /^552 5\.3\.4 /);
  });

  it('when MAIL FROM declares a SIZE over the limit, then 552 5.3.4 at once', async () => {
    const c = await RawSmtp.connect(t.smtpPort);
    try {
      await c.hello();
      assert.match((await c.command(`MAIL FROM:<s@example.org> SIZE=${MAX + 1}`)).text, /^552 5\.3\.4 /);
    } finally {
      c.close();
    }
  });

  it('when the message already has SMTP_MAX_RECEIVED_HEADERS Received fields, then 554 5.4.6', async () => {
    const hops = Array.from({ length: 5 }, (_, i) => `Received: from hop${i}.example.org by hop${i + 1}.example.org; Sat, 21 Nov 2026 06:00:0${i} +0000`);
    await expectRejected(simpleMessage({ extraHeaders: hops }), /^554 5\.4\.6 /);
  });

  it('when the message has fewer Received fields than the limit, then it is accepted', async () => {
    const hops = Array.from({ length: 4 }, (_, i) => `received: from hop${i}.example.org; Sat, 21 Nov 2026 06:00:0${i} +0000`);
    const c = await openTransaction();
    try {
      assert.match((await c.data(simpleMessage({ subject: 'four hops', extraHeaders: hops }))).text, /^250 /);
    } finally {
      c.close();
    }
  });

  it('when "Received:" appears only in the body, then it is not counted', async () => {
    const c = await openTransaction();
    try {
      const body = Array.from({ length: 10 }, () => 'Received: not a header').join('\r\n');
      assert.match((await c.data(simpleMessage({ subject: 'body received', body }))).text, /^250 /);
    } finally {
      c.close();
    }
  });
});

describe('MX DATA: failures are temporary and leave nothing visible', () => {
  it('when the blob store cannot stage, then 451 4.3.0 and nothing is stored', async () => {
    const staging = path.join(t.dataDir, 'blobs', 'tmp');
    await fs.rm(staging, { recursive: true, force: true });
    await fs.writeFile(staging, 'not a directory');
    try {
      const message = simpleMessage({ subject: 'no storage', body: SPILLED_BODY });
      assert.ok(message.length > INLINE_MAX);
      await expectRejected(message, /^451 4\.3\.0 /);
    } finally {
      await fs.rm(staging, { force: true });
      await fs.mkdir(staging);
    }
  });

  it('when the blob store cannot stage, then a message under the inline limit is still stored, in its database row', async () => {
    const staging = path.join(t.dataDir, 'blobs', 'tmp');
    await fs.rm(staging, { recursive: true, force: true });
    await fs.writeFile(staging, 'not a directory');
    try {
      const c = await openTransaction();
      try {
        assert.match((await c.data(simpleMessage({ subject: 'inline without storage' }))).text, /^250 2\.0\.0 /);
      } finally {
        c.close();
      }
    } finally {
      await fs.rm(staging, { force: true });
      await fs.mkdir(staging);
    }
    const row = await t.services.db
      .selectFrom('messages')
      .innerJoin('blobs', 'blobs.key', 'messages.raw_blob_key')
      .select(['blobs.data', 'messages.raw_sha256'])
      .where('messages.subject', '=', 'inline without storage')
      .executeTakeFirstOrThrow();
    assert.ok(row.data, 'the raw bytes are in the blobs row');
    assert.equal(createHash('sha256').update(row.data).digest('hex'), row.raw_sha256);
  });

  it('when the database refuses the insert, then 451 4.3.0 and no message row exists', async () => {
    await sql`CREATE FUNCTION refuse_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$`.execute(t.services.db);
    await sql`CREATE TRIGGER refuse BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse_insert()`.execute(t.services.db);
    try {
      const before = await countRows(t.services, 'messages');
      const c = await openTransaction();
      try {
        assert.match((await c.data(simpleMessage({ subject: 'db down' }))).text, /^451 4\.3\.0 /);
      } finally {
        c.close();
      }
      assert.equal(await countRows(t.services, 'messages'), before);
      const mailbox = await t.services.db.selectFrom('mailboxes').select('id').where('address', '=', 'alice@acme.test').executeTakeFirstOrThrow();
      const charged = await usageOf(t.services.db, mailbox.id);
      const sum = await t.services.db
        .selectFrom('messages')
        .innerJoin('mailboxes', 'mailboxes.id', 'messages.mailbox_id')
        .select((eb) => eb.fn.coalesce(eb.fn.sum<number>('messages.size'), sql<number>`0`).as('n'))
        .where('mailboxes.address', '=', 'alice@acme.test')
        .executeTakeFirstOrThrow();
      assert.equal(Number(charged.used_bytes), Number(sum.n), 'the quota charge rolls back with the message');
    } finally {
      await sql`DROP TRIGGER refuse ON messages`.execute(t.services.db);
      await sql`DROP FUNCTION refuse_insert()`.execute(t.services.db);
    }
  });

  it('when publishing the blob fails inside the transaction, then 451 4.3.0 and nothing is stored', async () => {
    const rawDir = path.join(t.dataDir, 'blobs', 'raw');
    const moved = `${rawDir}.moved`;
    await fs.rename(rawDir, moved).catch(() => undefined);
    await fs.writeFile(rawDir, 'not a directory');
    // a new server process would not know the directory; this one cached it, so use a fresh key space
    try {
      const before = await stored();
      const c = await openTransaction();
      try {
        const r = await c.data(simpleMessage({ subject: `publish fails ${Date.now()}`, body: SPILLED_BODY }));
        assert.match(r.text, /^451 4\.3\.0 /);
      } finally {
        c.close();
      }
      assert.equal((await stored()).messages, before.messages);
    } finally {
      await fs.rm(rawDir, { force: true });
      await fs.rename(moved, rawDir).catch(() => fs.mkdir(rawDir));
    }
  });

  it('when a message is accepted after failures, then it is stored normally', async () => {
    const c = await openTransaction();
    try {
      assert.match((await c.data(simpleMessage({ subject: 'after failures' }))).text, /^250 2\.0\.0 /);
    } finally {
      c.close();
    }
    assert.ok((await messagesFor(t.services, 'alice@acme.test')).some((m) => m.subject === 'after failures'));
  });
});
