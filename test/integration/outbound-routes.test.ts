/**
 * Route choice end to end, against real peers on 127.0.0.1: the user's own relay first, a
 * tenant's ESP provider next, the global relay, then direct MX delivery through a local DNS
 * server. A user relay that refuses the login falls back to the next route and the attempt log
 * says so; a user relay that strips STARTTLS defers the mail and never sees the password.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { FAKE_ESP_DEFAULTS, startFakeEsp, type FakeEsp } from '../helpers/fake-esp.js';
import { startFakeRelay, type FakeRelay } from '../helpers/fake-relay.js';
import { markVerified, seedMailbox, startTestServer, type TestServer } from '../helpers/harness.js';
import { RawSmtp, simpleMessage } from '../helpers/smtp-client.js';
import { testCertificate } from '../helpers/test-tls.js';

const PASSWORD = 'password-123';

let own: FakeRelay;
let stripped: FakeRelay;
let global: FakeRelay;
let mx: FakeRelay;
let esp: FakeEsp;
let dns: DnsServer;
let t: TestServer;
let alice: { userId: string; tenantId: string; email: string };

before(async () => {
  const cert = testCertificate();
  own = await startFakeRelay({ tls: 'starttls', auth: { user: 'alice-relay', pass: 'alice secret' } });
  stripped = await startFakeRelay({ tls: 'none', auth: { user: 'alice-relay', pass: 'alice secret' } });
  global = await startFakeRelay({ tls: 'starttls', auth: { user: 'global', pass: 'global secret' } });
  mx = await startFakeRelay({ tls: 'starttls' });
  esp = await startFakeEsp();
  dns = await startDnsServer({ 'far.test': { MX: [{ exchange: 'mx.far.test', priority: 10 }] }, 'mx.far.test': { A: ['127.0.0.1'] } });
  t = await startTestServer({
    RELAY_URL: `smtp://global:global%20secret@localhost:${global.port}`,
    OUTBOUND_TLS_CA_FILE: cert.caFile,
    ALLOW_PRIVATE_RELAY_HOSTS: 'true',
    OUTBOUND_TIMEOUT: '5s',
    SENDGRID_API_URL: esp.url,
  });
  const { user } = await seedMailbox(t.services, 'alice@routes.test');
  await seedMailbox(t.services, 'bob@other-routes.test');
  await markVerified(t.services, 'routes.test');
  await markVerified(t.services, 'other-routes.test');
  alice = { userId: user.id, tenantId: user.tenant_id, email: user.email };
});

after(async () => {
  await t.stop();
  for (const r of [own, stripped, global, mx]) await r.close();
  await esp.close();
  await dns.stop();
});

beforeEach(async () => {
  for (const r of [own, stripped, global, mx]) r.clear();
  esp.reset();
  await t.services.db.deleteFrom('smtp_settings').execute();
  await t.services.db.deleteFrom('providers').execute();
});

async function submit(user: string, to: string): Promise<string> {
  const c = await RawSmtp.connect(t.submissionPort);
  await c.hello();
  await c.startTls();
  await c.command('EHLO client.test');
  assert.equal((await c.authPlain(user, PASSWORD)).code, 235);
  await c.command(`MAIL FROM:<${user}>`);
  await c.command(`RCPT TO:<${to}>`);
  const reply = await c.data(simpleMessage({ from: user, to }));
  c.close();
  assert.match(reply.text, /^250 /);
  return reply.text.slice(-36);
}

async function row(submissionId: string) {
  return t.services.db.selectFrom('outbound').selectAll().where('submission_id', '=', submissionId).executeTakeFirstOrThrow();
}

async function useOwnRelay(port: number, pass = 'alice secret'): Promise<void> {
  await t.services.smtpSettings.saveSettings(alice, { host: 'localhost', port, secure: false, user: 'alice-relay', pass }, '127.0.0.1');
}

describe('route choice', () => {
  it("the user's own relay comes first", async () => {
    await useOwnRelay(own.port);
    const id = await submit('alice@routes.test', 'x@far.test');
    await t.services.queue.runDue();
    const r = await row(id);
    assert.equal(r.status, 'sent');
    assert.equal(r.route, 'user-relay');
    assert.equal(own.messages.length, 1);
    assert.equal(own.messages[0]!.authUser, 'alice-relay');
    assert.equal(global.messages.length, 0);
  });

  it("a user relay refusing the login falls back to the global relay, and the log says so", async () => {
    await useOwnRelay(own.port, 'a wrong password');
    const id = await submit('alice@routes.test', 'y@far.test');
    await t.services.queue.runDue();
    const r = await row(id);
    assert.equal(r.status, 'sent');
    assert.equal(r.route, 'relay');
    assert.equal(global.messages.length, 1);
    assert.deepEqual(
      r.attempt_log.map((e) => [e.route, e.outcome]),
      [
        ['user-relay', 'fallback'],
        ['relay', 'sent'],
      ],
    );
  });

  it('a user relay that strips STARTTLS defers the mail; the password is never sent in clear', async () => {
    await useOwnRelay(stripped.port);
    const id = await submit('alice@routes.test', 'z@far.test');
    await t.services.queue.runDue();
    const r = await row(id);
    assert.equal(r.status, 'deferred');
    assert.equal(r.route, 'user-relay');
    assert.match(r.last_reply ?? '', /STARTTLS/i);
    assert.equal(stripped.authAttempts.length, 0, 'no AUTH attempt at all');
    assert.equal(stripped.messages.length, 0);
    assert.equal(global.messages.length, 0, 'not silently sent elsewhere');
  });

  it("a tenant's ESP provider comes before the global relay", async () => {
    await t.services.providers.createProvider(
      { ...alice, ip: '127.0.0.1' },
      { name: 'sg', provider_type: 'sendgrid', enabled: true, api_key: FAKE_ESP_DEFAULTS.sendgrid.apiKey } as never,
    );
    const id = await submit('alice@routes.test', 'p@far.test');
    await t.services.queue.runDue();
    const r = await row(id);
    assert.equal(r.status, 'sent');
    assert.equal(r.route, 'provider:sendgrid:sg');
    assert.ok(r.provider_message_id);
    assert.equal(esp.calls('sendgrid.send').length, 1);
    assert.equal(global.messages.length, 0);
  });

  it('another tenant’s provider is never used', async () => {
    const bob = await t.services.db.selectFrom('users').select(['id', 'tenant_id', 'email']).where('email', '=', 'bob@other-routes.test').executeTakeFirstOrThrow();
    await t.services.providers.createProvider(
      { userId: bob.id, tenantId: bob.tenant_id, email: bob.email, ip: '127.0.0.1' },
      { name: 'bobs', provider_type: 'sendgrid', enabled: true, api_key: FAKE_ESP_DEFAULTS.sendgrid.apiKey } as never,
    );
    const id = await submit('alice@routes.test', 'q@far.test');
    await t.services.queue.runDue();
    assert.equal((await row(id)).route, 'relay');
    assert.equal(esp.calls('sendgrid.send').length, 0);
  });
});

describe('direct MX delivery', () => {
  it('looks up the MX through DNS_SERVERS and delivers with STARTTLS', async () => {
    const direct = await startTestServer({ DIRECT_DELIVERY: 'true', DIRECT_DELIVERY_PORT: String(mx.port), DNS_SERVERS: dns.address, ALLOW_PRIVATE_RELAY_HOSTS: 'true' });
    try {
      await seedMailbox(direct.services, 'solo@direct.test');
      await markVerified(direct.services, 'direct.test');
      const c = await RawSmtp.connectTls(direct.smtpsPort);
      await c.hello();
      assert.equal((await c.authPlain('solo@direct.test', PASSWORD)).code, 235);
      await c.command('MAIL FROM:<solo@direct.test>');
      await c.command('RCPT TO:<someone@far.test>');
      assert.match((await c.data(simpleMessage({ from: 'solo@direct.test', to: 'someone@far.test' }))).text, /^250 /);
      c.close();
      await direct.services.queue.runDue();
      const r = await direct.services.db.selectFrom('outbound').selectAll().executeTakeFirstOrThrow();
      assert.equal(r.status, 'sent', r.last_reply ?? '');
      assert.equal(r.route, 'mx');
      assert.ok(dns.received('far.test', 'MX'));
      assert.equal(mx.messages.length, 1);
      assert.equal(mx.messages[0]!.secure, true, 'opportunistic STARTTLS used');
      assert.deepEqual(mx.messages[0]!.rcptTo, ['someone@far.test']);
    } finally {
      await direct.stop();
    }
  });
});
