/**
 * The one table from error codes to SMTP replies (RFC 5321 basic codes, RFC 3463 enhanced
 * codes). Nothing else in the code base writes an SMTP number for an error. Anything that is
 * not an AppError, or is marked temporary/bug without an entry here, is answered 451 4.3.0:
 * an outage must make the sender retry, never bounce the mail.
 */
import { isAppError, type ErrorCode } from '../core/errors.js';

export interface SmtpReply {
  code: number;
  enhanced: string;
}

const TEMPFAIL: SmtpReply = { code: 451, enhanced: '4.3.0' };

export const SMTP_REPLIES: Record<ErrorCode, SmtpReply> = {
  mailbox_not_found: { code: 550, enhanced: '5.1.1' },
  mailbox_disabled: { code: 550, enhanced: '5.2.1' },
  relay_denied: { code: 550, enhanced: '5.7.1' },
  bad_address: { code: 501, enhanced: '5.1.3' },
  too_many_recipients: { code: 452, enhanced: '4.5.3' },
  quota_exceeded: { code: 452, enhanced: '4.2.2' },
  message_too_large: { code: 552, enhanced: '5.3.4' },
  bare_line_ending: { code: 550, enhanced: '5.5.2' },
  mail_loop: { code: 554, enhanced: '5.4.6' },
  bad_message: { code: 550, enhanced: '5.6.0' },
  too_many_connections: { code: 421, enhanced: '4.7.0' },
  session_timeout: { code: 421, enhanced: '4.4.2' },
  shutting_down: { code: 421, enhanced: '4.3.2' },
  storage_unavailable: TEMPFAIL,
  database_unavailable: TEMPFAIL,
  dns_unavailable: TEMPFAIL,
  upstream_unavailable: TEMPFAIL,
  rate_limited: { code: 451, enhanced: '4.7.1' },
  unauthorized: { code: 535, enhanced: '5.7.8' },
  account_suspended: { code: 535, enhanced: '5.7.8' },
  forbidden: { code: 550, enhanced: '5.7.1' },
  auth_required: { code: 530, enhanced: '5.7.0' },
  // RFC 4954 §6: temporary authentication failure (locked out after repeated failures)
  auth_locked: { code: 454, enhanced: '4.7.0' },
  // RFC 4954 §6: encryption required for the requested authentication mechanism
  encryption_required: { code: 538, enhanced: '5.7.11' },
  sender_not_allowed: { code: 553, enhanced: '5.7.1' },
  domain_not_verified: { code: 553, enhanced: '5.7.1' },
  bad_header: { code: 550, enhanced: '5.6.0' },
  // management errors never come out of an SMTP handler; if one did, it is not the sender's fault
  not_found: TEMPFAIL,
  conflict: TEMPFAIL,
  validation_failed: TEMPFAIL,
  bad_request: TEMPFAIL,
  payload_too_large: TEMPFAIL,
  signup_disabled: TEMPFAIL,
  internal: TEMPFAIL,
};

export interface SmtpErrorReply extends SmtpReply {
  text: string;
}

/** The reply for any thrown value. Unclassified failures get a generic text (no internals leak). */
export function smtpReplyFor(err: unknown): SmtpErrorReply {
  if (isAppError(err)) {
    const reply = SMTP_REPLIES[err.code];
    const text = reply === TEMPFAIL ? 'Temporary local problem, please try again later' : err.message;
    return { ...reply, text };
  }
  return { ...TEMPFAIL, text: 'Temporary local problem, please try again later' };
}

/** An Error shaped the way smtp-server turns into a reply: `<code> <enhanced> <text>`. */
export function toSmtpError(reply: SmtpErrorReply): Error & { responseCode: number } {
  const error = new Error(`${reply.enhanced} ${reply.text}`) as Error & { responseCode: number };
  error.responseCode = reply.code;
  return error;
}
