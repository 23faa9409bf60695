/**
 * MX connection policy over real TCP: per-IP connection cap, idle timeout, the absolute session
 * time cap, early talkers, and graceful shutdown (a transaction in flight finishes and is stored;
 * idle sessions are told 421; new connections are refused).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { rmSync } from 'node:fs';
import pg from 'pg';
import { seedMailbox, startTestServer } from '../helpers/harness.js';
import { RawSmtp, simpleMessage } from '../helpers/smtp-client.js';

describe('MX connection policy', () => {
  it('when one IP holds SMTP_MAX_CONNECTIONS_PER_IP sessions, then the next gets 421 4.7.0 and another IP still gets in', async () => {
    const t = await startTestServer({ SMTP_MAX_CONNECTIONS_PER_IP: '2' });
    const open: RawSmtp[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const c = await RawSmtp.connect(t.smtpPort);
        open.push(c);
        assert.match((await c.reply()).text, /^220 /);
      }
      const third = await RawSmtp.connect(t.smtpPort);
      open.push(third);
      assert.match((await third.reply()).text, /^421 4\.7\.0 /);
      assert.ok(await third.waitClosed(), 'the refused connection is closed');

      const other = await RawSmtp.connect(t.smtpPort, '127.0.0.1', '127.0.0.2');
      open.push(other);
      assert.match((await other.reply()).text, /^220 /, 'a different client address is not affected');

      open[0]!.close();
      await new Promise((r) => setTimeout(r, 200));
      const again = await RawSmtp.connect(t.smtpPort);
      open.push(again);
      assert.match((await again.reply()).text, /^220 /, 'a slot freed by a closed session is reusable');
    } finally {
      for (const c of open) c.close();
      await t.stop();
    }
  });

  it('when a client stays silent longer than SMTP_IDLE_TIMEOUT_MS, then the connection is closed', async () => {
    const t = await startTestServer({ SMTP_IDLE_TIMEOUT_MS: '400' });
    try {
      const c = await RawSmtp.connect(t.smtpPort);
      await c.hello();
      const started = Date.now();
      assert.ok(await c.waitClosed(5000), 'idle connection closed');
      assert.ok(Date.now() - started >= 300, 'not before the idle timeout');
    } finally {
      await t.stop();
    }
  });

  it('when a client keeps a session busy past SMTP_SESSION_MAX_MS, then it gets 421 4.4.2 and is disconnected', async () => {
    const t = await startTestServer({ SMTP_SESSION_MAX_MS: '1200' });
    try {
      const c = await RawSmtp.connect(t.smtpPort);
      await c.hello();
      let last = '';
      const deadline = Date.now() + 6000;
      while (!c.isClosed && Date.now() < deadline) {
        try {
          last = (await c.command('NOOP')).text;
        } catch {
          break;
        }
        if (last.startsWith('421')) break;
        await new Promise((r) => setTimeout(r, 150));
      }
      if (!last.startsWith('421')) last = (await c.reply(1000)).text; // sent while we slept
      assert.match(last, /^421 4\.4\.2 /);
      assert.ok(await c.waitClosed(2000));
    } finally {
      await t.stop();
    }
  });

  it('when a client talks before the greeting, then it is refused', async () => {
    const t = await startTestServer();
    try {
      const socket = net.connect({ port: t.smtpPort, host: '127.0.0.1' });
      const received = await new Promise<string>((resolve) => {
        let data = '';
        socket.on('connect', () => socket.write('EHLO early.test\r\n'));
        socket.on('data', (d: Buffer) => (data += d.toString()));
        socket.on('close', () => resolve(data));
        setTimeout(() => {
          socket.destroy();
          resolve(data);
        }, 3000);
      });
      assert.match(received, /^421 /m);
      assert.ok(!/^250/m.test(received), 'an early talker never gets a 250');
    } finally {
      await t.stop();
    }
  });

  it('when the server stops during transactions, then the messages in flight (in DATA, or only past MAIL FROM) are stored, idle sessions get 421 and new connections are refused', async () => {
    const t = await startTestServer({ SMTP_SHUTDOWN_GRACE_MS: '10000' });
    await seedMailbox(t.services, 'alice@acme.test');
    const busy = await RawSmtp.connect(t.smtpPort);
    const idle = await RawSmtp.connect(t.smtpPort);
    const early = await RawSmtp.connect(t.smtpPort);
    let fresh: RawSmtp | undefined;
    let stopped: Promise<void> | undefined;
    try {
      await busy.hello();
      await idle.hello();
      await busy.command('MAIL FROM:<s@example.org>');
      await busy.command('RCPT TO:<alice@acme.test>');
      assert.equal((await busy.command('DATA')).code, 354);
      busy.write(simpleMessage({ subject: 'in flight during shutdown' }).slice(0, 40));
      // a transaction that has only given MAIL FROM when the stop begins
      await early.hello();
      assert.equal((await early.command('MAIL FROM:<e@example.org>')).code, 250);

      // a connection still inside the 100 ms before the greeting has no envelope yet; ending it
      // must not break the shutdown (it once threw there and cut the transaction in flight)
      fresh = await RawSmtp.connect(t.smtpPort);
      await new Promise((r) => setTimeout(r, 20));
      stopped = t.server.stop();
      assert.match((await idle.reply()).text, /^421 4\.3\.2 /, 'idle session told to come back later');
      await new Promise((r) => setTimeout(r, 200));
      const refused = await new Promise<boolean>((resolve) => {
        const s = net.connect({ port: t.smtpPort, host: '127.0.0.1' });
        s.once('error', () => resolve(true));
        s.once('connect', () => {
          s.destroy();
          resolve(false);
        });
      });
      assert.ok(refused, 'no new connections once stopping');

      busy.write(simpleMessage({ subject: 'in flight during shutdown' }).slice(40));
      busy.write('\r\n.\r\n');
      assert.match((await busy.reply()).text, /^250 2\.0\.0 /, 'the transaction in flight completes');
      assert.equal((await early.command('RCPT TO:<alice@acme.test>')).code, 250, 'a transaction still at RCPT goes on');
      assert.match((await early.data(simpleMessage({ subject: 'begun before shutdown' }))).text, /^250 2\.0\.0 /);
      assert.match((await early.reply()).text, /^421 4\.3\.2 /, 'and is then told to come back later');
      assert.match((await fresh.reply()).text, /^421 4\.3\.2 /, 'a session not yet greeted is told to come back later too');
    } finally {
      busy.close();
      idle.close();
      early.close();
      fresh?.close();
    }
    await stopped;
    // the server's own pool is closed now: read through a new connection
    const db = new pg.Client({ connectionString: t.config.DATABASE_URL });
    await db.connect();
    try {
      const rows = await db.query<{ subject: string; n: string }>(
        `SELECT subject, count(*) AS n FROM messages WHERE subject IN ('in flight during shutdown', 'begun before shutdown') GROUP BY subject ORDER BY subject`,
      );
      assert.deepEqual(rows.rows.map((r) => [r.subject, Number(r.n)]), [['begun before shutdown', 1], ['in flight during shutdown', 1]]);
    } finally {
      await db.end();
      rmSync(t.dataDir, { recursive: true, force: true });
    }
  });
});
