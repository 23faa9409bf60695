#!/usr/bin/env node
/**
 * bench/smtp-ingest: inbound SMTP throughput of our server storing durably, against Postfix's
 * smtp-sink (accept and discard: the loopback limit) under the same load (issue 2, "Measure").
 *
 * For each message size and session count it drives both targets with Postfix's smtp-source (a
 * new connection per message, and `-d` reusing connections) and with a Node load generator that
 * also times end of DATA → 250. It reports messages/s (median of the runs), p50/p99 latency,
 * CPU seconds per 1,000 messages (the target's whole process tree: for us node and every
 * PostgreSQL process), peak RSS, and our rate as a ratio of smtp-sink's. After every run against
 * our server it checks in PostgreSQL that exactly one message was stored per 250 reply.
 *
 * Usage: node bench/smtp-ingest.mjs [--quick] [--runs N] [--seconds S] [--sizes 4,100]
 *          [--sessions 20,100] [--modes new,reuse,node] [--inbound-auth] [--cpu-prof DIR]
 *          [--trace FILE] [--experiment a,b] [--server-env KEY=VALUE]... [--mailboxes N]
 *          [--targets sink,ours] [--no-build] [--json FILE] [--keep]
 * Env: BENCH_QUICK=1, BENCH_RUNS, BENCH_SECONDS, BENCH_INBOUND_AUTH=1 (flags win).
 * See bench/README.md.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import {
  benchMailboxes,
  ensurePostfixTools,
  lifecycle,
  machineInfo,
  mainThreadCpuTicks,
  ownCpuTicks,
  peakRssBytes,
  resetPeakRss,
  runSmtpSource,
  startOurServer,
  startSmtpSink,
  treeCpuTicks,
} from './bench-support.mjs';
import { describe, fmt, MODES, progressLine, report, traceReport } from './ingest-report.mjs';
import { percentile, probeGreeting, runLoadgen } from './smtp-loadgen.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FROM = 'bench@client.bench.test';
const TO = 'sink@bench.test';
/** Bounds on the messages of one run, whatever the calibration says. */
const MIN_PER_SESSION = 3;
const MAX_MESSAGES_PER_RUN = 100_000;
/** A calibration run shorter than this is repeated with 4× the messages. */
const PILOT_MIN_MS = 400;
/** Connections used to measure connect → 220 on each target. */
const GREETING_PROBES = 20;
/** The whole benchmark stops itself after this long. */
const WATCHDOG_MS = 30 * 60_000;

const USAGE = `usage: node bench/smtp-ingest.mjs [options]   (npm run bench:ingest -- [options])
  --quick                 4 KB, 100 sessions, 1 short run per mode (smoke run, under a minute)
  --runs N                measured runs per configuration, median reported (default 3; quick 1)
  --seconds S             target length of one run (default 3; quick 1.5)
  --sizes 4,100           payload sizes in KB          --sessions 20,100   concurrent sessions
  --modes new,reuse,node  smtp-source, smtp-source -d, node load generator
  --targets sink,ours     which targets to drive       --inbound-auth      SPF/DKIM/DMARC on (dead DNS)
  --no-build              skip npm run -s build        --json FILE         write all figures
  --keep                  keep our server's DATA_DIR
investigation: --trace FILE, --cpu-prof DIR, --experiment a,b, --server-env KEY=VALUE, --mailboxes N
env: BENCH_QUICK=1 BENCH_RUNS BENCH_SECONDS BENCH_INBOUND_AUTH=1; see bench/README.md
`;

const log = (line) => process.stderr.write(`${line}\n`);

