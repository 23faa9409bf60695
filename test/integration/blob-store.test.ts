/**
 * BlobStore contract, run unchanged against both drivers: LocalBlobStore in a temporary
 * directory and AzureBlobStore against Azurite (the real emulator, a child process on
 * 127.0.0.1). Then the whole server on the Azure driver with BLOB_INLINE_MAX_BYTES=0 (so no
 * blob is kept in its database row): a message sent over SMTP is read back byte for byte from
 * Azurite and /readyz reports the store ready.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fsCallback, { readlinkSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import v8 from 'node:v8';
import vm from 'node:vm';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { AzureBlobStore } from '../../src/blobs/azure.blob-store.js';
import { assertSafeKey, blobKey, readAll, STAGING_PREFIX, type BlobStore } from '../../src/blobs/blob-store.js';
import { LocalBlobStore } from '../../src/blobs/local.blob-store.js';
import { AppError } from '../../src/core/errors.js';
import { startAzurite, type Azurite } from '../helpers/azurite.js';
import { seedMailbox, startTestServer, tempDir, type TestServer } from '../helpers/harness.js';
import { sendWithNodemailer } from '../helpers/smtp-client.js';

const BIG_BYTES = 30 * 1024 * 1024;
const CHUNK_BYTES = 64 * 1024;

// one emulator for the file, started by the first suite that needs it
let azuriteStarting: Promise<Azurite> | null = null;
function azurite(): Promise<Azurite> {
  azuriteStarting ??= startAzurite();
  return azuriteStarting;
}

after(async () => {
  if (azuriteStarting) await (await azuriteStarting).stop();
});

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function hashOf(stream: Readable): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}

/** `total` random bytes in chunks, as a stream; `expected()` is their hash once consumed. */
function randomStream(total: number): { stream: Readable; expected: () => string } {
  const hash = createHash('sha256');
  const stream = Readable.from(
    (function* () {
      for (let left = total; left > 0; left -= CHUNK_BYTES) {
        const chunk = randomBytes(Math.min(CHUNK_BYTES, left));
        hash.update(chunk);
        yield chunk;
      }
    })(),
  );
  let digest: string | null = null;
  return { stream, expected: () => (digest ??= hash.digest('hex')) };
}

async function keys(store: BlobStore): Promise<string[]> {
  const out: string[] = [];
  for await (const info of store.list()) out.push(info.key);
  return out;
}

async function stagedKeys(store: BlobStore): Promise<Set<string>> {
  return new Set((await keys(store)).filter((k) => k.startsWith(STAGING_PREFIX) && !k.includes('.ready-')));
}

function isAppError(code: string): (err: unknown) => boolean {
  return (err: unknown) => err instanceof AppError && err.code === code;
}

function pathOfFd(fd: number): string {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return `fd ${fd} (not open)`;
  }
}

/** Records fsyncs (by path), renames and directory syncs made by node:fs while `work` runs. */
async function recordFsCalls(work: () => Promise<void>): Promise<string[][]> {
  const log: string[][] = [];
  const fsync = fsCallback.fsync;
  const rename = fs.rename;
  const probe = await fs.open(import.meta.filename, 'r');
  const handleProto = Object.getPrototypeOf(probe) as { sync: (this: fs.FileHandle) => Promise<void> };
  await probe.close();
  const sync = handleProto.sync;
  fsCallback.fsync = function (this: unknown, fd: number, cb: fsCallback.NoParamCallback) {
    log.push(['fsync', pathOfFd(fd)]);
    fsync.call(this, fd, cb);
  } as typeof fsCallback.fsync;
  fs.rename = async function (this: unknown, from: fsCallback.PathLike, to: fsCallback.PathLike) {
    log.push(['rename', String(from), String(to)]);
    return rename.call(this, from, to);
  };
  handleProto.sync = async function (this: fs.FileHandle) {
    log.push(['sync', pathOfFd(this.fd)]);
    return sync.call(this);
  };
  try {
    await work();
  } finally {
    fsCallback.fsync = fsync;
    fs.rename = rename;
    handleProto.sync = sync;
  }
  return log;
}

