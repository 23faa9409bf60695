/**
 * The submission side of bench/side-by-side.mjs: a load generator for authenticated submission and
 * the relay sink our server delivers to.
 *
 * smtp-source cannot do STARTTLS or AUTH, so the submission rows are driven by this generator. It
 * speaks like bench/smtp-loadgen.mjs (no pipelining, every command waits for its reply) and times
 * each message the same way, from writing `\r\n.\r\n` (after the body was handed to the kernel) to
 * the 250, which our server sends once the message is in Sent and its outbound row is committed.
 * Per session it either keeps one connection (greeting, EHLO, STARTTLS, EHLO, AUTH PLAIN once) or
 * opens a new one for every message (all of that, every time), as the two smtp-source modes do.
 *
 * The relay sink is smtp-server on 127.0.0.1 with STARTTLS (a certificate our server trusts via
 * OUTBOUND_TLS_CA_FILE) and AUTH required, as a real smarthost has; it reads each message to its
 * end, throws it away and records when it arrived, by Message-ID, and whether it was DKIM-signed.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { SMTPServer } from 'smtp-server';
import { bodyOfSize, ReplyReader } from './smtp-loadgen.mjs';

export const RELAY_USER = 'bench-relay';
export const RELAY_PASS = 'bench-relay-pass';

async function command(conn, line, expected) {
  conn.socket.write(`${line}\r\n`);
  const reply = await conn.reader.next();
  if (reply.code !== expected) throw new Error(`${line.split(' ')[0]} answered ${reply.text}`);
  return reply;
}

function writeFlushed(socket, data) {
  return new Promise((resolve, reject) => socket.write(data, (err) => (err ? reject(err) : resolve())));
}

/** Connect, greeting, EHLO, STARTTLS, EHLO again, AUTH PLAIN: a connection ready for MAIL FROM. */
async function openAuthenticated({ port, user, pass, timeoutMs }) {
  const raw = await new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', noDelay: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
  raw.setTimeout(timeoutMs, () => raw.destroy(new Error(`no reply within ${timeoutMs} ms`)));
  const plain = { socket: raw, reader: new ReplyReader(raw) };
  try {
    const greeting = await plain.reader.next();
    if (greeting.code !== 220) throw new Error(`greeting ${greeting.text}`);
    await command(plain, 'EHLO client.bench.test', 250);
    await command(plain, 'STARTTLS', 220);
    plain.reader.detach();
    const secure = await new Promise((resolve, reject) => {
      // the server's own self-signed certificate: the bench measures, it does not verify
      const t = tls.connect({ socket: raw, servername: 'localhost', rejectUnauthorized: false }, () => resolve(t));
      t.once('error', reject);
    });
    const conn = { socket: secure, reader: new ReplyReader(secure) };
    await command(conn, 'EHLO client.bench.test', 250);
    await command(conn, `AUTH PLAIN ${Buffer.from(`\0${user}\0${pass}`).toString('base64')}`, 235);
    return conn;
  } catch (err) {
    raw.destroy();
    throw err;
  }
}

/** One message on a ready connection; returns the end-of-data → 250 time and when the 250 came. */
async function sendOne(conn, { from, to, messageId, body }) {
  await command(conn, `MAIL FROM:<${from}>`, 250);
  await command(conn, `RCPT TO:<${to}>`, 250);
  await command(conn, 'DATA', 354);
  conn.socket.write(
    `From: Bench <${from}>\r\nTo: <${to}>\r\nSubject: bench submission ${messageId}\r\nDate: ${new Date().toUTCString()}\r\n` +
      `Message-ID: <${messageId}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n`,
  );
  await writeFlushed(conn.socket, body);
  const t0 = performance.now();
  conn.socket.write('\r\n.\r\n');
  const reply = await conn.reader.next();
  const at = performance.now();
  if (reply.code !== 250) throw new Error(`end of DATA answered ${reply.text}`);
  return { latencyMs: at - t0, acceptedAt: at };
}

async function quit(conn) {
  try {
    await command(conn, 'QUIT', 221);
  } catch {
    // the message is already accepted; a lost QUIT reply changes nothing
  } finally {
    conn.socket.destroy();
  }
}

/**
 * Submits `count` messages of `size` body bytes over `sessions` concurrent sessions to
 * recipients at `toDomain`. `reuse`: one authenticated connection per session, taken from
 * `pool` (an array the caller keeps across runs, so a configuration authenticates each session
 * once); missing or closed ones are opened and authenticated before the clock starts, so the
 * figures are the steady state of a client that keeps its connection. Otherwise a new connection
 * per message, each paying connect, greeting, STARTTLS and AUTH inside the clock. `onStart` is
 * called just before the clock starts (the caller's CPU snapshot). Resolves with ok, errors
 * (first five), sorted latencies, and per message its Message-ID and acceptance time, so the
 * caller can match arrivals at the relay sink.
 */
