/**
 * Crash safety of sending: users submit a batch of 200 unique messages over SMTPS while the
 * server process is killed with SIGKILL, once during the submissions and again while the queue
 * is delivering to a relay sink (a fake relay with STARTTLS and AUTH in this process). After the
 * last restart the queue drains, and:
 *   - every message that got 250 reaches the sink at least once and at most twice (the
 *     documented window: accepted by the relay, killed before `sent` was committed);
 *   - a message whose reply was lost to the kill reaches it at most twice;
 *   - a message refused with 4xx/5xx never reaches it;
 *   - no outbound row is left behind.
 * OUTBOUND_LEASE is short so rows left `sending` by a kill are taken over within seconds.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { startFakeRelay, type FakeRelay } from '../helpers/fake-relay.js';
import { tempDir } from '../helpers/harness.js';
import { ProcessServer, processEnv } from '../helpers/process-server.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { testCertificate } from '../helpers/test-tls.js';

const TOTAL = 200;
const SENDERS = 4;
const PASSWORD = 'password-123';

type Outcome = 'accepted' | 'rejected' | 'unknown';

async function senderLoop(port: number, next: () => number | null, stop: () => boolean, outcomes: Map<string, Outcome>): Promise<void> {
  let c: RawSmtp | undefined;
  try {
    c = await RawSmtp.connectTls(port);
    await c.hello();
    if ((await c.authPlain('user@crash.test', PASSWORD)).code !== 235) return;
    for (;;) {
      if (stop()) return;
      const n = next();
      if (n === null) return;
      const subject = `batch-${n}-${randomBytes(3).toString('hex')}`;
      outcomes.set(subject, 'unknown');
      if ((await c.command('MAIL FROM:<user@crash.test>')).code !== 250) throw new Error('MAIL refused');
      if ((await c.command(`RCPT TO:<rcpt${n}@far.test>`)).code !== 250) throw new Error('RCPT refused');
      const reply = await c.data(`From: user@crash.test\r\nTo: rcpt${n}@far.test\r\nSubject: ${subject}\r\n\r\nmessage ${n}\r\n`);
      outcomes.set(subject, reply.code === 250 ? 'accepted' : 'rejected');
    }
  } catch {
    // the server went away mid-session: the message in flight stays 'unknown'
  } finally {
    c?.close();
  }
}

describe('outbound crash safety', { timeout: 240_000 }, () => {
  let server: ProcessServer | undefined;
  let relay: FakeRelay | undefined;
  const dataDir = tempDir('mailserver-outcrash-');

  after(async () => {
    await server?.stop().catch(() => undefined);
    await relay?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('every accepted message is delivered, none more than twice, across kill -9', async () => {
    const cert = testCertificate();
    relay = await startFakeRelay({ tls: 'starttls', auth: { user: 'sink', pass: 'sink pass' } });
    server = new ProcessServer(
      await processEnv(dataDir, {
        RELAY_URL: `smtp://sink:sink%20pass@localhost:${relay.port}`,
        OUTBOUND_TLS_CA_FILE: cert.caFile,
        OUTBOUND_LEASE: '2s',
        OUTBOUND_POLL_INTERVAL: '200ms',
        OUTBOUND_TIMEOUT: '5s',
        OUTBOUND_RETRY_SCHEDULE: '1s',
        SEND_LIMIT_PER_HOUR: '10000',
        SEND_LIMIT_PER_DAY: '10000',
      }),
    );
    await server.start();
    for (const args of [
      ['create-tenant', '--name', 'crash-co'],
      ['add-domain', '--tenant', 'crash-co', '--domain', 'crash.test'],
      ['create-user', '--email', 'user@crash.test', '--password', PASSWORD],
    ]) {
      const r = server.admin(...args);
      assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    }
    const db = await server.db();
    await db.query(`UPDATE domains SET status = 'verified' WHERE name = 'crash.test'`);
    await db.end();

    const outcomes = new Map<string, Outcome>();
    let issued = 0;
    const next = (): number | null => (issued < TOTAL ? issued++ : null);
    const port = Number(server.env.SMTPS_PORT);

    // kill 1: in the middle of the submissions
    let stopping = false;
    let loops = Array.from({ length: SENDERS }, () => senderLoop(port, next, () => stopping, outcomes));
    await new Promise((r) => setTimeout(r, 700 + Math.random() * 700));
    await server.kill();
    stopping = true;
    await Promise.all(loops);
    await server.start();
    // the rest of the batch
    stopping = false;
    loops = Array.from({ length: SENDERS }, () => senderLoop(port, next, () => stopping, outcomes));
    await Promise.all(loops);
    assert.equal(issued, TOTAL);

    // kill 2 (and 3): while the queue delivers
    for (let k = 0; k < 2; k++) {
      await new Promise((r) => setTimeout(r, 150 + Math.random() * 400));
      await server.kill();
      await server.start();
    }

    const client = await server.db();
    try {
      const deadline = Date.now() + 90_000;
      for (;;) {
        const left = await client.query<{ n: string }>(`SELECT count(*) AS n FROM outbound WHERE status <> 'sent'`);
        if (Number(left.rows[0]!.n) === 0) break;
        if (Date.now() > deadline) {
          const rows = await client.query(`SELECT rcpt_to, status, last_reply FROM outbound WHERE status <> 'sent' LIMIT 5`);
          assert.fail(`outbound rows not delivered: ${JSON.stringify(rows.rows)}`);
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      await client.end();
    }

    const received = new Map<string, number>();
    for (const m of relay.messages) {
      const subject = /^Subject: (.*)$/m.exec(m.raw.toString('latin1'))?.[1]?.trim() ?? '';
      received.set(subject, (received.get(subject) ?? 0) + 1);
    }
    const accepted = [...outcomes].filter(([, o]) => o === 'accepted');
    assert.ok(accepted.length > TOTAL / 2, `too few accepted to prove anything (${accepted.length})`);
    for (const [subject, outcome] of outcomes) {
      const n = received.get(subject) ?? 0;
      if (outcome === 'accepted') assert.ok(n >= 1 && n <= 2, `${subject} got 250 but reached the relay ${n} times`);
      else if (outcome === 'rejected') assert.equal(n, 0, `${subject} was refused but reached the relay`);
      else assert.ok(n <= 2, `${subject} (reply lost to the kill) reached the relay ${n} times`);
    }
    const duplicates = [...received.values()].filter((n) => n > 1).length;
    console.log(`# outbound crash: ${accepted.length} accepted, ${relay.messages.length} relayed, ${duplicates} duplicated by the crash window`);
    assert.equal(await server.stop(), 0, 'a clean stop after the crashes');
  });
});
