/**
 * Interoperability with independent SMTP clients: swaks (Perl, Net::SSLeay), msmtp (C, GnuTLS)
 * and Python's smtplib, each talking to the real server in this process. A mail client that works
 * against our own test client but not against these would fail real users, so each peer is run
 * as its packaged binary with certificate checks ON against the test CA (TLS_CERT_FILE is the
 * test certificate, CN=localhost with IP 127.0.0.1).
 *
 * Cases: submission with STARTTLS + AUTH on SUBMISSION_PORT and implicit TLS on SMTPS_PORT (the
 * message is stored once in the sender's Sent folder, delivered to a local mailbox and, through
 * RELAY_URL, to a local relay sink); a wrong password (the peer exits non-zero showing our 535,
 * nothing stored or queued); inbound mail to our MX over plain SMTP and STARTTLS (the stored
 * bytes hold what Python sent, dot-stuffing undone).
 *
 * Each test skips, with the reason, only when its peer program is not installed.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFakeRelay, type FakeRelay } from '../helpers/fake-relay.js';
import { markVerified, seedMailbox, startTestServer, type TestServer } from '../helpers/harness.js';
import { testCertificate } from '../helpers/test-tls.js';
import { UNTHROTTLED_ENV } from '../helpers/users-api.js';
import { deliverAll, FIXTURES, missing, PYTHON, rowCounts, run, storedCopies } from './interop-support.js';

const PASSWORD = 'password-123';
const ALICE = 'alice@interop.test';
const BOB = 'bob@interop.test';
const FAR = 'friend@remote.test';

const SWAKS = '/usr/bin/swaks';
const MSMTP = '/usr/bin/msmtp';

let t: TestServer;
let relay: FakeRelay;
let work: string;

before(async () => {
  const cert = testCertificate();
  work = mkdtempSync(path.join(os.tmpdir(), 'interop-clients-'));
  const keyFile = path.join(work, 'server-key.pem');
  writeFileSync(keyFile, cert.key, { mode: 0o600 });
  relay = await startFakeRelay({ tls: 'starttls', auth: { user: 'sink', pass: 'sink secret' } });
  t = await startTestServer({
    ...UNTHROTTLED_ENV,
    TLS_CERT_FILE: cert.caFile,
    TLS_KEY_FILE: keyFile,
    RELAY_URL: `smtp://sink:sink%20secret@localhost:${relay.port}`,
    OUTBOUND_TLS_CA_FILE: cert.caFile,
    ALLOW_PRIVATE_RELAY_HOSTS: 'true',
    OUTBOUND_TIMEOUT: '5s',
  });
  await seedMailbox(t.services, ALICE);
  await seedMailbox(t.services, BOB);
  await markVerified(t.services, 'interop.test');
});

after(async () => {
  await t?.stop();
  await relay?.close();
  rmSync(work, { recursive: true, force: true });
});

/**
 * What a successful submission must have produced: one copy in the sender's Sent folder, one in
 * bob's INBOX, one at the relay sink for the remote recipient; `peer` names the case on failure.
 */
async function assertSubmitted(peer: string, subject: string): Promise<void> {
  const sent = await storedCopies(t, ALICE, subject);
  assert.deepEqual(sent.map((c) => c.folder), ['sent'], `${peer}: one copy in ${ALICE}'s Sent folder`);
  const rows = await deliverAll(t, subject);
  assert.deepEqual(
    rows.map((r) => [r.rcpt_to, r.status]),
    [
      [BOB, 'sent'],
      [FAR, 'sent'],
    ],
    `${peer}: both recipients delivered`,
  );
  const local = await storedCopies(t, BOB, subject);
  assert.deepEqual(local.map((c) => c.folder), ['inbox'], `${peer}: one copy in ${BOB}'s INBOX`);
  const relayed = relay.messages.filter((m) => m.raw.toString('latin1').includes(`Subject: ${subject}`));
  assert.equal(relayed.length, 1, `${peer}: one copy at the relay sink`);
  assert.deepEqual(relayed[0]!.rcptTo, [FAR], `${peer}: the relay got only the remote recipient`);
  assert.match(relayed[0]!.raw.toString('latin1'), /^DKIM-Signature: /m, `${peer}: signed on the way out`);
}