function options() {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' },
      runs: { type: 'string' },
      seconds: { type: 'string' },
      sizes: { type: 'string' },
      sessions: { type: 'string' },
      modes: { type: 'string' },
      'inbound-auth': { type: 'boolean' },
      'cpu-prof': { type: 'string' },
      trace: { type: 'string' },
      'server-env': { type: 'string', multiple: true },
      mailboxes: { type: 'string' },
      targets: { type: 'string' },
      experiment: { type: 'string' },
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
    seconds: Number(values.seconds ?? env.BENCH_SECONDS ?? (quick ? 1.5 : 3)),
    sizesKb: list(values.sizes, quick ? ['4'] : ['4', '100']).map(Number),
    sessions: list(values.sessions, quick ? ['100'] : ['20', '100']).map(Number),
    modes: list(values.modes, ['new', 'reuse', 'node']),
    inboundAuth: values['inbound-auth'] ?? env.BENCH_INBOUND_AUTH === '1',
    cpuProfDir: values['cpu-prof'] ? path.resolve(values['cpu-prof']) : null,
    traceFile: values.trace ? path.resolve(values.trace) : null,
    serverEnv: Object.fromEntries((values['server-env'] ?? []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])),
    mailboxes: Number(values.mailboxes ?? 1),
    targets: list(values.targets, ['sink', 'ours']),
    experiments: list(values.experiment, []),
    build: !(values['no-build'] ?? false),
    json: values.json ?? null,
    keep: values.keep ?? false,
  };
  const bad = [
    ...(!Number.isInteger(o.runs) || o.runs < 1 ? ['--runs must be a whole number ≥ 1'] : []),
    ...(!(o.seconds > 0) ? ['--seconds must be > 0'] : []),
    ...(o.sizesKb.some((s) => !(s > 0)) ? ['--sizes must be KB values > 0'] : []),
    ...(o.sessions.some((s) => !Number.isInteger(s) || s < 1 || s > 500) ? ['--sessions must be whole numbers 1..500'] : []),
    ...o.modes.filter((m) => !MODES[m]).map((m) => `unknown mode ${m} (new, reuse, node)`),
    ...(values['server-env'] ?? []).filter((kv) => !/^[A-Z_][A-Z0-9_]*=/.test(kv)).map((kv) => `--server-env wants KEY=VALUE (got ${kv})`),
    ...(o.targets.length === 0 || o.targets.some((t) => t !== 'sink' && t !== 'ours') ? ['--targets takes sink, ours or both'] : []),
    ...(!Number.isInteger(o.mailboxes) || o.mailboxes < 1 || o.mailboxes > 50 ? ['--mailboxes must be 1..50'] : []),
  ];
  if (bad.length > 0) {
    log(bad.join('\n'));
    process.exit(2);
  }
  return o;
}

// ---- one run, one configuration --------------------------------------------------------------

/**
 * CPU ticks so far: the target's process tree, its main process alone (user, system), this
 * benchmark process with the smtp-source runs it reaped (the client side), and the machine.
 */
function cpuSnapshot(pid) {
  const own = ownCpuTicks(pid);
  const self = ownCpuTicks(process.pid, { withReapedChildren: true });
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // /proc/stat cpu: user nice system idle iowait irq softirq steal; steal is the hypervisor's
  const machineTotal = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const machineBusy = f[0] + f[1] + f[2] + f[5] + f[6];
  return { tree: treeCpuTicks(pid), ownUser: own.user, ownSys: own.sys, mainThread: mainThreadCpuTicks(pid), client: self.user + self.sys, machineBusy, machineTotal };
}

function cpuDelta(before, after) {
  return Object.fromEntries(Object.keys(before).map((k) => [k, after[k] - before[k]]));
}

