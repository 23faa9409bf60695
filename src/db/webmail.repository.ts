/**
 * Queries behind the webmail API (services/webmail.service.ts): a mailbox's folders with their
 * counts, one page of a folder or of a search, flag changes and moves, emptying a folder for good,
 * and the NOTIFY that tells every API process about a change (services/mail-events.ts).
 *
 * Every query is bounded by the caller's mailbox id (and, for lists, a folder id first), so
 * another mailbox's rows are never read, and lists walk messages_folder_list_idx
 * (folder_id, received_at DESC, id DESC) newest first with keyset pagination (keyset.ts); a
 * search across folders walks messages_mailbox_list_idx (mailbox_id, received_at DESC, id DESC).
 */
import { sql, type Kysely, type RawBuilder, type Transaction } from 'kysely';
import type { MailCondition } from '../services/mail-search.js';
import { removeReferences } from './blobs.repository.js';
import { olderThan, type KeysetPosition } from './keyset.js';
import { charge } from './mailboxes.repository.js';
import type { Database, Folder, Message } from './types.js';

type Executor = Kysely<Database> | Transaction<Database>;

export const MAIL_EVENTS_CHANNEL = 'mail_events';

export interface MailEventPayload {
  mailbox_id: string;
  folder_id: string;
  reason: 'new' | 'changed' | 'deleted';
}

export interface FolderCounts extends Folder {
  total: number;
  unread: number;
}

/** The list columns: everything but the bodies and the search vector. */
export type MessageRow = Pick<
  Message,
  | 'id'
  | 'folder_id'
  | 'from_name'
  | 'from_address'
  | 'to_addresses'
  | 'cc_addresses'
  | 'subject'
  | 'snippet'
  | 'received_at'
  | 'sent_at'
  | 'size'
  | 'seen'
  | 'flagged'
  | 'answered'
  | 'draft'
  | 'has_attachments'
>;

const LIST_COLUMNS = [
  'id',
  'folder_id',
  'from_name',
  'from_address',
  'to_addresses',
  'cc_addresses',
  'subject',
  'snippet',
  'received_at',
  'sent_at',
  'size',
  'seen',
  'flagged',
  'answered',
  'draft',
  'has_attachments',
] as const;

/**
 * The folders of a mailbox with total and unread counts, in one statement: each count is an
 * index-only walk of one folder (messages_folder_list_idx, messages_unread_idx), which stays
 * cheap with 100,000 messages where grouping the mailbox's rows would read them all.
 */
export async function foldersWithCounts(db: Executor, mailboxId: string): Promise<FolderCounts[]> {
  return db
    .selectFrom('folders as f')
    .selectAll('f')
    .select([
      sql<number>`(SELECT count(*) FROM messages m WHERE m.folder_id = f.id)::int`.as('total'),
      sql<number>`(SELECT count(*) FROM messages m WHERE m.folder_id = f.id AND NOT m.seen)::int`.as('unread'),
    ])
    .where('f.mailbox_id', '=', mailboxId)
    .execute();
}

/**
 * The folders of a user's mailbox (the one mailboxOfUser picks: the oldest) in one round trip, for
 * the message list, which needs only the mailbox id and its folders; [] when there is no mailbox.
 */
export async function foldersOfUser(db: Executor, owner: { tenantId: string; userId: string }): Promise<Folder[]> {
  return db
    .selectFrom('folders')
    .selectAll()
    .where('mailbox_id', '=', (eb) =>
      eb.selectFrom('mailboxes').select('id').where('tenant_id', '=', owner.tenantId).where('user_id', '=', owner.userId).orderBy('created_at').orderBy('id').limit(1),
    )
    .execute();
}

export async function foldersOf(db: Executor, mailboxId: string): Promise<Folder[]> {
  return db.selectFrom('folders').selectAll().where('mailbox_id', '=', mailboxId).execute();
}

export async function insertFolder(db: Executor, values: { tenantId: string; mailboxId: string; name: string }): Promise<Folder> {
  return db.insertInto('folders').values({ tenant_id: values.tenantId, mailbox_id: values.mailboxId, name: values.name }).returningAll().executeTakeFirstOrThrow();
}

/** Locks a folder so no message moves into it while it is checked and deleted. */
export async function lockFolder(trx: Transaction<Database>, mailboxId: string, id: string): Promise<Folder | undefined> {
  return trx.selectFrom('folders').selectAll().where('mailbox_id', '=', mailboxId).where('id', '=', id).forUpdate().executeTakeFirst();
}

export async function countInFolder(db: Executor, folderId: string): Promise<number> {
  const row = await db.selectFrom('messages').select(sql<number>`count(*)::int`.as('n')).where('folder_id', '=', folderId).executeTakeFirstOrThrow();
  return row.n;
}

export async function deleteFolder(trx: Transaction<Database>, id: string): Promise<void> {
  await trx.deleteFrom('folders').where('id', '=', id).execute();
}

export interface MessageListQuery {
  mailboxId: string;
  /** Every one of these must be the message's folder (more than one distinct id matches nothing). */
  folderIds: string[];
  /** Folders left out (Trash and Junk of a search across folders). */
  excludeFolderIds: string[];
  conditions: Exclude<MailCondition, { kind: 'in' }>[];
  before: KeysetPosition | null;
  limit: number;
}

/** One page, newest first (received_at DESC, id DESC); limit + 1 rows (api/pagination.ts page()). */
export async function listMessages(db: Executor, q: MessageListQuery): Promise<MessageRow[]> {
  let query = db.selectFrom('messages').select(LIST_COLUMNS).where('mailbox_id', '=', q.mailboxId);
  for (const folderId of q.folderIds) query = query.where('folder_id', '=', folderId);
  if (q.excludeFolderIds.length > 0) query = query.where('folder_id', 'not in', q.excludeFolderIds);
  for (const c of q.conditions) query = query.where(conditionSql(c));
  if (q.before) query = query.where(olderThan('received_at', q.before));
  return query.orderBy('received_at', 'desc').orderBy('id', 'desc').limit(q.limit + 1).execute();
}

