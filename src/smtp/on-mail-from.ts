/**
 * onMailFrom: starts a transaction. Refused while shutting down so no new transaction starts.
 * From another server (no AUTH) any sender is accepted, including the null sender `<>` of
 * bounces (RFC 5321 §4.5.5): what it may do is decided per recipient and by inbound
 * verification. A logged-in user may only use an address they own (553 5.7.1) on a verified
 * domain.
 */
import type { SMTPServerAddress, SMTPServerSession } from 'smtp-server';
import { AppError } from '../core/errors.js';
import type { SubmissionService } from '../services/submission.service.js';
import { sessionSender } from './on-auth.js';
import type { SessionRegistry } from './session-registry.js';

export function createOnMailFrom(registry: SessionRegistry, submission: SubmissionService) {
  return async (address: SMTPServerAddress, session: SMTPServerSession): Promise<void> => {
    if (registry.shuttingDown) {
      throw new AppError('shutting_down', 'Server shutting down, please try again later');
    }
    const sender = sessionSender(session);
    if (!sender) return;
    if (!address.address) throw new AppError('sender_not_allowed', 'the null sender <> is not allowed for submitted mail');
    await submission.checkSender(sender, address.address);
  };
}
