#!/usr/bin/env node
/**
 * bench/api-mail: the webmail API's list and search latency with 100,000 messages in one folder,
 * alone and while SMTP is under load (issue [6/6] "Measure": list/search p99 < 20 ms at 100k).
 * Figures only, no pass/fail.
 *
 * 1. Our server (bench-support's startOurServer: dist/src/main.js, every role, embedded
 *    PostgreSQL) with mailboxes sink@bench.test and sink2@bench.test.
 * 2. Seeds N messages (default 100,000) into sink@'s INBOX through the real ingest path: raw SMTP
 *    over `--connections` parallel sessions that each keep their connection (the fastest real way
 *    in). Subjects and bodies vary and carry words a search can find: "report" is in every other
 *    message, "zebra" in one message of 10,000.
 * 3. 50 concurrent keep-alive clients (one login, one bearer token: what a busy webmail does)
 *    each loop over one request for `--seconds`: the first page of INBOX, a deep page (a cursor
 *    reached by following next_cursor half-way down the folder), a search that matches many
 *    (q=report), a search that matches few (q=zebra). requests/s and p50/p99 per scenario.
 * 4. The first page again while node SMTP sessions (`--smtp-sessions`, default 50) send to
 *    sink2@ continuously: its p50/p99 and the SMTP rate achieved meanwhile.
 *
 * There is no separate REST management list of folder messages: GET /api/mails lists the
 * caller's sent mails (submissions), not a folder, so it is not measured here.
 *
 *   node bench/api-mail.mjs [--messages 100000] [--clients 50] [--seconds 10] [--connections 20]
 *                           [--smtp-sessions 50] [--quick] [--no-build] [--keep]
 *                           [--explain] [--only REGEX] [--no-load] [--cpu-prof DIR] [--server-root DIR]
 *                           [--server-env KEY=VALUE ...]
 */
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { lifecycle, machineInfo, startOurServer, treeCpuTicks } from './bench-support.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: {
    messages: { type: 'string' },
    clients: { type: 'string', default: '50' },
    seconds: { type: 'string' },
    connections: { type: 'string', default: '20' },
    'smtp-sessions': { type: 'string', default: '50' },
    quick: { type: 'boolean', default: process.env.BENCH_QUICK === '1' },
    'no-build': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    explain: { type: 'boolean', default: false },
    only: { type: 'string' },
    'no-load': { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
    'server-root': { type: 'string' },
    'server-env': { type: 'string', multiple: true, default: [] },
    help: { type: 'boolean', default: false },
  },
});
if (opts.help) {
  process.stdout.write('node bench/api-mail.mjs [--messages 100000] [--clients 50] [--seconds 10] [--connections 20] [--smtp-sessions 50] [--quick] [--no-build] [--keep]\n');
  process.exit(0);
}
const QUICK = opts.quick;
const MESSAGES = Number(opts.messages ?? (QUICK ? 10_000 : 100_000));
const CLIENTS = Number(opts.clients);
const SECONDS = Number(opts.seconds ?? (QUICK ? 3 : 10));
const CONNECTIONS = Number(opts.connections);
const SMTP_SESSIONS = Number(opts['smtp-sessions']);
const MAILBOX = 'sink@bench.test';
const LOAD_MAILBOX = 'sink2@bench.test';
const PASSWORD = 'benchpass123';
const TARGET_P99_MS = 20;

const log = (line) => process.stderr.write(`${line}\n`);
const out = (line = '') => process.stdout.write(`${line}\n`);

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

// ---- messages --------------------------------------------------------------------------------

const WORDS = ['invoice', 'meeting', 'holiday', 'budget', 'release', 'garden', 'football', 'concert', 'library', 'weather', 'travel', 'recipe'];
const NAMES = ['Alice', 'Bob', 'Carol', 'Dave', 'Erin', 'Frank', 'Grace', 'Heidi', 'Ivan', 'Judy'];

