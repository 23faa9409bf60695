/**
 * Queries on `messages` and `attachments`. Messages are written by the ingest path's one
 * statement, ingest.repository.ts recordDelivery(), and removed by deleteMessage(), which
 * releases what recordDelivery took: the blob references and the quota charge.
 */
import type { Kysely, Transaction } from 'kysely';
import { removeReferences } from './blobs.repository.js';
import { charge } from './mailboxes.repository.js';
import type { Attachment, Database, Message } from './types.js';

type Executor = Kysely<Database> | Transaction<Database>;

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

/**
 * Deletes one stored message of a tenant in the caller's transaction: drops the blob references
 * of its raw bytes and attachments (the collector removes blobs nobody references any more) and
 * un-charges its mailbox's quota with a negative ledger row (migration 0002). Returns false when
 * there is no such message (already gone). The row is locked first, so two deletions of the same
 * message cannot both release its references.
 */
export async function deleteMessage(trx: Transaction<Database>, tenantId: string, messageId: string): Promise<boolean> {
  const message = await trx
    .selectFrom('messages')
    .select(['id', 'mailbox_id', 'size', 'raw_blob_key'])
    .where('tenant_id', '=', tenantId)
    .where('id', '=', messageId)
    .forUpdate()
    .executeTakeFirst();
  if (!message) return false;
  const attachments = await trx.selectFrom('attachments').select('blob_key').where('message_id', '=', message.id).execute();
  await trx.deleteFrom('messages').where('id', '=', message.id).execute();
  await removeReferences(trx, [message.raw_blob_key, ...attachments.map((a) => a.blob_key)]);
  await charge(trx, [{ mailboxId: message.mailbox_id, bytes: -Number(message.size), messages: -1 }]);
  return true;
}
