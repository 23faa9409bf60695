/**
 * The operator's SMTP test client (src/cli/smtp-test-client.ts), run as the compiled CLI in a
 * child process against the real server (MX port without TLS, submission with STARTTLS and
 * AUTH, SMTPS with implicit TLS and AUTH, all on the server's self-signed certificate) and
 * against a fake relay (helpers/fake-relay.ts) where counting connections or a missing STARTTLS
 * matters. Proves: counts match what was stored, the TLS modes and --insecure, attachments
 * arrive byte for byte, rejections are grouped by reply code, --rate holds, --json parses, and
 * each bad argument exits 2 naming its flag before any connection is made.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { percentile, splitReply, type Summary } from '../../src/cli/smtp-test-client-report.js';
import { startFakeRelay, type FakeRelay } from '../helpers/fake-relay.js';
import { markVerified, messagesFor, seedMailbox, startTestServer, tempDir, type TestServer } from '../helpers/harness.js';

const CLI = fileURLToPath(new URL('../../src/cli/smtp-test-client.js', import.meta.url));
const PASSWORD = 'password-123';

let t: TestServer;
let relay: FakeRelay;
let files: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs the compiled client with only PATH (and `env`) in its environment. */
function client(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, ms: performance.now() - started }));
  });
}

function mx(...args: string[]): string[] {
  return ['--port', String(t.smtpPort), '--tls', 'none', '--from', 'sender@elsewhere.test', ...args];
}

async function submissionCount(): Promise<number> {
  const row = await t.services.db.selectFrom('submissions').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  return Number(row.n);
}

before(async () => {
  t = await startTestServer({ LOGIN_MAX_FAILURES: '100', LOGIN_MAX_FAILURES_PER_IP: '1000', SEND_LIMIT_PER_HOUR: '1000', SEND_LIMIT_PER_DAY: '1000' });
  await seedMailbox(t.services, 'alice@client.test', { password: PASSWORD });
  await seedMailbox(t.services, 'bob@client.test', { password: PASSWORD });
  await seedMailbox(t.services, 'carol@client.test', { password: PASSWORD });
  await markVerified(t.services, 'client.test');
  relay = await startFakeRelay({ tls: 'none' });
  files = tempDir('smtp-test-client-');
});

after(async () => {
  await relay.close();
  await t.stop();
});

