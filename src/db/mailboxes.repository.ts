/**
 * Queries on `mailboxes` and `folders`.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import { DEFAULT_FOLDERS } from '../core/limits.js';
import type { Database, Folder, Mailbox, SpecialUse } from './types.js';

type Executor = Kysely<Database> | Transaction<Database>;

export interface MailboxForDelivery {
  id: string;
  tenant_id: string;
  address: string;
  quota_bytes: number;
  used_bytes: number;
  user_status: 'active' | 'suspended' | null;
}

/** The mailbox for an exact (normalised) address, with its owner's status. */
export async function findForDelivery(db: Executor, address: string): Promise<MailboxForDelivery | undefined> {
  return db
    .selectFrom('mailboxes')
    .leftJoin('users', 'users.id', 'mailboxes.user_id')
    .select(['mailboxes.id', 'mailboxes.tenant_id', 'mailboxes.address', 'mailboxes.quota_bytes', 'mailboxes.used_bytes', 'users.status as user_status'])
    .where('mailboxes.address', '=', address)
    .executeTakeFirst();
}

export async function findByAddress(db: Executor, address: string): Promise<Mailbox | undefined> {
  return db.selectFrom('mailboxes').selectAll().where('address', '=', address).executeTakeFirst();
}

/** Creates a mailbox with the standard folders (INBOX, Sent, Drafts, Trash, Junk). */
export async function createWithFolders(
  trx: Transaction<Database>,
  values: { tenantId: string; userId: string | null; domainId: string; address: string; quotaBytes: number },
): Promise<Mailbox> {
  const mailbox = await trx
    .insertInto('mailboxes')
    .values({
      tenant_id: values.tenantId,
      user_id: values.userId,
      domain_id: values.domainId,
      address: values.address,
      quota_bytes: values.quotaBytes,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  await trx
    .insertInto('folders')
    .values(DEFAULT_FOLDERS.map((f) => ({ tenant_id: values.tenantId, mailbox_id: mailbox.id, name: f.name, special_use: f.specialUse })))
    .execute();
  return mailbox;
}

export async function folderBySpecialUse(db: Executor, mailboxId: string, specialUse: SpecialUse): Promise<Folder | undefined> {
  return db.selectFrom('folders').selectAll().where('mailbox_id', '=', mailboxId).where('special_use', '=', specialUse).executeTakeFirst();
}

/** Charges a stored message to the mailbox (size and count). */
export async function charge(trx: Transaction<Database>, mailboxId: string, bytes: number, messages: number): Promise<void> {
  await trx
    .updateTable('mailboxes')
    .set({
      used_bytes: sql`greatest(used_bytes + ${bytes}, 0)`,
      message_count: sql`greatest(message_count + ${messages}, 0)`,
    })
    .where('id', '=', mailboxId)
    .execute();
}
