/**
 * The one table from error codes to HTTP statuses. Nothing else in the API writes a status for
 * an error. Anything that is not an AppError is a 500 with a generic message (details only in
 * the log).
 */
import type { ErrorCode } from '../core/errors.js';

export const HTTP_STATUS: Record<ErrorCode, number> = {
  mailbox_not_found: 404,
  mailbox_disabled: 403,
  relay_denied: 403,
  bad_address: 400,
  too_many_recipients: 400,
  quota_exceeded: 507,
  message_too_large: 413,
  bare_line_ending: 400,
  mail_loop: 400,
  bad_message: 400,
  too_many_connections: 429,
  session_timeout: 408,
  shutting_down: 503,
  storage_unavailable: 503,
  database_unavailable: 503,
  dns_unavailable: 503,
  upstream_unavailable: 503,
  auth_required: 401,
  auth_locked: 429,
  encryption_required: 403,
  sender_not_allowed: 403,
  domain_not_verified: 403,
  bad_header: 400,
  not_found: 404,
  conflict: 409,
  validation_failed: 400,
  bad_request: 400,
  payload_too_large: 413,
  unauthorized: 401,
  forbidden: 403,
  account_suspended: 403,
  signup_disabled: 403,
  rate_limited: 429,
  internal: 500,
};
