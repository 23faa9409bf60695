/**
 * Command-line options of the SMTP test client (src/cli/smtp-test-client.ts): the usage text,
 * and parseOptions(), which turns argv into a checked ClientOptions or throws a UsageError
 * naming the bad flag. Files (`--body @file`, `--attach`) are read here, so an unreadable one
 * is a usage error (exit 2) before any connection is made, never a failure halfway through.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

export type TlsMode = 'starttls' | 'implicit' | 'none';

/** The server's listener defaults (SMTP_PORT, SUBMISSION_PORT, SMTPS_PORT), one per TLS mode. */
export const DEFAULT_PORTS: Record<TlsMode, number> = { none: 2525, starttls: 2587, implicit: 2465 };

const MAX_COUNT = 10_000_000;
const MAX_CONCURRENCY = 1000;
const DEFAULT_TIMEOUT_S = 30;

export const USAGE = `usage: scripts/smtp-test-client --to <address> [options]

Sends test messages to an SMTP server and reports what it answered: accepted, rejected by reply
code, connection errors, throughput and latency.

connection:
  --host <name>        server host (default 127.0.0.1)
  --port <n>           server port (default by --tls: none 2525, starttls 2587, implicit 2465,
                       the server's SMTP_PORT, SUBMISSION_PORT and SMTPS_PORT defaults)
  --tls <mode>         starttls (default): STARTTLS required, fails when not offered
                       implicit: TLS from the first byte (SMTPS)
                       none: plain text, STARTTLS ignored
  --insecure           accept any server certificate (self-signed, other name)
  --user <login>       log in with AUTH
  --password <pw>      AUTH password; or set SMTP_TEST_PASSWORD to keep it off the command line
  --timeout <seconds>  connect, greeting and per-command timeout (default ${DEFAULT_TIMEOUT_S})
message:
  --from <address>     envelope sender and From: (default: --user, when it is an address)
  --to <address>       recipient (required); repeat the flag or separate with commas
  --subject <text>     subject; each message gets "<text> #n" (default "smtp-test-client")
  --body <text|@file>  body text, or @path to read it from a file
  --attach <file>      attach a file (repeatable)
load:
  --count <n>          messages to send (default 1)
  --rate <r>           messages per second, overall; 0 = unlimited (default 0)
  --concurrency <c>    parallel connections (default 1)
  --reuse              keep each connection open for its next message (default: one per message)
output:
  --json               print the summary as JSON on stdout
  --help               show this text

Progress goes to stderr (a bar on a terminal, a line a second otherwise); the summary to stdout.
Exit status: 0 when every message was accepted, 1 when any failed, 2 on bad arguments.`;

export class UsageError extends Error {}

export interface Attachment {
  filename: string;
  content: Buffer;
}

export interface ClientOptions {
  host: string;
  port: number;
  tls: TlsMode;
  insecure: boolean;
  auth: { user: string; pass: string } | null;
  timeoutMs: number;
  from: string;
  to: string[];
  subject: string;
  body: string;
  attachments: Attachment[];
  count: number;
  /** Messages per second over all connections; 0 means as fast as the connections go. */
  rate: number;
  concurrency: number;
  reuse: boolean;
  json: boolean;
}

