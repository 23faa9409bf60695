#!/usr/bin/env node
/**
 * bench/large-message: how much memory our server takes to accept one 25 MB message (issue [6/6]
 * "Measure": RSS growth under 50 MB, i.e. streamed, never buffered whole). Figures only, no
 * pass/fail, except that a message whose stored attachment differs from the one sent exits 1.
 *
 * For each path a fresh server (bench-support's startOurServer: dist/src/main.js, every role,
 * embedded PostgreSQL) with mailboxes sink@bench.test and sink2@bench.test, then two messages of
 * 25,000,000 bytes each (a text part and an ~18.2 MB random attachment, base64: what a 25 MB mail
 * is), the first after start (cold) and a second (warm):
 *
 *  - mx:         plain SMTP to the MX port, to sink@; the body is generated and written in
 *                ~78 KB pieces as the socket drains, so the client never holds it whole.
 *  - submission: STARTTLS + AUTH PLAIN as sink@ on the submission port, to sink2@ (local
 *                delivery through the outbound queue; DKIM when the domain has a key).
 *  - api:        POST /api/mails (multipart, the attachment as one file) as sink@, then
 *                POST /api/mails/:id/send to sink2@; the server composes the same ~25 MB message.
 *
 * For each message, the node process's VmRSS is sampled from /proc/<pid>/status every ~10 ms, and VmHWM
 * (peak RSS, reset with `echo 5 > /proc/<pid>/clear_refs` first) read at the end: baseline (RSS
 * just before), peak (max of the samples and VmHWM), growth (peak - baseline, target < 50 MB),
 * RSS 2 s after, time from the end of DATA to the 250 (or of the API calls), and the time until
 * the copy is stored in the recipient's mailbox. The stored attachment is downloaded through the
 * webmail API and its SHA-256 compared with the one sent; for mx the raw message's SHA-256 too.
 * PostgreSQL's own processes are not counted (the attachment bytes go to the blob store's files).
 *
 *   node bench/large-message.mjs [--mb 25] [--paths mx,submission,api] [--quick] [--no-build] [--keep]
 *                                [--server-env KEY=VALUE ...]
 *
 * MAX_MESSAGE_SIZE (default 25 MiB = 26,214,400 bytes) bounds the whole message on every path;
 * 25,000,000 bytes fits. The API takes one file up to MAX_MESSAGE_SIZE, but the message it composes
 * (base64, +37%) must fit too: an ~18.2 MB attachment is the largest that makes a ~25 MB message.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { lifecycle, machineInfo, resetPeakRss, startOurServer } from './bench-support.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: {
    mb: { type: 'string', default: '25' },
    paths: { type: 'string', default: 'mx,submission,api' },
    // --quick: the 1st (cold) message of each path only
    quick: { type: 'boolean', default: process.env.BENCH_QUICK === '1' },
    'no-build': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'server-env': { type: 'string', multiple: true, default: [] },
    help: { type: 'boolean', default: false },
  },
});
if (opts.help) {
  process.stdout.write('node bench/large-message.mjs [--mb 25] [--paths mx,submission,api] [--quick] [--no-build] [--keep]\n');
  process.exit(0);
}
const MESSAGE_BYTES = Math.round(Number(opts.mb) * 1_000_000);
const PATHS = opts.paths.split(',').map((p) => p.trim());
const PASSWORD = 'benchpass123';
const FROM = 'sink@bench.test';
const GROWTH_TARGET_MB = 50;
const LINE_BYTES = 57; // 57 bytes → one 76-character base64 line
const CHUNK_LINES = 1000;

const log = (line) => process.stderr.write(`${line}\n`);
const out = (line = '') => process.stdout.write(`${line}\n`);
const mb = (bytes) => (bytes / 1e6).toFixed(1);

// ---- the message -----------------------------------------------------------------------------

const BOUNDARY = 'bench-large-boundary';

function messageHead(to, subject) {
  return [
    `From: <${FROM}>`,
    `To: <${to}>`,
    `Subject: ${subject}`,
    `Date: ${new Date().toUTCString()}`,
    `Message-ID: <${subject.replace(/\s+/g, '-')}.${process.pid}@bench.test>`,
    'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${BOUNDARY}"`,
    '',
    `--${BOUNDARY}`,
    'Content-Type: text/plain; charset=utf-8',
    '',
    'A large attachment follows.',
    `--${BOUNDARY}`,
    'Content-Type: application/octet-stream; name="large.bin"',
    'Content-Disposition: attachment; filename="large.bin"',
    'Content-Transfer-Encoding: base64',
    '',
    '',
  ].join('\r\n');
}
const TAIL = `\r\n--${BOUNDARY}--\r\n`;

/** Attachment bytes such that head + base64 lines + tail is about `total` bytes. */
function attachmentBytesFor(total, head) {
  const lines = Math.floor((total - Buffer.byteLength(head) - TAIL.length) / 78);
  return lines * LINE_BYTES;
}

