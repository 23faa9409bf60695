/**
 * IngestService.acceptMessage(): the one path every message enters by (MX delivery today; local
 * delivery of our own outbound mail, API drafts and Sent copies later). In one streaming pass it
 * checks the bytes (size, line endings, loops), keeps them in memory up to BLOB_INLINE_MAX_BYTES
 * or else stages them in the blob store (blobs/spill-buffer.ts; attachments the same), parses
 * them and, for mail from outside, verifies SPF/DKIM/DMARC/ARC. Then one transaction locks the
 * blob rows (writing the small blobs' bytes into them), publishes the staged blobs, writes one
 * message row per recipient with its attachments and charges each mailbox's quota.
 *
 * Guarantee: when acceptMessage resolves, the raw message is durable, in its database row or in
 * the blob store, and the transaction that records it has committed; only then may SMTP answer
 * 250. When it rejects, nothing is visible (staged bytes are discarded; a crash leaves only
 * orphans for the collector).
 *
 * The stored blob is the message exactly as received; the header fields we add (Received,
 * Authentication-Results, Message-ID when missing) are kept per copy in `trace_headers` and put
 * in front of the blob when the raw message is read back.
 */
import { randomUUID } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import { blobKey, type BlobStore } from '../blobs/blob-store.js';
import { spillToStore, type SpooledBlob } from '../blobs/spill-buffer.js';
import { AppError, describeError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Db } from '../db/database.js';
import { addReferences, type BlobReference } from '../db/blobs.repository.js';
import { recordDelivery, type DeliveredAttachment, type DeliveredCopy, type DeliveredMessage } from '../db/ingest.repository.js';
import type { Database, SpecialUse } from '../db/types.js';
import type { Transaction } from 'kysely';
import type { InboundAuthService, AuthSummary } from './inbound-auth.service.js';
import { MessageInspector } from './message-inspector.js';
import { parseMessage, type ParsedMessage } from './message-parser.js';
import { receivedHeader, type Protocol } from './trace-headers.js';

export interface IngestRecipient {
  tenantId: string;
  mailboxId: string;
  address: string;
  folder?: SpecialUse;
  seen?: boolean;
  draft?: boolean;
}

export interface IngestEnvelope {
  mailFrom: string | null;
  remoteIp?: string;
  helo?: string;
  clientHostname?: string;
  protocol: Protocol;
  /** Our id for this transaction, shown in the Received header. */
  transactionId: string;
}

/** What a caller may write in the ingest's own transaction, once the message is recorded. */
export interface StoredMessage {
  rawKey: string;
  sha256: string;
  size: number;
  /** The new message ids, one per recipient copy. */
  messageIds: string[];
  parsed: ParsedMessage;
}

export interface IngestOptions {
  maxBytes: number;
  /**
   * Runs inside the transaction that records the message, before COMMIT (the send path writes
   * its submission and queue rows here, so the Sent copy and the queue commit together). With
   * it, `recipients` may be empty: the raw blob is then only kept for what this writes.
   */
  record?: (trx: Transaction<Database>, stored: StoredMessage) => Promise<void>;
  /** Verify SPF/DKIM/DMARC/ARC (mail from outside); off for our own copies. */
  verify: boolean;
  /** Reject as a loop when the message already has this many Received fields. */
  maxReceived: number;
}

export interface IngestResult {
  messageIds: string[];
  size: number;
  sha256: string;
  rawKey: string;
  auth: AuthSummary | null;
}

const AUTH_TEMPERROR: AuthSummary = { spf: 'temperror', dkim: 'temperror', dmarc: 'temperror', arc: 'temperror' };

export class IngestService {
  constructor(
    private readonly db: Db,
    private readonly blobs: BlobStore,
    private readonly auth: InboundAuthService,
    private readonly hostname: string,
    /** Blobs up to this size are kept in their database row (0 = all in the blob store). */
    private readonly inlineMaxBytes: number,
    private readonly logger: Logger,
  ) {}