/** One run of `count` messages; returns rate, 250 count, CPU ticks and latency samples. */
async function runOnce(target, cfg, count, db) {
  const mode = MODES[cfg.mode];
  const storedBefore = db ? await storedCount(db) : 0;
  const cpuBefore = cpuSnapshot(target.pid);
  let r;
  if (mode.tool === 'smtp-source') {
    r = await runSmtpSource({ port: target.port, sessions: cfg.sessions, count, size: cfg.size, reuse: mode.reuse, from: FROM, to: TO });
    r.latencyMs = [];
  } else {
    const perSession = Math.max(1, Math.ceil(count / cfg.sessions));
    r = await runLoadgen({ port: target.port, sessions: cfg.sessions, perSession, size: cfg.size, from: FROM, to: loadgenRecipients });
    if (r.errors.length > 0) throw new Error(`load generator errors against ${target.name}:\n  ${r.errors.join('\n  ')}`);
  }
  const cpu = cpuDelta(cpuBefore, cpuSnapshot(target.pid));
  let stored = null;
  if (db) {
    stored = (await storedCount(db)) - storedBefore;
    verification.replies += r.ok;
    verification.stored += stored;
    if (stored !== r.ok) verification.mismatches.push(`${describe(cfg)}: ${r.ok} × 250 but ${stored} stored`);
  }
  return { count, ok: r.ok, elapsedMs: r.elapsedMs, rate: (r.ok / r.elapsedMs) * 1000, cpu, latencyMs: r.latencyMs, stored };
}

const verification = { replies: 0, stored: 0, mismatches: [] };
/** The node load generator's recipients, in turn (smtp-source always sends to TO). */
let loadgenRecipients = [TO];

async function storedCount(db) {
  const { rows } = await db.query('SELECT count(*)::int AS n FROM messages');
  return rows[0].n;
}

/** Share of the machine's CPU busy over `ms` while the benchmark is idle: other work on the box. */
async function backgroundLoad(ms) {
  const before = cpuSnapshot(process.pid);
  await new Promise((resolve) => setTimeout(resolve, ms));
  const d = cpuDelta(before, cpuSnapshot(process.pid));
  return d.machineBusy / d.machineTotal;
}

