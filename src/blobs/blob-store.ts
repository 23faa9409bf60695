/**
 * BlobStore: where raw messages and attachments live (local disk or Azure Blob). Every blob is
 * content-addressed (its key carries its SHA-256), so copies of the same bytes share one object.
 *
 * Writing is two steps so the database can serialise it with deletion:
 *   1. stage(source): stream the bytes to a private staging object, durably, hashing them;
 *   2. staged.publish(key): move them to the final key, durably.
 * The ingest path publishes while its transaction holds the `blobs` row lock of that key, and
 * the collector deletes a file only while holding the same lock, so a publish and a delete of
 * one key never interleave. A crash leaves at worst a staged or published object without a row:
 * an orphan that the collector removes after a grace period.
 *
 * Blobs up to BLOB_INLINE_MAX_BYTES never reach a store: their bytes are kept in their `blobs`
 * row (see spill-buffer.ts). Reading by key therefore goes through services/BlobReader, never
 * straight to read() here.
 */
import type { Readable } from 'node:stream';

export type BlobKind = 'raw' | 'att';

export interface StagedBlob {
  readonly sha256: string;
  readonly size: number;
  /** Moves the staged bytes to `key`; the bytes are durable at `key` when this resolves. */
  publish(key: string): Promise<void>;
  /** Removes the staged bytes if they were not published; safe to call more than once. */
  discard(): Promise<void>;
}

export interface BlobInfo {
  key: string;
  size: number;
  modifiedAt: Date;
}

export interface BlobStore {
  readonly driver: 'local' | 'azure';
  /** Streams `source` into a staging object (durable when resolved), computing its SHA-256. */
  stage(source: Readable | Buffer): Promise<StagedBlob>;
  /** A stream of the bytes at `key`; rejects with AppError `not_found` when absent. */
  read(key: string): Promise<Readable>;
  stat(key: string): Promise<BlobInfo | null>;
  /** Deletes `key`; deleting a missing key is not an error. */
  delete(key: string): Promise<void>;
  /** Every object, published and staged (staged keys start with `tmp/`). */
  list(): AsyncIterable<BlobInfo>;
  /** Throws when the store cannot be written (readiness). */
  check(): Promise<void>;
  close(): Promise<void>;
}

export const STAGING_PREFIX = 'tmp/';

/** The key of a content-addressed blob: `raw/ab/cd/abcd…` (two levels keep directories small). */
export function blobKey(kind: BlobKind, sha256: string): string {
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`not a SHA-256 hex digest: ${sha256}`);
  return `${kind}/${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}`;
}

/** Keys are ours, but a key read back from the database must never walk out of the store. */
export function assertSafeKey(key: string): void {
  if (!/^(raw|att|tmp|check)\/[0-9a-zA-Z/_.-]+$/.test(key) || key.includes('..') || key.includes('//')) {
    throw new Error(`invalid blob key: ${key}`);
  }
}

/** Reads a stream into memory; with `limit`, stops (and destroys the stream) once that many bytes are in. */
export async function readAll(stream: Readable, limit = Infinity): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    chunks.push(buf);
    size += buf.length;
    if (size >= limit) {
      stream.destroy();
      break;
    }
  }
  return Buffer.concat(chunks);
}
