/**
 * onData: hands the message stream to the ingest path and answers 250 only once it resolved,
 * that is after the blob is durable and the transaction committed. The stream is always read to
 * its end (smtp-server sends the reply only then); a message over the size limit is answered
 * 552 5.3.4 with nothing stored.
 */
import type { SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import { AppError, isAppError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { IngestService } from '../services/ingest.service.js';
import type { Sender, SubmissionService } from '../services/submission.service.js';
import { sessionSender } from './on-auth.js';
import type { Protocol } from '../services/trace-headers.js';
import type { RecipientMap } from './on-rcpt-to.js';
import type { SessionRegistry } from './session-registry.js';

export interface OnDataOptions {
  maxBytes: number;
  maxReceived: number;
  verify: boolean;
}

const PROTOCOLS: ReadonlySet<string> = new Set(['SMTP', 'ESMTP', 'ESMTPS', 'ESMTPA', 'ESMTPSA']);

export function createOnData(
  ingest: IngestService,
  submission: SubmissionService,
  resolved: RecipientMap,
  registry: SessionRegistry,
  options: OnDataOptions,
  logger: Logger,
) {
  return async (stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> => {
    const tid = `${session.id}.${session.transaction}`;
    const sender = sessionSender(session);
    if (sender) return submitData(submission, sender, stream, session, tid, options, registry, logger);
    const recipients = session.envelope.rcptTo.map((a) => resolved.get(a));
    try {
      if (recipients.some((r) => r === undefined)) throw new AppError('internal', 'recipient state lost');
      const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : null;
      const protocol = PROTOCOLS.has(session.transmissionType ?? '') ? (session.transmissionType as Protocol) : 'ESMTP';
      // alice@ and alice+news@ are one mailbox: it gets one copy
      const mailboxes = [...new Map(recipients.map((r) => [r!.mailboxId, r!])).values()];
      const result = await ingest.acceptMessage(
        stream,
        mailboxes.map((r) => ({ tenantId: r.tenantId, mailboxId: r.mailboxId, address: r.address })),
        {
          mailFrom,
          remoteIp: session.remoteAddress,
          helo: session.hostNameAppearsAs,
          clientHostname: session.clientHostname,
          protocol,
          transactionId: tid,
        },
        { maxBytes: options.maxBytes, maxReceived: options.maxReceived, verify: options.verify },
      );
      if (stream.sizeExceeded) throw new AppError('message_too_large', `message exceeds the maximum size of ${options.maxBytes} bytes`);
      logger.info(
        { event: 'smtp.message.accepted', cid: session.id, tid, size: result.size, rcpt: recipients.length, copies: result.messageIds.length, sha256: result.sha256 },
        'message accepted',
      );
      return `2.0.0 Ok: stored as ${tid}`;
    } catch (err) {
      if (isAppError(err) && err.kind === 'permanent') {
        logger.info({ event: 'smtp.data.rejected', cid: session.id, tid, code: err.code }, 'message rejected');
      }
      throw err;
    } finally {
      // whatever happened, read the rest so smtp-server can send the reply
      stream.resume();
      registry.afterTransaction(session.id);
    }
  };
}

/** A logged-in user's message: the send path (services/submission.service.ts). */
async function submitData(
  submission: SubmissionService,
  sender: Sender,
  stream: SMTPServerDataStream,
  session: SMTPServerSession,
  tid: string,
  options: OnDataOptions,
  registry: SessionRegistry,
  logger: Logger,
): Promise<string> {
  try {
    const protocol = PROTOCOLS.has(session.transmissionType ?? '') ? (session.transmissionType as Protocol) : 'ESMTPSA';
    const result = await submission.submit({
      sender,
      source: 'smtp',
      mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
      recipients: session.envelope.rcptTo.map((a) => a.address),
      message: stream,
      remoteIp: session.remoteAddress,
      helo: session.hostNameAppearsAs,
      protocol,
      transactionId: tid,
    });
    if (stream.sizeExceeded) throw new AppError('message_too_large', `message exceeds the maximum size of ${options.maxBytes} bytes`);
    logger.info({ event: 'smtp.message.submitted', cid: session.id, tid, submission: result.id, rcpt: result.recipients.length }, 'message submitted');
    return `2.0.0 Ok: queued as ${result.id}`;
  } catch (err) {
    if (isAppError(err) && err.kind === 'permanent') {
      logger.info({ event: 'smtp.data.rejected', cid: session.id, tid, code: err.code }, 'submitted message rejected');
    }
    throw err;
  } finally {
    stream.resume();
    registry.afterTransaction(session.id);
  }
}
