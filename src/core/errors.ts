/**
 * AppError: the one error type services throw. A code from a closed list plus a kind:
 * `permanent` (the request itself is wrong and retrying will not help), `temporary` (try again
 * later) or `bug`. Services never carry SMTP or HTTP numbers; the edges translate codes through
 * their own tables (smtp/reply-codes.ts, api/http-status.ts). Anything that is not an AppError is
 * treated as temporary by the edges: an outage must never bounce mail.
 */

export const ERROR_CODES = [
  // inbound addressing
  'mailbox_not_found',
  'mailbox_disabled',
  'relay_denied',
  'bad_address',
  'too_many_recipients',
  'quota_exceeded',
  // message content
  'message_too_large',
  'bare_line_ending',
  'mail_loop',
  'bad_message',
  // connection policy
  'too_many_connections',
  'session_timeout',
  'shutting_down',
  // infrastructure
  'storage_unavailable',
  'database_unavailable',
  'dns_unavailable',
  // a service of a provider we depend on (an SNS signing certificate) did not answer
  'upstream_unavailable',
  // sending (submission, API send)
  'auth_required',
  'auth_locked',
  'encryption_required',
  'sender_not_allowed',
  'domain_not_verified',
  'bad_header',
  // management (API)
  'not_found',
  'conflict',
  'validation_failed',
  'bad_request',
  'payload_too_large',
  'unauthorized',
  'forbidden',
  'account_suspended',
  'signup_disabled',
  'rate_limited',
  'internal',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];
export type ErrorKind = 'permanent' | 'temporary' | 'bug';

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  readonly details?: unknown;
  /** Seconds the client should wait (rate limits, lockouts): becomes Retry-After. */
  readonly retryAfterSeconds?: number;

  constructor(
    code: ErrorCode,
    message: string,
    options: { kind?: ErrorKind; cause?: unknown; details?: unknown; retryAfterSeconds?: number } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.kind = options.kind ?? defaultKind(code);
    this.details = options.details;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

function defaultKind(code: ErrorCode): ErrorKind {
  switch (code) {
    case 'quota_exceeded':
    case 'too_many_recipients':
    case 'too_many_connections':
    case 'session_timeout':
    case 'shutting_down':
    case 'storage_unavailable':
    case 'database_unavailable':
    case 'dns_unavailable':
    case 'upstream_unavailable':
    case 'rate_limited':
    case 'auth_locked':
      return 'temporary';
    case 'internal':
      return 'bug';
    case 'auth_required':
    case 'encryption_required':
    case 'sender_not_allowed':
    case 'domain_not_verified':
    case 'bad_header':
    case 'mailbox_not_found':
    case 'mailbox_disabled':
    case 'relay_denied':
    case 'bad_address':
    case 'message_too_large':
    case 'bare_line_ending':
    case 'mail_loop':
    case 'bad_message':
    case 'not_found':
    case 'conflict':
    case 'validation_failed':
    case 'bad_request':
    case 'payload_too_large':
    case 'unauthorized':
    case 'forbidden':
    case 'account_suspended':
    case 'signup_disabled':
      return 'permanent';
  }
}

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}

/** A one-line description of any thrown value, for logs and CLI output. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
