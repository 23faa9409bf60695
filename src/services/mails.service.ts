/**
 * MailsService: mail written through the API. Drafts with attachments and their sending
 * (/api/mails, the original single-server API), send-at-once (/api/messages/send-email) and the
 * webmail's compose (/api/webmail/messages). Called by api/routes/mails.routes.ts.
 *
 * Every address and header text is validated first (address-validation.ts): a refused request
 * stores and queues nothing. The message is composed with MailComposer (mime-compose.ts) and then
 * either kept as a draft or handed to the one send path, SubmissionService.submit(), which checks
 * the sender, the send limits, stores the Sent copy and queues one outbound row per recipient.
 *
 * A draft is a `submissions` row (status 'draft', its fields in `draft`) plus a copy in the
 * user's Drafts folder stored through the ingest path in the SAME transaction; the attachments'
 * bytes live with that copy. Sending a draft recomposes it from those fields and bytes, submits
 * it in place of the draft row (same id), then removes the Drafts copy (its blob references and
 * quota charge are released). A sent mail cannot be deleted: it cannot be unsent.
 *
 * The webmail edits a draft by replacing it: compose with `replace_draft` (the old draft's Drafts
 * copy) stores the new draft and removes the old one (copy and row) in ONE transaction, or removes
 * it once the message is queued; an upload to a draft recomposes it with the new files and
 * replaces it the same way. `attachment_ids` may name attachments of any message of the caller's
 * mailbox (a forward carries the original's files).
 *
 * Every method needs a caller with a mailbox (403 otherwise). Another user's or tenant's id is a
 * 404, as is a malformed id.
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { AppError, describeError } from '../core/errors.js';
import { isUuid } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import type { Db } from '../db/database.js';
import { usageOf } from '../db/mailboxes.repository.js';
import {
  deleteSubmission,
  draftOfCopy,
  eventsOf,
  findSubmission,
  insertDraft,
  listSubmissions,
  lockDraft,
  mailboxAttachments,
  mailboxOfUser,
  messageInMailbox,
  outboundOf,
  userName,
} from '../db/mails.repository.js';
import { attachmentsOf, deleteMessage, getById } from '../db/messages.repository.js';
import { notifyMailEvents } from '../db/webmail.repository.js';
import type { Attachment, Database, Mailbox, Submission } from '../db/types.js';
import type { Transaction } from 'kysely';
import { parseAddressList, parseRecipients, validateHeaderText, type ParsedAddress, type RecipientFields } from './address-validation.js';
import type { BlobReader } from './blob-reader.service.js';
import type { IngestService } from './ingest.service.js';
import { mailSummary, mailView, type DraftFields, type MailSummary, type MailView } from './mail-views.js';
import { composeMime, type ComposeAttachment } from './mime-compose.js';
import type { Sender, SubmissionService, SubmitResult } from './submission.service.js';

export interface MailsOptions {
  maxMessageBytes: number;
  maxRecipients: number;
  maxAttachments: number;
  maxReceivedHeaders: number;
}

/** A file uploaded with a draft (multer's memory storage). */
export interface UploadedFile {
  originalname: string;
  mimetype: string;
  buffer: Buffer;
}

export interface DraftInput extends RecipientFields {
  from?: string;
  subject?: string;
  text?: string;
  html?: string;
}

export interface SendEmailInput extends RecipientFields {
  subject: string;
  text?: string;
  html?: string;
}

export interface ComposeInput extends RecipientFields {
  subject?: string;
  text?: string;
  html?: string;
  in_reply_to?: string;
  draft?: boolean;
  attachment_ids?: string[];
  /** The message id of a draft's Drafts copy this message replaces. */
  replace_draft?: string;
}

export interface Queued {
  id: string;
  status: 'queued';
  recipients: SubmitResult['recipients'];
}

/** Who is writing: the caller, their mailbox and the name their From: shows. */
interface Writer {
  sender: Sender;
  mailbox: Mailbox;
  name: string;
}