interface Driver {
  name: 'local' | 'azure';
  open(): Promise<{ store: BlobStore; localRoot: string | null; close: () => Promise<void> }>;
}

const drivers: Driver[] = [
  {
    name: 'local',
    async open() {
      const root = tempDir('blob-contract-');
      const store = await new LocalBlobStore(root).init();
      return {
        store,
        localRoot: root,
        async close() {
          await store.close();
          await fs.rm(root, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: 'azure',
    async open() {
      const store = await new AzureBlobStore((await azurite()).connectionString, `contract-${randomBytes(4).toString('hex')}`).init();
      return { store, localRoot: null, close: () => store.close() };
    },
  },
];

for (const driver of drivers) {
  describe(`BlobStore contract (${driver.name})`, () => {
    let store: BlobStore;
    let localRoot: string | null;
    let close: () => Promise<void>;

    before(async () => {
      ({ store, localRoot, close } = await driver.open());
    });

    after(async () => {
      await close();
    });

    async function publishBytes(bytes: Buffer, kind: 'raw' | 'att' = 'att'): Promise<string> {
      const staged = await store.stage(bytes);
      const key = blobKey(kind, staged.sha256);
      await staged.publish(key);
      return key;
    }

    it('when bytes are staged from a Buffer, then the staged blob has their SHA-256 and size', async () => {
      const bytes = randomBytes(10_000);
      const staged = await store.stage(bytes);
      assert.equal(staged.sha256, sha256(bytes));
      assert.equal(staged.size, bytes.length);
      await staged.discard();
    });

    it('when bytes are staged from a stream of many chunks, then the staged blob has their SHA-256 and size', async () => {
      const { stream, expected } = randomStream(1_000_000);
      const staged = await store.stage(stream);
      assert.equal(staged.sha256, expected());
      assert.equal(staged.size, 1_000_000);
      await staged.discard();
    });

    it('when an empty stream is staged and published, then it reads back as zero bytes', async () => {
      const staged = await store.stage(Readable.from([]));
      assert.equal(staged.sha256, sha256(Buffer.alloc(0)));
      assert.equal(staged.size, 0);
      const key = blobKey('att', staged.sha256);
      await staged.publish(key);
      assert.equal((await readAll(await store.read(key))).length, 0);
    });

    it('when a staged blob is published, then read returns identical bytes and stat its size and a modification time', async () => {
      const bytes = randomBytes(200_000);
      const startedAt = Date.now();
      const key = await publishBytes(bytes, 'raw');
      assert.ok((await readAll(await store.read(key))).equals(bytes));
      const info = await store.stat(key);
      assert.ok(info);
      assert.equal(info.key, key);
      assert.equal(info.size, bytes.length);
      assert.ok(info.modifiedAt instanceof Date);
      // Azure keeps whole seconds
      assert.ok(Math.abs(info.modifiedAt.getTime() - startedAt) < 5_000, `modifiedAt ${info.modifiedAt.toISOString()} is not now`);
    });

    it('when a key is missing, then read rejects with AppError not_found and stat returns null', async () => {
      const key = blobKey('raw', sha256(randomBytes(16)));
      await assert.rejects(store.read(key), isAppError('not_found'));
      assert.equal(await store.stat(key), null);
    });

    it('when a key is deleted twice, or was never there, then delete succeeds and the key is gone', async () => {
      const key = await publishBytes(randomBytes(1000));
      await store.delete(key);
      assert.equal(await store.stat(key), null);
      await store.delete(key);
      await store.delete(blobKey('att', sha256(randomBytes(16))));
      await assert.rejects(store.read(key), isAppError('not_found'));
    });

    it('when a staged blob is discarded, then its staging object is removed and a second discard is harmless', async () => {
      const before = await stagedKeys(store);
      const staged = await store.stage(randomBytes(5000));
      const added = [...(await stagedKeys(store))].filter((k) => !before.has(k));
      assert.equal(added.length, 1, `expected one new staging object, got ${added.join(', ')}`);
      await staged.discard();
      assert.ok(!(await stagedKeys(store)).has(added[0]!));
      await staged.discard();
      await assert.rejects(staged.publish(blobKey('att', staged.sha256)));
      assert.equal(await store.stat(blobKey('att', staged.sha256)), null);
    });

    it('when a staged blob is published twice, then the second publish throws and the first copy stays intact', async () => {
      const bytes = randomBytes(3000);
      const staged = await store.stage(bytes);
      const key = blobKey('att', staged.sha256);
      await staged.publish(key);
      await assert.rejects(staged.publish(key));
      await assert.rejects(staged.publish(blobKey('raw', staged.sha256)));
      await staged.discard();
      assert.ok((await readAll(await store.read(key))).equals(bytes));
    });

    it('when the same bytes are published again under their key, then the key still holds them (content addressing)', async () => {
      const bytes = randomBytes(4000);
      const key = await publishBytes(bytes);
      assert.equal(await publishBytes(bytes), key);
      assert.ok((await readAll(await store.read(key))).equals(bytes));
    });

    it('when objects are published and staged, then list() yields the published keys and the staged tmp/ keys with sizes', async () => {
      const published = await publishBytes(randomBytes(777));
      const before = await stagedKeys(store);
      const staged = await store.stage(randomBytes(555));
      const listed = new Map<string, number>();
      for await (const info of store.list()) {
        assert.ok(info.modifiedAt instanceof Date);
        listed.set(info.key, info.size);
      }
      assert.equal(listed.get(published), 777);
      const tmp = [...listed.keys()].filter((k) => k.startsWith(STAGING_PREFIX) && !k.includes('.ready-') && !before.has(k));
      assert.equal(tmp.length, 1);
      assert.equal(listed.get(tmp[0]!), 555);
      for (const key of listed.keys()) assert.doesNotThrow(() => assertSafeKey(key), `list() yielded an unsafe key ${key}`);
      await staged.discard();
    });

    it('when 30 MB are streamed into stage, then nothing is at the final key until publish and the bytes round-trip', async () => {
      const { stream, expected } = randomStream(BIG_BYTES);
      const before = await stagedKeys(store);
      let key = '';
      const work = async (): Promise<void> => {
        const staged = await store.stage(stream);
        assert.equal(staged.sha256, expected());
        assert.equal(staged.size, BIG_BYTES);
        key = blobKey('raw', staged.sha256);
        assert.equal(await store.stat(key), null, 'a staged blob must not be visible at its final key');
        const tmp = [...(await stagedKeys(store))].filter((k) => !before.has(k));
        assert.equal(tmp.length, 1);
        assert.equal((await store.stat(tmp[0]!))?.size, BIG_BYTES, 'the staging object holds every byte before publish');
        await staged.publish(key);
        assert.ok(!(await stagedKeys(store)).has(tmp[0]!), 'publish leaves no staging object behind');
      };
      const calls = driver.name === 'local' ? await recordFsCalls(work) : (await work(), []);
      const read = await hashOf(await store.read(key));
      assert.deepEqual(read, { sha256: expected(), size: BIG_BYTES });

      if (localRoot) {
        // durable order: the staged file is fsync'd, then renamed to its key, then its directory is synced
        // fsync and sync are recorded by the real path of their descriptor, renames as called
        const realRoot = await fs.realpath(localRoot);
        const real = (p: string): string => path.join(realRoot, path.relative(localRoot!, p));
        const finalPath = path.join(localRoot, ...key.split('/'));
        const renameAt = calls.findIndex((c) => c[0] === 'rename' && c[2] === finalPath);
        assert.ok(renameAt >= 0, `no rename to ${finalPath}: ${JSON.stringify(calls)}`);
        const tmpPath = calls[renameAt]![1]!;
        assert.ok(path.relative(path.join(localRoot, 'tmp'), tmpPath).match(/^[0-9a-f]{2}\/[0-9a-f-]{36}$/), `renamed from ${tmpPath}, not from the staging directory`);
        const fsyncAt = calls.findIndex((c) => c[0] === 'fsync' && c[1] === real(tmpPath));
        assert.ok(fsyncAt >= 0 && fsyncAt < renameAt, `the staged file was not fsync'd before the rename: ${JSON.stringify(calls)}`);
        assert.ok(
          calls.slice(renameAt + 1).some((c) => c[0] === 'sync' && c[1] === real(path.dirname(finalPath))),
          `the directory of ${key} was not synced after the rename: ${JSON.stringify(calls)}`,
        );
      }
      await store.delete(key);
    });

    it('when a large blob is read while the garbage collector runs, then every byte arrives', async () => {
      v8.setFlagsFromString('--expose-gc');
      const gc = vm.runInNewContext('gc') as () => void;
      const bytes = randomBytes(2 * 1024 * 1024);
      const key = await publishBytes(bytes);
      const stream = await store.read(key);
      const hash = createHash('sha256');
      let size = 0;
      let chunks = 0;
      for await (const chunk of stream) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
        // whatever read() opened must stay reachable from the stream while it is read
        if (++chunks <= 8) {
          gc();
          await new Promise((resolve) => setImmediate(resolve));
        }
      }
      assert.deepEqual({ size, sha256: hash.digest('hex') }, { size: bytes.length, sha256: sha256(bytes) });
    });

    it('when the store is usable, then check() resolves', async () => {
      await store.check();
    });

    it('when a key tries to leave the store, then read, stat and delete refuse it', async () => {
      for (const key of ['../outside', 'raw/../../outside', 'tmp/../../../etc/passwd']) {
        await assert.rejects(store.read(key), /invalid blob key/);
        await assert.rejects(store.stat(key), /invalid blob key/);
        await assert.rejects(store.delete(key), /invalid blob key/);
      }
    });
  });
}

describe('BlobStore check() when the store cannot be used', () => {
  it('when the local root is not a directory, then check() rejects with storage_unavailable', async () => {
    const dir = tempDir('blob-broken-');
    try {
      const store = await new LocalBlobStore(path.join(dir, 'blobs')).init();
      await fs.rm(path.join(dir, 'blobs'), { recursive: true });
      await fs.writeFile(path.join(dir, 'blobs'), 'not a directory');
      await assert.rejects(store.check(), isAppError('storage_unavailable'));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('when the Azure container does not exist, then check() rejects with storage_unavailable', async () => {
    const store = new AzureBlobStore((await azurite()).connectionString, 'never-created');
    await assert.rejects(store.check(), isAppError('storage_unavailable'));
  });
});

describe('assertSafeKey', () => {
  const unsafe = ['', '../x', 'raw/../x', 'raw/ab/../../x', '..', 'raw/..', '/raw/ab', 'raw//ab', 'raw/ab\\..\\x', 'other/ab', 'tmp/', 'raw/a b', 'raw/%2e%2e/x'];
  for (const key of unsafe) {
    it(`when the key is ${JSON.stringify(key)}, then it is rejected`, () => {
      assert.throws(() => assertSafeKey(key), /invalid blob key/);
    });
  }

  it('when the key is one blobKey() makes or a staging key, then it is accepted', () => {
    const digest = sha256(Buffer.from('x'));
    for (const key of [blobKey('raw', digest), blobKey('att', digest), `${STAGING_PREFIX}0b5c2c1e-8a0e-4df4-a1a6-0f6b2b7c9a11`]) {
      assert.doesNotThrow(() => assertSafeKey(key));
    }
  });

  it('when blobKey() is given something other than a SHA-256 hex digest, then it throws', () => {
    for (const digest of ['', '../../etc/passwd', 'A'.repeat(64), 'a'.repeat(63)]) assert.throws(() => blobKey('raw', digest));
  });
});

describe('server on the Azure driver', () => {
  let t: TestServer;

  before(async () => {
    t = await startTestServer({
      STORAGE_DRIVER: 'azure',
      AZURE_STORAGE_CONNECTION_STRING: (await azurite()).connectionString,
      AZURE_STORAGE_CONTAINER: 'mail-test',
      // these messages are small: without this they would be kept in PostgreSQL, not in Azurite
      BLOB_INLINE_MAX_BYTES: '0',
    });
    await seedMailbox(t.services, 'alice@azure.test');
  });

  after(async () => {
    await t?.stop();
  });

  async function storedMessage(subject: string) {
    return t.services.db.selectFrom('messages').selectAll().where('subject', '=', subject).executeTakeFirstOrThrow();
  }

  /** The bytes at `key` are in Azurite, and the blobs row does not hold a copy. */
  async function readFromAzurite(key: string): Promise<Buffer> {
    const row = await t.services.db.selectFrom('blobs').select('data').where('key', '=', key).executeTakeFirstOrThrow();
    assert.equal(row.data, null, `${key} is kept in its database row, not in Azurite`);
    const bytes = await readAll(await t.services.blobs.read(key));
    assert.ok((await readAll(await t.services.blobReader.open(key))).equals(bytes), `${key}: BlobReader disagrees with Azurite`);
    return bytes;
  }

  it('when a message arrives over SMTP, then 250 and its raw bytes read back from Azurite end with exactly what was sent', async () => {
    assert.equal(t.services.blobs.driver, 'azure');
    const sent = Buffer.from(
      [
        'From: sender@example.org',
        'To: alice@azure.test',
        'Subject: azure round trip',
        'Date: Sat, 21 Nov 2026 06:00:00 +0000',
        'Message-ID: <azure-1@example.org>',
        'Content-Type: text/plain; charset=utf-8',
        'Content-Transfer-Encoding: 8bit',
        '',
        'Line one, naïve café.',
        '.a line that starts with a dot (dot-stuffed on the wire)',
        randomBytes(3000).toString('base64'),
        '',
      ].join('\r\n'),
    );
    const reply = await sendWithNodemailer(t.smtpPort, { from: 'sender@example.org', to: 'alice@azure.test', raw: sent });
    assert.match(reply, /^250 2\.0\.0 /);

    const message = await storedMessage('azure round trip');
    assert.equal(message.raw_sha256, sha256(sent));
    const blob = await readFromAzurite(message.raw_blob_key);
    assert.equal(sha256(blob), message.raw_sha256);
    const raw = await readAll(await t.services.messages.openRaw(message));
    assert.ok(raw.subarray(raw.length - sent.length).equals(sent), 'the stored message does not end with the sent bytes');
    assert.equal(raw.subarray(0, raw.length - sent.length).toString(), message.trace_headers);
  });

  it('when a message with an attachment arrives, then the attachment is its own blob in Azurite with the decoded bytes', async () => {
    const content = randomBytes(50_000);
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: t.smtpPort, secure: false, ignoreTLS: true });
    try {
      await transport.sendMail({
        from: 'sender@example.org',
        to: 'alice@azure.test',
        subject: 'azure attachment',
        text: 'see attached',
        attachments: [{ filename: 'data.bin', content }],
      });
    } finally {
      transport.close();
    }
    const message = await storedMessage('azure attachment');
    const [attachment] = await t.services.db.selectFrom('attachments').selectAll().where('message_id', '=', message.id).execute();
    assert.ok(attachment);
    assert.equal(attachment.blob_key, blobKey('att', sha256(content)));
    assert.ok((await readFromAzurite(attachment.blob_key)).equals(content));
  });

  it('when the API is asked /readyz, then it answers 200 ready with the blob store ok', async () => {
    const res = await fetch(`http://127.0.0.1:${t.apiPort}/readyz`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'ready', checks: { database: 'ok', blob_store: 'ok' } });
  });
});
