/**
 * onMailFrom: starts a transaction. The MX accepts any sender, including the null sender `<>`
 * used by bounces (RFC 5321 §4.5.5); what the sender may do is decided per recipient and by
 * inbound verification. Refused while shutting down so no new transaction starts.
 */
import type { SMTPServerAddress, SMTPServerSession } from 'smtp-server';
import { AppError } from '../core/errors.js';
import type { SessionRegistry } from './session-registry.js';

export function createOnMailFrom(registry: SessionRegistry) {
  return (_address: SMTPServerAddress, _session: SMTPServerSession): Promise<void> => {
    if (registry.shuttingDown) {
      return Promise.reject(new AppError('shutting_down', 'Server shutting down, please try again later'));
    }
    return Promise.resolve();
  };
}
