/**
 * API platform concerns over real HTTP: the audit log endpoint (roles, pagination, tenant
 * scoping), per-caller rate limits, the sign-up switch and sign-up rate limit, and the OpenAPI
 * document covering every route the Express app actually serves.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/harness.js';
import { call } from '../helpers/http.js';

interface Session {
  access_token: string;
  user: { id: string; tenant_id: string };
}

let seq = 0;
async function signup(port: number, email = `u${++seq}-${Date.now()}@corp.test`): Promise<Session> {
  const res = await call<Session>(port, 'POST', '/api/auth/signup', { body: { company_name: `Co ${seq} ${Date.now()}`, email, password: 'password-123' } });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body;
}

describe('audit log endpoint', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ LOGIN_MAX_FAILURES_PER_IP: '1000' });
  });
  after(async () => {
    await t.stop();
  });

  it('when an owner lists the audit log, then entries are newest first, paginated, and only their tenant\'s', async () => {
    const email = `audit-${Date.now()}@corp.test`;
    const owner = await signup(t.apiPort, email);
    const other = await signup(t.apiPort);
    for (let i = 0; i < 3; i++) await call(t.apiPort, 'POST', '/api/auth/login', { body: { email, password: 'password-123' } });
    await call(t.apiPort, 'POST', '/api/auth/login', { body: { email, password: 'wrong-password' } });

    const first = await call<{ data: { action: string; ip: string; created_at: string; actor_email: string }[]; next_cursor: string | null }>(
      t.apiPort,
      'GET',
      '/api/audit-logs?limit=2',
      { token: owner.access_token },
    );
    assert.equal(first.status, 200);
    assert.equal(first.body.data.length, 2);
    assert.equal(first.body.data[0]!.action, 'auth.login.failed');
    assert.ok(first.body.next_cursor);
    const seen = [...first.body.data];
    let cursor: string | null = first.body.next_cursor;
    while (cursor) {
      const next: { status: number; body: { data: typeof seen; next_cursor: string | null } } = await call<{ data: typeof seen; next_cursor: string | null }>(t.apiPort, 'GET', `/api/audit-logs?limit=2&cursor=${cursor}`, { token: owner.access_token });
      assert.equal(next.status, 200);
      seen.push(...next.body.data);
      cursor = next.body.next_cursor;
    }
    assert.deepEqual(
      seen.map((e) => e.action),
      ['auth.login.failed', 'auth.login', 'auth.login', 'auth.login', 'auth.signup'],
    );
    const times = seen.map((e) => Date.parse(e.created_at));
    assert.deepEqual(times, [...times].sort((a, b) => b - a));

    const theirs = await call<{ data: { actor_email: string }[] }>(t.apiPort, 'GET', '/api/audit-logs', { token: other.access_token });
    assert.ok(theirs.body.data.every((e) => e.actor_email !== email), 'another tenant never sees these entries');
  });

  it('when several entries share one timestamp, then paging one at a time still returns each exactly once', async () => {
    const owner = await signup(t.apiPort);
    const at = new Date('2026-01-01T00:00:00.123Z');
    await t.services.db
      .insertInto('audit_logs')
      .values(['a', 'b', 'c', 'd'].map((x) => ({ tenant_id: owner.user.tenant_id, action: `same.ms.${x}`, created_at: at })))
      .execute();
    const actions: string[] = [];
    let cursor: string | null = null;
    do {
      const res: { body: { data: { action: string }[]; next_cursor: string | null } } = await call<{ data: { action: string }[]; next_cursor: string | null }>(
        t.apiPort,
        'GET',
        `/api/audit-logs?limit=1${cursor ? `&cursor=${cursor}` : ''}`,
        { token: owner.access_token },
      );
      actions.push(...res.body.data.map((d) => d.action));
      cursor = res.body.next_cursor;
    } while (cursor);
    assert.deepEqual(actions.filter((a) => a.startsWith('same.ms.')).sort(), ['same.ms.a', 'same.ms.b', 'same.ms.c', 'same.ms.d']);
    assert.equal(actions.length, new Set(actions).size, 'no entry twice');
  });

  it('when a member lists the audit log, then 403; without a token, 401', async () => {
    const owner = await signup(t.apiPort);
    const domain = `members-${Date.now()}.test`;
    await t.services.accounts.addDomain(owner.user.tenant_id, domain);
    await t.services.accounts.createUser({ email: `m@${domain}`, password: 'password-123', role: 'member', tenantId: owner.user.tenant_id });
    const member = await call<Session>(t.apiPort, 'POST', '/api/auth/login', { body: { email: `m@${domain}`, password: 'password-123' } });
    assert.equal((await call(t.apiPort, 'GET', '/api/audit-logs', { token: member.body.access_token })).status, 403);
    assert.equal((await call(t.apiPort, 'GET', '/api/audit-logs')).status, 401);
  });

  const badQueries: [string, string][] = [
    ['a malformed cursor', '?cursor=not-a-cursor'],
    ['a limit of 0', '?limit=0'],
    ['a limit over the maximum', '?limit=100000'],
    ['an unknown query parameter', '?sort=asc'],
  ];
  for (const [name, query] of badQueries) {
    it(`when the audit log is asked with ${name}, then 400`, async () => {
      const owner = await signup(t.apiPort);
      const res = await call<{ code: string }>(t.apiPort, 'GET', `/api/audit-logs${query}`, { token: owner.access_token });
      assert.equal(res.status, 400);
      assert.equal(res.body.code, 'validation_failed');
    });
  }
});

describe('limits and switches', () => {
  it('when a caller exceeds API_RATE_LIMIT_PER_MINUTE, then 429 with Retry-After', async () => {
    const t = await startTestServer({ API_RATE_LIMIT_PER_MINUTE: '5' });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await call(t.apiPort, 'GET', '/api/auth/me')).status);
      assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429]);
      const limited = await call(t.apiPort, 'GET', '/api/auth/me');
      assert.ok(Number(limited.headers.get('retry-after')) >= 1);
      assert.equal((await call(t.apiPort, 'GET', '/healthz')).status, 200, 'health endpoints are not rate limited');
    } finally {
      await t.stop();
    }
  });

  it('when SIGNUP_ENABLED=false, then signup answers 403 signup_disabled and creates nothing', async () => {
    const t = await startTestServer({ SIGNUP_ENABLED: 'false' });
    try {
      const res = await call<{ code: string }>(t.apiPort, 'POST', '/api/auth/signup', { body: { company_name: 'X', email: 'x@corp.test', password: 'password-123' } });
      assert.equal(res.status, 403);
      assert.equal(res.body.code, 'signup_disabled');
      const n = await t.services.db.selectFrom('tenants').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
      assert.equal(Number(n.n), 0);
    } finally {
      await t.stop();
    }
  });

  it('when one IP signs up more than SIGNUP_RATE_LIMIT_PER_HOUR times, then 429', async () => {
    const t = await startTestServer({ SIGNUP_RATE_LIMIT_PER_HOUR: '2' });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        statuses.push((await call(t.apiPort, 'POST', '/api/auth/signup', { body: { company_name: `Co ${i}`, email: `s${i}@corp.test`, password: 'password-123' } })).status);
      }
      assert.deepEqual(statuses, [201, 201, 429]);
    } finally {
      await t.stop();
    }
  });
});

describe('OpenAPI', () => {
  it('when the document is generated, then every /api route the app serves is in it', async () => {
    const t = await startTestServer();
    try {
      const doc = await call<{ paths: Record<string, Record<string, unknown>> }>(t.apiPort, 'GET', '/api/openapi.json');
      const app = t.server.api!;
      const stack = (app as unknown as { router: { stack: { route?: { path: string; methods: Record<string, boolean> } }[] } }).router.stack;
      const served = stack
        .filter((l) => l.route && l.route.path.startsWith('/api/') && !l.route.path.startsWith('/api/docs') && l.route.path !== '/api/openapi.json')
        .flatMap((l) => Object.keys(l.route!.methods).map((m) => [m, l.route!.path] as const));
      assert.ok(served.length >= 6, `expected the API routes, found ${served.length}`);
      for (const [method, path] of served) {
        const key = path.replace(/:([A-Za-z_]+)/g, '{$1}');
        assert.ok(doc.body.paths[key]?.[method], `${method.toUpperCase()} ${path} is served but not in /api/openapi.json`);
      }
    } finally {
      await t.stop();
    }
  });
});
