/**
 * load(): the only code that reads process.env. Reads `.env` (never overriding real environment
 * variables), validates every variable with the zod schema, and either returns a frozen Config or
 * throws a ConfigError listing every bad key at once, so an operator fixes them in one pass.
 * Outside production, JWT_SECRET and SECRETS_KEY are generated once and kept in DATA_DIR so
 * tokens and encrypted credentials survive restarts.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import { configSchema, SECRET_KEYS, type RawConfig } from './schema.js';

export interface Config extends Omit<RawConfig, 'JWT_SECRET' | 'SECRETS_KEY' | 'DATA_DIR'> {
  /** Absolute path. */
  DATA_DIR: string;
  JWT_SECRET: string;
  SECRETS_KEY: string;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export interface LoadOptions {
  /** Variables to use instead of process.env (tests). */
  env?: Record<string, string | undefined>;
  /** The .env file to read; null to read none. Default: `.env` in the working directory. */
  envFile?: string | null;
}

/** Reads and validates the configuration. Throws ConfigError listing every bad key. */
export function loadConfig(options: LoadOptions = {}): Config {
  const env = { ...readEnvFile(options.envFile === undefined ? '.env' : options.envFile), ...(options.env ?? process.env) };
  const known = configSchema.shape;
  const input: Record<string, string> = {};
  for (const key of Object.keys(known)) {
    const value = env[key];
    if (value !== undefined && value !== '') input[key] = value;
  }
  const parsed = configSchema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const key = issue.path.join('.') || '(config)';
      const shown = SECRET_KEYS.has(key) ? '' : input[key] !== undefined ? ` (got "${input[key]}")` : '';
      return `${key}: ${issue.message}${shown}`;
    });
    throw new ConfigError(problems);
  }
  const raw = parsed.data;
  const dataDir = path.resolve(raw.DATA_DIR);
  return Object.freeze({
    ...raw,
    DATA_DIR: dataDir,
    JWT_SECRET: raw.JWT_SECRET ?? persistentSecret(dataDir, 'jwt-secret', () => randomBytes(48).toString('base64url')),
    SECRETS_KEY: raw.SECRETS_KEY ?? persistentSecret(dataDir, 'secrets-key', () => randomBytes(32).toString('hex')),
  });
}

function readEnvFile(file: string | null): Record<string, string> {
  if (file === null || !existsSync(file)) return {};
  return parseDotenv(readFileSync(file));
}

/** A secret generated once into DATA_DIR/secrets/<name> (mode 0600) and reused after. */
function persistentSecret(dataDir: string, name: string, generate: () => string): string {
  const dir = path.join(dataDir, 'secrets');
  const file = path.join(dir, name);
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const value = generate();
  writeFileSync(file, `${value}\n`, { mode: 0o600, flag: 'wx' });
  return value;
}

/** The resolved config with secrets redacted, for config:print and the start-up log. */
export function redactedConfig(config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    out[key] = SECRET_KEYS.has(key) && value !== undefined ? '<redacted>' : value;
  }
  return out;
}