/** Finds a message count that takes about `seconds`, then does the measured runs. */
async function measure(target, cfg, opts, clkTck, db) {
  const minCount = cfg.sessions * MIN_PER_SESSION;
  let count = minCount;
  let pilot;
  for (;;) {
    pilot = await runOnce(target, cfg, count, db);
    if (pilot.elapsedMs >= PILOT_MIN_MS || count >= MAX_MESSAGES_PER_RUN) break;
    count = Math.min(count * 4, MAX_MESSAGES_PER_RUN);
  }
  count = Math.round(Math.min(MAX_MESSAGES_PER_RUN, Math.max(minCount, pilot.rate * opts.seconds)));
  const rssReset = resetPeakRss(target.pid);
  const runs = [];
  for (let i = 0; i < opts.runs; i++) runs.push(await runOnce(target, cfg, count, db));
  const rates = runs.map((r) => r.rate).sort((a, b) => a - b);
  const latency = runs.flatMap((r) => r.latencyMs).sort((a, b) => a - b);
  const messages = runs.reduce((s, r) => s + r.ok, 0);
  const cpu = {};
  for (const k of Object.keys(runs[0].cpu)) cpu[k] = runs.reduce((s, r) => s + r.cpu[k], 0);
  // CPU seconds per 1,000 messages, by part
  const per1k = (ticks) => (messages > 0 ? (ticks / clkTck / messages) * 1000 : null);
  return {
    target: target.name,
    ...cfg,
    count,
    rates,
    rate: rates[Math.floor((rates.length - 1) / 2)],
    p50: latency.length ? percentile(latency, 50) : null,
    p99: latency.length ? percentile(latency, 99) : null,
    cpuPer1k: per1k(cpu.tree),
    cpuSplitPer1k: {
      // the main process (node for us, user and kernel time); the rest of the tree is PostgreSQL
      mainUser: per1k(cpu.ownUser),
      mainSys: per1k(cpu.ownSys),
      mainThread: per1k(cpu.mainThread),
      children: per1k(cpu.tree - cpu.ownUser - cpu.ownSys),
      client: per1k(cpu.client),
      other: per1k(cpu.machineBusy - cpu.tree - cpu.client),
    },
    machineBusy: cpu.machineBusy / cpu.machineTotal,
    // CPU that went to neither the target nor the client: kernel threads, and other work on the box
    otherShare: (cpu.machineBusy - cpu.tree - cpu.client) / cpu.machineTotal,
    // share of one CPU the main thread (node's event loop) used during the runs
    mainThreadLoad: cpu.mainThread / clkTck / (runs.reduce((s, r) => s + r.elapsedMs, 0) / 1000),
    peakRssMb: peakRssBytes(target.pid) / 2 ** 20,
    rssReset,
  };
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

// ---- main --------------------------------------------------------------------------------------

/** Starts smtp-sink and our server (as selected) and the database client for the stored-count check. */
async function startTargets(opts, stops) {
  const sink = opts.targets.includes('sink') ? await startSmtpSink() : null;
  if (sink) {
    stops.push(sink.stop);
    log(`smtp-sink: pid ${sink.pid}, 127.0.0.1:${sink.port}`);
  }
  if (!opts.targets.includes('ours')) return { sink, ours: null, db: null };
  const { inboundAuth, cpuProfDir, traceFile, serverEnv, experiments, mailboxes } = opts;
  const ours = await startOurServer({ root: ROOT, inboundAuth, cpuProfDir, traceFile, serverEnv, experiments, mailboxes, log });
  stops.push(() => ours.stop({ keep: opts.keep }));
  loadgenRecipients = benchMailboxes(mailboxes);
  const db = new pg.Client({ connectionString: ours.databaseUrl });
  await db.connect();
  stops.push(() => db.end());
  return { sink, ours, db };
}


async function main() {
  const opts = options();
  const began = performance.now();
  ensurePostfixTools(log);
  const machine = machineInfo();
  log(`machine: ${machine.nproc} CPUs (${machine.cpu}), ${machine.memGiB} GiB, node ${machine.node}, postfix ${machine.postfix}, kernel ${machine.kernel}`);
  if (opts.build) build();
  if (opts.cpuProfDir) mkdirSync(opts.cpuProfDir, { recursive: true });
  const { stops, stopAll } = lifecycle(WATCHDOG_MS, log);
  try {
    const { sink, ours, db } = await startTargets(opts, stops);
    const background = await backgroundLoad(2000);
    log(`machine CPU busy before the runs (other work on this box): ${fmt(background * 100, 0)}%`);
    if (background > 0.1) log('warning: the machine is not idle; figures will be lower and noisier than on a quiet machine');
    const greetOf = async (target) => (target ? percentile(await probeGreeting(target.port, GREETING_PROBES), 50) : NaN);
    const greet = { ours: await greetOf(ours), sink: await greetOf(sink), n: GREETING_PROBES };

    const results = [];
    for (const kb of opts.sizesKb) {
      for (const sessions of opts.sessions) {
        for (const mode of opts.modes) {
          for (const target of [sink, ours].filter(Boolean)) {
            const r = await measure(target, { size: kb * 1024, sessions, mode }, opts, machine.clkTck, target === ours ? db : null);
            results.push(r);
            log(progressLine(r, target === ours));
          }
        }
      }
    }
    const elapsedS = (performance.now() - began) / 1000;
    const all = { machine, opts, results, greet, background, verification, elapsedS };
    process.stdout.write(report(all));
    if (opts.json) writeFileSync(opts.json, JSON.stringify(all, null, 2));
    if (verification.mismatches.length > 0) process.exitCode = 1;
  } finally {
    await stopAll();
    if (opts.cpuProfDir) log(`CPU profile of our server written to ${opts.cpuProfDir}`);
    if (opts.traceFile) process.stdout.write(traceReport(opts.traceFile));
  }
}

main().then(
  () => process.exit(),
  (err) => {
    log(`bench failed: ${err.stack ?? err}`);
    process.exit(1);
  },
);
