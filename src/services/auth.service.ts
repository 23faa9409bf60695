/**
 * AuthService: sign-up (a tenant and its owner), login, refresh, logout and `me`.
 *
 * Login failures lock out the account and the client IP after LOGIN_MAX_FAILURES within
 * LOGIN_LOCKOUT_MS, for LOGIN_LOCKOUT_MS (429 with Retry-After). An unknown email and a wrong
 * password look the same: same status, same body, and the same bcrypt work (a comparison
 * against a dummy hash), so neither the answer nor its timing tells whether an account exists.
 * A suspended user's correct password gets 403 `account_suspended` (only the owner of the
 * password learns that). Every attempt is audited.
 *
 * changePassword() (the webmail's settings) needs the current password, checked with the same
 * lockout counters as a login; it revokes every refresh token of the user and hands back a new
 * pair, so every other session ends and this one goes on.
 */
import bcrypt from 'bcrypt';
import { AppError } from '../core/errors.js';
import type { Db } from '../db/database.js';
import type { Mailbox, Tenant, User } from '../db/types.js';
import type { AccountsService } from './accounts.service.js';
import { BCRYPT_ROUNDS, checkPassword } from './accounts.service.js';
import type { AuditService } from './audit.service.js';
import type { Limiter } from './rate-limit.service.js';
import type { TokenPair, TokenService } from './token.service.js';

const BAD_CREDENTIALS = 'invalid email or password';
const LOCKED = 'too many failed logins; try again later';

export interface PublicUser {
  id: string;
  tenant_id: string;
  email: string;
  name: string | null;
  role: User['role'];
  status: User['status'];
  created_at: Date;
}

export function publicUser(u: User): PublicUser {
  return { id: u.id, tenant_id: u.tenant_id, email: u.email, name: u.name, role: u.role, status: u.status, created_at: u.created_at };
}

export function publicTenant(t: Tenant): { id: string; name: string; created_at: Date } {
  return { id: t.id, name: t.name, created_at: t.created_at };
}

export class AuthService {
  /** bcrypt of a random string, so an unknown email costs what a wrong password costs. */
  private readonly dummyHash = bcrypt.hash(`dummy-${Math.random()}`, BCRYPT_ROUNDS);

  constructor(
    private readonly db: Db,
    private readonly accounts: AccountsService,
    private readonly tokens: TokenService,
    private readonly audit: AuditService,
    private readonly limits: { accountLockout: Limiter; ipLockout: Limiter; signup: Limiter },
    private readonly signupEnabled: boolean,
  ) {}

  async signup(input: { company_name: string; email: string; password: string }, ip: string): Promise<{ user: PublicUser; tenant: ReturnType<typeof publicTenant> } & TokenPair> {
    if (!this.signupEnabled) throw new AppError('signup_disabled', 'sign-up is disabled on this server');
    await this.limits.signup.consume(`ip:${ip}`, 'too many sign-ups from your address; try again later');
    checkPassword(input.password);
    const email = input.email.trim().toLowerCase();
    const taken = await this.db.selectFrom('users').select('id').where('email', '=', email).executeTakeFirst();
    if (taken) throw new AppError('conflict', 'an account with this email already exists');
    const tenant = await this.accounts.createTenant(input.company_name);
    const { user } = await this.accounts.createUser({ email, password: input.password, role: 'owner', tenantId: tenant.id });
    await this.audit.record({ tenantId: tenant.id, actorUserId: user.id, actorEmail: user.email, action: 'auth.signup', targetType: 'tenant', targetId: tenant.id, ip });
    return { user: publicUser(user), tenant: publicTenant(tenant), ...(await this.tokens.issuePair(user)) };
  }

  async login(input: { email: string; password: string }, ip: string): Promise<{ user: PublicUser } & TokenPair> {
    const user = await this.verifyCredentials(input.email, input.password, ip, 'auth.login');
    return { user: publicUser(user), ...(await this.tokens.issuePair(user)) };
  }

