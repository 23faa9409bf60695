/**
 * Config schema: every environment variable the server reads, its type, default and meaning.
 * Read by load() (the only reader of process.env) and by config:print; `.env.example` and the
 * README's config table document the same list. Durations are milliseconds, sizes bytes,
 * unless the name says otherwise.
 */
import { z } from 'zod';

const port = z.coerce.number().int().min(0).max(65535);
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const positiveInt = z.coerce.number().int().positive();
const csv = z
  .string()
  .transform((v) => v.split(',').map((s) => s.trim()).filter((s) => s.length > 0));

/** A DNS server as `ip` or `ip:port` (IPv6 as `[ip]:port`), the form node's Resolver.setServers takes. */
const dnsServer = z
  .string()
  .regex(/^(\d{1,3}(\.\d{1,3}){3}(:\d{1,5})?|\[[0-9a-fA-F:]+\](:\d{1,5})?|[0-9a-fA-F:]+)$/, 'must be an IP address, optionally with :port');

/** A duration such as `500ms`, `30s`, `5m`, `4h`, `3d`, or a plain number of milliseconds. */
export function parseDuration(v: string): number | null {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(v.trim());
  if (!m) return null;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 'ms') as 'ms'];
  return Number(m[1]) * unit;
}
const duration = z.string().transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === null) {
    ctx.addIssue({ code: 'custom', message: 'must be a duration such as 30s, 5m, 4h or 3d' });
    return z.NEVER;
  }
  return ms;
});
const durationList = csv.pipe(z.array(z.string())).transform((items, ctx) => {
  const out: number[] = [];
  for (const item of items) {
    const ms = parseDuration(item);
    if (ms === null || ms <= 0) {
      ctx.addIssue({ code: 'custom', message: `"${item}" is not a positive duration such as 5m, 1h or 4h` });
      return z.NEVER;
    }
    out.push(ms);
  }
  if (out.length === 0) {
    ctx.addIssue({ code: 'custom', message: 'must list at least one duration' });
    return z.NEVER;
  }
  return out;
});
const httpBaseUrl = z.url({ message: 'must be an http(s) URL' }).refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL').transform((u) => u.replace(/\/+$/, ''));

export const ROLES = ['api', 'smtp', 'worker'] as const;
export type Role = (typeof ROLES)[number];

