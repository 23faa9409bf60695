/**
 * UsersService: a tenant's users and their mailboxes, for /api/users (API.md "Users and
 * mailboxes"). Called by api/routes/users.routes.ts with the authenticated caller.
 *
 * Guarantees:
 * - Tenant isolation: every query filters by the caller's tenant; another tenant's id and a
 *   malformed id are both `not_found`, never `forbidden`.
 * - The caller is re-read from the database on every call: a deleted or suspended caller is
 *   `unauthorized`, and a demoted one loses its rights at once, whatever the token still says.
 * - Roles: owners and admins manage users; members only change their own password. Only an owner
 *   grants the owner or admin role, and only an owner changes an owner or an admin (other than
 *   themselves). The last active owner cannot be demoted, suspended or deleted; nobody deletes
 *   or suspends themselves. These rules run under a tenant lock, so two concurrent demotions
 *   cannot both pass the "another owner remains" check.
 * - Changing one's own password needs `current_password` (a stolen access token alone cannot
 *   take the account over); a password change or a suspension revokes the user's refresh tokens.
 * - Deletion removes the user, its mailbox, messages and their blob references in one transaction.
 * - Every change is audited (user.create, user.update, user.password, user.status, user.delete)
 *   without secrets.
 */
import bcrypt from 'bcrypt';
import type { Transaction } from 'kysely';
import { AppError } from '../core/errors.js';
import { isUuid } from '../core/ids.js';
import type { Db } from '../db/database.js';
import { findByAddress, findByUsers, type MailboxWithUsage } from '../db/mailboxes.repository.js';
import type { Database, User, UserRole, UserStatus } from '../db/types.js';
import { countOtherActiveOwners, deleteWithMailboxes, findInTenant, listPage, lockTenant, setMailboxQuota, updateUser } from '../db/users.repository.js';
import { BCRYPT_ROUNDS, checkPassword, type AccountsService } from './accounts.service.js';
import type { AuditService } from './audit.service.js';
import { publicUser, type PublicUser } from './auth.service.js';
import { splitPlainAddress } from './recipient.service.js';
import type { TokenService } from './token.service.js';

const BYTES_PER_MB = 1024 * 1024;
/** PostgreSQL errors worth one more try of the whole transaction. */
const RETRYABLE_SQLSTATES = new Set(['40001', '40P01']);
const TRANSACTION_ATTEMPTS = 3;

/** Who is calling: the authenticated token's subject and tenant. */
export interface Actor {
  userId: string;
  tenantId: string;
}

export interface MailboxView {
  id: string;
  address: string;
  quota_mb: number;
  used_bytes: number;
}

export interface UserView extends PublicUser {
  updated_at: Date;
  mailbox: MailboxView | null;
}

export interface CreateUserInput {
  email: string;
  password: string;
  name?: string;
  role?: UserRole;
  quota_mb?: number;
}

export interface UpdateUserInput {
  name?: string | null;
  role?: UserRole;
  quota_mb?: number;
}

export class UsersService {
  constructor(
    private readonly db: Db,
    private readonly accounts: AccountsService,
    private readonly tokens: TokenService,
    private readonly audit: AuditService,
  ) {}

  /** A page of the tenant's users, newest first; limit + 1 rows (see api/pagination.ts). */
  async listUsers(actor: Actor, limit: number, before: { at: Date; id: string } | null): Promise<UserView[]> {
    await this.loadManager(actor);
    const users = await listPage(this.db, actor.tenantId, limit, before);
    return this.views(actor.tenantId, users);
  }

  async getUser(actor: Actor, id: string): Promise<UserView> {
    await this.loadManager(actor);
    return this.view(actor.tenantId, await this.findTarget(actor.tenantId, id));
  }

  async createUser(actor: Actor, input: CreateUserInput, ip: string): Promise<UserView> {
    const me = await this.loadManager(actor);
    const role = input.role ?? 'member';
    assertMayGrant(me, role);
    const split = splitPlainAddress(input.email);
    if (!split) throw new AppError('validation_failed', `"${input.email}" is not a valid email address`, { details: [{ in: 'body', path: 'email', message: 'not a plain local@domain address' }] });
    checkPassword(input.password);
    const domains = await this.db.selectFrom('domains').select('tenant_id').where('name', '=', split.domain).execute();
    if (domains.length > 0 && !domains.some((d) => d.tenant_id === actor.tenantId)) {
      throw new AppError('conflict', `the domain ${split.domain} belongs to another tenant; add it to your domains before creating addresses on it`);
    }
    const address = `${split.local}@${split.domain}`;
    if (await findByAddress(this.db, address)) throw new AppError('conflict', `a mailbox with the address ${address} already exists`);
    const { user, mailbox } = await uniqueAsConflict(address, () =>
      this.accounts.createUser({ email: address, password: input.password, name: input.name ?? null, role, quotaMb: input.quota_mb, tenantId: actor.tenantId }),
    );
    await this.record(me, ip, 'user.create', user.id, { email: user.email, role: user.role, mailbox_id: mailbox?.id ?? null, quota_mb: mailbox ? toMb(mailbox.quota_bytes) : null });
    return this.view(actor.tenantId, user);
  }

