/**
 * /api/users (API.md "Users and mailboxes"): a tenant's users with their mailbox and quota.
 * Owners and admins manage users; any user may change their own password (with
 * `current_password`). Role rules, tenant scoping and auditing live in services/users.service.ts;
 * an id of another tenant or a malformed id is a 404.
 */
import { z } from 'zod';
import type { UsersService } from '../../services/users.service.js';
import { decodeCursor, page, pageQuery } from '../pagination.js';
import { defineRoute, type RouteDeps } from '../route.js';

/** Largest quota accepted, in MB (10 TB). */
export const MAX_QUOTA_MB = 10_000_000;

const role = z.enum(['owner', 'admin', 'member']);
const quotaMb = z.number().int('must be a whole number of MB').min(1, 'must be at least 1 MB').max(MAX_QUOTA_MB, `must be at most ${MAX_QUOTA_MB} MB`);
const name = z.string().trim().min(1).max(200);
// length rules (8 characters, 72 bytes) are checked by the service, with their own messages
const password = z.string().min(1, 'is required').max(1024);
const idParams = z.strictObject({ id: z.string() });
const managers: ('owner' | 'admin')[] = ['owner', 'admin'];

export function registerUserRoutes(deps: RouteDeps, users: UsersService): void {
  defineRoute(
    deps,
    {
      method: 'get',
      path: '/api/users',
      tag: 'users',
      summary: "The tenant's users, newest first, each with its mailbox (quota_mb, used_bytes) or null",
      auth: 'user',
      roles: managers,
      query: pageQuery,
      responses: { 200: { description: '{data, next_cursor}' } },
    },
    async ({ query, caller }) => {
      const rows = await users.listUsers(caller!, query.limit, decodeCursor(query.cursor));
      return { status: 200, body: page(rows, query.limit, (u) => ({ at: u.created_at, id: u.id })) };
    },
  );
  defineRoute(
    deps,
    {
      method: 'post',
      path: '/api/users',
      tag: 'users',
      summary: "Create a user; an address on one of the tenant's domains gets a mailbox with INBOX, Sent, Drafts, Trash, Junk. Only an owner grants owner or admin",
      auth: 'user',
      roles: managers,
      body: z.strictObject({
        email: z.string().trim().min(3).max(254).email('must be an email address'),
        password,
        name: name.optional(),
        role: role.optional(),
        quota_mb: quotaMb.optional(),
      }),
      responses: { 201: { description: 'the user with its mailbox' } },
    },
    async ({ body, caller, ip }) => ({ status: 201, body: await users.createUser(caller!, body, ip) }),
  );
  defineRoute(
    deps,
    {
      method: 'get',
      path: '/api/users/:id',
      tag: 'users',
      summary: 'One user of the tenant with its mailbox',
      auth: 'user',
      roles: managers,
      params: idParams,
      responses: { 200: { description: 'the user' } },
    },
    async ({ params, caller }) => ({ status: 200, body: await users.getUser(caller!, params.id) }),
  );
  defineRoute(
    deps,
    {
      method: 'put',
      path: '/api/users/:id',
      tag: 'users',
      summary: 'Change name, role or mailbox quota; the last active owner cannot be demoted',
      auth: 'user',
      roles: managers,
      params: idParams,
      body: z.strictObject({ name: name.nullable().optional(), role: role.optional(), quota_mb: quotaMb.optional() }),
      responses: { 200: { description: 'the updated user' } },
    },
    async ({ params, body, caller, ip }) => ({ status: 200, body: await users.updateUser(caller!, params.id, body, ip) }),
  );
  defineRoute(
    deps,
    {
      method: 'put',
      path: '/api/users/:id/password',
      tag: 'users',
      summary: "Set a password: owners/admins for the tenant's users, anyone for themselves with current_password; the user's refresh tokens are revoked",
      auth: 'user',
      params: idParams,
      body: z.strictObject({ password, current_password: z.string().max(1024).optional() }),
      responses: { 204: { description: 'password changed' } },
    },
    async ({ params, body, caller, ip }) => {
      await users.changePassword(caller!, params.id, body, ip);
      return { status: 204 };
    },
  );
  defineRoute(
    deps,
    {
      method: 'put',
      path: '/api/users/:id/status',
      tag: 'users',
      summary: 'Suspend (no login, no SMTP AUTH, refresh tokens revoked; mail still received) or reactivate a user',
      auth: 'user',
      roles: managers,
      params: idParams,
      body: z.strictObject({ status: z.enum(['active', 'suspended']) }),
      responses: { 200: { description: 'the user' } },
    },
    async ({ params, body, caller, ip }) => ({ status: 200, body: await users.setStatus(caller!, params.id, body.status, ip) }),
  );
  defineRoute(
    deps,
    {
      method: 'delete',
      path: '/api/users/:id',
      tag: 'users',
      summary: 'Delete a user with its mailbox and messages (blobs shared with other messages stay); not yourself, not the last owner',
      auth: 'user',
      roles: managers,
      params: idParams,
      responses: { 204: { description: 'deleted' } },
    },
    async ({ params, caller, ip }) => {
      await users.deleteUser(caller!, params.id, ip);
      return { status: 204 };
    },
  );
}
