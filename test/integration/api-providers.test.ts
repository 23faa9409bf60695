/**
 * /api/providers against the real server, with every ESP API pointed at the local fake ESP
 * (helpers/fake-esp.ts) and SMTP providers at a real local relay: the response shape per type,
 * credentials never in any response or audit entry and sealed in the database, PUT keeping
 * credentials it is not sent, each class of bad input per type refused with nothing changed,
 * unique names (409), tenant isolation (404), members refused (403), the credentials test
 * against each provider (success and failure), audit entries, and transportsFor() as the
 * delivery queue uses it (order, enabled only, cache and change detection).
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startFakeEsp, FAKE_ESP_DEFAULTS, type FakeEsp } from '../helpers/fake-esp.js';
import { startFakeRelay, type FakeRelay } from '../helpers/fake-relay.js';
import { startTestServer, type TestServer } from '../helpers/harness.js';
import { call, type ApiResponse } from '../helpers/http.js';
import { testCertificate } from '../helpers/test-tls.js';
import { UNTHROTTLED_ENV, usersApi, type ApiTenant } from '../helpers/users-api.js';

type Body = Record<string, unknown>;

const RELAY_AUTH = { user: 'relay-login', pass: 'Relay-Secret-Pa55' };
const WEBHOOK_KEY = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
const SECRETS = [
  FAKE_ESP_DEFAULTS.sendgrid.apiKey,
  FAKE_ESP_DEFAULTS.ses.secretAccessKey,
  FAKE_ESP_DEFAULTS.ses.accessKeyId,
  FAKE_ESP_DEFAULTS.mailgun.apiKey,
  'mg-webhook-signing-secret',
  FAKE_ESP_DEFAULTS.graph.clientSecret,
  RELAY_AUTH.pass,
];

let t: TestServer;
let fake: FakeEsp;
let relay: FakeRelay;
let users: ReturnType<typeof usersApi>;
let tenant: ApiTenant;
let other: ApiTenant;
let memberToken: string;
let seq = 0;

function bodies(relayPort: number): Record<string, Body> {
  return {
    sendgrid: { provider_type: 'sendgrid', api_key: FAKE_ESP_DEFAULTS.sendgrid.apiKey, webhook_public_key: WEBHOOK_KEY },
    ses: {
      provider_type: 'ses',
      access_key_id: FAKE_ESP_DEFAULTS.ses.accessKeyId,
      secret_access_key: FAKE_ESP_DEFAULTS.ses.secretAccessKey,
      region: FAKE_ESP_DEFAULTS.ses.region,
      configuration_set: 'tenant-events',
      sns_topic_arn: 'arn:aws:sns:eu-west-1:123456789012:ses-events',
    },
    mailgun: { provider_type: 'mailgun', api_key: FAKE_ESP_DEFAULTS.mailgun.apiKey, webhook_signing_key: 'mg-webhook-signing-secret', domain: 'MG.Sender.Test' },
    msgraph: { provider_type: 'msgraph', tenant_id: FAKE_ESP_DEFAULTS.graph.tenantId, client_id: FAKE_ESP_DEFAULTS.graph.clientId, client_secret: FAKE_ESP_DEFAULTS.graph.clientSecret, sender: 'mailer@example.test' },
    smtp: { provider_type: 'smtp', host: '127.0.0.1', port: relayPort, user: RELAY_AUTH.user, pass: RELAY_AUTH.pass },
  };
}

function api(method: string, path: string, token: string | undefined, body?: unknown): Promise<ApiResponse<Body>> {
  return call<Body>(t.apiPort, method, path, { token, body });
}

function assertNoSecret(res: ApiResponse<unknown>): void {
  for (const secret of SECRETS) assert.ok(!res.text.includes(secret), `the response must not contain ${secret}: ${res.text}`);
}

async function create(type: string, extra: Body = {}, token = tenant.token): Promise<Body> {
  const res = await api('POST', '/api/providers', token, { name: `${type}-${++seq}`, ...bodies(relay.port)[type], ...extra });
  assert.equal(res.status, 201, res.text);
  return res.body;
}

async function providerCount(): Promise<number> {
  const row = await t.services.db.selectFrom('providers').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
  return Number(row.n);
}

before(async () => {
  fake = await startFakeEsp();
  relay = await startFakeRelay({ tls: 'starttls', auth: RELAY_AUTH });
  t = await startTestServer({
    ...UNTHROTTLED_ENV,
    ROLES: 'api',
    SENDGRID_API_URL: fake.url,
    MAILGUN_API_URL: fake.url,
    MAILGUN_EU_API_URL: fake.url,
    SES_API_URL: fake.url,
    MSGRAPH_API_URL: fake.url,
    MSGRAPH_LOGIN_URL: fake.url,
    ALLOW_PRIVATE_RELAY_HOSTS: 'true',
    OUTBOUND_TLS_CA_FILE: testCertificate().caFile,
    OUTBOUND_TIMEOUT: '5s',
  });
  users = usersApi(t);
  tenant = await users.newTenant('esp');
  other = await users.newTenant('espother');
  memberToken = (await users.userWithToken(tenant, 'member')).token;
});

after(async () => {
  await t.stop();
  await relay.close();
  await fake.close();
});

describe('creating and reading providers', () => {
  const expected: Record<string, { settings: Body; credentials_set: string[] }> = {
    sendgrid: { settings: { webhook_public_key: WEBHOOK_KEY }, credentials_set: ['api_key'] },
    ses: { settings: { region: 'eu-west-1', configuration_set: 'tenant-events', sns_topic_arn: 'arn:aws:sns:eu-west-1:123456789012:ses-events' }, credentials_set: ['access_key_id', 'secret_access_key'] },
    mailgun: { settings: { domain: 'mg.sender.test', region: 'us' }, credentials_set: ['api_key', 'webhook_signing_key'] },
    msgraph: { settings: { tenant_id: FAKE_ESP_DEFAULTS.graph.tenantId, client_id: FAKE_ESP_DEFAULTS.graph.clientId, sender: 'mailer@example.test' }, credentials_set: ['client_secret'] },
    smtp: { settings: { host: '127.0.0.1', secure: false, user: RELAY_AUTH.user }, credentials_set: ['pass'] },
  };
  for (const type of Object.keys(expected)) {
    it(`when a ${type} provider is created, then the answer has the settings flat, the names of the credentials set and never a secret; GET shows the same`, async () => {
      const created = await api('POST', '/api/providers', tenant.token, { name: `${type}-shape`, ...bodies(relay.port)[type] });
      assert.equal(created.status, 201, created.text);
      assertNoSecret(created);
      const { id, created_at, updated_at, ...rest } = created.body;
      assert.match(String(id), /^[0-9a-f-]{36}$/);
      assert.ok(Date.parse(String(created_at)) > 0 && Date.parse(String(updated_at)) > 0);
      const settings = type === 'smtp' ? { ...expected[type]!.settings, port: relay.port } : expected[type]!.settings;
      assert.deepEqual(rest, { name: `${type}-shape`, provider_type: type, enabled: true, priority: 100, ...settings, credentials_set: expected[type]!.credentials_set });

      const got = await api('GET', `/api/providers/${String(id)}`, tenant.token);
      assert.equal(got.status, 200);
      assert.deepEqual(got.body, created.body);
      assertNoSecret(got);

      const row = await t.services.db.selectFrom('providers').selectAll().where('id', '=', String(id)).executeTakeFirstOrThrow();
      for (const secret of SECRETS) {
        assert.ok(!row.credentials_enc.includes(secret), 'credentials are sealed');
        assert.ok(!JSON.stringify(row.settings).includes(secret), 'settings hold no secret');
      }
    });
  }

  it('when the tenant lists its providers, then they come newest first with a cursor, without secrets', async () => {
    const res = await api('GET', '/api/providers?limit=2', tenant.token);
    assert.equal(res.status, 200);
    const data = res.body.data as Body[];
    assert.equal(data.length, 2);
    assert.ok(typeof res.body.next_cursor === 'string');
    assertNoSecret(res);
    const all = await api('GET', '/api/providers?limit=200', tenant.token);
    assertNoSecret(all);
    const names = (all.body.data as Body[]).map((p) => p.name);
    assert.ok(names.includes('sendgrid-shape') && names.includes('smtp-shape'));
  });

  it('when a provider name is taken in the tenant, then 409; another tenant may use it', async () => {
    await create('sendgrid', { name: 'shared-name' });
    const count = await providerCount();
    const dup = await api('POST', '/api/providers', tenant.token, { name: 'shared-name', ...bodies(relay.port).mailgun });
    assert.equal(dup.status, 409, dup.text);
    assert.equal(dup.body.code, 'conflict');
    assert.equal(await providerCount(), count);
    await create('mailgun', { name: 'shared-name' }, other.token);
  });
});

describe('bad input, per type', () => {
  const cases: [string, Body, RegExp][] = [
    ['no provider_type', { provider_type: undefined, api_key: 'k' }, /provider_type/],
    ['an unknown provider_type', { provider_type: 'postmark', api_key: 'k' }, /provider_type/],
    ['a field of another type (strict)', { provider_type: 'sendgrid', api_key: 'k', domain: 'mg.example.com' }, /domain/],
    ['a base URL (never from tenants)', { provider_type: 'sendgrid', api_key: 'k', api_url: 'http://169.254.169.254' }, /api_url/],
    ['sendgrid without api_key', { provider_type: 'sendgrid' }, /api_key/],
    ['sendgrid with a webhook key that is not a public key', { provider_type: 'sendgrid', api_key: 'k', webhook_public_key: 'bm90IGEga2V5' }, /webhook_public_key/],
    ['ses without secret_access_key', { provider_type: 'ses', access_key_id: 'AKIAFAKEFAKEFAKE0001', region: 'eu-west-1' }, /secret_access_key/],
    ['ses with a bad region', { provider_type: 'ses', access_key_id: 'AKIAFAKEFAKEFAKE0001', secret_access_key: 's', region: 'Europe' }, /region/],
    ['ses with a bad access key id', { provider_type: 'ses', access_key_id: 'short', secret_access_key: 's', region: 'eu-west-1' }, /access_key_id/],
    ['ses with a bad topic ARN', { provider_type: 'ses', access_key_id: 'AKIAFAKEFAKEFAKE0001', secret_access_key: 's', region: 'eu-west-1', sns_topic_arn: 'topic' }, /sns_topic_arn/],
    ['mailgun with region asia', { provider_type: 'mailgun', api_key: 'k', domain: 'mg.example.com', region: 'asia' }, /region/],
    ['mailgun with a domain that is a URL', { provider_type: 'mailgun', api_key: 'k', domain: 'https://evil.test/x' }, /domain/],
    ['msgraph with a client_id that is not a GUID', { provider_type: 'msgraph', tenant_id: 'contoso.onmicrosoft.com', client_id: 'app', client_secret: 's' }, /client_id/],
    ['msgraph with a tenant_id holding a path', { provider_type: 'msgraph', tenant_id: '../../evil', client_id: FAKE_ESP_DEFAULTS.graph.clientId, client_secret: 's' }, /tenant_id/],
    ['msgraph with a sender that is not an address', { provider_type: 'msgraph', tenant_id: 'contoso.onmicrosoft.com', client_id: FAKE_ESP_DEFAULTS.graph.clientId, client_secret: 's', sender: 'nobody' }, /sender/],
    ['smtp with port 0', { provider_type: 'smtp', host: 'smtp.example.com', port: 0 }, /port/],
    ['smtp with a host holding a scheme', { provider_type: 'smtp', host: 'smtp://x.example.com', port: 587 }, /host/],
    ['smtp with a user and no password', { provider_type: 'smtp', host: 'smtp.example.com', port: 587, user: 'u' }, /pass: is required when user is set/],
    ['a name with a colon', { name: 'a:b', provider_type: 'sendgrid', api_key: 'k' }, /name/],
    ['priority that is not a whole number', { provider_type: 'sendgrid', api_key: 'k', priority: 1.5 }, /priority/],
  ];
  for (const [what, body, pattern] of cases) {
    it(`when the body has ${what}, then 400 validation_failed naming the field, and nothing is created`, async () => {
      const count = await providerCount();
      const res = await api('POST', '/api/providers', tenant.token, { name: `bad-${++seq}`, ...body });
      assert.equal(res.status, 400, res.text);
      assert.equal(res.body.code, 'validation_failed');
      assert.match(String(res.body.error), pattern);
      assert.equal(await providerCount(), count);
    });
  }
});

describe('changing providers', () => {
  it('when PUT sends only a priority, then the credentials are kept (the test still passes) and credentials_set is unchanged', async () => {
    const p = await create('sendgrid');
    const res = await api('PUT', `/api/providers/${String(p.id)}`, tenant.token, { provider_type: 'sendgrid', priority: 5, enabled: false });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.priority, 5);
    assert.equal(res.body.enabled, false);
    assert.deepEqual(res.body.credentials_set, ['api_key']);
    assert.equal(res.body.webhook_public_key, WEBHOOK_KEY, 'settings not sent are kept too');
    assert.ok(Date.parse(String(res.body.updated_at)) >= Date.parse(String(p.updated_at)));
    const test = await api('POST', `/api/providers/${String(p.id)}/test`, tenant.token);
    assert.deepEqual(test.body, { success: true, message: 'SendGrid connection test successful' });
  });

  it('when PUT sends a new credential, then it replaces the old one (a wrong key fails the test); null clears an optional setting', async () => {
    const p = await create('sendgrid');
    const res = await api('PUT', `/api/providers/${String(p.id)}`, tenant.token, { provider_type: 'sendgrid', api_key: 'SG.wrong-key', webhook_public_key: null });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.webhook_public_key, undefined);
    assertNoSecret(res);
    assert.ok(!res.text.includes('SG.wrong-key'));
    const test = await api('POST', `/api/providers/${String(p.id)}/test`, tenant.token);
    assert.equal(test.status, 200);
    assert.equal(test.body.success, false);
    assert.match(String(test.body.error), /^SendGrid connection test failed: SendGrid 401: /);
  });

  it('when PUT tries to change the type, clear a required field, send a field of another type or rename onto a taken name, then it is refused and nothing changes', async () => {
    const p = await create('mailgun');
    await create('mailgun', { name: 'taken-by-sibling' });
    const before = await t.services.db.selectFrom('providers').selectAll().where('id', '=', String(p.id)).executeTakeFirstOrThrow();
    const attempts: [Body, number, RegExp][] = [
      [{ provider_type: 'sendgrid', api_key: 'k' }, 400, /provider_type cannot change/],
      [{ provider_type: 'mailgun', domain: null }, 400, /domain/],
      [{ provider_type: 'mailgun', api_key: null }, 400, /api_key/],
      [{ provider_type: 'mailgun', client_secret: 'x' }, 400, /client_secret/],
      [{ provider_type: 'mailgun', region: 'mars' }, 400, /region/],
      [{ provider_type: 'mailgun', name: 'taken-by-sibling' }, 409, /already exists/],
    ];
    for (const [body, status, pattern] of attempts) {
      const res = await api('PUT', `/api/providers/${String(p.id)}`, tenant.token, body);
      assert.equal(res.status, status, `${JSON.stringify(body)}: ${res.text}`);
      assert.match(String(res.body.error), pattern);
    }
    const afterRow = await t.services.db.selectFrom('providers').selectAll().where('id', '=', String(p.id)).executeTakeFirstOrThrow();
    assert.deepEqual(afterRow, before);
  });

  it('when a provider is deleted, then 204 and it is gone', async () => {
    const p = await create('ses');
    const del = await api('DELETE', `/api/providers/${String(p.id)}`, tenant.token);
    assert.equal(del.status, 204);
    assert.equal((await api('GET', `/api/providers/${String(p.id)}`, tenant.token)).status, 404);
    assert.equal((await api('DELETE', `/api/providers/${String(p.id)}`, tenant.token)).status, 404);
  });
});

describe('access', () => {
  it("when another tenant's owner uses an id, then every route answers 404; a malformed id is 404 too", async () => {
    const p = await create('sendgrid');
    const path = `/api/providers/${String(p.id)}`;
    for (const [method, url, body] of [
      ['GET', path, undefined],
      ['PUT', path, { provider_type: 'sendgrid', priority: 1 }],
      ['DELETE', path, undefined],
      ['POST', `${path}/test`, undefined],
      ['GET', '/api/providers/not-an-id', undefined],
    ] as const) {
      const res = await api(method, url, other.token, body);
      assert.equal(res.status, 404, `${method} ${url}: ${res.text}`);
    }
    const theirs = await api('GET', '/api/providers?limit=200', other.token);
    assert.ok(!(theirs.body.data as Body[]).some((x) => x.id === p.id));
    assert.equal((await api('GET', path, tenant.token)).status, 200, 'still there for its tenant');
  });

  it('when a member calls any provider route, then 403; without a token, 401', async () => {
    const p = await create('sendgrid');
    const path = `/api/providers/${String(p.id)}`;
    for (const [method, url, body] of [
      ['GET', '/api/providers', undefined],
      ['POST', '/api/providers', { name: 'by-member', ...bodies(relay.port).sendgrid }],
      ['GET', path, undefined],
      ['PUT', path, { provider_type: 'sendgrid', priority: 1 }],
      ['DELETE', path, undefined],
      ['POST', `${path}/test`, undefined],
    ] as const) {
      assert.equal((await api(method, url, memberToken, body)).status, 403, `${method} ${url}`);
      assert.equal((await api(method, url, undefined, body)).status, 401, `${method} ${url}`);
    }
  });
});

describe('credentials test', () => {
  for (const type of ['sendgrid', 'ses', 'mailgun', 'msgraph', 'smtp']) {
    it(`when a ${type} provider's credentials are right, then the test succeeds against the provider`, async () => {
      const p = await create(type);
      const res = await api('POST', `/api/providers/${String(p.id)}/test`, tenant.token);
      assert.equal(res.status, 200);
      assert.equal(res.body.success, true, res.text);
      assert.match(String(res.body.message), /connection test successful$/);
    });
  }

  it('when credentials are wrong or the provider is down, then success is false with the reason', async () => {
    const ses = await create('ses', { secret_access_key: 'wrong-secret' });
    const sesRes = await api('POST', `/api/providers/${String(ses.id)}/test`, tenant.token);
    assert.match(String(sesRes.body.error), /^SES connection test failed: SES 403: SignatureDoesNotMatch/);
    const graph = await create('msgraph', { client_secret: 'wrong-secret' });
    const graphRes = await api('POST', `/api/providers/${String(graph.id)}/test`, tenant.token);
    assert.match(String(graphRes.body.error), /^Microsoft Graph connection test failed: .*Invalid client secret/);
    const smtp = await create('smtp', { pass: 'wrong-pass' });
    const smtpRes = await api('POST', `/api/providers/${String(smtp.id)}/test`, tenant.token);
    assert.equal(smtpRes.body.success, false);
    assert.match(String(smtpRes.body.error), /^SMTP connection test failed: /);
    const mailgun = await create('mailgun');
    fake.fail('mailgun.domain', 503, 'maintenance');
    try {
      const res = await api('POST', `/api/providers/${String(mailgun.id)}/test`, tenant.token);
      assert.deepEqual(res.body, { success: false, error: 'Mailgun connection test failed: Mailgun 503: maintenance' });
    } finally {
      fake.clearFailures();
    }
  });
});

describe('audit', () => {
  it('when providers are created, changed, tested and deleted, then each is audited without secret values', async () => {
    const p = await create('mailgun', { name: 'audited' });
    await api('PUT', `/api/providers/${String(p.id)}`, tenant.token, { provider_type: 'mailgun', api_key: 'key-new-secret-value', priority: 7 });
    await api('POST', `/api/providers/${String(p.id)}/test`, tenant.token);
    await api('DELETE', `/api/providers/${String(p.id)}`, tenant.token);
    const res = await api('GET', '/api/audit-logs?limit=200', tenant.token);
    const entries = (res.body.data as Body[]).filter((e) => e.target_id === p.id);
    assert.deepEqual(entries.map((e) => e.action).reverse(), ['provider.created', 'provider.updated', 'provider.tested', 'provider.deleted']);
    const updated = entries.find((e) => e.action === 'provider.updated')!;
    assert.deepEqual(updated.details, { name: 'audited', changed: ['priority'], credentials_changed: ['api_key'] });
    assert.equal(entries[0]!.actor_email, tenant.ownerEmail);
    assertNoSecret(res);
    assert.ok(!res.text.includes('key-new-secret-value'));
  });
});

describe('transportsFor (the delivery queue)', () => {
  it('when the queue asks for a tenant, then it gets the enabled providers by priority then age, cached until one changes', async () => {
    const fresh = await users.newTenant('esproutes');
    const low = await create('sendgrid', { name: 'second', priority: 20 }, fresh.token);
    await create('mailgun', { name: 'first', priority: 10 }, fresh.token);
    await create('ses', { name: 'off', priority: 1, enabled: false }, fresh.token);
    await create('msgraph', { name: 'third', priority: 20 }, fresh.token);
    const routes = await t.services.providers.transportsFor(fresh.id);
    assert.deepEqual(
      routes.map((r) => r.route),
      ['provider:mailgun:first', 'provider:sendgrid:second', 'provider:msgraph:third'],
    );
    const again = await t.services.providers.transportsFor(fresh.id);
    assert.equal(again[1], routes[1], 'the same transport while nothing changed');

    await api('PUT', `/api/providers/${String(low.id)}`, fresh.token, { provider_type: 'sendgrid', priority: 5 });
    const changed = await t.services.providers.transportsFor(fresh.id);
    assert.equal(changed[0]!.route, 'provider:sendgrid:second');
    assert.notEqual(changed[0], routes[1], 'a changed provider gets a new transport');

    fake.reset();
    await changed[0]!.send({ mailFrom: 'alice@example.com', rcptTo: ['bob@dest.test'], raw: Buffer.from('From: alice@example.com\r\nTo: bob@dest.test\r\nSubject: hi\r\n\r\nhello\r\n'), id: '0f8a3c2e-5b7d-4e1f-9a6b-2c3d4e5f6a7b' });
    assert.equal(fake.calls('sendgrid.send')[0]?.status, 202, 'the transport sends with the stored key');
  });

  it('when stored credentials cannot be decrypted, then that provider is skipped and the others still route', async () => {
    const fresh = await users.newTenant('espbroken');
    const broken = await create('sendgrid', { name: 'broken', priority: 1 }, fresh.token);
    await create('mailgun', { name: 'fine', priority: 2 }, fresh.token);
    await t.services.db.updateTable('providers').set({ credentials_enc: 'v1:AAAA:AAAA:AAAA' }).where('id', '=', String(broken.id)).execute();
    const routes = await t.services.providers.transportsFor(fresh.id);
    assert.deepEqual(
      routes.map((r) => r.route),
      ['provider:mailgun:fine'],
    );
  });
});

describe('OpenAPI', () => {
  it('when the document is read, then every provider route is in it', async () => {
    const res = await call<{ paths: Record<string, Record<string, unknown>> }>(t.apiPort, 'GET', '/api/openapi.json');
    assert.deepEqual(Object.keys(res.body.paths['/api/providers'] ?? {}).sort(), ['get', 'post']);
    assert.deepEqual(Object.keys(res.body.paths['/api/providers/{id}'] ?? {}).sort(), ['delete', 'get', 'put']);
    assert.deepEqual(Object.keys(res.body.paths['/api/providers/{id}/test'] ?? {}), ['post']);
  });
});
