/**
 * What the backup and restore CLIs share: argument parsing with --help, loading the config,
 * finding the database (DATABASE_URL, or the embedded PostgreSQL in DATA_DIR) and the exit codes
 * an operator's script can rely on: 0 done, 1 refused or failed (one `error:` line on stderr),
 * 2 bad arguments or configuration.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type Config } from '../config/load.js';
import { AppError, describeError, isAppError } from '../core/errors.js';
import { createLogger, type Logger } from '../core/logger.js';
import { startEmbeddedPostgres } from '../db/embedded-postgres.js';

export class UsageError extends Error {}

export interface CliContext {
  config: Config;
  logger: Logger;
  dir: string;
  flags: Record<string, boolean | undefined>;
  out: (line: string) => void;
}

export interface CliSpec {
  usage: string;
  /** Boolean flags besides --help. */
  flags: string[];
  run(ctx: CliContext): Promise<void>;
}

/** Parses argv (one directory and the flags), loads the config, runs, and exits with the right code. */
export function runCli(spec: CliSpec, argv: string[]): void {
  main(spec, argv).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`error: ${describeError(err)}\n`);
      process.exit(1);
    },
  );
}

async function main(spec: CliSpec, argv: string[]): Promise<number> {
  let dir: string;
  let flags: Record<string, boolean | undefined>;
  try {
    const options = Object.fromEntries([...spec.flags, 'help'].map((f) => [f, { type: 'boolean' as const }]));
    const parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    flags = parsed.values;
    if (flags.help) {
      process.stdout.write(`${spec.usage}\n`);
      return 0;
    }
    if (parsed.positionals.length !== 1) throw new UsageError(parsed.positionals.length === 0 ? 'give the backup directory' : 'give exactly one backup directory');
    dir = parsed.positionals[0]!;
  } catch (err) {
    process.stderr.write(`error: ${describeError(err)}\n${spec.usage}\n`);
    return 2;
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${err.message}\n`);
    return 2;
  }
  const logger = createLogger(config.LOG_LEVEL === 'info' ? 'warn' : config.LOG_LEVEL, { name: 'backup' });
  try {
    await spec.run({ config, logger, dir, flags, out: (line) => process.stdout.write(`${line}\n`) });
    return 0;
  } catch (err) {
    if (isAppError(err)) {
      process.stderr.write(`error: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

/**
 * The database URL: DATABASE_URL, or the embedded PostgreSQL. `shared` (backup) uses the one a
 * running server started, or starts it for the command; `own` (restore) refuses while a server
 * holds it, because a restore must not write under a running server.
 */
export async function openDatabaseUrl(config: Config, logger: Logger, mode: 'own' | 'shared'): Promise<{ url: string; stop(): Promise<void> }> {
  if (config.DATABASE_URL) return { url: config.DATABASE_URL, stop: () => Promise.resolve() };
  try {
    return await startEmbeddedPostgres(config.DATA_DIR, config.EMBEDDED_PG_PORT, logger, mode);
  } catch (err) {
    const what = mode === 'own' ? 'cannot open the embedded database for the restore (the mail server must be stopped)' : 'cannot open the embedded database';
    throw new AppError('conflict', `${what}: ${describeError(err)}`, { cause: err });
  }
}

/** The version in package.json, recorded in every backup. */
export function appVersion(): string {
  const file = path.join(import.meta.dirname, '..', '..', '..', 'package.json');
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

export function formatDuration(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms / 1000)} s`;
}
