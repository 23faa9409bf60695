/**
 * spillToStore(): reads a blob (a raw message or an attachment) and decides where its bytes will
 * live. Up to `inlineMaxBytes` they stay in memory and go into the blob's PostgreSQL row, in the
 * transaction that records the message (durable by the same WAL commit: no file, rename or fsync
 * of their own). Once the stream grows past the limit, what was buffered and the rest are staged
 * in the blob store, exactly as before. `inlineMaxBytes` 0 stages everything.
 *
 * Called by the ingest path for the raw message and by the parser for each attachment. The
 * result hashes and sizes the bytes the same way whichever place holds them, so keys stay
 * content-addressed (`raw/…`, `att/…`) and identical in form.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { BlobStore, StagedBlob } from './blob-store.js';

export interface SpooledBlob {
  readonly sha256: string;
  readonly size: number;
  /** The bytes when they fit the inline limit (to be written to the row), else null. */
  readonly inline: Buffer | null;
  /** The staged object when they did not, else null. */
  readonly staged: StagedBlob | null;
  /** Makes staged bytes durable at `key` (see BlobStore); nothing to do for inline bytes. */
  publish(key: string): Promise<void>;
  /** Drops staged bytes that will not be published; safe to call more than once. */
  discard(): Promise<void>;
}

export async function spillToStore(source: Readable, blobs: BlobStore, inlineMaxBytes: number): Promise<SpooledBlob> {
  if (inlineMaxBytes <= 0) return spooled(await blobs.stage(source));
  const iterator = source[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  const head: Buffer[] = [];
  let size = 0;
  try {
    for (;;) {
      const next = await iterator.next();
      if (next.done) break;
      const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
      head.push(chunk);
      size += chunk.length;
      if (size > inlineMaxBytes) return spooled(await blobs.stage(Readable.from(concat(head, iterator), { objectMode: false })));
    }
  } catch (err) {
    // ends the iteration, which destroys `source`: whoever feeds it must not wait on a reader
    // that is gone (a paused stream with an iterator attached ignores resume())
    await iterator.return?.();
    throw err;
  }
  return inlineBlob(head.length === 1 ? head[0]! : Buffer.concat(head, size));
}

function inlineBlob(bytes: Buffer): SpooledBlob {
  return {
    sha256: createHash('sha256').update(bytes).digest('hex'),
    size: bytes.length,
    inline: bytes,
    staged: null,
    publish: () => Promise.resolve(),
    discard: () => Promise.resolve(),
  };
}

function spooled(staged: StagedBlob): SpooledBlob {
  return {
    sha256: staged.sha256,
    size: staged.size,
    inline: null,
    staged,
    publish: (key) => staged.publish(key),
    discard: () => staged.discard(),
  };
}

async function* concat(head: Buffer[], rest: AsyncIterator<Buffer | string>): AsyncGenerator<Buffer> {
  yield* head;
  for (;;) {
    const next = await rest.next();
    if (next.done) return;
    yield Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
  }
}
