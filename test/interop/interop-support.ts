/**
 * Shared pieces of the interoperability suite (test/interop/*.test.ts): running an independent
 * peer program (swaks, msmtp, /usr/bin/python3, opendkim-testmsg) without blocking the event
 * loop, finding why a peer cannot run here, and reading what our server stored.
 *
 * Peers run with spawn(), never spawnSync(): the server under test runs in this same process, so
 * a blocked event loop would leave the peer talking to a server that never answers.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readAll } from '../../src/blobs/blob-store.js';
import type { TestServer } from '../helpers/harness.js';

/** Debian's python3, which has python3-dkim (the first python3 on PATH may be another one). */
export const PYTHON = '/usr/bin/python3';

/** test/interop/ in the source tree: the Python fixtures are not compiled into dist/. */
export const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/interop');

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a peer program to its end (killed after `timeoutMs`), feeding `input` on stdin. */
export function run(command: string, args: string[], options: { input?: string | Buffer; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: options.env ?? process.env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.on('error', () => {
      // the peer may exit before reading all of stdin; its exit status tells what happened
    });
    child.stdin.end(options.input ?? '');
  });
}

/** Why `program` (an absolute path) cannot run here, or undefined: the `skip` option of a test. */
export function missing(program: string, debianPackage: string): string | undefined {
  return existsSync(program) ? undefined : `${program} is missing (apt-get install ${debianPackage})`;
}

/** Why python3-dkim cannot be used, or undefined. */
export async function pythonDkimMissing(): Promise<string | undefined> {
  const why = missing(PYTHON, 'python3');
  if (why) return why;
  const r = await run(PYTHON, ['-c', 'import dkim']);
  return r.status === 0 ? undefined : `${PYTHON} cannot import dkim (apt-get install python3-dkim): ${r.stderr.trim()}`;
}

export interface StoredCopy {
  id: string;
  folder: string | null;
  /** Our own Received: field(s), kept beside the raw bytes and prepended when the message is read. */
  trace: string;
  raw: Buffer;
}

/** Every stored copy of a message with `subject` in the mailbox at `address`, with its raw bytes. */
export async function storedCopies(t: TestServer, address: string, subject: string): Promise<StoredCopy[]> {
  const rows = await t.services.db
    .selectFrom('messages')
    .innerJoin('mailboxes', 'mailboxes.id', 'messages.mailbox_id')
    .innerJoin('folders', 'folders.id', 'messages.folder_id')
    .select(['messages.id', 'messages.raw_blob_key', 'messages.trace_headers', 'folders.special_use'])
    .where('mailboxes.address', '=', address)
    .where('messages.subject', '=', subject)
    .execute();
  const copies: StoredCopy[] = [];
  for (const r of rows) copies.push({ id: r.id, folder: r.special_use, trace: r.trace_headers, raw: await readAll(await t.services.blobReader.open(r.raw_blob_key)) });
  return copies;
}

/** Row counts that a refused submission must leave unchanged. */
export async function rowCounts(t: TestServer): Promise<Record<'submissions' | 'outbound' | 'messages', number>> {
  const count = async (table: 'submissions' | 'outbound' | 'messages'): Promise<number> =>
    Number((await t.services.db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
  return { submissions: await count('submissions'), outbound: await count('outbound'), messages: await count('messages') };
}

/** The outbound rows of the submission with `subject`, as [rcpt_to, status, last_reply]. */
export async function outboundBySubject(t: TestServer, subject: string): Promise<{ rcpt_to: string; status: string; route: string | null; last_reply: string | null }[]> {
  return t.services.db
    .selectFrom('outbound')
    .innerJoin('submissions', 'submissions.id', 'outbound.submission_id')
    .select(['outbound.rcpt_to', 'outbound.status', 'outbound.route', 'outbound.last_reply'])
    .where('submissions.subject', '=', subject)
    .orderBy('outbound.rcpt_to')
    .execute();
}

/**
 * Runs the outbound queue until every row of the submission with `subject` is final (sent or
 * bounced), or throws naming the rows still waiting. The queue also polls on its own; running it
 * here only makes the test independent of the poll interval.
 */
export async function deliverAll(t: TestServer, subject: string, timeoutMs = 15_000): Promise<Awaited<ReturnType<typeof outboundBySubject>>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await t.services.queue.runDue();
    const rows = await outboundBySubject(t, subject);
    if (rows.length > 0 && rows.every((r) => r.status === 'sent' || r.status === 'bounced')) return rows;
    if (Date.now() > deadline) throw new Error(`outbound mail "${subject}" not delivered in ${timeoutMs} ms: ${JSON.stringify(rows)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Polls `probe` until it returns a value, or throws `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface Port53Forwarder {
  close(): Promise<void>;
}

/**
 * A UDP relay from 127.0.0.1:53 to the test DNS server on `targetPort`. opendkim-testmsg has no
 * option for a name server or port: libopendkim asks the system resolver, which reads
 * /etc/resolv.conf and always uses port 53. The test runs it in a private mount namespace where
 * /etc/resolv.conf says `nameserver 127.0.0.1`, and this relay answers there from the test zone.
 * Throws (EADDRINUSE) when something else already serves port 53 on 127.0.0.1.
 */
export async function forwardPort53(targetPort: number): Promise<Port53Forwarder> {
  const front = dgram.createSocket('udp4');
  front.on('message', (query, client) => {
    const back = dgram.createSocket('udp4');
    const timer = setTimeout(() => back.close(), 5_000);
    back.on('message', (answer) => {
      clearTimeout(timer);
      front.send(answer, client.port, client.address);
      back.close();
    });
    back.send(query, targetPort, '127.0.0.1');
  });
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.bind(53, '127.0.0.1', () => {
      front.off('error', reject);
      resolve();
    });
  });
  return { close: () => new Promise((resolve) => front.close(() => resolve())) };
}

/**
 * Runs `program args` with /etc/resolv.conf replaced, for that process only, by one that names
 * 127.0.0.1 (a private mount namespace: `unshare --mount`, then a bind mount). The host's own
 * resolver configuration is never changed, and nothing can reach a name server elsewhere.
 */
export async function runWithLocalResolver(workDir: string, program: string, args: string[], input: Buffer): Promise<RunResult> {
  const conf = path.join(workDir, 'resolv.conf');
  writeFileSync(conf, 'nameserver 127.0.0.1\noptions attempts:1 timeout:2\n');
  const script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"';
  return run(UNSHARE, ['--mount', '/bin/sh', '-c', script, conf, program, ...args], { input });
}

export const UNSHARE = '/usr/bin/unshare';