export const configSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    ROLES: csv.pipe(z.array(z.enum(ROLES)).min(1)).default([...ROLES]),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

    BIND_HOST: z.string().min(1).default('127.0.0.1'),
    // the SMTP listeners' address; unset = BIND_HOST. Production: 0.0.0.0 (or ::), since mail
    // from other hosts arrives redirected from port 25, while the API stays on 127.0.0.1 behind nginx
    SMTP_BIND_HOST: z.string().min(1).optional(),
    API_PORT: port.default(3000),
    SMTP_PORT: port.default(2525),
    SUBMISSION_PORT: port.default(2587),
    SMTPS_PORT: port.default(2465),
    // Prometheus /metrics on its own port (BIND_HOST), for processes without the api role; unset = off
    METRICS_PORT: port.optional(),
    MAIL_HOSTNAME: z
      .string()
      .regex(/^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/, 'must be a host name')
      .default('localhost'),

    DATA_DIR: z.string().min(1).default('./data'),
    DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').optional(),
    EMBEDDED_PG_PORT: port.default(5433),
    DATABASE_POOL_SIZE: positiveInt.default(20),

    STORAGE_DRIVER: z.enum(['local', 'azure']).default('local'),
    AZURE_STORAGE_CONNECTION_STRING: z.string().min(1).optional(),
    AZURE_STORAGE_CONTAINER: z
      .string()
      .regex(/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/, 'must be a valid Azure container name')
      .default('mail'),
    BLOB_GC_GRACE_MS: z.coerce.number().int().min(0).default(60 * 60 * 1000),
    BLOB_GC_INTERVAL_MS: z.coerce.number().int().min(1000).default(60 * 60 * 1000),
    // blobs up to this size are kept in their PostgreSQL row (durable with the same commit);
    // larger ones go to the blob store. 0 = everything in the blob store. Held in memory while a
    // message is received, so capped at 16 MiB.
    BLOB_INLINE_MAX_BYTES: z.coerce.number().int().min(0).max(16 * 1024 * 1024).default(64 * 1024),

    MAX_MESSAGE_SIZE: positiveInt.default(25 * 1024 * 1024),
    MAX_RECIPIENTS: positiveInt.default(100),
    DEFAULT_QUOTA_MB: positiveInt.default(1024),
    SMTP_MAX_CONNECTIONS: positiveInt.default(2000),
    SMTP_MAX_CONNECTIONS_PER_IP: positiveInt.default(50),
    SMTP_IDLE_TIMEOUT_MS: positiveInt.default(60_000),
    SMTP_SESSION_MAX_MS: positiveInt.default(30 * 60_000),
    SMTP_SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).default(20_000),
    SMTP_MAX_RECEIVED_HEADERS: positiveInt.default(30),
    // Postfix's smtpd_junk_command_limit and smtpd_hard_error_limit (src/smtp/command-limits.ts)
    SMTP_JUNK_COMMAND_LIMIT: positiveInt.default(100),
    SMTP_ERROR_LIMIT: positiveInt.default(20),

    DNS_SERVERS: csv.pipe(z.array(dnsServer)).optional(),
    DNS_TIMEOUT_MS: positiveInt.default(5000),
    INBOUND_AUTH_ENABLED: bool.default(true),

    TLS_CERT_FILE: z.string().min(1).optional(),
    TLS_KEY_FILE: z.string().min(1).optional(),
    // how often TLS_CERT_FILE/TLS_KEY_FILE are checked for a renewed certificate (SIGHUP reloads at once)
    TLS_WATCH_INTERVAL: duration.prefault('60s'),

    CORS_ORIGINS: csv.pipe(z.array(z.url({ message: 'must be a list of origins such as https://mail.example.com' }))).default([]),
    SIGNUP_ENABLED: bool.default(true),
    API_BODY_LIMIT_BYTES: positiveInt.default(1024 * 1024),
    TRUST_PROXY: z.string().min(1).default('loopback'),
    LOGIN_MAX_FAILURES: positiveInt.default(5),
    LOGIN_MAX_FAILURES_PER_IP: positiveInt.default(5),
    LOGIN_LOCKOUT_MS: positiveInt.default(15 * 60_000),
    API_RATE_LIMIT_PER_MINUTE: positiveInt.default(600),
    SIGNUP_RATE_LIMIT_PER_HOUR: positiveInt.default(20),

    // --- sending ---
    // AUTH is offered on SMTP_PORT too (after STARTTLS), as the original deployment did
    SMTP_AUTH_ON_MX: bool.default(true),
    // messages per user that leave the server (local deliveries and bounces do not count)
    SEND_LIMIT_PER_HOUR: positiveInt.default(300),
    SEND_LIMIT_PER_DAY: positiveInt.default(2000),
    MAX_ATTACHMENTS: positiveInt.default(20),
    OUTBOUND_RETRY_SCHEDULE: durationList.prefault('5m,10m,30m,1h,2h,4h'),
    OUTBOUND_MAX_AGE: duration.prefault('3d'),
    OUTBOUND_DELAY_WARNING: duration.prefault('4h'),
    OUTBOUND_CONCURRENCY: positiveInt.default(8),
    OUTBOUND_POLL_INTERVAL: duration.prefault('1s'),
    OUTBOUND_LEASE: duration.prefault('10m'),
    OUTBOUND_TIMEOUT: duration.prefault('60s'),
    // extra CA certificates (PEM) trusted for outbound TLS, for relays with a private CA
    OUTBOUND_TLS_CA_FILE: z.string().min(1).optional(),
    RELAY_URL: z
      .string()
      .regex(/^smtps?:\/\/[^\s]+$/, 'must be smtp://user:pass@host:port or smtps://...')
      .optional(),
    DIRECT_DELIVERY: bool.default(false),
    // the port remote MX hosts are contacted on (25; tests point it at a local server)
    DIRECT_DELIVERY_PORT: port.default(25),
    ALLOW_PRIVATE_RELAY_HOSTS: bool.default(false),
    SENDGRID_API_URL: httpBaseUrl.default('https://api.sendgrid.com'),
    MAILGUN_API_URL: httpBaseUrl.default('https://api.mailgun.net'),
    MAILGUN_EU_API_URL: httpBaseUrl.default('https://api.eu.mailgun.net'),
    // SES endpoint; unset = the AWS endpoint of the provider's region
    SES_API_URL: httpBaseUrl.optional(),
    MSGRAPH_API_URL: httpBaseUrl.default('https://graph.microsoft.com'),
    MSGRAPH_LOGIN_URL: httpBaseUrl.default('https://login.microsoftonline.com'),
    // where SNS signing certificates may be fetched from (SES delivery events)
    SNS_CERT_URL_PATTERN: z
      .string()
      .refine((v) => {
        try {
          new RegExp(v);
          return true;
        } catch {
          return false;
        }
      }, 'must be a regular expression')
      .default('^https://sns\\.[a-z0-9-]+\\.amazonaws\\.com(\\.cn)?/'),

    JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
    SECRETS_KEY: z
      .string()
      .regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex characters (32 bytes)')
      .optional(),
  })
  .superRefine((c, ctx) => {
    if (c.NODE_ENV === 'production') {
      for (const key of ['JWT_SECRET', 'SECRETS_KEY'] as const) {
        if (!c[key]) ctx.addIssue({ code: 'custom', path: [key], message: 'is required when NODE_ENV=production' });
      }
    }
    if (c.STORAGE_DRIVER === 'azure' && !c.AZURE_STORAGE_CONNECTION_STRING) {
      ctx.addIssue({
        code: 'custom',
        path: ['AZURE_STORAGE_CONNECTION_STRING'],
        message: 'is required when STORAGE_DRIVER=azure',
      });
    }
    if (Boolean(c.TLS_CERT_FILE) !== Boolean(c.TLS_KEY_FILE)) {
      ctx.addIssue({ code: 'custom', path: ['TLS_KEY_FILE'], message: 'TLS_CERT_FILE and TLS_KEY_FILE must be set together' });
    }
  });

export type RawConfig = z.infer<typeof configSchema>;

/** The variables whose values config:print and the logs never show. */
export const SECRET_KEYS: ReadonlySet<string> = new Set(['JWT_SECRET', 'SECRETS_KEY', 'AZURE_STORAGE_CONNECTION_STRING', 'DATABASE_URL', 'RELAY_URL']);
