/**
 * BlobReader.open(key): the one way to read the bytes of a raw message or an attachment by its
 * key. Small blobs live in their `blobs` row (BLOB_INLINE_MAX_BYTES, migration 0003), larger
 * ones in the blob store; callers never need to know which. Rejects with AppError `not_found`
 * when neither holds the key.
 */
import { Readable } from 'node:stream';
import type { BlobStore } from '../blobs/blob-store.js';
import type { Db } from '../db/database.js';
import { inlineData } from '../db/blobs.repository.js';

export class BlobReader {
  constructor(
    private readonly db: Db,
    private readonly blobs: BlobStore,
  ) {}

  async open(key: string): Promise<Readable> {
    const data = await inlineData(this.db, key);
    if (data) return Readable.from([data], { objectMode: false });
    return this.blobs.read(key);
  }
}
