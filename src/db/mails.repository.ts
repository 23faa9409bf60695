/**
 * Queries behind /api/mails and the API compose routes (services/mails.service.ts): a user's
 * submissions (drafts and sent mail) with their per-recipient queue rows and delivery events,
 * the caller's mailbox, and the stored messages and attachments a draft or a reply refers to.
 * Every query filters by tenant and, for submissions, by the owning user: another user's or
 * tenant's id is simply not found.
 */
import type { Kysely, Transaction } from 'kysely';
import { newestFirst, type KeysetPosition } from './keyset.js';
import type { Attachment, Database, DeliveryEvent, Mailbox, Message, Outbound, Submission } from './types.js';

type Executor = Kysely<Database> | Transaction<Database>;

export interface Owner {
  tenantId: string;
  userId: string;
}

/** The user's mailbox (the oldest, when there are several); undefined for a user without one. */
export async function mailboxOfUser(db: Executor, owner: Owner): Promise<Mailbox | undefined> {
  return db
    .selectFrom('mailboxes')
    .selectAll()
    .where('tenant_id', '=', owner.tenantId)
    .where('user_id', '=', owner.userId)
    .orderBy('created_at')
    .orderBy('id')
    .limit(1)
    .executeTakeFirst();
}

export async function userName(db: Executor, owner: Owner): Promise<string | null> {
  const row = await db.selectFrom('users').select('name').where('tenant_id', '=', owner.tenantId).where('id', '=', owner.userId).executeTakeFirst();
  return row?.name ?? null;
}

export async function insertDraft(
  trx: Transaction<Database>,
  values: Owner & {
    source: 'api' | 'webmail';
    mailFrom: string;
    subject: string;
    to: string[];
    cc: string[];
    bcc: string[];
    messageId: string;
    draft: unknown;
    storedMessageId: string | null;
    rawBlobKey: string;
    rawSize: number;
  },
): Promise<Submission> {
  return trx
    .insertInto('submissions')
    .values({
      tenant_id: values.tenantId,
      user_id: values.userId,
      source: values.source,
      status: 'draft',
      mail_from: values.mailFrom,
      from_address: values.mailFrom,
      subject: values.subject,
      to_addresses: JSON.stringify(values.to),
      cc_addresses: JSON.stringify(values.cc),
      bcc_addresses: JSON.stringify(values.bcc),
      message_id: values.messageId,
      draft: JSON.stringify(values.draft),
      stored_message_id: values.storedMessageId,
      // raw_blob_key stays null: the draft's bytes are held by its Drafts copy, and a key here
      // (a foreign key without a reference count) would pin a blob row the collector may remove
      raw_size: values.rawSize,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function findSubmission(db: Executor, owner: Owner, id: string): Promise<Submission | undefined> {
  return db
    .selectFrom('submissions')
    .selectAll()
    .where('tenant_id', '=', owner.tenantId)
    .where('user_id', '=', owner.userId)
    .where('id', '=', id)
    .executeTakeFirst();
}

/** Locks a draft for deletion; undefined when it is not (or no longer) the owner's draft. */
export async function lockDraft(trx: Transaction<Database>, owner: Owner, id: string): Promise<Submission | undefined> {
  return trx
    .selectFrom('submissions')
    .selectAll()
    .where('tenant_id', '=', owner.tenantId)
    .where('user_id', '=', owner.userId)
    .where('id', '=', id)
    .where('status', '=', 'draft')
    .forUpdate()
    .executeTakeFirst();
}

export async function deleteSubmission(trx: Transaction<Database>, id: string): Promise<void> {
  await trx.deleteFrom('submissions').where('id', '=', id).execute();
}

/** A page of the user's submissions, newest first; limit + 1 rows (see api/pagination.ts). */
export async function listSubmissions(db: Executor, owner: Owner, limit: number, before: KeysetPosition | null): Promise<Submission[]> {
  return newestFirst(
    db.selectFrom('submissions').selectAll().where('tenant_id', '=', owner.tenantId).where('user_id', '=', owner.userId),
    before,
    limit,
  ).execute();
}

export async function outboundOf(db: Executor, tenantId: string, submissionId: string): Promise<Outbound[]> {
  return db
    .selectFrom('outbound')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('submission_id', '=', submissionId)
    .orderBy('created_at')
    .orderBy('rcpt_to')
    .execute();
}

export async function eventsOf(db: Executor, tenantId: string, outboundIds: string[]): Promise<DeliveryEvent[]> {
  if (outboundIds.length === 0) return [];
  return db
    .selectFrom('delivery_events')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('outbound_id', 'in', outboundIds)
    .orderBy('occurred_at')
    .orderBy('id')
    .execute();
}

/** A message of the mailbox, or undefined. */
export async function messageInMailbox(db: Executor, mailboxId: string, id: string): Promise<Message | undefined> {
  return db.selectFrom('messages').selectAll().where('mailbox_id', '=', mailboxId).where('id', '=', id).executeTakeFirst();
}

/** Attachments by id of any message of the mailbox, in the order of `ids`; missing ones are left out. */
export async function mailboxAttachments(db: Executor, mailboxId: string, ids: string[]): Promise<Attachment[]> {
  if (ids.length === 0) return [];
  const rows = await db
    .selectFrom('attachments')
    .innerJoin('messages', 'messages.id', 'attachments.message_id')
    .selectAll('attachments')
    .where('messages.mailbox_id', '=', mailboxId)
    .where('attachments.id', 'in', ids)
    .execute();
  const byId = new Map(rows.map((r) => [r.id, r]));
  return ids.flatMap((id) => byId.get(id) ?? []);
}

/** The owner's draft whose Drafts copy is message `messageId`, or undefined. */
export async function draftOfCopy(db: Executor, owner: Owner, messageId: string): Promise<Submission | undefined> {
  return db
    .selectFrom('submissions')
    .selectAll()
    .where('tenant_id', '=', owner.tenantId)
    .where('user_id', '=', owner.userId)
    .where('stored_message_id', '=', messageId)
    .where('status', '=', 'draft')
    .executeTakeFirst();
}