/** A message ready to compose: validated addresses and texts, attachment bytes. */
interface Letter extends DraftFields {
  attachments: ComposeAttachment[];
}

/** A content type we pass on as given (type/subtype, no parameters); anything else is octet-stream. */
const CONTENT_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/i;
/** References kept in a reply (RFC 5322 §3.6.4 lets a client trim the oldest). */
const MAX_REFERENCES = 20;
const MESSAGE_ID = /^<[\x21-\x3d\x3f-\x7e]{1,250}>$/;

export class MailsService {
  /** What the upload middleware enforces before the service sees a file. */
  readonly uploadLimits: { maxFileBytes: number; maxFiles: number; maxRequestBytes: number };

  constructor(
    private readonly db: Db,
    private readonly ingest: IngestService,
    private readonly submission: SubmissionService,
    private readonly blobs: BlobReader,
    private readonly options: MailsOptions,
    private readonly logger: Logger,
  ) {
    // a request larger than the largest message plus form overhead can never become a message
    this.uploadLimits = { maxFileBytes: options.maxMessageBytes, maxFiles: options.maxAttachments, maxRequestBytes: options.maxMessageBytes + 64 * 1024 };
  }

  /** POST /api/mails: a draft with uploaded attachments. */
  async createDraft(actor: Sender, input: DraftInput, files: UploadedFile[], ip: string): Promise<MailView> {
    const writer = await this.writer(actor);
    const from = input.from === undefined || input.from.trim() === '' ? this.ownAddress(writer) : this.oneAddress(input.from);
    if (from.address.toLowerCase() !== writer.mailbox.address) await this.checkDraftSender(writer, from.address);
    const letter = this.letter(writer, { ...input, from }, files.map((f, i) => uploaded(f, i)));
    const id = await this.storeDraft(writer, letter, 'api', ip);
    return this.getMail(actor, id);
  }

  async listMails(actor: Sender, limit: number, before: { at: Date; id: string } | null): Promise<MailSummary[]> {
    await this.writer(actor);
    const rows = await listSubmissions(this.db, actor, limit, before);
    return rows.map(mailSummary);
  }

  async getMail(actor: Sender, id: string): Promise<MailView> {
    await this.writer(actor);
    const submission = await this.findOwn(actor, id);
    const stored = submission.stored_message_id ? await getById(this.db, submission.stored_message_id) : undefined;
    const attachments = stored ? await attachmentsOf(this.db, stored.id) : [];
    const outbound = await outboundOf(this.db, actor.tenantId, submission.id);
    const events = await eventsOf(this.db, actor.tenantId, outbound.map((o) => o.id));
    return mailView(submission, stored ?? null, attachments, outbound, events);
  }

  /** One attachment of the caller's mail, with its bytes. */
  async openAttachment(actor: Sender, id: string, attachmentId: string): Promise<{ attachment: Attachment; content: Readable }> {
    await this.writer(actor);
    const submission = await this.findOwn(actor, id);
    const attachments = submission.stored_message_id ? await attachmentsOf(this.db, submission.stored_message_id) : [];
    const attachment = attachments.find((a) => a.id === attachmentId);
    if (!attachment) throw new AppError('not_found', `no attachment ${attachmentId} on mail ${id}`);
    return { attachment, content: await this.blobs.open(attachment.blob_key) };
  }

  /** POST /api/mails/:id/send: the draft goes to the send path; its Drafts copy is then removed. */
  async sendDraft(actor: Sender, id: string, ip: string): Promise<Queued> {
    const writer = await this.writer(actor);
    const draft = await this.findOwn(actor, id);
    if (draft.status !== 'draft') throw new AppError('conflict', `mail ${id} has already been sent`);
    const fields = draft.draft as DraftFields;
    const stored = draft.stored_message_id ? await attachmentsOf(this.db, draft.stored_message_id) : [];
    if (stored.length < fields.attachment_count) {
      throw new AppError('conflict', `the stored copy of draft ${id} holding its attachments is gone; delete the draft and write it again`);
    }
    const letter: Letter = { ...fields, attachments: await this.readAttachments(stored) };
    const result = await this.submitLetter(writer, letter, draft.source === 'webmail' ? 'webmail' : 'api', ip, draft.id);
    if (draft.stored_message_id) await this.removeDraftCopy(actor, draft.stored_message_id);
    return { id: result.id, status: 'queued', recipients: result.recipients };
  }

