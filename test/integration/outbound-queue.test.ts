/**
 * The outbound queue against real peers on 127.0.0.1: a fake relay (smtp-server with STARTTLS and
 * AUTH) as RELAY_URL, our own MX for local recipients, a local DNS server for the DKIM key. The
 * queue runs with an injected clock (services.queue.clock) so the retry schedule, the delay
 * warning and the expiry are walked through without waiting: a 4xx is retried on schedule, a 5xx
 * bounces once to the sender's INBOX as multipart/report, a bounce is never bounced, the relay
 * being down defers and its return delivers, mail arrives DKIM-signed and verifies.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { simpleParser } from 'mailparser';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { createDnsResolver } from '../../src/services/dns-resolver.js';
import { dkimPublicKeyValue } from '../../src/services/domain-records.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { startFakeRelay, type FakeRelay } from '../helpers/fake-relay.js';
import { markVerified, seedMailbox, startTestServer, type TestServer } from '../helpers/harness.js';
import { RawSmtp, simpleMessage } from '../helpers/smtp-client.js';
import { testCertificate } from '../helpers/test-tls.js';

const PASSWORD = 'password-123';
const MINUTE = 60_000;

let relay: FakeRelay;
let t: TestServer;
let dns: DnsServer;
let offset = 0;

before(async () => {
  const cert = testCertificate();
  relay = await startFakeRelay({ tls: 'starttls', auth: { user: 'relayuser', pass: 'relay pass' } });
  t = await startTestServer({
    RELAY_URL: `smtp://relayuser:relay%20pass@localhost:${relay.port}`,
    OUTBOUND_TLS_CA_FILE: cert.caFile,
    OUTBOUND_RETRY_SCHEDULE: '5m,10m,30m',
    OUTBOUND_MAX_AGE: '2h',
    OUTBOUND_DELAY_WARNING: '20m',
    OUTBOUND_TIMEOUT: '5s',
  });
  t.services.queue.clock = () => new Date(Date.now() + offset);
  await seedMailbox(t.services, 'alice@out.test');
  await seedMailbox(t.services, 'bob@out.test');
  await markVerified(t.services, 'out.test');
  const tenant = await t.services.db.selectFrom('domains').select('tenant_id').where('name', '=', 'out.test').executeTakeFirstOrThrow();
  await t.services.accounts.createUser({ email: 'boss@out.test', password: PASSWORD, role: 'admin', tenantId: tenant.tenant_id });
  dns = await startDnsServer();
});

after(async () => {
  await t.stop();
  await relay.close();
  await dns.stop();
});

beforeEach(() => {
  relay.clear();
  relay.setFailure(null);
  offset = 0;
});

/** Submits over SMTP (STARTTLS + AUTH) and returns the submission id. */
async function submit(user: string, from: string, to: string[], message: string): Promise<string> {
  const c = await RawSmtp.connect(t.submissionPort);
  await c.hello();
  await c.startTls();
  await c.command('EHLO client.test');
  assert.equal((await c.authPlain(user, PASSWORD)).code, 235);
  assert.match((await c.command(`MAIL FROM:<${from}>`)).text, /^250/);
  for (const rcpt of to) assert.match((await c.command(`RCPT TO:<${rcpt}>`)).text, /^250/);
  const reply = await c.data(message);
  c.close();
  assert.match(reply.text, /^250 /);
  return reply.text.slice(-36);
}

async function rows(submissionId: string) {
  return t.services.db.selectFrom('outbound').selectAll().where('submission_id', '=', submissionId).orderBy('rcpt_to').execute();
}

