/**
 * openBlobStore(config): the BlobStore STORAGE_DRIVER names, ready for use. The server's
 * composition root and the backup/restore CLIs open the store through this one function; it
 * lives apart from server.ts so the CLIs do not load the whole server to get it.
 */
import path from 'node:path';
import type { Config } from '../config/load.js';
import { AzureBlobStore } from './azure.blob-store.js';
import type { BlobStore } from './blob-store.js';
import { LocalBlobStore } from './local.blob-store.js';

export async function openBlobStore(config: Config): Promise<BlobStore> {
  return config.STORAGE_DRIVER === 'azure'
    ? new AzureBlobStore(config.AZURE_STORAGE_CONNECTION_STRING ?? '', config.AZURE_STORAGE_CONTAINER).init()
    : new LocalBlobStore(path.join(config.DATA_DIR, 'blobs')).init();
}