/** Message i: varied subject and body; "report" in every other one, "zebra" in 1 of 10,000. */
export function seedMessage(i, to) {
  const a = WORDS[i % WORDS.length];
  const b = WORDS[(i * 7 + 3) % WORDS.length];
  const name = NAMES[i % NAMES.length];
  const rare = i % 10_000 === 4_321 ? ' zebra' : '';
  const common = i % 2 === 0 ? ' report' : '';
  return [
    `From: ${name} Example <${name.toLowerCase()}${i % 97}@example.org>`,
    `To: <${to}>`,
    `Subject: ${a} and ${b} number ${i}${common}`,
    `Date: ${new Date(Date.UTC(2026, 0, 1) + i * 1000).toUTCString()}`,
    `Message-ID: <seed-${i}.${process.pid}@example.org>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    `Hello ${name}, this is about the ${a}${rare}. Message ${i} of the list benchmark.`,
    `The ${b} plan is ready${common}; please read it before Thursday and tell me what you think.`,
    'Kind regards, the benchmark',
    '',
  ].join('\r\n');
}

// ---- raw SMTP sessions -----------------------------------------------------------------------

/** A connection that reads replies (multi-line aware) one at a time. */
function smtpConnection(port) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
    let buffer = '';
    let lines = [];
    const ready = [];
    const waiters = [];
    let failure = null;
    const fail = (err) => {
      failure ??= err;
      while (waiters.length) waiters.shift().reject(failure);
    };
    socket.setEncoding('latin1');
    socket.setTimeout(60_000, () => socket.destroy(new Error('no reply within 60 s')));
    socket.on('data', (chunk) => {
      buffer += chunk;
      let at;
      while ((at = buffer.indexOf('\r\n')) >= 0) {
        const line = buffer.slice(0, at);
        buffer = buffer.slice(at + 2);
        lines.push(line);
        if (line.length < 4 || line[3] === ' ') {
          const reply = { code: Number(line.slice(0, 3)), text: lines.join('\n') };
          lines = [];
          if (waiters.length) waiters.shift().resolve(reply);
          else ready.push(reply);
        }
      }
    });
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed by the server')));
    const next = () => (ready.length ? Promise.resolve(ready.shift()) : failure ? Promise.reject(failure) : new Promise((res, rej) => waiters.push({ resolve: res, reject: rej })));
    const command = async (line, expected) => {
      if (line !== null) socket.write(`${line}\r\n`);
      const reply = await next();
      if (reply.code !== expected) throw new Error(`${line ?? 'greeting'} answered ${reply.text}`);
      return reply;
    };
    socket.once('connect', () => resolve({ socket, command }));
    socket.once('error', reject);
  });
}

/** Dot-stuffs a message and ends it with the DATA terminator. */
function dataOf(raw) {
  return `${raw.replace(/\r\n\./g, '\r\n..')}\r\n.\r\n`;
}

/**
 * `sessions` SMTP sessions, each on one connection, sending message after message while
 * `more(messagesStartedSoFar)` says so; `make(n)` builds message n. Resolves with the 250 count and wall time.
 */
async function sendContinuously({ port, sessions, to, more, make, onStored }) {
  let next = 0;
  let stored = 0;
  const errors = [];
  const started = performance.now();
  const session = async () => {
    const { socket, command } = await smtpConnection(port);
    try {
      await command(null, 220);
      await command('EHLO client.bench.test', 250);
      while (more(next)) {
        const n = next++;
        await command('MAIL FROM:<sender@example.org>', 250);
        await command(`RCPT TO:<${to}>`, 250);
        await command('DATA', 354);
        socket.write(dataOf(make(n)));
        await command(null, 250);
        stored++;
        onStored?.(stored);
      }
      await command('QUIT', 221);
    } finally {
      socket.destroy();
    }
  };
  await Promise.all(Array.from({ length: sessions }, () => session().catch((err) => errors.push(err.message))));
  if (errors.length > 0) log(`smtp: ${errors.length} session(s) failed, first: ${errors[0]}`);
  return { stored, ms: performance.now() - started, errors };
}

// ---- HTTP ------------------------------------------------------------------------------------

const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });

function request(port, method, urlPath, { body, token } = {}) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers = { ...(payload ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) };
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, agent, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        const text = raw.toString();
        resolve({ status: res.statusCode, bytes: raw.length, body: text ? JSON.parse(text) : null });
      });
    });
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}

async function apiJson(port, urlPath, token) {
  const res = await request(port, 'GET', urlPath, { token });
  if (res.status !== 200) throw new Error(`GET ${urlPath}: ${res.status} ${JSON.stringify(res.body)}`);
  return res;
}

/**
 * `clients` loops, each issuing `make()` until the deadline: requests/s, p50/p99 of the 200
 * answers, and the server's CPU per request (node and its PostgreSQL processes, from /proc), which
 * other work on the machine does not inflate the way it inflates latency.
 */
async function drive(name, make, { clients = CLIENTS, seconds = SECONDS, pid } = {}) {
  const latencies = [];
  let errors = 0;
  let bytes = 0;
  let firstError = '';
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  const ticksBefore = pid ? treeCpuTicks(pid) : 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        const res = await make();
        const ms = performance.now() - t0;
        if (res.status === 200) {
          latencies.push(ms);
          bytes = res.bytes;
        } else {
          errors++;
          firstError ||= `${res.status} ${JSON.stringify(res.body).slice(0, 200)}`;
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const cpuMs = pid ? ((treeCpuTicks(pid) - ticksBefore) * 1000) / CLK_TCK / Math.max(1, latencies.length + errors) : NaN;
  latencies.sort((a, b) => a - b);
  if (firstError) log(`${name}: ${errors} errors, first: ${firstError}`);
  return { name, clients, cpuMs, requests: latencies.length, errors, bytes, rps: latencies.length / elapsed, p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) ?? NaN };
}

/** Follows next_cursor (200 rows a page) until `depth` rows are behind it; the cursor there. */
async function deepCursor(port, token, depth) {
  let cursor;
  let seen = 0;
  while (seen < depth) {
    const limit = Math.min(200, depth - seen);
    const res = await apiJson(port, `/api/webmail/messages?mailbox=INBOX&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, token);
    seen += res.body.data.length;
    cursor = res.body.next_cursor;
    if (!cursor) break;
  }
  return { cursor, seen };
}