async function inbox(address: string): Promise<{ subject: string; raw: Buffer }[]> {
  const found = await t.services.db
    .selectFrom('messages')
    .innerJoin('mailboxes', 'mailboxes.id', 'messages.mailbox_id')
    .innerJoin('folders', 'folders.id', 'messages.folder_id')
    .select(['messages.subject', 'messages.raw_blob_key', 'messages.trace_headers'])
    .where('mailboxes.address', '=', address)
    .where('folders.special_use', '=', 'inbox')
    .orderBy('messages.received_at')
    .execute();
  const out = [];
  for (const m of found) {
    const chunks: Buffer[] = [];
    for await (const chunk of await t.services.blobReader.open(m.raw_blob_key)) chunks.push(chunk as Buffer);
    out.push({ subject: m.subject, raw: Buffer.concat(chunks) });
  }
  return out;
}

async function refcount(key: string): Promise<number> {
  return (await t.services.db.selectFrom('blobs').select('refcount').where('key', '=', key).executeTakeFirstOrThrow()).refcount;
}

describe('delivery through the global relay', () => {
  it('relays with STARTTLS + AUTH, DKIM-signed; the signature verifies against the published key', async () => {
    const id = await submit('alice@out.test', 'alice@out.test', ['dest@remote.test'], simpleMessage({ from: 'Alice <alice@out.test>', to: 'dest@remote.test', subject: 'signed' }));
    assert.equal(await t.services.queue.runDue(), 1);
    const [row] = await rows(id);
    assert.equal(row!.status, 'sent');
    assert.equal(row!.route, 'relay');
    assert.match(row!.last_reply ?? '', /^250 /);
    assert.equal(await refcount(row!.raw_blob_key), 1, "only the Sent copy's reference is left");
    const [message] = relay.messages;
    assert.equal(message!.authUser, 'relayuser');
    assert.equal(message!.secure, true);
    assert.equal(message!.mailFrom, 'alice@out.test');
    assert.deepEqual(message!.rcptTo, ['dest@remote.test']);
    const raw = message!.raw.toString('latin1');
    assert.match(raw, /^DKIM-Signature: .*d=out\.test/s);
    assert.match(raw, /c=relaxed\/relaxed/);
    const signed = /h=([^;]*);/.exec(raw)![1]!.toLowerCase().replace(/\s/g, '').split(':');
    for (const field of ['from', 'to', 'subject', 'date', 'message-id']) assert.ok(signed.includes(field), `${field} is signed`);

    const domain = await t.services.db.selectFrom('domains').select(['dkim_selector', 'dkim_public_key']).where('name', '=', 'out.test').executeTakeFirstOrThrow();
    dns.set(`${domain.dkim_selector}._domainkey.out.test`, 'TXT', [`v=DKIM1; k=rsa; p=${dkimPublicKeyValue(domain.dkim_public_key)}`]);
    const resolver = createDnsResolver({ servers: [dns.address], timeoutMs: 2000 });
    const verified = await dkimVerify(message!.raw, { resolver: resolver as never });
    assert.equal(verified.results[0]?.status.result, 'pass', JSON.stringify(verified.results[0]?.status));
    assert.ok(dns.received(`${domain.dkim_selector}._domainkey.out.test`, 'TXT'), 'the key came from the local DNS server');
    // a changed body no longer verifies
    const tampered = Buffer.from(raw.replace('Hello there.', 'Hello th3re.'), 'latin1');
    const broken = await dkimVerify(tampered, { resolver: resolver as never });
    assert.notEqual(broken.results[0]?.status.result, 'pass');
  });

  it('delivers local recipients through the ingest path, never over SMTP', async () => {
    const id = await submit('alice@out.test', 'alice@out.test', ['bob@out.test'], simpleMessage({ from: 'alice@out.test', to: 'bob@out.test', subject: 'local hello' }));
    await t.services.queue.runDue();
    const [row] = await rows(id);
    assert.equal(row!.status, 'sent');
    assert.equal(row!.route, 'local');
    assert.equal(relay.messages.length, 0);
    const got = await inbox('bob@out.test');
    assert.ok(got.some((m) => m.subject === 'local hello'));
  });

  it('a 4xx is retried on the schedule, then delivered', async () => {
    relay.setFailure({ stage: 'rcpt', code: 451, message: '4.3.0 try later' });
    const id = await submit('alice@out.test', 'alice@out.test', ['slow@remote.test'], simpleMessage({ from: 'alice@out.test', to: 'slow@remote.test' }));
    await t.services.queue.runDue();
    let [row] = await rows(id);
    assert.equal(row!.status, 'deferred');
    assert.equal(row!.attempts, 1);
    assert.match(row!.last_reply ?? '', /451 4\.3\.0 try later/);
    // the wait counts from the end of the attempt, a few milliseconds after its start
    const waited = (r: typeof row): number => r!.next_attempt_at.getTime() - r!.last_attempt_at!.getTime();
    assert.ok(waited(row) >= 5 * MINUTE && waited(row) < 5 * MINUTE + 5000, 'first retry after 5 minutes');

    offset = 4 * MINUTE;
    assert.equal(await t.services.queue.runDue(), 0, 'not due before its time');
    offset = 5 * MINUTE + 1000;
    await t.services.queue.runDue();
    [row] = await rows(id);
    assert.equal(row!.attempts, 2);
    assert.ok(waited(row) >= 10 * MINUTE && waited(row) < 10 * MINUTE + 5000, 'then 10 minutes');

    relay.setFailure(null);
    offset = 16 * MINUTE;
    await t.services.queue.runDue();
    [row] = await rows(id);
    assert.equal(row!.status, 'sent');
    assert.equal(row!.attempts, 3);
    assert.equal(relay.messages.length, 1);
    assert.deepEqual(
      row!.attempt_log.map((e) => e.outcome),
      ['deferred', 'deferred', 'sent'],
    );
  });

  it('the relay out of service (421) defers; when it is back the message goes', async () => {
    relay.setFailure({ stage: 'mail', code: 421, message: '4.3.2 service not available' });
    const id = await submit('alice@out.test', 'alice@out.test', ['later@remote.test'], simpleMessage({ from: 'alice@out.test', to: 'later@remote.test' }));
    await t.services.queue.runDue();
    let [row] = await rows(id);
    assert.equal(row!.status, 'deferred');
    relay.setFailure(null);
    offset = 6 * MINUTE;
    await t.services.queue.runDue();
    [row] = await rows(id);
    assert.equal(row!.status, 'sent');
  });

  it('a 5xx bounces: one multipart/report in the sender’s INBOX, and the raw bytes are released', async () => {
    relay.setFailure({ stage: 'rcpt', code: 550, message: '5.1.1 no such user here' });
    const before = (await inbox('alice@out.test')).length;
    const id = await submit('alice@out.test', 'alice@out.test', ['ghost@remote.test'], simpleMessage({ from: 'alice@out.test', to: 'ghost@remote.test', subject: 'to a ghost' }));
    await t.services.queue.runDue();
    const [row] = await rows(id);
    assert.equal(row!.status, 'bounced');
    assert.match(row!.last_reply ?? '', /550 5\.1\.1 no such user here/);
    assert.ok(row!.bounce_submission_id);
    const after = await inbox('alice@out.test');
    assert.equal(after.length, before + 1, 'exactly one bounce');
    const dsn = await simpleParser(after.at(-1)!.raw);
    assert.match(String(dsn.headers.get('content-type') && (dsn.headers.get('content-type') as { value: string }).value), /multipart\/report/);
    assert.match(after.at(-1)!.raw.toString('latin1'), /report-type="?delivery-status/);
    assert.match(after.at(-1)!.raw.toString('latin1'), /Final-Recipient: rfc822; ?ghost@remote\.test/);
    assert.match(after.at(-1)!.raw.toString('latin1'), /Status: 5\.1\.1/);
    assert.match(after.at(-1)!.raw.toString('latin1'), /Subject: to a ghost/, 'the original headers are quoted');
    const dsnRow = await t.services.db.selectFrom('outbound').selectAll().where('submission_id', '=', row!.bounce_submission_id).executeTakeFirstOrThrow();
    assert.equal(dsnRow.mail_from, '', 'bounces have the null sender');
    assert.equal(dsnRow.kind, 'dsn');
    assert.equal(dsnRow.status, 'sent');
    assert.equal(await refcount(row!.raw_blob_key), 1, "only the Sent copy's reference is left");
  });

  it('a bounce that cannot be delivered is not bounced again', async () => {
    // an admin sends as an address without a mailbox: the bounce back to it fails locally
    relay.setFailure({ stage: 'rcpt', code: 550, message: '5.1.1 unknown' });
    const id = await submit('boss@out.test', 'noreply@out.test', ['ghost2@remote.test'], simpleMessage({ from: 'noreply@out.test', to: 'ghost2@remote.test' }));
    await t.services.queue.runDue();
    const [row] = await rows(id);
    assert.equal(row!.status, 'bounced');
    const dsnRow = await t.services.db.selectFrom('outbound').selectAll().where('submission_id', '=', row!.bounce_submission_id!).executeTakeFirstOrThrow();
    assert.equal(dsnRow.status, 'bounced');
    assert.equal(dsnRow.bounce_submission_id, null, 'no bounce for a bounce');
    const dsnSubmissions = await t.services.db.selectFrom('submissions').select('id').where('source', '=', 'dsn').where('to_addresses', '@>', JSON.stringify(['noreply@out.test']) as never).execute();
    assert.equal(dsnSubmissions.length, 1);
  });

  it('warns the sender once after OUTBOUND_DELAY_WARNING and gives up after OUTBOUND_MAX_AGE', async () => {
    relay.setFailure({ stage: 'rcpt', code: 451, message: '4.2.0 mailbox busy' });
    const start = (await inbox('alice@out.test')).length;
    const id = await submit('alice@out.test', 'alice@out.test', ['busy@remote.test'], simpleMessage({ from: 'alice@out.test', to: 'busy@remote.test', subject: 'patience' }));
    for (const minutes of [0, 6, 16, 25, 56, 90]) {
      offset = minutes * MINUTE;
      await t.services.queue.runDue();
    }
    let [row] = await rows(id);
    assert.equal(row!.status, 'deferred');
    assert.ok(row!.delay_warned_at, 'warned');
    let mail = await inbox('alice@out.test');
    assert.equal(mail.length, start + 1, 'one delay notice, not one per attempt');
    assert.match(mail.at(-1)!.raw.toString('latin1'), /Action: delayed/);
    assert.match(mail.at(-1)!.raw.toString('latin1'), /Will-Retry-Until: /);

    offset = 2 * 60 * MINUTE + MINUTE;
    await t.services.queue.runDue();
    [row] = await rows(id);
    assert.equal(row!.status, 'bounced');
    assert.match(row!.last_reply ?? '', /gave up after/);
    mail = await inbox('alice@out.test');
    assert.equal(mail.length, start + 2);
    assert.match(mail.at(-1)!.raw.toString('latin1'), /Action: failed/);
    assert.match(mail.at(-1)!.raw.toString('latin1'), /Status: 5\.4\.7/);
  });
});

describe('no route', () => {
  it('without any route the recipient stays deferred with a clear reason', async () => {
    const bare = await startTestServer();
    try {
      await seedMailbox(bare.services, 'solo@bare.test');
      await markVerified(bare.services, 'bare.test');
      const c = await RawSmtp.connectTls(bare.smtpsPort);
      await c.hello();
      assert.equal((await c.authPlain('solo@bare.test', PASSWORD)).code, 235);
      await c.command('MAIL FROM:<solo@bare.test>');
      await c.command('RCPT TO:<far@remote.test>');
      assert.match((await c.data(simpleMessage({ from: 'solo@bare.test', to: 'far@remote.test' }))).text, /^250 /);
      c.close();
      await bare.services.queue.runDue();
      const row = await bare.services.db.selectFrom('outbound').selectAll().executeTakeFirstOrThrow();
      assert.equal(row.status, 'deferred');
      assert.equal(row.last_reply, '451 4.3.5 no outbound route configured');
    } finally {
      await bare.stop();
    }
  });
});
