/**
 * OutboundQueue: delivers the `outbound` table, one row per recipient, in the worker role.
 *
 * Claiming: `UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED)` moves due rows (queued or
 * deferred with next_attempt_at passed, or `sending` whose lease ran out) to `sending` with a
 * lease (OUTBOUND_LEASE) and attempts + 1, so any number of workers can share the table. The
 * attempt count is the fencing token: a worker only records the outcome of the attempt it
 * claimed, so one that lost its lease cannot overwrite a newer attempt.
 *
 * Delivery: a `local` recipient goes through the ingest path into its INBOX (never over SMTP);
 * any other through the first usable route of the RoutePlanner. A route that cannot be used
 * (connect or authentication failure) is recorded in the attempt log and the next one is tried.
 * Outcomes: accepted → `sent`; permanent refusal → `bounced` plus an RFC 3464 bounce to the
 * sender; temporary failure → `deferred` until the next slot of OUTBOUND_RETRY_SCHEDULE (the last
 * slot repeats), and `bounced` once the row is older than OUTBOUND_MAX_AGE. A sender waiting
 * longer than OUTBOUND_DELAY_WARNING gets one delay notice. Bounces are sent with the null
 * sender and are never bounced themselves. A row that reaches `sent` or `bounced` drops its
 * reference on the raw blob in the same transaction.
 *
 * Crash window: a worker killed after the remote server accepted a message but before `sent` was
 * committed leaves the row `sending`; when its lease ends the row is claimed again and that
 * recipient gets the message a second time. That window is one round trip per recipient, so a
 * crash re-sends at most once per recipient (RFC 5321 §6.1 accepts duplicates over loss).
 *
 * Metrics: every recorded attempt reports its attempt log (fallbacks and the final outcome, by
 * route); pendingStats() is the one query the queue gauges read at scrape time.
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { sql } from 'kysely';
import { readAll } from '../blobs/blob-store.js';
import { describeError, isAppError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Metrics, QueueStats } from '../core/metrics.js';
import type { Db } from '../db/database.js';
import { addReferences, removeReferences } from '../db/blobs.repository.js';
import type { AttemptLogEntry, Outbound, Submission } from '../db/types.js';
import type { BlobReader } from '../services/blob-reader.service.js';
import type { IngestService } from '../services/ingest.service.js';
import type { RecipientService } from '../services/recipient.service.js';
import { smtpReplyFor } from '../smtp/reply-codes.js';
import type { DkimSigner } from './dkim-signer.js';
import { buildDsn, headerBlock, statusFromReply, type DsnAction } from './dsn.js';
import type { RoutePlanner } from './routes.js';
import { isDeliveryError } from './transport.js';

export interface QueueOptions {
  hostname: string;
  concurrency: number;
  pollIntervalMs: number;
  leaseMs: number;
  /** Waits before attempt 2, 3, ...; the last one repeats. */
  retrySchedule: number[];
  maxAgeMs: number;
  /** 0 = no delay warnings. */
  delayWarningMs: number;
  maxBytes: number;
  maxReceived: number;
}

type Outcome =
  | { result: 'sent'; route: string; reply: string; providerMessageId?: string }
  | { result: 'deferred' | 'bounced'; route: string | null; reply: string; status: string };

/** Bytes of the original message quoted in a bounce (its header block). */
const ORIGINAL_HEADER_BYTES = 64 * 1024;

export class OutboundQueue {
  /** The queue's notion of now: tests replace it to move through the retry schedule. */
  clock: () => Date = () => new Date();
  private readonly inFlight = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | null = null;
  private started = false;
  private filling = false;
  private refill = false;

