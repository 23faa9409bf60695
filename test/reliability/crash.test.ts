/**
 * Crash safety ("nothing accepted is lost"): several senders send unique messages to the real
 * server process on the embedded PostgreSQL while it is killed with SIGKILL at random moments
 * (some sessions mid-DATA, one of them a multi-megabyte message), then restarted (which must
 * cope with the orphaned postgres). After the last restart:
 *   - every message that got 250 is stored exactly once, with the same SHA-256;
 *   - no message that got a 4xx/5xx reply is visible;
 *   - a message whose reply was lost to the kill is stored at most once;
 *   - after blob collection every stored message's raw bytes are still readable (through
 *     BlobReader, from the database row or the blob store) and hash to its raw_sha256.
 * CRASH_KILLS sets the number of kills (default 3; the soak harness runs more).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { readAll } from '../../src/blobs/blob-store.js';
import { LocalBlobStore } from '../../src/blobs/local.blob-store.js';
import { createLogger } from '../../src/core/logger.js';
import { createDb } from '../../src/db/database.js';
import { BlobReader } from '../../src/services/blob-reader.service.js';
import { tempDir } from '../helpers/harness.js';
import { ProcessServer, processEnv } from '../helpers/process-server.js';
import { RawSmtp } from '../helpers/smtp-client.js';

const KILLS = Number(process.env.CRASH_KILLS ?? 3);
const SENDERS = 4;

type Outcome = 'accepted' | 'rejected' | 'unknown';
interface Sent {
  subject: string;
  sha256: string;
  outcome: Outcome;
  reply: string;
}

function makeMessage(subject: string, bodyBytes: number): Buffer {
  // base64 lines never start with '.', so no dot-stuffing is needed and the stored bytes equal these
  const body = randomBytes(Math.ceil((bodyBytes * 3) / 4))
    .toString('base64')
    .replace(/(.{76})/g, '$1\r\n');
  return Buffer.from(`From: crash@example.org\r\nTo: victim@acme.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.org>\r\n\r\n${body}\r\n`);
}

async function senderLoop(port: number, id: number, stop: () => boolean, sent: Sent[]): Promise<void> {
  let n = 0;
  while (!stop()) {
    let c: RawSmtp | undefined;
    try {
      c = await RawSmtp.connect(port);
      await c.hello();
      while (!stop()) {
        const subject = `crash-${id}-${n++}-${randomBytes(4).toString('hex')}`;
        // sender 0 sends a 4 MB message now and then, so kills land mid-DATA of a large message
        const size = id === 0 && n % 3 === 0 ? 4 * 1024 * 1024 : 2000 + Math.floor(Math.random() * 20_000);
        const raw = makeMessage(subject, size);
        const entry: Sent = { subject, sha256: createHash('sha256').update(raw).digest('hex'), outcome: 'unknown', reply: '' };
        sent.push(entry);
        const m = await c.command('MAIL FROM:<crash@example.org>');
        if (m.code !== 250) throw new Error(m.text);
        const r = await c.command('RCPT TO:<victim@acme.test>');
        if (r.code !== 250) throw new Error(r.text);
        const d = await c.data(raw);
        entry.reply = d.text;
        entry.outcome = d.code === 250 ? 'accepted' : 'rejected';
      }
    } catch {
      // the server died under us (or refused while starting): the entry stays 'unknown'
      await new Promise((resolve) => setTimeout(resolve, 100));
    } finally {
      c?.close();
    }
  }
}

describe('crash safety', () => {
  const dataDir = tempDir('mailserver-crash-');
  let server: ProcessServer | undefined;

  after(async () => {
    await server?.stop().catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it(`when the server is killed with SIGKILL ${KILLS} times during deliveries, then every 250 is stored exactly once with the same bytes`, async () => {
    server = new ProcessServer(await processEnv(dataDir, { BLOB_GC_GRACE_MS: '0', BLOB_GC_INTERVAL_MS: '3600000' }));
    await server.start();
    for (const args of [
      ['create-tenant', '--name', 'Crash'],
      ['add-domain', '--tenant', 'Crash', '--domain', 'acme.test'],
      ['create-user', '--email', 'victim@acme.test', '--password', 'password-123', '--quota-mb', '100000'],
    ]) {
      const r = server.admin(...args);
      assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    }

    const sent: Sent[] = [];
    for (let k = 0; k < KILLS; k++) {
      let stopping = false;
      const loops = Array.from({ length: SENDERS }, (_, i) => senderLoop(Number(server!.env.SMTP_PORT), k * 100 + i, () => stopping, sent));
      await new Promise((r) => setTimeout(r, 800 + Math.random() * 1500));
      await server.kill();
      stopping = true;
      await Promise.all(loops);
      await server.start();
    }

    const accepted = sent.filter((s) => s.outcome === 'accepted');
    assert.ok(accepted.length > 20, `too few messages accepted to prove anything (${accepted.length})`);
    assert.ok(sent.some((s) => s.outcome === 'unknown'), 'at least one kill should have landed mid-transaction');

    const db = await server.db();
    try {
      const rows = await db.query<{ subject: string; raw_sha256: string; raw_blob_key: string }>(
        `SELECT subject, raw_sha256, raw_blob_key FROM messages`,
      );
      const bySubject = new Map<string, { raw_sha256: string; raw_blob_key: string }[]>();
      for (const row of rows.rows) bySubject.set(row.subject, [...(bySubject.get(row.subject) ?? []), row]);
      for (const s of sent) {
        const copies = bySubject.get(s.subject) ?? [];
        if (s.outcome === 'accepted') {
          assert.equal(copies.length, 1, `${s.subject} got "${s.reply}" but is stored ${copies.length} times`);
          assert.equal(copies[0]!.raw_sha256, s.sha256, `${s.subject}: stored bytes differ from the bytes sent`);
        } else if (s.outcome === 'rejected') {
          assert.equal(copies.length, 0, `${s.subject} was rejected ("${s.reply}") but is visible`);
        } else {
          assert.ok(copies.length <= 1, `${s.subject} (reply lost to the kill) is stored ${copies.length} times`);
          if (copies.length === 1) assert.equal(copies[0]!.raw_sha256, s.sha256);
        }
      }

      // orphans from the kills are collected, and nothing that is referenced goes with them
      const gc = server.admin('collect-blobs');
      assert.equal(gc.status, 0, gc.stderr);
      await assertRawReadable(server, dataDir, rows.rows);
      const orphans = await db.query<{ n: string }>(`SELECT count(*) AS n FROM blobs WHERE refcount = 0`);
      assert.equal(Number(orphans.rows[0]!.n), 0);
    } finally {
      await db.end();
    }
    assert.equal(await server.stop(), 0, 'a clean stop after the crashes');
  });
});

/** Every stored message's raw bytes, read as the server reads them, hash to its raw_sha256. */
async function assertRawReadable(server: ProcessServer, dataDir: string, rows: { subject: string; raw_sha256: string; raw_blob_key: string }[]): Promise<void> {
  const { db } = createDb({ url: server.dbUrl(), poolSize: 2, logger: createLogger('silent') });
  try {
    const reader = new BlobReader(db, await new LocalBlobStore(path.join(dataDir, 'blobs')).init());
    const where = { row: 0, store: 0 };
    for (const row of rows) {
      const bytes = await readAll(await reader.open(row.raw_blob_key));
      assert.equal(createHash('sha256').update(bytes).digest('hex'), row.raw_sha256, `raw bytes of ${row.subject} after collection`);
      const blob = await db.selectFrom('blobs').select((eb) => eb('data', 'is not', null).as('in_row')).where('key', '=', row.raw_blob_key).executeTakeFirstOrThrow();
      where[blob.in_row ? 'row' : 'store']++;
    }
    // small messages are kept in their database row, the 4 MB ones in the blob store
    assert.ok(where.row > 0, `no message kept in its database row (${JSON.stringify(where)})`);
  } finally {
    await db.destroy();
  }
}
