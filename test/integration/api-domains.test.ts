/**
 * Domains over real HTTP against the app on an embedded PostgreSQL, with the worker role running
 * pg-boss in-process and DNS answered by a real DNS server on 127.0.0.1: CRUD, validation, roles,
 * tenant isolation, pagination, the DNS records to publish, verification (each required record
 * wrong in turn, DMARC optional, a DNS outage, a name verified elsewhere), the daily re-check,
 * an API-only process whose checks a worker-only process runs, audit entries and OpenAPI.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PgBoss } from 'pg-boss';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/core/logger.js';
import { createServer } from '../../src/server.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { startTestServer, tempDir, testEnv, type TestServer } from '../helpers/harness.js';
import { call } from '../helpers/http.js';
import type { DnsRecord, RecordKey } from '../../src/services/domain-records.js';

const MAIL_HOSTNAME = 'mx.test.local';
const PASSWORD = 'correct horse battery';
const POLL_LIMIT_MS = 20_000;

type DnsRecordBody = DnsRecord;
interface RecordCheckBody {
  status: 'ok' | 'missing' | 'mismatch' | 'error';
  host: string;
  expected: string;
  found: string[];
  required: boolean;
  detail?: string;
}
interface DomainBody {
  id: string;
  name: string;
  status: 'pending' | 'verified' | 'failed';
  dkim_selector: string;
  dns_records: DnsRecordBody[];
  dns_results: Record<RecordKey, RecordCheckBody> | null;
  status_reason: string | null;
  last_checked_at: string | null;
  verified_at: string | null;
  created_at: string;
  code?: string;
  error?: string;
  details?: unknown[];
}
interface Session {
  token: string;
  tenantId: string;
  userId: string;
  email: string;
}

let t: TestServer;
let dns: DnsServer;

before(async () => {
  dns = await startDnsServer();
  t = await startTestServer({ ROLES: 'api,smtp,worker', DNS_SERVERS: dns.address, DNS_TIMEOUT_MS: '1000', MAIL_HOSTNAME, API_RATE_LIMIT_PER_MINUTE: '100000' });
});
after(async () => {
  await t.stop();
  await dns.stop();
});

let seq = 0;
const unique = (): string => `${Date.now().toString(36)}${++seq}`;

async function signup(): Promise<Session> {
  const email = `owner-${unique()}@corp.test`;
  const res = await call<{ access_token: string; user: { id: string; tenant_id: string } }>(t.apiPort, 'POST', '/api/auth/signup', {
    body: { company_name: `Domains Co ${unique()}`, email, password: PASSWORD },
  });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return { token: res.body.access_token, tenantId: res.body.user.tenant_id, userId: res.body.user.id, email };
}

async function addDomain(s: Session, name: string): Promise<DomainBody> {
  const res = await call<DomainBody>(t.apiPort, 'POST', '/api/domains', { token: s.token, body: { name } });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body;
}

async function getDomain(s: Session, id: string): Promise<DomainBody> {
  const res = await call<DomainBody>(t.apiPort, 'GET', `/api/domains/${id}`, { token: s.token });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

/** Publishes the domain's records in the test DNS server, minus or with a replacement for some. */
function publish(records: DnsRecordBody[], change: Partial<Record<RecordKey, string | null>> = {}): void {
  for (const r of records) {
    const value = r.record in change ? change[r.record] : r.value;
    if (value === null || value === undefined) {
      dns.remove(r.host, r.type);
      continue;
    }
    if (r.type === 'MX') dns.set(r.host, 'MX', { priority: r.priority ?? 10, exchange: value });
    else dns.set(r.host, 'TXT', [value]);
  }
}

/** POST /verify, then polls GET until a check newer than the last one has been stored. */
async function verify(s: Session, id: string): Promise<DomainBody> {
  const before = await getDomain(s, id);
  const res = await call<{ id: string; status: string; message: string }>(t.apiPort, 'POST', `/api/domains/${id}/verify`, { token: s.token });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  assert.equal(res.body.id, id);
  return waitForCheck(t.apiPort, s, id, before.last_checked_at);
}

