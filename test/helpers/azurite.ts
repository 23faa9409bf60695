/**
 * startAzurite(): the real Azure Blob emulator (the `azurite` npm package) as a child process for
 * tests. It binds 127.0.0.1 on a port the kernel picks (`--blobPort 0`, read back from its start
 * line, so two test files never race for one port), keeps everything in memory, never sends
 * telemetry, runs in a temporary working directory, and is killed by stop() or, failing that,
 * when the test process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { tempDir } from './harness.js';

/** The emulator's fixed development account (public, documented by Microsoft). */
const ACCOUNT = 'devstoreaccount1';
const ACCOUNT_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;
/** Caps the emulator's in-memory extents; the largest test blob is 30 MB (staged plus published). */
const EXTENT_MEMORY_LIMIT_MB = 512;

export interface Azurite {
  connectionString: string;
  port: number;
  stop(): Promise<void>;
}

export async function startAzurite(): Promise<Azurite> {
  const require = createRequire(import.meta.url);
  const main = path.join(path.dirname(require.resolve('azurite/package.json')), 'dist/src/blob/main.js');
  const workDir = tempDir('azurite-');
  const child = spawn(
    process.execPath,
    [
      main,
      '--blobHost',
      '127.0.0.1',
      '--blobPort',
      '0',
      '--disableTelemetry',
      '--inMemoryPersistence',
      '--extentMemoryLimit',
      String(EXTENT_MEMORY_LIMIT_MB),
      '--skipApiVersionCheck',
      '--silent',
    ],
    { cwd: workDir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // a test that crashes before stop() must not leave the emulator running
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const cleanup = (): void => {
    process.removeListener('exit', killOnExit);
    rmSync(workDir, { recursive: true, force: true });
  };

  let port: number;
  try {
    port = await listeningPort(child);
    await waitAccepting(port);
  } catch (err) {
    await stopChild(child);
    cleanup();
    throw err;
  }
  // from here on the pipes must not keep the test process alive
  child.unref();
  for (const stream of [child.stdout, child.stderr]) {
    stream?.resume();
    (stream as unknown as { unref?: () => void } | null)?.unref?.();
  }
  return {
    port,
    connectionString:
      `DefaultEndpointsProtocol=http;AccountName=${ACCOUNT};AccountKey=${ACCOUNT_KEY};` + `BlobEndpoint=http://127.0.0.1:${port}/${ACCOUNT};`,
    async stop() {
      await stopChild(child);
      cleanup();
    },
  };
}

/** Reads the port from the start line: "Azurite Blob service successfully listens on http://127.0.0.1:NNNN". */
function listeningPort(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => finish(new Error(`Azurite did not start within ${START_TIMEOUT_MS} ms; output: ${output}`)), START_TIMEOUT_MS);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString('utf8');
      const m = /successfully listens on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      if (m) finish(null, Number(m[1]));
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      finish(new Error(`Azurite exited during start (code ${code ?? 'none'}, signal ${signal ?? 'none'}); output: ${output}`));
    };
    const finish = (err: Error | null, port?: number): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      child.off('error', finish);
      if (err) reject(err);
      else resolve(port!);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
    child.once('error', finish);
  });
}

async function waitAccepting(port: number): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`Azurite does not accept connections on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SIGTERM (Azurite closes cleanly), SIGKILL if it is still there after STOP_TIMEOUT_MS. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}
