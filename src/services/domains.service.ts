/**
 * DomainsService: a tenant's sending/receiving domains through the API (owner/admin): list, add,
 * read, change the DKIM key or selector, delete, the DNS records to publish, and asking for a DNS
 * verification (queued as a job; DomainVerifier does the check in the worker role).
 *
 * Guarantees: every query is scoped by the caller's tenant, and an id that is not the tenant's
 * (or not an id at all) is `not_found`, never `forbidden`. A name verified by another tenant
 * cannot be added; a name only pending elsewhere can. Every change is audited.
 *
 * Changing a domain (PUT) means its DKIM key: a new selector, a new 2048-bit key, or both. The
 * name never changes (another name is another domain). Status is left as it is: the new DKIM
 * record has to be published and verified again, and until then the next check reports dkim as
 * mismatch. Deleting a domain that still has mailboxes is refused (conflict, with the count);
 * mailboxes are deleted through their users first, so mail is never dropped as a side effect.
 */
import { generateKeyPair, randomBytes } from 'node:crypto';
import { domainToASCII } from 'node:url';
import { promisify } from 'node:util';
import { AppError } from '../core/errors.js';
import { isUuid } from '../core/ids.js';
import type { Db } from '../db/database.js';
import * as domains from '../db/domains.repository.js';
import type { Domain, DomainStatus } from '../db/types.js';
import type { AccountsService } from './accounts.service.js';
import type { AuditService } from './audit.service.js';
import { expectedRecords, type DnsRecord, type RecordChecks } from './domain-records.js';
import { DOMAIN_VERIFY_QUEUE, type DomainJobSender, type StoredDnsResults } from './domain-verification.service.js';
import type { SecretBox } from './secret-box.js';

const generateKeyPairAsync = promisify(generateKeyPair);

/** One DNS label (RFC 6376 section 3.1 allows dotted selectors; we issue and accept single labels). */
export const DKIM_SELECTOR = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Who is acting, for scoping and the audit log. */
export interface Actor {
  tenantId: string;
  userId: string;
  email: string;
  ip: string;
}

export interface PublicDomain {
  id: string;
  name: string;
  status: DomainStatus;
  dkim_selector: string;
  /** Per-record outcome of the last DNS check (null before the first). */
  dns_results: RecordChecks | null;
  /** Why the domain is not verified, when a check said so. */
  status_reason: string | null;
  last_checked_at: Date | null;
  verified_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export type DomainWithRecords = PublicDomain & { dns_records: DnsRecord[] };

export interface DomainChange {
  dkim_selector?: string;
  rotate_dkim_key?: boolean;
}

export class DomainsService {
  constructor(
    private readonly db: Db,
    private readonly accounts: AccountsService,
    private readonly secrets: SecretBox,
    private readonly audit: AuditService,
    private readonly jobs: DomainJobSender,
    private readonly mailHostname: string,
  ) {}

  /** Newest first; `limit + 1` rows so the caller can tell whether a next page exists. */
  async listDomains(tenantId: string, limit: number, before: { at: Date; id: string } | null): Promise<PublicDomain[]> {
    return (await domains.listForTenant(this.db, tenantId, limit, before)).map(publicDomain);
  }

  async addDomain(actor: Actor, rawName: string): Promise<DomainWithRecords> {
    // internationalised names are kept in their A-label form (RFC 5890), as DNS sees them
    const ascii = domainToASCII(rawName.trim());
    if (!ascii) throw new AppError('validation_failed', `"${rawName}" is not a valid domain name`, { details: [{ in: 'body', path: 'name', message: 'not a valid domain name' }] });
    let domain: Domain;
    try {
      domain = await this.accounts.addDomain(actor.tenantId, ascii);
    } catch (err) {
      // two concurrent adds of one name by one tenant: the unique (tenant_id, name) index decides
      if ((err as { code?: string }).code === '23505') throw new AppError('conflict', `domain ${ascii} is already added`, { cause: err });
      throw err;
    }
    await this.record(actor, 'domain.created', domain, { name: domain.name });
    return this.withRecords(domain);
  }

  async getDomain(tenantId: string, id: string): Promise<DomainWithRecords> {
    return this.withRecords(await this.find(tenantId, id));
  }

  async dnsRecords(tenantId: string, id: string): Promise<{ domain: string; records: DnsRecord[] }> {
    const domain = await this.find(tenantId, id);
    return { domain: domain.name, records: expectedRecords(domain, this.mailHostname) };
  }

