/**
 * smtp-server adds an enhanced status code chosen from the basic code alone (550 → 5.1.1), so
 * `550 5.7.1 relay denied` would go out as `550 5.1.1 5.7.1 relay denied`. Our replies carry
 * their own enhanced code (smtp/reply-codes.ts); this wraps SMTPConnection.send once so that a
 * reply text that already starts with an enhanced code (RFC 3463 `class.subject.detail`) is sent
 * as is. Every other reply keeps the library's behaviour.
 *
 * The same wrapper drops `AUTH` from the EHLO reply of a connection that is not yet TLS when the
 * server only allows AUTH over TLS (allowInsecureAuth off): smtp-server advertises it anyway and
 * then answers 538, and RFC 4954 §4 says a server should not offer what it will refuse (Postfix's
 * smtpd_tls_auth_only does the same). After STARTTLS the EHLO reply lists it.
 */
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

/** A reply text that starts with its own enhanced status code (ours always do). */
export const ENHANCED_PREFIX = /^[245]\.\d{1,3}\.\d{1,3} /;
let installed = false;

export type ConnectionSend = (this: SMTPConnection, code: number, data?: string | string[], context?: string | false) => void;

/** Replaces SMTPConnection.prototype.send with wrap(the current one): the one way our code hooks smtp-server's replies. */
export function wrapConnectionSend(wrap: (original: ConnectionSend) => ConnectionSend): void {
  const proto = SMTPConnection.prototype as unknown as { send: ConnectionSend };
  proto.send = wrap(proto.send);
}

export function installEnhancedCodePassthrough(): void {
  if (installed) return;
  installed = true;
  wrapConnectionSend((original) => function send(this: SMTPConnection, code, data, context) {
    if (typeof data === 'string' && ENHANCED_PREFIX.test(data)) return original.call(this, code, data, false);
    if (code === 250 && Array.isArray(data) && !authUsable(this)) return original.call(this, code, data.filter((line) => !line.startsWith('AUTH ')), context);
    return original.call(this, code, data, context);
  });
}

function authUsable(connection: SMTPConnection): boolean {
  const c = connection as unknown as { secure: boolean; _server: { options: { allowInsecureAuth?: boolean } } };
  return c.secure || c._server.options.allowInsecureAuth === true;
}