async function vacuumAnalyze(databaseUrl) {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query('VACUUM (ANALYZE) messages');
  } finally {
    await client.end();
  }
}

/**
 * --explain: EXPLAIN (ANALYZE, BUFFERS) of the list queries as webmail.repository.ts builds them,
 * run straight on the database (mailbox and folder ids looked up first).
 */
async function explainPlans(databaseUrl) {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query(
      `SELECT m.id AS mailbox_id, f.id AS inbox_id, (SELECT array_agg(id) FROM folders WHERE mailbox_id = m.id AND special_use IN ('trash', 'junk')) AS excluded
         FROM mailboxes m JOIN folders f ON f.mailbox_id = m.id AND f.special_use = 'inbox' WHERE m.address = $1`,
      [MAILBOX],
    );
    const { mailbox_id: mailboxId, inbox_id: inboxId, excluded } = rows[0];
    const cols = 'id, folder_id, from_name, from_address, to_addresses, cc_addresses, subject, snippet, received_at, sent_at, size, seen, flagged, answered, draft, has_attachments';
    const plans = [
      ['first page', `SELECT ${cols} FROM messages WHERE mailbox_id = $1 AND folder_id = $2 ORDER BY received_at DESC, id DESC LIMIT 51`, [mailboxId, inboxId]],
      ['q=report (no folder)', `SELECT ${cols} FROM messages WHERE mailbox_id = $1 AND folder_id <> ALL($2) AND search @@ websearch_to_tsquery('simple', 'report') ORDER BY received_at DESC, id DESC LIMIT 51`, [mailboxId, excluded]],
      ['q=zebra (no folder)', `SELECT ${cols} FROM messages WHERE mailbox_id = $1 AND folder_id <> ALL($2) AND search @@ websearch_to_tsquery('simple', 'zebra') ORDER BY received_at DESC, id DESC LIMIT 51`, [mailboxId, excluded]],
      ['mailbox=INBOX&q=zebra', `SELECT ${cols} FROM messages WHERE mailbox_id = $1 AND folder_id = $2 AND search @@ websearch_to_tsquery('simple', 'zebra') ORDER BY received_at DESC, id DESC LIMIT 51`, [mailboxId, inboxId]],
    ];
    for (const [name, text, params] of plans) {
      const plan = await client.query(`EXPLAIN (ANALYZE, BUFFERS) ${text}`, params);
      log(`\n--explain: ${name}\n${plan.rows.map((r) => r['QUERY PLAN']).join('\n')}`);
    }
  } finally {
    await client.end();
  }
}