async function waitForCheck(port: number, s: Session, id: string, previous: string | null): Promise<DomainBody> {
  const deadline = Date.now() + POLL_LIMIT_MS;
  for (;;) {
    const res = await call<DomainBody>(port, 'GET', `/api/domains/${id}`, { token: s.token });
    if (res.body.last_checked_at !== null && res.body.last_checked_at !== previous) return res.body;
    if (Date.now() > deadline) assert.fail(`no DNS check stored for ${id} within ${POLL_LIMIT_MS} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function auditActions(tenantId: string, targetId: string): Promise<string[]> {
  const rows = await t.services.db.selectFrom('audit_logs').select(['action', 'created_at']).where('tenant_id', '=', tenantId).where('target_id', '=', targetId).orderBy('created_at').execute();
  return rows.map((r) => r.action);
}

describe('adding and reading domains', () => {
  let owner: Session;
  before(async () => {
    owner = await signup();
  });

  it('when an owner adds a domain, then 201 with status pending, the five records, an encrypted DKIM key and an audit entry', async () => {
    const name = `add-${unique()}.example`;
    const res = await call<DomainBody>(t.apiPort, 'POST', '/api/domains', { token: owner.token, body: { name: `  ${name.toUpperCase()}  ` } });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.name, name);
    assert.equal(res.body.status, 'pending');
    assert.match(res.body.id, /^[0-9a-f-]{36}$/);
    assert.deepEqual(res.body.dns_records.map((r) => r.record), ['mx', 'spf', 'dkim', 'dmarc', 'verification']);
    assert.equal(res.body.dns_results, null);
    assert.ok(!/PRIVATE KEY|dkim_private|verification_token/.test(res.text), 'no private key or raw columns in the response');
    const row = await t.services.db.selectFrom('domains').selectAll().where('id', '=', res.body.id).executeTakeFirstOrThrow();
    assert.equal(row.tenant_id, owner.tenantId);
    assert.match(row.dkim_private_key_enc ?? '', /^v1:/, 'the private key is sealed with SECRETS_KEY');
    assert.deepEqual(await auditActions(owner.tenantId, res.body.id), ['domain.created']);
  });

  it('when an internationalised name is added, then it is stored in its A-label form', async () => {
    const body = await addDomain(owner, `bücher-${unique()}.example`);
    assert.match(body.name, /^xn--bcher-.*\.example$/);
  });

  it('when the records are asked for, then MX, SPF, DKIM, DMARC and the token are the exact values to publish', async () => {
    const name = `records-${unique()}.example`;
    const added = await addDomain(owner, name);
    const res = await call<{ domain: string; records: DnsRecordBody[] }>(t.apiPort, 'GET', `/api/domains/${added.id}/dns-records`, { token: owner.token });
    assert.equal(res.status, 200);
    assert.equal(res.body.domain, name);
    const row = await t.services.db.selectFrom('domains').selectAll().where('id', '=', added.id).executeTakeFirstOrThrow();
    const pem = (row.dkim_public_key ?? '').replace(/-----[^-]+-----|\s/g, '');
    assert.ok(pem.length > 350, 'a 2048-bit key');
    const byKey = Object.fromEntries(res.body.records.map((r) => [r.record, r]));
    assert.deepEqual(
      { ...byKey.mx, purpose: undefined },
      { record: 'mx', type: 'MX', host: name, value: MAIL_HOSTNAME, priority: 10, required: true, purpose: undefined },
    );
    assert.equal(byKey.spf?.host, name);
    assert.equal(byKey.spf?.value, `v=spf1 mx a:${MAIL_HOSTNAME} ~all`);
    assert.equal(byKey.dkim?.host, `${row.dkim_selector}._domainkey.${name}`);
    assert.equal(byKey.dkim?.value, `v=DKIM1; k=rsa; p=${pem}`);
    assert.equal(byKey.dmarc?.host, `_dmarc.${name}`);
    assert.equal(byKey.dmarc?.value, `v=DMARC1; p=quarantine; rua=mailto:postmaster@${name}`);
    assert.equal(byKey.dmarc?.required, false);
    assert.equal(byKey.verification?.host, `_mailserver-verify.${name}`);
    assert.equal(byKey.verification?.value, `mailserver-verification=${row.verification_token}`);
    for (const r of res.body.records) assert.ok(r.purpose.length > 10, `${r.record} says what it is for`);
    assert.deepEqual(res.body.records, added.dns_records, 'the same records as the create response');
  });

  it('when a domain is read, then 200 with its status, results and records', async () => {
    const added = await addDomain(owner, `read-${unique()}.example`);
    const got = await getDomain(owner, added.id);
    assert.equal(got.id, added.id);
    assert.equal(got.status, 'pending');
    assert.equal(got.dkim_selector, added.dkim_selector);
    assert.deepEqual(got.dns_records, added.dns_records);
  });

  it('when the tenant already has the name, then 409', async () => {
    const name = `twice-${unique()}.example`;
    await addDomain(owner, name);
    const again = await call<DomainBody>(t.apiPort, 'POST', '/api/domains', { token: owner.token, body: { name } });
    assert.equal(again.status, 409);
    assert.equal(again.body.code, 'conflict');
  });

  const bad: [string, unknown][] = [
    ['an empty name', { name: '   ' }],
    ['no name', {}],
    ['a name that is not a string', { name: 42 }],
    ['a single label', { name: 'localhost' }],
    ['an underscore', { name: 'bad_name.example' }],
    ['a leading hyphen', { name: '-lead.example' }],
    ['an empty label', { name: 'a..example' }],
    ['a space', { name: 'exa mple.example' }],
    ['a label over 63 characters', { name: `${'a'.repeat(64)}.example` }],
    ['an IP address', { name: '192.0.2.1' }],
    ['a wildcard', { name: '*.example.org' }],
    ['a URL', { name: 'https://example.org/' }],
    ['a name over 253 characters', { name: `${'a'.repeat(60)}.`.repeat(5) + 'example' }],
    ['an unknown field (mass assignment)', { name: 'ok.example', status: 'verified' }],
  ];
  for (const [what, body] of bad) {
    it(`when a domain is added with ${what}, then 400 and nothing is created`, async () => {
      const count = async (): Promise<number> =>
        Number((await t.services.db.selectFrom('domains').select((eb) => eb.fn.countAll<string>().as('n')).where('tenant_id', '=', owner.tenantId).executeTakeFirstOrThrow()).n);
      const before = await count();
      const res = await call<DomainBody>(t.apiPort, 'POST', '/api/domains', { token: owner.token, body });
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.code, 'validation_failed');
      assert.equal(await count(), before);
    });
  }
});

describe('changing and deleting domains', () => {
  let owner: Session;
  before(async () => {
    owner = await signup();
  });

  it('when the DKIM key is rotated, then a new selector and key, the same name and status, and an audit entry', async () => {
    const added = await addDomain(owner, `rotate-${unique()}.example`);
    const rowBefore = await t.services.db.selectFrom('domains').selectAll().where('id', '=', added.id).executeTakeFirstOrThrow();
    const res = await call<DomainBody>(t.apiPort, 'PUT', `/api/domains/${added.id}`, { token: owner.token, body: { rotate_dkim_key: true } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.notEqual(res.body.dkim_selector, added.dkim_selector);
    assert.equal(res.body.name, added.name);
    assert.equal(res.body.status, 'pending');
    const dkim = res.body.dns_records.find((r) => r.record === 'dkim')!;
    assert.equal(dkim.host, `${res.body.dkim_selector}._domainkey.${added.name}`);
    assert.notEqual(dkim.value, added.dns_records.find((r) => r.record === 'dkim')!.value);
    const rowAfter = await t.services.db.selectFrom('domains').selectAll().where('id', '=', added.id).executeTakeFirstOrThrow();
    assert.notEqual(rowAfter.dkim_private_key_enc, rowBefore.dkim_private_key_enc);
    assert.notEqual(rowAfter.dkim_public_key, rowBefore.dkim_public_key);
    assert.deepEqual(await auditActions(owner.tenantId, added.id), ['domain.created', 'domain.updated']);
  });

  it('when a selector is given with a rotation, then it is used (lower-cased); a selector alone keeps the key', async () => {
    const added = await addDomain(owner, `selector-${unique()}.example`);
    const rotated = await call<DomainBody>(t.apiPort, 'PUT', `/api/domains/${added.id}`, { token: owner.token, body: { rotate_dkim_key: true, dkim_selector: 'Mail2030' } });
    assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
    assert.equal(rotated.body.dkim_selector, 'mail2030');
    const keyOf = (d: DomainBody): string => d.dns_records.find((r) => r.record === 'dkim')!.value;
    const moved = await call<DomainBody>(t.apiPort, 'PUT', `/api/domains/${added.id}`, { token: owner.token, body: { dkim_selector: 'mail2031' } });
    assert.equal(moved.status, 200);
    assert.equal(moved.body.dkim_selector, 'mail2031');
    assert.equal(keyOf(moved.body), keyOf(rotated.body), 'same key under the new selector');
  });

  const badChanges: [string, unknown][] = [
    ['nothing to change', {}],
    ['rotate_dkim_key false alone', { rotate_dkim_key: false }],
    ['the name (a different domain)', { name: 'other.example' }],
    ['the status', { status: 'verified' }],
    ['a selector that is not a DNS label', { dkim_selector: 'bad_selector!' }],
    ['a dotted selector', { dkim_selector: 'a.b' }],
    ['a selector over 63 characters', { dkim_selector: 'a'.repeat(64) }],
    ['rotate_dkim_key that is not a boolean', { rotate_dkim_key: 'yes' }],
  ];
  for (const [what, body] of badChanges) {
    it(`when a domain is changed with ${what}, then 400 and it is unchanged`, async () => {
      const added = await addDomain(owner, `badput-${unique()}.example`);
      const res = await call<DomainBody>(t.apiPort, 'PUT', `/api/domains/${added.id}`, { token: owner.token, body });
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.code, 'validation_failed');
      const after = await getDomain(owner, added.id);
      assert.equal(after.dkim_selector, added.dkim_selector);
      assert.deepEqual(after.dns_records, added.dns_records);
    });
  }

  it('when a rotation names the current selector, then 400 (old and new keys must be publishable side by side)', async () => {
    const added = await addDomain(owner, `samesel-${unique()}.example`);
    const res = await call<DomainBody>(t.apiPort, 'PUT', `/api/domains/${added.id}`, { token: owner.token, body: { rotate_dkim_key: true, dkim_selector: added.dkim_selector } });
    assert.equal(res.status, 400);
    assert.match(res.body.error ?? '', /new selector/);
  });

  it('when a domain without mailboxes is deleted, then 204, it is gone and the deletion is audited', async () => {
    const added = await addDomain(owner, `delete-${unique()}.example`);
    const res = await call(t.apiPort, 'DELETE', `/api/domains/${added.id}`, { token: owner.token });
    assert.equal(res.status, 204);
    assert.equal((await call(t.apiPort, 'GET', `/api/domains/${added.id}`, { token: owner.token })).status, 404);
    assert.deepEqual(await auditActions(owner.tenantId, added.id), ['domain.created', 'domain.deleted']);
  });

  it('when a domain still has mailboxes, then deleting it is refused with 409 naming how many, and nothing is removed', async () => {
    const added = await addDomain(owner, `busy-${unique()}.example`);
    for (const local of ['alice', 'bob']) {
      await t.services.accounts.createUser({ email: `${local}@${added.name}`, password: PASSWORD, tenantId: owner.tenantId });
    }
    const res = await call<DomainBody>(t.apiPort, 'DELETE', `/api/domains/${added.id}`, { token: owner.token });
    assert.equal(res.status, 409);
    assert.equal(res.body.code, 'conflict');
    assert.match(res.body.error ?? '', /2 mailboxes/);
    assert.deepEqual(res.body.details, [{ mailboxes: 2 }]);
    assert.equal((await getDomain(owner, added.id)).id, added.id);
    const boxes = await t.services.db.selectFrom('mailboxes').select('id').where('domain_id', '=', added.id).execute();
    assert.equal(boxes.length, 2);
  });
});

describe('who may do what', () => {
  let owner: Session;
  let member: Session;
  let other: Session;
  let domain: DomainBody;

  before(async () => {
    owner = await signup();
    other = await signup();
    domain = await addDomain(owner, `guarded-${unique()}.example`);
    const email = `member-${unique()}@corp.test`;
    await t.services.accounts.createUser({ email, password: PASSWORD, role: 'member', tenantId: owner.tenantId });
    const login = await call<{ access_token: string; user: { id: string } }>(t.apiPort, 'POST', '/api/auth/login', { body: { email, password: PASSWORD } });
    assert.equal(login.status, 200);
    member = { token: login.body.access_token, tenantId: owner.tenantId, userId: login.body.user.id, email };
  });

  const routes = (id: string): [string, string, unknown][] => [
    ['GET', '/api/domains', undefined],
    ['POST', '/api/domains', { name: `x-${unique()}.example` }],
    ['GET', `/api/domains/${id}`, undefined],
    ['PUT', `/api/domains/${id}`, { rotate_dkim_key: true }],
    ['DELETE', `/api/domains/${id}`, undefined],
    ['GET', `/api/domains/${id}/dns-records`, undefined],
    ['POST', `/api/domains/${id}/verify`, undefined],
  ];

  it('when no token is sent, then every domain route answers 401', async () => {
    for (const [method, path, body] of routes(domain.id)) {
      const res = await call<DomainBody>(t.apiPort, method, path, { body });
      assert.equal(res.status, 401, `${method} ${path}`);
      assert.equal(res.body.code, 'unauthorized');
    }
  });

  it('when a member calls, then every domain route answers 403 and nothing changes', async () => {
    for (const [method, path, body] of routes(domain.id)) {
      const res = await call<DomainBody>(t.apiPort, method, path, { token: member.token, body });
      assert.equal(res.status, 403, `${method} ${path}`);
      assert.equal(res.body.code, 'forbidden');
    }
    const after = await getDomain(owner, domain.id);
    assert.equal(after.dkim_selector, domain.dkim_selector);
  });

  it('when an admin calls, then domain routes are allowed', async () => {
    const email = `admin-${unique()}@corp.test`;
    await t.services.accounts.createUser({ email, password: PASSWORD, role: 'admin', tenantId: owner.tenantId });
    const login = await call<{ access_token: string }>(t.apiPort, 'POST', '/api/auth/login', { body: { email, password: PASSWORD } });
    const res = await call(t.apiPort, 'GET', `/api/domains/${domain.id}`, { token: login.body.access_token });
    assert.equal(res.status, 200);
  });

  it("when another tenant reads, changes, deletes, verifies or asks for the records of a domain, then 404 every time and it is untouched", async () => {
    const jobsBefore = await auditActions(owner.tenantId, domain.id);
    for (const [method, path, body] of routes(domain.id).slice(2)) {
      const res = await call<DomainBody>(t.apiPort, method, path, { token: other.token, body });
      assert.equal(res.status, 404, `${method} ${path}`);
      assert.equal(res.body.code, 'not_found');
    }
    const list = await call<{ data: DomainBody[] }>(t.apiPort, 'GET', '/api/domains', { token: other.token });
    assert.ok(!list.body.data.some((d) => d.id === domain.id), 'not in the other tenant\'s list');
    const after = await getDomain(owner, domain.id);
    assert.equal(after.dkim_selector, domain.dkim_selector);
    assert.equal(after.last_checked_at, null, 'no check was queued');
    assert.deepEqual(await auditActions(owner.tenantId, domain.id), jobsBefore);
  });

  it('when the id is malformed or unknown, then 404 on every route that takes one', async () => {
    for (const id of ['not-a-uuid', '123', `${domain.id}x`, '00000000-0000-0000-0000-000000000000']) {
      for (const [method, path, body] of routes(id).slice(2)) {
        const res = await call<DomainBody>(t.apiPort, method, path, { token: owner.token, body });
        assert.equal(res.status, 404, `${method} ${path}`);
        assert.equal(res.body.code, 'not_found');
      }
    }
  });

  it('when verify is sent a body with fields, then 400', async () => {
    const res = await call<DomainBody>(t.apiPort, 'POST', `/api/domains/${domain.id}/verify`, { token: owner.token, body: { force: true } });
    assert.equal(res.status, 400);
  });
});

describe('listing', () => {
  it('when a tenant has 5 domains and asks for 2 at a time, then 3 pages, newest first, each domain once', async () => {
    const owner = await signup();
    const added: string[] = [];
    for (let i = 0; i < 5; i++) added.push((await addDomain(owner, `page${i}-${unique()}.example`)).id);
    const seen: string[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    do {
      const q: string = cursor ? `?limit=2&cursor=${encodeURIComponent(cursor)}` : '?limit=2';
      const res = await call<{ data: DomainBody[]; next_cursor: string | null }>(t.apiPort, 'GET', `/api/domains${q}`, { token: owner.token });
      assert.equal(res.status, 200);
      sizes.push(res.body.data.length);
      seen.push(...res.body.data.map((d) => d.id));
      cursor = res.body.next_cursor;
    } while (cursor);
    assert.deepEqual(sizes, [2, 2, 1]);
    assert.deepEqual(seen, [...added].reverse());
  });

  it('when the list is asked for without a limit, then all domains and next_cursor null', async () => {
    const owner = await signup();
    await addDomain(owner, `one-${unique()}.example`);
    const res = await call<{ data: DomainBody[]; next_cursor: string | null }>(t.apiPort, 'GET', '/api/domains', { token: owner.token });
    assert.equal(res.body.data.length, 1);
    assert.equal(res.body.next_cursor, null);
  });

  const badQueries: [string, string][] = [
    ['a cursor that is not one', '?cursor=garbage'],
    ['a limit of 0', '?limit=0'],
    ['a limit over the maximum', '?limit=201'],
    ['a limit that is not a number', '?limit=many'],
    ['an unknown parameter', '?status=verified'],
  ];
  for (const [what, q] of badQueries) {
    it(`when the list is asked for with ${what}, then 400`, async () => {
      const owner = await signup();
      const res = await call<DomainBody>(t.apiPort, 'GET', `/api/domains${q}`, { token: owner.token });
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.code, 'validation_failed');
    });
  }
});

describe('DNS verification', () => {
  let owner: Session;
  before(async () => {
    owner = await signup();
  });

  it('when every record is published, then verified, each record ok, the lookups went to our DNS server, and the change is audited', async () => {
    const added = await addDomain(owner, `good-${unique()}.example`);
    publish(added.dns_records);
    dns.clearQueries();
    const checked = await verify(owner, added.id);
    assert.equal(checked.status, 'verified', JSON.stringify(checked.dns_results));
    for (const key of ['mx', 'spf', 'dkim', 'dmarc', 'verification'] as const) assert.equal(checked.dns_results?.[key].status, 'ok', key);
    assert.deepEqual(checked.dns_results?.mx.found, [`10 ${MAIL_HOSTNAME}`]);
    assert.equal(checked.status_reason, null);
    assert.ok(checked.verified_at && checked.last_checked_at);
    assert.ok(dns.received(added.name, 'MX') && dns.received(`_mailserver-verify.${added.name}`, 'TXT'));
    const actions = await auditActions(owner.tenantId, added.id);
    assert.deepEqual(actions, ['domain.created', 'domain.verification.requested', 'domain.verification.changed']);
    const change = await t.services.db.selectFrom('audit_logs').select('details').where('target_id', '=', added.id).where('action', '=', 'domain.verification.changed').executeTakeFirstOrThrow();
    const details = change.details as { name: string; old_status: string; new_status: string };
    assert.deepEqual([details.name, details.old_status, details.new_status], [added.name, 'pending', 'verified']);
  });

  const wrong: [RecordKey, string, string | null, 'missing' | 'mismatch'][] = [
    ['mx', 'points elsewhere', 'mx.elsewhere.example', 'mismatch'],
    ['mx', 'is missing', null, 'missing'],
    ['spf', 'does not authorize us', 'v=spf1 a:other.example -all', 'mismatch'],
    ['spf', 'is missing', null, 'missing'],
    ['dkim', 'carries another key', 'v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwrong', 'mismatch'],
    ['dkim', 'is missing', null, 'missing'],
    ['verification', 'holds another token', 'mailserver-verification=not-the-token', 'mismatch'],
    ['verification', 'is missing', null, 'missing'],
  ];
  for (const [key, what, value, status] of wrong) {
    it(`when the ${key} record ${what}, then failed with ${key} named as ${status} and the others ok`, async () => {
      const added = await addDomain(owner, `bad-${key}-${unique()}.example`);
      publish(added.dns_records, { [key]: value });
      const checked = await verify(owner, added.id);
      assert.equal(checked.status, 'failed');
      assert.equal(checked.dns_results?.[key].status, status);
      for (const k of ['mx', 'spf', 'dkim', 'dmarc', 'verification'] as const) if (k !== key) assert.equal(checked.dns_results?.[k].status, 'ok', k);
      assert.match(checked.status_reason ?? '', new RegExp(key));
      assert.equal(checked.verified_at, null);
      assert.ok(checked.dns_results?.[key].detail);
    });
  }

  it('when only DMARC is missing, then verified, with DMARC reported missing', async () => {
    const added = await addDomain(owner, `nodmarc-${unique()}.example`);
    publish(added.dns_records, { dmarc: null });
    const checked = await verify(owner, added.id);
    assert.equal(checked.status, 'verified');
    assert.equal(checked.dns_results?.dmarc.status, 'missing');
    assert.equal(checked.dns_results?.dmarc.required, false);
  });

  it('when a verified domain loses a record and is checked again, then failed, verified_at cleared and the change audited', async () => {
    const added = await addDomain(owner, `lost-${unique()}.example`);
    publish(added.dns_records);
    const first = await verify(owner, added.id);
    assert.equal(first.status, 'verified');
    const again = await verify(owner, added.id);
    assert.equal(again.status, 'verified');
    assert.equal(again.verified_at, first.verified_at, 'a passing re-check keeps when the verified period began');
    dns.remove(added.name, 'MX');
    const lost = await verify(owner, added.id);
    assert.equal(lost.status, 'failed');
    assert.equal(lost.verified_at, null);
    const changes = await t.services.db.selectFrom('audit_logs').select('details').where('target_id', '=', added.id).where('action', '=', 'domain.verification.changed').orderBy('created_at').execute();
    assert.deepEqual(
      changes.map((c) => [(c.details as { old_status: string }).old_status, (c.details as { new_status: string }).new_status]),
      [['pending', 'verified'], ['verified', 'failed']],
    );
  });

  it('when the DNS server fails (SERVFAIL), then the status does not change and the results say DNS did not answer', async () => {
    const added = await addDomain(owner, `outage-${unique()}.example`);
    publish(added.dns_records);
    dns.respond('servfail');
    try {
      const checked = await verify(owner, added.id);
      assert.equal(checked.status, 'pending');
      assert.equal(checked.dns_results?.mx.status, 'error');
      assert.match(checked.status_reason ?? '', /DNS did not answer/);
    } finally {
      dns.respond('answer');
    }
  });

  it('when a name is pending in one tenant, then another may add it; once verified by one, no other may add it or verify it', async () => {
    const name = `shared-${unique()}.example`;
    const a = await signup();
    const b = await signup();
    const c = await signup();
    const inA = await addDomain(a, name);
    const inB = await addDomain(b, name);
    assert.equal(inB.status, 'pending');
    // both tenants publish their records (two tokens, two DKIM keys: TXT sets hold both)
    publish(inA.dns_records);
    const txtOf = (d: DomainBody, key: RecordKey): DnsRecordBody => d.dns_records.find((r) => r.record === key)!;
    dns.set(txtOf(inA, 'verification').host, 'TXT', [txtOf(inA, 'verification').value, txtOf(inB, 'verification').value]);
    if (txtOf(inA, 'dkim').host === txtOf(inB, 'dkim').host) dns.set(txtOf(inA, 'dkim').host, 'TXT', [txtOf(inA, 'dkim').value, txtOf(inB, 'dkim').value]);
    else dns.set(txtOf(inB, 'dkim').host, 'TXT', [txtOf(inB, 'dkim').value]);
    assert.equal((await verify(a, inA.id)).status, 'verified');
    const third = await call<DomainBody>(t.apiPort, 'POST', '/api/domains', { token: c.token, body: { name } });
    assert.equal(third.status, 409);
    assert.match(third.body.error ?? '', /verified by another/);
    const bChecked = await verify(b, inB.id);
    assert.equal(bChecked.status, 'failed');
    for (const k of ['mx', 'spf', 'dkim', 'verification'] as const) assert.equal(bChecked.dns_results?.[k].status, 'ok', k);
    assert.match(bChecked.status_reason ?? '', /verified by another organisation/);
  });

  it('when the daily re-check runs, then every domain is checked again and a lost record fails its domain', async () => {
    const added = await addDomain(owner, `daily-${unique()}.example`);
    publish(added.dns_records);
    const verified = await verify(owner, added.id);
    assert.equal(verified.status, 'verified');
    dns.set(added.name, 'MX', { priority: 10, exchange: 'mx.elsewhere.example' });
    // another process (this test) triggers the scheduled job by hand; the server's worker runs it
    const boss = new PgBoss({ connectionString: t.config.DATABASE_URL!, max: 2, supervise: false, schedule: false });
    boss.on('error', () => undefined);
    await boss.start();
    try {
      const schedules = await boss.getSchedules('domain-recheck');
      assert.equal(schedules.length, 1);
      assert.equal(schedules[0]?.cron, '17 3 * * *');
      assert.ok(await boss.send('domain-recheck', {}));
    } finally {
      await boss.stop({ graceful: false });
    }
    const rechecked = await waitForCheck(t.apiPort, owner, added.id, verified.last_checked_at);
    assert.equal(rechecked.status, 'failed');
    assert.equal(rechecked.dns_results?.mx.status, 'mismatch');
  });
});

describe('processes without the worker role', () => {
  it('when an API-only process queues a check, then it waits until a worker-only process on the same database runs it', async () => {
    const api = await startTestServer({ ROLES: 'api', DNS_SERVERS: dns.address, DNS_TIMEOUT_MS: '1000', MAIL_HOSTNAME });
    let worker: Awaited<ReturnType<typeof createServer>> | null = null;
    try {
      const email = `split-${unique()}@corp.test`;
      const s = await call<{ access_token: string; user: { id: string; tenant_id: string } }>(api.apiPort, 'POST', '/api/auth/signup', {
        body: { company_name: `Split ${unique()}`, email, password: PASSWORD },
      });
      const session: Session = { token: s.body.access_token, tenantId: s.body.user.tenant_id, userId: s.body.user.id, email };
      const added = await call<DomainBody>(api.apiPort, 'POST', '/api/domains', { token: session.token, body: { name: `split-${unique()}.example` } });
      assert.equal(added.status, 201);
      publish(added.body.dns_records);
      const queued = await call(api.apiPort, 'POST', `/api/domains/${added.body.id}/verify`, { token: session.token });
      assert.equal(queued.status, 202);
      await new Promise((r) => setTimeout(r, 2500));
      const waiting = await call<DomainBody>(api.apiPort, 'GET', `/api/domains/${added.body.id}`, { token: session.token });
      assert.equal(waiting.body.last_checked_at, null, 'no worker in the API-only process');
      const config = loadConfig({ env: testEnv(tempDir(), api.config.DATABASE_URL!, { ROLES: 'worker', DNS_SERVERS: dns.address, DNS_TIMEOUT_MS: '1000', MAIL_HOSTNAME }), envFile: null });
      worker = await createServer(config, createLogger(config.LOG_LEVEL));
      assert.equal(worker.ports.api, undefined);
      const checked = await waitForCheck(api.apiPort, session, added.body.id, null);
      assert.equal(checked.status, 'verified');
    } finally {
      await worker?.stop();
      await api.stop();
    }
  });
});

describe('OpenAPI', () => {
  it('when the document is fetched, then every domain route is in it', async () => {
    const res = await call<{ paths: Record<string, Record<string, unknown>> }>(t.apiPort, 'GET', '/api/openapi.json');
    assert.equal(res.status, 200);
    const expected = [
      ['get', '/api/domains'],
      ['post', '/api/domains'],
      ['get', '/api/domains/{id}'],
      ['put', '/api/domains/{id}'],
      ['delete', '/api/domains/{id}'],
      ['get', '/api/domains/{id}/dns-records'],
      ['post', '/api/domains/{id}/verify'],
    ] as const;
    for (const [method, path] of expected) assert.ok(res.body.paths[path]?.[method], `${method} ${path} missing`);
  });
});
