/**
 * /api/auth: signup, login, refresh, logout, me, password (API.md "Auth").
 */
import { z } from 'zod';
import type { AuthService } from '../../services/auth.service.js';
import { defineRoute, type RouteDeps } from '../route.js';

const email = z.string().trim().min(3).max(254).email('must be an email address');
const password = z.string().min(1, 'is required').max(1024);

export function registerAuthRoutes(deps: RouteDeps, auth: AuthService): void {
  defineRoute(
    deps,
    {
      method: 'post',
      path: '/api/auth/signup',
      tag: 'auth',
      summary: 'Create a tenant and its owner; returns the owner and a token pair',
      auth: 'none',
      body: z.strictObject({ company_name: z.string().trim().min(1).max(200), email, password }),
      responses: { 201: { description: 'created' } },
    },
    async ({ body, ip }) => ({ status: 201, body: await auth.signup(body, ip) }),
  );
  defineRoute(
    deps,
    {
      method: 'post',
      path: '/api/auth/login',
      tag: 'auth',
      summary: 'Exchange email and password for an access token and a refresh token',
      auth: 'none',
      body: z.strictObject({ email: z.string().trim().min(1).max(254), password }),
      responses: { 200: { description: 'logged in' } },
    },
    async ({ body, ip }) => ({ status: 200, body: await auth.login(body, ip) }),
  );
  const refreshBody = z.strictObject({ refresh_token: z.string().min(1).max(200) });
  defineRoute(
    deps,
    {
      method: 'post',
      path: '/api/auth/refresh',
      tag: 'auth',
      summary: 'Rotate a refresh token: returns a new pair; reuse of a spent token revokes its family',
      auth: 'none',
      body: refreshBody,
      responses: { 200: { description: 'new token pair' } },
    },
    async ({ body }) => ({ status: 200, body: await auth.refresh(body.refresh_token) }),
  );
  defineRoute(
    deps,
    {
      method: 'post',
      path: '/api/auth/logout',
      tag: 'auth',
      summary: 'Revoke a refresh token and its family',
      auth: 'none',
      body: refreshBody,
      responses: { 204: { description: 'logged out' } },
    },
    async ({ body, ip }) => {
      await auth.logout(body.refresh_token, ip);
      return { status: 204 };
    },
  );
  defineRoute(
    deps,
    {
      method: 'get',
      path: '/api/auth/me',
      tag: 'auth',
      summary: 'The caller, their tenant and their mailboxes',
      auth: 'user',
      responses: { 200: { description: 'the caller' } },
    },
    async ({ caller }) => ({ status: 200, body: await auth.me(caller!.userId, caller!.tenantId) }),
  );
  defineRoute(
    deps,
    {
      method: 'post',
      path: '/api/auth/password',
      tag: 'auth',
      summary: 'Change your password (current_password required; a wrong one counts as a failed login): every other session ends; returns a new token pair',
      auth: 'user',
      body: z.strictObject({ current_password: password, password }),
      responses: { 200: { description: '{access_token, refresh_token, expires_in}' } },
    },
    async ({ body, caller, ip }) => ({ status: 200, body: await auth.changePassword(caller!.userId, caller!.tenantId, body, ip) }),
  );
}