  /** DELETE /api/mails/:id: a draft with its Drafts copy; a sent mail is a conflict. */
  async deleteMail(actor: Sender, id: string): Promise<void> {
    await this.writer(actor);
    const found = await this.findOwn(actor, id);
    if (found.status !== 'draft') throw new AppError('conflict', `mail ${id} has been sent and cannot be deleted (it cannot be unsent)`);
    const deleted = await this.db.transaction().execute(async (trx) => {
      const draft = await lockDraft(trx, actor, id);
      if (!draft) return false;
      if (draft.stored_message_id) await deleteMessage(trx, actor.tenantId, draft.stored_message_id);
      await deleteSubmission(trx, draft.id);
      return true;
    });
    if (!deleted) throw new AppError('conflict', `mail ${id} was sent while it was being deleted`);
  }

  /** POST /api/messages/send-email: from the caller's own address, at once. */
  async sendEmail(actor: Sender, input: SendEmailInput, ip: string): Promise<Queued> {
    const writer = await this.writer(actor);
    const letter = this.letter(writer, { ...input, from: this.ownAddress(writer) }, []);
    const result = await this.submitLetter(writer, letter, 'api', ip);
    return { id: result.id, status: 'queued', recipients: result.recipients };
  }

  /** POST /api/webmail/messages: a draft (201) or a message sent at once (202). */
  async compose(actor: Sender, input: ComposeInput, ip: string): Promise<{ draft: MailView } | { queued: Queued }> {
    const writer = await this.writer(actor);
    const replacing = input.replace_draft === undefined ? null : await this.draftByCopy(writer, input.replace_draft);
    const reply = input.in_reply_to === undefined ? null : await this.replyHeaders(writer, input.in_reply_to);
    const attachments = await this.ownAttachments(writer, input.attachment_ids ?? []);
    const letter = this.letter(writer, { ...input, from: this.ownAddress(writer), reply }, attachments);
    if (input.draft) return { draft: await this.getMail(actor, await this.storeDraft(writer, letter, 'webmail', ip, replacing)) };
    const result = await this.submitLetter(writer, letter, 'webmail', ip);
    if (replacing) await this.dropReplacedDraft(writer, replacing);
    return { queued: { id: result.id, status: 'queued', recipients: result.recipients } };
  }

  /**
   * POST /api/webmail/messages/:id/attachments: the draft whose Drafts copy is `copyId`,
   * recomposed with its attachments plus `files`, replaces the old one (copy and row) in one
   * transaction. Returns the new Drafts copy's message id.
   */
  async addAttachmentsToDraft(actor: Sender, copyId: string, files: UploadedFile[], ip: string): Promise<string> {
    const writer = await this.writer(actor);
    const draft = await this.draftByCopy(writer, copyId);
    const fields = draft.draft as DraftFields;
    const stored = await attachmentsOf(this.db, copyId);
    const existing = await this.readAttachments(stored);
    const letter = this.letter(
      writer,
      {
        from: fields.from,
        to: fields.to.map(formatAddress),
        cc: fields.cc.map(formatAddress),
        bcc: fields.bcc.map(formatAddress),
        subject: fields.subject,
        text: fields.text ?? undefined,
        html: fields.html ?? undefined,
        reply: replyOf(fields),
      },
      [...existing, ...files.map((f, i) => uploaded(f, existing.length + i))],
    );
    const id = await this.storeDraft(writer, letter, draft.source === 'webmail' ? 'webmail' : 'api', ip, draft);
    const created = await findSubmission(this.db, actor, id);
    return created!.stored_message_id!;
  }

