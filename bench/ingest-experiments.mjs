/**
 * What-if experiments for bench/smtp-ingest.mjs --experiment a,b: preloaded into our server
 * (`node --import`), each one removes one cost from the ingest path at run time, without touching
 * src/, so the benchmark shows how much throughput that cost takes. Several may be combined.
 * BREAKS THE GUARANTEES (durability, quota, parsing) ON PURPOSE: benchmark use only.
 *
 *   no-charge   skip `UPDATE mailboxes` (the quota charge): no hot-row lock held until COMMIT
 *   no-fsync    fsync of blob files and blob directories become no-ops (PostgreSQL still fsyncs)
 *   no-parse    mailparser sees an empty stream: no MIME parsing, empty subject/body/snippet
 *   cache-rcpt  RCPT-time lookups (domains, mailboxes) answered from a cache after the first time
 *   no-blob-file  the local blob store hashes the bytes and writes nothing: no temp file, no
 *               rename, no directories (the upper bound of keeping small messages in PostgreSQL)
 *   no-greeting-delay  smtp-server greets at once instead of after its fixed 100 ms early-talker
 *               wait (replaces SMTPConnection.init of smtp-server 3.x with the same code minus
 *               the timer)
 *
 * Selected by the BENCH_EXPERIMENTS environment variable (comma-separated).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(ROOT, 'package.json'));
const KNOWN = ['no-charge', 'no-fsync', 'no-parse', 'cache-rcpt', 'no-blob-file', 'no-greeting-delay'];
const wanted = new Set((process.env.BENCH_EXPERIMENTS ?? '').split(',').filter(Boolean));
for (const w of wanted) if (!KNOWN.includes(w)) throw new Error(`unknown experiment ${w} (${KNOWN.join(', ')})`);

if (wanted.has('no-charge') || wanted.has('cache-rcpt')) {
  const pg = require('pg');
  const query = pg.Client.prototype.query;
  const cache = new Map();
  pg.Client.prototype.query = function (config, values, callback) {
    const text = typeof config === 'string' ? config : config?.text;
    if (typeof text === 'string' && typeof callback !== 'function' && typeof values !== 'function') {
      const sql = text.trim().toLowerCase();
      if (wanted.has('no-charge') && sql.startsWith('update "mailboxes"')) {
        return Promise.resolve({ command: 'UPDATE', rowCount: 1, rows: [], fields: [] });
      }
      if (wanted.has('cache-rcpt') && /^select .* from "(domains|mailboxes)"/.test(sql)) {
        const key = `${text}\u0000${JSON.stringify(values ?? [])}`;
        const hit = cache.get(key);
        if (hit) return Promise.resolve(hit);
        const p = query.call(this, config, values);
        p.then((r) => cache.set(key, r), () => undefined);
        return p;
      }
    }
    return query.call(this, config, values, callback);
  };
}

if (wanted.has('no-fsync')) {
  // blob files: createWriteStream({ flush: true }) calls fs.fsync on the fs module object
  fs.fsync = (fd, cb) => process.nextTick(cb, null);
  // blob directories: FileHandle.sync()
  const handle = await fs.promises.open(ROOT, 'r');
  Object.getPrototypeOf(handle).sync = () => Promise.resolve();
  await handle.close();
}

if (wanted.has('no-parse')) {
  const { MailParser } = require('mailparser');
  MailParser.prototype._transform = function (_chunk, _encoding, done) {
    done();
  };
  MailParser.prototype._flush = function (done) {
    done();
  };
}

if (wanted.has('no-blob-file')) {
  const { LocalBlobStore } = await import(pathToFileURL(path.join(ROOT, 'dist/src/blobs/local.blob-store.js')).href);
  LocalBlobStore.prototype.stage = async function (source) {
    const hash = createHash('sha256');
    let size = 0;
    const chunks = Buffer.isBuffer(source) ? [source] : source;
    for await (const chunk of chunks) {
      hash.update(chunk);
      size += chunk.length;
    }
    return { sha256: hash.digest('hex'), size, publish: () => Promise.resolve(), discard: () => Promise.resolve() };
  };
}

if (wanted.has('no-greeting-delay')) {
  // the ESM build is what `import { SMTPServer } from 'smtp-server'` loads: same module instance
  const { SMTPConnection } = await import('smtp-server/lib/smtp-connection.js');
  SMTPConnection.prototype.init = function () {
    this._setListeners(() => {
      if (this._server.options.maxClients && this._server.connections.size > this._server.options.maxClients) {
        return this.send(421, this.name + ' Too many connected clients, try again in a moment', false);
      }
      setImmediate(() => this.connectionReady());
    });
  };
}
