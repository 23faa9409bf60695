/**
 * /api/smtp/* against the real server: the exact response shapes of the original design, the
 * password never in any response, each class of bad input refused with nothing changed, the SSRF
 * guard at save and at test (with its bypass spellings), the connection test against a real SMTP
 * peer (helpers/fake-relay.ts) with certificate checks on, audit entries, per-user isolation, and
 * transportFor() as the delivery queue uses it (cache, change detection, delivery).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/harness.js';
import { call, type ApiResponse } from '../helpers/http.js';
import { startFakeRelay, type FakeRelay } from '../helpers/fake-relay.js';
import { testCertificate } from '../helpers/test-tls.js';
import { UNTHROTTLED_ENV, usersApi } from '../helpers/users-api.js';

const RELAY_AUTH = { user: 'relay-login', pass: 'Relay-Secret-Pa55' };
const GLOBAL_RELAY_URL = 'smtp://apikey:SG.global-topsecret@relay.global.test:2525';

type Body = Record<string, unknown>;

function settings(overrides: Body = {}): Body {
  return { host: '93.184.216.34', port: 587, user: 'me@example.test', pass: 'my-Relay-Pa55word', ...overrides };
}

function assertNoSecret(res: ApiResponse<unknown>, ...secrets: string[]): void {
  for (const secret of secrets) assert.ok(!res.text.includes(secret), `the response must not contain ${secret}: ${res.text}`);
}

describe('per-user SMTP settings API (guard on, RELAY_URL set)', () => {
  let t: TestServer;
  let users: ReturnType<typeof usersApi>;
  let owner: { token: string; id: string; email: string };
  let member: { token: string; id: string };

  before(async () => {
    t = await startTestServer({ ...UNTHROTTLED_ENV, ROLES: 'api', RELAY_URL: GLOBAL_RELAY_URL });
    users = usersApi(t);
    const tenant = await users.newTenant('smtp');
    owner = { token: tenant.token, id: tenant.ownerId, email: tenant.ownerEmail };
    const m = await users.userWithToken(tenant, 'member');
    member = { token: m.token, id: m.user.id };
  });
  after(() => t.stop());

  const api = (method: string, path: string, token: string | undefined, body?: unknown): Promise<ApiResponse<Body>> =>
    call<Body>(t.apiPort, method, path, { token, body });

  it('when a user has no settings, then GET shows the global relay host and port, never its credentials', async () => {
    const res = await api('GET', '/api/smtp/settings', member.token);
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { host: 'relay.global.test', port: 2525, secure: false, user: null, hasPassword: false, isGlobal: true });
    assertNoSecret(res, 'apikey', 'SG.global-topsecret');
  });

  it('when settings are saved, then the answer has the exact shape and GET shows them without the password', async () => {
    const saved = await api('POST', '/api/smtp/settings', member.token, settings());
    assert.equal(saved.status, 200, saved.text);
    const s = saved.body.settings as Body;
    assert.deepEqual(Object.keys(saved.body).sort(), ['message', 'settings']);
    assert.equal(saved.body.message, 'SMTP settings saved successfully');
    assert.deepEqual(
      { ...s, updatedAt: undefined },
      { host: '93.184.216.34', port: 587, secure: false, user: 'me@example.test', updatedAt: undefined, updatedBy: member.id },
    );
    assert.ok(Math.abs(Date.parse(s.updatedAt as string) - Date.now()) < 60_000);
    assertNoSecret(saved, 'my-Relay-Pa55word');

    const got = await api('GET', '/api/smtp/settings', member.token);
    assert.deepEqual(got.body, { host: '93.184.216.34', port: 587, secure: false, user: 'me@example.test', hasPassword: true, isGlobal: false });
    assertNoSecret(got, 'my-Relay-Pa55word');

    const row = await t.services.db.selectFrom('smtp_settings').selectAll().where('user_id', '=', member.id).executeTakeFirstOrThrow();
    assert.ok(!row.password_enc.includes('my-Relay-Pa55word'), 'the password is stored encrypted');
  });

  it('when secure is not given, then it is true on port 465 only; an explicit value wins', async () => {
    const on465 = await api('POST', '/api/smtp/settings', member.token, settings({ port: 465 }));
    assert.equal((on465.body.settings as Body).secure, true);
    const explicit = await api('POST', '/api/smtp/settings', member.token, settings({ port: 465, secure: false }));
    assert.equal((explicit.body.settings as Body).secure, false);
    const on2525 = await api('POST', '/api/smtp/settings', member.token, settings({ port: 2525, secure: true }));
    assert.equal((on2525.body.settings as Body).secure, true);
    await api('POST', '/api/smtp/settings', member.token, settings());
  });

  it("when another user reads the settings, then they see their own (none), not the other user's", async () => {
    const theirs = await api('GET', '/api/smtp/settings', owner.token);
    assert.equal(theirs.body.isGlobal, true);
    assert.equal(theirs.body.host, 'relay.global.test');
  });

  it('when there is no token, then every route is 401', async () => {
    for (const [method, path] of [
      ['GET', '/api/smtp/settings'],
      ['POST', '/api/smtp/settings'],
      ['DELETE', '/api/smtp/settings'],
      ['POST', '/api/smtp/test'],
    ] as const) {
      const res = await api(method, path, undefined, method === 'POST' ? settings() : undefined);
      assert.equal(res.status, 401, `${method} ${path}`);
    }
  });

  const invalid: [string, unknown, RegExp][] = [
    ['no host', { port: 587, user: 'u', pass: 'p' }, /host/],
    ['an empty host', settings({ host: '' }), /host: is required/],
    ['a blank host', settings({ host: '   ' }), /host: is required/],
    ['a host with a space', settings({ host: 'smtp example.com' }), /host: must be a host name or an IP address/],
    ['a host with a path', settings({ host: 'smtp.example.com/x' }), /host: must be a host name/],
    ['a malformed IPv4 address', settings({ host: '1.2.3.256' }), /host: must be a host name/],
    ['port 0', settings({ port: 0 }), /port: must be 1–65535/],
    ['port 65536', settings({ port: 65536 }), /port: must be 1–65535/],
    ['a fractional port', settings({ port: 587.5 }), /port: must be a whole number/],
    ['a port as a string', settings({ port: '587' }), /port/],
    ['no user', { host: '93.184.216.34', port: 587, pass: 'p' }, /user/],
    ['an empty user', settings({ user: '' }), /user: is required/],
    ['no password', { host: '93.184.216.34', port: 587, user: 'u' }, /pass/],
    ['an empty password', settings({ pass: '' }), /pass: is required/],
    ['secure not a boolean', settings({ secure: 'yes' }), /secure/],
    ['an unknown field', settings({ requireTLS: false }), /requireTLS/],
    ['a body that is not an object', [1, 2], /body/],
  ];
  for (const [what, body, message] of invalid) {
    it(`when the body has ${what}, then save and test answer 400 validation_failed and nothing changes`, async () => {
      for (const path of ['/api/smtp/settings', '/api/smtp/test']) {
        const res = await api('POST', path, member.token, body);
        assert.equal(res.status, 400, `${path}: ${res.text}`);
        assert.equal(res.body.code, 'validation_failed');
        assert.match(res.body.error as string, message);
        assert.ok(Array.isArray(res.body.details));
        assertNoSecret(res, 'my-Relay-Pa55word');
      }
      const got = await api('GET', '/api/smtp/settings', member.token);
      assert.equal(got.body.host, '93.184.216.34');
      assert.equal(got.body.port, 587);
    });
  }

  const ssrf = [
    'localhost',
    'LOCALHOST.',
    '127.0.0.1',
    '127.1',
    '2130706433',
    '0x7f000001',
    '0177.0.0.1',
    '[::1]',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '0.0.0.0',
    '10.1.2.3',
    '192.168.0.10',
    '100.64.0.1',
    '169.254.169.254',
    'fd00:ec2::254',
    'fe80::1',
  ];
  for (const host of ssrf) {
    it(`when the host is ${host}, then save and test are refused with 400 naming the host, and nothing is stored`, async () => {
      for (const path of ['/api/smtp/settings', '/api/smtp/test']) {
        const res = await api('POST', path, member.token, settings({ host }));
        assert.equal(res.status, 400, `${path}: ${res.text}`);
        assert.equal(res.body.code, 'validation_failed');
        assert.ok((res.body.error as string).includes(`host "${host}" is not allowed`), res.body.error as string);
        assert.deepEqual(res.body.details, [{ in: 'body', path: 'host', message: res.body.error }]);
      }
      const got = await api('GET', '/api/smtp/settings', member.token);
      assert.equal(got.body.host, '93.184.216.34');
    });
  }

  it('when the settings are deleted, then the answer is the original message and the global relay applies again', async () => {
    const res = await api('DELETE', '/api/smtp/settings', member.token);
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { message: 'SMTP settings removed. System will use global SMTP settings.' });
    const got = await api('GET', '/api/smtp/settings', member.token);
    assert.equal(got.body.isGlobal, true);
    const again = await api('DELETE', '/api/smtp/settings', member.token);
    assert.deepEqual(again.body, res.body, 'deleting nothing is the same answer');
  });

  it('when settings are saved and deleted, then both are in the audit log, without the password', async () => {
    await api('POST', '/api/smtp/settings', owner.token, settings({ pass: 'Owner-Audit-Pa55' }));
    await api('DELETE', '/api/smtp/settings', owner.token);
    const res = await call<{ data: { action: string; actor_email: string; target_type: string; target_id: string; details: Body | null }[] }>(
      t.apiPort,
      'GET',
      '/api/audit-logs?limit=100',
      { token: owner.token },
    );
    assert.equal(res.status, 200);
    const mine = res.body.data.filter((e) => e.action.startsWith('smtp_settings.') && e.target_id === owner.id);
    assert.deepEqual(
      mine.map((e) => e.action),
      ['smtp_settings.delete', 'smtp_settings.save'],
    );
    assert.equal(mine[1]!.actor_email, owner.email);
    assert.deepEqual(mine[1]!.details, { host: '93.184.216.34', port: 587, secure: false, user: 'me@example.test' });
    assert.ok(!res.text.includes('Owner-Audit-Pa55'));
    const memberEntries = res.body.data.filter((e) => e.action.startsWith('smtp_settings.') && e.target_id === member.id);
    assert.ok(memberEntries.some((e) => e.action === 'smtp_settings.delete'), 'the member changes are audited too');
    assert.equal(memberEntries.filter((e) => e.action === 'smtp_settings.delete').length, 1, 'deleting nothing is not a change');
  });
});

describe('per-user SMTP settings API against a real relay (ALLOW_PRIVATE_RELAY_HOSTS=true)', () => {
  let t: TestServer;
  let relay: FakeRelay;
  let stripped: FakeRelay;
  let implicit: FakeRelay;
  let user: { token: string; id: string };

  before(async () => {
    [relay, stripped, implicit] = await Promise.all([
      startFakeRelay({ tls: 'starttls', auth: RELAY_AUTH }),
      startFakeRelay({ tls: 'none', auth: RELAY_AUTH }),
      startFakeRelay({ tls: 'implicit', auth: RELAY_AUTH }),
    ]);
    t = await startTestServer({ ...UNTHROTTLED_ENV, ROLES: 'api', ALLOW_PRIVATE_RELAY_HOSTS: 'true', OUTBOUND_TLS_CA_FILE: testCertificate().caFile });
    const users = usersApi(t);
    const tenant = await users.newTenant('relay');
    const u = await users.userWithToken(tenant, 'member');
    user = { token: u.token, id: u.user.id };
  });
  after(async () => {
    await t.stop();
    await Promise.all([relay.close(), stripped.close(), implicit.close()]);
  });

  const test = (body: Body): Promise<ApiResponse<Body>> => call<Body>(t.apiPort, 'POST', '/api/smtp/test', { token: user.token, body });
  const relayBody = (r: FakeRelay, overrides: Body = {}): Body => ({ host: 'localhost', port: r.port, user: RELAY_AUTH.user, pass: RELAY_AUTH.pass, ...overrides });

  it('when the relay accepts STARTTLS and the login, then the test succeeds and nothing is saved', async () => {
    relay.clear();
    const res = await test(relayBody(relay));
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { success: true, message: 'SMTP connection test successful' });
    assert.deepEqual(
      relay.authAttempts.map((a) => [a.user, a.secure, a.success]),
      [[RELAY_AUTH.user, true, true]],
    );
    const got = await call<Body>(t.apiPort, 'GET', '/api/smtp/settings', { token: user.token });
    assert.equal(got.body.isGlobal, true);
    assert.equal(got.body.host, null, 'no RELAY_URL: nulls');
  });

  it('when the relay uses implicit TLS, then the test succeeds with secure: true', async () => {
    const res = await test(relayBody(implicit, { secure: true }));
    assert.deepEqual(res.body, { success: true, message: 'SMTP connection test successful' });
  });

  it('when the password is wrong, then the test fails with the relay reply and no password', async () => {
    const res = await test(relayBody(relay, { pass: 'Wrong-Pa55-xyz' }));
    assert.equal(res.status, 200);
    assert.equal(res.body.success, false);
    assert.match(res.body.error as string, /^SMTP connection test failed: .*535 5\.7\.8/);
    assertNoSecret(res, 'Wrong-Pa55-xyz', RELAY_AUTH.pass);
  });

  it('when the relay does not offer STARTTLS, then the test fails and the password was never sent', async () => {
    stripped.clear();
    const res = await test(relayBody(stripped));
    assert.equal(res.body.success, false);
    assert.match(res.body.error as string, /^SMTP connection test failed: .*STARTTLS/);
    assert.deepEqual(stripped.authAttempts, []);
  });

  it('when nothing listens, then the test fails with the connection error', async () => {
    const port = stripped.port;
    const closed = await startFakeRelay({ tls: 'starttls' });
    const closedPort = closed.port;
    await closed.close();
    const res = await test(relayBody(stripped, { port: closedPort }));
    assert.equal(res.body.success, false);
    assert.match(res.body.error as string, /^SMTP connection test failed: .*ECONNREFUSED/);
    assert.notEqual(port, closedPort);
  });

  it('when the relay echoes the password back, then the failure reason has it redacted', async () => {
    relay.setFailure({ stage: 'connect', code: 421, message: `4.7.0 no service for ${RELAY_AUTH.pass}` });
    try {
      const res = await test(relayBody(relay));
      assert.equal(res.body.success, false);
      assert.match(res.body.error as string, /421 4\.7\.0 no service for \[redacted\]/);
      assertNoSecret(res, RELAY_AUTH.pass);
    } finally {
      relay.setFailure(null);
    }
  });

  it('when settings are saved, then transportFor() delivers through them, caches, notices changes and forgets deletions', async () => {
    const saved = await call<Body>(t.apiPort, 'POST', '/api/smtp/settings', { token: user.token, body: relayBody(relay) });
    assert.equal(saved.status, 200, saved.text);
    const smtp = t.services.smtpSettings;
    const first = await smtp.transportFor(user.id);
    assert.ok(first);
    assert.equal(first.route, 'user-relay');
    assert.equal(await smtp.transportFor(user.id), first, 'cached');

    relay.clear();
    const raw = Buffer.from('From: a@relay.test\r\nTo: b@example.test\r\nSubject: via own relay\r\n\r\nhello\r\n');
    await first.send({ mailFrom: 'a@relay.test', rcptTo: ['b@example.test'], raw, id: 'ob-1' });
    const [got] = await relay.waitForMessages(1);
    assert.ok(got);
    assert.ok(got.raw.equals(raw));
    assert.equal(got.authUser, RELAY_AUTH.user);
    assert.equal(got.secure, true);

    // another process changing the row (same values, new version) is noticed on the next call
    await t.services.db.updateTable('smtp_settings').set({ updated_at: new Date(Date.now() + 1000) }).where('user_id', '=', user.id).execute();
    const second = await smtp.transportFor(user.id);
    assert.ok(second && second !== first);

    await call(t.apiPort, 'POST', '/api/smtp/settings', { token: user.token, body: relayBody(relay, { port: implicit.port, secure: true }) });
    const third = await smtp.transportFor(user.id);
    assert.ok(third && third !== second);

    await call(t.apiPort, 'DELETE', '/api/smtp/settings', { token: user.token });
    assert.equal(await smtp.transportFor(user.id), null);
  });
});