  async updateDomain(actor: Actor, id: string, change: DomainChange): Promise<DomainWithRecords> {
    if (change.dkim_selector === undefined && change.rotate_dkim_key !== true) {
      throw new AppError('validation_failed', 'nothing to change: send dkim_selector and/or rotate_dkim_key: true');
    }
    const current = await this.find(actor.tenantId, id);
    if (change.dkim_selector !== undefined && !DKIM_SELECTOR.test(change.dkim_selector)) {
      throw new AppError('validation_failed', 'dkim_selector must be one DNS label: lower-case letters, digits and inner hyphens, at most 63 characters', {
        details: [{ in: 'body', path: 'dkim_selector', message: 'not a DNS label' }],
      });
    }
    const rotate = change.rotate_dkim_key === true;
    if (rotate && change.dkim_selector === current.dkim_selector) {
      throw new AppError('validation_failed', 'a new DKIM key needs a new selector, so the old and new keys can be published side by side', {
        details: [{ in: 'body', path: 'dkim_selector', message: 'must differ from the current selector' }],
      });
    }
    const selector = change.dkim_selector ?? newSelector(current.dkim_selector);
    const key = rotate ? await this.generateDkimKey() : null;
    const updated = await domains.updateDkim(this.db, current.id, {
      selector,
      publicKey: key?.publicKey ?? current.dkim_public_key,
      privateKeyEnc: key?.privateKeyEnc ?? current.dkim_private_key_enc,
    });
    await this.record(actor, 'domain.updated', updated, { name: updated.name, old_dkim_selector: current.dkim_selector, dkim_selector: selector, dkim_key_rotated: rotate });
    return this.withRecords(updated);
  }

  async deleteDomain(actor: Actor, id: string): Promise<void> {
    if (!isUuid(id)) throw notFound();
    const deleted = await this.db.transaction().execute(async (trx) => {
      const domain = await domains.lockForTenant(trx, actor.tenantId, id);
      if (!domain) throw notFound();
      const mailboxes = await domains.countMailboxes(trx, domain.id);
      if (mailboxes > 0) {
        throw new AppError('conflict', `domain ${domain.name} still has ${mailboxes} ${mailboxes === 1 ? 'mailbox' : 'mailboxes'}; delete ${mailboxes === 1 ? 'it' : 'them'} first`, {
          details: [{ mailboxes }],
        });
      }
      await domains.deleteById(trx, domain.id);
      return domain;
    });
    await this.record(actor, 'domain.deleted', deleted, { name: deleted.name, status: deleted.status });
  }

  /** Queues a DNS check; a check already waiting for this domain is not queued twice. */
  async requestVerification(actor: Actor, id: string): Promise<{ id: string; name: string; status: DomainStatus; message: string }> {
    const domain = await this.find(actor.tenantId, id);
    await this.jobs.send(DOMAIN_VERIFY_QUEUE, { domainId: domain.id }, { singletonKey: domain.id });
    await this.record(actor, 'domain.verification.requested', domain, { name: domain.name, status: domain.status });
    return { id: domain.id, name: domain.name, status: domain.status, message: 'DNS verification queued; GET the domain to see the result' };
  }

  private async find(tenantId: string, id: string): Promise<Domain> {
    if (!isUuid(id)) throw notFound();
    const domain = await domains.getForTenant(this.db, tenantId, id);
    if (!domain) throw notFound();
    return domain;
  }

  private withRecords(domain: Domain): DomainWithRecords {
    return { ...publicDomain(domain), dns_records: expectedRecords(domain, this.mailHostname) };
  }

  private async generateDkimKey(): Promise<{ publicKey: string; privateKeyEnc: string }> {
    const { publicKey, privateKey } = await generateKeyPairAsync('rsa', {
      modulusLength: 2048,
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    });
    return { publicKey, privateKeyEnc: this.secrets.encrypt(privateKey) };
  }

  private async record(actor: Actor, action: string, domain: Domain, details: Record<string, unknown>): Promise<void> {
    await this.audit.record({ tenantId: actor.tenantId, actorUserId: actor.userId, actorEmail: actor.email, action, targetType: 'domain', targetId: domain.id, ip: actor.ip, details });
  }
}

export function publicDomain(d: Domain): PublicDomain {
  const stored = d.dns_results as StoredDnsResults | null;
  return {
    id: d.id,
    name: d.name,
    status: d.status,
    dkim_selector: d.dkim_selector,
    dns_results: stored?.records ?? null,
    status_reason: stored?.reason ?? null,
    last_checked_at: d.last_checked_at,
    verified_at: d.verified_at,
    created_at: d.created_at,
    updated_at: d.updated_at,
  };
}

function notFound(): AppError {
  return new AppError('not_found', 'domain not found');
}

/** `ms<yyyymmdd><4 hex>`: dated like the first selector, and never the current one. */
function newSelector(current: string): string {
  const day = new Date().toISOString().slice(0, 10).replace(/-/g, '');
  for (;;) {
    const candidate = `ms${day}${randomBytes(2).toString('hex')}`;
    if (candidate !== current) return candidate;
  }
}