export async function runSubmitLoad({ port, sessions, count, size, reuse, pool = [], user, pass, toDomain, runId, onStart = () => undefined, timeoutMs = 60_000 }) {
  const body = bodyOfSize(size);
  const result = { ok: 0, errors: [], latencyMs: [], accepted: [], elapsedMs: 0, started: 0 };
  const fail = (err) => {
    if (result.errors.length < 5) result.errors.push(err.message);
  };
  let next = 0;
  const take = () => (next < count ? next++ : null);
  const message = (n) => ({ from: user, to: `rcpt${n % 100}@${toDomain}`, messageId: `bench-${runId}-${n}@bench.test`, body });
  const record = (m, r) => {
    result.ok++;
    result.latencyMs.push(r.latencyMs);
    result.accepted.push({ messageId: m.messageId, acceptedAt: r.acceptedAt });
  };
  // a session is not needed when there are fewer messages than sessions
  const active = Math.min(sessions, count);
  if (reuse) {
    await Promise.all(
      Array.from({ length: active }, async (_, id) => {
        if (pool[id] && !pool[id].socket.destroyed && !pool[id].reader.failure) return;
        pool[id] = await openAuthenticated({ port, user, pass, timeoutMs }).catch((err) => (fail(err), null));
      }),
    );
  }
  async function session(id) {
    if (reuse) {
      const conn = pool[id];
      if (!conn) return; // its connection failed; the error is recorded
      for (let n = take(); n !== null; n = take()) {
        const m = message(n);
        record(m, await sendOne(conn, m));
      }
      return;
    }
    for (let n = take(); n !== null; n = take()) {
      const conn = await openAuthenticated({ port, user, pass, timeoutMs });
      try {
        const m = message(n);
        record(m, await sendOne(conn, m));
      } finally {
        await quit(conn);
      }
    }
  }
  onStart();
  result.started = performance.now();
  await Promise.all(Array.from({ length: active }, (_, id) => session(id).catch(fail)));
  result.elapsedMs = performance.now() - result.started;
  result.latencyMs.sort((a, b) => a - b);
  return result;
}

/** QUITs and closes every connection of a `runSubmitLoad` pool. */
export async function closePool(pool) {
  await Promise.all(pool.filter(Boolean).map((conn) => quit(conn)));
  pool.length = 0;
}

/** The Message-ID of a header block, without the angle brackets. */
function messageIdOf(head) {
  const m = /^message-id:[ \t]*<([^>\r\n]+)>/im.exec(head);
  return m ? m[1] : null;
}

/**
 * The relay sink the server delivers to (side-by-side.mjs and smtp-submit.mjs): STARTTLS with
 * `tlsCert`, AUTH PLAIN/LOGIN required. Each message is read to its end and thrown away;
 * `arrivals` maps its Message-ID to the moment its last byte arrived, and the counters record
 * DKIM signatures, duplicates, strangers and bytes. `waitFor(idsOrCount, ms)` resolves true once
 * all of those Message-IDs (or that many distinct messages) arrived, false after `ms`.
 */
export async function startRelaySink(tlsCert, { onError = () => undefined } = {}) {
  const stats = { arrivals: new Map(), signed: 0, duplicates: 0, unknown: 0, authFailures: 0, bytes: 0 };
  const server = new SMTPServer({
    name: 'localhost',
    banner: 'bench relay sink',
    key: tlsCert.key,
    cert: tlsCert.cert,
    authMethods: ['PLAIN', 'LOGIN'],
    maxClients: 1000,
    disableReverseLookup: true,
    logger: false,
    onAuth(auth, _session, callback) {
      if (auth.username === RELAY_USER && auth.password === RELAY_PASS) return callback(null, { user: RELAY_USER });
      stats.authFailures++;
      return callback(new Error('invalid relay credentials'));
    },
    onData(stream, _session, callback) {
      let head = '';
      let headDone = false;
      stream.on('data', (chunk) => {
        stats.bytes += chunk.length;
        if (headDone) return;
        head += chunk.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end >= 0) {
          head = head.slice(0, end + 2);
          headDone = true;
        }
      });
      stream.on('end', () => {
        const id = messageIdOf(head);
        if (/^dkim-signature:/im.test(head)) stats.signed++;
        if (id === null) stats.unknown++;
        else if (stats.arrivals.has(id)) stats.duplicates++;
        else stats.arrivals.set(id, performance.now());
        callback();
      });
    },
  });
  // a client's broken connection is not the sink's failure: reported, never thrown
  server.on('error', (err) => onError(err));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: server.server.address().port,
    stats,
    async waitFor(idsOrCount, timeoutMs) {
      const deadline = performance.now() + timeoutMs;
      const missing = typeof idsOrCount === 'number' ? () => stats.arrivals.size < idsOrCount : () => idsOrCount.some((id) => !stats.arrivals.has(id));
      while (missing()) {
        if (performance.now() > deadline) return false;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return true;
    },
    stop: () => new Promise((resolve) => server.close(resolve)),
  };
}
