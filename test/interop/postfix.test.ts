/**
 * Interoperability with Postfix (Debian's package, a throwaway instance from
 * test/helpers/postfix.ts) in both directions, and with two independent DKIM verifiers and an
 * independent MIME parser:
 *
 * - Postfix as the sending MTA: mail injected into Postfix for acme.test is relayed into our MX
 *   (transport_maps → our SMTP_PORT) and stored once, with Postfix's Received header; a recipient
 *   our MX refuses makes Postfix bounce with our 550 5.1.1 text.
 * - Postfix as the receiving MTA: mail submitted to us for someone@far.test leaves through direct
 *   MX delivery (a local DNS server says far.test's MX is 127.0.0.1; DIRECT_DELIVERY_PORT is
 *   Postfix's port) and lands in Postfix's virtual maildir; our outbound row is `sent`.
 * - DKIM: the message Postfix stored verifies with opendkim-testmsg (opendkim-tools) and with
 *   python3-dkim against the TXT record our API tells the tenant to publish; a tampered body
 *   fails in both.
 * - DSN: Postfix refusing an unknown recipient (550 5.1.1 at RCPT) makes us bounce; Python's
 *   `email` package reads our bounce as multipart/report; report-type=delivery-status with the
 *   right per-recipient fields and the original header block.
 *
 * One server and one Postfix serve the whole file. Everything listens on 127.0.0.1; Postfix never
 * looks up DNS (its helper disables it) and routes origin.test, the sender domain of the mail
 * injected into it, to its discard transport, so its own bounces go nowhere.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chownSync, chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { markVerified, seedMailbox, startTestServer, type TestServer } from '../helpers/harness.js';
import { postfixUnavailable, startPostfix, type PostfixInstance } from '../helpers/postfix.js';
import { freePort } from '../helpers/process-server.js';
import { PASSWORD, UNTHROTTLED_ENV, usersApi } from '../helpers/users-api.js';
import { deliverAll, FIXTURES, forwardPort53, missing, PYTHON, pythonDkimMissing, run, runWithLocalResolver, storedCopies, UNSHARE, waitFor } from './interop-support.js';
import type { DnsRecord } from '../../src/services/domain-records.js';

const SWAKS = '/usr/bin/swaks';
const OPENDKIM_TESTMSG = '/usr/sbin/opendkim-testmsg';
const ACME = 'alice@acme.test';
const SIGNER_DOMAIN = 'signer.test';
const SENDER = `sender@${SIGNER_DOMAIN}`;
const FAR = 'someone@far.test';

const postfixMissing = postfixUnavailable() ?? missing(SWAKS, 'swaks');

let t: TestServer;
let pf: PostfixInstance;
let dns: DnsServer;
let work: string;
let vmail: string;
let dkimRecord: DnsRecord;

/** main.cf for one Postfix that relays acme.test to us and holds far.test in a virtual maildir. */
function postfixMain(ourSmtpPort: number, uid: number, gid: number): Record<string, string> {
  return {
    relay_domains: 'acme.test',
    transport_maps: `inline:{ acme.test=smtp:[127.0.0.1]:${ourSmtpPort}, origin.test=discard: }`,
    virtual_mailbox_domains: 'far.test',
    virtual_mailbox_base: vmail,
    virtual_mailbox_maps: `inline:{ ${FAR}=someone/ }`,
    virtual_uid_maps: `static:${uid}`,
    virtual_gid_maps: `static:${gid}`,
  };
}

