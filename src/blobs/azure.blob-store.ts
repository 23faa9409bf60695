/**
 * Azure Blob Storage BlobStore (block blobs in AZURE_STORAGE_CONTAINER). Staging streams the
 * bytes to `tmp/<uuid>` while hashing them; an upload is durable when Azure acknowledges it.
 * Publishing is a server-side copy to the final key followed by deleting the staged object, so
 * the bytes never pass through this process twice. Tested against Azurite.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { BlobServiceClient, RestError, type ContainerClient } from '@azure/storage-blob';
import { AppError } from '../core/errors.js';
import { assertSafeKey, STAGING_PREFIX, type BlobInfo, type BlobStore, type StagedBlob } from './blob-store.js';

const UPLOAD_BUFFER_BYTES = 4 * 1024 * 1024;
const UPLOAD_CONCURRENCY = 4;
const COPY_POLL_MS = 200;
/**
 * The SDK's default retry policy takes ~16 s to give up on an unreachable endpoint, which would
 * hold /readyz and every SMTP transaction that long during an outage. Three quick tries instead;
 * the SMTP client retries the whole transaction later anyway (451).
 */
const RETRY_OPTIONS = { maxTries: 3, retryDelayInMs: 300, maxRetryDelayInMs: 1500 };

export class AzureBlobStore implements BlobStore {
  readonly driver = 'azure' as const;
  private readonly container: ContainerClient;

  constructor(connectionString: string, containerName: string) {
    this.container = BlobServiceClient.fromConnectionString(connectionString, { retryOptions: RETRY_OPTIONS }).getContainerClient(containerName);
  }

  async init(): Promise<this> {
    try {
      await this.container.createIfNotExists();
    } catch (err) {
      throw storageError(`cannot open Azure container ${this.container.containerName}`, err);
    }
    return this;
  }

  async stage(source: Readable | Buffer): Promise<StagedBlob> {
    const tmpKey = `${STAGING_PREFIX}${randomUUID()}`;
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
    input.once('error', (err) => meter.destroy(err));
    input.pipe(meter);
    const client = this.container.getBlockBlobClient(tmpKey);
    try {
      await client.uploadStream(meter, UPLOAD_BUFFER_BYTES, UPLOAD_CONCURRENCY);
    } catch (err) {
      await client.deleteIfExists().catch(() => undefined);
      throw storageError('staging a blob failed', err);
    }
    return this.stagedBlob(tmpKey, hash.digest('hex'), size);
  }

  private stagedBlob(tmpKey: string, sha256: string, size: number): StagedBlob {
    let done = false;
    const tmp = this.container.getBlockBlobClient(tmpKey);
    return {
      sha256,
      size,
      publish: async (key: string) => {
        if (done) throw new Error('staged blob already published or discarded');
        assertSafeKey(key);
        try {
          const poller = await this.container.getBlockBlobClient(key).beginCopyFromURL(tmp.url, { intervalInMs: COPY_POLL_MS });
          const result = await poller.pollUntilDone();
          if (result.copyStatus !== 'success') throw new Error(`copy ended with status ${result.copyStatus ?? 'unknown'}`);
          done = true;
          await tmp.deleteIfExists();
        } catch (err) {
          throw storageError(`publishing blob ${key} failed`, err);
        }
      },
      discard: async () => {
        if (done) return;
        done = true;
        await tmp.deleteIfExists();
      },
    };
  }

  async read(key: string): Promise<Readable> {
    assertSafeKey(key);
    try {
      const response = await this.container.getBlobClient(key).download();
      if (!response.readableStreamBody) throw new Error('empty download body');
      return response.readableStreamBody as Readable;
    } catch (err) {
      if (err instanceof RestError && err.statusCode === 404) throw new AppError('not_found', `blob ${key} not found`);
      throw storageError(`reading blob ${key} failed`, err);
    }
  }

  async stat(key: string): Promise<BlobInfo | null> {
    assertSafeKey(key);
    try {
      const props = await this.container.getBlobClient(key).getProperties();
      return { key, size: props.contentLength ?? 0, modifiedAt: props.lastModified ?? new Date(0) };
    } catch (err) {
      if (err instanceof RestError && err.statusCode === 404) return null;
      throw storageError(`stat of blob ${key} failed`, err);
    }
  }

  async delete(key: string): Promise<void> {
    assertSafeKey(key);
    try {
      await this.container.getBlobClient(key).deleteIfExists();
    } catch (err) {
      throw storageError(`deleting blob ${key} failed`, err);
    }
  }

  async *list(): AsyncIterable<BlobInfo> {
    for await (const item of this.container.listBlobsFlat()) {
      yield { key: item.name, size: item.properties.contentLength ?? 0, modifiedAt: item.properties.lastModified };
    }
  }

  async check(): Promise<void> {
    try {
      await this.container.getProperties();
    } catch (err) {
      throw storageError('Azure blob container is not reachable', err);
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

function storageError(message: string, cause: unknown): AppError {
  return new AppError('storage_unavailable', `${message}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
}