function conditionSql(c: Exclude<MailCondition, { kind: 'in' }>): RawBuilder<boolean> {
  switch (c.kind) {
    case 'from':
      return sql<boolean>`(from_name ILIKE ${likeContains(c.value)} OR from_address ILIKE ${likeContains(c.value)})`;
    case 'to':
      return addressesContain(sql`to_addresses || cc_addresses`, c.value);
    case 'cc':
      return addressesContain(sql`cc_addresses`, c.value);
    case 'subject':
      return sql<boolean>`subject ILIKE ${likeContains(c.value)}`;
    case 'has_attachment':
      return sql<boolean>`has_attachments`;
    case 'flag':
      return sql<boolean>`${sql.ref(c.flag)} = ${c.value}`;
    case 'before':
      return sql<boolean>`received_at < ${c.date}`;
    case 'after':
      return sql<boolean>`received_at >= ${c.date}`;
    case 'text':
      // the vector's own configuration (ingest.repository.ts), so the GIN index answers
      return sql<boolean>`search @@ websearch_to_tsquery('simple', ${c.value})`;
  }
}

function addressesContain(list: RawBuilder<unknown>, value: string): RawBuilder<boolean> {
  const pattern = likeContains(value);
  return sql<boolean>`EXISTS (SELECT 1 FROM jsonb_array_elements(${list}) e WHERE e->>'name' ILIKE ${pattern} OR e->>'address' ILIKE ${pattern})`;
}

export async function messageOfMailbox(db: Executor, mailboxId: string, id: string): Promise<Message | undefined> {
  return db.selectFrom('messages').selectAll().where('mailbox_id', '=', mailboxId).where('id', '=', id).executeTakeFirst();
}

/** Sets flags and/or the folder; returns the row as it was before (folder) and after, or undefined. */
export async function updateMessage(
  trx: Transaction<Database>,
  mailboxId: string,
  id: string,
  changes: { seen?: boolean; flagged?: boolean; folderId?: string },
): Promise<{ before: string; after: MessageRow } | undefined> {
  const old = await trx.selectFrom('messages').select('folder_id').where('mailbox_id', '=', mailboxId).where('id', '=', id).forUpdate().executeTakeFirst();
  if (!old) return undefined;
  const after = await trx
    .updateTable('messages')
    .set({
      ...(changes.seen === undefined ? {} : { seen: changes.seen }),
      ...(changes.flagged === undefined ? {} : { flagged: changes.flagged }),
      ...(changes.folderId === undefined ? {} : { folder_id: changes.folderId }),
    })
    .where('mailbox_id', '=', mailboxId)
    .where('id', '=', id)
    .returning(LIST_COLUMNS)
    .executeTakeFirstOrThrow();
  return { before: old.folder_id, after };
}

/** The draft submission whose Drafts copy is this message (drafts die with their copy). */
export async function deleteDraftOfCopy(trx: Transaction<Database>, messageId: string): Promise<void> {
  await trx.deleteFrom('submissions').where('stored_message_id', '=', messageId).where('status', '=', 'draft').execute();
}

/**
 * Deletes every message of a folder for good, in the caller's transaction, releasing what the
 * ingest took (as deleteMessage does for one): the blob references of the raw bytes and the
 * attachments, and the quota charge (one ledger row). Drafts whose copy was there go too.
 * The attachment rows are read in the same statement that deletes their messages, from the
 * snapshot before the cascade. Returns how many messages went.
 */
export async function deleteAllInFolder(trx: Transaction<Database>, mailboxId: string, folderId: string): Promise<number> {
  await trx
    .deleteFrom('submissions')
    .where('status', '=', 'draft')
    .where('stored_message_id', 'in', (eb) => eb.selectFrom('messages').select('id').where('folder_id', '=', folderId).where('mailbox_id', '=', mailboxId))
    .execute();
  const result = await sql<{ n: number; bytes: number; keys: string[] }>`
    WITH gone AS (
      DELETE FROM messages WHERE mailbox_id = ${mailboxId} AND folder_id = ${folderId} RETURNING id, size, raw_blob_key
    )
    SELECT
      (SELECT count(*)::int FROM gone) AS n,
      (SELECT coalesce(sum(size), 0)::bigint FROM gone) AS bytes,
      (SELECT coalesce(array_agg(raw_blob_key), '{}') FROM gone)
        || (SELECT coalesce(array_agg(a.blob_key), '{}') FROM attachments a WHERE a.message_id IN (SELECT id FROM gone)) AS keys
  `.execute(trx);
  const row = result.rows[0]!;
  if (row.n === 0) return 0;
  await removeReferences(trx, row.keys);
  await charge(trx, [{ mailboxId, bytes: -Number(row.bytes), messages: -row.n }]);
  return row.n;
}

/** Tells every listening API process (mail-events.ts); delivered when the transaction commits. */
export async function notifyMailEvents(db: Executor, events: MailEventPayload[]): Promise<void> {
  if (events.length === 0) return;
  await sql`SELECT pg_notify(${MAIL_EVENTS_CHANNEL}, e) FROM unnest(${events.map((e) => JSON.stringify(e))}::text[]) AS e`.execute(db);
}

/** A value for ILIKE '%…%' that matches itself literally (backslash is ILIKE's default escape). */
export function likeContains(value: string): string {
  return `%${value.replace(/[\\%_]/g, '\\$&')}%`;
}
