/**
 * pino JSON logger. Child loggers carry `cid` (SMTP connection), `tid` (SMTP transaction),
 * `req_id` (HTTP request) and `queue_id` (delivery). A log line that records a state change
 * carries an `event` from LOG_EVENTS. Bodies, passwords and tokens are never logged.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export const LOG_EVENTS = [
  'server.started',
  'server.stopping',
  'server.stopped',
  'db.embedded.started',
  'db.embedded.stopped',
  'db.embedded.stale_stopped',
  'db.migrated',
  'smtp.listening',
  'smtp.connection.rejected',
  'smtp.session.expired',
  'smtp.rcpt.rejected',
  'smtp.data.rejected',
  'smtp.message.accepted',
  'smtp.callback.failed',
  'blob.gc.deleted',
  'blob.gc.failed',
  'blob.gc.skipped',
  'tls.selfsigned.created',
  'domain.verification.changed',
  'domain.verification.inconclusive',
  'jobs.error',
  'webhook.rejected',
  'webhook.bounced',
  'webhook.bounce_notice_failed',
] as const;

export type LogEvent = (typeof LOG_EVENTS)[number];

export function createLogger(level: string, options: { name?: string } = {}): Logger {
  return pino({
    level,
    name: options.name ?? 'mailserver',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: ['password', 'pass', '*.password', '*.pass', 'token', '*.token', 'authorization', '*.authorization'],
      censor: '<redacted>',
    },
  });
}
