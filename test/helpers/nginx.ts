/**
 * Debian's nginx (/usr/sbin/nginx, or NGINX_BIN) as a child process for tests of the shipped site
 * files under nginx/. A test renders a shipped file by exact text substitution (ports, paths,
 * server_name, upstream port: `substitute` fails when a line it expects is gone, so the test
 * breaks when the shipped file changes shape), and `startNginx` wraps it in a minimal top-level
 * nginx.conf whose pid, logs and temp paths live in the test's own directory, runs `nginx -t`
 * (which must pass) and starts `nginx -g 'daemon off;'` in its own process group.
 *
 * Nothing is left running: stop() signals the whole group and waits, and a process 'exit' hook
 * kills any group a failed test did not stop. A missing nginx is an error telling how to install
 * it, never a skip.
 *
 * Also here: a certificate for the test's server name (selfsigned), and small HTTP(S) clients
 * that can bind a chosen local address (the client-IP test connects from 127.0.0.2).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { selfSignedCertificate } from './test-tls.js';

export const NGINX_BIN = process.env.NGINX_BIN ?? '/usr/sbin/nginx';
const MIME_TYPES = '/etc/nginx/mime.types';
const STOP_TIMEOUT_MS = 5000;
const START_TIMEOUT_MS = 5000;

/** Throws (the test fails) when nginx is not installed: .ci/run installs it, so this is a broken machine. */
export function requireNginx(): void {
  if (!existsSync(NGINX_BIN) || !existsSync(MIME_TYPES)) {
    throw new Error(`nginx is not installed (${NGINX_BIN} or ${MIME_TYPES} missing): run \`apt-get install nginx\` (.ci/run installs it)`);
  }
}

/** Replaces `from` by `to`, asserting it occurs exactly `times` times. */
export function substitute(text: string, from: string, to: string, times = 1): string {
  const found = text.split(from).length - 1;
  assert.equal(found, times, `expected ${times} occurrence(s) of ${JSON.stringify(from)} in the shipped config, found ${found}`);
  return text.split(from).join(to);
}

/** Whether ::1 can be bound (containers may run without IPv6). */
export function ipv6Loopback(): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(0, '::1', () => srv.close(() => resolve(true)));
  });
}

export interface Certificate {
  cert: string;
  key: string;
}

/** A self-signed certificate for `name` (RSA 2048: selfsigned cannot encode EC keys here). */
export function certificateFor(name: string): Promise<Certificate> {
  return selfSignedCertificate(name);
}

const running = new Set<number>();
process.on('exit', () => {
  for (const pid of running) killGroup(pid, 'SIGKILL');
});

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

export interface Nginx {
  /** stderr of `nginx -t` (warnings, "syntax is ok", "test is successful"). */
  testOutput: string;
  /** The instance's error log so far (for failure messages). */
  errorLog(): string;
  stop(): Promise<void>;
}

function topLevelConf(dir: string, sitePath: string): string {
  const tmp = path.join(dir, 'tmp');
  return [
    'worker_processes 1;',
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log warn;`,
    'events { worker_connections 256; }',
    'http {',
    `    include ${MIME_TYPES};`,
    '    default_type application/octet-stream;',
    `    access_log ${dir}/access.log;`,
    `    client_body_temp_path ${tmp}/body;`,
    `    proxy_temp_path ${tmp}/proxy;`,
    `    fastcgi_temp_path ${tmp}/fastcgi;`,
    `    uwsgi_temp_path ${tmp}/uwsgi;`,
    `    scgi_temp_path ${tmp}/scgi;`,
    `    include ${sitePath};`,
    '}',
    '',
  ].join('\n');
}

/**
 * Writes `site` and a top-level nginx.conf into `dir`, checks them with `nginx -t`, starts nginx
 * and waits until every port in `ports` accepts connections on `host`.
 */
export async function startNginx(dir: string, site: string, ports: { host: string; port: number }[]): Promise<Nginx> {
  requireNginx();
  const sitePath = path.join(dir, 'site.conf');
  const confPath = path.join(dir, 'nginx.conf');
  mkdirSync(path.join(dir, 'tmp'), { recursive: true });
  writeFileSync(sitePath, site);
  writeFileSync(confPath, topLevelConf(dir, sitePath));
  const args = ['-p', `${dir}/`, '-c', confPath];
  const check = spawnSync(NGINX_BIN, ['-t', ...args], { encoding: 'utf8' });
  const testOutput = `${check.stdout}${check.stderr}`;
  assert.equal(check.status, 0, `nginx -t failed:\n${testOutput}`);

  const child = spawn(NGINX_BIN, [...args, '-g', 'daemon off;'], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${NGINX_BIN}`);
  running.add(pid);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const errorLog = () => (existsSync(path.join(dir, 'error.log')) ? readFileSync(path.join(dir, 'error.log'), 'utf8') : '');
  const stop = async () => {
    if (!running.has(pid)) return;
    killGroup(pid, 'SIGTERM');
    const timer = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), STOP_TIMEOUT_MS).unref());
    if (!(await Promise.race([exited.then(() => true), timer]))) killGroup(pid, 'SIGKILL');
    // workers in the group may outlive the master by a moment; SIGKILL them too (ESRCH if gone)
    killGroup(pid, 'SIGKILL');
    running.delete(pid);
  };
  try {
    await waitForPorts(child, ports);
  } catch (err) {
    await stop();
    throw new Error(`nginx did not start: ${(err as Error).message}\nstderr: ${stderr}\nerror.log: ${errorLog()}`);
  }
  return { testOutput, errorLog, stop };
}

async function waitForPorts(child: ChildProcess, ports: { host: string; port: number }[]): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (const { host, port } of ports) {
    while (!(await accepts(host, port))) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited with ${child.exitCode ?? child.signalCode}`);
      if (Date.now() > deadline) throw new Error(`${host}:${port} not listening after ${START_TIMEOUT_MS} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  /** Header names and values as sent (repeated headers stay separate). */
  rawHeaders: string[];
  body: Buffer;
}

export interface RequestOptions {
  method?: string;
  path: string;
  /** Host header (and, over TLS, the SNI name the certificate is checked against). */
  host: string;
  headers?: OutgoingHttpHeaders;
  body?: Buffer | string;
  /** Local address to connect from (e.g. 127.0.0.2). */
  localAddress?: string;
  /** Connect to this address (default 127.0.0.1). */
  address?: string;
  /** Over TLS, trusting this CA; plain HTTP when absent. */
  ca?: string;
}

/** One request on a fresh connection; the whole body is read. */
export function request(port: number, options: RequestOptions): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = openRequest(port, options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Starts a request and returns it unfinished, so a test can stream (or not send) its body. */
export function openRequest(port: number, options: RequestOptions, onResponse: (res: http.IncomingMessage) => void): http.ClientRequest {
  const common = {
    host: options.address ?? '127.0.0.1',
    port,
    method: options.method ?? 'GET',
    path: options.path,
    headers: { host: options.host, ...(options.headers ?? {}) },
    localAddress: options.localAddress,
    agent: false as const,
  };
  if (options.ca === undefined) return http.request(common, onResponse);
  return https.request({ ...common, ca: options.ca, servername: options.host }, onResponse);
}

/** Values of a header in `rawHeaders` (case-insensitive), each occurrence separately. */
export function headerValues(reply: Reply, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < reply.rawHeaders.length; i += 2) {
    if (reply.rawHeaders[i]!.toLowerCase() === name.toLowerCase()) out.push(reply.rawHeaders[i + 1]!);
  }
  return out;
}