describe('Postfix', { skip: postfixMissing }, () => {
  before(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'interop-postfix-'));
    chmodSync(work, 0o755);
    vmail = path.join(work, 'vmail');
    mkdirSync(vmail);
    const uid = Number(execFileSync('id', ['-u', 'postfix']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postfix']).toString().trim());
    chownSync(vmail, uid, gid);

    const postfixPort = await freePort();
    dns = await startDnsServer({ 'far.test': { MX: [{ exchange: 'mx.far.test', priority: 10 }] }, 'mx.far.test': { A: ['127.0.0.1'] } });
    t = await startTestServer({
      ...UNTHROTTLED_ENV,
      DIRECT_DELIVERY: 'true',
      DIRECT_DELIVERY_PORT: String(postfixPort),
      DNS_SERVERS: dns.address,
      ALLOW_PRIVATE_RELAY_HOSTS: 'true',
      OUTBOUND_TIMEOUT: '10s',
    });
    await seedMailbox(t.services, ACME);

    // the signing tenant, its domain and its sender through the API, as an operator's tenant would
    const users = usersApi(t);
    const tenant = await users.newTenant('interop');
    const added = await users.api<{ id: string }>('POST', '/api/domains', tenant.token, { name: SIGNER_DOMAIN });
    assert.equal(added.status, 201, added.text);
    await users.createUser(tenant, { email: SENDER });
    const records = await users.api<{ records: DnsRecord[] }>('GET', `/api/domains/${added.body.id}/dns-records`, tenant.token);
    assert.equal(records.status, 200, records.text);
    dkimRecord = records.body.records.find((r) => r.record === 'dkim')!;
    assert.ok(dkimRecord, records.text);
    // the tenant publishes what we told it to (the DNS server stands in for the world's DNS)
    for (const r of records.body.records) {
      if (r.type === 'TXT') dns.set(r.host, 'TXT', [r.value]);
      else dns.set(r.host, 'MX', [{ exchange: r.value, priority: r.priority ?? 10 }]);
    }
    await markVerified(t.services, SIGNER_DOMAIN);

    pf = await startPostfix({ port: postfixPort, main: postfixMain(t.smtpPort, uid, gid) });
  });

  after(async () => {
    await pf?.stop();
    await t?.stop();
    await dns?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** swaks injecting one message into Postfix's smtpd (no TLS, no AUTH: 127.0.0.0/8 is mynetworks). */
  async function injectIntoPostfix(to: string, subject: string): Promise<void> {
    const r = await run(SWAKS, ['--server', `127.0.0.1:${pf.port}`, '--from', 'sender@origin.test', '--to', to, '--header', `Subject: ${subject}`, '--body', `body of ${subject}`]);
    assert.equal(r.status, 0, `Postfix refused the injection:\n${r.stdout}${r.stderr}`);
  }

  /** swaks submitting to our server as SENDER (STARTTLS + AUTH), for mail that leaves through Postfix. */
  async function submitToUs(to: string, subject: string, body: string): Promise<void> {
    const r = await run(SWAKS, [
      '--server', `127.0.0.1:${t.submissionPort}`, '--tls', '--auth', 'PLAIN', '--auth-user', SENDER, '--auth-password', PASSWORD,
      '--from', SENDER, '--to', to, '--header', `Subject: ${subject}`, '--body', body,
    ]);
    assert.equal(r.status, 0, `our submission refused:\n${r.stdout}${r.stderr}`);
  }

  /** The file in Postfix's virtual maildir for someone@far.test that holds `subject`, or undefined. */
  function maildirFile(subject: string): Buffer | undefined {
    const dir = path.join(vmail, 'someone', 'new');
    if (!existsSync(dir)) return undefined;
    for (const name of readdirSync(dir)) {
      const bytes = readFileSync(path.join(dir, name));
      if (bytes.toString('latin1').includes(`Subject: ${subject}`)) return bytes;
    }
    return undefined;
  }

  describe('Postfix as the sending MTA, relaying into our MX', () => {
    it('Postfix → our MX: the message is stored once, with Postfix’s Received header', async () => {
      const subject = 'relayed by postfix';
      await injectIntoPostfix(ACME, subject);
      await pf.waitForLog(/to=<alice@acme\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+.* status=sent \(250 2\.0\.0 /);
      const copies = await storedCopies(t, ACME, subject);
      assert.equal(copies.length, 1, 'stored exactly once');
      const raw = copies[0]!.raw.toString('latin1');
      assert.match(raw, /^Received: from .*\r\n\tby postfix\.test\.local \(Postfix\) with E?SMTP id /m, 'Postfix’s own Received header is kept');
      assert.match(raw, /\r\n\r\nbody of relayed by postfix\r\n/);
      assert.match(copies[0]!.trace, /^Received: from postfix\.test\.local \(\[127\.0\.0\.1\]\)/, 'our trace header names Postfix’s HELO');
    });

    it('Postfix → our MX: a recipient we refuse bounces in Postfix with our 550 5.1.1', async () => {
      const subject = 'refused by us';
      await injectIntoPostfix('nobody@acme.test', subject);
      const m = await pf.waitForLog(/to=<nobody@acme\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+.* status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: (550 5\.1\.1 [^\n]*)\)/);
      assert.match(m[1]!, /in reply to RCPT TO command/);
      assert.equal((await t.services.db.selectFrom('messages').select('id').where('subject', '=', subject).execute()).length, 0, 'nothing stored');
    });
  });

  // the message our server signed and Postfix received: made once, used by the DKIM tests too
  let delivered: Promise<Buffer> | undefined;
  const OUTBOUND_SUBJECT = 'signed by us, received by postfix';
  const OUTBOUND_BODY = 'Hello Postfix, this message was signed on its way out.';

  function deliveredToPostfix(): Promise<Buffer> {
    delivered ??= (async () => {
      await submitToUs(FAR, OUTBOUND_SUBJECT, OUTBOUND_BODY);
      const rows = await deliverAll(t, OUTBOUND_SUBJECT);
      assert.deepEqual(rows.map((r) => [r.rcpt_to, r.status, r.route]), [[FAR, 'sent', 'mx']], JSON.stringify(rows));
      await pf.waitForLog(/to=<someone@far\.test>, relay=virtual, .*status=sent \(delivered to maildir\)/);
      return waitFor('the maildir file', () => Promise.resolve(maildirFile(OUTBOUND_SUBJECT)));
    })();
    return delivered;
  }

  describe('Postfix as the receiving MTA of our outbound mail', () => {
    it('our server → Postfix (direct MX through DNS_SERVERS): delivered into its virtual maildir, outbound row sent', async () => {
      const file = (await deliveredToPostfix()).toString('latin1');
      assert.ok(dns.received('far.test', 'MX'), 'the MX came from the local DNS server');
      assert.match(file, /^Delivered-To: someone@far\.test$/m);
      assert.match(file, /^Received: from mx\.test\.local .*\n\tby postfix\.test\.local \(Postfix\) with E?SMTP/m);
      assert.match(file, /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=signer\.test;/m);
      assert.match(file, new RegExp(`^From: ${SENDER}$`, 'm'));
      assert.ok(file.includes(`\n\n${OUTBOUND_BODY}\n`), `the body as sent:\n${file}`);
    });
  });

  /** The message as it travelled over SMTP: CRLF line ends (the maildir file has LF). */
  function crlf(bytes: Buffer): Buffer {
    return Buffer.from(bytes.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
  }

  function tampered(bytes: Buffer): Buffer {
    const text = bytes.toString('latin1');
    assert.ok(text.includes('signed on its way out'));
    return Buffer.from(text.replace('signed on its way out', 'changed on its way out'), 'latin1');
  }

  describe('DKIM signatures of our outbound mail', () => {
    it('python3-dkim: the message Postfix received passes with our published TXT record; a tampered body fails', async (tc) => {
      const why = await pythonDkimMissing();
      if (why) {
        tc.skip(why);
        return;
      }
      const message = crlf(await deliveredToPostfix());
      const script = path.join(FIXTURES, 'dkim_verify.py');
      const good = await run(PYTHON, [script, dkimRecord.host, dkimRecord.value], { input: message });
      assert.equal(good.stdout.trim(), 'pass', `python3-dkim: ${good.stdout}${good.stderr}`);
      assert.equal(good.status, 0);
      const bad = await run(PYTHON, [script, dkimRecord.host, dkimRecord.value], { input: tampered(message) });
      assert.equal(bad.stdout.trim(), 'fail', `python3-dkim on a tampered body: ${bad.stdout}${bad.stderr}`);
      assert.equal(bad.status, 1);
    });

    it('opendkim-testmsg: the message Postfix received passes, the key resolved from our published TXT record; a tampered body fails', async (tc) => {
      const why = missing(OPENDKIM_TESTMSG, 'opendkim-tools') ?? missing(UNSHARE, 'util-linux');
      if (why) {
        tc.skip(why);
        return;
      }
      let forwarder;
      try {
        forwarder = await forwardPort53(dns.port);
      } catch (err) {
        tc.skip(`127.0.0.1:53 is not available for the test resolver: ${(err as Error).message}`);
        return;
      }
      try {
        const message = crlf(await deliveredToPostfix());
        dns.clearQueries();
        const good = await runWithLocalResolver(work, OPENDKIM_TESTMSG, [], message);
        assert.equal(good.status, 0, `opendkim-testmsg: exit ${good.status}: ${good.stdout}${good.stderr}`);
        assert.equal(`${good.stdout}${good.stderr}`.trim(), '', 'opendkim-testmsg prints nothing when the signature verifies');
        assert.ok(dns.received(dkimRecord.host, 'TXT'), 'the key came from the local DNS server');
        const bad = await runWithLocalResolver(work, OPENDKIM_TESTMSG, [], tampered(message));
        assert.notEqual(bad.status, 0, 'a tampered body must fail');
        assert.match(`${bad.stdout}${bad.stderr}`, /dkim_eom\(\): Bad signature/);
      } finally {
        await forwarder.close();
      }
    });
  });

  describe('DSN bounces parsed by Python’s email package', () => {
    it('Python email: our bounce for a recipient Postfix refuses is multipart/report; report-type=delivery-status, fields right', { skip: missing(PYTHON, 'python3') }, async () => {
      const subject = 'to nobody at far.test';
      const before = await inboxOf(SENDER);
      await submitToUs('nobody@far.test', subject, 'This one cannot be delivered.');
      const rows = await deliverAll(t, subject);
      assert.equal(rows[0]!.status, 'bounced', JSON.stringify(rows));
      assert.match(rows[0]!.last_reply ?? '', /^550 5\.1\.1 /);
      const bounce = await waitFor('the bounce in the sender’s INBOX', async () => {
        await t.services.queue.runDue();
        const now = await inboxOf(SENDER);
        return now.length > before.length ? now.find((c) => !before.some((b) => b.id === c.id)) : undefined;
      });
      const r = await run(PYTHON, [path.join(FIXTURES, 'parse_dsn.py')], { input: Buffer.concat([Buffer.from(bounce.trace, 'latin1'), bounce.raw]) });
      assert.equal(r.status, 0, r.stderr);
      const dsn = JSON.parse(r.stdout) as {
        content_type: string;
        report_type: string;
        defects: string[];
        parts: string[];
        per_message: Record<string, string>;
        per_recipient: Record<string, string>[];
        original_headers: string;
      };
      assert.equal(dsn.content_type, 'multipart/report');
      assert.equal(dsn.report_type, 'delivery-status');
      assert.deepEqual(dsn.defects, [], 'the parser found no defects');
      assert.deepEqual(dsn.parts, ['text/plain', 'message/delivery-status', 'text/rfc822-headers']);
      assert.equal(dsn.per_message['Reporting-MTA'], 'dns; mx.test.local');
      assert.equal(dsn.per_recipient.length, 1);
      const rcpt = dsn.per_recipient[0]!;
      assert.equal(rcpt['Final-Recipient'], 'rfc822; nobody@far.test');
      assert.equal(rcpt['Action'], 'failed');
      assert.equal(rcpt['Status'], '5.1.1');
      assert.match(rcpt['Diagnostic-Code'] ?? '', /^smtp; 550 5\.1\.1 <nobody@far\.test>: Recipient address rejected: User unknown in virtual mailbox table/);
      assert.match(dsn.original_headers, new RegExp(`^Subject: ${subject}$`, 'm'));
      assert.match(dsn.original_headers, new RegExp(`^From: ${SENDER}$`, 'm'));
    });
  });

  async function inboxOf(address: string): Promise<{ id: string; trace: string; raw: Buffer }[]> {
    const rows = await t.services.db
      .selectFrom('messages')
      .innerJoin('mailboxes', 'mailboxes.id', 'messages.mailbox_id')
      .innerJoin('folders', 'folders.id', 'messages.folder_id')
      .select(['messages.id', 'messages.subject'])
      .where('mailboxes.address', '=', address)
      .where('folders.special_use', '=', 'inbox')
      .execute();
    const out: { id: string; trace: string; raw: Buffer }[] = [];
    for (const row of rows) {
      const [copy] = (await storedCopies(t, address, row.subject ?? '')).filter((c) => c.id === row.id);
      if (copy) out.push(copy);
    }
    return out;
  }
});
