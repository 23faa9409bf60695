/**
 * Timing inside the server for bench/smtp-ingest.mjs --trace: preloaded into our server with
 * `node --import bench/ingest-trace.mjs dist/src/main.js`, it wraps (at run time, without
 * touching src/) the steps of the ingest path and writes, when the process exits, per-step
 * wall-time statistics to the JSON file named by BENCH_TRACE_FILE:
 *
 *   ingest.accept     IngestService.acceptMessage, DATA start → resolved (250 follows at once)
 *   ingest.stream     acceptMessage start → store() start (staging, parsing, checks)
 *   blob.stage        LocalBlobStore.stage (write the temp file, fsync it)
 *   parse.wall        mailparser, first chunk → 'end'
 *   ingest.in-flight  messages inside acceptMessage when a store begins (a count, not ms)
 *   ingest.store      the transaction: pool wait, queries, blob publish, commit
 *   pg.pool.wait      waiting for a pooled PostgreSQL connection
 *   pg.<statement>    each statement's round trip (begin, insert blobs, ..., commit)
 *   blob.publish      rename into place + fsync of the directory (inside the transaction)
 *   eventloop.delay   how late a 10 ms timer fired (how long ready work waited for the thread)
 *
 * Benchmark-only instrumentation; it adds a little overhead of its own.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { writeFileSync } from 'node:fs';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(ROOT, 'package.json'));
const dist = (p) => import(pathToFileURL(path.join(ROOT, 'dist/src', p)).href);

const samples = new Map();
const record = (label, ms) => {
  let list = samples.get(label);
  if (!list) samples.set(label, (list = []));
  list.push(ms);
};

/** Wraps an async method so its duration is recorded under `label` (or label(args)). */
function timeAsync(proto, method, label) {
  const original = proto[method];
  proto[method] = function (...args) {
    const t0 = performance.now();
    const result = original.apply(this, args);
    const name = typeof label === 'function' ? label.apply(this, args) : label;
    if (result && typeof result.then === 'function') {
      result.then(
        () => record(name, performance.now() - t0),
        () => record(`${name}.failed`, performance.now() - t0),
      );
    }
    return result;
  };
}

const { IngestService } = await dist('services/ingest.service.js');
const { LocalBlobStore } = await dist('blobs/local.blob-store.js');
const pg = require('pg');
const { MailParser } = require('mailparser');

// one context per acceptMessage call, so store() knows when its message started
const perMessage = new AsyncLocalStorage();
let inFlight = 0;
{
  const accept = IngestService.prototype.acceptMessage;
  IngestService.prototype.acceptMessage = function (...args) {
    const t0 = performance.now();
    inFlight++;
    const p = perMessage.run({ t0 }, () => accept.apply(this, args));
    const done = (label) => () => {
      inFlight--;
      record(label, performance.now() - t0);
    };
    p.then(done('ingest.accept'), done('ingest.accept.failed'));
    return p;
  };
  const store = IngestService.prototype.store;
  IngestService.prototype.store = function (...args) {
    const t0 = performance.now();
    const ctx = perMessage.getStore();
    if (ctx) record('ingest.stream', t0 - ctx.t0);
    record('ingest.in-flight', inFlight); // messages in acceptMessage when a store begins
    const p = store.apply(this, args);
    p.then(
      () => record('ingest.store', performance.now() - t0),
      () => record('ingest.store.failed', performance.now() - t0),
    );
    return p;
  };
}

timeAsync(LocalBlobStore.prototype, 'stage', 'blob.stage');
{
  const stagedBlob = LocalBlobStore.prototype.stagedBlob;
  LocalBlobStore.prototype.stagedBlob = function (...args) {
    const staged = stagedBlob.apply(this, args);
    const publish = staged.publish;
    staged.publish = (key) => {
      const t0 = performance.now();
      const p = publish(key);
      p.then(() => record('blob.publish', performance.now() - t0), () => undefined);
      return p;
    };
    return staged;
  };
}

{
  const transform = MailParser.prototype._transform;
  MailParser.prototype._transform = function (chunk, encoding, done) {
    if (this.__benchStart === undefined) {
      this.__benchStart = performance.now();
      this.once('end', () => record('parse.wall', performance.now() - this.__benchStart));
    }
    return transform.call(this, chunk, encoding, done);
  };
}

timeAsync(pg.Pool.prototype, 'connect', 'pg.pool.wait');
{
  const query = pg.Client.prototype.query;
  pg.Client.prototype.query = function (config, values, callback) {
    const text = typeof config === 'string' ? config : config?.text;
    if (typeof text !== 'string' || typeof values === 'function' || typeof callback === 'function') {
      return query.call(this, config, values, callback);
    }
    const t0 = performance.now();
    const p = query.call(this, config, values);
    const name = `pg.${statementName(text)}`;
    p.then(() => record(name, performance.now() - t0), () => record(`${name}.failed`, performance.now() - t0));
    return p;
  };
}

function statementName(sql) {
  // a leading comment (src/db/prepared-statements.ts marks statements with one) is not the name
  const s = sql.replace(/^\s*\/\*[\s\S]*?\*\/\s*/, '').trim().toLowerCase();
  let m;
  if ((m = /^with (\w+)/.exec(s))) return `with ${m[1]}`;
  if ((m = /^(begin|commit|rollback)/.exec(s))) return m[1];
  if ((m = /^insert into "?(\w+)"?/.exec(s))) return `insert ${m[1]}`;
  if ((m = /^update "?(\w+)"?/.exec(s))) return `update ${m[1]}`;
  if ((m = /^delete from "?(\w+)"?/.exec(s))) return `delete ${m[1]}`;
  if ((m = /^select[\s\S]*? from "?(\w+)"?/.exec(s))) return `select ${m[1]}`;
  return s.split(/\s+/)[0];
}

const LOOP_RESOLUTION_MS = 10;
const loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
loop.enable();

process.once('exit', () => {
  const file = process.env.BENCH_TRACE_FILE;
  if (!file) return;
  const stats = {};
  for (const [label, list] of samples) {
    const sorted = [...list].sort((a, b) => a - b);
    const at = (p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
    stats[label] = { n: sorted.length, mean: sorted.reduce((a, b) => a + b, 0) / sorted.length, p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1] };
  }
  // the histogram measures whole 10 ms timer periods: what is beyond 10 ms is the delay
  const late = (ns) => Math.max(0, ns / 1e6 - LOOP_RESOLUTION_MS);
  stats['eventloop.delay'] = { n: loop.count, mean: late(loop.mean), p50: late(loop.percentile(50)), p99: late(loop.percentile(99)), max: late(loop.max) };
  writeFileSync(file, JSON.stringify(stats, null, 2));
});