/**
 * Generates the message in chunks (random attachment bytes, base64 in 76-character lines) and
 * hands each to `write`, awaiting it, so at most one chunk exists at a time. Returns the SHA-256
 * of the raw message and of the attachment's decoded bytes. Base64 never puts "." first on a line,
 * so no dot-stuffing is needed.
 */
async function streamMessage(head, attachmentBytes, write) {
  const raw = createHash('sha256');
  const decoded = createHash('sha256');
  const emit = async (text) => {
    raw.update(text);
    await write(text);
  };
  await emit(head);
  let left = attachmentBytes;
  let first = true;
  while (left > 0) {
    const n = Math.min(left, LINE_BYTES * CHUNK_LINES);
    const bytes = randomBytes(n);
    decoded.update(bytes);
    const lines = [];
    for (let at = 0; at < n; at += LINE_BYTES) lines.push(bytes.subarray(at, at + LINE_BYTES).toString('base64'));
    await emit(`${first ? '' : '\r\n'}${lines.join('\r\n')}`);
    first = false;
    left -= n;
  }
  await emit(TAIL);
  return { rawSha: raw.digest('hex'), attachmentSha: decoded.digest('hex') };
}

// ---- RSS sampling ----------------------------------------------------------------------------

function statusKb(pid, field) {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Samples VmRSS every ~10 ms until stop(); VmHWM is reset at the start. */
function rssSampler(pid) {
  const hwmReset = resetPeakRss(pid);
  const samples = [];
  const started = performance.now();
  const timer = setInterval(() => samples.push({ t: performance.now() - started, rss: statusKb(pid, 'VmRSS') }), 10);
  return {
    hwmReset,
    stop() {
      clearInterval(timer);
      const peakSample = Math.max(...samples.map((s) => s.rss));
      return { samples: samples.length, peakSample, hwm: statusKb(pid, 'VmHWM') };
    },
  };
}

// ---- SMTP client -----------------------------------------------------------------------------

/** Reads SMTP replies from a socket; attach() again after STARTTLS. */
class Replies {
  constructor() {
    this.buffer = '';
    this.lines = [];
    this.ready = [];
    this.waiters = [];
    this.failure = null;
  }

  attach(socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (chunk) => this.feed(chunk));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('connection closed by the server')));
  }

  feed(chunk) {
    this.buffer += chunk;
    let at;
    while ((at = this.buffer.indexOf('\r\n')) >= 0) {
      const line = this.buffer.slice(0, at);
      this.buffer = this.buffer.slice(at + 2);
      this.lines.push(line);
      if (line.length < 4 || line[3] === ' ') {
        const reply = { code: Number(line.slice(0, 3)), text: this.lines.join('\n') };
        this.lines = [];
        if (this.waiters.length) this.waiters.shift().resolve(reply);
        else this.ready.push(reply);
      }
    }
  }

  fail(err) {
    this.failure ??= err;
    while (this.waiters.length) this.waiters.shift().reject(this.failure);
  }

  next() {
    if (this.ready.length) return Promise.resolve(this.ready.shift());
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  async command(line, expected) {
    if (line !== null) this.socket.write(`${line}\r\n`);
    const reply = await this.next();
    if (reply.code !== expected) throw new Error(`${line === null ? 'reply' : line.split(' ')[0]} answered ${reply.text}`);
    return reply;
  }
}

