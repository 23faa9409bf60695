/**
 * onRcptTo: accepts a recipient only if it is an existing local mailbox with room left.
 * Unknown local address → 550 5.1.1; any other domain or routing trick → 550 5.7.1 (no open
 * relay); full mailbox → 452 4.2.2; more than MAX_RECIPIENTS → 452 4.5.3 (RFC 5321 §4.5.3.1.8:
 * the client sends the rest in another transaction).
 *
 * A logged-in user may send anywhere: the recipient must be a plain address, and an address of
 * a domain we host must exist (550 5.1.1 now rather than a bounce later). Local mailboxes that
 * are full are not refused here: the queue retries them. A recipient elsewhere is refused with
 * 451 4.7.1 while the user is over a send limit (local mail does not count and is not refused).
 */
import type { SMTPServerAddress, SMTPServerSession } from 'smtp-server';
import { AppError, isAppError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { splitPlainAddress, type LocalRecipient, type RecipientService } from '../services/recipient.service.js';
import type { SubmissionService } from '../services/submission.service.js';
import { sessionSender } from './on-auth.js';

/** The resolved mailbox of each accepted RCPT, keyed by smtp-server's address object. */
export type RecipientMap = WeakMap<SMTPServerAddress, LocalRecipient>;

export function createOnRcptTo(recipients: RecipientService, submission: SubmissionService, resolved: RecipientMap, maxRecipients: number, logger: Logger) {
  return async (address: SMTPServerAddress, session: SMTPServerSession): Promise<void> => {
    try {
      if (session.envelope.rcptTo.length >= maxRecipients) {
        throw new AppError('too_many_recipients', `Too many recipients, at most ${maxRecipients} per message`);
      }
      const sender = sessionSender(session);
      if (sender) {
        const local = await checkSubmittedRecipient(recipients, address.address);
        if (!local) await submission.checkLimits(sender);
        return;
      }
      const local = await recipients.resolveRecipient(address.address);
      recipients.checkQuota(local, declaredSize(session));
      resolved.set(address, local);
    } catch (err) {
      if (isAppError(err)) {
        logger.info({ event: 'smtp.rcpt.rejected', cid: session.id, code: err.code, rcpt: address.address.slice(0, 254) }, 'recipient rejected');
      }
      throw err;
    }
  };
}

/** Whether a submitted recipient is hosted here; refuses bad syntax and unknown local mailboxes. */
async function checkSubmittedRecipient(recipients: RecipientService, address: string): Promise<boolean> {
  if (!splitPlainAddress(address)) throw new AppError('bad_address', `<${address.slice(0, 254)}> is not a plain address`);
  try {
    await recipients.resolveRecipient(address);
    return true;
  } catch (err) {
    // another domain: mail for it leaves through the queue
    if (isAppError(err) && err.code === 'relay_denied') return false;
    throw err;
  }
}

/** The SIZE the client declared in MAIL FROM (RFC 1870), or 0. */
function declaredSize(session: SMTPServerSession): number {
  const from = session.envelope.mailFrom;
  const args = from ? (from.args as Record<string, string> | false) : false;
  const size = args ? Number(args.SIZE) : 0;
  return Number.isFinite(size) && size > 0 ? size : 0;
}