describe('smtp-test-client against the real server', () => {
  it('when 20 messages go over 4 connections to the MX port, then all 20 are stored, numbered, with unique Message-IDs', async () => {
    const run = await client(mx('--to', 'alice@client.test', '--subject', 'load', '--count', '20', '--concurrency', '4'));
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /^sent\s+20 of 20$/m);
    assert.match(run.stdout, /^accepted\s+20$/m);
    assert.match(run.stdout, /^ {2}250 2\.0\.0\s+×20\s+DATA\s+\S/m);
    assert.match(run.stdout, /^latency\s+p50 \d+ ms, p95 \d+ ms, p99 \d+ ms, max \d+ ms$/m);
    const stored = await t.services.db
      .selectFrom('messages')
      .innerJoin('mailboxes', 'mailboxes.id', 'messages.mailbox_id')
      .select(['messages.subject', 'messages.message_id'])
      .where('mailboxes.address', '=', 'alice@client.test')
      .where('messages.subject', 'like', 'load #%')
      .execute();
    assert.equal(stored.length, 20);
    assert.deepEqual(stored.map((m) => m.subject).sort(), Array.from({ length: 20 }, (_, i) => `load #${i + 1}`).sort());
    assert.equal(new Set(stored.map((m) => m.message_id)).size, 20);
  });

  it('when STARTTLS and AUTH are used on the submission port with --insecure, then the messages are submitted (password from SMTP_TEST_PASSWORD)', async () => {
    const before = await submissionCount();
    const run = await client(
      ['--port', String(t.submissionPort), '--tls', 'starttls', '--insecure', '--user', 'alice@client.test', '--to', 'bob@client.test', '--count', '2'],
      { SMTP_TEST_PASSWORD: PASSWORD },
    );
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /^accepted\s+2$/m);
    assert.equal(await submissionCount(), before + 2);
  });

  it('when implicit TLS and AUTH are used on the SMTPS port with --insecure, then the message is submitted', async () => {
    const before = await submissionCount();
    const run = await client(['--port', String(t.smtpsPort), '--tls', 'implicit', '--insecure', '--user', 'alice@client.test', '--password', PASSWORD, '--to', 'bob@client.test']);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /^accepted\s+1$/m);
    assert.equal(await submissionCount(), before + 1);
  });

  it('when the self-signed certificate is not accepted (no --insecure), then the TLS error is reported and nothing is sent', async () => {
    const before = await submissionCount();
    for (const [port, mode] of [[t.submissionPort, 'starttls'], [t.smtpsPort, 'implicit']] as const) {
      const run = await client(['--port', String(port), '--tls', mode, '--user', 'alice@client.test', '--password', PASSWORD, '--to', 'bob@client.test']);
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.match(run.stdout, /connection errors 1\)/);
      assert.match(run.stdout, /DEPTH_ZERO_SELF_SIGNED_CERT\s+×1\s+self[- ]signed certificate.*\(--insecure accepts it\)/i, mode);
    }
    assert.equal(await submissionCount(), before);
  });

  it('when a file is attached, then the stored attachment has the same bytes', async () => {
    const file = path.join(files, 'payload.bin');
    const bytes = randomBytes(48 * 1024);
    writeFileSync(file, bytes);
    const run = await client(mx('--to', 'carol@client.test', '--subject', 'attached', '--attach', file));
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const [message] = (await messagesFor(t.services, 'carol@client.test')).filter((m) => m.subject === 'attached #1');
    assert.ok(message, 'the message is stored');
    const attachments = await t.services.db.selectFrom('attachments').select(['filename', 'size', 'sha256']).where('message_id', '=', message.id).execute();
    assert.deepEqual(attachments.map((a) => ({ ...a, size: Number(a.size) })), [
      { filename: 'payload.bin', size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') },
    ]);
  });

  it('when the password is wrong, then it exits 1 with the 535 reply in the summary', async () => {
    const run = await client(['--port', String(t.submissionPort), '--insecure', '--user', 'alice@client.test', '--password', 'wrong-password', '--to', 'bob@client.test']);
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.match(run.stdout, /^accepted\s+0$/m);
    assert.match(run.stdout, /^ {2}535 5\.7\.8\s+×1\s+AUTH PLAIN\s+\S/m);
  });

  it('when the recipient is unknown, then each message counts under 550 5.1.1 and it exits 1', async () => {
    const run = await client(mx('--to', 'nobody@client.test', '--count', '3'));
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.match(run.stdout, /^failed\s+3 \(rejected 3, partially rejected 0, connection errors 0\)$/m);
    assert.match(run.stdout, /^ {2}550 5\.1\.1\s+×3\s+RCPT TO\s+\S/m);
  });

  it('when one of two recipients is unknown, then the message counts as partially rejected', async () => {
    const run = await client(mx('--to', 'alice@client.test,nobody@client.test', '--subject', 'half'));
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.match(run.stdout, /partially rejected 1/);
    assert.match(run.stdout, /^ {2}250 2\.0\.0\s+×1/m);
    assert.match(run.stdout, /^ {2}550 5\.1\.1\s+×1\s+RCPT TO/m);
    assert.equal((await messagesFor(t.services, 'alice@client.test')).filter((m) => m.subject === 'half #1').length, 1);
  });
});

