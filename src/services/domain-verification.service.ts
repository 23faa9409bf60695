/**
 * DomainVerifier: the DNS check of a domain, run as pg-boss jobs in the worker role. The API
 * only queues (`domain-verify`, one waiting job per domain); any process with the worker role
 * works the queue, so an API-only process's requests are still served. A daily schedule
 * (`domain-recheck`, DOMAIN_RECHECK_CRON) queues a check of every domain.
 *
 * A check resolves the MX, SPF, DKIM, DMARC and ownership records through the one resolver
 * (DNS_SERVERS), bypassing its cache, and stores a result per record in `dns_results` with
 * `last_checked_at`. Status: `verified` when MX, SPF, DKIM and the token all match (DMARC is
 * reported only), `failed` when any of them is missing or wrong. A DNS outage (timeout,
 * SERVFAIL) changes no status: results are stored and the job fails so pg-boss retries it.
 * `verified_at` is when the current verified period began (kept across re-checks that still
 * pass, cleared when a check fails). A name verified by another tenant cannot become verified
 * here (the partial unique index); such a check ends `failed` with that reason. Every status
 * change is audited as `domain.verification.changed` with the old and new status. Every check
 * reports its per-record results and verdict to the metrics.
 */
import type { PgBoss } from 'pg-boss';
import { AppError, describeError } from '../core/errors.js';
import { DOMAIN_RECHECK_BATCH, DOMAIN_RECHECK_CRON, DOMAIN_VERIFY_CONCURRENCY, DOMAIN_VERIFY_POLL_S, DOMAIN_VERIFY_RETRY_DELAY_S, DOMAIN_VERIFY_RETRY_LIMIT } from '../core/limits.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import type { Db } from '../db/database.js';
import * as domains from '../db/domains.repository.js';
import type { Domain, DomainStatus } from '../db/types.js';
import type { AuditService } from './audit.service.js';
import {
  checkDkim,
  checkDmarc,
  checkError,
  checkMx,
  checkSpf,
  checkVerification,
  expectedRecords,
  failingRecords,
  verdict,
  type DnsRecord,
  type RecordCheck,
  type RecordChecks,
  type RecordKey,
} from './domain-records.js';
import type { DnsResolve } from './dns-resolver.js';

export const DOMAIN_VERIFY_QUEUE = 'domain-verify';
export const DOMAIN_RECHECK_QUEUE = 'domain-recheck';

/** What the API needs of the job queue: PgBoss satisfies it. */
export interface DomainJobSender {
  send(name: string, data: object, options: { singletonKey: string }): Promise<string | null>;
}

/** What `dns_results` holds. */
export interface StoredDnsResults {
  records: RecordChecks;
  reason: string | null;
}

export interface VerifyJobData {
  domainId: string;
}

/** Codes node's resolver uses for "no such name / no such record": a stable answer, not an outage. */
const ABSENT = new Set(['ENOTFOUND', 'ENODATA']);

/** Creates the queues; every process that sends or works them calls it (it is idempotent). */
export async function createDomainQueues(boss: Pick<PgBoss, 'createQueue'>): Promise<void> {
  // `short`: at most one waiting job per singletonKey (the domain id), so repeated clicks on
  // "verify" queue one check, not many
  await boss.createQueue(DOMAIN_VERIFY_QUEUE, { policy: 'short', retryLimit: DOMAIN_VERIFY_RETRY_LIMIT, retryDelay: DOMAIN_VERIFY_RETRY_DELAY_S, retryBackoff: true, expireInSeconds: 300 });
  await boss.createQueue(DOMAIN_RECHECK_QUEUE, { policy: 'short', retryLimit: 2, expireInSeconds: 900 });
}

