/**
 * Helpers for /api/users tests: tenants made through signup (with a domain added through the
 * accounts service, as the domains API is tested on its own), users created through the API,
 * logins. Bound to one running TestServer by usersApi(t).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { TestServer } from './harness.js';
import { call, type ApiResponse } from './http.js';

export const PASSWORD = 'correct horse battery';

/** Env for a test server where repeated logins and signups from 127.0.0.1 are never throttled. */
export const UNTHROTTLED_ENV: Record<string, string> = {
  LOGIN_MAX_FAILURES: '1000',
  LOGIN_MAX_FAILURES_PER_IP: '1000',
  SIGNUP_RATE_LIMIT_PER_HOUR: '1000',
  API_RATE_LIMIT_PER_MINUTE: '100000',
};

export interface MailboxBody {
  id: string;
  address: string;
  quota_mb: number;
  used_bytes: number;
}

export interface UserBody {
  id: string;
  tenant_id: string;
  email: string;
  name: string | null;
  role: string;
  status: string;
  created_at: string;
  mailbox: MailboxBody | null;
  code?: string;
  error?: string;
}

export interface ApiTenant {
  id: string;
  domain: string;
  ownerId: string;
  ownerEmail: string;
  token: string;
}

export type Role = 'owner' | 'admin' | 'member';
type LoginBody = { access_token: string; refresh_token: string; code?: string };

let seq = 0;

export function usersApi(t: TestServer) {
  function api<T = UserBody>(method: string, path: string, token?: string, body?: unknown): Promise<ApiResponse<T>> {
    return call<T>(t.apiPort, method, path, { token, body });
  }

  /** A fresh address on the tenant's domain. */
  function address(tenant: ApiTenant, local = 'user'): string {
    return `${local}${++seq}@${tenant.domain}`;
  }

  /** A tenant through the API (signup) with one domain. */
  async function newTenant(label: string): Promise<ApiTenant> {
    const tag = `${label}${++seq}-${randomBytes(3).toString('hex')}`;
    const domain = `${tag}.test`;
    const res = await call<{ user: { id: string; tenant_id: string; email: string }; access_token: string }>(t.apiPort, 'POST', '/api/auth/signup', {
      body: { company_name: `Company ${tag}`, email: `owner@${tag}-corp.test`, password: PASSWORD },
    });
    assert.equal(res.status, 201, res.text);
    await t.services.accounts.addDomain(res.body.user.tenant_id, domain);
    return { id: res.body.user.tenant_id, domain, ownerId: res.body.user.id, ownerEmail: res.body.user.email, token: res.body.access_token };
  }

  async function createUser(tenant: ApiTenant, body: Record<string, unknown> = {}, token = tenant.token): Promise<UserBody> {
    const res = await api('POST', '/api/users', token, { email: address(tenant), password: PASSWORD, ...body });
    assert.equal(res.status, 201, res.text);
    return res.body;
  }

  function login(email: string, password = PASSWORD): Promise<ApiResponse<LoginBody>> {
    return call<LoginBody>(t.apiPort, 'POST', '/api/auth/login', { body: { email, password } });
  }

  function refresh(refreshToken: string): Promise<ApiResponse> {
    return call(t.apiPort, 'POST', '/api/auth/refresh', { body: { refresh_token: refreshToken } });
  }

  /** A new user with the given role, logged in. */
  async function userWithToken(tenant: ApiTenant, role: Role): Promise<{ user: UserBody; token: string; refresh: string }> {
    const user = await createUser(tenant, { role });
    const res = await login(user.email);
    assert.equal(res.status, 200, res.text);
    return { user, token: res.body.access_token, refresh: res.body.refresh_token };
  }

  return { api, address, newTenant, createUser, login, refresh, userWithToken };
}
