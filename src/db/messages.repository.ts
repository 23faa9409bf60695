/**
 * Queries on `messages` and `attachments` for reading. Messages are written by the ingest path's
 * one statement, ingest.repository.ts recordDelivery().
 */
import type { Kysely, Transaction } from 'kysely';
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
