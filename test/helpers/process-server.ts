/**
 * The server as a separate OS process (`node dist/src/main.js`) on the embedded PostgreSQL, for
 * tests that kill it (crash safety) or drive it like an operator would (CLI, swaks). Ports are
 * picked free; DATA_DIR is a temporary directory kept across restarts.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const MAIN = path.join(ROOT, 'dist/src/main.js');
const ADMIN = path.join(ROOT, 'dist/src/cli/admin.js');

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface ProcessServerEnv {
  DATA_DIR: string;
  EMBEDDED_PG_PORT: string;
  SMTP_PORT: string;
  SUBMISSION_PORT: string;
  SMTPS_PORT: string;
  API_PORT: string;
  [key: string]: string;
}

export async function processEnv(dataDir: string, extra: Record<string, string> = {}): Promise<ProcessServerEnv> {
  return {
    DATA_DIR: dataDir,
    EMBEDDED_PG_PORT: String(await freePort()),
    SMTP_PORT: String(await freePort()),
    // every listener gets its own free port: two server processes must never share a default
    SUBMISSION_PORT: String(await freePort()),
    SMTPS_PORT: String(await freePort()),
    API_PORT: String(await freePort()),
    BIND_HOST: '127.0.0.1',
    MAIL_HOSTNAME: 'mx.test.local',
    ROLES: 'api,smtp,worker',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
    INBOUND_AUTH_ENABLED: 'false',
    ...extra,
  };
}

function childEnv(env: ProcessServerEnv): NodeJS.ProcessEnv {
  // only what the server needs: no DATABASE_URL or TEST_ variables leak in
  return { PATH: process.env.PATH, HOME: process.env.HOME, ...env };
}

export class ProcessServer {
  private child: ChildProcess | null = null;
  output = '';

  constructor(readonly env: ProcessServerEnv) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the process and waits until the SMTP port answers with a greeting. */
  async start(timeoutMs = 60_000): Promise<void> {
    const child = spawn(process.execPath, [MAIN], { cwd: ROOT, env: childEnv(this.env), stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      // a process killed by a signal has signalCode set and exitCode null
      if (hasExited(child)) throw new Error(`server exited with ${child.exitCode ?? child.signalCode}:\n${this.output.slice(-3000)}`);
      if (await greets(Number(this.env.SMTP_PORT))) return;
      await new Promise((r) => setTimeout(r, 150));
    }
    throw new Error(`server did not start within ${timeoutMs} ms:\n${this.output.slice(-3000)}`);
  }

  /** SIGKILL: no cleanup of any kind runs (the embedded postgres is left orphaned). */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || hasExited(child)) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    this.child = null;
  }

  /** Sends a signal (e.g. SIGHUP) to the running server process. */
  signal(name: NodeJS.Signals): void {
    if (!this.child || this.child.exitCode !== null) throw new Error('the server process is not running');
    this.child.kill(name);
  }

  /** SIGTERM and wait for a clean exit; returns the exit code. */
  async stop(timeoutMs = 60_000): Promise<number | null> {
    const child = this.child;
    if (!child || hasExited(child)) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await exited;
    clearTimeout(timer);
    this.child = null;
    return code;
  }

  /** Runs the admin CLI against this server's data; returns exit code and output. */
  admin(...args: string[]): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync(process.execPath, [ADMIN, ...args], { cwd: ROOT, env: childEnv(this.env), encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /** The URL of the embedded database (the server or the CLI must have started it). */
  dbUrl(): string {
    const password = readFileSync(path.join(this.env.DATA_DIR, 'secrets', 'pg-password'), 'utf8').trim();
    return `postgres://mailserver:${encodeURIComponent(password)}@127.0.0.1:${Number(this.env.EMBEDDED_PG_PORT)}/mailserver`;
  }

  /** A client on the embedded database (the server or the CLI must have started it). */
  async db(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.dbUrl() });
    await client.connect();
    return client;
  }
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function greets(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.once('data', (d: Buffer) => done(d.toString().startsWith('220')));
    s.once('error', () => done(false));
    setTimeout(() => done(false), 2000);
  });
}
