/**
 * Queries on `messages` and `attachments`. The full-text vector is built here, in SQL, from the
 * subject (weight A), the addresses (B) and the body text (D), with the `simple` configuration so
 * every language is indexed the same way.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import { MAX_INDEXED_TEXT_CHARS } from '../core/limits.js';
import type { AddressJson, Attachment, Database, Message } from './types.js';

type Executor = Kysely<Database> | Transaction<Database>;

export interface NewMessageRow {
  tenantId: string;
  mailboxId: string;
  folderId: string;
  messageId: string | null;
  inReplyTo: string | null;
  references: string[];
  subject: string;
  fromName: string;
  fromAddress: string;
  to: AddressJson[];
  cc: AddressJson[];
  sentAt: Date | null;
  size: number;
  snippet: string;
  text: string | null;
  html: string | null;
  hasAttachments: boolean;
  seen: boolean;
  draft: boolean;
  envelopeFrom: string | null;
  envelopeTo: string | null;
  remoteIp: string | null;
  rawBlobKey: string;
  rawSha256: string;
  rawSize: number;
  traceHeaders: string;
  authSummary: unknown;
}

export interface NewAttachmentRow {
  position: number;
  filename: string | null;
  contentType: string;
  disposition: string | null;
  contentId: string | null;
  size: number;
  sha256: string;
  blobKey: string;
}

export async function insertMessage(trx: Transaction<Database>, m: NewMessageRow, attachments: NewAttachmentRow[]): Promise<string> {
  const addressText = [m.fromName, m.fromAddress, ...m.to.flatMap((a) => [a.name, a.address]), ...m.cc.flatMap((a) => [a.name, a.address])]
    .join(' ')
    .replace(/[@.]/g, ' ');
  const bodyText = (m.text ?? m.snippet).slice(0, MAX_INDEXED_TEXT_CHARS);
  const row = await trx
    .insertInto('messages')
    .values({
      tenant_id: m.tenantId,
      mailbox_id: m.mailboxId,
      folder_id: m.folderId,
      message_id: m.messageId,
      in_reply_to: m.inReplyTo,
      references_ids: m.references,
      subject: m.subject,
      from_name: m.fromName,
      from_address: m.fromAddress,
      to_addresses: JSON.stringify(m.to),
      cc_addresses: JSON.stringify(m.cc),
      sent_at: m.sentAt,
      size: m.size,
      snippet: m.snippet,
      text_body: m.text,
      html_body: m.html,
      has_attachments: m.hasAttachments,
      seen: m.seen,
      draft: m.draft,
      envelope_from: m.envelopeFrom,
      envelope_to: m.envelopeTo,
      remote_ip: m.remoteIp,
      raw_blob_key: m.rawBlobKey,
      raw_sha256: m.rawSha256,
      raw_size: m.rawSize,
      trace_headers: m.traceHeaders,
      auth_summary: m.authSummary === null ? null : JSON.stringify(m.authSummary),
      search: sql`setweight(to_tsvector('simple', ${m.subject}), 'A')
        || setweight(to_tsvector('simple', ${`${m.fromAddress} ${addressText}`}), 'B')
        || setweight(to_tsvector('simple', ${bodyText}), 'D')`,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  if (attachments.length > 0) {
    await trx
      .insertInto('attachments')
      .values(
        attachments.map((a) => ({
          tenant_id: m.tenantId,
          message_id: row.id,
          position: a.position,
          filename: a.filename,
          content_type: a.contentType,
          disposition: a.disposition,
          content_id: a.contentId,
          size: a.size,
          sha256: a.sha256,
          blob_key: a.blobKey,
        })),
      )
      .execute();
  }
  return row.id;
}

export type MessageSummary = Pick<Message, 'id' | 'received_at' | 'from_name' | 'from_address' | 'subject' | 'size' | 'seen' | 'has_attachments'>;

/** Newest first, for the CLI; the API adds cursors and search. */
export async function listByMailbox(db: Executor, mailboxId: string, limit: number): Promise<MessageSummary[]> {
  return db
    .selectFrom('messages')
    .select(['id', 'received_at', 'from_name', 'from_address', 'subject', 'size', 'seen', 'has_attachments'])
    .where('mailbox_id', '=', mailboxId)
    .orderBy('received_at', 'desc')
    .orderBy('id', 'desc')
    .limit(limit)
    .execute();
}

export async function getById(db: Executor, id: string): Promise<Message | undefined> {
  return db.selectFrom('messages').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function attachmentsOf(db: Executor, messageId: string): Promise<Attachment[]> {
  return db.selectFrom('attachments').selectAll().where('message_id', '=', messageId).orderBy('position').execute();
}