  constructor(
    private readonly db: Db,
    private readonly blobReader: BlobReader,
    private readonly ingest: IngestService,
    private readonly recipients: RecipientService,
    private readonly routes: RoutePlanner,
    private readonly dkim: DkimSigner,
    private readonly options: QueueOptions,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {}

  start(): void {
    if (this.started) return;
    this.started = true;
    this.timer = setInterval(() => this.wake(), this.options.pollIntervalMs);
    this.timer.unref();
    this.wake();
  }

  /** Looks for due rows now (after a submission, or when a delivery slot frees up). */
  wake(): void {
    if (!this.started) return;
    setImmediate(() => void this.fill());
  }

  /** Stops claiming and waits for the deliveries in flight. */
  async stop(): Promise<void> {
    this.started = false;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await Promise.allSettled([...this.inFlight]);
    this.routes.close();
  }

  /** Claims and delivers everything due now, waiting for it (tests and the admin CLI). */
  async runDue(): Promise<number> {
    let total = 0;
    for (;;) {
      const rows = await this.claim(this.options.concurrency);
      if (rows.length === 0) break;
      total += rows.length;
      await Promise.all(rows.map((r) => this.deliver(r)));
    }
    return total;
  }

  private async fill(): Promise<void> {
    if (this.filling) {
      this.refill = true;
      return;
    }
    this.filling = true;
    try {
      do {
        this.refill = false;
        const free = this.options.concurrency - this.inFlight.size;
        if (free <= 0 || !this.started) break;
        const rows = await this.claim(free);
        for (const row of rows) {
          const p: Promise<void> = this.deliver(row).finally(() => {
            this.inFlight.delete(p);
            this.wake();
          });
          this.inFlight.add(p);
        }
        if (rows.length === free) this.refill = true;
      } while (this.refill);
    } catch (err) {
      this.logger.error({ event: 'outbound.claim.failed', err: describeError(err) }, 'could not claim outbound mail');
    } finally {
      this.filling = false;
    }
  }

  private async claim(limit: number): Promise<Outbound[]> {
    if (limit <= 0) return [];
    const now = this.clock();
    const lease = new Date(now.getTime() + this.options.leaseMs);
    const result = await sql<Outbound>`
      UPDATE outbound o
      SET status = 'sending', locked_until = ${lease}, attempts = o.attempts + 1, last_attempt_at = ${now}, updated_at = ${now}
      FROM (
        SELECT id FROM outbound
        WHERE (status IN ('queued', 'deferred') AND next_attempt_at <= ${now})
           OR (status = 'sending' AND locked_until < ${now})
        ORDER BY next_attempt_at
        LIMIT ${limit}
        FOR UPDATE SKIP LOCKED
      ) due
      WHERE o.id = due.id
      RETURNING o.*
    `.execute(this.db);
    return result.rows;
  }

  private async deliver(row: Outbound): Promise<void> {
    const log: AttemptLogEntry[] = [];
    let outcome: Outcome;
    try {
      outcome = row.route === 'local' ? await this.deliverLocal(row) : await this.deliverRemote(row, log);
    } catch (err) {
      outcome = { result: 'deferred', route: row.route, reply: `451 4.3.0 ${describeError(err)}`, status: '4.3.0' };
    }
    try {
      await this.finish(row, outcome, log);
    } catch (err) {
      this.logger.error({ event: 'outbound.finish.failed', id: row.id, err: describeError(err) }, 'could not record a delivery outcome');
    }
  }

  /** A recipient hosted here: the ingest path, with the same checks an SMTP delivery gets. */
  private async deliverLocal(row: Outbound): Promise<Outcome> {
    try {
      const target = await this.recipients.resolveRecipient(row.rcpt_to);
      const size = await this.rawSize(row.raw_blob_key);
      this.recipients.checkQuota(target, size);
      await this.ingest.acceptMessage(
        await this.blobReader.open(row.raw_blob_key),
        [{ tenantId: target.tenantId, mailboxId: target.mailboxId, address: target.address }],
        { mailFrom: row.mail_from || null, protocol: 'LOCAL', transactionId: row.id },
        { maxBytes: this.options.maxBytes, maxReceived: this.options.maxReceived, verify: false },
      );
      return { result: 'sent', route: 'local', reply: `250 2.0.0 delivered to <${target.address}>` };
    } catch (err) {
      const reply = smtpReplyFor(err);
      const permanent = isAppError(err) && err.kind === 'permanent';
      return { result: permanent ? 'bounced' : 'deferred', route: 'local', reply: `${reply.code} ${reply.enhanced} ${reply.text}`, status: reply.enhanced };
    }
  }

  private async deliverRemote(row: Outbound, log: AttemptLogEntry[]): Promise<Outcome> {
    const plan = await this.routes.plan(row);
    if (plan.length === 0) {
      return { result: 'deferred', route: null, reply: '451 4.3.5 no outbound route configured', status: '4.3.5' };
    }
    const raw = await this.messageBytes(row);
    let last: Outcome = { result: 'deferred', route: null, reply: '451 4.3.5 no outbound route configured', status: '4.3.5' };
    for (const [i, transport] of plan.entries()) {
      try {
        const sent = await transport.send({ mailFrom: row.mail_from, rcptTo: [row.rcpt_to], raw, id: row.id });
        return { result: 'sent', route: transport.route, reply: sent.reply, providerMessageId: sent.providerMessageId };
      } catch (err) {
        if (!isDeliveryError(err)) {
          return { result: 'deferred', route: transport.route, reply: `451 4.3.0 ${describeError(err)}`, status: '4.3.0' };
        }
        const status = err.status ?? statusFromReply(err.reply, err.kind === 'permanent' ? '5.0.0' : '4.0.0');
        if (err.routeUnavailable) {
          last = { result: 'deferred', route: transport.route, reply: err.reply, status: status.startsWith('5') ? `4${status.slice(1)}` : status };
          if (i < plan.length - 1) {
            log.push({ at: this.clock().toISOString(), route: transport.route, outcome: 'fallback', reply: err.reply });
            this.logger.warn({ event: 'outbound.route.fallback', id: row.id, route: transport.route, reply: err.reply }, 'route unavailable, trying the next one');
          }
          continue;
        }
        return { result: err.kind === 'permanent' ? 'bounced' : 'deferred', route: transport.route, reply: err.reply, status };
      }
    }
    return last;
  }

  /** The bytes as they leave: the DKIM signature (made once, at the first attempt) and the stored message. */
  private async messageBytes(row: Outbound): Promise<Buffer> {
    const raw = await readAll(await this.blobReader.open(row.raw_blob_key));
    if (!row.submission_id) return raw;
    const sub = await this.db.selectFrom('submissions').select(['id', 'headers_prefix', 'from_address']).where('id', '=', row.submission_id).executeTakeFirst();
    if (!sub) return raw;
    let prefix = sub.headers_prefix;
    if (!prefix && row.kind === 'mail' && sub.from_address.includes('@')) {
      const signature = await this.dkim.sign(raw, sub.from_address.split('@')[1]!);
      if (signature) {
        // the first attempt to sign wins: every recipient and retry sends the same bytes
        await this.db.updateTable('submissions').set({ headers_prefix: signature }).where('id', '=', sub.id).where('headers_prefix', '=', '').execute();
        const stored = await this.db.selectFrom('submissions').select('headers_prefix').where('id', '=', sub.id).executeTakeFirstOrThrow();
        prefix = stored.headers_prefix;
      }
    }
    return prefix ? Buffer.concat([Buffer.from(prefix, 'latin1'), raw]) : raw;
  }

  private async finish(row: Outbound, outcome: Outcome, log: AttemptLogEntry[]): Promise<void> {
    const now = this.clock();
    let final = outcome;
    if (final.result === 'deferred' && now.getTime() - row.created_at.getTime() >= this.options.maxAgeMs) {
      const days = Math.round((this.options.maxAgeMs / 86_400_000) * 10) / 10;
      // X.4.7 "delivery time expired" (RFC 3463), final: 5
      final = { result: 'bounced', route: final.route, reply: `gave up after ${days} days; last error: ${final.reply}`, status: '5.4.7' };
    }
    log.push({ at: now.toISOString(), route: final.route ?? 'none', outcome: final.result, reply: final.reply });

    let bounceId: string | null = null;
    if (final.result === 'bounced') {
      bounceId = await this.notifySender(row, 'failed', final.status, final.reply).catch((err: unknown) => {
        this.logger.error({ event: 'outbound.dsn.failed', id: row.id, err: describeError(err) }, 'could not create a bounce');
        return null;
      });
    }
    let delayWarned = false;
    if (
      final.result === 'deferred' &&
      this.options.delayWarningMs > 0 &&
      !row.delay_warned_at &&
      now.getTime() - row.created_at.getTime() >= this.options.delayWarningMs
    ) {
      delayWarned = (await this.notifySender(row, 'delayed', final.status, final.reply).catch(() => null)) !== null;
    }

    const recorded = await this.db.transaction().execute(async (trx) => {
      const base = {
        route: final.route,
        last_reply: final.reply,
        locked_until: null,
        updated_at: now,
        attempt_log: sql<string>`attempt_log || ${JSON.stringify(log)}::jsonb`,
      };
      let update;
      if (final.result === 'sent') {
        update = { ...base, status: 'sent' as const, sent_at: now, provider_message_id: final.providerMessageId ?? null };
      } else if (final.result === 'bounced') {
        update = { ...base, status: 'bounced' as const, bounce_submission_id: bounceId };
      } else {
        update = {
          ...base,
          status: 'deferred' as const,
          next_attempt_at: new Date(now.getTime() + this.retryDelay(row.attempts)),
          ...(delayWarned ? { delay_warned_at: now } : {}),
        };
      }
      const done = await trx
        .updateTable('outbound')
        .set(update)
        .where('id', '=', row.id)
        .where('status', '=', 'sending')
        .where('attempts', '=', row.attempts)
        .executeTakeFirst();
      if (Number(done.numUpdatedRows) === 1 && final.result !== 'deferred') await removeReferences(trx, [row.raw_blob_key]);
      return Number(done.numUpdatedRows) === 1;
    });
    // a worker that lost its lease recorded nothing, so it counts nothing
    if (recorded) this.metrics.deliveryRecorded(log);
    this.logger.info(
      { event: `outbound.${final.result}`, id: row.id, attempt: row.attempts, route: final.route, reply: final.reply.slice(0, 200) },
      `outbound ${final.result}`,
    );
  }

  /**
   * A provider reported a bounce for a row already handed over (delivery webhooks): the sender
   * gets the same bounce a refusal during delivery gives, once.
   */
  async notifyLateBounce(outboundId: string, reply: string): Promise<void> {
    const row = await this.db.selectFrom('outbound').selectAll().where('id', '=', outboundId).executeTakeFirst();
    if (!row || row.status !== 'bounced' || row.bounce_submission_id) return;
    const id = await this.notifySender(row, 'failed', statusFromReply(reply, '5.0.0'), reply);
    if (id) await this.db.updateTable('outbound').set({ bounce_submission_id: id }).where('id', '=', row.id).execute();
  }

  /**
   * Unfinished rows by state and the age of the oldest (database clock), for the metrics gauges.
   * Each branch matches a partial index (outbound_due_idx, outbound_lease_idx).
   */
  async pendingStats(): Promise<QueueStats[]> {
    const result = await sql<{ state: QueueStats['state']; count: number; age: number }>`
      SELECT status AS state, count(*)::int AS count, extract(epoch FROM now() - min(created_at))::float8 AS age
      FROM outbound WHERE status IN ('queued', 'deferred') GROUP BY status
      UNION ALL
      SELECT status, count(*)::int, extract(epoch FROM now() - min(created_at))::float8
      FROM outbound WHERE status = 'sending' GROUP BY status
    `.execute(this.db);
    return result.rows.map((r) => ({ state: r.state, count: r.count, oldestAgeSeconds: Math.max(0, r.age) }));
  }

  private retryDelay(attempts: number): number {
    const schedule = this.options.retrySchedule;
    return schedule[Math.min(Math.max(attempts - 1, 0), schedule.length - 1)]!;
  }

  /**
   * A delivery status notification (RFC 3464) to the envelope sender, queued like any mail with
   * the null sender: into the sender's INBOX through the ingest path when the sender is hosted
   * here, else out through the routes. Never for a bounce (null sender) itself.
   */
  private async notifySender(row: Outbound, action: DsnAction, status: string, diagnostic: string): Promise<string | null> {
    if (!row.mail_from || row.kind === 'dsn') return null;
    const sub: Pick<Submission, 'message_id'> | undefined = row.submission_id
      ? await this.db.selectFrom('submissions').select('message_id').where('id', '=', row.submission_id).executeTakeFirst()
      : undefined;
    const now = this.clock();
    const dsn = buildDsn({
      hostname: this.options.hostname,
      originalSender: row.mail_from,
      recipients: [{ address: row.rcpt_to, action, status, diagnostic }],
      originalHeaders: await this.originalHeaders(row.raw_blob_key),
      originalMessageId: sub?.message_id ?? undefined,
      arrivalDate: row.created_at,
      lastAttemptDate: now,
      willRetryUntil: action === 'delayed' ? new Date(row.created_at.getTime() + this.options.maxAgeMs) : undefined,
      date: now,
    });
    const id = randomUUID();
    const senderDomain = row.mail_from.split('@')[1]?.toLowerCase() ?? '';
    const hosted = await this.db.selectFrom('domains').select('id').where('name', '=', senderDomain).executeTakeFirst();
    await this.ingest.acceptMessage(
      Readable.from([dsn]),
      [],
      { mailFrom: null, protocol: 'LOCAL', transactionId: id },
      {
        maxBytes: Math.max(this.options.maxBytes, dsn.length),
        maxReceived: this.options.maxReceived,
        verify: false,
        record: async (trx, stored) => {
          await trx
            .insertInto('submissions')
            .values({
              id,
              tenant_id: row.tenant_id,
              user_id: null,
              source: 'dsn',
              status: 'submitted',
              mail_from: '',
              from_address: `mailer-daemon@${this.options.hostname}`,
              subject: stored.parsed.subject,
              to_addresses: JSON.stringify([row.mail_from]),
              cc_addresses: '[]',
              bcc_addresses: '[]',
              message_id: stored.parsed.messageId,
              raw_blob_key: stored.rawKey,
              raw_size: stored.size,
              submitted_at: now,
            })
            .execute();
          await trx
            .insertInto('outbound')
            .values({
              tenant_id: row.tenant_id,
              user_id: null,
              submission_id: id,
              kind: 'dsn',
              raw_blob_key: stored.rawKey,
              mail_from: '',
              rcpt_to: row.mail_from,
              route: hosted ? 'local' : null,
            })
            .execute();
          await addReferences(trx, [{ key: stored.rawKey, sha256: stored.sha256, size: stored.size, count: 1, data: null }]);
        },
      },
    );
    this.logger.info({ event: 'outbound.dsn.queued', id: row.id, dsn: id, action }, action === 'failed' ? 'bounce queued' : 'delay notice queued');
    this.wake();
    return id;
  }

  /** The original header block, or nothing when the bytes are already gone (a late bounce). */
  private async originalHeaders(key: string): Promise<Buffer> {
    try {
      return headerBlock(await readAll(await this.blobReader.open(key), ORIGINAL_HEADER_BYTES));
    } catch {
      return Buffer.alloc(0);
    }
  }

  private async rawSize(key: string): Promise<number> {
    const row = await this.db.selectFrom('blobs').select('size').where('key', '=', key).executeTakeFirst();
    return row?.size ?? 0;
  }
}
