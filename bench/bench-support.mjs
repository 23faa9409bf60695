/**
 * Support for the benchmarks in bench/: installing Postfix's test tools, free ports, waiting for
 * a listener, per-process-tree CPU and peak RSS from /proc, starting Postfix's smtp-sink and our
 * own server on a throwaway DATA_DIR, running smtp-source, and the peers of the side-by-side
 * benchmark: Haraka with a discard queue (installed from npm on first use) and a throwaway Postfix
 * accepting into its own durable queue. Used by bench/smtp-ingest.mjs and bench/side-by-side.mjs.
 *
 * Everything binds 127.0.0.1, every child has a time limit, and stop() of a started server
 * sends SIGTERM and removes its temporary directory.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';

export const SMTP_SOURCE = '/usr/sbin/smtp-source';
export const SMTP_SINK = '/usr/sbin/smtp-sink';

const isRoot = process.getuid?.() === 0;

/** Installs Debian's postfix package (smtp-source, smtp-sink) when smtp-source is missing. */
export function ensurePostfixTools(log) {
  if (existsSync(SMTP_SOURCE) && existsSync(SMTP_SINK)) return;
  const sudo = isRoot ? [] : ['sudo', '-n'];
  const run = (cmd, args, input) => {
    const shown = [...sudo, cmd, ...args].join(' ');
    log(`setup: ${shown}`);
    const [bin, ...rest] = sudo.length > 0 ? [...sudo, cmd, ...args] : [cmd, ...args];
    execFileSync(bin, rest, {
      input,
      stdio: [input === undefined ? 'ignore' : 'pipe', 'ignore', 'inherit'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      timeout: 600_000,
    });
  };
  log(`setup: ${SMTP_SOURCE} not found; installing Debian's postfix package (it ships smtp-source and smtp-sink)`);
  try {
    // "No configuration": the package installs its programs and starts no mail system
    run('debconf-set-selections', [], 'postfix postfix/main_mailer_type select No configuration\n');
    run('apt-get', ['update']);
    run('apt-get', ['install', '-y', '--no-install-recommends', 'postfix']);
  } catch (err) {
    throw new Error(`could not install postfix (${err.message}); install it yourself: apt-get install postfix`, { cause: err });
  }
  if (!existsSync(SMTP_SOURCE)) throw new Error(`postfix installed but ${SMTP_SOURCE} is still missing`);
}

export function postfixVersion() {
  try {
    return execFileSync('dpkg-query', ['-W', '-f', '${Version}', 'postfix'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

export function machineInfo() {
  const clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  return {
    date: new Date().toISOString(),
    nproc: os.availableParallelism(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    memGiB: (os.totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    postfix: postfixVersion(),
    kernel: os.release(),
    clkTck,
  };
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once host:port accepts a connection; rejects after timeoutMs or if check() throws. */
export async function waitForPort(port, timeoutMs, check = () => undefined) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    check();
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(200);
  }
  throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`);
}

// ---- /proc accounting -------------------------------------------------------------------------

/** stat fields of one process: ppid and CPU ticks (own and of reaped children). */
function readStat(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may contain spaces and parentheses: split after the last ')'
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // f[0] is field 3 (state): field n is f[n - 3]
    return { ppid: Number(f[1]), utime: Number(f[11]), stime: Number(f[12]), cutime: Number(f[13]), cstime: Number(f[14]) };
  } catch {
    return null; // the process ended between readdir and read
  }
}

/** CPU ticks (user + system) of a process's main thread alone: for node, the event loop. */
export function mainThreadCpuTicks(pid) {
  const st = readStat(`${pid}/task/${pid}`);
  return st ? st.utime + st.stime : 0;
}

/** The pid and every live descendant of it. */
export function processTree(rootPid) {
  const children = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(name);
    if (!st) continue;
    const list = children.get(st.ppid) ?? [];
    list.push(Number(name));
    children.set(st.ppid, list);
  }
  const out = [rootPid];
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]) ?? []));
  return out;
}

/**
 * CPU ticks used so far by a process tree: utime+stime of every live process plus
 * cutime+cstime (ended children they reaped, such as closed PostgreSQL backends), so each
 * process, live or ended, counts exactly once.
 */
export function treeCpuTicks(rootPid) {
  let ticks = 0;
  for (const pid of processTree(rootPid)) {
    const st = readStat(pid);
    if (st) ticks += st.utime + st.stime + st.cutime + st.cstime;
  }
  return ticks;
}

/** CPU ticks of one process (its threads), user and system; optionally plus its reaped children. */
export function ownCpuTicks(pid, { withReapedChildren = false } = {}) {
  const st = readStat(pid);
  if (!st) return { user: 0, sys: 0 };
  return withReapedChildren ? { user: st.utime + st.cutime, sys: st.stime + st.cstime } : { user: st.utime, sys: st.stime };
}

/**
 * The whole machine's CPU ticks so far from /proc/stat: `busy` (user, nice, system, irq, softirq)
 * and `total` (those plus idle, iowait and steal). A delta of busy/total over a run, minus the
 * ticks of the processes the benchmark accounts for, is other work on the box.
 */
export function machineCpuTicks() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return { busy: f[0] + f[1] + f[2] + f[5] + f[6], total: f.slice(0, 8).reduce((a, b) => a + b, 0) };
}

/** Peak resident set (VmHWM) of one process in bytes. */
export function peakRssBytes(pid) {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Resets VmHWM to the current RSS (Linux clear_refs 5) so the next reading is per config. */
export function resetPeakRss(pid) {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

// ---- targets ---------------------------------------------------------------------------------

function tailOf(file, lines = 20) {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function stopChild(child, timeoutMs) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Postfix's smtp-sink on 127.0.0.1: answers every command and throws the mail away. */
export async function startSmtpSink() {
  const port = await freePort();
  // -u: required as root; -m: session limit above our largest session count
  const args = [...(isRoot ? ['-u', 'nobody'] : []), '-m', '1000', `127.0.0.1:${port}`, '1024'];
  const child = spawn(SMTP_SINK, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  await waitForPort(port, 10_000, () => {
    if (child.exitCode !== null) throw new Error(`smtp-sink exited: ${stderr.trim()}`);
  });
  return { name: 'smtp-sink', port, pid: child.pid, stop: () => stopChild(child, 5000) };
}

/**
 * Our server (dist/src/main.js, every role: api,smtp,worker, as `npm start` runs it) on a fresh
 * DATA_DIR and embedded PostgreSQL,
 * with one tenant, domain bench.test and mailbox sink@bench.test (plus sink2@… with `mailboxes`).
 * `serverEnv` adds or overrides variables (experiments: DATABASE_POOL_SIZE, UV_THREADPOOL_SIZE).
 * The server runs with the temp dir as its working directory so no `.env` of the checkout is read.
 */
export async function startOurServer({ root, inboundAuth, cpuProfDir, traceFile, experiments = [], serverEnv = {}, mailboxes = 1, log }) {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'bench-ingest-'));
  chmodSync(dataDir, 0o755); // as root, PostgreSQL runs as `postgres` and must traverse it
  const [smtpPort, apiPort, pgPort, deadDnsPort, submissionPort, smtpsPort] = await uniquePorts(6);
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATA_DIR: dataDir,
    EMBEDDED_PG_PORT: String(pgPort),
    SMTP_PORT: String(smtpPort),
    // every listener on a free port: never the defaults a running server may hold
    SUBMISSION_PORT: String(submissionPort),
    SMTPS_PORT: String(smtpsPort),
    API_PORT: String(apiPort),
    // the worker folds the quota ledger: without it every RCPT sums an ever longer ledger, which
    // no deployment does (its blob collection runs hourly, so never during a run)
    ROLES: 'api,smtp,worker',
    LOG_LEVEL: 'warn',
    MAIL_HOSTNAME: 'bench.local',
    INBOUND_AUTH_ENABLED: inboundAuth ? 'true' : 'false',
    // with verification on, DNS goes to a port nobody listens on: lookups fail fast, locally
    ...(inboundAuth ? { DNS_SERVERS: `127.0.0.1:${deadDnsPort}`, DNS_TIMEOUT_MS: '1000' } : {}),
    SMTP_MAX_CONNECTIONS_PER_IP: '1000',
    MAX_RECIPIENTS: '100',
    ...(traceFile ? { BENCH_TRACE_FILE: traceFile } : {}),
    ...(experiments.length ? { BENCH_EXPERIMENTS: experiments.join(',') } : {}),
    ...serverEnv,
  };
  const logFile = path.join(dataDir, 'server.log');
  const out = openSync(logFile, 'a');
  const nodeArgs = [
    ...(cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : []),
    ...(traceFile ? ['--import', pathToFileURL(path.join(root, 'bench/ingest-trace.mjs')).href] : []),
    ...(experiments.length ? ['--import', pathToFileURL(path.join(root, 'bench/ingest-experiments.mjs')).href] : []),
  ];
  const child = spawn(process.execPath, [...nodeArgs, path.join(root, 'dist/src/main.js')], { cwd: dataDir, env, stdio: ['ignore', out, out] });
  const cleanup = () => rmSync(dataDir, { recursive: true, force: true });
  try {
    await waitForPort(smtpPort, 120_000, () => {
      if (child.exitCode !== null) throw new Error(`our server exited with ${child.exitCode}:\n${tailOf(logFile)}`);
    });
    const admin = (...args) =>
      execFileSync(process.execPath, [path.join(root, 'dist/src/cli/admin.js'), ...args], {
        cwd: dataDir,
        env,
        encoding: 'utf8',
        timeout: 60_000,
      });
    admin('create-tenant', '--name', 'Bench');
    admin('add-domain', '--tenant', 'Bench', '--domain', 'bench.test');
    for (const email of benchMailboxes(mailboxes)) admin('create-user', '--email', email, '--password', 'benchpass123', '--quota-mb', '100000');
    log(`our server: pid ${child.pid}, SMTP 127.0.0.1:${smtpPort}, embedded PostgreSQL :${pgPort}, DATA_DIR ${dataDir}`);
  } catch (err) {
    await stopChild(child, 30_000);
    cleanup();
    throw err;
  }
  const password = readFileSync(path.join(dataDir, 'secrets', 'pg-password'), 'utf8').trim();
  return {
    name: 'ours',
    port: smtpPort,
    apiPort,
    submissionPort,
    pid: child.pid,
    dataDir,
    databaseUrl: `postgres://mailserver:${encodeURIComponent(password)}@127.0.0.1:${pgPort}/mailserver`,
    logTail: () => tailOf(logFile),
    async stop({ keep = false } = {}) {
      await stopChild(child, 60_000);
      if (!keep) cleanup();
    },
  };
}

/** sink@bench.test, then sink2@…, sink3@… when more than one mailbox is asked for. */
export function benchMailboxes(n) {
  return Array.from({ length: n }, (_, i) => (i === 0 ? 'sink@bench.test' : `sink${i + 1}@bench.test`));
}

async function uniquePorts(n) {
  const ports = new Set();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

// ---- smtp-source -----------------------------------------------------------------------------

/**
 * One smtp-source run: `count` messages of `size` payload bytes over `sessions` parallel
 * sessions; a new connection per message, or one per session with `reuse` (-d). smtp-source
 * exits non-zero on the first unexpected reply (no -A), so exit 0 means every DATA got 250.
 */
export function runSmtpSource({ port, sessions, count, size, reuse, from, to, timeoutMs = 300_000 }) {
  const args = ['-s', String(sessions), '-m', String(count), '-l', String(size), '-f', from, '-t', to, '-M', 'client.bench.test'];
  if (reuse) args.push('-d');
  args.push(`127.0.0.1:${port}`);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(SMTP_SOURCE, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      const elapsedMs = performance.now() - started;
      if (code !== 0) {
        reject(new Error(`smtp-source ${args.join(' ')} failed (${signal ?? `exit ${code}`}): ${stderr.trim().slice(0, 500)}`));
      } else {
        resolve({ elapsedMs, ok: count });
      }
    });
  });
}

/**
 * Stops what was started, in reverse order, on every way out (including Ctrl-C and a watchdog
 * after `watchdogMs`). Push stop functions onto `stops`; call `stopAll()` at the end.
 */
export function lifecycle(watchdogMs, log) {
  const stops = [];
  let stopping = false;
  const stopAll = async () => {
    if (stopping) return;
    stopping = true;
    for (const stop of stops.reverse()) await stop().catch((err) => log(`cleanup: ${err.message}`));
  };
  const abort = (why) => {
    log(`bench: ${why}; stopping`);
    stopAll().finally(() => process.exit(130));
  };
  process.once('SIGINT', () => abort('interrupted'));
  process.once('SIGTERM', () => abort('terminated'));
  setTimeout(() => abort(`still running after ${watchdogMs / 60_000} min`), watchdogMs).unref();
  return { stops, stopAll };
}


// ---- peers: Haraka and Postfix's own queue ---------------------------------------------------

/** Where Haraka is installed on first use (git-ignored), and the committed package.json and config. */
function harakaPaths(root) {
  const installDir = path.join(root, 'bench/.peers/haraka');
  return {
    source: path.join(root, 'bench/peers/haraka'),
    installDir,
    bin: path.join(installDir, 'node_modules/Haraka/bin/haraka'),
    pkg: path.join(installDir, 'node_modules/Haraka/package.json'),
  };
}

/**
 * Installs Haraka (bench/peers/haraka/package.json, with its overrides) into bench/.peers/haraka
 * when it is missing or that package.json changed, printing the command first. Returns its version.
 */
export function ensureHaraka(root, log) {
  const p = harakaPaths(root);
  const wanted = readFileSync(path.join(p.source, 'package.json'), 'utf8');
  const installedJson = path.join(p.installDir, 'package.json');
  const current = existsSync(installedJson) ? readFileSync(installedJson, 'utf8') : null;
  if (!existsSync(p.bin) || current !== wanted) {
    mkdirSync(p.installDir, { recursive: true });
    copyFileSync(path.join(p.source, 'package.json'), installedJson);
    log(`setup: (cd ${path.relative(root, p.installDir)} && npm install --no-audit --no-fund)   (Haraka for the side-by-side benchmark)`);
    try {
      execFileSync('npm', ['install', '--no-audit', '--no-fund'], { cwd: p.installDir, stdio: ['ignore', 'ignore', 'inherit'], timeout: 600_000 });
    } catch (err) {
      rmSync(installedJson, { force: true }); // so the next run tries again
      throw new Error(`could not install Haraka (${err.message}); try it yourself in ${p.installDir}`, { cause: err });
    }
  }
  return JSON.parse(readFileSync(p.pkg, 'utf8')).version;
}

/**
 * Haraka (`haraka -c DIR`) on 127.0.0.1: a temporary directory with Haraka's default config,
 * bench/peers/haraka/{config,plugins} copied over it and the port filled in. One process (no cluster), accepts rcpt@bench.test, discards after
 * DATA (queue/discard with YES_REALLY_DO_DISCARD=1), logs at warn.
 */
export async function startHaraka({ root, log }) {
  const p = harakaPaths(root);
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-haraka-'));
  // Haraka's shipped defaults first (it reads e.g. connection.ini from the config directory
  // alone), then ours over them
  cpSync(path.join(p.installDir, 'node_modules/Haraka/config'), path.join(dir, 'config'), { recursive: true });
  cpSync(path.join(p.source, 'config'), path.join(dir, 'config'), { recursive: true });
  cpSync(path.join(p.source, 'plugins'), path.join(dir, 'plugins'), { recursive: true });
  const smtpIni = path.join(dir, 'config/smtp.ini');
  writeFileSync(smtpIni, readFileSync(smtpIni, 'utf8').replaceAll('@PORT@', String(port)));
  const logFile = path.join(dir, 'haraka.log');
  const out = openSync(logFile, 'a');
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, YES_REALLY_DO_DISCARD: '1' };
  const child = spawn(process.execPath, [p.bin, '-c', dir], { cwd: dir, env, stdio: ['ignore', out, out] });
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  try {
    await waitForPort(port, 30_000, () => {
      if (child.exitCode !== null) throw new Error(`Haraka exited with ${child.exitCode}:\n${tailOf(logFile)}`);
    });
  } catch (err) {
    await stopChild(child, 10_000);
    cleanup();
    throw err;
  }
  log(`haraka: pid ${child.pid}, 127.0.0.1:${port}, config ${dir}`);
  return {
    name: 'haraka',
    port,
    pid: child.pid,
    logTail: () => tailOf(logFile),
    async stop() {
      await stopChild(child, 15_000);
      cleanup();
    },
  };
}

/**
 * A throwaway Postfix (test/helpers/postfix.ts, built into dist/) accepting mail for bench.test
 * into its own queue, then handing it to the discard transport: the 250 after DATA comes once
 * cleanup has written and fsync'd the queue file (Postfix's default). Needs root; resolves to
 * `{ skipped: reason }` when Postfix cannot run here. `pid` is the master's, whose process tree
 * holds smtpd, cleanup, qmgr and discard.
 */
export async function startPostfixQueue({ root, log }) {
  const { startPostfix, postfixUnavailable } = await import(pathToFileURL(path.join(root, 'dist/test/helpers/postfix.js')).href);
  const why = postfixUnavailable();
  if (why) return { skipped: why };
  const port = await freePort();
  const pf = await startPostfix({ port, main: { relay_domains: 'bench.test', transport_maps: 'inline:{ bench.test=discard: }' } });
  const pid = Number(readFileSync(path.join(pf.dir, 'spool/pid/master.pid'), 'utf8').trim());
  log(`postfix-queue: master pid ${pid}, 127.0.0.1:${port}, instance ${pf.dir}`);
  return { name: 'postfix-queue', port, pid, queued: () => pf.queued(), logTail: () => pf.log().split('\n').slice(-20).join('\n'), stop: () => pf.stop() };
}
