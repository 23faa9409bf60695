#!/usr/bin/env node
/**
 * bench/side-by-side: our SMTP server next to independent peers, in one run, under the same load
 * (issue [6/6] "Proof", item 1 and "Measure"). Claims about speed only mean something as ratios
 * to other mail software measured on the same machine at the same moment, so this script starts:
 *
 *   - Postfix's smtp-sink: accepts and discards, the loopback limit of this machine;
 *   - Haraka (npm, installed on first use into bench/.peers/haraka) with a discard queue, one
 *     process like ours;
 *   - Postfix itself accepting into its own durable queue (fsync'd queue file before the 250,
 *     Postfix's default), then discarding: a throwaway instance in a temporary directory;
 *   - our server (every role, embedded PostgreSQL with fsync on) as MX, storing durably;
 *
 * and drives each with the same load generators: Postfix's smtp-source with a new connection per
 * message and with `-d` (connections reused), and the Node load generator of smtp-ingest, which
 * also times end of DATA → 250 (smtp-source reports no latency). For each message size, session
 * count and mode it reports the median msgs/s of the runs, p50/p99, CPU s per 1,000 messages (the
 * target's whole process tree), peak RSS, and our figure as a ratio of each peer's.
 *
 * Our submission path (STARTTLS + AUTH + queue commit, then the worker DKIM-signs and relays to a
 * local relay sink) gets two more rows per configuration: submission msgs/s and end-to-end
 * delivered msgs/s. smtp-source can do neither STARTTLS nor AUTH, so bench/submit-loadgen.mjs
 * drives them; the rows are marked.
 *
 * No pass/fail: it exits 1 only when a count does not add up (a 250 without a stored message, a
 * submitted message that never reached the relay sink) or a target could not be measured.
 *
 *   node bench/side-by-side.mjs [--quick] [--runs N] [--seconds S] [--sizes 4,100]
 *     [--sessions 1,20,100] [--modes new,reuse,node] [--targets sink,haraka,postfix,ours,submit]
 *     [--no-build] [--json FILE] [--keep]
 * See --help and bench/README.md.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import {
  ensureHaraka,
  ensurePostfixTools,
  lifecycle,
  machineCpuTicks,
  machineInfo,
  ownCpuTicks,
  peakRssBytes,
  resetPeakRss,
  runSmtpSource,
  startHaraka,
  startOurServer,
  startPostfixQueue,
  startSmtpSink,
  treeCpuTicks,
  waitForPort,
} from './bench-support.mjs';
import { percentile, probeGreeting, runLoadgen } from './smtp-loadgen.mjs';
import { closePool, RELAY_PASS, RELAY_USER, runSubmitLoad, startRelaySink } from './submit-loadgen.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FROM = 'bench@client.bench.test';
const TO = 'sink@bench.test';
/** The mailbox startOurServer creates is also the authenticated sender of the submission rows. */
const SENDER_PASSWORD = 'benchpass123';
/** Not one of our domains: submitted mail is queued for the relay. */
const REMOTE_DOMAIN = 'relay-sink.bench-remote.test';
const MIN_PER_SESSION = 2;
const MAX_MESSAGES_PER_RUN = 100_000;
/** A calibration run shorter than this is repeated with 4× the messages. */
const PILOT_MIN_MS = 400;
/** How long the last submitted message of a run may take to reach the relay sink. */
const DELIVERY_WAIT_MS = 180_000;
const GREETING_PROBES = 10;
const DISTURBED_SHARE = 0.1;
const WATCHDOG_MS = 40 * 60_000;

const MODES = {
  new: { label: 'smtp-source', reuse: false },
  reuse: { label: 'smtp-source -d', reuse: true },
  node: { label: 'node-loadgen', reuse: true },
};
const SUBMIT_MODE_LABEL = { new: 'node-submit new conn', reuse: 'node-submit reused' };
const PEERS = [
  { key: 'sink', name: 'smtp-sink', label: 'smtp-sink (discard)' },
  { key: 'haraka', name: 'haraka', label: 'Haraka (discard)' },
  { key: 'postfix', name: 'postfix-queue', label: 'Postfix (own queue)' },
];