  async acceptMessage(source: Readable, recipients: IngestRecipient[], envelope: IngestEnvelope, options: IngestOptions): Promise<IngestResult> {
    if (recipients.length === 0 && !options.record) throw new AppError('bad_address', 'no recipients');
    const inspector = new MessageInspector(options.maxBytes);
    const toBlob = new PassThrough();
    const toParser = new PassThrough();
    const toAuth = options.verify ? new PassThrough() : null;
    const outputs = [toBlob, toParser, ...(toAuth ? [toAuth] : [])];
    for (const out of outputs) inspector.pipe(out);
    const sourceDone = new Promise<void>((resolve, reject) => {
      // a client that goes away mid-DATA destroys the source: fail every consumer with it
      const fail = (err: unknown): void => {
        const error = err instanceof Error ? err : new Error('message stream closed early');
        for (const out of outputs) out.destroy(error);
        reject(error);
      };
      source.once('error', fail);
      source.once('close', () => {
        if (!source.readableEnded) fail(new Error('message stream closed before its end'));
      });
      inspector.once('error', fail);
      inspector.once('end', resolve);
    });
    source.pipe(inspector);

    const [sourceResult, rawResult, parseResult, authResult] = await Promise.allSettled([
      sourceDone,
      drainAfter(toBlob, spillToStore(toBlob, this.blobs, this.inlineMaxBytes)),
      drainAfter(toParser, parseMessage(toParser, this.blobs, this.inlineMaxBytes)),
      toAuth ? drainAfter(toAuth, this.auth.verify(toAuth, authContext(envelope))) : Promise.resolve(null),
    ]);
    const spooled: SpooledBlob[] = [];
    if (rawResult.status === 'fulfilled') spooled.push(rawResult.value);
    if (parseResult.status === 'fulfilled') spooled.push(...parseResult.value.attachments.map((a) => a.blob));
    try {
      if (sourceResult.status === 'rejected') throw sourceResult.reason;
      this.checkInspection(inspector, options);
      if (rawResult.status === 'rejected') throw rawResult.reason;
      const raw = rawResult.value;
      const parsed = parseResult.status === 'fulfilled' ? parseResult.value : this.unparsed(parseResult.reason, envelope);
      let auth: { headers: string; summary: AuthSummary } | null = null;
      if (authResult.status === 'fulfilled') {
        auth = authResult.value;
      } else {
        this.logger.warn({ tid: envelope.transactionId, err: describeError(authResult.reason) }, 'inbound verification failed');
        auth = { headers: `Authentication-Results: ${this.hostname}; auth=temperror\r\n`, summary: AUTH_TEMPERROR };
      }
      // the caller logs the stored message (one line per message, with its connection or request id)
      return await this.store(raw, parsed, recipients, envelope, auth, options.record);
    } catch (err) {
      await Promise.all(spooled.map((s) => s.discard().catch(() => undefined)));
      throw err;
    }
  }

  private checkInspection(inspector: MessageInspector, options: IngestOptions): void {
    const report = inspector.report();
    if (report.tooLarge) {
      throw new AppError('message_too_large', `message exceeds the maximum size of ${options.maxBytes} bytes`);
    }
    if (report.bareLineEnding) {
      throw new AppError('bare_line_ending', `message contains a bare ${report.bareLineEnding}; lines must end with CRLF (RFC 5321 section 2.3.8)`);
    }
    if (report.receivedCount >= options.maxReceived) {
      throw new AppError('mail_loop', `too many Received headers (${report.receivedCount}): mail loop detected`);
    }
  }

  /** A message mailparser could not read is still stored: the raw bytes are what matter. */
  private unparsed(reason: unknown, envelope: IngestEnvelope): ParsedMessage {
    this.logger.warn({ tid: envelope.transactionId, err: describeError(reason) }, 'message could not be parsed; storing it raw');
    return {
      messageId: null,
      inReplyTo: null,
      references: [],
      subject: '',
      from: null,
      to: [],
      cc: [],
      date: null,
      text: null,
      html: null,
      snippet: '',
      attachments: [],
    };
  }