function connectPlain(port) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

async function writeDrained(socket, text) {
  if (!socket.write(text)) await once(socket, 'drain');
}

/** One message over SMTP (MX, or submission with STARTTLS + AUTH PLAIN when `auth`). */
async function sendSmtp({ port, to, subject, auth }) {
  let socket = await connectPlain(port);
  let replies = new Replies();
  replies.attach(socket);
  try {
    await replies.command(null, 220);
    await replies.command('EHLO client.bench.test', 250);
    if (auth) {
      await replies.command('STARTTLS', 220);
      socket.removeAllListeners('data');
      socket = tls.connect({ socket, servername: 'localhost', rejectUnauthorized: false }); // the server's own self-signed certificate
      await new Promise((resolve, reject) => {
        socket.once('secureConnect', resolve);
        socket.once('error', reject);
      });
      replies = new Replies();
      replies.attach(socket);
      await replies.command('EHLO client.bench.test', 250);
      await replies.command(`AUTH PLAIN ${Buffer.from(`\0${FROM}\0${PASSWORD}`).toString('base64')}`, 235);
    }
    await replies.command(`MAIL FROM:<${FROM}> SIZE=${MESSAGE_BYTES}`, 250);
    await replies.command(`RCPT TO:<${to}>`, 250);
    await replies.command('DATA', 354);
    const head = messageHead(to, subject);
    const dataStart = performance.now();
    const hashes = await streamMessage(head, attachmentBytesFor(MESSAGE_BYTES, head), (text) => writeDrained(socket, text));
    const endOfData = performance.now();
    socket.write('.\r\n');
    const reply = await replies.next();
    const acceptedAt = performance.now();
    if (reply.code !== 250) throw new Error(`end of DATA answered ${reply.text}`);
    await replies.command('QUIT', 221).catch(() => undefined);
    return { ...hashes, dataMs: endOfData - dataStart, toReplyMs: acceptedAt - endOfData, acceptedAt };
  } finally {
    socket.destroy();
  }
}

// ---- API -------------------------------------------------------------------------------------