const USAGE = `usage: node bench/side-by-side.mjs [options]   (npm run bench runs it)
  --quick                   4 KB, 20 sessions, 1 run of ~1 s per configuration (smoke run, ~1 min)
  --runs N                  measured runs per configuration, median shown (default 3; quick 1)
  --seconds S               target length of one run (default 2; quick 1)
  --sizes 4,100             payload sizes in KB (default 4,100; quick 4)
  --sessions 1,20,100       concurrent sessions, 1..500 (default 1,20,100; quick 20)
  --modes new,reuse,node    smtp-source (new connection per message), smtp-source -d, node load generator
  --targets sink,haraka,postfix,ours,submit   what to run (default all; submit = our submission + end to end)
  --no-build                skip npm run -s build
  --json FILE               write every figure as JSON
  --keep                    keep our server's DATA_DIR
env: BENCH_QUICK=1 BENCH_RUNS BENCH_SECONDS (flags win); see bench/README.md
`;

const log = (line) => process.stderr.write(`${line}\n`);
const fmt = (v, digits = 1) => (v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));

function options() {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' },
      runs: { type: 'string' },
      seconds: { type: 'string' },
      sizes: { type: 'string' },
      sessions: { type: 'string' },
      modes: { type: 'string' },
      targets: { type: 'string' },
      'no-build': { type: 'boolean' },
      json: { type: 'string' },
      keep: { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const env = process.env;
  const quick = values.quick ?? env.BENCH_QUICK === '1';
  const list = (v, fallback) => (v ? v.split(',').map((s) => s.trim()).filter(Boolean) : fallback);
  const o = {
    quick,
    runs: Number(values.runs ?? env.BENCH_RUNS ?? (quick ? 1 : 3)),
    seconds: Number(values.seconds ?? env.BENCH_SECONDS ?? (quick ? 1 : 2)),
    sizesKb: list(values.sizes, quick ? ['4'] : ['4', '100']).map(Number),
    sessions: list(values.sessions, quick ? ['20'] : ['1', '20', '100']).map(Number),
    modes: list(values.modes, ['new', 'reuse', 'node']),
    targets: list(values.targets, ['sink', 'haraka', 'postfix', 'ours', 'submit']),
    build: !(values['no-build'] ?? false),
    json: values.json ?? null,
    keep: values.keep ?? false,
  };
  const known = ['sink', 'haraka', 'postfix', 'ours', 'submit'];
  const bad = [
    ...(!Number.isInteger(o.runs) || o.runs < 1 ? ['--runs must be a whole number ≥ 1'] : []),
    ...(!(o.seconds > 0) ? ['--seconds must be > 0'] : []),
    ...(o.sizesKb.some((s) => !(s > 0 && s <= 10_000)) ? ['--sizes must be KB values > 0 and ≤ 10000'] : []),
    ...(o.sessions.some((s) => !Number.isInteger(s) || s < 1 || s > 500) ? ['--sessions must be whole numbers 1..500'] : []),
    ...o.modes.filter((m) => !MODES[m]).map((m) => `unknown mode ${m} (new, reuse, node)`),
    ...(o.targets.length === 0 ? ['--targets needs at least one of sink, haraka, postfix, ours, submit'] : []),
    ...o.targets.filter((t) => !known.includes(t)).map((t) => `unknown target ${t} (${known.join(', ')})`),
  ];
  if (bad.length > 0) {
    process.stderr.write(`${bad.join('\n')}\n\n${USAGE}`);
    process.exit(2);
  }
  return o;
}

/**
 * `npm run -s build`. tsc writes dist/ even when it reports type errors (in tests, say), so a
 * failed build with a dist/src/main.js present is a warning, not the end of the benchmark.
 */
function build() {
  log('build: npm run -s build');
  try {
    execFileSync('npm', ['run', '-s', 'build'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
  } catch (err) {
    const output = `${err.stdout ?? ''}${err.stderr ?? ''}`.trim().split('\n').slice(0, 5).join('\n');
    if (!existsSync(path.join(ROOT, 'dist/src/main.js'))) throw new Error(`build failed:\n${output}`, { cause: err });
    log(`build: failed, benchmarking the dist/ it left:\n${output}`);
  }
}

// ---- CPU accounting --------------------------------------------------------------------------

/** CPU ticks so far: the target's process tree, this process with what it reaped (the client side), the machine. */
function cpuSnapshot(pid) {
  const self = ownCpuTicks(process.pid, { withReapedChildren: true });
  const m = machineCpuTicks();
  return { tree: treeCpuTicks(pid), client: self.user + self.sys, machineBusy: m.busy, machineTotal: m.total };
}

function cpuDelta(before, after) {
  return Object.fromEntries(Object.keys(before).map((k) => [k, after[k] - before[k]]));
}

function sumCpu(deltas) {
  const out = {};
  for (const k of Object.keys(deltas[0])) out[k] = deltas.reduce((s, d) => s + d[k], 0);
  return out;
}

async function backgroundLoad(ms) {
  const before = machineCpuTicks();
  await sleep(ms);
  const after = machineCpuTicks();
  return (after.busy - before.busy) / (after.total - before.total);
}

// ---- MX rows: peers and our MX, driven by smtp-source or the node load generator ------------

const verification = { replies: 0, stored: 0, mismatches: [], errors: [] };

function describe(cfg) {
  return `${cfg.size / 1024} KB, ${cfg.sessions} sessions, ${cfg.submit ? SUBMIT_MODE_LABEL[cfg.mode] : MODES[cfg.mode].label}`;
}

async function storedCount(db) {
  const { rows } = await db.query('SELECT count(*)::int AS n FROM messages');
  return rows[0].n;
}

/** Waits until the Postfix queue is empty (discard is quick), so a run never inherits a backlog. */
async function drainPostfix(target) {
  const deadline = Date.now() + 60_000;
  while (target.queued() > 0) {
    if (Date.now() > deadline) throw new Error(`Postfix still holds ${target.queued()} messages after 60 s`);
    await sleep(50);
  }
}

/** One run of `count` messages against an MX target; returns rate, latencies and CPU. */
async function runOnce(target, cfg, count) {
  const storedBefore = target.db ? await storedCount(target.db) : 0;
  const cpuBefore = cpuSnapshot(target.pid);
  let r;
  if (cfg.mode === 'node') {
    const perSession = Math.max(1, Math.ceil(count / cfg.sessions));
    r = await runLoadgen({ port: target.port, sessions: cfg.sessions, perSession, size: cfg.size, from: FROM, to: TO });
    if (r.errors.length > 0) throw new Error(`node load generator errors against ${target.name}:\n  ${r.errors.join('\n  ')}`);
  } else {
    r = await runSmtpSource({ port: target.port, sessions: cfg.sessions, count, size: cfg.size, reuse: MODES[cfg.mode].reuse, from: FROM, to: TO });
    r.latencyMs = [];
  }
  // Postfix's queue work (qmgr, discard) after the 250 belongs to its CPU figure
  if (target.queued) await drainPostfix(target);
  const cpu = cpuDelta(cpuBefore, cpuSnapshot(target.pid));
  if (target.db) {
    const stored = (await storedCount(target.db)) - storedBefore;
    verification.replies += r.ok;
    verification.stored += stored;
    if (stored !== r.ok) verification.mismatches.push(`ours MX, ${describe(cfg)}: ${r.ok} × 250 but ${stored} stored`);
  }
  return { ok: r.ok, elapsedMs: r.elapsedMs, rate: (r.ok / r.elapsedMs) * 1000, latencyMs: r.latencyMs, cpu };
}

/**
 * Calibrates a message count that lasts about `seconds` (a pilot run of sessions × 2 messages,
 * ×4 until it takes PILOT_MIN_MS), then does the measured runs with it. A pilot at the smallest
 * count that already lasted `seconds` (new-connection submission: a bcrypt AUTH per message)
 * counts as the first measured run rather than being repeated.
 */
async function measuredRuns(cfg, opts, runFn) {
  // a new submission connection costs an AUTH (bcrypt, ~0.25 CPU s): one message per session is enough
  const minCount = cfg.sessions * (cfg.submit && cfg.mode === 'new' ? 1 : MIN_PER_SESSION);
  let count = minCount;
  let pilot;
  for (;;) {
    pilot = await runFn(count);
    if (pilot.elapsedMs >= PILOT_MIN_MS || count >= MAX_MESSAGES_PER_RUN) break;
    count = Math.min(count * 4, MAX_MESSAGES_PER_RUN);
  }
  const keepPilot = count === minCount && pilot.elapsedMs >= opts.seconds * 1000;
  count = keepPilot ? minCount : Math.round(Math.min(MAX_MESSAGES_PER_RUN, Math.max(minCount, pilot.rate * opts.seconds)));
  const rssReset = cfg.pid ? resetPeakRss(cfg.pid) : null;
  const runs = keepPilot ? [pilot] : [];
  while (runs.length < opts.runs) runs.push(await runFn(count));
  return { count, runs, rssReset };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
};

async function measureMx(target, cfg, opts, clkTck) {
  const began = performance.now();
  const { count, runs, rssReset } = await measuredRuns({ ...cfg, pid: target.pid }, opts, (n) => runOnce(target, cfg, n));
  const messages = runs.reduce((s, r) => s + r.ok, 0);
  const cpu = sumCpu(runs.map((r) => r.cpu));
  const latency = runs.flatMap((r) => r.latencyMs).sort((a, b) => a - b);
  return {
    row: target.row,
    target: target.name,
    ...cfg,
    count,
    rates: runs.map((r) => r.rate),
    rate: median(runs.map((r) => r.rate)),
    p50: latency.length ? percentile(latency, 50) : null,
    p99: latency.length ? percentile(latency, 99) : null,
    cpuPer1k: (cpu.tree / clkTck / messages) * 1000,
    peakRssMb: target.rss ? peakRssBytes(target.pid) / 2 ** 20 : null,
    rssReset,
    otherShare: (cpu.machineBusy - cpu.tree - cpu.client) / cpu.machineTotal,
    machineBusy: cpu.machineBusy / cpu.machineTotal,
    seconds: (performance.now() - began) / 1000,
  };
}

// ---- our submission and end-to-end rows ------------------------------------------------------

/**
 * One submission run: `count` messages submitted (STARTTLS + AUTH), then waiting until every
 * accepted one reached the relay sink. Submission rate counts the 250s over the submitting time;
 * end to end counts arrivals from the first submission to the last arrival.
 */
async function runSubmitOnce(ours, relay, cfg, count, pool) {
  let cpu0 = null;
  const runId = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const r = await runSubmitLoad({
    port: ours.submissionPort,
    sessions: cfg.sessions,
    count,
    size: cfg.size,
    reuse: cfg.mode === 'reuse',
    pool,
    user: TO,
    pass: SENDER_PASSWORD,
    toDomain: REMOTE_DOMAIN,
    runId,
    onStart: () => (cpu0 = cpuSnapshot(ours.pid)),
  });
  const cpuSubmit = cpuSnapshot(ours.pid);
  if (r.errors.length > 0) verification.errors.push(`ours submission, ${describe(cfg)}: ${r.errors.join('; ')}`);
  const ids = r.accepted.map((a) => a.messageId);
  const all = await relay.waitFor(ids, DELIVERY_WAIT_MS);
  const cpuEnd = cpuSnapshot(ours.pid);
  const queueMs = [];
  let lastArrival = r.started;
  for (const a of r.accepted) {
    const at = relay.stats.arrivals.get(a.messageId);
    if (at === undefined) continue;
    queueMs.push(at - a.acceptedAt);
    lastArrival = Math.max(lastArrival, at);
  }
  if (!all) verification.mismatches.push(`ours end to end, ${describe(cfg)}: ${r.ok} submitted but ${queueMs.length} reached the relay sink within ${DELIVERY_WAIT_MS / 1000} s`);
  const e2eMs = lastArrival - r.started;
  return {
    ok: r.ok,
    elapsedMs: r.elapsedMs,
    rate: (r.ok / r.elapsedMs) * 1000,
    latencyMs: r.latencyMs,
    delivered: queueMs.length,
    e2eMs,
    e2eRate: e2eMs > 0 ? (queueMs.length / e2eMs) * 1000 : NaN,
    queueMs,
    cpuSubmit: cpuDelta(cpu0, cpuSubmit),
    cpuAll: cpuDelta(cpu0, cpuEnd),
  };
}

async function measureSubmit(ours, relay, cfg, opts, clkTck) {
  const began = performance.now();
  // reused mode: each session authenticates once per configuration, not once per run
  const pool = [];
  const { count, runs, rssReset } = await measuredRuns({ ...cfg, pid: ours.pid }, opts, (n) => runSubmitOnce(ours, relay, cfg, n, pool)).finally(() => closePool(pool));
  const peakRssMb = peakRssBytes(ours.pid) / 2 ** 20;
  const submitted = runs.reduce((s, r) => s + r.ok, 0);
  const delivered = runs.reduce((s, r) => s + r.delivered, 0);
  const cpuSubmit = sumCpu(runs.map((r) => r.cpuSubmit));
  const cpuAll = sumCpu(runs.map((r) => r.cpuAll));
  const lat = runs.flatMap((r) => r.latencyMs).sort((a, b) => a - b);
  const queueLat = runs.flatMap((r) => r.queueMs).sort((a, b) => a - b);
  const common = { target: 'ours', ...cfg, count, rssReset, peakRssMb, seconds: (performance.now() - began) / 1000 };
  return [
    {
      ...common,
      row: 'submit',
      rates: runs.map((r) => r.rate),
      rate: median(runs.map((r) => r.rate)),
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      cpuPer1k: submitted ? (cpuSubmit.tree / clkTck / submitted) * 1000 : null,
      otherShare: (cpuSubmit.machineBusy - cpuSubmit.tree - cpuSubmit.client) / cpuSubmit.machineTotal,
      machineBusy: cpuSubmit.machineBusy / cpuSubmit.machineTotal,
    },
    {
      ...common,
      row: 'e2e',
      rates: runs.map((r) => r.e2eRate),
      rate: median(runs.map((r) => r.e2eRate)),
      p50: percentile(queueLat, 50),
      p99: percentile(queueLat, 99),
      cpuPer1k: delivered ? (cpuAll.tree / clkTck / delivered) * 1000 : null,
      otherShare: (cpuAll.machineBusy - cpuAll.tree - cpuAll.client) / cpuAll.machineTotal,
      machineBusy: cpuAll.machineBusy / cpuAll.machineTotal,
      delivered,
      submitted,
    },
  ];
}

// ---- report ----------------------------------------------------------------------------------

const ROW_LABEL = {
  'smtp-sink': 'smtp-sink (discard)',
  haraka: 'Haraka (discard)',
  'postfix-queue': 'Postfix (own queue)',
  mx: 'ours MX (durable)',
  submit: 'ours submission †',
  e2e: 'ours end to end †',
};

/** The peer row an "ours" row is compared with: same size, sessions and connection mode. */
function peerFor(rows, r, peer) {
  return rows.find((p) => p.row === peer && !p.error && p.size === r.size && p.sessions === r.sessions && p.mode === r.mode);
}

function table(rows) {
  const head = ['target', 'size', 'sessions', 'mode', 'msgs/s', 'p50 ms', 'p99 ms', 'CPU s/1k msgs', 'peak RSS MB', '÷ smtp-sink', '÷ Haraka', '÷ Postfix queue'];
  const ratio = (r, peer) => {
    if (!['mx', 'submit', 'e2e'].includes(r.row) || r.error) return '-';
    const p = peerFor(rows, r, peer);
    return p ? `${fmt(r.rate / p.rate, 2)}×` : '-';
  };
  const cells = rows.map((r) => [
    `${ROW_LABEL[r.row]}${r.otherShare > DISTURBED_SHARE ? ' *' : ''}`,
    `${r.size / 1024} KB`,
    String(r.sessions),
    r.submit ? SUBMIT_MODE_LABEL[r.mode] : MODES[r.mode].label,
    r.error ? 'error' : fmt(r.rate, 0),
    fmt(r.p50, 2),
    fmt(r.p99, 2),
    fmt(r.cpuPer1k, 2),
    fmt(r.peakRssMb, 0),
    ratio(r, 'smtp-sink'),
    ratio(r, 'haraka'),
    ratio(r, 'postfix-queue'),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c) => `| ${c.map((x, i) => (i < 4 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i < 4 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(head), rule, ...cells.map(line)].join('\n');
}

/** The one-line summary: durable MX ingest at 4 KB against Postfix's queue, and our p99. */
function summary(rows, opts) {
  const size = opts.sizesKb.includes(4) ? 4096 : opts.sizesKb[0] * 1024;
  const mx = rows.filter((r) => r.row === 'mx' && !r.error && r.size === size);
  const vsPostfix = [...new Set(mx.map((r) => r.sessions))]
    .sort((a, b) => b - a)
    .map((s) => {
      const parts = mx
        .filter((r) => r.sessions === s)
        .map((r) => {
          const p = peerFor(rows, r, 'postfix-queue');
          return `${p ? `${fmt(r.rate / p.rate, 2)}×` : 'n/a'} ${MODES[r.mode].label}`;
        });
      return `${s} session${s === 1 ? '' : 's'} ${parts.join(', ')}`;
    });
  const p99 = mx.filter((r) => r.p99 !== null).map((r) => `${r.sessions} session${r.sessions === 1 ? '' : 's'} ${fmt(r.p99, 1)} ms`);
  const sub = rows.find((r) => r.row === 'submit' && r.size === size && r.mode === 'reuse' && r.sessions === Math.max(...opts.sessions));
  const e2e = rows.find((r) => r.row === 'e2e' && r.size === size && r.mode === 'reuse' && r.sessions === Math.max(...opts.sessions));
  return (
    `Summary: durable MX ingest at ${size / 1024} KB ÷ Postfix's queue (target ≥ 1.0×): ${vsPostfix.join('; ') || 'n/a'}. ` +
    `Our p99 end of DATA → 250 at ${size / 1024} KB (node-loadgen; target < 50 ms): ${p99.join(', ') || 'n/a'}.` +
    (sub ? ` Submission ${sub.sessions} sessions ${fmt(sub.rate, 0)}/s (p99 ${fmt(sub.p99, 1)} ms), end to end ${fmt(e2e?.rate, 0)}/s delivered.` : '')
  );
}

/** The count checks: every 250 of our MX stored once; every submitted message at the relay sink. */
function checkLine(rows, v, relay) {
  const parts = [];
  if (rows.some((r) => r.row === 'mx')) parts.push(`ours MX, every run incl. calibration: ${v.replies} × 250 → ${v.stored} stored in PostgreSQL`);
  const e2e = rows.filter((r) => r.row === 'e2e' && !r.error);
  if (e2e.length) {
    parts.push(
      `submission: ${e2e.reduce((s, r) => s + r.submitted, 0)} submitted → ${e2e.reduce((s, r) => s + r.delivered, 0)} at the relay sink (measured runs); ` +
        `relay sink over the whole run: ${relay.arrivals} messages, ${relay.signed} DKIM-signed, ${relay.duplicates} duplicates`,
    );
  }
  if (parts.length === 0) return 'Count check: nothing of ours ran.';
  return `Count check (${parts.join('; ')}): ${v.mismatches.length ? `MISMATCH:\n  ${v.mismatches.join('\n  ')}` : 'all equal'}`;
}

function report(all) {
  const { machine, versions, opts, rows, greet, background, elapsedS, skipped } = all;
  const v = verification;
  const disturbed = rows.some((r) => r.otherShare > DISTURBED_SHARE);
  const greetLine = Object.entries(greet)
    .map(([k, ms]) => `${k} ${fmt(ms, 1)} ms`)
    .join(', ');
  const errors = rows.filter((r) => r.error).map((r) => `${ROW_LABEL[r.row]}, ${describe(r)}: ${r.error}`);
  return [
    '',
    `Side-by-side SMTP benchmark, ${machine.date}, ${opts.quick ? 'quick' : 'full'} mode, ${opts.runs} run(s) of ~${opts.seconds} s per configuration (median shown)`,
    `machine: ${machine.nproc} CPUs (${machine.cpu}), ${machine.memGiB} GiB RAM, kernel ${machine.kernel}; node ${machine.node}, postfix ${machine.postfix}, Haraka ${versions.haraka ?? '-'}`,
    `targets: smtp-sink (accept + discard); Haraka 1 process (no cluster), rcpt_to.in_host_list + queue/discard, no DNS; ` +
      `Postfix accepting into its own queue (queue file fsync'd before 250), discard transport; ` +
      `ours: ROLES=api,smtp,worker, embedded PostgreSQL (fsync, synchronous_commit on), inbound auth off, message + row committed before 250`,
    ...skipped.map((s) => `SKIPPED ${s}`),
    '',
    table(rows),
    '',
    `† driven by bench/submit-loadgen.mjs (STARTTLS + AUTH PLAIN, smtp-source cannot): "new conn" = connect, STARTTLS and AUTH (bcrypt) for every message, ` +
      `inside the clock; "reused" = each session connects and authenticates once per configuration, before the clock starts, then sends all its messages; ` +
      `ratios are against the peers' smtp-source row of the same connection mode (plain SMTP, no TLS, no AUTH). ` +
      `Submission p50/p99 = end of DATA → 250 (Sent copy + outbound row committed); end to end = first submission → last arrival at the relay sink ` +
      `(STARTTLS + AUTH, DKIM-signed by the worker), its p50/p99 = the client's 250 → arrival, its CPU = server CPU until the last arrival per message delivered.`,
    `CPU s/1k msgs = the target's process tree (ours: node + every PostgreSQL process; Postfix: master and all its daemons incl. queue manager and discard); ` +
      `peak RSS = VmHWM of the main process (ours, Haraka, smtp-sink; not summed over Postfix's processes)` +
      `${rows.every((r) => r.rssReset !== false) ? ', reset before each configuration' : ', since start (reset not permitted)'}.`,
    ...(disturbed ? [`* more than ${DISTURBED_SHARE * 100}% of the machine's CPU went to other processes during this configuration: the figure is disturbed`] : []),
    `Connect → 220 (median of ${GREETING_PROBES}): ${greetLine}. smtp-server holds its greeting 100 ms (early-talker check), so our new-connection rows cap near sessions × 10/s.`,
    checkLine(rows, v, all.relay),
    ...(v.errors.length || errors.length ? [`ERRORS:\n  ${[...errors, ...v.errors].join('\n  ')}`] : []),
    `Machine CPU busy before the runs (other work): ${fmt(background * 100, 0)}%. Total time ${elapsedS.toFixed(0)} s.`,
    summary(rows, opts),
    '',
  ].join('\n');
}

// ---- main ------------------------------------------------------------------------------------

/** Starts the selected targets; a peer that cannot run here is skipped with the reason. */
async function startTargets(opts, stops, versions, skipped) {
  const targets = {};
  if (opts.targets.includes('sink')) {
    const t = await startSmtpSink();
    stops.push(t.stop);
    log(`smtp-sink: pid ${t.pid}, 127.0.0.1:${t.port}`);
    targets.sink = { ...t, row: 'smtp-sink', rss: true };
  }
  if (opts.targets.includes('haraka')) {
    try {
      versions.haraka = ensureHaraka(ROOT, log);
      const t = await startHaraka({ root: ROOT, log });
      stops.push(t.stop);
      targets.haraka = { ...t, row: 'haraka', rss: true };
    } catch (err) {
      skipped.push(`Haraka: ${err.message}`);
    }
  }
  if (opts.targets.includes('postfix')) {
    const t = await startPostfixQueue({ root: ROOT, log });
    if (t.skipped) skipped.push(`Postfix queue: ${t.skipped}`);
    else {
      stops.push(t.stop);
      targets.postfix = { ...t, row: 'postfix-queue', rss: false };
    }
  }
  if (opts.targets.includes('ours') || opts.targets.includes('submit')) {
    const { testCertificate } = await import(pathToFileURL(path.join(ROOT, 'dist/test/helpers/test-tls.js')).href);
    const cert = testCertificate();
    stops.push(async () => rmSync(path.dirname(cert.caFile), { recursive: true, force: true }));
    const relay = await startRelaySink(cert);
    stops.push(relay.stop);
    const server = await startOurServer({
      root: ROOT,
      log,
      serverEnv: {
        RELAY_URL: `smtp://${RELAY_USER}:${RELAY_PASS}@127.0.0.1:${relay.port}`,
        OUTBOUND_TLS_CA_FILE: cert.caFile,
        SEND_LIMIT_PER_HOUR: '100000000',
        SEND_LIMIT_PER_DAY: '100000000',
      },
    });
    stops.push(() => server.stop({ keep: opts.keep }));
    const db = new pg.Client({ connectionString: server.databaseUrl });
    await db.connect();
    stops.push(() => db.end());
    // only a verified domain may send and sign
    const res = await db.query(`UPDATE domains SET status = 'verified' WHERE name = 'bench.test' RETURNING dkim_private_key_enc IS NOT NULL AS has_key`);
    if (!res.rows[0]?.has_key) log('warning: bench.test has no DKIM key; submitted messages go out unsigned');
    await waitForPort(server.submissionPort, 30_000);
    targets.ours = { ...server, name: 'ours', row: 'mx', rss: true, db, relay };
  }
  return targets;
}

async function measureAll(opts, targets, clkTck) {
  const rows = [];
  const peers = PEERS.map((p) => targets[p.key]).filter(Boolean);
  const mxTargets = [...peers, ...(opts.targets.includes('ours') ? [targets.ours] : [])];
  const record = (r) => {
    rows.push(r);
    const lat = r.p50 !== null && r.p50 !== undefined ? `, p50 ${fmt(r.p50, 2)} ms p99 ${fmt(r.p99, 2)} ms` : '';
    log(
      r.error
        ? `${ROW_LABEL[r.row]}, ${describe(r)}: ERROR ${r.error}`
        : `${ROW_LABEL[r.row]}, ${describe(r)}: ${r.count} msgs/run, runs ${r.rates.map((x) => fmt(x, 0)).join(' ')} msgs/s${lat}, ` +
            `CPU ${fmt(r.cpuPer1k, 2)} s/1k, machine busy ${fmt(r.machineBusy * 100, 0)}%, ${fmt(r.seconds, 1)} s`,
    );
  };
  for (const kb of opts.sizesKb) {
    for (const sessions of opts.sessions) {
      for (const mode of opts.modes) {
        const cfg = { size: kb * 1024, sessions, mode };
        for (const t of mxTargets) {
          try {
            record(await measureMx(t, cfg, opts, clkTck));
          } catch (err) {
            record({ row: t.row, target: t.name, ...cfg, error: err.message.split('\n')[0] });
          }
        }
        if (mode === 'node' || !opts.targets.includes('submit')) continue;
        const scfg = { ...cfg, submit: true };
        try {
          for (const r of await measureSubmit(targets.ours, targets.ours.relay, scfg, opts, clkTck)) record(r);
        } catch (err) {
          for (const row of ['submit', 'e2e']) record({ row, target: 'ours', ...scfg, error: err.message.split('\n')[0] });
        }
      }
    }
  }
  return rows;
}

async function main() {
  const opts = options();
  const began = performance.now();
  ensurePostfixTools(log);
  const machine = machineInfo();
  log(`machine: ${machine.nproc} CPUs (${machine.cpu}), ${machine.memGiB} GiB, node ${machine.node}, postfix ${machine.postfix}, kernel ${machine.kernel}`);
  if (opts.build) build();
  const { stops, stopAll } = lifecycle(WATCHDOG_MS, log);
  try {
    const versions = {};
    const skipped = [];
    const targets = await startTargets(opts, stops, versions, skipped);
    for (const s of skipped) log(`skipped: ${s}`);
    const background = await backgroundLoad(2000);
    log(`machine CPU busy before the runs (other work on this box): ${fmt(background * 100, 0)}%`);
    if (background > 0.1) log('warning: the machine is not idle; figures will be lower and noisier than on a quiet machine');
    const greet = {};
    for (const t of [...PEERS.map((p) => targets[p.key]), targets.ours].filter(Boolean)) greet[t.name] = percentile(await probeGreeting(t.port, GREETING_PROBES), 50);

    const rows = await measureAll(opts, targets, machine.clkTck);
    const elapsedS = (performance.now() - began) / 1000;
    const rs = targets.ours?.relay.stats;
    const relay = rs ? { arrivals: rs.arrivals.size, signed: rs.signed, duplicates: rs.duplicates, unknown: rs.unknown } : null;
    const all = { machine, versions, opts, rows, greet, background, verification, relay, skipped, elapsedS };
    process.stdout.write(report(all));
    if (opts.json) writeFileSync(opts.json, `${JSON.stringify(all, null, 2)}\n`);
    if (verification.mismatches.length > 0 || verification.errors.length > 0 || rows.some((r) => r.error)) {
      if (targets.ours) log(`our server's log tail:\n${targets.ours.logTail()}`);
      process.exitCode = 1;
    }
  } finally {
    await stopAll();
  }
}

main().then(
  () => process.exit(),
  (err) => {
    log(`bench failed: ${err.stack ?? err}`);
    process.exit(1);
  },
);