  private async store(
    raw: SpooledBlob,
    parsed: ParsedMessage,
    recipients: IngestRecipient[],
    envelope: IngestEnvelope,
    auth: { headers: string; summary: AuthSummary } | null,
    record: IngestOptions['record'],
  ): Promise<IngestResult> {
    const rawKey = blobKey('raw', raw.sha256);
    const generatedId = parsed.messageId ? null : `<${randomUUID()}@${this.hostname}>`;
    const attachments = attachmentRows(parsed);
    const blobs: [string, SpooledBlob][] = [[rawKey, raw], ...parsed.attachments.map((a, i): [string, SpooledBlob] => [attachments[i]!.blobKey, a.blob])];
    const references = blobs.map(([key, b]): BlobReference => ({ key, sha256: b.sha256, size: b.size, count: recipients.length, data: b.inline }));
    const message = messageFields(parsed, attachments, envelope, rawKey, raw, auth?.summary ?? null, generatedId);
    const copies = this.copiesFor(recipients, raw.size, envelope, auth?.headers ?? '', generatedId);

    let messageIds: string[];
    if (blobs.every(([, b]) => !b.staged) && !record) {
      // every byte goes into the rows: one statement, its own transaction, durable when it returns
      ({ messageIds } = await recordDelivery(this.db, references, message, copies, attachments));
    } else {
      messageIds = await this.db.transaction().execute(async (trx) => {
        const recorded =
          copies.length > 0
            ? await recordDelivery(trx, references, message, copies, attachments)
            : { messageIds: [], inRow: await addReferences(trx, references) };
        // the blob rows stay locked until COMMIT: publishing cannot race the collector deleting
        // the same key. Bytes already in a row (inline now or earlier) need no file.
        for (const [key, b] of blobs) {
          if (!b.staged) continue;
          if (recorded.inRow.has(key)) await b.discard();
          else await b.publish(key);
        }
        if (record) await record(trx, { rawKey, sha256: raw.sha256, size: raw.size, messageIds: recorded.messageIds, parsed });
        return recorded.messageIds;
      });
    }
    return { messageIds, size: raw.size, sha256: raw.sha256, rawKey, auth: auth?.summary ?? null };
  }

  /** One copy per recipient, each with its own trace header fields (and so its own size). */
  private copiesFor(recipients: IngestRecipient[], rawSize: number, envelope: IngestEnvelope, authHeaders: string, generatedId: string | null): DeliveredCopy[] {
    const now = new Date();
    return recipients.map((r) => {
      const trace =
        receivedHeader({ ...envelope, hostname: this.hostname, recipient: recipients.length === 1 ? r.address : null, date: now }) +
        authHeaders +
        (generatedId ? `Message-ID: ${generatedId}\r\n` : '');
      return {
        tenantId: r.tenantId,
        mailboxId: r.mailboxId,
        folder: r.folder ?? 'inbox',
        envelopeTo: r.address,
        size: rawSize + Buffer.byteLength(trace),
        traceHeaders: trace,
        seen: r.seen ?? false,
        draft: r.draft ?? false,
      };
    });
  }
}

function attachmentRows(parsed: ParsedMessage): DeliveredAttachment[] {
  return parsed.attachments.map((a, position) => ({
    position,
    filename: a.filename,
    contentType: a.contentType,
    disposition: a.disposition,
    contentId: a.contentId,
    size: a.blob.size,
    sha256: a.blob.sha256,
    blobKey: blobKey('att', a.blob.sha256),
  }));
}

/** What every copy of the message shares. */
function messageFields(
  parsed: ParsedMessage,
  attachments: DeliveredAttachment[],
  envelope: IngestEnvelope,
  rawKey: string,
  raw: SpooledBlob,
  authSummary: AuthSummary | null,
  generatedId: string | null,
): DeliveredMessage {
  return {
    messageId: parsed.messageId ?? generatedId,
    inReplyTo: parsed.inReplyTo,
    references: parsed.references,
    subject: parsed.subject,
    fromName: parsed.from?.name ?? '',
    fromAddress: parsed.from?.address ?? '',
    to: parsed.to,
    cc: parsed.cc,
    sentAt: parsed.date,
    snippet: parsed.snippet,
    text: parsed.text,
    html: parsed.html,
    hasAttachments: attachments.some((a) => a.disposition !== 'inline' || !a.contentId),
    envelopeFrom: envelope.mailFrom,
    remoteIp: envelope.remoteIp ?? null,
    rawBlobKey: rawKey,
    rawSha256: raw.sha256,
    rawSize: raw.size,
    authSummary,
  };
}

/**
 * Runs one consumer of the message stream. Once it is done (or failed) its input keeps flowing so
 * the other consumers never stall; if its input fails first, it fails with it instead of waiting
 * for an end that will not come.
 */
async function drainAfter<T>(input: PassThrough, work: Promise<T>): Promise<T> {
  const inputFailed = new Promise<never>((_resolve, reject) => {
    input.once('error', reject);
    input.once('close', () => {
      if (!input.readableEnded) reject(new Error('message stream closed before its end'));
    });
  });
  work.catch(() => undefined); // a failure after the input failed is already reported
  try {
    return await Promise.race([work, inputFailed]);
  } finally {
    input.resume();
  }
}

function authContext(envelope: IngestEnvelope): { ip: string; helo: string; sender: string } {
  return { ip: envelope.remoteIp ?? '127.0.0.1', helo: envelope.helo ?? '', sender: envelope.mailFrom ?? '' };
}
