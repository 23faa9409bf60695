#!/usr/bin/env node
/**
 * bench/smtp-submit: the sending path end to end (issue [3/6] "Measure"). Authenticated clients
 * submit over the submission port (STARTTLS, AUTH PLAIN); the server stores each message in Sent
 * and commits one outbound row for it; the worker DKIM-signs it and relays it through RELAY_URL to
 * a sink in this process (smtp-server on 127.0.0.1: STARTTLS with a self-signed certificate the
 * server trusts through OUTBOUND_TLS_CA_FILE, AUTH required), which discards every message but
 * records when it arrived and whether it carried a DKIM-Signature.
 *
 * It prints submitted messages/s and the DATA → 250 latency (the durable commit), end-to-end
 * delivered messages/s (first submission → last arrival at the sink), the queue latency of each
 * message (its 250 at the client → its arrival at the sink, matched by a unique Message-ID, both
 * on this process's clock) with the server's own view of it (outbound.created_at → sent_at), and
 * the server's CPU seconds (node and every PostgreSQL process) and peak RSS. No pass/fail; it
 * exits 1 only if a message is refused or not every message reaches the sink in time.
 *
 * Why a sink in this process and not Postfix's smtp-sink: the relay must offer STARTTLS with a
 * certificate our outbound TLS verifies, and require AUTH, as a real smarthost does.
 *
 *   node bench/smtp-submit.mjs [--messages 2000] [--sessions 20] [--size 4] [--no-build] ...
 * See --help and bench/README.md.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import nodemailer from 'nodemailer';
import pg from 'pg';
import { lifecycle, machineCpuTicks, machineInfo, ownCpuTicks, peakRssBytes, resetPeakRss, startOurServer, treeCpuTicks, waitForPort } from './bench-support.mjs';
import { bodyOfSize, percentile } from './smtp-loadgen.mjs';
import { RELAY_PASS, RELAY_USER, startRelaySink } from './submit-loadgen.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The mailbox startOurServer creates; it is the authenticated sender. */
const SENDER = 'sink@bench.test';
const SENDER_PASSWORD = 'benchpass123';
/** Not one of our domains, so the submission is queued for the relay. */
const RECIPIENT_DOMAIN = 'relay-sink.bench-remote.test';
/** The whole benchmark stops itself after this long. */
const WATCHDOG_MS = 30 * 60_000;

const USAGE = `usage: node bench/smtp-submit.mjs [options]
  --messages N            messages to submit (default 2000), one recipient each
  --sessions N            concurrent submission sessions (default 20)
  --size KB               body size in KB (default 4; may be fractional)
  --per-connection N      messages per pooled client connection before it reconnects and
                          authenticates again (default 100, nodemailer's pool default)
  --concurrency N         the server's OUTBOUND_CONCURRENCY (default: the server's, 8)
  --server-env KEY=VALUE  add or override a server variable (may be repeated)
  --wait S                how long to wait for the last delivery after the last submission (default 300)
  --cpu-prof DIR           run the server with node --cpu-prof (read with bench/cpu-profile-summary.mjs)
  --no-build              skip npm run -s build
  --json FILE             write every figure as JSON
  --keep                  keep the server's DATA_DIR
`;

const log = (line) => process.stderr.write(`${line}\n`);

