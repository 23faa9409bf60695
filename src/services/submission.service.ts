/**
 * SubmissionService.submit(): the ONE send path. Mail submitted over SMTP (after AUTH), sent
 * through the API or written in the webmail comes here. In order:
 * 1. the envelope sender must be one the user may use (checkSender: their own mailbox; owners and
 *    admins any address of their tenant's domains) on a verified domain;
 * 2. recipients are plain addresses; the message counts against the user's hourly and daily send
 *    limits when at least one recipient is not hosted here (local mail and bounces never count),
 *    once its header block passed the checks below (a message refused later, e.g. for its size,
 *    has still counted: the limit errs on the safe side);
 * 3. the bytes pass through SubmissionHeaders (one From:, which the user may use; Bcc: removed;
 *    Date:/Message-ID: added when missing) into the ingest path, which stores the copy for the
 *    sender's Sent folder and, in the same transaction, the submission row, one outbound row per
 *    recipient (`local` ones are delivered through the ingest path by the queue, never over SMTP)
 *    and one blob reference per outbound row;
 * 4. the delivery queue is woken.
 * Nothing is queued unless everything is: a refusal at any step leaves no row behind.
 * DKIM signing happens at first delivery (delivery/dkim-signer.ts), with the domain's key then.
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { AppError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Db } from '../db/database.js';
import { addReferences } from '../db/blobs.repository.js';
import type { OutboundStatus, UserRole } from '../db/types.js';
import type { IngestService } from './ingest.service.js';
import type { Limiter } from './rate-limit.service.js';
import { splitPlainAddress } from './recipient.service.js';
import { SubmissionHeaders } from './submission-headers.js';
import type { Protocol } from './trace-headers.js';

export interface Sender {
  userId: string;
  tenantId: string;
  role: UserRole;
  email: string;
}

export interface SubmitInput {
  sender: Sender;
  source: 'smtp' | 'api' | 'webmail';
  /** Envelope sender; must be one the sender may use. */
  mailFrom: string;
  /** Envelope recipients (to + cc + bcc). */
  recipients: string[];
  /** The complete RFC 5322 message, CRLF line endings. */
  message: Readable;
  /** What /api/mails shows; defaults to the envelope recipients as `to`. */
  display?: { to: string[]; cc: string[]; bcc: string[] };
  /** A draft submission (status 'draft') this send replaces. */
  draftId?: string;
  remoteIp?: string;
  /** SMTP: the transaction id and protocol for the Received field. */
  transactionId?: string;
  protocol?: Protocol;
  helo?: string;
}

export interface SubmitResult {
  id: string;
  messageId: string | null;
  sentCopyId: string | null;
  recipients: { address: string; status: OutboundStatus }[];
}

export interface SubmissionOptions {
  hostname: string;
  maxBytes: number;
  maxReceived: number;
  maxRecipients: number;
  limitPerHour: number;
  limitPerDay: number;
}

export class SubmissionService {
  /** Called after a submission committed: the delivery queue sets it to wake itself. */
  onQueued: () => void = () => undefined;

  constructor(
    private readonly db: Db,
    private readonly ingest: IngestService,
    private readonly limits: { hour: Limiter; day: Limiter },
    private readonly options: SubmissionOptions,
    private readonly logger: Logger,
  ) {}

  /** Throws sender_not_allowed / domain_not_verified unless `sender` may send as `address`. */
  async checkSender(sender: Sender, address: string): Promise<void> {
    const split = splitPlainAddress(address);
    if (!split) throw new AppError('sender_not_allowed', `<${printable(address)}> is not an address you may send from`);
    const domain = await this.db
      .selectFrom('domains')
      .select(['status'])
      .where('tenant_id', '=', sender.tenantId)
      .where('name', '=', split.domain)
      .executeTakeFirst();
    if (!domain) throw new AppError('sender_not_allowed', `<${split.local}@${split.domain}> is not an address of your organisation`);
    if (sender.role === 'member') {
      const own = await this.ownAddresses(sender);
      const base = split.local.includes('+') ? `${split.local.slice(0, split.local.indexOf('+'))}@${split.domain}` : `${split.local}@${split.domain}`;
      if (!own.includes(`${split.local}@${split.domain}`) && !own.includes(base)) {
        const yours = own.length > 0 ? `; you may send as <${own.join('>, <')}>` : '';
        throw new AppError('sender_not_allowed', `you may not send as <${split.local}@${split.domain}>${yours}`);
      }
    }
    if (domain.status !== 'verified') {
      throw new AppError('domain_not_verified', `the domain ${split.domain} is not verified yet; publish its DNS records and verify it before sending`);
    }
  }