function swaksArgs(port: number, tlsFlag: '--tls' | '--tls-on-connect', password: string, subject: string): string[] {
  return [
    '--server', `127.0.0.1:${port}`, tlsFlag, '--tls-verify', '--tls-ca-path', testCertificate().caFile,
    '--auth', 'LOGIN', '--auth-user', ALICE, '--auth-password', password,
    '--from', ALICE, '--to', `${BOB},${FAR}`, '--header', `Subject: ${subject}`, '--body', `body of ${subject}`,
  ];
}

describe('swaks', { skip: missing(SWAKS, 'swaks') }, () => {
  it('swaks: STARTTLS + AUTH LOGIN on the submission port, certificate verified; stored in Sent and delivered', async () => {
    const subject = 'swaks starttls submission';
    const r = await run(SWAKS, swaksArgs(t.submissionPort, '--tls', PASSWORD, subject));
    assert.equal(r.status, 0, `swaks failed:\n${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /<~ {2}235 /, 'authenticated inside TLS');
    assert.match(r.stdout, /<~ {2}250 2\.0\.0 Ok: queued as /);
    await assertSubmitted('swaks STARTTLS', subject);
  });

  it('swaks: implicit TLS on the SMTPS port; stored in Sent and delivered', async () => {
    const subject = 'swaks smtps submission';
    const r = await run(SWAKS, swaksArgs(t.smtpsPort, '--tls-on-connect', PASSWORD, subject));
    assert.equal(r.status, 0, `swaks failed:\n${r.stdout}${r.stderr}`);
    await assertSubmitted('swaks SMTPS', subject);
  });

  it('swaks: a wrong password exits non-zero with our 535 5.7.8, and nothing is stored or queued', async () => {
    const before = await rowCounts(t);
    const r = await run(SWAKS, swaksArgs(t.submissionPort, '--tls', 'not-the-password', 'swaks wrong password'));
    assert.notEqual(r.status, 0, `swaks should fail:\n${r.stdout}`);
    assert.match(r.stdout, /<~\* {1,2}535 5\.7\.8 /, 'our 535 reply is what swaks shows');
    assert.deepEqual(await rowCounts(t), before);
  });
});

/** An msmtprc (mode 0600, as msmtp requires for a file holding a password) for one case. */
function msmtprc(name: string, port: number, starttls: boolean, password: string): string {
  const file = path.join(work, `msmtprc-${name}`);
  const lines = [
    'defaults',
    'tls on',
    `tls_starttls ${starttls ? 'on' : 'off'}`,
    `tls_trust_file ${testCertificate().caFile}`,
    'account default',
    'host 127.0.0.1',
    `port ${port}`,
    `from ${ALICE}`,
    'auth plain',
    `user ${ALICE}`,
    `password ${password}`,
    'timeout 20',
    '',
  ];
  writeFileSync(file, lines.join('\n'), { mode: 0o600 });
  chmodSync(file, 0o600);
  return file;
}

function messageFor(subject: string): string {
  return `From: ${ALICE}\r\nTo: ${BOB}, ${FAR}\r\nSubject: ${subject}\r\n\r\nbody of ${subject}\r\n`;
}

describe('msmtp', { skip: missing(MSMTP, 'msmtp') }, () => {
  it('msmtp: STARTTLS + AUTH PLAIN on the submission port, tls_trust_file = the test CA; stored in Sent and delivered', async () => {
    const subject = 'msmtp starttls submission';
    const r = await run(MSMTP, ['-C', msmtprc('starttls', t.submissionPort, true, PASSWORD), '-a', 'default', BOB, FAR], { input: messageFor(subject) });
    assert.equal(r.status, 0, `msmtp failed: ${r.stdout}${r.stderr}`);
    await assertSubmitted('msmtp STARTTLS', subject);
  });

  it('msmtp: implicit TLS on the SMTPS port; stored in Sent and delivered', async () => {
    const subject = 'msmtp smtps submission';
    const r = await run(MSMTP, ['-C', msmtprc('smtps', t.smtpsPort, false, PASSWORD), '-a', 'default', BOB, FAR], { input: messageFor(subject) });
    assert.equal(r.status, 0, `msmtp failed: ${r.stdout}${r.stderr}`);
    await assertSubmitted('msmtp SMTPS', subject);
  });

  it('msmtp: a wrong password exits non-zero with our 535 5.7.8, and nothing is stored or queued', async () => {
    const before = await rowCounts(t);
    const r = await run(MSMTP, ['-C', msmtprc('wrong', t.submissionPort, true, 'not-the-password'), '-a', 'default', BOB], { input: messageFor('msmtp wrong password') });
    assert.notEqual(r.status, 0, 'msmtp should fail');
    assert.match(r.stderr, /535 5\.7\.8 /, `msmtp shows our reply: ${r.stderr}`);
    assert.deepEqual(await rowCounts(t), before);
  });
});

interface PythonReply {
  ok: boolean;
  code: number;
  reply: string;
}

async function smtplib(mode: 'mx-plain' | 'mx-starttls' | 'submission', port: number, from: string, to: string, subject: string, password = PASSWORD): Promise<PythonReply & { status: number | null }> {
  const r = await run(PYTHON, [path.join(FIXTURES, 'smtp_send.py'), mode, String(port), from, to, subject, testCertificate().caFile, from, password]);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  let parsed: PythonReply;
  try {
    parsed = JSON.parse(line) as PythonReply;
  } catch {
    throw new Error(`smtp_send.py ${mode} crashed (exit ${r.status}):\n${r.stdout}${r.stderr}`);
  }
  return { ...parsed, status: r.status };
}

/** What smtp_send.py puts in the body, as it must arrive: CRLF, the leading dot restored. */
const PYTHON_BODY = 'Sent by Python smtplib.\r\nA second line, with a dot at the start of the next one:\r\n.leading dot\r\n';

describe('Python smtplib', { skip: missing(PYTHON, 'python3') }, () => {
  for (const mode of ['mx-plain', 'mx-starttls'] as const) {
    it(`Python smtplib: inbound to our MX (${mode === 'mx-plain' ? 'plain SMTP' : 'STARTTLS, certificate verified'}), stored bytes as sent`, async () => {
      const subject = `smtplib inbound ${mode}`;
      const r = await smtplib(mode, t.smtpPort, 'someone@python.example', BOB, subject);
      assert.equal(r.status, 0, `smtplib ${mode}: ${r.code} ${r.reply}`);
      const copies = await storedCopies(t, BOB, subject);
      assert.equal(copies.length, 1, `smtplib ${mode}: stored once`);
      const raw = copies[0]!.raw.toString('utf8');
      const sent = `From: someone@python.example\r\nTo: ${BOB}\r\nSubject: ${subject}\r\n`;
      assert.ok(raw.startsWith(sent), `smtplib ${mode}: headers as sent:\n${raw}`);
      assert.ok(raw.endsWith(`\r\n\r\n${PYTHON_BODY}`), `smtplib ${mode}: body intact, dot-stuffing undone:\n${raw}`);
      const protocol = mode === 'mx-starttls' ? 'ESMTPS' : 'ESMTP';
      assert.match(copies[0]!.trace, new RegExp(`^Received: from python\\.client\\.test \\(\\[127\\.0\\.0\\.1\\]\\)\\r\\n\\tby mx\\.test\\.local with ${protocol} id `), `smtplib ${mode}: our trace header`);
    });
  }

  it('Python smtplib: submission with starttls() + login(); stored in Sent, delivered to the local mailbox', async () => {
    const subject = 'smtplib submission';
    const r = await smtplib('submission', t.submissionPort, ALICE, BOB, subject);
    assert.equal(r.status, 0, `smtplib submission: ${r.code} ${r.reply}`);
    const sent = await storedCopies(t, ALICE, subject);
    assert.deepEqual(sent.map((c) => c.folder), ['sent']);
    assert.ok(sent[0]!.raw.toString('utf8').includes(PYTHON_BODY), 'Sent copy holds the body as sent');
    const rows = await deliverAll(t, subject);
    assert.deepEqual(rows.map((x) => [x.rcpt_to, x.status]), [[BOB, 'sent']]);
    const inbox = await storedCopies(t, BOB, subject);
    assert.equal(inbox.length, 1);
    assert.ok(inbox[0]!.raw.toString('utf8').includes(PYTHON_BODY), 'delivered copy holds the body as sent');
  });

  it('Python smtplib: login() with a wrong password raises SMTPAuthenticationError with our 535; nothing stored', async () => {
    const before = await rowCounts(t);
    const r = await smtplib('submission', t.submissionPort, ALICE, BOB, 'smtplib wrong password', 'not-the-password');
    assert.equal(r.status, 2);
    assert.equal(r.code, 535);
    assert.match(r.reply, /^5\.7\.8 /);
    assert.deepEqual(await rowCounts(t), before);
  });
});
