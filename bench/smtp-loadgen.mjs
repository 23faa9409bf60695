/**
 * A small SMTP load generator for bench/smtp-ingest.mjs: `sessions` concurrent TCP sessions,
 * each sending `perSession` messages over one connection without pipelining (MAIL, RCPT, DATA,
 * message, each waiting for its reply, as smtp-source does). It times every message from the
 * moment the end-of-data marker `\r\n.\r\n` is written (after the body has been handed to the
 * kernel) to the arrival of the reply, and counts the 250 replies, which is what the server
 * promised to have stored durably. Also measures the connect-to-greeting time (smtp-server holds
 * its greeting 100 ms to catch early talkers).
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';

const LINE = 'X'.repeat(78);

/** `size` bytes of body (78-character lines), not ending in CRLF: the marker supplies it. */
export function bodyOfSize(size) {
  const lines = [];
  let left = size;
  while (left > 0) {
    const n = Math.min(LINE.length, Math.max(left - 2, 1));
    lines.push(LINE.slice(0, n));
    left -= n + 2;
  }
  return lines.join('\r\n');
}

/** Reads SMTP replies (possibly multi-line) from a socket, one waiter at a time (also used by submit-loadgen.mjs). */
export class ReplyReader {
  constructor(socket) {
    this.buffer = '';
    this.lines = [];
    this.pending = null;
    this.waiter = null;
    this.failure = null;
    this.onData = (chunk) => {
      this.buffer += chunk;
      let i;
      while ((i = this.buffer.indexOf('\r\n')) >= 0) {
        const line = this.buffer.slice(0, i);
        this.buffer = this.buffer.slice(i + 2);
        this.lines.push(line);
        // the last line of a reply has a space (or nothing) after the code
        if (line.length < 4 || line[3] === ' ') this.complete();
      }
    };
    this.onFail = (err) => {
      this.failure ??= err instanceof Error ? err : new Error('connection closed by the server');
      if (this.waiter) this.waiter.reject(this.failure);
      this.waiter = null;
    };
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', this.onData);
    socket.on('error', this.onFail);
    socket.on('close', this.onFail);
  }

  complete() {
    const reply = { code: Number(this.lines[this.lines.length - 1].slice(0, 3)), text: this.lines.join('\n') };
    this.lines = [];
    if (this.waiter) {
      this.waiter.resolve(reply);
      this.waiter = null;
    } else {
      this.pending = reply; // arrived before anyone asked (the greeting)
    }
  }

  next() {
    if (this.pending) {
      const r = this.pending;
      this.pending = null;
      return Promise.resolve(r);
    }
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** Stops reading the plain socket before TLS takes it over. */
  detach() {
    this.socket.off('data', this.onData);
    this.socket.off('error', this.onFail);
    this.socket.off('close', this.onFail);
  }
}

async function command(socket, reader, line, expected) {
  socket.write(`${line}\r\n`);
  const reply = await reader.next();
  if (reply.code !== expected) throw new Error(`${line.split(' ')[0]} answered ${reply.text}`);
  return reply;
}

function connect(port, timeoutMs) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no reply within ${timeoutMs} ms`)));
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

function writeFlushed(socket, data) {
  return new Promise((resolve, reject) => socket.write(data, (err) => (err ? reject(err) : resolve())));
}

async function session(options, id, result, counter) {
  const { port, perSession, body, from, to, timeoutMs } = options;
  const started = performance.now();
  const socket = await connect(port, timeoutMs);
  const reader = new ReplyReader(socket);
  try {
    const greeting = await reader.next();
    result.greetingMs.push(performance.now() - started);
    if (greeting.code !== 220) throw new Error(`greeting ${greeting.text}`);
    await command(socket, reader, 'EHLO client.bench.test', 250);
    for (let i = 0; i < perSession; i++) {
      const n = counter.next++;
      const rcpt = to[n % to.length];
      await command(socket, reader, `MAIL FROM:<${from}>`, 250);
      await command(socket, reader, `RCPT TO:<${rcpt}>`, 250);
      await command(socket, reader, 'DATA', 354);
      const headers =
        `From: <${from}>\r\nTo: <${rcpt}>\r\nSubject: bench ${n}\r\nDate: ${new Date().toUTCString()}\r\n` +
        `Message-ID: <${process.pid}.${counter.runId}.${n}@client.bench.test>\r\n\r\n`;
      socket.write(headers);
      await writeFlushed(socket, body);
      const t0 = performance.now();
      socket.write('\r\n.\r\n');
      const reply = await reader.next();
      result.sent++;
      if (reply.code === 250) {
        result.latencyMs.push(performance.now() - t0);
        result.ok++;
      } else {
        result.failed++;
        if (result.errors.length < 5) result.errors.push(`session ${id}: ${reply.text}`);
      }
    }
    await command(socket, reader, 'QUIT', 221);
  } finally {
    socket.destroy();
  }
}

/**
 * Runs the load and resolves with counts, wall time and sorted end-of-data latencies (ms).
 * `to` is one address or a list used in turn, message by message.
 * A session that fails stops; its error is kept (first five) and the others carry on.
 */
export async function runLoadgen({ port, sessions, perSession, size, from, to, timeoutMs = 60_000 }) {
  const options = { port, perSession, body: bodyOfSize(size), from, to: Array.isArray(to) ? to : [to], timeoutMs };
  const result = { sent: 0, ok: 0, failed: 0, errors: [], latencyMs: [], greetingMs: [], elapsedMs: 0 };
  const counter = { next: 0, runId: Math.random().toString(36).slice(2, 8) };
  const started = performance.now();
  await Promise.all(
    Array.from({ length: sessions }, (_, id) =>
      session(options, id, result, counter).catch((err) => {
        if (result.errors.length < 5) result.errors.push(`session ${id}: ${err.message}`);
      }),
    ),
  );
  result.elapsedMs = performance.now() - started;
  result.latencyMs.sort((a, b) => a - b);
  result.greetingMs.sort((a, b) => a - b);
  return result;
}

/** Connect-to-220 time of `count` sequential connections (each QUITs at once). */
export async function probeGreeting(port, count) {
  const times = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    const socket = await connect(port, 10_000);
    const reader = new ReplyReader(socket);
    try {
      await reader.next();
      times.push(performance.now() - started);
      await command(socket, reader, 'QUIT', 221);
    } finally {
      socket.destroy();
    }
  }
  return times.sort((a, b) => a - b);
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
