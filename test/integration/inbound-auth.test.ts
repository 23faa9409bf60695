/**
 * Inbound verification end to end: real SMTP sessions from 127.0.0.1 to the MX with
 * INBOUND_AUTH_ENABLED, every DNS answer from a local DNS server (test/helpers/dns-server.ts).
 * Each case reads back the stored row: the verdicts in `auth_summary` and the header fields in
 * `trace_headers` (Authentication-Results, RFC 8601; Received-SPF, RFC 7208 section 9.1), and
 * that a DMARC failure or a DNS outage never costs the message (we record, we do not reject).
 *
 * Every case uses its own sender domain: the server's resolver caches answers for minutes.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { dkimSign } from 'mailauth';
import type { AuthSummary } from '../../src/services/inbound-auth.service.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { seedMailbox, startTestServer, type TestServer } from '../helpers/harness.js';
import { RawSmtp, simpleMessage, type Reply } from '../helpers/smtp-client.js';

const RCPT = 'alice@acme.test';
const SELECTOR = 'sel1';

let t: TestServer;
let dns: DnsServer;
let privateKey: string;
let publicKeyB64: string;

before(async () => {
  dns = await startDnsServer();
  t = await startTestServer({ INBOUND_AUTH_ENABLED: 'true', DNS_SERVERS: dns.address, DNS_TIMEOUT_MS: '2000' });
  await seedMailbox(t.services, RCPT);
  const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  privateKey = pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  publicKeyB64 = pair.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
});

after(async () => {
  await t.stop();
  await dns.stop();
});

/** `v=DKIM1` key record at `<selector>._domainkey.<domain>`; over 255 bytes, so sent in chunks. */
function publishKey(domain: string): void {
  dns.set(`${SELECTOR}._domainkey.${domain}`, 'TXT', `v=DKIM1; k=rsa; p=${publicKeyB64}`);
}

/** The message with a relaxed/relaxed DKIM-Signature of `domain` prepended. */
async function sign(message: string, domain: string, selector = SELECTOR): Promise<string> {
  const signatureData = { signingDomain: domain, selector, privateKey, canonicalization: 'relaxed/relaxed' };
  const result = await dkimSign(message, { ...signatureData, signatureData: [signatureData] });
  assert.deepEqual(result.errors, []);
  assert.match(result.signatures, /^DKIM-Signature: /);
  return result.signatures + message;
}

interface Delivery {
  reply: Reply;
  elapsedMs: number;
  summary: AuthSummary;
  trace: string;
  /** Authentication-Results, unfolded. */
  ar: string;
  raw: string;
}

/** One SMTP transaction from 127.0.0.1, then the stored row of the message with this subject. */
async function deliver(mailFrom: string, message: string, subject: string): Promise<Delivery> {
  const c = await RawSmtp.connect(t.smtpPort);
  const started = Date.now();
  let reply: Reply;
  try {
    assert.equal((await c.hello('client.test')).code, 250);
    assert.equal((await c.command(`MAIL FROM:<${mailFrom}>`)).code, 250);
    assert.equal((await c.command(`RCPT TO:<${RCPT}>`)).code, 250);
    // the message ends with CRLF already
    reply = await c.data(message, '.\r\n');
  } finally {
    c.close();
  }
  const elapsedMs = Date.now() - started;
  assert.match(reply.text, /^250 2\.0\.0 Ok: stored as /);
  const row = await t.services.db
    .selectFrom('messages')
    .innerJoin('mailboxes', 'mailboxes.id', 'messages.mailbox_id')
    .select(['messages.auth_summary', 'messages.trace_headers', 'messages.raw_blob_key'])
    .where('mailboxes.address', '=', RCPT)
    .where('messages.subject', '=', subject)
    .executeTakeFirstOrThrow();
  const chunks: Buffer[] = [];
  for await (const chunk of await t.services.messages.openRaw(row)) chunks.push(chunk as Buffer);
  return {
    reply,
    elapsedMs,
    summary: row.auth_summary as AuthSummary,
    trace: row.trace_headers,
    ar: field(row.trace_headers, 'Authentication-Results'),
    raw: Buffer.concat(chunks).toString('latin1'),
  };
}

/** The unfolded value of the first header field called `name`, or '' when there is none. */
function field(headers: string, name: string): string {
  const re = new RegExp(`^${name}:[ \\t]*((?:.*)(?:\\r\\n[ \\t].*)*)`, 'im');
  return (re.exec(headers)?.[1] ?? '').replace(/\r\n[ \t]+/g, ' ');
}