  async updateUser(actor: Actor, id: string, input: UpdateUserInput, ip: string): Promise<UserView> {
    if (input.name === undefined && input.role === undefined && input.quota_mb === undefined) {
      throw new AppError('validation_failed', 'nothing to change: send at least one of name, role, quota_mb', { details: [{ in: 'body', path: '', message: 'empty update' }] });
    }
    const me = await this.loadManager(actor);
    checkId(id);
    const { user, changes } = await this.inTransaction(async (trx) => {
      await lockTenant(trx, actor.tenantId);
      const target = await findInTenant(trx, actor.tenantId, id);
      if (!target) throw notFound();
      assertMayManage(me, target);
      const changes: Record<string, unknown> = {};
      if (input.role !== undefined && input.role !== target.role) {
        assertMayGrant(me, input.role);
        if (target.role === 'owner') await assertNotLastOwner(trx, target, 'demote');
        changes.role = { from: target.role, to: input.role };
      }
      if (input.name !== undefined && input.name !== target.name) changes.name = { from: target.name, to: input.name };
      if (input.quota_mb !== undefined) {
        const n = await setMailboxQuota(trx, actor.tenantId, target.id, input.quota_mb * BYTES_PER_MB);
        if (n === 0) throw new AppError('conflict', `${target.email} has no mailbox, so it has no quota to set`);
        changes.quota_mb = input.quota_mb;
      }
      const user = await updateUser(trx, actor.tenantId, target.id, { name: input.name, role: input.role });
      return { user: user ?? target, changes };
    });
    await this.record(me, ip, 'user.update', user.id, { email: user.email, changes });
    return this.view(actor.tenantId, user);
  }

  /**
   * Sets a password. Anyone may change their own with `currentPassword`; owners and admins
   * reset other users' (within the role rules) without it. Refresh tokens of the user end.
   */
  async changePassword(actor: Actor, id: string, input: { password: string; current_password?: string }, ip: string): Promise<void> {
    const me = await this.loadActor(actor);
    const self = id === me.id;
    if (!self && me.role === 'member') throw new AppError('forbidden', 'members may only change their own password');
    const target = self ? me : await this.findTarget(actor.tenantId, id);
    if (self) {
      if (input.current_password === undefined) {
        throw new AppError('validation_failed', 'current_password is required to change your own password', { details: [{ in: 'body', path: 'current_password', message: 'required' }] });
      }
      if (!(await bcrypt.compare(input.current_password, me.password_hash))) throw new AppError('forbidden', 'current_password is not correct');
    } else {
      assertMayManage(me, target);
    }
    checkPassword(input.password);
    const hash = await bcrypt.hash(input.password, BCRYPT_ROUNDS);
    if (!(await updateUser(this.db, actor.tenantId, target.id, { password_hash: hash }))) throw notFound();
    await this.tokens.revokeAllForUser(target.id);
    await this.record(me, ip, 'user.password', target.id, { email: target.email, self });
  }

  /** Suspends (no login, no SMTP AUTH, refresh tokens revoked; mail still delivered) or reactivates. */
  async setStatus(actor: Actor, id: string, status: UserStatus, ip: string): Promise<UserView> {
    const me = await this.loadManager(actor);
    checkId(id);
    const { user, from } = await this.inTransaction(async (trx) => {
      await lockTenant(trx, actor.tenantId);
      const target = await findInTenant(trx, actor.tenantId, id);
      if (!target) throw notFound();
      if (target.id === me.id && status === 'suspended') throw new AppError('conflict', 'you cannot suspend your own account');
      assertMayManage(me, target);
      if (status === 'suspended' && target.role === 'owner') await assertNotLastOwner(trx, target, 'suspend');
      const user = await updateUser(trx, actor.tenantId, target.id, { status });
      return { user: user ?? target, from: target.status };
    });
    if (status === 'suspended') await this.tokens.revokeAllForUser(user.id);
    await this.record(me, ip, 'user.status', user.id, { email: user.email, from, to: status });
    return this.view(actor.tenantId, user);
  }

