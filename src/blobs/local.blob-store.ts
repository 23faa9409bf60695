/**
 * Local-disk BlobStore under DATA_DIR/blobs. Staging: write to tmp/<uuid>, fsync the file.
 * Publishing: rename to the final path (atomic, replacing an identical copy), fsync the directory
 * so the new entry survives a power loss; directories created on the way are fsync'd in their
 * parents too. Every write is durable when its promise resolves.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream, type Dirent } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../core/errors.js';
import { assertSafeKey, STAGING_PREFIX, type BlobInfo, type BlobStore, type StagedBlob } from './blob-store.js';

export class LocalBlobStore implements BlobStore {
  readonly driver = 'local' as const;
  private readonly knownDirs = new Set<string>();

  constructor(private readonly root: string) {}

  async init(): Promise<this> {
    await this.ensureDir(path.join(this.root, STAGING_PREFIX));
    return this;
  }

  async stage(source: Readable | Buffer): Promise<StagedBlob> {
    // staging is spread over 256 directories: concurrent creates in one directory contend on
    // its lock (measured). Not cached, so it recovers if tmp/ is removed under a running server.
    const id = randomUUID();
    const tmpKey = `${STAGING_PREFIX}${id.slice(0, 2)}/${id}`;
    const tmpPath = this.pathOf(tmpKey);
    const hash = createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    });
    const input = Buffer.isBuffer(source) ? Readable.from([source]) : source;
    try {
      await fs.mkdir(path.dirname(tmpPath), { recursive: true });
      // flush: the file is fsync'd before the stream reports close
      await pipeline(input, meter, createWriteStream(tmpPath, { flags: 'wx', flush: true }));
    } catch (err) {
      await fs.rm(tmpPath, { force: true });
      throw storageError('staging a blob failed', err);
    }
    return this.stagedBlob(tmpPath, hash.digest('hex'), size);
  }

  private stagedBlob(tmpPath: string, sha256: string, size: number): StagedBlob {
    let done = false;
    return {
      sha256,
      size,
      publish: async (key: string) => {
        if (done) throw new Error('staged blob already published or discarded');
        const finalPath = this.pathOf(key);
        const dir = path.dirname(finalPath);
        try {
          await this.ensureDir(dir);
          await fs.rename(tmpPath, finalPath);
          done = true;
          await fsyncDir(dir);
        } catch (err) {
          throw storageError(`publishing blob ${key} failed`, err);
        }
      },
      discard: async () => {
        if (done) return;
        done = true;
        await fs.rm(tmpPath, { force: true });
      },
    };
  }

  async read(key: string): Promise<Readable> {
    const file = this.pathOf(key);
    try {
      // the stream owns the handle: passing only its numeric fd would let the garbage collector
      // close that descriptor mid-read (truncating the read) or after its number was reused
      const handle = await fs.open(file, 'r');
      return handle.createReadStream();
    } catch (err) {
      if (isNotFound(err)) throw new AppError('not_found', `blob ${key} not found`);
      throw storageError(`reading blob ${key} failed`, err);
    }
  }

  async stat(key: string): Promise<BlobInfo | null> {
    const file = this.pathOf(key);
    try {
      const st = await fs.stat(file);
      return { key, size: st.size, modifiedAt: st.mtime };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw storageError(`stat of blob ${key} failed`, err);
    }
  }

  async delete(key: string): Promise<void> {
    const file = this.pathOf(key);
    try {
      await fs.rm(file, { force: true });
      await fsyncDir(path.dirname(file)).catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
    } catch (err) {
      throw storageError(`deleting blob ${key} failed`, err);
    }
  }

  async *list(): AsyncIterable<BlobInfo> {
    yield* this.walk(this.root, '');
  }

  private async *walk(dir: string, prefix: string): AsyncIterable<BlobInfo> {
    let entries: Dirent[];
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    for (const entry of entries) {
      const key = `${prefix}${entry.name}`;
      if (entry.isDirectory()) {
        yield* this.walk(path.join(dir, entry.name), `${key}/`);
      } else if (entry.isFile()) {
        const st = await fs.stat(path.join(dir, entry.name)).catch(() => null);
        if (st) yield { key, size: st.size, modifiedAt: st.mtime };
      }
    }
  }

  async check(): Promise<void> {
    const probe = path.join(this.root, STAGING_PREFIX, `.ready-${process.pid}`);
    try {
      await fs.writeFile(probe, 'ok');
      await fs.rm(probe, { force: true });
    } catch (err) {
      throw storageError('blob store is not writable', err);
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private pathOf(key: string): string {
    assertSafeKey(key);
    return path.join(this.root, ...key.split('/'));
  }

  /** mkdir -p that fsyncs each parent whose entries it changed, cached per process. */
  private async ensureDir(dir: string): Promise<void> {
    if (this.knownDirs.has(dir)) return;
    const missing: string[] = [];
    for (let d = dir; ; d = path.dirname(d)) {
      try {
        await fs.stat(d);
        break;
      } catch (err) {
        if (!isNotFound(err)) throw err;
        missing.push(d);
        if (path.dirname(d) === d) break;
      }
    }
    for (const d of missing.reverse()) {
      await fs.mkdir(d).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      });
      await fsyncDir(path.dirname(d));
    }
    this.knownDirs.add(dir);
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

function storageError(message: string, cause: unknown): AppError {
  return new AppError('storage_unavailable', message, { cause });
}
