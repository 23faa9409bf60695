/**
 * SMTP metrics wiring for startSmtpServer (smtp.server.ts), kept out of the handlers:
 * - countData(): wraps onData so every DATA phase that ends is counted as received, and one
 *   answered 250 as stored with its size (what the client sent, before our trace headers).
 * - observeLibraryRejects(): counts the refusals smtp-server writes on its own, without any of
 *   our callbacks (early talkers, the listener's connection cap, idle timeouts, AUTH required,
 *   STARTTLS required, SIZE over the limit, syntax and sequence errors). Our own refusals go
 *   through smtpCallback and are counted there by error code; they are recognised here by the
 *   enhanced status code their text starts with (smtp/reply-codes.ts always writes one), and
 *   skipped so nothing is counted twice.
 * Reasons are a closed list, so the reject counter keeps a bounded number of series.
 */
import type { SMTPServer } from 'smtp-server';
import type { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { ENHANCED_PREFIX, wrapConnectionSend } from './enhanced-codes.js';
import type { SmtpProbe } from '../core/metrics.js';

/** Why smtp-server itself refused something. */
export type LibraryRejectReason =
  | 'early_talker'
  | 'max_connections'
  | 'idle_timeout'
  | 'shutting_down'
  | 'auth_required'
  | 'encryption_required'
  | 'message_too_large'
  | 'too_many_recipients'
  | 'protocol_error';

const observers = new WeakMap<object, SmtpProbe>();
let installed = false;

export function countData<Stream extends { byteLength?: number }, Session>(
  handler: (stream: Stream, session: Session) => Promise<string>,
  probe: SmtpProbe,
): (stream: Stream, session: Session) => Promise<string> {
  return async (stream, session) => {
    try {
      const reply = await handler(stream, session);
      probe.stored(stream.byteLength ?? 0);
      return reply;
    } finally {
      probe.dataEnded();
    }
  };
}

/** Reports smtp-server's own 4xx/5xx replies on this server's connections to `probe`. */
export function observeLibraryRejects(server: SMTPServer, probe: SmtpProbe): void {
  installSendHook();
  observers.set(server, probe);
}

export function libraryRejectReason(code: number, text: string): LibraryRejectReason {
  if (code === 421) {
    if (/talk too soon/i.test(text)) return 'early_talker';
    if (/too many connected clients/i.test(text)) return 'max_connections';
    if (/^timeout/i.test(text)) return 'idle_timeout';
    if (/shutting down/i.test(text)) return 'shutting_down';
    return 'protocol_error';
  }
  if (code === 530) return 'auth_required';
  if (code === 538) return 'encryption_required';
  if (code === 552) return 'message_too_large';
  if (code === 452) return 'too_many_recipients';
  return 'protocol_error';
}

/** One wrapper of SMTPConnection.send for the process; it finds the probe by the connection's server. */
function installSendHook(): void {
  if (installed) return;
  installed = true;
  wrapConnectionSend((original) => function send(this: SMTPConnection, code, data, context) {
    if (code >= 400) {
      const probe = observers.get((this as unknown as { _server: object })._server);
      const text = Array.isArray(data) ? data.join(' ') : (data ?? '');
      if (probe && !ENHANCED_PREFIX.test(text)) probe.rejected(libraryRejectReason(code, text));
    }
    return original.call(this, code, data, context);
  });
}
