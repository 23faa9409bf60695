/**
 * REST API foundation and auth over real HTTP against the app on an embedded PostgreSQL:
 * security headers, CORS, body limits, error shape, signup/login/refresh/logout/me, every
 * class of bad token, refresh rotation and reuse detection, lockout and its expiry, audit
 * entries, and the OpenAPI document covering every route.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import jwt from 'jsonwebtoken';
import { startTestServer, type TestServer } from '../helpers/harness.js';
import { call } from '../helpers/http.js';

let t: TestServer;
const PASSWORD = 'correct horse battery';

interface AuthBody {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  user: { id: string; email: string; role: string; tenant_id: string };
  tenant: { id: string; name: string };
}

before(async () => {
  // per-IP lockout is tested on its own server: here every test shares 127.0.0.1. The lockout
  // window is also the window failures are counted in: 6 s leaves room for five bcrypt checks on
  // a loaded machine (with 2 s, slow checks let the first failures expire before the fifth)
  t = await startTestServer({ LOGIN_MAX_FAILURES: '5', LOGIN_MAX_FAILURES_PER_IP: '1000', LOGIN_LOCKOUT_MS: '6000', CORS_ORIGINS: 'https://webmail.example.com', API_BODY_LIMIT_BYTES: '2048' });
});
after(async () => {
  await t.stop();
});

let n = 0;
async function signup(overrides: Record<string, unknown> = {}): Promise<{ status: number; body: AuthBody & { code?: string; error?: string } }> {
  n++;
  return call<AuthBody & { code?: string; error?: string }>(t.apiPort, 'POST', '/api/auth/signup', {
    body: { company_name: `Company ${n} ${Date.now()}`, email: `owner${n}-${Date.now()}@corp.test`, password: PASSWORD, ...overrides },
  });
}

describe('API foundation', () => {
  it('when any response is sent, then it carries each required security header', async () => {
    const res = await call(t.apiPort, 'GET', '/healthz');
    assert.equal(res.headers.get('strict-transport-security'), 'max-age=31536000; includeSubDomains');
    assert.equal(res.headers.get('x-frame-options'), 'DENY');
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(res.headers.get('content-security-policy'), "default-src 'self'");
    assert.equal(res.headers.get('referrer-policy'), 'strict-origin-when-cross-origin');
    assert.equal(res.headers.get('permissions-policy'), 'geolocation=(), microphone=(), camera=()');
    assert.match(res.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
  });

  it('when an allowed origin calls, then CORS allows it; another origin gets no CORS headers', async () => {
    const ok = await call(t.apiPort, 'OPTIONS', '/api/auth/login', { headers: { origin: 'https://webmail.example.com', 'access-control-request-method': 'POST' } });
    assert.equal(ok.headers.get('access-control-allow-origin'), 'https://webmail.example.com');
    const other = await call(t.apiPort, 'OPTIONS', '/api/auth/login', { headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    assert.equal(other.headers.get('access-control-allow-origin'), null);
  });

  it('when the body is not JSON, then 400 JSON in the error shape', async () => {
    const res = await call(t.apiPort, 'POST', '/api/auth/login', { rawBody: '{"email": ' });
    assert.equal(res.status, 400);
    assert.deepEqual(res.body, { error: 'request body is not valid JSON', code: 'bad_request' });
  });

  it('when the body is over the limit, then 413 JSON, not an HTML page', async () => {
    const res = await call(t.apiPort, 'POST', '/api/auth/login', { body: { email: 'a@b.test', password: 'x'.repeat(5000) } });
    assert.equal(res.status, 413);
    assert.equal((res.body as { code: string }).code, 'payload_too_large');
  });

  it('when a route does not exist, then 404 JSON', async () => {
    const res = await call(t.apiPort, 'GET', '/api/nothing-here');
    assert.equal(res.status, 404);
    assert.equal((res.body as { code: string }).code, 'not_found');
  });

  it('when the OpenAPI document is fetched, then it is 3.1 and holds every registered route', async () => {
    const res = await call<{ openapi: string; paths: Record<string, Record<string, unknown>> }>(t.apiPort, 'GET', '/api/openapi.json');
    assert.equal(res.status, 200);
    assert.equal(res.body.openapi, '3.1.0');
    const registered = ['post /api/auth/signup', 'post /api/auth/login', 'post /api/auth/refresh', 'post /api/auth/logout', 'get /api/auth/me'];
    for (const r of registered) {
      const [method, path] = r.split(' ') as [string, string];
      assert.ok(res.body.paths[path.replace(/:([a-z_]+)/g, '{$1}')]?.[method], `${r} missing from the OpenAPI document`);
    }
    const docs = await call(t.apiPort, 'GET', '/api/docs');
    assert.equal(docs.status, 200);
    assert.match(docs.text, /mailserver REST API/);
  });
});

describe('signup', () => {
  it('when a company signs up, then 201 with the owner, the tenant and a token pair', async () => {
    const res = await signup({ company_name: 'Acme Signup', email: 'Boss@Acme-Signup.test' });
    assert.equal(res.status, 201);
    assert.equal(res.body.user.email, 'boss@acme-signup.test');
    assert.equal(res.body.user.role, 'owner');
    assert.equal(res.body.tenant.name, 'Acme Signup');
    assert.equal(res.body.user.tenant_id, res.body.tenant.id);
    assert.ok(res.body.access_token && res.body.refresh_token);
    assert.ok(!JSON.stringify(res.body).includes('password'), 'no password hash in the response');
  });

  it('when the email is taken, then 409 and no second tenant', async () => {
    const first = await signup({ email: 'taken@corp.test' });
    assert.equal(first.status, 201);
    const before = await t.services.db.selectFrom('tenants').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    const again = await signup({ email: 'taken@corp.test' });
    assert.equal(again.status, 409);
    assert.equal(again.body.code, 'conflict');
    const afterCount = await t.services.db.selectFrom('tenants').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    assert.equal(Number(afterCount.n), Number(before.n));
  });

  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['a missing company name', { company_name: undefined }, /company_name/],
    ['an empty company name', { company_name: '  ' }, /company_name/],
    ['a bad email', { email: 'not-an-email' }, /email/],
    ['a password under 8 characters', { password: 'short' }, /at least 8 characters/],
    ['a password over 72 bytes', { password: 'é'.repeat(37) }, /at most 72 bytes/],
    ['an unknown field (mass assignment)', { role: 'admin' }, /role/],
  ];
  for (const [name, overrides, message] of bad) {
    it(`when signup has ${name}, then 400 and nothing is created`, async () => {
      const before = await t.services.db.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
      const res = await signup(overrides);
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.code, 'validation_failed');
      assert.match(res.body.error ?? '', message);
      const afterCount = await t.services.db.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
      assert.equal(Number(afterCount.n), Number(before.n));
    });
  }
});

describe('login, tokens, refresh, logout, me', () => {
  let owner: AuthBody;
  const email = `login-${Date.now()}@corp.test`;

  before(async () => {
    const res = await signup({ email });
    owner = res.body;
  });

  it('when the password is right, then 200 with a 15-minute HS256 token carrying sub, tenant_id, email and role', async () => {
    const res = await call<AuthBody>(t.apiPort, 'POST', '/api/auth/login', { body: { email, password: PASSWORD } });
    assert.equal(res.status, 200);
    assert.equal(res.body.expires_in, 900);
    const decoded = jwt.decode(res.body.access_token, { complete: true }) as { header: { alg: string }; payload: Record<string, unknown> };
    assert.equal(decoded.header.alg, 'HS256');
    assert.equal(decoded.payload.sub, owner.user.id);
    assert.equal(decoded.payload.tenant_id, owner.tenant.id);
    assert.equal(decoded.payload.email, email);
    assert.equal(decoded.payload.role, 'owner');
    assert.equal((decoded.payload.exp as number) - (decoded.payload.iat as number), 900);
  });

  it('when the email is unknown or the password wrong, then the answers are identical', async () => {
    const wrong = await call(t.apiPort, 'POST', '/api/auth/login', { body: { email, password: 'wrong password' } });
    const unknown = await call(t.apiPort, 'POST', '/api/auth/login', { body: { email: 'nobody-here@corp.test', password: 'wrong password' } });
    assert.equal(wrong.status, 401);
    assert.equal(unknown.status, 401);
    assert.deepEqual(wrong.body, unknown.body);
    assert.deepEqual(wrong.body, { error: 'invalid email or password', code: 'unauthorized' });
  });

  it('when the email is unknown, then the answer takes as long as for a wrong password (bcrypt runs either way)', async () => {
    const mail = `timing-${Date.now()}@corp.test`;
    await signup({ email: mail });
    const time = async (body: Record<string, string>): Promise<number> => {
      const started = performance.now();
      const res = await call(t.apiPort, 'POST', '/api/auth/login', { body });
      assert.equal(res.status, 401);
      return performance.now() - started;
    };
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const wrong: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 3; i++) {
      wrong.push(await time({ email: mail, password: 'not the password' }));
      unknown.push(await time({ email: `nobody-${i}-${Date.now()}@corp.test`, password: 'not the password' }));
    }
    const ratio = median(unknown) / median(wrong);
    assert.ok(ratio > 0.5 && ratio < 2, `unknown ${median(unknown).toFixed(0)} ms vs wrong ${median(wrong).toFixed(0)} ms`);
    assert.ok(median(unknown) > 20, `an unknown email must still cost a bcrypt comparison (${median(unknown).toFixed(1)} ms)`);
  });

  it('when me is called with the access token, then the user, tenant and mailboxes come back', async () => {
    const res = await call<{ user: { id: string }; tenant: { id: string }; mailboxes: unknown[] }>(t.apiPort, 'GET', '/api/auth/me', { token: owner.access_token });
    assert.equal(res.status, 200);
    assert.equal(res.body.user.id, owner.user.id);
    assert.equal(res.body.tenant.id, owner.tenant.id);
    assert.deepEqual(res.body.mailboxes, []);
  });

  const secret = (): string => t.config.JWT_SECRET;
  const claims = (): Record<string, unknown> => ({ sub: owner.user.id, tenant_id: owner.tenant.id, email, role: 'owner', typ: 'access' });
  const badTokens: [string, () => string | undefined][] = [
    ['no token', () => undefined],
    ['garbage', () => 'not.a.jwt'],
    ['an expired token', () => jwt.sign({ ...claims(), exp: Math.floor(Date.now() / 1000) - 10 }, secret(), { algorithm: 'HS256' })],
    ['a token without exp', () => jwt.sign(claims(), secret(), { algorithm: 'HS256' })],
    ['a tampered payload', () => {
      const [h, , s] = owner.access_token.split('.');
      const payload = Buffer.from(JSON.stringify({ ...claims(), role: 'owner', tenant_id: '00000000-0000-0000-0000-000000000000', exp: 9999999999 })).toString('base64url');
      return `${h}.${payload}.${s}`;
    }],
    ['alg: none', () => {
      const h = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
      const p = Buffer.from(JSON.stringify({ ...claims(), exp: 9999999999 })).toString('base64url');
      return `${h}.${p}.`;
    }],
    ['another secret', () => jwt.sign({ ...claims() }, 'another-secret-that-is-long-enough-to-use', { algorithm: 'HS256', expiresIn: 900 })],
    ['HS512 with the right secret', () => jwt.sign({ ...claims() }, secret(), { algorithm: 'HS512', expiresIn: 900 })],
    ['a refresh token used as an access token', () => owner.refresh_token],
    ['a token of another type', () => {
      const h = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
      const p = Buffer.from(JSON.stringify({ ...claims(), typ: 'refresh', exp: 9999999999 })).toString('base64url');
      const s = createHmac('sha256', secret()).update(`${h}.${p}`).digest('base64url');
      return `${h}.${p}.${s}`;
    }],
  ];
  for (const [name, make] of badTokens) {
    it(`when me is called with ${name}, then 401`, async () => {
      const res = await call(t.apiPort, 'GET', '/api/auth/me', { token: make() });
      assert.equal(res.status, 401);
      assert.equal((res.body as { code: string }).code, 'unauthorized');
    });
  }

  it('when a refresh token is used, then a new pair comes back and the old refresh token stops working', async () => {
    const login = await call<AuthBody>(t.apiPort, 'POST', '/api/auth/login', { body: { email, password: PASSWORD } });
    const first = await call<AuthBody>(t.apiPort, 'POST', '/api/auth/refresh', { body: { refresh_token: login.body.refresh_token } });
    assert.equal(first.status, 200);
    assert.notEqual(first.body.refresh_token, login.body.refresh_token);
    assert.equal((await call(t.apiPort, 'GET', '/api/auth/me', { token: first.body.access_token })).status, 200);
    const second = await call<AuthBody>(t.apiPort, 'POST', '/api/auth/refresh', { body: { refresh_token: first.body.refresh_token } });
    assert.equal(second.status, 200);
  });

  it('when a spent refresh token is reused, then 401 and the whole family is revoked', async () => {
    const login = await call<AuthBody>(t.apiPort, 'POST', '/api/auth/login', { body: { email, password: PASSWORD } });
    const rotated = await call<AuthBody>(t.apiPort, 'POST', '/api/auth/refresh', { body: { refresh_token: login.body.refresh_token } });
    const reuse = await call(t.apiPort, 'POST', '/api/auth/refresh', { body: { refresh_token: login.body.refresh_token } });
    assert.equal(reuse.status, 401);
    const legit = await call(t.apiPort, 'POST', '/api/auth/refresh', { body: { refresh_token: rotated.body.refresh_token } });
    assert.equal(legit.status, 401, 'the token issued by the rotation dies with its family');
  });

  it('when logging out, then 204 and the refresh token no longer works', async () => {
    const login = await call<AuthBody>(t.apiPort, 'POST', '/api/auth/login', { body: { email, password: PASSWORD } });
    const out = await call(t.apiPort, 'POST', '/api/auth/logout', { body: { refresh_token: login.body.refresh_token } });
    assert.equal(out.status, 204);
    assert.equal((await call(t.apiPort, 'POST', '/api/auth/refresh', { body: { refresh_token: login.body.refresh_token } })).status, 401);
  });

  it('when the user is suspended, then the right password gets 403 and refresh stops working', async () => {
    const mail = `suspended-${Date.now()}@corp.test`;
    const s = await signup({ email: mail });
    await t.services.db.updateTable('users').set({ status: 'suspended' }).where('id', '=', s.body.user.id).execute();
    const res = await call(t.apiPort, 'POST', '/api/auth/login', { body: { email: mail, password: PASSWORD } });
    assert.equal(res.status, 403);
    assert.equal((res.body as { code: string }).code, 'account_suspended');
    assert.equal((await call(t.apiPort, 'POST', '/api/auth/refresh', { body: { refresh_token: s.body.refresh_token } })).status, 401);
    assert.equal((await call(t.apiPort, 'GET', '/api/auth/me', { token: s.body.access_token })).status, 401, 'an access token issued before the suspension stops working at once');
  });

  it('when logins and failures happen, then each is in the audit log with the IP', async () => {
    const rows = await t.services.db.selectFrom('audit_logs').selectAll().where('actor_email', '=', email).execute();
    const actions = new Set(rows.map((r) => r.action));
    assert.ok(actions.has('auth.signup') && actions.has('auth.login') && actions.has('auth.login.failed'), [...actions].join(','));
    assert.ok(rows.every((r) => r.ip === '127.0.0.1' || r.ip === '::ffff:127.0.0.1'), rows.map((r) => r.ip).join(','));
  });
});

describe('lockout', () => {
  it('when an account fails 5 logins, then the next attempt gets 429 with Retry-After even with the right password, until the lockout expires', async () => {
    const mail = `lock-${Date.now()}@corp.test`;
    await signup({ email: mail });
    const codes: number[] = [];
    for (let i = 0; i < 6; i++) codes.push((await call(t.apiPort, 'POST', '/api/auth/login', { body: { email: mail, password: 'wrong password' } })).status);
    assert.deepEqual(codes, [401, 401, 401, 401, 401, 429]);
    const locked = await call(t.apiPort, 'POST', '/api/auth/login', { body: { email: mail, password: PASSWORD } });
    assert.equal(locked.status, 429);
    assert.ok(Number(locked.headers.get('retry-after')) >= 1);
    assert.equal((locked.body as { code: string }).code, 'rate_limited');
    await new Promise((r) => setTimeout(r, Number(locked.headers.get('retry-after')) * 1000 + 300));
    const afterExpiry = await call(t.apiPort, 'POST', '/api/auth/login', { body: { email: mail, password: PASSWORD } });
    assert.equal(afterExpiry.status, 200, 'the lockout expires');
  });

  it('when one IP fails 5 logins across accounts, then that IP is locked out for every account', async () => {
    // a separate server so the IP counter starts at zero and other tests' failures do not count
    const s = await startTestServer({ LOGIN_MAX_FAILURES: '5', LOGIN_MAX_FAILURES_PER_IP: '5', LOGIN_LOCKOUT_MS: '60000' });
    try {
      const codes: number[] = [];
      for (let i = 0; i < 5; i++) {
        codes.push((await call(s.apiPort, 'POST', '/api/auth/login', { body: { email: `spray${i}@corp.test`, password: 'wrong password' } })).status);
      }
      assert.deepEqual(codes, [401, 401, 401, 401, 401]);
      const other = await call(s.apiPort, 'POST', '/api/auth/login', { body: { email: 'someone-else@corp.test', password: 'whatever1' } });
      assert.equal(other.status, 429);
    } finally {
      await s.stop();
    }
  });
});