describe('smtp-test-client load shaping and output', () => {
  it('when --rate 8 sends 10 messages over 3 connections, then it takes at least 1.125 s with progress lines on stderr, and --json parses', async () => {
    const run = await client(['--port', String(relay.port), '--tls', 'none', '--from', 'a@client.test', '--to', 'x@remote.test', '--count', '10', '--rate', '8', '--concurrency', '3', '--json']);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const summary = JSON.parse(run.stdout) as Summary;
    assert.equal(summary.total, 10);
    assert.equal(summary.accepted, 10);
    assert.equal(summary.failed, 0);
    assert.deepEqual(summary.replies.map((r) => [r.code, r.count, r.stage]), [['250 2.0.0', 10, 'DATA']]);
    assert.deepEqual(summary.errors, []);
    // message 10 may start 9/8 s after the first
    assert.ok(summary.elapsedMs >= 1120, `elapsed ${summary.elapsedMs} ms`);
    assert.ok(run.ms >= 1120, `wall time ${run.ms} ms`);
    assert.ok(summary.messagesPerSecond <= 9, `rate ${summary.messagesPerSecond}`);
    assert.ok(summary.latencyMs && summary.latencyMs.p50 <= summary.latencyMs.max);
    // stderr is a pipe here, so progress comes as plain lines, not a redrawn bar
    assert.match(run.stderr, /^progress: \d+\/10 sent, [\d.]+ msg\/s, 0 failed$/m);
    assert.doesNotMatch(run.stderr, /\r/);
  });

  it('when --reuse is given, then each of the parallel connections carries several messages', async () => {
    const args = ['--port', String(relay.port), '--tls', 'none', '--from', 'a@client.test', '--to', 'x@remote.test', '--count', '6', '--concurrency', '2'];
    const before = relay.connectionCount();
    assert.equal((await client([...args, '--reuse'])).code, 0);
    assert.equal(relay.connectionCount() - before, 2);
    const between = relay.connectionCount();
    assert.equal((await client(args)).code, 0);
    assert.equal(relay.connectionCount() - between, 6, 'without --reuse, one connection per message');
  });

  it('when STARTTLS is required but the server does not offer it, then nothing is sent and the refused STARTTLS is reported', async () => {
    relay.clear();
    const run = await client(['--port', String(relay.port), '--tls', 'starttls', '--from', 'a@client.test', '--to', 'x@remote.test']);
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.match(run.stdout, /^ {2}500\s+×1\s+STARTTLS\s+\S/m);
    assert.equal(relay.messages.length, 0);
  });

  it('when an argument is bad, then it exits 2 naming the flag, and connects nowhere', async () => {
    const base = ['--port', String(relay.port), '--tls', 'none', '--from', 'a@client.test'];
    const cases: [string[], RegExp][] = [
      [[...base, '--to', 'x@remote.test', '--bogus'], /unknown flag --bogus/],
      [[...base, '--to', 'x@remote.test', '--tls', 'ssl'], /--tls must be starttls, implicit or none \(got "ssl"\)/],
      [[...base, '--to', 'x@remote.test', '--count', 'ten'], /--count must be a whole number/],
      [[...base, '--to', 'x@remote.test', '--count', '0'], /--count must be a whole number from 1/],
      [[...base, '--to', 'x@remote.test', '--concurrency', '1.5'], /--concurrency must be a whole number/],
      [[...base, '--to', 'x@remote.test', '--rate', 'fast'], /--rate must be a number/],
      [[...base, '--to', 'x@remote.test', '--port', '99999'], /--port must be a whole number from 1 to 65535/],
      [[...base, '--to', 'x@remote.test', '--timeout', '0'], /--timeout must be a positive number/],
      [[...base, '--to', 'x@remote.test', '--count'], /--count needs a value/],
      [base, /--to is required/],
      [[...base, '--to', 'not-an-address'], /--to must be an email address/],
      [[...base, '--to', 'x@remote.test', '--attach', path.join(files, 'missing.bin')], /--attach .*missing\.bin: cannot read the file: no such file/],
      [[...base, '--to', 'x@remote.test', '--body', `@${path.join(files, 'missing.txt')}`], /--body @.*missing\.txt: cannot read/],
      [[...base, '--to', 'x@remote.test', '--user', 'a@client.test'], /--user needs --password \(or the SMTP_TEST_PASSWORD/],
      [[...base, '--to', 'x@remote.test', '--password', 'pw'], /--password needs --user/],
      [['--port', String(relay.port), '--to', 'x@remote.test'], /--from is required/],
      [[...base, '--to', 'x@remote.test', 'stray'], /unexpected argument "stray"/],
    ];
    const before = relay.connectionCount();
    const runs = await Promise.all(cases.map(([args]) => client(args)));
    runs.forEach((run, i) => {
      const [args, message] = cases[i]!;
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, message, args.join(' '));
      assert.equal(run.stdout, '', args.join(' '));
    });
    assert.equal(relay.connectionCount(), before);
  });

  it('when --help is given, then the usage goes to stdout with exit 0', async () => {
    const run = await client(['--help']);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /^usage: scripts\/smtp-test-client --to <address>/);
    assert.match(run.stdout, /--tls <mode>/);
  });

  it('reply grouping and percentiles', () => {
    assert.deepEqual(splitReply('250 2.0.0 Ok: queued as abc'), { code: '250 2.0.0', text: 'Ok: queued as abc' });
    assert.deepEqual(splitReply('550 5.1.1 <x@y>: no such user'), { code: '550 5.1.1', text: '<x@y>: no such user' });
    assert.deepEqual(splitReply('250 OK'), { code: '250', text: 'OK' });
    assert.deepEqual(splitReply('421-4.7.0 busy\n421 4.7.0 try later'), { code: '421 4.7.0', text: 'busy try later' });
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
    assert.deepEqual([50, 95, 99, 100].map((p) => percentile(sorted, p)), [50, 95, 99, 100]);
    assert.equal(percentile([7], 99), 7);
  });
});
