/**
 * QuotaFolder: the worker job that folds the quota ledger (quota_charges) into the mailbox
 * rows, so the ledger stays short and usage reads stay cheap. Usage is exact whether or not it
 * has run (readers add the unfolded charges); it only keeps the ledger small.
 */
import { QUOTA_FOLD_BATCH, QUOTA_FOLD_INTERVAL_MS } from '../core/limits.js';
import type { Logger } from '../core/logger.js';
import { PeriodicTask } from '../core/periodic-task.js';
import type { Db } from '../db/database.js';
import { foldCharges } from '../db/mailboxes.repository.js';

export class QuotaFolder {
  private readonly task: PeriodicTask<number>;

  constructor(
    private readonly db: Db,
    logger: Logger,
  ) {
    this.task = PeriodicTask.logging(() => this.foldAll(), logger, 'folding quota charges');
  }

  start(intervalMs = QUOTA_FOLD_INTERVAL_MS): void {
    this.task.start(intervalMs);
  }

  stop(): Promise<void> {
    return this.task.stop();
  }

  /** Folds every pending charge, in batches. Concurrent calls share the run in progress. */
  fold(): Promise<number> {
    return this.task.run();
  }

  private async foldAll(): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await foldCharges(this.db, QUOTA_FOLD_BATCH);
      total += n;
      if (n < QUOTA_FOLD_BATCH) return total;
    }
  }
}