  async submit(input: SubmitInput): Promise<SubmitResult> {
    const { sender } = input;
    const recipients = uniqueRecipients(input.recipients);
    if (recipients.length === 0) throw new AppError('bad_address', 'the message has no recipients');
    if (recipients.length > this.options.maxRecipients) {
      throw new AppError('too_many_recipients', `too many recipients, at most ${this.options.maxRecipients} per message`);
    }
    await this.checkSender(sender, input.mailFrom);
    const local = await this.hostedDomains(recipients);
    const leaves = recipients.some((r) => !local.has(r.split('@')[1]!));

    const id = input.draftId ?? randomUUID();
    const mailbox = await this.db.selectFrom('mailboxes').select(['id', 'address']).where('user_id', '=', sender.userId).orderBy('created_at').executeTakeFirst();
    // the send limit is counted once the header block passed its checks, while the bytes still
    // stream: never inside the ingest transaction, whose connection would then wait on another
    // one from the same pool (a deadlock once every connection is a submission doing that)
    const headers = new SubmissionHeaders(input.mailFrom.split('@')[1]!.toLowerCase(), async (from) => {
      await this.checkSender(sender, from);
      if (leaves) await this.countAgainstLimits(sender);
    });
    input.message.once('error', (err) => headers.destroy(err));
    const source = input.message.pipe(headers);
    const display = input.display ?? { to: recipients, cc: [], bcc: [] };
    let outcome: { id: string; status: OutboundStatus }[] = [];

    const result = await this.ingest.acceptMessage(
      source,
      mailbox ? [{ tenantId: sender.tenantId, mailboxId: mailbox.id, address: mailbox.address, folder: 'sent', seen: true }] : [],
      {
        mailFrom: input.mailFrom,
        remoteIp: input.remoteIp,
        helo: input.helo,
        protocol: input.protocol ?? 'HTTP',
        transactionId: input.transactionId ?? id,
      },
      {
        maxBytes: this.options.maxBytes,
        maxReceived: this.options.maxReceived,
        verify: false,
        record: async (trx, stored) => {
          const facts = headers.facts;
          const row = {
            tenant_id: sender.tenantId,
            user_id: sender.userId,
            source: input.source,
            status: 'submitted' as const,
            mail_from: input.mailFrom,
            from_address: facts?.from ?? input.mailFrom,
            subject: stored.parsed.subject,
            to_addresses: JSON.stringify(display.to),
            cc_addresses: JSON.stringify(display.cc),
            bcc_addresses: JSON.stringify(display.bcc),
            message_id: facts?.messageId ?? stored.parsed.messageId,
            stored_message_id: stored.messageIds[0] ?? null,
            raw_blob_key: stored.rawKey,
            raw_size: stored.size,
            submitted_at: new Date(),
          };
          if (input.draftId) {
            const updated = await trx
              .updateTable('submissions')
              .set({ ...row, draft: null })
              .where('id', '=', input.draftId)
              .where('user_id', '=', sender.userId)
              .where('status', '=', 'draft')
              .executeTakeFirst();
            if (Number(updated.numUpdatedRows) !== 1) throw new AppError('not_found', 'no such draft');
          } else {
            await trx.insertInto('submissions').values({ id, ...row }).execute();
          }
          const inserted = await trx
            .insertInto('outbound')
            .values(
              recipients.map((rcpt) => ({
                tenant_id: sender.tenantId,
                user_id: sender.userId,
                message_id: stored.messageIds[0] ?? null,
                submission_id: id,
                raw_blob_key: stored.rawKey,
                mail_from: input.mailFrom,
                rcpt_to: rcpt,
                route: local.has(rcpt.split('@')[1]!) ? 'local' : null,
              })),
            )
            .returning(['id', 'status'])
            .execute();
          outcome = inserted;
          // each queued recipient keeps the raw bytes alive until it is final
          await addReferences(trx, [{ key: stored.rawKey, sha256: stored.sha256, size: stored.size, count: recipients.length, data: null }]);
        },
      },
    );
    this.logger.info(
      { event: 'submission.accepted', id, source: input.source, user: sender.userId, rcpt: recipients.length, size: result.size },
      'message submitted',
    );
    this.onQueued();
    return {
      id,
      messageId: headers.facts?.messageId ?? null,
      sentCopyId: result.messageIds[0] ?? null,
      recipients: recipients.map((address, i) => ({ address, status: outcome[i]?.status ?? 'queued' })),
    };
  }

  private async ownAddresses(sender: Sender): Promise<string[]> {
    const rows = await this.db.selectFrom('mailboxes').select('address').where('user_id', '=', sender.userId).execute();
    return rows.map((r) => r.address);
  }

  /** Which of the recipients' domains are hosted here (by any tenant): mail to them stays local. */
  private async hostedDomains(recipients: string[]): Promise<Set<string>> {
    const domains = [...new Set(recipients.map((r) => r.split('@')[1]!))];
    const rows = await this.db.selectFrom('domains').select('name').where('name', 'in', domains).execute();
    return new Set(rows.map((r) => r.name));
  }

  /** Throws rate_limited when the sender is already over a send limit (counts nothing). */
  async checkLimits(sender: Sender): Promise<void> {
    const key = `user:${sender.userId}`;
    await this.limits.hour.check(key, `sending limit reached: at most ${this.options.limitPerHour} messages per hour; try again later`);
    await this.limits.day.check(key, `sending limit reached: at most ${this.options.limitPerDay} messages per day; try again later`);
  }

  private async countAgainstLimits(sender: Sender): Promise<void> {
    const key = `user:${sender.userId}`;
    await this.limits.hour.consume(key, `sending limit reached: at most ${this.options.limitPerHour} messages per hour; try again later`);
    await this.limits.day.consume(key, `sending limit reached: at most ${this.options.limitPerDay} messages per day; try again later`);
  }
}

/**
 * Lower-cased, de-duplicated plain addresses. Anything else is refused: envelope recipients
 * reach other servers as they are, so they must be exactly one plain address each.
 */
function uniqueRecipients(raw: string[]): string[] {
  const out = new Set<string>();
  for (const r of raw) {
    const split = splitPlainAddress(r);
    if (!split) throw new AppError('bad_address', `<${printable(r)}> is not a valid recipient address`);
    out.add(`${split.local}@${split.domain}`);
  }
  return [...out];
}

function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 254);
}