function printReport({ seeded, seedRate, inboxTotal, results, load }) {
  const f1 = (v) => (Number.isFinite(v) ? v.toFixed(1) : '-');
  out(`# bench/api-mail, ${info.date}`);
  out(`machine: ${info.nproc} vCPU ${info.cpu}, ${info.memGiB} GiB, node ${info.node}, kernel ${info.kernel}; server on the embedded PostgreSQL`);
  out(`seeding: ${seeded.stored} messages (≈${(Buffer.byteLength(seedMessage(1, MAILBOX)) / 1000).toFixed(1)} KB each) over ${CONNECTIONS} SMTP connections in ${(seeded.ms / 1000).toFixed(1)} s (${seedRate.toFixed(0)} msgs/s); INBOX holds ${inboxTotal}`);
  out(`one bearer token; per scenario ${Math.min(SECONDS, 3)} s with 1 client, then ${SECONDS} s with ${CLIENTS} concurrent keep-alive clients; CPU = server node + its PostgreSQL per request`);
  out();
  out(`| scenario | 1 client p50 ms | 1 client p99 ms | ${CLIENTS} clients req/s | p50 ms | p99 ms | max ms | CPU ms/req | response KB | errors |`);
  out('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  const row = (one, many) =>
    out(`| ${many.name} | ${f1(one?.p50)} | ${f1(one?.p99)} | ${many.rps.toFixed(0)} | ${f1(many.p50)} | ${f1(many.p99)} | ${f1(many.max)} | ${f1(many.cpuMs)} | ${(many.bytes / 1000).toFixed(1)} | ${(one?.errors ?? 0) + many.errors} |`);
  for (const { one, many } of results) row(one, many);
  if (load) row(null, load.api);
  out();
  if (load) {
    out(`SMTP during the under-load scenario: ${SMTP_SESSIONS} sessions to ${LOAD_MAILBOX}, ${load.smtp.stored} messages stored at ${load.smtpRate.toFixed(0)} msgs/s${load.smtp.errors.length ? `, ${load.smtp.errors.length} sessions failed` : ''}`);
    out('(its CPU ms/req counts the SMTP ingest too)');
    out();
  }
  const listSearch = results.filter((r) => !r.many.name.startsWith('folder list')).map((r) => r.many);
  if (listSearch.length === 0) return;
  const worst = listSearch.reduce((a, b) => (b.p99 > a.p99 ? b : a));
  out(
    `Summary: ${inboxTotal} messages in one folder: list/search p99 at ${CLIENTS} clients ${listSearch.map((r) => r.p99.toFixed(0)).join('/')} ms ` +
      `(worst: ${worst.name}; target < ${TARGET_P99_MS} ms), CPU ${listSearch.map((r) => r.cpuMs.toFixed(1)).join('/')} ms per request` +
      (load ? `; under SMTP load (${load.smtpRate.toFixed(0)} msgs/s) the first page p99 is ${load.api.p99.toFixed(0)} ms.` : '.'),
  );
}

// ---- main ------------------------------------------------------------------------------------

const { stops, stopAll } = lifecycle(30 * 60_000, log);
const info = machineInfo();
const CLK_TCK = info.clkTck;
try {
  if (!opts['no-build']) execFileSync('npm', ['run', '-s', 'build'], { cwd: root, stdio: 'inherit' });
  const server = await startOurServer({
    // --server-root: another checkout's build (dist/, package.json, node_modules), for A/B runs
    root: opts['server-root'] ? path.resolve(opts['server-root']) : root,
    cpuProfDir: opts['cpu-prof'] ? path.resolve(opts['cpu-prof']) : undefined,
    inboundAuth: false,
    mailboxes: 2,
    log,
    serverEnv: {
      API_RATE_LIMIT_PER_MINUTE: '100000000',
      LOGIN_MAX_FAILURES: '1000',
      LOGIN_MAX_FAILURES_PER_IP: '1000',
      // --server-env KEY=VALUE (repeatable): experiments such as DATABASE_POOL_SIZE or NODE_OPTIONS
      ...Object.fromEntries(opts['server-env'].map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])),
    },
  });
  stops.push(() => server.stop({ keep: opts.keep }));
  stops.push(async () => agent.destroy());
  const port = server.apiPort;

  log(`seed: ${MESSAGES} messages into ${MAILBOX} INBOX over ${CONNECTIONS} SMTP connections`);
  const seedStart = performance.now();
  const seeded = await sendContinuously({
    port: server.port,
    sessions: CONNECTIONS,
    to: MAILBOX,
    more: (started) => started < MESSAGES,
    make: (n) => seedMessage(n, MAILBOX),
    onStored: (n) => {
      if (n % 10_000 === 0) log(`seed: ${n}/${MESSAGES} stored (${Math.round(n / ((performance.now() - seedStart) / 1000))}/s)`);
    },
  });
  if (seeded.stored < MESSAGES) throw new Error(`seeding stored ${seeded.stored} of ${MESSAGES}: ${seeded.errors[0]}`);
  const seedRate = seeded.stored / (seeded.ms / 1000);
  // what autovacuum does on its own a little later: statistics and visibility map current, so
  // the figures do not depend on whether its run happens to overlap a scenario
  await vacuumAnalyze(server.databaseUrl);
  log(`seed: ${seeded.stored} stored in ${(seeded.ms / 1000).toFixed(1)} s (${seedRate.toFixed(0)} msgs/s)`);

  const login = await request(port, 'POST', '/api/auth/login', { body: { email: MAILBOX, password: PASSWORD } });
  if (login.status !== 200) throw new Error(`login failed: ${login.status} ${JSON.stringify(login.body)}`);
  const token = login.body.access_token;
  const boxes = await apiJson(port, '/api/webmail/mailboxes', token);
  const inboxTotal = boxes.body.data.find((f) => f.special_use === 'inbox')?.total;

  const deep = await deepCursor(port, token, Math.floor(MESSAGES / 2));
  const many = await apiJson(port, '/api/webmail/messages?q=report&limit=50', token);
  const few = await apiJson(port, '/api/webmail/messages?q=zebra&limit=50', token);
  log(`deep cursor after ${deep.seen} rows; q=report first page ${many.body.data.length} rows, q=zebra ${few.body.data.length} rows`);

  const first = () => request(port, 'GET', '/api/webmail/messages?mailbox=INBOX&limit=50', { token });
  const scenarios = [
    ['first page: mailbox=INBOX&limit=50', first],
    [`deep page (${deep.seen} rows in, by cursor)`, () => request(port, 'GET', `/api/webmail/messages?mailbox=INBOX&limit=50&cursor=${encodeURIComponent(deep.cursor)}`, { token })],
    ['search, many match: q=report', () => request(port, 'GET', '/api/webmail/messages?q=report&limit=50', { token })],
    [`search, few match: q=zebra (${few.body.data.length})`, () => request(port, 'GET', '/api/webmail/messages?q=zebra&limit=50', { token })],
    ['search in folder, few match: mailbox=INBOX&q=zebra', () => request(port, 'GET', '/api/webmail/messages?mailbox=INBOX&q=zebra&limit=50', { token })],
    ['folder list: /api/webmail/mailboxes', () => request(port, 'GET', '/api/webmail/mailboxes', { token })],
  ];
  const results = [];
  const pid = server.pid;
  for (const [name, make] of scenarios) {
    if (opts.only && !new RegExp(opts.only, 'i').test(name)) continue;
    const one = await drive(name, make, { clients: 1, seconds: Math.min(SECONDS, 3), pid });
    const many = await drive(name, make, { pid });
    log(`${name}: 1 client p50 ${one.p50.toFixed(1)} ms; ${CLIENTS} clients ${many.rps.toFixed(0)} req/s, p50 ${many.p50.toFixed(1)} ms, p99 ${many.p99.toFixed(1)} ms, ${many.cpuMs.toFixed(1)} CPU ms/req`);
    results.push({ one, many });
  }
  if (opts.explain) await explainPlans(server.databaseUrl);

  // the first page again, with node SMTP sessions sending to another mailbox the whole time
  let load = null;
  if (!opts['no-load']) {
    log(`under load: ${SMTP_SESSIONS} SMTP sessions sending to ${LOAD_MAILBOX} while the API clients run`);
    let loading = true;
    const smtp = sendContinuously({ port: server.port, sessions: SMTP_SESSIONS, to: LOAD_MAILBOX, more: () => loading, make: (n) => seedMessage(n, LOAD_MAILBOX) });
    await new Promise((r) => setTimeout(r, 1000)); // let the sessions reach DATA
    const api = await drive('first page, SMTP under load', first, { pid });
    loading = false;
    const smtpDone = await smtp;
    load = { api, smtp: smtpDone, smtpRate: smtpDone.stored / (smtpDone.ms / 1000) };
    log(`under load: ${api.rps.toFixed(0)} req/s, p50 ${api.p50.toFixed(1)} ms, p99 ${api.p99.toFixed(1)} ms; SMTP ${load.smtpRate.toFixed(0)} msgs/s`);
  }
  printReport({ seeded, seedRate, inboxTotal, results, load });
} finally {
  await stopAll();
}