export class DomainVerifier {
  constructor(
    private readonly db: Db,
    private readonly resolve: DnsResolve,
    private readonly audit: AuditService,
    private readonly mailHostname: string,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {}

  /** Worker role: works both queues and (re)registers the daily schedule. */
  async startWorker(boss: Pick<PgBoss, 'work' | 'schedule' | 'send'>): Promise<void> {
    const polling = { pollingIntervalSeconds: DOMAIN_VERIFY_POLL_S };
    await boss.work<VerifyJobData>(DOMAIN_VERIFY_QUEUE, { ...polling, localConcurrency: DOMAIN_VERIFY_CONCURRENCY }, async (jobs) => {
      for (const job of jobs) await this.verifyDomain(job.data.domainId);
    });
    await boss.work(DOMAIN_RECHECK_QUEUE, polling, async () => {
      await this.queueAll(boss);
    });
    // `once`: a server that was down at the scheduled time re-checks once when it comes back
    await boss.schedule(DOMAIN_RECHECK_QUEUE, DOMAIN_RECHECK_CRON, null, { tz: 'UTC', missed: 'once' });
  }

  /** Queues a check of every domain, in id order and batches. Returns how many were queued or already waiting. */
  async queueAll(sender: DomainJobSender): Promise<number> {
    let after: string | null = null;
    let n = 0;
    for (;;) {
      const ids = await domains.idsAfter(this.db, after, DOMAIN_RECHECK_BATCH);
      for (const id of ids) await sender.send(DOMAIN_VERIFY_QUEUE, { domainId: id } satisfies VerifyJobData, { singletonKey: id });
      n += ids.length;
      if (ids.length < DOMAIN_RECHECK_BATCH) return n;
      after = ids[ids.length - 1]!;
    }
  }

  /**
   * Checks one domain's records and stores the outcome. A domain deleted since the job was queued
   * is skipped. Throws `dns_unavailable` after storing when DNS could not answer, so the job is retried.
   */
  async verifyDomain(domainId: string): Promise<DomainStatus | null> {
    const before = await domains.getById(this.db, domainId);
    if (!before) return null;
    const checks = await this.checkRecords(before);
    const outcome = verdict(checks);
    this.metrics.domainChecked(checks, outcome);
    const failing = failingRecords(checks);
    const change = await this.storeOutcome(domainId, checks, outcome, failing);
    if (!change) return null;
    if (change.from !== change.to) await this.recordChange(change.domain, change.from, change.to, failing, change.reason);
    if (outcome === 'inconclusive') {
      this.logger.warn({ event: 'domain.verification.inconclusive', domain_id: domainId, records: failing }, 'domain DNS check could not finish; will retry');
      throw new AppError('dns_unavailable', `DNS did not answer for ${failing.join(', ')} of ${before.name}`);
    }
    return change.to;
  }

  /**
   * Writes the outcome under the row lock. Two tenants verifying one name at once can both pass
   * the "verified elsewhere" test; the partial unique index stops the second, which then runs
   * again and sees the first.
   */
  private async storeOutcome(
    domainId: string,
    checks: RecordChecks,
    outcome: ReturnType<typeof verdict>,
    failing: RecordKey[],
  ): Promise<{ from: DomainStatus; to: DomainStatus; reason: string | null; domain: Domain } | null> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.db.transaction().execute(async (trx) => {
          const current = await domains.lockById(trx, domainId);
          if (!current) return null;
          let status: DomainStatus = outcome === 'inconclusive' ? current.status : outcome;
          let reason = outcome === 'failed' ? `not matching: ${failing.join(', ')}` : outcome === 'inconclusive' ? `DNS did not answer for: ${failing.join(', ')}` : null;
          if (status === 'verified' && current.status !== 'verified' && (await domains.isVerifiedElsewhere(trx, current.name, current.id))) {
            status = 'failed';
            reason = `${current.name} is verified by another organisation`;
          }
          const verifiedAt = status !== 'verified' ? null : current.status === 'verified' ? current.verified_at : new Date();
          await domains.recordCheck(trx, current.id, { status, verifiedAt, dnsResults: { records: checks, reason } satisfies StoredDnsResults });
          return { from: current.status, to: status, reason, domain: current };
        });
      } catch (err) {
        if (attempt >= 2 || (err as { code?: string }).code !== '23505') throw err;
      }
    }
  }

  private async checkRecords(domain: Domain): Promise<RecordChecks> {
    const expected = new Map(expectedRecords(domain, this.mailHostname).map((r) => [r.record, r]));
    const want = (key: RecordKey): DnsRecord => expected.get(key)!;
    const [mx, apexTxt, dkim, dmarc, token] = await Promise.all([
      this.lookup(want('mx'), 'MX'),
      this.lookup(want('spf'), 'TXT'),
      this.lookup(want('dkim'), 'TXT'),
      this.lookup(want('dmarc'), 'TXT'),
      this.lookup(want('verification'), 'TXT'),
    ]);
    const judge = <T>(key: RecordKey, answer: Answer<T>, check: (expected: DnsRecord, value: T) => RecordCheck): RecordCheck =>
      answer.ok ? check(want(key), answer.value) : checkError(want(key), answer.error);
    return {
      mx: judge('mx', mx as Answer<{ exchange: string; priority: number }[]>, checkMx),
      spf: judge('spf', apexTxt as Answer<string[]>, (e, v) => checkSpf(e, v, this.mailHostname)),
      dkim: judge('dkim', dkim as Answer<string[]>, checkDkim),
      dmarc: judge('dmarc', dmarc as Answer<string[]>, checkDmarc),
      verification: judge('verification', token as Answer<string[]>, checkVerification),
    };
  }

  /** One fresh lookup; "no such name/record" is an empty answer, anything else an error. TXT chunks are joined. */
  private async lookup(record: DnsRecord, rrtype: 'MX' | 'TXT'): Promise<Answer<unknown>> {
    try {
      const value = await this.resolve(record.host, rrtype, { fresh: true });
      if (rrtype === 'TXT') return { ok: true, value: (value as string[][]).map((chunks) => chunks.join('')) };
      return { ok: true, value };
    } catch (err) {
      if (ABSENT.has((err as NodeJS.ErrnoException).code ?? '')) return { ok: true, value: [] };
      return { ok: false, error: err };
    }
  }

  private async recordChange(domain: Domain, from: DomainStatus, to: DomainStatus, failing: RecordKey[], reason: string | null): Promise<void> {
    this.logger.info({ event: 'domain.verification.changed', domain_id: domain.id, from, to, failing }, `domain ${domain.name} is now ${to}`);
    await this.audit
      .record({
        tenantId: domain.tenant_id,
        action: 'domain.verification.changed',
        targetType: 'domain',
        targetId: domain.id,
        details: { name: domain.name, old_status: from, new_status: to, failing, reason },
      })
      .catch((err: unknown) => this.logger.error({ err: describeError(err), domain_id: domain.id }, 'could not audit a domain status change'));
  }
}

type Answer<T> = { ok: true; value: T } | { ok: false; error: unknown };
