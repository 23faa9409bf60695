/**
 * QuotaFolder: the worker job that folds the quota ledger (quota_charges) into the mailbox
 * rows, so the ledger stays short and usage reads stay cheap. Usage is exact whether or not it
 * has run (readers add the unfolded charges); it only keeps the ledger small.
 */
import { describeError } from '../core/errors.js';
import { QUOTA_FOLD_BATCH, QUOTA_FOLD_INTERVAL_MS } from '../core/limits.js';
import type { Logger } from '../core/logger.js';
import type { Db } from '../db/database.js';
import { foldCharges } from '../db/mailboxes.repository.js';

export class QuotaFolder {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | null = null;

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
  ) {}

  start(intervalMs = QUOTA_FOLD_INTERVAL_MS): void {
    this.timer = setInterval(() => {
      this.fold().catch((err: unknown) => this.logger.error({ err: describeError(err) }, 'folding quota charges failed'));
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }

  /** Folds every pending charge, in batches. Concurrent calls share the run in progress. */
  fold(): Promise<number> {
    this.running ??= (async () => {
      let total = 0;
      for (;;) {
        const n = await foldCharges(this.db, QUOTA_FOLD_BATCH);
        total += n;
        if (n < QUOTA_FOLD_BATCH) return total;
      }
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }
}
