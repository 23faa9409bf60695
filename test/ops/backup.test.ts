/**
 * scripts/backup and scripts/restore, run as the child processes an operator runs, against the
 * real server. A server is filled with two tenants' mail over real SMTP (small messages whose
 * bytes live in their database row, large ones and attachments in the blob store), a message
 * queued for delivery, DKIM keys and a user's own relay. It is backed up while running, then
 * restored into a NEW empty database and a NEW empty DATA_DIR, and a server started on that must
 * hold the same rows in every table, serve the same raw bytes, let the users log in, and still
 * decrypt the secrets: the queued message leaves through the user's relay (its password
 * decrypted) DKIM-signed (the domain key decrypted). Then the bad inputs, each refused with a
 * clear error and nothing changed; the blob collector held off during a backup; the embedded
 * database (backup beside a running server, restore refused while one runs); and the same round
 * trip through Azure Blob storage (Azurite).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { blobKey } from '../../src/blobs/blob-store.js';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/core/logger.js';
import { createServer } from '../../src/server.js';
import { holdBackupLock, releaseBackupLock } from '../../src/services/backup-lock.js';
import type { Manifest } from '../../src/services/backup-manifest.js';
import { startAzurite, type Azurite } from '../helpers/azurite.js';
import { startFakeRelay, type FakeRelay } from '../helpers/fake-relay.js';
import { createTestDatabase, tempDir, testEnv, type TestServer } from '../helpers/harness.js';
import { call } from '../helpers/http.js';
import { ProcessServer, processEnv, ROOT } from '../helpers/process-server.js';
import { sendWithNodemailer } from '../helpers/smtp-client.js';
import { testCertificate } from '../helpers/test-tls.js';
import { PASSWORD, UNTHROTTLED_ENV, usersApi, type ApiTenant } from '../helpers/users-api.js';

const SECRETS_KEY = 'c0ffee'.repeat(10) + 'beef';
const OTHER_KEY = 'ab'.repeat(32);
const LARGE = 150_000; // above BLOB_INLINE_MAX_BYTES (64 KiB): the blob store holds it
const RELAY_AUTH = { user: 'alice-relay', pass: 'relay secret' };
const SCRIPT_TIMEOUT_MS = 60_000;

const serverEnv = (): Record<string, string> => ({
  ...UNTHROTTLED_ENV,
  SECRETS_KEY,
  OUTBOUND_TLS_CA_FILE: testCertificate().caFile,
  ALLOW_PRIVATE_RELAY_HOSTS: 'true',
  OUTBOUND_TIMEOUT: '5s',
});

interface Target {
  dataDir: string;
  databaseUrl: string;
  env?: Record<string, string>;
}

const targets: Target[] = [];

async function newTarget(env: Record<string, string> = {}): Promise<Target> {
  const target = { dataDir: tempDir('backup-target-'), databaseUrl: await createTestDatabase(), env };
  targets.push(target);
  return target;
}

/** The real server in-process on an existing DATA_DIR and database (a restored one). */
async function startOn(target: Target): Promise<TestServer> {
  const config = loadConfig({ env: testEnv(target.dataDir, target.databaseUrl, { ...serverEnv(), ...target.env }), envFile: null });
  const server = await createServer(config, createLogger(config.LOG_LEVEL));
  const ports = server.ports;
  return { config, server, services: server.services, smtpPort: ports.smtp!, submissionPort: ports.submission!, smtpsPort: ports.smtps!, apiPort: ports.api!, dataDir: target.dataDir, stop: () => server.stop() };
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** scripts/backup or scripts/restore as a child process, configured for `target` like a server would be. */
function runScript(name: 'backup' | 'restore', args: string[], target: Target | Record<string, string>): Promise<Run> {
  const env: Record<string, string> = isTarget(target)
    ? { DATA_DIR: target.dataDir, DATABASE_URL: target.databaseUrl, SECRETS_KEY, ...(target.env ?? {}) }
    : target;
  const child = spawn(path.join(ROOT, 'scripts', name), args, {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: 'test', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // a hung script fails its test with its output instead of holding the run until the file's timeout
  const timer = setTimeout(() => child.kill('SIGKILL'), SCRIPT_TIMEOUT_MS);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

function isTarget(t: Target | Record<string, string>): t is Target {
  return typeof t.databaseUrl === 'string' && typeof t.dataDir === 'string';
}

function assertRefused(run: Run, message: RegExp, code = 1): void {
  assert.equal(run.status, code, `${run.stdout}${run.stderr}`);
  assert.match(run.stderr, message);
  assert.ok(!/\n\s+at /.test(run.stderr), `no stack trace: ${run.stderr}`);
}

async function query<T extends pg.QueryResultRow>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

/** Every row of every table (but the runtime-only ones), ordered by primary key. */
async function tableContents(url: string): Promise<Record<string, unknown[]>> {
  const tables = await query<{ name: string }>(
    url,
    `SELECT relname::text AS name FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'
       AND relname NOT IN ('rate_limits', 'kysely_migration_lock') ORDER BY 1`,
  );
  const out: Record<string, unknown[]> = {};
  for (const { name } of tables) out[name] = await query(url, `SELECT * FROM "${name}" ORDER BY 1`);
  return out;
}

async function tablesIn(url: string): Promise<number> {
  const rows = await query<{ n: number }>(url, `SELECT count(*)::int AS n FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'`);
  return rows[0]!.n;
}

/** Files under `dir`, as paths relative to it. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

/** Published blobs in a local store (staged ones, under tmp/, are not blobs yet). */
function blobFiles(dataDir: string): string[] {
  return filesUnder(path.join(dataDir, 'blobs')).filter((f) => !f.startsWith(`tmp${path.sep}`));
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Person {
  email: string;
  userId: string;
}

/** Every message of every person, as the API serves its raw bytes: id → SHA-256, and each mailbox's used bytes. */
async function apiView(t: TestServer, people: Person[]): Promise<{ raw: Record<string, string>; used: Record<string, number> }> {
  const raw: Record<string, string> = {};
  const used: Record<string, number> = {};
  for (const p of people) {
    const login = await call<{ access_token: string }>(t.apiPort, 'POST', '/api/auth/login', { body: { email: p.email, password: PASSWORD } });
    assert.equal(login.status, 200, `${p.email} logs in: ${login.text}`);
    const token = login.body.access_token;
    const boxes = await call<{ mailbox: { used_bytes: number }; data: { id: string }[] }>(t.apiPort, 'GET', '/api/webmail/mailboxes', { token });
    used[p.email] = boxes.body.mailbox.used_bytes;
    for (const folder of boxes.body.data) {
      const list = await call<{ data: { id: string }[] }>(t.apiPort, 'GET', `/api/webmail/messages?mailbox=${folder.id}&limit=100`, { token });
      for (const m of list.body.data) {
        const res = await fetch(`http://127.0.0.1:${t.apiPort}/api/webmail/messages/${m.id}/raw`, { headers: { authorization: `Bearer ${token}` } });
        assert.equal(res.status, 200);
        raw[m.id] = sha256(Buffer.from(await res.arrayBuffer()));
      }
    }
  }
  return { raw, used };
}

let relay: FakeRelay;
let source: Target;
let server: TestServer;
let people: Person[];
let backupDir: string;
let before_: { tables: Record<string, unknown[]>; api: Awaited<ReturnType<typeof apiView>> };
const scratch = tempDir('backup-scratch-');

/** Two tenants' mail through real SMTP and the API, a queued message, a user relay. */
async function fill(t: TestServer): Promise<Person[]> {
  const h = usersApi(t);
  const a: ApiTenant = await h.newTenant('bka');
  const b: ApiTenant = await h.newTenant('bkb');
  for (const d of [a.domain, b.domain]) await t.services.db.updateTable('domains').set({ status: 'verified', verified_at: new Date() }).where('name', '=', d).execute();
  const alice = await h.createUser(a);
  const bob = await h.createUser(a);
  const carol = await h.createUser(b);
  const send = (to: string | string[], subject: string, extra: { text?: string; attachments?: { filename: string; content: Buffer; contentType: string }[] } = {}) =>
    sendWithNodemailer(t.smtpPort, { from: 'someone@example.org', to, subject, ...extra }).then((r) => assert.match(r, /^250 /));
  await send(alice.email, 'small inline');
  await send(carol.email, 'small attachment', { attachments: [{ filename: 'note.txt', content: Buffer.from('a small note'), contentType: 'text/plain' }] });
  await send([alice.email, bob.email], 'large attachment', { attachments: [{ filename: 'big.bin', content: randomBytes(LARGE), contentType: 'application/octet-stream' }] });
  await send(carol.email, 'large body', { text: 'lorem ipsum '.repeat(LARGE / 12) });

  const token = (await h.login(alice.email)).body.access_token;
  const inbox = await call<{ data: { id: string; subject: string }[] }>(t.apiPort, 'GET', '/api/webmail/messages', { token });
  const [first, second] = inbox.body.data;
  assert.equal((await call(t.apiPort, 'PUT', `/api/webmail/messages/${first!.id}`, { token, body: { seen: true, flagged: true } })).status, 200);
  const folder = await call<{ id: string }>(t.apiPort, 'POST', '/api/webmail/mailboxes', { token, body: { name: 'Projects' } });
  assert.equal((await call(t.apiPort, 'PUT', `/api/webmail/messages/${second!.id}`, { token, body: { mailbox: folder.body.id } })).status, 200);
  const settings = await call(t.apiPort, 'POST', '/api/smtp/settings', { token, body: { host: '127.0.0.1', port: relay.port, secure: false, ...RELAY_AUTH } });
  assert.equal(settings.status, 200, settings.text);
  const queued = await call<{ status: string }>(t.apiPort, 'POST', '/api/messages/send-email', { token, body: { to: 'friend@far.test', subject: 'queued before the backup', text: 'hi' } });
  assert.equal(queued.status, 202, queued.text);
  return [alice, bob, carol].map((u) => ({ email: u.email, userId: u.id }));
}

before(async () => {
  relay = await startFakeRelay({ tls: 'starttls', auth: RELAY_AUTH });
  source = await newTarget();
  server = await startOn(source);
  people = await fill(server);
  before_ = { api: await apiView(server, people), tables: await tableContents(source.databaseUrl) };
  backupDir = path.join(scratch, 'backup-1');
});

after(async () => {
  await server?.stop();
  await relay?.close();
  rmSync(scratch, { recursive: true, force: true });
  for (const t of targets) rmSync(t.dataDir, { recursive: true, force: true });
});

describe('backup and restore round trip (local blob store)', () => {
  let restored: Target;

  it('when the server is running, then scripts/backup writes the tables, the blobs and a manifest', async () => {
    const run = await runScript('backup', [backupDir], source);
    assert.equal(run.status, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /table messages: \d+ rows/);
    assert.match(run.stdout, /done: \d+ tables, \d+ rows, \d+ blobs .* written to /);
    const manifest = JSON.parse(readFileSync(path.join(backupDir, 'manifest.json'), 'utf8')) as Manifest;
    assert.equal(manifest.last_migration, manifest.migrations.at(-1));
    assert.equal(manifest.storage_driver, 'local');
    const names = manifest.tables.map((t) => t.name);
    for (const t of ['messages', 'blobs', 'users', 'outbound', 'smtp_settings', 'quota_charges', 'kysely_migration']) assert.ok(names.includes(t), t);
    assert.ok(!names.includes('rate_limits'));
    const inStore = await query<{ key: string }>(source.databaseUrl, 'SELECT key FROM blobs WHERE data IS NULL');
    const inRow = await query<{ n: number }>(source.databaseUrl, 'SELECT count(*)::int AS n FROM blobs WHERE data IS NOT NULL');
    assert.ok(inStore.length >= 2 && inRow[0]!.n >= 2, 'both kinds of blobs are in the test');
    assert.equal(manifest.blobs.count, inStore.length);
    for (const { key } of inStore) assert.ok(existsSync(path.join(backupDir, 'blobs', key)), key);
    assert.ok(!readdirSync(scratch).some((f) => f.includes('.partial')), 'no partial directory left');
  });

  it('when restored into a new empty database and DATA_DIR, then a server on it has the same rows, bytes, logins and secrets', async () => {
    restored = await newTarget();
    const run = await runScript('restore', [backupDir], restored);
    assert.equal(run.status, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /verified \d+ tables/);
    assert.match(run.stdout, /done: \d+ tables, \d+ rows, \d+ blobs/);
    const manifest = JSON.parse(readFileSync(path.join(backupDir, 'manifest.json'), 'utf8')) as Manifest;
    assert.deepEqual(blobFiles(restored.dataDir).sort(), filesUnder(path.join(backupDir, 'blobs')).sort());
    assert.equal(blobFiles(restored.dataDir).length, manifest.blobs.count);
    const t = await startOn(restored);
    try {
      assert.deepEqual(await tableContents(restored.databaseUrl), before_.tables);
      assert.deepEqual(await apiView(t, people), before_.api);
      // the queued message leaves through alice's relay (its password decrypted), DKIM-signed (the domain key decrypted)
      assert.equal(await t.services.queue.runDue(), 1);
      const [sent] = await relay.waitForMessages(1);
      assert.equal(sent!.authUser, RELAY_AUTH.user);
      assert.deepEqual(sent!.rcptTo, ['friend@far.test']);
      assert.match(sent!.raw.toString('latin1'), new RegExp(`^DKIM-Signature: [^]*d=${people[0]!.email.split('@')[1]!.replace(/\./g, '\\.')}`));
      // identity columns continue past the restored ids: new mail is charged to the quota ledger
      assert.match(await sendWithNodemailer(t.smtpPort, { from: 'x@example.org', to: people[2]!.email, subject: 'after restore' }), /^250 /);
    } finally {
      await t.stop();
    }
  });

  describe('bad input: a clear error and the target unchanged', () => {
    let empty: Target;
    before(async () => {
      empty = await newTarget();
    });

    async function assertUntouched(target: Target): Promise<void> {
      assert.equal(await tablesIn(target.databaseUrl), 0, 'no table created');
      assert.deepEqual(blobFiles(target.dataDir), [], 'no blob stored');
    }

    function copyOfBackup(name: string, change: (dir: string) => void): string {
      const dir = path.join(scratch, name);
      cpSync(backupDir, dir, { recursive: true });
      change(dir);
      return dir;
    }

    it('when the directory does not exist, then restore refuses', async () => {
      assertRefused(await runScript('restore', [path.join(scratch, 'nope')], empty), /error: backup directory .*nope does not exist/);
      await assertUntouched(empty);
    });

    it('when the directory is not a backup, then restore refuses', async () => {
      const dir = path.join(scratch, 'not-a-backup');
      mkdirSync(dir);
      assertRefused(await runScript('restore', [dir], empty), /has no manifest\.json: it is not a backup/);
      await assertUntouched(empty);
    });

    it('when a blob was changed, then restore names it and stores nothing', async () => {
      const manifest = JSON.parse(readFileSync(path.join(backupDir, 'manifest.json'), 'utf8')) as Manifest;
      const key = filesUnder(path.join(backupDir, 'blobs'))[0]!;
      const dir = copyOfBackup('tampered-blob', (d) => {
        const file = path.join(d, 'blobs', key);
        const bytes = readFileSync(file);
        bytes[100] = bytes[100]! ^ 0xff;
        writeFileSync(file, bytes);
      });
      assert.ok(manifest.blobs.count > 0);
      const damaged = new RegExp(`error: blob ${key.replace(/\//g, '\\/')} in the backup is damaged`);
      assertRefused(await runScript('restore', [dir], empty), damaged);
      await assertUntouched(empty);
      // the check an operator runs on an offsite copy: the intact one passes, the damaged one does not
      assertRefused(await runScript('restore', ['--verify-only', dir], empty), damaged);
      const intact = await runScript('restore', ['--verify-only', backupDir], empty);
      assert.equal(intact.status, 0, intact.stdout + intact.stderr);
      assert.match(intact.stdout, /the backup is complete and intact \(made .* schema 0\d+-/);
      await assertUntouched(empty);
    });

    it('when a table file was changed, then restore names it', async () => {
      const dir = copyOfBackup('tampered-table', (d) => writeFileSync(path.join(d, 'db', 'users.copy.gz'), randomBytes(64)));
      assertRefused(await runScript('restore', [dir], empty), /error: backup file db\/users\.copy\.gz is damaged/);
      await assertUntouched(empty);
    });

    it('when the manifest names a migration this version does not know, then restore refuses', async () => {
      const dir = copyOfBackup('future', (d) => {
        const file = path.join(d, 'manifest.json');
        const m = JSON.parse(readFileSync(file, 'utf8')) as Manifest;
        m.migrations.push('9999-from-the-future');
        m.last_migration = '9999-from-the-future';
        writeFileSync(file, JSON.stringify(m));
      });
      assertRefused(await runScript('restore', [dir], empty), /migration "9999-from-the-future", which this version of the mail server does not know/);
      await assertUntouched(empty);
    });

    it('when SECRETS_KEY is not the backup\'s, then restore refuses (the secrets would not decrypt) unless --new-secrets-key', async () => {
      const other = { ...empty, env: { SECRETS_KEY: OTHER_KEY } };
      assertRefused(await runScript('restore', [backupDir], other), /made with a different SECRETS_KEY.*--new-secrets-key/);
      await assertUntouched(empty);
      const anyway = await runScript('restore', ['--new-secrets-key', backupDir], { ...(await newTarget()), env: { SECRETS_KEY: OTHER_KEY } });
      assert.equal(anyway.status, 0, anyway.stdout + anyway.stderr);
    });

    it('when the database is in use or holds data, then restore refuses, and --force replaces it', async () => {
      const t = await startOn(restored);
      const snapshot = await tableContents(restored.databaseUrl);
      try {
        assertRefused(await runScript('restore', ['--force', backupDir], restored), /other open session\(s\).*stop the mail server/);
      } finally {
        await t.stop();
      }
      assertRefused(await runScript('restore', [backupDir], restored), /the target database is not empty \(.*users.*\).*--force/);
      assert.deepEqual(await tableContents(restored.databaseUrl), snapshot, 'nothing changed');
      const forced = await runScript('restore', ['--force', backupDir], restored);
      assert.equal(forced.status, 0, forced.stdout + forced.stderr);
      assert.match(forced.stdout, /emptied \d+ tables \(--force\)/);
      assert.deepEqual(await tableContents(restored.databaseUrl), before_.tables);
    });

    it('when the arguments are wrong, then both scripts print the usage and exit 2', async () => {
      for (const name of ['backup', 'restore'] as const) {
        assertRefused(await runScript(name, [], empty), /error: give the backup directory\nusage: scripts\//, 2);
        assertRefused(await runScript(name, ['--bogus', backupDir], empty), /error: .*--bogus/, 2);
        const help = await runScript(name, ['--help'], empty);
        assert.equal(help.status, 0);
        assert.match(help.stdout, new RegExp(`^usage: scripts/${name} <dir>`));
      }
    });

    it('when the backup directory is not empty, then backup refuses and leaves it alone', async () => {
      assertRefused(await runScript('backup', [backupDir], source), /already exists and is not empty/);
      assert.ok(existsSync(path.join(backupDir, 'manifest.json')));
    });
  });
});

describe('the blob collector during a backup', () => {
  let t: TestServer;
  let target: Target;
  let orphan: string;

  before(async () => {
    target = await newTarget({ BLOB_INLINE_MAX_BYTES: '0' });
    t = await startOn(target);
    const staged = await t.services.blobs.stage(randomBytes(5000));
    orphan = blobKey('raw', staged.sha256);
    await staged.publish(orphan);
    // older than the grace period: the collector would delete it at once
    const old = new Date(Date.now() - 2 * 3600_000);
    utimesSync(path.join(target.dataDir, 'blobs', orphan), old, old);
  });

  after(async () => {
    await t.stop();
  });

  it('when a backup holds the lock, then a collection deletes nothing, and after it the orphan goes', async () => {
    const client = new pg.Client({ connectionString: target.databaseUrl });
    await client.connect();
    try {
      await holdBackupLock(client, () => assert.fail('nobody else holds the lock'));
      const during = await t.services.collector.collect();
      assert.deepEqual(during, { deleted: 0, scanned: 0, skipped: true });
      assert.ok(await t.services.blobs.stat(orphan));
      await releaseBackupLock(client);
    } finally {
      await client.end();
    }
  });

  it('when scripts/backup is mid-run, then a collection is skipped; once it is done the orphan is collected', async () => {
    // hold the backup on its last table: it has taken the lock and its snapshot by then
    const blocker = new pg.Client({ connectionString: target.databaseUrl });
    await blocker.connect();
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE');
    const dir = path.join(scratch, 'during-gc');
    const running = runScript('backup', [dir], { ...target, env: target.env });
    try {
      await waitFor(async () => {
        // from another session: inside the blocker's transaction pg_stat_activity would stay as first read
        const rows = await query<{ advisory: boolean; waiting: boolean }>(target.databaseUrl, `
          SELECT bool_or(l.locktype = 'advisory' AND l.mode = 'ShareLock' AND l.granted) AS advisory,
                 bool_or(l.locktype = 'relation' AND NOT l.granted) AS waiting
          FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE a.application_name = 'mailserver-backup'`);
        return rows[0]?.advisory === true && rows[0]?.waiting === true;
      });
      const during = await t.services.collector.collect();
      assert.equal(during.skipped, true);
      assert.equal(during.deleted, 0);
      assert.ok(await t.services.blobs.stat(orphan), 'the orphan is still there');
    } finally {
      await blocker.query('ROLLBACK');
      await blocker.end();
    }
    const run = await running;
    assert.equal(run.status, 0, run.stdout + run.stderr);
    const afterwards = await t.services.collector.collect();
    assert.equal(afterwards.skipped, false);
    assert.ok(afterwards.deleted >= 1);
    assert.equal(await t.services.blobs.stat(orphan), null);
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the backup to reach the blocked table');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the embedded PostgreSQL', () => {
  it('when a server runs on it, then backup works beside it and restore refuses; stopped, a new DATA_DIR restores', async () => {
    const dataDir = tempDir('backup-embedded-');
    const restoredDir = tempDir('backup-embedded-restored-');
    const ps = new ProcessServer(await processEnv(dataDir, { SECRETS_KEY, ROLES: 'api,smtp' }));
    await ps.start();
    try {
      assert.equal(ps.admin('create-tenant', '--name', 'Emb').status, 0);
      assert.equal(ps.admin('add-domain', '--tenant', 'Emb', '--domain', 'emb.test').status, 0);
      assert.equal(ps.admin('create-user', '--email', 'eve@emb.test', '--password', PASSWORD).status, 0);
      assert.match(await sendWithNodemailer(Number(ps.env.SMTP_PORT), { from: 'x@example.org', to: 'eve@emb.test', subject: 'embedded mail' }), /^250 /);
      const dir = path.join(scratch, 'embedded');
      const backup = await runScript('backup', [dir], ps.env);
      assert.equal(backup.status, 0, backup.stdout + backup.stderr);
      assertRefused(await runScript('restore', ['--force', dir], ps.env), /cannot open the embedded database for the restore \(the mail server must be stopped\): .*in use by another running process/);
      const env = await processEnv(restoredDir, { SECRETS_KEY, ROLES: 'api,smtp' });
      const restore = await runScript('restore', [dir], env);
      assert.equal(restore.status, 0, restore.stdout + restore.stderr);
      const copy = new ProcessServer(env);
      const list = copy.admin('list-messages', '--mailbox', 'eve@emb.test');
      assert.equal(list.status, 0, list.stderr);
      assert.match(list.stdout, /embedded mail/);
    } finally {
      await ps.stop();
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(restoredDir, { recursive: true, force: true });
    }
  });
});

describe('Azure Blob storage (Azurite)', () => {
  let azurite: Azurite;
  before(async () => {
    azurite = await startAzurite();
  });
  after(async () => {
    await azurite?.stop();
  });

  it('when a local backup is restored to azure, backed up from there and restored to a fresh local server, then every row and byte is the same', async () => {
    const azure = await newTarget({ STORAGE_DRIVER: 'azure', AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString, AZURE_STORAGE_CONTAINER: 'restored' });
    const toAzure = await runScript('restore', [backupDir], azure);
    assert.equal(toAzure.status, 0, toAzure.stdout + toAzure.stderr);
    assert.match(toAzure.stdout, /stored in the azure blob store/);
    const t = await startOn(azure);
    const dir = path.join(scratch, 'from-azure');
    try {
      assert.deepEqual(blobFiles(azure.dataDir), [], 'nothing on local disk');
      const backup = await runScript('backup', [dir], azure);
      assert.equal(backup.status, 0, backup.stdout + backup.stderr);
    } finally {
      await t.stop();
    }
    const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as Manifest;
    assert.equal(manifest.storage_driver, 'azure');
    // the usual way back: a fresh server was installed and started once (schema, no data)
    const local = await newTarget();
    await (await startOn(local)).stop();
    const back = await runScript('restore', [dir], local);
    assert.equal(back.status, 0, back.stdout + back.stderr);
    const t2 = await startOn(local);
    try {
      assert.deepEqual(await tableContents(local.databaseUrl), await tableContents(azure.databaseUrl));
      assert.equal(blobFiles(local.dataDir).length, manifest.blobs.count);
      assert.deepEqual(await apiView(t2, people), before_.api);
    } finally {
      await t2.stop();
    }
  });
});