async function api(port, method, urlPath, { token, json, form } = {}) {
  const res = await globalThis.fetch(`http://127.0.0.1:${port}${urlPath}`, {
    method,
    headers: { ...(json ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: json ? JSON.stringify(json) : form,
  });
  return res;
}

async function apiJson(port, method, urlPath, options) {
  const res = await api(port, method, urlPath, options);
  const body = await res.json();
  if (!res.ok) throw new Error(`${method} ${urlPath}: ${res.status} ${JSON.stringify(body).slice(0, 300)}`);
  return body;
}

async function login(port, email) {
  return (await apiJson(port, 'POST', '/api/auth/login', { json: { email, password: PASSWORD } })).access_token;
}

/** POST /api/mails with the attachment as one file, then send it; the client holds the file. */
async function sendApi({ port, to, subject }) {
  const token = await login(port, FROM);
  const attachment = randomBytes(attachmentBytesFor(MESSAGE_BYTES, messageHead(to, subject)));
  const form = new globalThis.FormData();
  form.set('to', to);
  form.set('subject', subject);
  form.set('text', 'A large attachment follows.');
  form.set('attachments', new globalThis.Blob([attachment], { type: 'application/octet-stream' }), 'large.bin');
  const started = performance.now();
  const res = await api(port, 'POST', '/api/mails', { token, form });
  const draft = await res.json();
  if (res.status !== 201) return { refused: `${res.status} ${draft.error?.code ?? ''}: ${draft.error?.message ?? JSON.stringify(draft).slice(0, 200)}`, attachmentBytes: attachment.length };
  const uploaded = performance.now();
  await apiJson(port, 'POST', `/api/mails/${draft.id}/send`, { token });
  const acceptedAt = performance.now();
  return { attachmentSha: createHash('sha256').update(attachment).digest('hex'), dataMs: uploaded - started, toReplyMs: acceptedAt - uploaded, acceptedAt, attachmentBytes: attachment.length };
}

// ---- verification ----------------------------------------------------------------------------

/**
 * Waits for the message in the recipient's mailbox (webmail API), then hashes the stored
 * attachment as the API serves it; raw_sha256 is the ingest's hash of the raw bytes it stored.
 */
async function storedCopy(port, db, recipient, subject, timeoutMs) {
  const token = await login(port, recipient);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const page = await apiJson(port, 'GET', `/api/webmail/messages?mailbox=INBOX&q=${encodeURIComponent(`subject:"${subject}"`)}&limit=5`, { token });
    const found = page.data[0];
    if (found) {
      const storedAt = performance.now();
      const message = await apiJson(port, 'GET', `/api/webmail/messages/${found.id}`, { token });
      const attachment = message.attachments?.[0];
      const attachmentSha = attachment ? await hashOf(port, `/api/webmail/messages/${found.id}/attachments/${attachment.id}`, token) : null;
      const { rows } = await db.query('SELECT raw_sha256 FROM messages WHERE id = $1', [found.id]);
      const rawSha = rows[0]?.raw_sha256;
      return { storedAt, attachmentSha, rawSha, size: found.size };
    }
    if (Date.now() > deadline) throw new Error(`"${subject}" not in ${recipient}'s INBOX after ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

async function hashOf(port, urlPath, token) {
  const res = await api(port, 'GET', urlPath, { token });
  if (!res.ok) throw new Error(`GET ${urlPath}: ${res.status}`);
  const hash = createHash('sha256');
  for await (const chunk of res.body) hash.update(chunk);
  return hash.digest('hex');
}

// ---- main ------------------------------------------------------------------------------------

async function measure(server, db, name) {
  const pid = server.pid;
  const to = name === 'mx' ? 'sink@bench.test' : 'sink2@bench.test';
  const subject = `large ${name} ${Date.now()}`;
  await sleep(1000); // let the server settle after the last path
  const baseline = statusKb(pid, 'VmRSS');
  const sampler = rssSampler(pid);
  const t0 = performance.now();
  let sent;
  try {
    sent = name === 'api' ? await sendApi({ port: server.apiPort, to, subject }) : await sendSmtp({ port: name === 'mx' ? server.port : server.submissionPort, to, subject, auth: name === 'submission' });
  } catch (err) {
    sampler.stop();
    return { name, error: err.message };
  }
  if (sent.refused) {
    sampler.stop();
    return { name, error: `refused: ${sent.refused}` };
  }
  const stored = await storedCopy(server.apiPort, db, to, subject, 120_000);
  await sleep(2000);
  const after = statusKb(pid, 'VmRSS');
  const rss = sampler.stop();
  const peak = Math.max(rss.peakSample, rss.hwm);
  const ok = stored.attachmentSha === sent.attachmentSha && (name !== 'mx' || stored.rawSha === sent.rawSha);
  return {
    name,
    baseline,
    peak,
    growth: peak - baseline,
    after,
    hwmReset: rss.hwmReset,
    samples: rss.samples,
    dataMs: sent.dataMs,
    toReplyMs: sent.toReplyMs,
    storedMs: stored.storedAt - t0,
    size: stored.size,
    ok,
    hashes: `attachment ${stored.attachmentSha === sent.attachmentSha ? 'equal' : `DIFFERS (sent ${sent.attachmentSha.slice(0, 12)}, stored ${stored.attachmentSha?.slice(0, 12)})`}${name === 'mx' ? `, raw ${stored.rawSha === sent.rawSha ? 'equal' : 'DIFFERS'}` : ''}`,
  };
}

/** --server-env KEY=VALUE (repeatable): experiments such as MAX_MESSAGE_SIZE or NODE_OPTIONS. */
function serverEnvFlags() {
  return Object.fromEntries(
    opts['server-env'].map((kv) => {
      const at = kv.indexOf('=');
      if (at < 1) throw new Error(`--server-env wants KEY=VALUE, got "${kv}"`);
      return [kv.slice(0, at), kv.slice(at + 1)];
    }),
  );
}

const { stops, stopAll } = lifecycle(15 * 60_000, log);
let failed = false;
try {
  if (!opts['no-build']) execFileSync('npm', ['run', '-s', 'build'], { cwd: root, stdio: 'inherit' });
  const info = machineInfo();
  const maxSize = serverEnvFlags().MAX_MESSAGE_SIZE ?? '26,214,400 bytes (the default, 25 MiB)';
  const extraEnv = opts['server-env'].length ? `; server env ${opts['server-env'].join(' ')}` : '';
  const results = [];
  // a fresh server per path, so no path inherits a heap another one grew; each path twice:
  // the first large message after start (cold), then a second one (warm, the steady state)
  for (const name of PATHS) {
    const server = await startOurServer({ root, inboundAuth: false, mailboxes: 2, log, serverEnv: { API_RATE_LIMIT_PER_MINUTE: '100000', ...serverEnvFlags() } });
    const db = new pg.Client({ connectionString: server.databaseUrl });
    const stop = async () => {
      await db.end().catch(() => undefined);
      await server.stop({ keep: opts.keep });
    };
    stops.push(stop);
    await db.connect();
    // only a verified domain may send (submission, API): the bench domain has no DNS to verify
    await db.query(`UPDATE domains SET status = 'verified' WHERE name = 'bench.test'`);
    for (const round of opts.quick ? ['1st'] : ['1st', '2nd']) {
      log(`${name} (${round}): sending one ${mb(MESSAGE_BYTES)} MB message...`);
      const r = { ...(await measure(server, db, name)), name: `${name} (${round})` };
      log(r.error ? `${r.name}: ${r.error}` : `${r.name}: growth ${mb(r.growth)} MB, ${r.hashes}`);
      results.push(r);
      if (r.error) break;
    }
    stops.splice(stops.indexOf(stop), 1);
    await stop();
  }
  out(`# bench/large-message, ${info.date}`);
  out(`machine: ${info.nproc} vCPU ${info.cpu}, ${info.memGiB} GiB, node ${info.node}, kernel ${info.kernel}; MAX_MESSAGE_SIZE ${maxSize}${extraEnv}`);
  out(`messages of ${MESSAGE_BYTES.toLocaleString('en')} bytes (text part + random attachment, base64); a fresh server per path, two messages each (1st: cold, 2nd: warm); server node process RSS sampled every 10 ms, VmHWM reset before each message`);
  out();
  out('| path | baseline RSS MB | peak RSS MB | growth MB | RSS 2 s after MB | send ms | end of data → 250 ms | stored in recipient mailbox ms | stored size MB | hashes |');
  out('|---|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const r of results) {
    if (r.error) out(`| ${r.name} | - | - | - | - | - | - | - | - | ${r.error} |`);
    else out(`| ${r.name} | ${mb(r.baseline)} | ${mb(r.peak)} | **${mb(r.growth)}** | ${mb(r.after)} | ${r.dataMs.toFixed(0)} | ${r.toReplyMs.toFixed(0)} | ${r.storedMs.toFixed(0)} | ${mb(r.size)} | ${r.hashes} |`);
    if (r.ok === false) failed = true;
  }
  out();
  out('send ms: writing the DATA (SMTP) or uploading the draft (API); end of data → 250: the final reply (API: POST /api/mails/:id/send → 202); stored: from the start until the copy is in the recipient\'s INBOX.');
  if (results.some((r) => r.hwmReset === false)) out('note: VmHWM could not be reset (clear_refs not allowed): peak is from the 10 ms samples only');
  const measured = results.filter((r) => !r.error);
  out();
  out(`Summary: ${mb(MESSAGE_BYTES)} MB messages: RSS growth ${measured.map((r) => `${r.name} ${mb(r.growth)} MB`).join(', ')} (target < ${GROWTH_TARGET_MB} MB); stored copies ${measured.every((r) => r.ok) ? 'match what was sent' : 'DIFFER from what was sent'}.`);
} finally {
  await stopAll();
}
if (failed) process.exit(1);