function options() {
  const { values } = parseArgs({
    options: {
      messages: { type: 'string', default: '2000' },
      sessions: { type: 'string', default: '20' },
      size: { type: 'string', default: '4' },
      'per-connection': { type: 'string', default: '100' },
      concurrency: { type: 'string' },
      'server-env': { type: 'string', multiple: true },
      wait: { type: 'string', default: '300' },
      'cpu-prof': { type: 'string' },
      'no-build': { type: 'boolean', default: false },
      json: { type: 'string' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const o = {
    messages: Number(values.messages),
    sessions: Number(values.sessions),
    sizeKb: Number(values.size),
    perConnection: Number(values['per-connection']),
    concurrency: values.concurrency === undefined ? null : Number(values.concurrency),
    serverEnv: Object.fromEntries((values['server-env'] ?? []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])),
    waitS: Number(values.wait),
    cpuProfDir: values['cpu-prof'] ? path.resolve(values['cpu-prof']) : null,
    build: !values['no-build'],
    json: values.json ?? null,
    keep: values.keep,
  };
  const whole = (v, min, max) => Number.isInteger(v) && v >= min && v <= max;
  const bad = [
    ...(whole(o.messages, 1, 1_000_000) ? [] : ['--messages must be a whole number from 1 to 1000000']),
    ...(whole(o.sessions, 1, 500) ? [] : ['--sessions must be a whole number from 1 to 500']),
    ...(o.sizeKb > 0 && o.sizeKb <= 10_000 ? [] : ['--size must be > 0 and at most 10000 (KB)']),
    ...(whole(o.perConnection, 1, 1_000_000) ? [] : ['--per-connection must be a whole number ≥ 1']),
    ...(o.concurrency === null || whole(o.concurrency, 1, 1000) ? [] : ['--concurrency must be a whole number from 1 to 1000']),
    ...(o.waitS > 0 ? [] : ['--wait must be > 0']),
    ...Object.keys(o.serverEnv).filter((k) => !/^[A-Z][A-Z0-9_]*$/.test(k)).map((k) => `--server-env needs KEY=VALUE, got "${k}"`),
  ];
  if (bad.length > 0) {
    process.stderr.write(`${bad.join('\n')}\n\n${USAGE}`);
    process.exit(2);
  }
  return o;
}

// ---- the relay sink --------------------------------------------------------------------------

// ---- the submitting clients ------------------------------------------------------------------

/** A complete message with a unique Message-ID; `body` is shared (only the headers differ). */
function messageBytes(runId, seq, body) {
  const messageId = `bench-${runId}-${seq}@bench.test`;
  const head = [
    `From: Bench <${SENDER}>`,
    `To: <rcpt${seq % 100}@${RECIPIENT_DOMAIN}>`,
    `Subject: bench submission ${seq}`,
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <${messageId}>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    'Content-Transfer-Encoding: 7bit',
  ].join('\r\n');
  return { messageId, to: `rcpt${seq % 100}@${RECIPIENT_DOMAIN}`, raw: Buffer.from(`${head}\r\n\r\n${body}\r\n`, 'latin1') };
}

/**
 * Submits `count` messages over a nodemailer pool of `sessions` connections (STARTTLS required,
 * AUTH PLAIN; a connection is replaced after `perConnection` messages, which authenticates
 * again). `sessions` loops each keep one message in flight, so no message waits in the pool's
 * queue and the timings are the server's. Per message: `dataMs` is nodemailer's messageTime (DATA
 * command → final 250, whole milliseconds), `txMs` the whole sendMail (MAIL FROM → 250), and
 * `acceptedAt` the moment the 250 arrived.
 */
async function submitAll({ port, sessions, count, sizeBytes, perConnection, runId }) {
  const transport = nodemailer.createTransport({
    pool: true,
    maxConnections: sessions,
    maxMessages: perConnection,
    host: '127.0.0.1',
    port,
    secure: false,
    requireTLS: true,
    auth: { user: SENDER, pass: SENDER_PASSWORD },
    authMethod: 'PLAIN',
    name: 'client.bench.test',
    tls: { rejectUnauthorized: false }, // the server's own self-signed certificate
    connectionTimeout: 60_000,
    greetingTimeout: 60_000,
    socketTimeout: 120_000,
    logger: false,
  });
  const body = bodyOfSize(sizeBytes);
  const results = [];
  const failures = [];
  let next = 0;
  const started = performance.now();
  async function session() {
    while (next < count) {
      const seq = next++;
      const msg = messageBytes(runId, seq, body);
      const t0 = performance.now();
      try {
        const info = await transport.sendMail({ envelope: { from: SENDER, to: [msg.to] }, raw: msg.raw });
        const acceptedAt = performance.now();
        results.push({ messageId: msg.messageId, acceptedAt, txMs: acceptedAt - t0, dataMs: info.messageTime ?? NaN });
      } catch (err) {
        failures.push(`${msg.messageId}: ${err.response ?? err.message}`);
      }
    }
  }
  await Promise.all(Array.from({ length: sessions }, session));
  const elapsedMs = performance.now() - started;
  transport.close();
  return { started, elapsedMs, results, failures };
}

// ---- server and report -----------------------------------------------------------------------

/** Our server, with the submission ports and the relay set, the send limits out of the way. */
async function startServer(o, relayPort, caFile) {
  const server = await startOurServer({
    root: ROOT,
    log,
    cpuProfDir: o.cpuProfDir,
    serverEnv: {
      // 127.0.0.1 rather than localhost: the sink listens on IPv4 only; the certificate names both
      RELAY_URL: `smtp://${RELAY_USER}:${RELAY_PASS}@127.0.0.1:${relayPort}`,
      OUTBOUND_TLS_CA_FILE: caFile,
      SEND_LIMIT_PER_HOUR: '100000000',
      SEND_LIMIT_PER_DAY: '100000000',
      ...(o.concurrency === null ? {} : { OUTBOUND_CONCURRENCY: String(o.concurrency) }),
      ...o.serverEnv,
    },
  });
  await waitForPort(server.submissionPort, 30_000);
  return { server, submissionPort: server.submissionPort };
}

/** Marks bench.test verified (only verified domains may send and sign) and checks its DKIM key. */
async function verifyBenchDomain(db) {
  const res = await db.query(`UPDATE domains SET status = 'verified' WHERE name = 'bench.test' RETURNING dkim_private_key_enc IS NOT NULL AS has_key`);
  if (res.rowCount !== 1) throw new Error('domain bench.test not found in the database');
  return res.rows[0].has_key;
}

async function serverQueueFigures(db) {
  const { rows } = await db.query(
    `SELECT status, count(*)::int AS n,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at)) * 1000 AS p50,
            percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at)) * 1000 AS p99,
            max(attempts)::int AS max_attempts
       FROM outbound GROUP BY status`,
  );
  const submissions = await db.query(`SELECT count(*)::int AS n FROM submissions WHERE submitted_at IS NOT NULL`);
  return { byStatus: Object.fromEntries(rows.map((r) => [r.status, r])), submissions: submissions.rows[0].n };
}

/** CPU ticks so far: the server's tree (node + PostgreSQL), this process (clients + sink), the machine. */
function cpuSnapshot(pid) {
  const self = ownCpuTicks(process.pid);
  const machine = machineCpuTicks();
  return { server: treeCpuTicks(pid), self: self.user + self.sys, machineBusy: machine.busy, machineTotal: machine.total };
}

function cpuDelta(before, after) {
  return Object.fromEntries(Object.keys(before).map((k) => [k, after[k] - before[k]]));
}

/** Share of the machine's CPU busy over `ms` while the benchmark is idle: other work on the box. */
async function backgroundLoad(ms) {
  const before = machineCpuTicks();
  await sleep(ms);
  const after = machineCpuTicks();
  return (after.busy - before.busy) / (after.total - before.total);
}

const f1 = (v) => (Number.isFinite(v) ? v.toFixed(1) : '-');
const f0 = (v) => (Number.isFinite(v) ? v.toFixed(0) : '-');

function report(r) {
  const m = r.machine;
  console.log(`\nSMTP submission benchmark, ${m.date}`);
  console.log(`machine: ${m.nproc} CPUs (${m.cpu}), ${m.memGiB} GiB, node ${m.node}, kernel ${m.kernel}`);
  console.log(
    `load: ${r.messages} messages of ${r.sizeKb} KB body, 1 recipient each, ${r.sessions} sessions (STARTTLS + AUTH PLAIN, ` +
      `${r.perConnection} messages per connection); server ROLES=api,smtp,worker, OUTBOUND_CONCURRENCY=${r.concurrency}, relay = in-process sink (STARTTLS + AUTH)\n`,
  );
  console.log('| phase | messages | msgs/s | p50 ms | p99 ms | server CPU s | CPU s/1k msgs | peak RSS MB |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
  console.log(
    `| submit (DATA → 250) | ${r.submit.ok} | ${f0(r.submit.rate)} | ${f0(r.submit.dataP50)} | ${f0(r.submit.dataP99)} | ${f1(r.cpu.submitS)} | ${f1((r.cpu.submitS / r.submit.ok) * 1000)} | ${f0(r.peakRssMb)} |`,
  );
  console.log(`| sendMail (MAIL FROM → 250; + connect, STARTTLS, AUTH on a new connection) | ${r.submit.ok} | | ${f1(r.submit.txP50)} | ${f1(r.submit.txP99)} | | | |`);
  console.log(
    `| end to end (first submit → last arrival) | ${r.e2e.delivered} | ${f0(r.e2e.rate)} | ${f0(r.e2e.queueP50)} | ${f0(r.e2e.queueP99)} | ${f1(r.cpu.totalS)} | ${f1((r.cpu.totalS / Math.max(1, r.e2e.delivered)) * 1000)} | ${f0(r.peakRssMb)} |`,
  );
  console.log(`| queue, server view (created_at → sent_at) | ${r.serverQueue.sent} | | ${f0(r.serverQueue.p50)} | ${f0(r.serverQueue.p99)} | | | |`);
  console.log('');
  console.log(`- end-to-end p50/p99 is the queue latency: the client's 250 → the message's arrival at the sink (same clock);`);
  console.log(`  the server's view starts at created_at, the start of the submitting transaction, so it also holds the commit`);
  console.log(
    `- timeline: submission ${f1(r.submit.elapsedMs / 1000)} s, last arrival ${f1(r.e2e.elapsedMs / 1000)} s after the first submission ` +
      `(drain after the last 250: ${f1(r.e2e.drainMs / 1000)} s); server CPU during submission ${f1(r.cpu.submitS)} s, during the drain ${f1(r.cpu.totalS - r.cpu.submitS)} s`,
  );
  console.log(
    `- sink: ${r.sink.arrivals} distinct messages, ${r.sink.signed} with a DKIM-Signature, ${r.sink.duplicates} duplicates, ${r.sink.unknown} without a known Message-ID; ` +
      `outbound rows: ${Object.entries(r.serverQueue.byStatus).map(([s, n]) => `${n} ${s}`).join(', ')} (max attempts ${r.serverQueue.maxAttempts}); submissions: ${r.serverQueue.submissions}`,
  );
  console.log(
    `- CPU of the machine (${r.machine.nproc} CPUs): busy ${f0(r.load.before * 100)}% before the run (other work); during the run ` +
      `server ${f0(r.load.server * 100)}%, clients + sink (this process, ${f1(r.cpu.clientS)} s) ${f0(r.load.client * 100)}%, ` +
      `other work ${f0(r.load.other * 100)}%${r.load.other > 0.1 ? '  <- DISTURBED: other work on the box took more than 10%' : ''}`,
  );
  if (r.submit.failures.length > 0) console.log(`- REFUSED: ${r.submit.failures.length} submissions, first: ${r.submit.failures[0]}`);
  if (r.e2e.delivered < r.submit.ok) console.log(`- NOT DELIVERED: ${r.submit.ok - r.e2e.delivered} messages did not reach the sink within ${r.waitS} s`);
  console.log(
    `\nSummary: ${r.messages} × ${r.sizeKb} KB, ${r.sessions} sessions: submitted ${f0(r.submit.rate)} msgs/s (DATA → 250 p50 ${f0(r.submit.dataP50)} ms, p99 ${f0(r.submit.dataP99)} ms); ` +
      `delivered end to end ${f0(r.e2e.rate)} msgs/s, queue latency p50 ${f0(r.e2e.queueP50)} ms, p99 ${f0(r.e2e.queueP99)} ms; ` +
      `server CPU ${f1((r.cpu.totalS / Math.max(1, r.e2e.delivered)) * 1000)} s/1k msgs, peak RSS ${f0(r.peakRssMb)} MB.`,
  );
}

// ---- main ------------------------------------------------------------------------------------


async function main() {
  const o = options();
  if (o.build) execFileSync('npm', ['run', '-s', 'build'], { cwd: ROOT, stdio: 'inherit' });
  // the test helper's certificate: CN=localhost, SAN localhost + 127.0.0.1, written to a CA file
  const { testCertificate } = await import(pathToFileURL(path.join(ROOT, 'dist/test/helpers/test-tls.js')).href);
  const tlsCert = testCertificate();
  const { stops, stopAll } = lifecycle(WATCHDOG_MS, log);
  try {
    const sink = await startRelaySink(tlsCert, { onError: (err) => log(`relay sink: ${err.message}`) });
    stops.push(() => sink.stop());
    const { server, submissionPort } = await startServer(o, sink.port, tlsCert.caFile);
    stops.push(() => server.stop({ keep: o.keep }));
    const db = new pg.Client({ connectionString: server.databaseUrl });
    await db.connect();
    stops.push(() => db.end());
    const hasKey = await verifyBenchDomain(db);
    if (!hasKey) log('warning: bench.test has no DKIM key; messages will go out unsigned');
    const clkTck = machineInfo().clkTck;

    const before = await backgroundLoad(2000);
    log(`machine CPU busy before the run (other work on this box): ${(before * 100).toFixed(0)}%`);
    log(`submitting ${o.messages} messages of ${o.sizeKb} KB over ${o.sessions} sessions to 127.0.0.1:${submissionPort}...`);
    const rssReset = resetPeakRss(server.pid);
    const cpu0 = cpuSnapshot(server.pid);
    const runId = Date.now().toString(36);
    const submit = await submitAll({ port: submissionPort, sessions: o.sessions, count: o.messages, sizeBytes: Math.round(o.sizeKb * 1024), perConnection: o.perConnection, runId });
    const cpuSubmit = cpuSnapshot(server.pid);
    log(`submitted ${submit.results.length} in ${(submit.elapsedMs / 1000).toFixed(1)} s (${submit.failures.length} refused); waiting for delivery...`);

    const delivered = await sink.waitFor(submit.results.length, o.waitS * 1000);
    const cpuEnd = cpuSnapshot(server.pid);
    const peakRssMb = peakRssBytes(server.pid) / 2 ** 20;
    await sleep(200); // let the last `sent` commits land before reading the table
    const queue = await serverQueueFigures(db);

    const queueMs = [];
    let lastArrival = submit.started;
    for (const r of submit.results) {
      const at = sink.stats.arrivals.get(r.messageId);
      if (at === undefined) continue;
      queueMs.push(at - r.acceptedAt);
      lastArrival = Math.max(lastArrival, at);
    }
    queueMs.sort((a, b) => a - b);
    const dataMs = submit.results.map((r) => r.dataMs).sort((a, b) => a - b);
    const txMs = submit.results.map((r) => r.txMs).sort((a, b) => a - b);
    const lastAccepted = Math.max(...submit.results.map((r) => r.acceptedAt));
    const sent = queue.byStatus.sent;
    const run = cpuDelta(cpu0, cpuEnd);
    const result = {
      machine: machineInfo(),
      messages: o.messages,
      sessions: o.sessions,
      sizeKb: o.sizeKb,
      perConnection: o.perConnection,
      concurrency: o.concurrency ?? o.serverEnv.OUTBOUND_CONCURRENCY ?? 8,
      waitS: o.waitS,
      submit: {
        ok: submit.results.length,
        failures: submit.failures,
        elapsedMs: submit.elapsedMs,
        rate: submit.results.length / (submit.elapsedMs / 1000),
        dataP50: percentile(dataMs, 50),
        dataP99: percentile(dataMs, 99),
        txP50: percentile(txMs, 50),
        txP99: percentile(txMs, 99),
      },
      e2e: {
        delivered: queueMs.length,
        elapsedMs: lastArrival - submit.started,
        drainMs: Math.max(0, lastArrival - lastAccepted),
        rate: queueMs.length / ((lastArrival - submit.started) / 1000),
        queueP50: percentile(queueMs, 50),
        queueP99: percentile(queueMs, 99),
      },
      serverQueue: {
        sent: sent?.n ?? 0,
        p50: sent ? Number(sent.p50) : NaN,
        p99: sent ? Number(sent.p99) : NaN,
        maxAttempts: Math.max(0, ...Object.values(queue.byStatus).map((s) => s.max_attempts)),
        byStatus: Object.fromEntries(Object.entries(queue.byStatus).map(([s, v]) => [s, v.n])),
        submissions: queue.submissions,
      },
      sink: { arrivals: sink.stats.arrivals.size, signed: sink.stats.signed, duplicates: sink.stats.duplicates, unknown: sink.stats.unknown, authFailures: sink.stats.authFailures },
      cpu: { submitS: cpuDelta(cpu0, cpuSubmit).server / clkTck, totalS: run.server / clkTck, clientS: run.self / clkTck },
      load: {
        before,
        server: run.server / run.machineTotal,
        client: run.self / run.machineTotal,
        other: Math.max(0, run.machineBusy - run.server - run.self) / run.machineTotal,
      },
      peakRssMb,
      peakRssSinceStart: !rssReset,
    };
    report(result);
    if (!rssReset) console.log('(peak RSS is since the server started: resetting VmHWM was not allowed)');
    if (o.json) writeFileSync(o.json, `${JSON.stringify(result, null, 2)}\n`);
    if (!delivered || submit.failures.length > 0) {
      log(`server log tail:\n${server.logTail()}`);
      process.exitCode = 1;
    }
  } finally {
    await stopAll();
  }
}

main().then(
  () => process.exit(),
  (err) => {
    log(`bench: ${err.stack ?? err.message}`);
    process.exit(1);
  },
);
