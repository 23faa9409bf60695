/**
 * The server under the real PM2 (the devDependency, with its own PM2_HOME in a temporary
 * directory), started from ecosystem.config.js as docs/operations.md says:
 * - all-in-one: `pm2 reload mailserver` while senders keep sending and one transaction is held
 *   open mid-DATA across the reload: every transaction that got past MAIL FROM ends with a reply
 *   (none cut), every 250 is stored exactly once with the bytes sent, and the process is new.
 * - split (MAILSERVER_LAYOUT=split): the API in cluster mode with two instances, SMTP and the
 *   worker as their own apps; mail is received and delivered across them, the SMTP process serves
 *   /metrics on its METRICS_PORT, and `pm2 reload mailserver-smtp` refuses no connection.
 * The apps use a database of the test run's PostgreSQL (DATABASE_URL), as the split requires.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { createTestDatabase, tempDir } from '../helpers/harness.js';
import { freePort, ROOT } from '../helpers/process-server.js';
import { RawSmtp } from '../helpers/smtp-client.js';

const PM2 = path.join(ROOT, 'node_modules/pm2/bin/pm2');
const ADMIN = path.join(ROOT, 'dist/src/cli/admin.js');

interface Pm2Setup {
  env: NodeJS.ProcessEnv;
  smtpPort: number;
  apiPort: number;
  databaseUrl: string;
}

async function setup(extra: Record<string, string> = {}): Promise<Pm2Setup> {
  const home = tempDir('pm2-home-');
  const databaseUrl = await createTestDatabase();
  const smtpPort = await freePort();
  const apiPort = await freePort();
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: home,
    PM2_HOME: path.join(home, '.pm2'),
    LOG_DIR: path.join(home, 'logs'),
    DATA_DIR: path.join(home, 'data'),
    DATABASE_URL: databaseUrl,
    BIND_HOST: '127.0.0.1',
    SMTP_PORT: String(smtpPort),
    SUBMISSION_PORT: String(await freePort()),
    SMTPS_PORT: String(await freePort()),
    API_PORT: String(apiPort),
    MAIL_HOSTNAME: 'mx.test.local',
    INBOUND_AUTH_ENABLED: 'false',
    LOG_LEVEL: 'warn',
    // the apps run with NODE_ENV=production, which requires real secrets
    JWT_SECRET: randomBytes(32).toString('hex'),
    SECRETS_KEY: randomBytes(32).toString('hex'),
    ...extra,
  };
  return { env, smtpPort, apiPort, databaseUrl };
}

function pm2(s: Pm2Setup, ...args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [PM2, ...args], { cwd: ROOT, env: s.env, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
}

/** `pm2 jlist`: name, pid and status of every app instance. */
function apps(s: Pm2Setup): { name: string; pid: number; status: string }[] {
  const r = spawnSync(process.execPath, [PM2, 'jlist'], { cwd: ROOT, env: s.env, encoding: 'utf8' });
  const list = JSON.parse(r.stdout.slice(r.stdout.indexOf('['))) as { name: string; pid: number; pm2_env: { status: string } }[];
  return list.map((a) => ({ name: a.name, pid: a.pid, status: a.pm2_env.status }));
}