  /** Deletes the user, its mailbox, its messages and their blob references, in one transaction. */
  async deleteUser(actor: Actor, id: string, ip: string): Promise<void> {
    const me = await this.loadManager(actor);
    checkId(id);
    const { target, removed } = await this.inTransaction(async (trx) => {
      await lockTenant(trx, actor.tenantId);
      const target = await findInTenant(trx, actor.tenantId, id);
      if (!target) throw notFound();
      if (target.id === me.id) throw new AppError('conflict', 'you cannot delete your own account');
      assertMayManage(me, target);
      if (target.role === 'owner') await assertNotLastOwner(trx, target, 'delete');
      return { target, removed: await deleteWithMailboxes(trx, actor.tenantId, target.id) };
    });
    await this.record(me, ip, 'user.delete', target.id, { email: target.email, role: target.role, mailboxes_deleted: removed.mailboxes, messages_deleted: removed.messages });
  }

  /** The caller as stored now: gone or suspended callers are refused like a bad token. */
  private async loadActor(actor: Actor): Promise<User> {
    if (!isUuid(actor.userId)) throw new AppError('unauthorized', 'invalid or expired token');
    const me = await findInTenant(this.db, actor.tenantId, actor.userId);
    if (!me || me.status !== 'active') throw new AppError('unauthorized', 'invalid or expired token');
    return me;
  }

  private async loadManager(actor: Actor): Promise<User> {
    const me = await this.loadActor(actor);
    if (me.role === 'member') throw new AppError('forbidden', 'this needs the owner or admin role');
    return me;
  }

  private async findTarget(tenantId: string, id: string): Promise<User> {
    checkId(id);
    const user = await findInTenant(this.db, tenantId, id);
    if (!user) throw notFound();
    return user;
  }

  private async view(tenantId: string, user: User): Promise<UserView> {
    const [v] = await this.views(tenantId, [user]);
    return v!;
  }

  private async views(tenantId: string, users: User[]): Promise<UserView[]> {
    const mailboxes = await findByUsers(this.db, tenantId, users.map((u) => u.id));
    const first = new Map<string, MailboxWithUsage>();
    for (const m of mailboxes) if (m.user_id && !first.has(m.user_id)) first.set(m.user_id, m);
    return users.map((u) => {
      const m = first.get(u.id);
      return { ...publicUser(u), updated_at: u.updated_at, mailbox: m ? { id: m.id, address: m.address, quota_mb: toMb(m.quota_bytes), used_bytes: m.used_bytes } : null };
    });
  }

  private async record(me: User, ip: string, action: string, targetId: string, details: Record<string, unknown>): Promise<void> {
    await this.audit.record({ tenantId: me.tenant_id, actorUserId: me.id, actorEmail: me.email, action, targetType: 'user', targetId, ip, details });
  }

  /** Runs `work` in a transaction, again when PostgreSQL aborted it for a deadlock or serialisation failure. */
  private async inTransaction<T>(work: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.db.transaction().execute(work);
      } catch (err) {
        if (attempt >= TRANSACTION_ATTEMPTS || !RETRYABLE_SQLSTATES.has(sqlState(err))) throw err;
      }
    }
  }
}

function assertMayGrant(me: User, role: UserRole): void {
  if (role !== 'member' && me.role !== 'owner') throw new AppError('forbidden', `only an owner may grant the ${role} role`);
}

/** Admins manage members and themselves; owners manage everyone. */
function assertMayManage(me: User, target: User): void {
  if (me.role === 'owner' || target.role === 'member' || target.id === me.id) return;
  throw new AppError('forbidden', `only an owner may change an ${target.role}`);
}

async function assertNotLastOwner(trx: Transaction<Database>, target: User, verb: 'demote' | 'suspend' | 'delete'): Promise<void> {
  if (target.status !== 'active') return;
  if ((await countOtherActiveOwners(trx, target.tenant_id, target.id)) === 0) {
    throw new AppError('conflict', `cannot ${verb} ${target.email}: it is the last active owner of the tenant; make another user owner first`);
  }
}

function checkId(id: string): void {
  if (!isUuid(id)) throw notFound();
}

function notFound(): AppError {
  return new AppError('not_found', 'no such user');
}

function toMb(bytes: number): number {
  return bytes / BYTES_PER_MB;
}

function sqlState(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/** Two concurrent creations of one address: the loser's unique violation is a 409, not a 500. */
async function uniqueAsConflict<T>(address: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (sqlState(err) === '23505') throw new AppError('conflict', `a user or mailbox with the address ${address} already exists`, { cause: err });
    throw err;
  }
}
