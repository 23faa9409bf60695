/**
 * AccountsService: tenants, domains and users with their mailboxes. Used by the admin CLI now
 * and by the REST API later. A new domain gets a verification token and a 2048-bit RSA DKIM key
 * (private half encrypted with SECRETS_KEY); a new user whose address is on one of the tenant's
 * domains gets a mailbox with INBOX, Sent, Drafts, Trash and Junk.
 */
import { generateKeyPair, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import bcrypt from 'bcrypt';
import { sql } from 'kysely';
import { AppError } from '../core/errors.js';
import type { Db } from '../db/database.js';
import { createWithFolders } from '../db/mailboxes.repository.js';
import type { Domain, Mailbox, Tenant, User, UserRole } from '../db/types.js';
import { splitPlainAddress } from './recipient.service.js';
import type { SecretBox } from './secret-box.js';

const generateKeyPairAsync = promisify(generateKeyPair);

export const BCRYPT_ROUNDS = 12;
export const MIN_PASSWORD_LENGTH = 8;
/** bcrypt reads at most 72 bytes; longer passwords are refused rather than silently cut. */
export const MAX_PASSWORD_BYTES = 72;

const DOMAIN_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;

export class AccountsService {
  constructor(
    private readonly db: Db,
    private readonly secrets: SecretBox,
    private readonly defaultQuotaMb: number,
  ) {}

  async createTenant(name: string): Promise<Tenant> {
    const clean = name.trim();
    if (clean.length === 0 || clean.length > 200) throw new AppError('validation_failed', 'tenant name must be 1 to 200 characters');
    const existing = await this.db.selectFrom('tenants').select('id').where('name', '=', clean).executeTakeFirst();
    if (existing) throw new AppError('conflict', `a tenant named "${clean}" already exists`);
    return this.db.insertInto('tenants').values({ name: clean }).returningAll().executeTakeFirstOrThrow();
  }

  async findTenantByName(name: string): Promise<Tenant> {
    const tenant = await this.db.selectFrom('tenants').selectAll().where('name', '=', name.trim()).executeTakeFirst();
    if (!tenant) throw new AppError('not_found', `no tenant named "${name}"`);
    return tenant;
  }

  async addDomain(tenantId: string, rawName: string): Promise<Domain> {
    const name = rawName.trim().toLowerCase().replace(/\.$/, '');
    if (!DOMAIN_NAME.test(name)) throw new AppError('validation_failed', `"${rawName}" is not a valid domain name`);
    const taken = await this.db.selectFrom('domains').select(['tenant_id', 'status']).where('name', '=', name).execute();
    if (taken.some((d) => d.tenant_id === tenantId)) throw new AppError('conflict', `domain ${name} is already added`);
    if (taken.some((d) => d.status === 'verified')) throw new AppError('conflict', `domain ${name} is verified by another tenant`);
    const { publicKey, privateKey } = await generateKeyPairAsync('rsa', {
      modulusLength: 2048,
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    });
    return this.db
      .insertInto('domains')
      .values({
        tenant_id: tenantId,
        name,
        verification_token: randomBytes(16).toString('hex'),
        dkim_selector: `ms${new Date().toISOString().slice(0, 10).replace(/-/g, '')}`,
        dkim_public_key: publicKey,
        dkim_private_key_enc: this.secrets.encrypt(privateKey),
      })
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  /**
   * Creates a login user; when the address is on one of the tenant's domains, its mailbox too.
   * Without tenantId the tenant is the one owning the address's domain.
   */
  async createUser(input: {
    email: string;
    password: string;
    name?: string | null;
    role?: UserRole;
    quotaMb?: number;
    tenantId?: string;
  }): Promise<{ user: User; mailbox: Mailbox | null }> {
    const split = splitPlainAddress(input.email);
    if (!split) throw new AppError('validation_failed', `"${input.email}" is not a valid email address`);
    const email = `${split.local}@${split.domain}`;
    checkPassword(input.password);
    const quotaMb = input.quotaMb ?? this.defaultQuotaMb;
    if (!Number.isInteger(quotaMb) || quotaMb < 1 || quotaMb > 10_000_000) throw new AppError('validation_failed', 'quota must be a whole number of MB between 1 and 10000000');
    const domain = await this.db
      .selectFrom('domains')
      .selectAll()
      .where('name', '=', split.domain)
      .$if(input.tenantId !== undefined, (q) => q.where('tenant_id', '=', input.tenantId!))
      .orderBy(sql`status = 'verified'`, 'desc')
      .executeTakeFirst();
    const tenantId = input.tenantId ?? domain?.tenant_id;
    if (!tenantId) throw new AppError('not_found', `no tenant has the domain ${split.domain}; add the domain first`);
    const passwordHash = await bcrypt.hash(input.password, BCRYPT_ROUNDS);
    return this.db.transaction().execute(async (trx) => {
      const clash = await trx.selectFrom('users').select('id').where('email', '=', email).executeTakeFirst();
      if (clash) throw new AppError('conflict', `a user with the address ${email} already exists`);
      const user = await trx
        .insertInto('users')
        .values({ tenant_id: tenantId, email, name: input.name ?? null, password_hash: passwordHash, role: input.role ?? 'member' })
        .returningAll()
        .executeTakeFirstOrThrow();
      const mailbox = domain
        ? await createWithFolders(trx, { tenantId, userId: user.id, domainId: domain.id, address: email, quotaBytes: quotaMb * 1024 * 1024 })
        : null;
      return { user, mailbox };
    });
  }
}

export function checkPassword(password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH) throw new AppError('validation_failed', `password must be at least ${MIN_PASSWORD_LENGTH} characters`);
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) throw new AppError('validation_failed', `password must be at most ${MAX_PASSWORD_BYTES} bytes`);
}