  /**
   * The password check behind API login and SMTP AUTH, with the same lockout counters, so
   * guessing over SMTP locks the account for the API too and the other way round. `action`
   * names the audit entries (`auth.login`, `smtp.auth`; failures get `.failed`/`.suspended`).
   */
  async verifyCredentials(rawEmail: string, password: string, ip: string, action: 'auth.login' | 'smtp.auth'): Promise<User> {
    const email = rawEmail.trim().toLowerCase();
    const accountKey = `acct:${email}`;
    const ipKey = `ip:${ip}`;
    await this.limits.accountLockout.check(accountKey, LOCKED);
    await this.limits.ipLockout.check(ipKey, LOCKED);

    const user = await this.db.selectFrom('users').selectAll().where('email', '=', email).executeTakeFirst();
    const ok = await bcrypt.compare(password, user?.password_hash ?? (await this.dummyHash));
    if (!user || !ok) {
      await this.audit.record({ tenantId: user?.tenant_id ?? null, actorUserId: user?.id ?? null, actorEmail: email, action: `${action}.failed`, ip });
      // the failure that reaches the limit is itself answered as locked (with Retry-After)
      await this.limits.accountLockout.consume(accountKey, LOCKED);
      await this.limits.ipLockout.consume(ipKey, LOCKED);
      throw new AppError('unauthorized', BAD_CREDENTIALS);
    }
    if (user.status !== 'active') {
      await this.audit.record({ tenantId: user.tenant_id, actorUserId: user.id, actorEmail: email, action: `${action}.suspended`, ip });
      throw new AppError('account_suspended', 'this account is suspended');
    }
    await this.limits.accountLockout.reset(accountKey);
    await this.audit.record({ tenantId: user.tenant_id, actorUserId: user.id, actorEmail: email, action, targetType: 'user', targetId: user.id, ip });
    return user;
  }

  async changePassword(userId: string, tenantId: string, input: { current_password: string; password: string }, ip: string): Promise<TokenPair> {
    const user = await this.db.selectFrom('users').selectAll().where('id', '=', userId).where('tenant_id', '=', tenantId).executeTakeFirst();
    if (!user) throw new AppError('unauthorized', 'invalid or expired token');
    const accountKey = `acct:${user.email}`;
    const ipKey = `ip:${ip}`;
    await this.limits.accountLockout.check(accountKey, LOCKED);
    await this.limits.ipLockout.check(ipKey, LOCKED);
    if (!(await bcrypt.compare(input.current_password, user.password_hash))) {
      await this.audit.record({ tenantId, actorUserId: user.id, actorEmail: user.email, action: 'auth.password_change.failed', targetType: 'user', targetId: user.id, ip });
      await this.limits.accountLockout.consume(accountKey, LOCKED);
      await this.limits.ipLockout.consume(ipKey, LOCKED);
      throw new AppError('validation_failed', 'the current password is not correct', {
        details: [{ in: 'body', path: 'current_password', message: 'is not correct' }],
      });
    }
    await this.limits.accountLockout.reset(accountKey);
    checkPassword(input.password);
    const hash = await bcrypt.hash(input.password, BCRYPT_ROUNDS);
    await this.db.updateTable('users').set({ password_hash: hash }).where('id', '=', user.id).where('tenant_id', '=', tenantId).execute();
    await this.tokens.revokeAllForUser(user.id);
    await this.audit.record({ tenantId, actorUserId: user.id, actorEmail: user.email, action: 'auth.password_changed', targetType: 'user', targetId: user.id, ip });
    return this.tokens.issuePair(user);
  }

  async refresh(refreshToken: string): Promise<TokenPair> {
    const { userId, familyId } = await this.tokens.spendRefreshToken(refreshToken);
    const user = await this.db.selectFrom('users').selectAll().where('id', '=', userId).executeTakeFirst();
    if (!user || user.status !== 'active') throw new AppError('unauthorized', 'invalid or expired token');
    return this.tokens.issuePair(user, familyId);
  }

  async logout(refreshToken: string, ip: string): Promise<void> {
    const owner = await this.tokens.revoke(refreshToken);
    if (owner) await this.audit.record({ tenantId: owner.tenantId, actorUserId: owner.userId, action: 'auth.logout', ip });
  }

  async me(userId: string, tenantId: string): Promise<{ user: PublicUser; tenant: ReturnType<typeof publicTenant>; mailboxes: Pick<Mailbox, 'id' | 'address' | 'quota_bytes'>[] }> {
    const user = await this.db.selectFrom('users').selectAll().where('id', '=', userId).where('tenant_id', '=', tenantId).executeTakeFirst();
    if (!user) throw new AppError('unauthorized', 'invalid or expired token');
    const tenant = await this.db.selectFrom('tenants').selectAll().where('id', '=', tenantId).executeTakeFirstOrThrow();
    const mailboxes = await this.db.selectFrom('mailboxes').select(['id', 'address', 'quota_bytes']).where('user_id', '=', userId).where('tenant_id', '=', tenantId).execute();
    return { user: publicUser(user), tenant: publicTenant(tenant), mailboxes };
  }
}