/** The names of the header fields in a block of header lines, in order. */
function fieldNames(headers: string): string[] {
  return [...headers.matchAll(/^([!-9;-~]+):/gm)].map((m) => m[1]!);
}

/** `method=result` as a whole word in Authentication-Results. */
function method(ar: string, name: string): string | undefined {
  return new RegExp(`(?:^|[;\\s])${name}=([a-z]+)`).exec(ar)?.[1];
}

describe('inbound SPF, DKIM, DMARC and ARC', () => {
  it('when the MAIL FROM domain lists 127.0.0.1 in SPF, then spf=pass and Received-SPF: pass', async () => {
    dns.set('spf-pass.test', 'TXT', 'v=spf1 ip4:127.0.0.1 -all');
    const subject = 'spf pass';
    const d = await deliver('bounce@spf-pass.test', simpleMessage({ from: 'sender@spf-pass.test', to: RCPT, subject }), subject);
    assert.equal(d.summary.spf, 'pass');
    assert.equal(method(d.ar, 'spf'), 'pass');
    assert.match(d.ar, /smtp\.mailfrom=bounce@spf-pass\.test/);
    assert.match(field(d.trace, 'Received-SPF'), /^pass /);
    assert.match(field(d.trace, 'Received-SPF'), /client-ip=127\.0\.0\.1;/);
    // no _dmarc record, no signature, no ARC set
    assert.deepEqual({ dkim: d.summary.dkim, dmarc: d.summary.dmarc, arc: d.summary.arc }, { dkim: 'none', dmarc: 'none', arc: 'none' });
  });

  const spfCases: [string, string, string][] = [
    ['only 192.0.2.1 with -all', 'v=spf1 ip4:192.0.2.1 -all', 'fail'],
    ['only 192.0.2.1 with ~all', 'v=spf1 ip4:192.0.2.1 ~all', 'softfail'],
    ['only 192.0.2.1 with ?all', 'v=spf1 ip4:192.0.2.1 ?all', 'neutral'],
  ];
  for (const [name, record, expected] of spfCases) {
    it(`when the SPF record allows ${name}, then spf=${expected} and the message is still stored`, async () => {
      const domain = `spf-${expected}.test`;
      dns.set(domain, 'TXT', record);
      const subject = `spf ${expected}`;
      const d = await deliver(`bounce@${domain}`, simpleMessage({ from: `sender@${domain}`, to: RCPT, subject }), subject);
      assert.equal(d.summary.spf, expected);
      assert.equal(method(d.ar, 'spf'), expected);
      assert.match(field(d.trace, 'Received-SPF'), new RegExp(`^${expected} `));
    });
  }

  it('when the MAIL FROM domain has no SPF record, then spf=none', async () => {
    const subject = 'spf none';
    const d = await deliver('bounce@no-spf.test', simpleMessage({ from: 'sender@no-spf.test', to: RCPT, subject }), subject);
    assert.equal(d.summary.spf, 'none');
    assert.equal(method(d.ar, 'spf'), 'none');
    assert.ok(dns.received('no-spf.test', 'TXT'), 'the SPF lookup reached the local DNS server');
  });

  it('when the message carries a valid DKIM signature of the From domain with p=reject, then dkim=pass and dmarc=pass by DKIM alignment', async () => {
    publishKey('signed.test');
    dns.set('_dmarc.signed.test', 'TXT', 'v=DMARC1; p=reject');
    const subject = 'dkim pass';
    const message = await sign(simpleMessage({ from: 'sender@signed.test', to: RCPT, subject }), 'signed.test');
    // the envelope is another domain without SPF: only DKIM can align
    const d = await deliver('bounce@envelope-only.test', message, subject);
    assert.deepEqual(d.summary, { spf: 'none', dkim: 'pass', dmarc: 'pass', arc: 'none' });
    assert.equal(method(d.ar, 'dkim'), 'pass');
    assert.match(d.ar, /header\.d=signed\.test/);
    assert.match(d.ar, new RegExp(`header\\.s=${SELECTOR}`));
    assert.equal(method(d.ar, 'dmarc'), 'pass');
    assert.match(d.ar, /header\.from=signed\.test/);
    assert.ok(dns.received(`${SELECTOR}._domainkey.signed.test`, 'TXT'));
    assert.ok(dns.received('_dmarc.signed.test', 'TXT'));
  });

  it('when an unsigned message passes SPF for the From domain with p=reject, then dmarc=pass by SPF alignment', async () => {
    dns.set('spf-aligned.test', 'TXT', 'v=spf1 ip4:127.0.0.1 -all');
    dns.set('_dmarc.spf-aligned.test', 'TXT', 'v=DMARC1; p=reject');
    const subject = 'dmarc pass spf';
    const d = await deliver('bounce@spf-aligned.test', simpleMessage({ from: 'sender@spf-aligned.test', to: RCPT, subject }), subject);
    assert.deepEqual(d.summary, { spf: 'pass', dkim: 'none', dmarc: 'pass', arc: 'none' });
    assert.equal(method(d.ar, 'dmarc'), 'pass');
  });

  it('when the body is changed after signing, then dkim is not pass (neutral: body hash did not verify) and DMARC fails', async () => {
    publishKey('tampered-body.test');
    dns.set('_dmarc.tampered-body.test', 'TXT', 'v=DMARC1; p=reject');
    const subject = 'dkim body changed';
    const signed = await sign(simpleMessage({ from: 'sender@tampered-body.test', to: RCPT, subject, body: 'Pay 10 EUR.' }), 'tampered-body.test');
    const d = await deliver('bounce@tampered-body.test', signed.replace('Pay 10 EUR.', 'Pay 10000 EUR.'), subject);
    // mailauth's lenient mode reports a body hash mismatch as neutral, as Gmail does (RFC 8601 allows either)
    assert.equal(d.summary.dkim, 'neutral');
    assert.equal(method(d.ar, 'dkim'), 'neutral');
    assert.match(d.ar, /body hash did not verify/);
    assert.equal(d.summary.dmarc, 'fail');
  });

  it('when a signed header is changed after signing, then dkim=fail (bad signature)', async () => {
    publishKey('tampered-header.test');
    const subject = 'dkim header changed';
    const signed = await sign(simpleMessage({ from: 'sender@tampered-header.test', to: RCPT, subject: 'original subject' }), 'tampered-header.test');
    const d = await deliver('bounce@tampered-header.test', signed.replace('Subject: original subject', `Subject: ${subject}`), subject);
    assert.equal(d.summary.dkim, 'fail');
    assert.equal(method(d.ar, 'dkim'), 'fail');
    assert.match(d.ar, /bad signature/);
  });

  it('when no key is published for the selector, then dkim is not pass (neutral: no key)', async () => {
    const subject = 'dkim no key';
    const signed = await sign(simpleMessage({ from: 'sender@no-key.test', to: RCPT, subject }), 'no-key.test', 'missing');
    const d = await deliver('bounce@no-key.test', signed, subject);
    assert.equal(d.summary.dkim, 'neutral');
    assert.equal(method(d.ar, 'dkim'), 'neutral');
    assert.match(d.ar, /no key/);
    assert.ok(dns.received('missing._domainkey.no-key.test', 'TXT'));
  });

  it('when an unsigned message fails SPF and the From domain says p=reject, then it is stored anyway with dmarc=fail', async () => {
    dns.set('dmarc-fail.test', 'TXT', 'v=spf1 ip4:192.0.2.1 -all');
    dns.set('_dmarc.dmarc-fail.test', 'TXT', 'v=DMARC1; p=reject');
    const subject = 'dmarc fail';
    const d = await deliver('bounce@dmarc-fail.test', simpleMessage({ from: 'ceo@dmarc-fail.test', to: RCPT, subject }), subject);
    assert.deepEqual(d.summary, { spf: 'fail', dkim: 'none', dmarc: 'fail', arc: 'none' });
    assert.equal(method(d.ar, 'dmarc'), 'fail');
    assert.match(d.ar, /p=REJECT/i);
  });

  it('when a signed message passes SPF, then trace_headers hold our Received, Received-SPF and Authentication-Results, and the raw readback starts with them', async () => {
    dns.set('full.test', 'TXT', 'v=spf1 ip4:127.0.0.1 -all');
    dns.set('_dmarc.full.test', 'TXT', 'v=DMARC1; p=reject');
    publishKey('full.test');
    const subject = 'trace headers';
    const message = await sign(simpleMessage({ from: 'sender@full.test', to: RCPT, subject, extraHeaders: ['Message-ID: <trace-1@full.test>'] }), 'full.test');
    const d = await deliver('bounce@full.test', message, subject);
    assert.deepEqual(d.summary, { spf: 'pass', dkim: 'pass', dmarc: 'pass', arc: 'none' });

    assert.match(d.trace, /^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby mx\.test\.local with ESMTP id /);
    assert.deepEqual(fieldNames(d.trace).sort(), ['Authentication-Results', 'Received', 'Received-SPF']);
    assert.equal(fieldNames(d.trace)[0], 'Received');
    assert.ok(d.trace.endsWith('\r\n'));
    assert.match(d.trace, /\r\nAuthentication-Results: mx\.test\.local;/);
    for (const name of ['spf', 'dkim', 'dmarc']) assert.equal(method(d.ar, name), 'pass', `${name} in ${d.ar}`);
    assert.match(field(d.trace, 'Received-SPF'), /^pass .*envelope-from="?bounce@full\.test"?;/);
    // the stored blob is the message as received; the readback puts our fields on top of it
    assert.equal(d.raw, d.trace + message);
  });

  it('when a message has no ARC set, then arc is none and the header claims no ARC result', async () => {
    const subject = 'arc none';
    const d = await deliver('bounce@no-arc.test', simpleMessage({ from: 'sender@no-arc.test', to: RCPT, subject }), subject);
    assert.equal(d.summary.arc, 'none');
    // mailauth writes an arc= entry only for a message with an ARC set; none is implied
    assert.ok([undefined, 'none'].includes(method(d.ar, 'arc')), d.ar);
  });

  it('when the verdicts were reached, then every lookup went to the local DNS server', () => {
    for (const [name, type] of [
      ['spf-pass.test', 'TXT'],
      ['spf-fail.test', 'TXT'],
      ['_dmarc.spf-pass.test', 'TXT'],
      ['_dmarc.dmarc-fail.test', 'TXT'],
      [`${SELECTOR}._domainkey.full.test`, 'TXT'],
    ]) {
      assert.ok(dns.received(name!, type), `no ${type} query for ${name} reached the local server`);
    }
    assert.ok(dns.queries.every((q) => q.transport === 'udp' || q.transport === 'tcp'));
  });

  it('when the DNS server answers SERVFAIL, then the message is accepted with 250 and SPF and DMARC are temperror', async () => {
    dns.set('servfail.test', 'TXT', 'v=spf1 ip4:127.0.0.1 -all');
    dns.respond('servfail');
    const subject = 'dns servfail';
    try {
      const d = await deliver('bounce@servfail.test', simpleMessage({ from: 'sender@servfail.test', to: RCPT, subject }), subject);
      assert.deepEqual(d.summary, { spf: 'temperror', dkim: 'none', dmarc: 'temperror', arc: 'none' });
      assert.equal(method(d.ar, 'spf'), 'temperror');
      assert.equal(method(d.ar, 'dmarc'), 'temperror');
      assert.match(field(d.trace, 'Received-SPF'), /^temperror /);
    } finally {
      dns.respond('answer');
    }
  });

  it('when the DNS server stops answering, then a signed message is still accepted with 250 within a bounded time and every lookup is temperror', async () => {
    publishKey('quiet.test');
    dns.set('quiet.test', 'TXT', 'v=spf1 ip4:127.0.0.1 -all');
    dns.set('_dmarc.quiet.test', 'TXT', 'v=DMARC1; p=reject');
    const subject = 'dns timeout';
    const message = await sign(simpleMessage({ from: 'sender@quiet.test', to: RCPT, subject }), 'quiet.test');
    dns.respond('drop');
    try {
      const d = await deliver('bounce@quiet.test', message, subject);
      assert.deepEqual(d.summary, { spf: 'temperror', dkim: 'temperror', dmarc: 'temperror', arc: 'none' });
      assert.equal(method(d.ar, 'dkim'), 'temperror');
      // three lookups one after another (key, SPF, DMARC), each bounded by DNS_TIMEOUT_MS and one
      // retry (c-ares may wait less), well within an SMTP client's patience
      assert.ok(d.elapsedMs < 45_000, `took ${d.elapsedMs} ms`);
    } finally {
      dns.respond('answer');
    }
    assert.ok(dns.received(`${SELECTOR}._domainkey.quiet.test`, 'TXT') && dns.received('quiet.test', 'TXT') && dns.received('_dmarc.quiet.test', 'TXT'));
  });

  // last: the DNS server is gone for good after this one
  it('when the DNS server is down, then the message is accepted with 250 at once and SPF and DMARC are temperror', async () => {
    await dns.stop();
    const subject = 'dns down';
    const d = await deliver('bounce@down.test', simpleMessage({ from: 'sender@down.test', to: RCPT, subject }), subject);
    assert.deepEqual(d.summary, { spf: 'temperror', dkim: 'none', dmarc: 'temperror', arc: 'none' });
    assert.equal(method(d.ar, 'spf'), 'temperror');
    assert.ok(d.elapsedMs < 15_000, `took ${d.elapsedMs} ms`);
  });
});