function admin(s: Pm2Setup, ...args: string[]): void {
  const r = spawnSync(process.execPath, [ADMIN, ...args], { cwd: ROOT, env: s.env, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `admin ${args.join(' ')}: ${r.stderr}`);
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function greets(port: number): Promise<boolean> {
  const c = await RawSmtp.connect(port);
  try {
    return (await c.reply(3000)).code === 220;
  } finally {
    c.close();
  }
}

function message(subject: string): Buffer {
  const body = randomBytes(1500).toString('base64').replace(/(.{76})/g, '$1\r\n');
  return Buffer.from(`From: pm2@example.org\r\nTo: box@pm2.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.org>\r\n\r\n${body}\r\n`);
}

interface Tally {
  accepted: Map<string, string>; // subject → sha256 of the bytes sent
  refused: number; // connections refused (nothing listening)
  retried: number; // 421 before a transaction began: the client tries again, as MTAs do
  cut: string[]; // transactions that passed MAIL FROM and ended without a final reply
}

/** One sender: a new connection per message, until stop(). */
async function sender(port: number, id: number, stop: () => boolean, tally: Tally): Promise<void> {
  for (let n = 0; !stop(); n++) {
    const subject = `pm2-${id}-${n}-${randomBytes(3).toString('hex')}`;
    let c: RawSmtp;
    try {
      c = await RawSmtp.connect(port);
    } catch {
      tally.refused++;
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    let inTransaction = false;
    try {
      const greeting = await c.hello();
      if (greeting.code !== 250) {
        tally.retried++;
        continue;
      }
      const m = await c.command('MAIL FROM:<pm2@example.org>');
      if (m.code === 421) {
        tally.retried++;
        continue;
      }
      assert.equal(m.code, 250, m.text);
      inTransaction = true;
      assert.equal((await c.command('RCPT TO:<box@pm2.test>')).code, 250);
      const raw = message(subject);
      const d = await c.data(raw);
      assert.equal(d.code, 250, `${subject}: ${d.text}`);
      tally.accepted.set(subject, createHash('sha256').update(raw).digest('hex'));
      inTransaction = false;
      await c.command('QUIT').catch(() => undefined);
    } catch (err) {
      if (inTransaction) tally.cut.push(`${subject}: ${(err as Error).message}`);
      else tally.retried++;
    } finally {
      c.close();
    }
  }
}

async function storedHashes(databaseUrl: string): Promise<Map<string, string[]>> {
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const rows = await db.query<{ subject: string; raw_sha256: string }>('SELECT subject, raw_sha256 FROM messages');
    const by = new Map<string, string[]>();
    for (const r of rows.rows) by.set(r.subject, [...(by.get(r.subject) ?? []), r.raw_sha256]);
    return by;
  } finally {
    await db.end();
  }
}

function assertStoredOnce(tally: Tally, stored: Map<string, string[]>): void {
  for (const [subject, sha] of tally.accepted) {
    const copies = stored.get(subject) ?? [];
    assert.equal(copies.length, 1, `${subject} got 250 and is stored ${copies.length} times`);
    assert.equal(copies[0], sha, `${subject}: stored bytes differ`);
  }
}

/** Runs `pm2 reload <apps>` while senders send and one transaction is held open mid-DATA across it. */
async function reloadUnderLoad(s: Pm2Setup, appNames: string[]): Promise<{ tally: Tally; held: { code: number; text: string } }> {
  const tally: Tally = { accepted: new Map(), refused: 0, retried: 0, cut: [] };
  let stopping = false;
  const senders = [0, 1, 2].map((id) => sender(s.smtpPort, id, () => stopping, tally));
  try {
    await new Promise((r) => setTimeout(r, 500));

    // a transaction held open: the body's first half before the reload, the rest while it runs
    const held = await RawSmtp.connect(s.smtpPort);
    try {
      await held.hello();
      assert.equal((await held.command('MAIL FROM:<pm2@example.org>')).code, 250);
      assert.equal((await held.command('RCPT TO:<box@pm2.test>')).code, 250);
      assert.equal((await held.command('DATA')).code, 354);
      const heldRaw = message('pm2-held');
      held.write(heldRaw.subarray(0, 1000));

      const reload = spawn(process.execPath, [PM2, 'reload', ...appNames], { cwd: ROOT, env: s.env, stdio: 'ignore' });
      const reloaded = new Promise<number | null>((r) => reload.once('exit', r));
      await new Promise((r) => setTimeout(r, 1500)); // the old process has been asked to stop by now
      held.write(heldRaw.subarray(1000));
      held.write('.\r\n');
      const final = await held.reply(20_000).catch((err: Error) => ({ code: 0, text: `no reply: ${err.message}` }));
      if (final.code === 250) tally.accepted.set('pm2-held', createHash('sha256').update(heldRaw).digest('hex'));
      assert.equal(await reloaded, 0, 'pm2 reload exits 0');
      await new Promise((r) => setTimeout(r, 1000)); // the new process takes mail
      return { tally, held: final };
    } finally {
      held.close();
    }
  } finally {
    // the senders stop even when an assertion above failed, or the test process would never end
    stopping = true;
    await Promise.all(senders);
  }
}

/** A mailbox box@pm2.test (through the admin CLI), then `pm2 start ecosystem.config.js`, until SMTP greets. */
async function startApps(extra: Record<string, string> = {}): Promise<Pm2Setup> {
  const s = await setup(extra);
  admin(s, 'create-tenant', '--name', 'Pm2');
  admin(s, 'add-domain', '--tenant', 'Pm2', '--domain', 'pm2.test');
  admin(s, 'create-user', '--email', 'box@pm2.test', '--password', 'password-123', '--quota-mb', '10000');
  const r = pm2(s, 'start', 'ecosystem.config.js');
  assert.equal(r.status, 0, r.out);
  await waitFor('the SMTP greeting', () => greets(s.smtpPort));
  return s;
}

describe('PM2', () => {
  describe('when the all-in-one app is reloaded under load', () => {
    let s: Pm2Setup;
    before(async () => {
      s = await startApps();
    });
    after(() => {
      if (s) pm2(s, 'kill');
    });

    it('then no transaction is cut, every 250 is stored once, and a new process serves', async () => {
      const [before] = apps(s);
      assert.equal(before?.name, 'mailserver');
      assert.equal(before?.status, 'online');

      const { tally, held } = await reloadUnderLoad(s, ['mailserver']);
      assert.equal(held.code, 250, `the transaction held open across the reload: ${held.text}`);
      assert.deepEqual(tally.cut, [], 'transactions cut by the reload');
      assert.ok(tally.accepted.size >= 10, `only ${tally.accepted.size} messages accepted`);
      assertStoredOnce(tally, await storedHashes(s.databaseUrl));

      const [afterReload] = apps(s);
      assert.equal(afterReload?.status, 'online');
      assert.notEqual(afterReload?.pid, before?.pid, 'a new process');
      const logs = pm2(s, 'logs', 'mailserver', '--nostream', '--lines', '200').out;
      assert.doesNotMatch(logs, /"level":(50|60)/, 'no error or fatal in the logs');
    });
  });

  describe('when the split layout runs', () => {
    let s: Pm2Setup;
    let metricsPort: number;
    before(async () => {
      metricsPort = await freePort();
      s = await startApps({ MAILSERVER_LAYOUT: 'split', SMTP_METRICS_PORT: String(metricsPort), WORKER_METRICS_PORT: String(await freePort()) });
      await waitFor('the API', async () => (await fetch(`http://127.0.0.1:${s.apiPort}/healthz`)).ok);
    });
    after(() => {
      if (s) pm2(s, 'kill');
    });

    it('then the API runs as two cluster instances beside one SMTP and one worker process', () => {
      const list = apps(s);
      const count = (name: string): number => list.filter((a) => a.name === name && a.status === 'online').length;
      assert.equal(count('mailserver-api'), 2, JSON.stringify(list));
      assert.equal(count('mailserver-smtp'), 1);
      assert.equal(count('mailserver-worker'), 1);
      assert.equal(count('mailserver'), 0, 'the all-in-one app is not started in the split layout');
    });

    it('then mail received by the SMTP process is readable through the API processes, and the SMTP process serves /metrics', async () => {
      const login = await fetch(`http://127.0.0.1:${s.apiPort}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'box@pm2.test', password: 'password-123' }),
      });
      assert.equal(login.status, 200);
      const { access_token } = (await login.json()) as { access_token: string };
      const c = await RawSmtp.connect(s.smtpPort);
      await c.hello();
      await c.command('MAIL FROM:<pm2@example.org>');
      await c.command('RCPT TO:<box@pm2.test>');
      assert.equal((await c.data(message('split-one'))).code, 250);
      c.close();
      // both API instances answer (PM2 balances connections): ask a few times on new connections
      for (let i = 0; i < 4; i++) {
        const list = await fetch(`http://127.0.0.1:${s.apiPort}/api/webmail/messages?mailbox=INBOX`, {
          headers: { authorization: `Bearer ${access_token}`, connection: 'close' },
        });
        assert.equal(list.status, 200);
        const body = (await list.json()) as { data: { subject: string }[] };
        assert.ok(body.data.some((m) => m.subject === 'split-one'), JSON.stringify(body).slice(0, 300));
      }
      const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      assert.equal(metrics.status, 200);
      assert.match(await metrics.text(), /^mailserver_smtp_/m);
    });

    it('then reloading the SMTP app refuses no connection and cuts no transaction', async () => {
      const before = apps(s).find((a) => a.name === 'mailserver-smtp');
      const { tally, held } = await reloadUnderLoad(s, ['mailserver-smtp']);
      assert.equal(held.code, 250, held.text);
      assert.deepEqual(tally.cut, []);
      assert.equal(tally.refused, 0, 'connections refused during the reload');
      assertStoredOnce(tally, await storedHashes(s.databaseUrl));
      const afterReload = apps(s).find((a) => a.name === 'mailserver-smtp');
      assert.notEqual(afterReload?.pid, before?.pid);
      assert.equal(afterReload?.status, 'online');
    });
  });
});
