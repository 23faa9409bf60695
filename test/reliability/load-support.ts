/**
 * Shared pieces of the load and abuse harness (test/reliability/load-*.test.ts): the real server
 * as an OS process (ProcessServer, so its RSS is its own and it runs like in production) with one
 * tenant, domain and mailbox made through the admin CLI; the server's RSS read from /proc; SMTP
 * sessions opened from a chosen loopback address (127.0.0.x), so the per-IP limit applies to
 * them as it does to real clients.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { tempDir } from '../helpers/harness.js';
import { ProcessServer, processEnv } from '../helpers/process-server.js';
import { RawSmtp } from '../helpers/smtp-client.js';

export const RECIPIENT = 'load@load.test';
export const PASSWORD = 'load-password-123';

export interface LoadServer {
  server: ProcessServer;
  port: number;
  apiPort: number;
  stop(): Promise<void>;
}

/** Starts the server process with `env` on top of the defaults and creates the one mailbox. */
export async function startLoadServer(prefix: string, env: Record<string, string> = {}): Promise<LoadServer> {
  const dataDir = tempDir(`mailserver-${prefix}-`);
  const server = new ProcessServer(await processEnv(dataDir, env));
  await server.start();
  for (const args of [
    ['create-tenant', '--name', 'Load'],
    ['add-domain', '--tenant', 'Load', '--domain', 'load.test'],
    ['create-user', '--email', RECIPIENT, '--password', PASSWORD, '--quota-mb', '100000'],
  ]) {
    const r = server.admin(...args);
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  return {
    server,
    port: Number(server.env.SMTP_PORT),
    apiPort: Number(server.env.API_PORT),
    stop: async () => {
      await server.stop().catch(() => undefined);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The resident set size of a process, in KiB (VmRSS in /proc/<pid>/status). */
export function rssKb(pid: number | undefined): number {
  assert.ok(pid, 'the server process is not running');
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  assert.ok(line, `no VmRSS in /proc/${pid}/status`);
  return Number(/(\d+)/.exec(line)![1]);
}

/** A session greeted and past EHLO, from 127.0.0.<host>. */
export async function openSession(port: number, host: number, name = 'load-client.test'): Promise<RawSmtp> {
  const c = await RawSmtp.connect(port, '127.0.0.1', `127.0.0.${host}`);
  const greeting = await c.reply(30_000);
  assert.equal(greeting.code, 220, `greeting from 127.0.0.${host}: ${greeting.text}`);
  const ehlo = await c.command(`EHLO ${name}`);
  assert.equal(ehlo.code, 250, `EHLO from 127.0.0.${host}: ${ehlo.text}`);
  return c;
}

/** A small message with a unique subject (base64 body: no dot-stuffing needed). */
export function message(subject: string, bodyBytes = 2000): string {
  const body = Buffer.alloc(Math.ceil((bodyBytes * 3) / 4), subject)
    .toString('base64')
    .replace(/(.{76})/g, '$1\r\n');
  return `From: sender@example.org\r\nTo: ${RECIPIENT}\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.org>\r\n\r\n${body}\r\n`;
}

/**
 * MAIL, RCPT and DATA of one message on an open session; returns the final reply. Each reply may
 * take up to REPLY_TIMEOUT_MS: on a busy 2-core machine a burst of parallel transactions queues.
 */
export async function transaction(c: RawSmtp, subject: string): Promise<{ code: number; text: string }> {
  const step = async (line: string): Promise<{ code: number; text: string }> => {
    c.write(`${line}\r\n`);
    return c.reply(REPLY_TIMEOUT_MS);
  };
  const m = await step('MAIL FROM:<sender@example.org>');
  if (m.code !== 250) return m;
  const r = await step(`RCPT TO:<${RECIPIENT}>`);
  if (r.code !== 250) return r;
  const d = await step('DATA');
  if (d.code !== 354) return d;
  c.write(`${message(subject)}.\r\n`);
  return c.reply(REPLY_TIMEOUT_MS);
}

const REPLY_TIMEOUT_MS = 60_000;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs `fn` over `items` with at most `width` at a time. */
export async function pool<T, R>(items: T[], width: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  return out;
}

/** The server's own memory figures from GET /metrics (prom-client defaults), in MB. */
export async function heapFigures(apiPort: number): Promise<{ heapUsed: number; heapTotal: number; external: number }> {
  const text = await (await fetch(`http://127.0.0.1:${apiPort}/metrics`)).text();
  const value = (name: string): number => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)`, 'm').exec(text);
    return m ? Math.round(Number(m[1]) / 1024 / 1024) : -1;
  };
  return { heapUsed: value('nodejs_heap_size_used_bytes'), heapTotal: value('nodejs_heap_size_total_bytes'), external: value('nodejs_external_memory_bytes') };
}

/**
 * Forces a full garbage collection in the server process through the inspector (the server was
 * started with NODE_OPTIONS=--inspect=127.0.0.1:<inspectPort>): without it, what V8 has not yet
 * collected would look like memory the sessions kept.
 */
export async function collectGarbage(inspectPort: number): Promise<void> {
  const targets = (await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
  assert.ok(targets[0], 'no inspector target in the server process');
  const ws = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' }));
    ws.onmessage = (event) => {
      if ((JSON.parse(String(event.data)) as { id?: number }).id === 1) resolve();
    };
    ws.onerror = () => reject(new Error('inspector connection failed'));
  });
  ws.close();
}