  // --- the steps ---

  private async writer(actor: Sender): Promise<Writer> {
    const mailbox = await mailboxOfUser(this.db, actor);
    if (!mailbox) {
      throw new AppError('forbidden', 'your account has no mailbox: sending mail and keeping drafts need one (ask an admin to give you an address on one of your domains)');
    }
    return { sender: actor, mailbox, name: (await userName(this.db, actor)) ?? '' };
  }

  private async findOwn(actor: Sender, id: string): Promise<Submission> {
    const found = isUuid(id) ? await findSubmission(this.db, actor, id) : undefined;
    if (!found) throw new AppError('not_found', `no mail ${id}`);
    return found;
  }

  /** The caller's mailbox address with their name; a name unfit for a header line is shown without its control characters. */
  private ownAddress(writer: Writer): ParsedAddress {
    // eslint-disable-next-line no-control-regex
    const name = writer.name.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/gu, ' ').trim();
    return { name, address: writer.mailbox.address };
  }

  private oneAddress(value: string): ParsedAddress {
    const [from] = parseAddressList('from', value, 1);
    return from!;
  }

  /** A draft may be written before its domain is verified; an address the user may never use is refused now. */
  private async checkDraftSender(writer: Writer, address: string): Promise<void> {
    try {
      await this.submission.checkSender(writer.sender, address);
    } catch (err) {
      if (err instanceof AppError && err.code === 'domain_not_verified') return;
      throw err;
    }
  }

  /** Validates every field of a message to be; throws validation_failed naming the first bad one. */
  private letter(
    writer: Writer,
    input: RecipientFields & { from: ParsedAddress; subject?: string; text?: string; html?: string; reply?: { inReplyTo: string; references: string[] } | null },
    attachments: ComposeAttachment[],
  ): Letter {
    const recipients = parseRecipients(input, this.options.maxRecipients);
    if (attachments.length > this.options.maxAttachments) {
      throw new AppError('validation_failed', `too many attachments: at most ${this.options.maxAttachments}`, {
        details: [{ in: 'body', path: 'attachments', message: `at most ${this.options.maxAttachments} attachments` }],
      });
    }
    for (const a of attachments) validateHeaderText('attachments.filename', a.filename);
    validateHeaderText('from', input.from.name);
    return {
      from: input.from,
      to: recipients.to,
      cc: recipients.cc,
      bcc: recipients.bcc,
      subject: validateHeaderText('subject', input.subject ?? ''),
      text: input.text ?? null,
      html: input.html ?? null,
      in_reply_to: input.reply?.inReplyTo ?? null,
      references: input.reply?.references ?? [],
      attachment_count: attachments.length,
      attachments,
    };
  }

  private build(letter: Letter, date = new Date()): Promise<Buffer> {
    const domain = letter.from.address.slice(letter.from.address.lastIndexOf('@') + 1).toLowerCase();
    return composeMime({
      from: letter.from,
      to: letter.to,
      cc: letter.cc,
      subject: letter.subject,
      text: letter.text,
      html: letter.html,
      messageId: `<${randomUUID()}@${domain}>`,
      date,
      inReplyTo: letter.in_reply_to,
      references: letter.references,
      attachments: letter.attachments,
    });
  }

  /** The Drafts copy and the draft row, in one transaction. Returns the draft's id. */
  private async storeDraft(writer: Writer, letter: Letter, source: 'api' | 'webmail', ip: string, replacing: Submission | null = null): Promise<string> {
    const raw = await this.build(letter);
    const usage = await usageOf(this.db, writer.mailbox.id);
    const freed = replacing?.stored_message_id ? Number((await getById(this.db, replacing.stored_message_id))?.size ?? 0) : 0;
    if (usage.used_bytes - freed + raw.length > writer.mailbox.quota_bytes) {
      throw new AppError('quota_exceeded', `mailbox <${writer.mailbox.address}> is full: the draft does not fit in its quota`);
    }
    const { attachments: _bytes, ...fields } = letter;
    let id = '';
    await this.ingest.acceptMessage(
      Readable.from([raw]),
      [{ tenantId: writer.sender.tenantId, mailboxId: writer.mailbox.id, address: writer.mailbox.address, folder: 'drafts', seen: true, draft: true }],
      { mailFrom: letter.from.address, remoteIp: ip || undefined, protocol: 'HTTP', transactionId: randomUUID() },
      {
        maxBytes: this.options.maxMessageBytes,
        maxReceived: this.options.maxReceivedHeaders,
        verify: false,
        record: async (trx, stored) => {
          if (replacing) await this.removeDraft(trx, writer, replacing);
          const row = await insertDraft(trx, {
            tenantId: writer.sender.tenantId,
            userId: writer.sender.userId,
            source,
            mailFrom: letter.from.address,
            subject: letter.subject,
            to: letter.to.map((a) => a.address),
            cc: letter.cc.map((a) => a.address),
            bcc: letter.bcc.map((a) => a.address),
            messageId: stored.parsed.messageId ?? '',
            draft: fields,
            storedMessageId: stored.messageIds[0] ?? null,
            rawBlobKey: stored.rawKey,
            rawSize: stored.size,
          });
          id = row.id;
        },
      },
    );
    return id;
  }

  private async submitLetter(writer: Writer, letter: Letter, source: 'api' | 'webmail', ip: string, draftId?: string): Promise<SubmitResult> {
    const envelope = dedupe([...letter.to, ...letter.cc, ...letter.bcc].map((a) => a.address));
    if (envelope.length === 0) {
      throw new AppError('validation_failed', 'the message has no recipients: give at least one address in to, cc or bcc', {
        details: [{ in: 'body', path: 'to', message: 'at least one recipient is needed' }],
      });
    }
    const raw = await this.build(letter);
    return this.submission.submit({
      sender: writer.sender,
      source,
      mailFrom: letter.from.address,
      recipients: envelope,
      message: Readable.from([raw]),
      display: { to: letter.to.map((a) => a.address), cc: letter.cc.map((a) => a.address), bcc: letter.bcc.map((a) => a.address) },
      draftId,
      remoteIp: ip || undefined,
    });
  }

  /** The sent draft's copy in Drafts goes; a failure leaves a stale copy the user can delete, never a lost mail. */
  private async removeDraftCopy(actor: Sender, messageId: string): Promise<void> {
    try {
      await this.db.transaction().execute((trx) => deleteMessage(trx, actor.tenantId, messageId));
    } catch (err) {
      this.logger.warn({ err: describeError(err), message_id: messageId }, 'the sent draft was queued but its Drafts copy could not be removed');
    }
  }

  private async readAttachments(rows: Attachment[]): Promise<ComposeAttachment[]> {
    const out: ComposeAttachment[] = [];
    for (const a of rows) {
      const stream = await this.blobs.open(a.blob_key);
      out.push({
        filename: a.filename ?? `attachment-${a.position + 1}`,
        contentType: CONTENT_TYPE.test(a.content_type) ? a.content_type : 'application/octet-stream',
        content: Buffer.concat((await stream.toArray()) as Buffer[]),
        disposition: a.disposition,
        contentId: a.content_id,
      });
    }
    return out;
  }

  /** webmail attachment_ids: attachments of any message of the caller's mailbox. */
  private async ownAttachments(writer: Writer, ids: string[]): Promise<ComposeAttachment[]> {
    const bad = ids.find((id) => !isUuid(id));
    if (bad !== undefined) throw new AppError('not_found', `no attachment ${bad} in your mailbox`);
    const rows = await mailboxAttachments(this.db, writer.mailbox.id, ids);
    if (rows.length !== ids.length) {
      const missing = ids.find((id) => !rows.some((r) => r.id === id));
      throw new AppError('not_found', `no attachment ${missing} in your mailbox`);
    }
    return this.readAttachments(rows);
  }

  /** The draft whose Drafts copy is message `copyId`: 404 when it is no message of the caller's, 409 when not a draft's copy. */
  private async draftByCopy(writer: Writer, copyId: string): Promise<Submission> {
    const message = isUuid(copyId) ? await messageInMailbox(this.db, writer.mailbox.id, copyId) : undefined;
    if (!message) throw new AppError('not_found', `no message ${copyId} in your mailbox`);
    const draft = await draftOfCopy(this.db, writer.sender, copyId);
    if (!draft) throw new AppError('conflict', `message ${copyId} is not a draft: only a draft can be replaced or get attachments`);
    return draft;
  }

  /** The replaced draft's copy and row, in the caller's transaction; gone already (sent, deleted) is a conflict. */
  private async removeDraft(trx: Transaction<Database>, writer: Writer, draft: Submission): Promise<void> {
    const locked = await lockDraft(trx, writer.sender, draft.id);
    if (!locked || locked.stored_message_id !== draft.stored_message_id) {
      throw new AppError('conflict', 'the draft being replaced was sent or deleted meanwhile; nothing was saved');
    }
    if (locked.stored_message_id) {
      const copy = await getById(trx, locked.stored_message_id);
      await deleteMessage(trx, writer.sender.tenantId, locked.stored_message_id);
      if (copy) await notifyMailEvents(trx, [{ mailbox_id: copy.mailbox_id, folder_id: copy.folder_id, reason: 'deleted' }]);
    }
    await deleteSubmission(trx, locked.id);
  }

  /** After sending in place of a draft: the old draft goes; a failure leaves it for the user to delete, never a lost mail. */
  private async dropReplacedDraft(writer: Writer, draft: Submission): Promise<void> {
    try {
      await this.db.transaction().execute((trx) => this.removeDraft(trx, writer, draft));
    } catch (err) {
      this.logger.warn({ err: describeError(err), submission_id: draft.id }, 'the message was queued but the draft it replaces could not be removed');
    }
  }

  /** In-Reply-To and References from a message of the caller's mailbox (RFC 5322 §3.6.4). */
  private async replyHeaders(writer: Writer, id: string): Promise<{ inReplyTo: string; references: string[] } | null> {
    const original = isUuid(id) ? await messageInMailbox(this.db, writer.mailbox.id, id) : undefined;
    if (!original) throw new AppError('not_found', `no message ${id} in your mailbox to reply to`);
    if (!original.message_id || !MESSAGE_ID.test(original.message_id)) return null;
    const references = [...original.references_ids.filter((r) => MESSAGE_ID.test(r)), original.message_id].slice(-MAX_REFERENCES);
    return { inReplyTo: original.message_id, references };
  }
}

/** An address as a draft keeps it, written back for the parser (a quoted name keeps its spaces). */
function formatAddress(a: ParsedAddress): string {
  return a.name ? `"${a.name.replace(/["\\]/g, '\\$&')}" <${a.address}>` : a.address;
}

/** A stored draft's reply headers, as its letter had them. */
function replyOf(fields: DraftFields): { inReplyTo: string; references: string[] } | null {
  return fields.in_reply_to ? { inReplyTo: fields.in_reply_to, references: fields.references } : null;
}

function uploaded(file: UploadedFile, index: number): ComposeAttachment {
  const filename = file.originalname.trim() || `attachment-${index + 1}`;
  return {
    filename,
    contentType: CONTENT_TYPE.test(file.mimetype) ? file.mimetype.toLowerCase() : 'application/octet-stream',
    content: file.buffer,
  };
}

function dedupe(addresses: string[]): string[] {
  const seen = new Set<string>();
  return addresses.filter((a) => {
    const key = a.toLowerCase();
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
