/**
 * RecipientService.resolveRecipient(): decides whether an address given in RCPT TO is a local
 * mailbox we accept mail for, with no way to turn the MX into a relay. Addresses are normalised
 * (lower case, `+detail` sub-addressing removed) and must be a plain `local@domain` of one of our
 * domains: percent-hack (`a%b@ours`), bang paths (`b!a@ours`), quoted or nested `@`, source
 * routes (`@x:a@ours`) and address literals (`a@[1.2.3.4]`) are refused as relay attempts.
 */
import { AppError } from '../core/errors.js';
import type { Db } from '../db/database.js';
import { findForDelivery } from '../db/mailboxes.repository.js';

export interface LocalRecipient {
  tenantId: string;
  mailboxId: string;
  /** The normalised mailbox address the copy is stored under. */
  address: string;
  quotaBytes: number;
  usedBytes: number;
}

/** A plain dot-atom local part (RFC 5322 §3.4.1) without routing characters. */
const LOCAL_PART = /^[a-z0-9!#$&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$&'*+/=?^_`{|}~-]+)*$/;
const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export interface SplitAddress {
  local: string;
  domain: string;
}

/**
 * Splits and normalises an envelope address; null when it is not a plain local@domain.
 * Exported for the table-driven unit test.
 */
export function splitPlainAddress(raw: string): SplitAddress | null {
  const address = raw.trim().toLowerCase();
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return null;
  const local = address.slice(0, at);
  let domain = address.slice(at + 1);
  if (domain.endsWith('.')) domain = domain.slice(0, -1);
  if (!LOCAL_PART.test(local) || local.includes('!') || local.includes('%')) return null;
  if (!DOMAIN.test(domain)) return null;
  return { local, domain };
}

export class RecipientService {
  constructor(private readonly db: Db) {}

  async resolveRecipient(raw: string): Promise<LocalRecipient> {
    const split = splitPlainAddress(raw);
    if (!split) {
      throw new AppError('relay_denied', `relay access denied: <${printable(raw)}> is not a plain address of a domain we host`);
    }
    // one query in the common case: the exact address, or its base without a +detail
    const plus = split.local.indexOf('+');
    const exact = `${split.local}@${split.domain}`;
    const candidates: [string] | [string, string] = plus > 0 ? [exact, `${split.local.slice(0, plus)}@${split.domain}`] : [exact];
    const found = await findForDelivery(this.db, candidates);
    const mailbox = found.find((m) => m.address === candidates[0]) ?? found[0];
    if (mailbox) {
      return {
        tenantId: mailbox.tenant_id,
        mailboxId: mailbox.id,
        address: mailbox.address,
        quotaBytes: mailbox.quota_bytes,
        usedBytes: mailbox.used_bytes,
      };
    }
    const hosted = await this.db.selectFrom('domains').select('id').where('name', '=', split.domain).limit(1).executeTakeFirst();
    if (!hosted) throw new AppError('relay_denied', `relay access denied: we do not accept mail for ${split.domain}`);
    throw new AppError('mailbox_not_found', `no mailbox here by the name <${candidates[0]}>`);
  }

  /** RCPT-time quota check: full mailboxes, or a declared SIZE that will not fit, are refused. */
  checkQuota(recipient: LocalRecipient, declaredSize: number): void {
    if (recipient.usedBytes >= recipient.quotaBytes || recipient.usedBytes + declaredSize > recipient.quotaBytes) {
      throw new AppError('quota_exceeded', `mailbox <${recipient.address}> is full`);
    }
  }
}

function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
}
