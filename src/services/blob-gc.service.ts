/**
 * BlobCollector: removes blobs nobody references. Two kinds: rows whose reference count fell
 * to zero (deleted messages) and orphans, files with no row at all (a crash between writing a
 * blob and committing its transaction, or a staged file never published). Only objects older
 * than the grace period are touched, and each deletion happens while holding the key's row lock,
 * the same lock an ingest holds while publishing that key (see blobs/blob-store.ts). A row that
 * holds its bytes itself (small blobs, BLOB_INLINE_MAX_BYTES) is deleted without touching the store.
 *
 * While a backup runs (it holds the backup lock shared, services/backup-lock.ts) nothing is
 * deleted: a pass that finds the lock taken, before it starts or at any deletion, stops there
 * and says so in the log; the next interval tries again. Otherwise the backup's snapshot could
 * reference a blob whose file is gone by the time the backup copies it.
 */
import type { BlobStore } from '../blobs/blob-store.js';
import { BLOB_GC_BATCH } from '../core/limits.js';
import { PeriodicTask } from '../core/periodic-task.js';
import { describeError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Db } from '../db/database.js';
import { deleteRow, existingKeys, findUnreferenced, lockForDeletion } from '../db/blobs.repository.js';
import { backupRunning, tryCollectorLock } from './backup-lock.js';

export interface CollectResult {
  deleted: number;
  scanned: number;
  /** The pass stopped early (or never started) because a backup is running. */
  skipped: boolean;
}

type Outcome = 'deleted' | 'kept' | 'backup';

/** Thrown out of a pass when a deletion finds a backup running; pass() turns it into `skipped`. */
class BackupRunning extends Error {}

export class BlobCollector {
  private readonly task: PeriodicTask<CollectResult>;

  constructor(
    private readonly db: Db,
    private readonly blobs: BlobStore,
    private readonly graceMs: number,
    private readonly logger: Logger,
  ) {
    this.task = PeriodicTask.logging(() => this.pass(), logger, 'blob collection', { event: 'blob.gc.failed' });
  }

  start(intervalMs: number): void {
    this.task.start(intervalMs);
  }

  stop(): Promise<void> {
    return this.task.stop();
  }

  /** One full pass. Concurrent calls share the pass in progress. */
  collect(): Promise<CollectResult> {
    return this.task.run();
  }

  private async pass(): Promise<CollectResult> {
    const counts = { deleted: 0, scanned: 0 };
    try {
      if (await backupRunning(this.db)) throw new BackupRunning();
      const cutoff = new Date(Date.now() - this.graceMs);
      await this.collectRows(cutoff, counts);
      await this.collectFiles(cutoff, counts);
    } catch (err) {
      if (!(err instanceof BackupRunning)) throw err;
      this.logger.info({ event: 'blob.gc.skipped', ...counts }, 'blob collection skipped: a backup is running');
      return { ...counts, skipped: true };
    }
    if (counts.deleted > 0) this.logger.info({ event: 'blob.gc.deleted', ...counts }, 'unreferenced blobs deleted');
    return { ...counts, skipped: false };
  }

  /** 1. rows without references */
  private async collectRows(cutoff: Date, counts: { deleted: number }): Promise<void> {
    for (;;) {
      const keys = await findUnreferenced(this.db, cutoff, BLOB_GC_BATCH);
      if (keys.length === 0) break;
      let progress = 0;
      for (const key of keys) if ((await this.deleteOrStop(key, cutoff)) === 'deleted') progress++;
      counts.deleted += progress;
      if (progress === 0) break;
    }
  }

  /** 2. files without rows */
  private async collectFiles(cutoff: Date, counts: { deleted: number; scanned: number }): Promise<void> {
    let batch: string[] = [];
    for await (const info of this.blobs.list()) {
      counts.scanned++;
      if (info.modifiedAt >= cutoff) continue;
      batch.push(info.key);
      if (batch.length >= BLOB_GC_BATCH) {
        counts.deleted += await this.deleteOrphans(batch, cutoff);
        batch = [];
      }
    }
    if (batch.length > 0) counts.deleted += await this.deleteOrphans(batch, cutoff);
  }

  private async deleteOrphans(keys: string[], cutoff: Date): Promise<number> {
    const known = await existingKeys(this.db, keys);
    let deleted = 0;
    for (const key of keys) {
      if (!known.has(key) && (await this.deleteOrStop(key, cutoff)) === 'deleted') deleted++;
    }
    return deleted;
  }

  private async deleteOrStop(key: string, cutoff: Date): Promise<Outcome> {
    const outcome = await this.deleteIfUnreferenced(key, cutoff);
    if (outcome === 'backup') throw new BackupRunning();
    return outcome;
  }

  /**
   * Under the key's row lock: delete the blob if it is still unreferenced and old enough. The
   * row goes first: if a message or attachment still points at the key (a reference count gone
   * wrong), the foreign key refuses the delete and nothing is touched. Bytes kept in the row go
   * with it; the blob store is not involved (a file under the same key, from before the bytes were
   * inlined, is an orphan from then on, for the file pass). A failure is logged and skips only
   * this key, so one bad key cannot stop collection for good.
   */
  private async deleteIfUnreferenced(key: string, cutoff: Date): Promise<Outcome> {
    try {
      return await this.db.transaction().execute(async (trx): Promise<Outcome> => {
        // first: a backup that started since the pass began must not lose this blob
        if (!(await tryCollectorLock(trx))) return 'backup';
        const where = await lockForDeletion(trx, key);
        if (where === false) return 'kept';
        if (where === 'row') {
          await deleteRow(trx, key);
          return 'deleted';
        }
        const info = await this.blobs.stat(key);
        await deleteRow(trx, key);
        // a recent file was republished moments ago by an ingest that then rolled back or is
        // about to commit; without its row it is an orphan the grace period protects
        if (info && info.modifiedAt >= cutoff) return 'kept';
        if (info) await this.blobs.delete(key);
        return 'deleted';
      });
    } catch (err) {
      this.logger.error({ event: 'blob.gc.failed', key, err: describeError(err) }, 'could not collect a blob');
      return 'kept';
    }
  }
}
