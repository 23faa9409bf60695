/**
 * /api/users over real HTTP against the app on an embedded PostgreSQL: creation (mailbox with the
 * standard folders, quota, domains of other tenants), every validation rule, roles (members 403,
 * only owners grant owner/admin or change owners/admins), tenant isolation (another tenant's ids
 * are 404), updates, pagination, audit entries and the OpenAPI document. Passwords, suspension,
 * deletion and quota usage over SMTP are in api-users-lifecycle.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/harness.js';
import { call, type ApiResponse } from '../helpers/http.js';
import { PASSWORD, UNTHROTTLED_ENV, usersApi, type ApiTenant, type UserBody } from '../helpers/users-api.js';

let t: TestServer;
let h: ReturnType<typeof usersApi>;
let a: ApiTenant;
let b: ApiTenant;
let seq = 0;

before(async () => {
  t = await startTestServer(UNTHROTTLED_ENV);
  h = usersApi(t);
  a = await h.newTenant('a');
  b = await h.newTenant('b');
});

after(async () => {
  await t?.stop();
});

const api = <T = UserBody>(method: string, path: string, token?: string, body?: unknown): Promise<ApiResponse<T>> => h.api<T>(method, path, token, body);
const address = (tenant: ApiTenant, local?: string): string => h.address(tenant, local);
const createUser = (tenant: ApiTenant, body?: Record<string, unknown>, token?: string): Promise<UserBody> => h.createUser(tenant, body, token);

async function userCount(): Promise<number> {
  const row = await t.services.db.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  return Number(row.n);
}

describe('creating and reading users', () => {
  it('when an owner creates a user on a tenant domain, then 201 with a mailbox holding the standard folders and the default quota', async () => {
    const email = address(a, 'Mixed.Case');
    const res = await api('POST', '/api/users', a.token, { email, password: PASSWORD, name: 'Mia Member' });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.email, email.toLowerCase());
    assert.equal(res.body.tenant_id, a.id);
    assert.equal(res.body.name, 'Mia Member');
    assert.equal(res.body.role, 'member');
    assert.equal(res.body.status, 'active');
    assert.ok(!res.text.includes('password'), 'no password hash in the response');
    assert.deepEqual({ ...res.body.mailbox, id: undefined }, { id: undefined, address: email.toLowerCase(), quota_mb: 1024, used_bytes: 0 });
    const folders = await t.services.db.selectFrom('folders').select(['name', 'special_use']).where('mailbox_id', '=', res.body.mailbox!.id).orderBy('name').execute();
    assert.deepEqual(
      folders.map((f) => `${f.name}:${f.special_use}`),
      ['Drafts:drafts', 'INBOX:inbox', 'Junk:junk', 'Sent:sent', 'Trash:trash'],
    );
    const got = await api('GET', `/api/users/${res.body.id}`, a.token);
    assert.equal(got.status, 200);
    assert.deepEqual(got.body, res.body);
  });

  it('when quota_mb is given, then the mailbox has that quota', async () => {
    const user = await createUser(a, { quota_mb: 5 });
    assert.equal(user.mailbox?.quota_mb, 5);
    const row = await t.services.db.selectFrom('mailboxes').select('quota_bytes').where('id', '=', user.mailbox.id).executeTakeFirstOrThrow();
    assert.equal(row.quota_bytes, 5 * 1024 * 1024);
  });

  it('when the address is on no hosted domain, then the user is created without a mailbox', async () => {
    const user = await createUser(a, { email: `outsider${++seq}@elsewhere.example` });
    assert.equal(user.mailbox, null);
  });

  it("when the address is on another tenant's domain, then 409 naming the domain and nothing is created", async () => {
    const before = await userCount();
    const res = await api('POST', '/api/users', a.token, { email: address(b), password: PASSWORD });
    assert.equal(res.status, 409);
    assert.equal(res.body.code, 'conflict');
    assert.match(res.body.error ?? '', new RegExp(`domain ${b.domain.replace(/\./g, '\\.')} belongs to another tenant`));
    assert.equal(await userCount(), before);
  });

  it('when the email is already a user (of any tenant), then 409', async () => {
    const user = await createUser(a);
    const res = await api('POST', '/api/users', a.token, { email: user.email.toUpperCase(), password: PASSWORD });
    assert.equal(res.status, 409);
    const other = await api('POST', '/api/users', b.token, { email: a.ownerEmail, password: PASSWORD });
    assert.equal(other.status, 409);
  });

  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['no email', { email: undefined }, /email/],
    ['a malformed email', { email: 'not-an-email' }, /email/],
    ['an email with a routing character', { email: 'a%b@example.test' }, /email|address/],
    ['no password', { password: undefined }, /password/],
    ['a password under 8 characters', { password: 'short' }, /at least 8 characters/],
    ['a password over 72 bytes', { password: 'é'.repeat(37) }, /at most 72 bytes/],
    ['an empty name', { name: '   ' }, /name/],
    ['an unknown role', { role: 'superuser' }, /role/],
    ['a quota of 0 MB', { quota_mb: 0 }, /quota_mb: must be at least 1 MB/],
    ['a fractional quota', { quota_mb: 1.5 }, /quota_mb/],
    ['a quota given as a string', { quota_mb: '10' }, /quota_mb/],
    ['an unknown field', { tenant_id: '00000000-0000-0000-0000-000000000000' }, /tenant_id|unrecognized/i],
  ];
  for (const [name, override, message] of bad) {
    it(`when the new user has ${name}, then 400 and nothing is created`, async () => {
      const before = await userCount();
      const res = await api('POST', '/api/users', a.token, { email: address(a), password: PASSWORD, ...override });
      assert.equal(res.status, 400, res.text);
      assert.equal(res.body.code, 'validation_failed');
      assert.match(res.body.error ?? '', message);
      assert.equal(await userCount(), before);
    });
  }

  it('when an id is malformed or unknown, then 404', async () => {
    for (const id of ['not-a-uuid', '1', '00000000-0000-0000-0000-000000000000']) {
      const res = await api('GET', `/api/users/${id}`, a.token);
      assert.equal(res.status, 404, id);
      assert.equal(res.body.code, 'not_found');
    }
  });
});

describe('roles', () => {
  it('when an admin creates users, then members are allowed and admins or owners are 403; an owner may create both', async () => {
    const admin = await h.userWithToken(a, 'admin');
    assert.equal((await createUser(a, {}, admin.token)).role, 'member');
    for (const role of ['admin', 'owner']) {
      const res = await api('POST', '/api/users', admin.token, { email: address(a), password: PASSWORD, role });
      assert.equal(res.status, 403, role);
      assert.equal(res.body.code, 'forbidden');
    }
    assert.equal((await createUser(a, { role: 'admin' })).role, 'admin');
    assert.equal((await createUser(a, { role: 'owner' })).role, 'owner');
  });

  it('when an admin changes an owner or another admin, then 403; changing a member or itself is allowed', async () => {
    const admin = await h.userWithToken(a, 'admin');
    const otherAdmin = await createUser(a, { role: 'admin' });
    const member = await createUser(a);
    for (const target of [a.ownerId, otherAdmin.id]) {
      assert.equal((await api('PUT', `/api/users/${target}`, admin.token, { name: 'X' })).status, 403);
      assert.equal((await api('PUT', `/api/users/${target}/password`, admin.token, { password: 'new password 1' })).status, 403);
      assert.equal((await api('PUT', `/api/users/${target}/status`, admin.token, { status: 'suspended' })).status, 403);
      assert.equal((await api('DELETE', `/api/users/${target}`, admin.token)).status, 403);
    }
    assert.equal((await api('PUT', `/api/users/${member.id}`, admin.token, { name: 'Renamed' })).status, 200);
    assert.equal((await api('PUT', `/api/users/${admin.user.id}`, admin.token, { name: 'Me' })).status, 200);
    const promote = await api('PUT', `/api/users/${member.id}`, admin.token, { role: 'admin' });
    assert.equal(promote.status, 403);
    assert.match(promote.body.error ?? '', /only an owner may grant the admin role/);
  });

  it('when no token is sent, then every route answers 401', async () => {
    const id = a.ownerId;
    const routes: [string, string, unknown?][] = [
      ['GET', '/api/users'],
      ['POST', '/api/users', { email: address(a), password: PASSWORD }],
      ['GET', `/api/users/${id}`],
      ['PUT', `/api/users/${id}`, { name: 'x' }],
      ['PUT', `/api/users/${id}/password`, { password: 'whatever 123' }],
      ['PUT', `/api/users/${id}/status`, { status: 'suspended' }],
      ['DELETE', `/api/users/${id}`],
    ];
    for (const [method, path, body] of routes) {
      const res = await api(method, path, undefined, body);
      assert.equal(res.status, 401, `${method} ${path}`);
      assert.equal(res.body.code, 'unauthorized');
    }
  });

  it('when a member calls any management route, then 403 and nothing changes', async () => {
    const member = await h.userWithToken(a, 'member');
    const other = await createUser(a);
    const routes: [string, string, unknown?][] = [
      ['GET', '/api/users'],
      ['POST', '/api/users', { email: address(a), password: PASSWORD }],
      ['GET', `/api/users/${other.id}`],
      ['PUT', `/api/users/${other.id}`, { name: 'x' }],
      ['PUT', `/api/users/${member.user.id}`, { role: 'owner' }],
      ['PUT', `/api/users/${other.id}/password`, { password: 'whatever 123' }],
      ['PUT', `/api/users/${other.id}/status`, { status: 'suspended' }],
      ['DELETE', `/api/users/${other.id}`],
    ];
    for (const [method, path, body] of routes) {
      const res = await api(method, path, member.token, body);
      assert.equal(res.status, 403, `${method} ${path}`);
      assert.equal(res.body.code, 'forbidden');
    }
    const after = await api('GET', `/api/users/${other.id}`, a.token);
    assert.deepEqual(after.body, other);
  });

  it('when an admin is demoted, then its still-valid access token no longer manages users', async () => {
    const admin = await h.userWithToken(a, 'admin');
    assert.equal((await api('GET', '/api/users', admin.token)).status, 200);
    assert.equal((await api('PUT', `/api/users/${admin.user.id}`, a.token, { role: 'member' })).status, 200);
    assert.equal((await api('GET', '/api/users', admin.token)).status, 403);
  });

  it('when the caller was deleted or suspended, then its access token is refused with 401', async () => {
    const admin = await h.userWithToken(a, 'admin');
    assert.equal((await api('PUT', `/api/users/${admin.user.id}/status`, a.token, { status: 'suspended' })).status, 200);
    assert.equal((await api('GET', '/api/users', admin.token)).status, 401);
    assert.equal((await api('DELETE', `/api/users/${admin.user.id}`, a.token)).status, 204);
    assert.equal((await api('GET', '/api/users', admin.token)).status, 401);
  });
});

describe('tenant isolation', () => {
  it("when tenant B reads, changes or deletes a user of tenant A, then 404 and the user is unchanged", async () => {
    const victim = await createUser(a, { name: 'Victim' });
    const routes: [string, string, unknown?][] = [
      ['GET', `/api/users/${victim.id}`],
      ['PUT', `/api/users/${victim.id}`, { name: 'Pwned', quota_mb: 1 }],
      ['PUT', `/api/users/${victim.id}/password`, { password: 'attacker password' }],
      ['PUT', `/api/users/${victim.id}/status`, { status: 'suspended' }],
      ['DELETE', `/api/users/${victim.id}`],
    ];
    for (const [method, path, body] of routes) {
      const res = await api(method, path, b.token, body);
      assert.equal(res.status, 404, `${method} ${path}: ${res.text}`);
      assert.equal(res.body.code, 'not_found');
      assert.equal(res.body.error, 'no such user');
    }
    assert.deepEqual((await api('GET', `/api/users/${victim.id}`, a.token)).body, victim);
    assert.equal((await h.login(victim.email)).status, 200, 'the password is unchanged');
  });

  it("when tenant B lists users, then none of tenant A's appear", async () => {
    const res = await api<{ data: UserBody[] }>('GET', '/api/users?limit=200', b.token);
    assert.equal(res.status, 200);
    assert.ok(res.body.data.length >= 1);
    assert.ok(res.body.data.every((u) => u.tenant_id === b.id));
  });
});

describe('updating users', () => {
  it('when an owner changes name, role and quota, then 200 with the new values, stored', async () => {
    const user = await createUser(a, { name: 'Old' });
    const res = await api('PUT', `/api/users/${user.id}`, a.token, { name: 'New Name', role: 'admin', quota_mb: 7 });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.name, 'New Name');
    assert.equal(res.body.role, 'admin');
    assert.equal(res.body.mailbox?.quota_mb, 7);
    const again = await api('GET', `/api/users/${user.id}`, a.token);
    assert.deepEqual(again.body, res.body);
    const cleared = await api('PUT', `/api/users/${user.id}`, a.token, { name: null });
    assert.equal(cleared.body.name, null);
  });

  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['an empty body', {}, /nothing to change/],
    ['a quota of 0 MB', { quota_mb: 0 }, /quota_mb: must be at least 1 MB/],
    ['a negative quota', { quota_mb: -5 }, /quota_mb/],
    ['a quota over the maximum', { quota_mb: 10_000_001 }, /quota_mb: must be at most/],
    ['an unknown role', { role: 'root' }, /role/],
    ['an empty name', { name: '' }, /name/],
    ['an email (not changeable)', { email: 'new@x.test' }, /email|unrecognized/i],
    ['a status (its own route)', { status: 'suspended' }, /status|unrecognized/i],
  ];
  for (const [name, body, message] of bad) {
    it(`when the update has ${name}, then 400 and nothing changes`, async () => {
      const user = await createUser(a, { name: 'Same' });
      const res = await api('PUT', `/api/users/${user.id}`, a.token, body);
      assert.equal(res.status, 400, res.text);
      assert.equal(res.body.code, 'validation_failed');
      assert.match(res.body.error ?? '', message);
      assert.deepEqual((await api('GET', `/api/users/${user.id}`, a.token)).body, user);
    });
  }

  it('when a quota is set for a user without a mailbox, then 409', async () => {
    const user = await createUser(a, { email: `nobox${++seq}@elsewhere.example` });
    const res = await api('PUT', `/api/users/${user.id}`, a.token, { quota_mb: 10 });
    assert.equal(res.status, 409);
    assert.match(res.body.error ?? '', /no mailbox/);
  });
});

describe('listing users', () => {
  it('when listing with a limit, then pages follow next_cursor newest first until null, each user once, with mailbox and quota', async () => {
    const d = await h.newTenant('d');
    const created = [await createUser(d), await createUser(d, { quota_mb: 3 }), await createUser(d, { email: `nobox${++seq}@elsewhere.example` })];
    const seen: UserBody[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: ApiResponse<{ data: UserBody[]; next_cursor: string | null }> = await api('GET', `/api/users?limit=2${cursor ? `&cursor=${cursor}` : ''}`, d.token);
      assert.equal(res.status, 200, res.text);
      assert.ok(res.body.data.length <= 2);
      seen.push(...res.body.data);
      cursor = res.body.next_cursor;
      pages++;
    } while (cursor);
    assert.equal(pages, 2);
    assert.deepEqual(
      seen.map((u) => u.id),
      [...created.map((u) => u.id)].reverse().concat(d.ownerId),
    );
    assert.equal(seen[1]!.mailbox?.quota_mb, 3);
    assert.equal(seen[1]!.mailbox?.used_bytes, 0);
    assert.equal(seen[0]!.mailbox, null);
    assert.ok(seen.every((u) => !('password_hash' in u)));
  });

  it('when the cursor or limit is bad, or a parameter unknown, then 400', async () => {
    for (const q of ['cursor=garbage', `cursor=${Buffer.from('["x","y"]').toString('base64url')}`, 'limit=0', 'limit=201', 'limit=abc', 'role=admin']) {
      const res = await api('GET', `/api/users?${q}`, a.token);
      assert.equal(res.status, 400, q);
      assert.equal(res.body.code, 'validation_failed');
    }
  });
});

describe('audit', () => {
  it('when users are created, changed, re-passworded, suspended and deleted, then each change is in the audit log, with no secret', async () => {
    const e = await h.newTenant('e');
    const user = await createUser(e, { password: 'first secret pw' });
    await api('PUT', `/api/users/${user.id}`, e.token, { name: 'Audited', quota_mb: 9 });
    await api('PUT', `/api/users/${user.id}/password`, e.token, { password: 'second secret pw' });
    await api('PUT', `/api/users/${user.id}/status`, e.token, { status: 'suspended' });
    await api('DELETE', `/api/users/${user.id}`, e.token);
    const res = await api<{ data: { action: string; target_id: string; actor_user_id: string; ip: string; details: Record<string, unknown> }[] }>('GET', '/api/audit-logs?limit=50', e.token);
    assert.equal(res.status, 200);
    const mine = res.body.data.filter((r) => r.target_id === user.id);
    assert.deepEqual(mine.map((r) => r.action).reverse(), ['user.create', 'user.update', 'user.password', 'user.status', 'user.delete']);
    assert.ok(mine.every((r) => r.actor_user_id === e.ownerId && /127\.0\.0\.1/.test(r.ip)));
    assert.deepEqual(mine.find((r) => r.action === 'user.update')?.details.changes, { name: { from: null, to: 'Audited' }, quota_mb: 9 });
    assert.deepEqual(mine.find((r) => r.action === 'user.status')?.details, { email: user.email, from: 'active', to: 'suspended' });
    assert.ok(!res.text.includes('secret pw') && !res.text.includes('$2b$'), 'no password or hash in the audit log');
  });
});

describe('OpenAPI', () => {
  it('when the document is fetched, then every users route is in it', async () => {
    const res = await call<{ paths: Record<string, Record<string, unknown>> }>(t.apiPort, 'GET', '/api/openapi.json');
    const routes = ['get /api/users', 'post /api/users', 'get /api/users/{id}', 'put /api/users/{id}', 'delete /api/users/{id}', 'put /api/users/{id}/password', 'put /api/users/{id}/status'];
    for (const r of routes) {
      const [method, path] = r.split(' ') as [string, string];
      assert.ok(res.body.paths[path]?.[method], `${r} missing from the OpenAPI document`);
    }
  });
});