const FLAGS = {
  host: { type: 'string' },
  port: { type: 'string' },
  tls: { type: 'string' },
  insecure: { type: 'boolean' },
  user: { type: 'string' },
  password: { type: 'string' },
  timeout: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string', multiple: true },
  subject: { type: 'string' },
  body: { type: 'string' },
  attach: { type: 'string', multiple: true },
  count: { type: 'string' },
  rate: { type: 'string' },
  concurrency: { type: 'string' },
  reuse: { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof FLAGS; strict: true }>>['values'];

// deliberately loose: the server judges addresses; this only catches a missing or mangled value
const ADDRESS = /^[^\s@<>,]+@[^\s@<>,]+$/;

/** Returns null for `--help`; `env` supplies SMTP_TEST_PASSWORD. */
export function parseOptions(argv: string[], env: Record<string, string | undefined>): ClientOptions | null {
  const values = readFlags(argv);
  if (values.help) return null;
  const tls = parseTls(values.tls);
  const auth = parseAuth(values.user, values.password ?? env.SMTP_TEST_PASSWORD, values.password !== undefined);
  return {
    host: nonEmpty('--host', values.host ?? '127.0.0.1'),
    port: values.port === undefined ? DEFAULT_PORTS[tls] : integer('--port', values.port, 1, 65535),
    tls,
    insecure: values.insecure ?? false,
    auth,
    timeoutMs: Math.round(number('--timeout', values.timeout ?? String(DEFAULT_TIMEOUT_S), { positive: true }) * 1000),
    from: parseFrom(values.from, auth),
    to: parseRecipients(values.to),
    subject: values.subject ?? 'smtp-test-client',
    body: parseBody(values.body),
    attachments: (values.attach ?? []).map(readAttachment),
    count: integer('--count', values.count ?? '1', 1, MAX_COUNT),
    rate: number('--rate', values.rate ?? '0', { positive: false }),
    concurrency: integer('--concurrency', values.concurrency ?? '1', 1, MAX_CONCURRENCY),
    reuse: values.reuse ?? false,
    json: values.json ?? false,
  };
}

function readFlags(argv: string[]): Values {
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: true });
  } catch (err) {
    throw new UsageError(describeParseError(err as NodeJS.ErrnoException));
  }
  if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument "${parsed.positionals[0]}": every value follows its flag, e.g. --to a@example.com`);
  return parsed.values;
}

/** node's messages name the flag but are long-winded for the common case of a typo. */
function describeParseError(err: NodeJS.ErrnoException): string {
  const flag = /'(-[^' ]+)/.exec(err.message)?.[1];
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && flag) return `unknown flag ${flag}`;
  if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag) return `${flag} needs a value (a value starting with "-" is written ${flag}=-value)`;
  return err.message;
}

function parseTls(value: string | undefined): TlsMode {
  if (value === undefined) return 'starttls';
  if (value === 'starttls' || value === 'implicit' || value === 'none') return value;
  throw new UsageError(`--tls must be starttls, implicit or none (got "${value}")`);
}

function parseAuth(user: string | undefined, pass: string | undefined, passOnCommandLine: boolean): ClientOptions['auth'] {
  if (user === undefined) {
    if (passOnCommandLine) throw new UsageError('--password needs --user');
    return null;
  }
  nonEmpty('--user', user);
  if (pass === undefined || pass === '') throw new UsageError('--user needs --password (or the SMTP_TEST_PASSWORD environment variable)');
  return { user, pass };
}

function parseFrom(from: string | undefined, auth: ClientOptions['auth']): string {
  if (from !== undefined) return address('--from', from);
  if (auth && ADDRESS.test(auth.user)) return auth.user;
  throw new UsageError('--from is required (it defaults to --user only when that is an address)');
}

function parseRecipients(values: string[] | undefined): string[] {
  const list = (values ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
  if (list.length === 0) throw new UsageError('--to is required: at least one recipient address');
  return list.map((v) => address('--to', v));
}

function parseBody(value: string | undefined): string {
  if (value === undefined) return 'This is a test message sent by smtp-test-client.\n';
  if (!value.startsWith('@')) return value;
  const file = value.slice(1);
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--body ${value}: cannot read ${file}: ${describeFsError(err)}`);
  }
}

function readAttachment(file: string): Attachment {
  try {
    return { filename: path.basename(file), content: readFileSync(file) };
  } catch (err) {
    throw new UsageError(`--attach ${file}: cannot read the file: ${describeFsError(err)}`);
  }
}

function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  return (err as Error).message;
}

function address(flag: string, value: string): string {
  if (!ADDRESS.test(value)) throw new UsageError(`${flag} must be an email address like user@example.com (got "${value}")`);
  return value;
}

function nonEmpty(flag: string, value: string): string {
  if (value.trim() === '') throw new UsageError(`${flag} must not be empty`);
  return value;
}

function integer(flag: string, value: string, min: number, max: number): number {
  const n = /^\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`${flag} must be a whole number from ${min} to ${max} (got "${value}")`);
  return n;
}

function number(flag: string, value: string, { positive }: { positive: boolean }): number {
  const n = /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isFinite(n) || (positive && n <= 0)) throw new UsageError(`${flag} must be a ${positive ? 'positive number' : 'number, 0 or more'} (got "${value}")`);
  return n;
}
