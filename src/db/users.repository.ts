/**
 * Queries on `users` for user management (services/users.service.ts). Every query takes the
 * tenant id and filters by it: a row of another tenant is simply not found. deleteWithMailboxes()
 * removes a user with everything stored for it and drops the blob references of its messages in
 * the caller's transaction, so the collector can later remove blobs nobody else references.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import { removeReferences } from './blobs.repository.js';
import { newestFirst, type KeysetPosition } from './keyset.js';
import type { Database, User, UserRole, UserStatus } from './types.js';

type Executor = Kysely<Database> | Transaction<Database>;

/** A page of a tenant's users, newest first, after an optional (created_at, id) position; limit + 1 rows. */
export async function listPage(db: Executor, tenantId: string, limit: number, before: KeysetPosition | null): Promise<User[]> {
  return newestFirst(db.selectFrom('users').selectAll().where('tenant_id', '=', tenantId), before, limit).execute();
}

export async function findInTenant(db: Executor, tenantId: string, id: string): Promise<User | undefined> {
  return db.selectFrom('users').selectAll().where('tenant_id', '=', tenantId).where('id', '=', id).executeTakeFirst();
}

/**
 * Serialises changes to a tenant's users (who is the last active owner) until the transaction
 * ends. NO KEY UPDATE does not conflict with the key-share locks that inserts referencing the
 * tenant take, so logins and audit entries do not wait for it.
 */
export async function lockTenant(trx: Transaction<Database>, tenantId: string): Promise<void> {
  await sql`SELECT id FROM tenants WHERE id = ${tenantId} FOR NO KEY UPDATE`.execute(trx);
}

/** Active owners of the tenant other than `exceptId`. */
export async function countOtherActiveOwners(db: Executor, tenantId: string, exceptId: string): Promise<number> {
  const row = await db
    .selectFrom('users')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('tenant_id', '=', tenantId)
    .where('role', '=', 'owner')
    .where('status', '=', 'active')
    .where('id', '!=', exceptId)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export async function updateUser(
  db: Executor,
  tenantId: string,
  id: string,
  fields: { name?: string | null; role?: UserRole; status?: UserStatus; password_hash?: string },
): Promise<User | undefined> {
  return db
    .updateTable('users')
    .set({ ...fields, updated_at: sql`now()` })
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
}

/** Sets the quota of the user's mailboxes; returns how many there were. */
export async function setMailboxQuota(trx: Transaction<Database>, tenantId: string, userId: string, quotaBytes: number): Promise<number> {
  const rows = await trx.updateTable('mailboxes').set({ quota_bytes: quotaBytes }).where('tenant_id', '=', tenantId).where('user_id', '=', userId).returning('id').execute();
  return rows.length;
}

/**
 * Deletes the user, its mailboxes (folders and quota charges cascade), their messages and
 * attachments, and drops one blob reference per message raw and per attachment row, exactly the
 * references ingest added. The mailbox rows are locked first: a delivery in flight to them
 * commits before (and its message is deleted here) or fails after (its mailbox is gone).
 * Refresh tokens and SMTP settings go with the user (ON DELETE CASCADE). Returns what it removed.
 */
export async function deleteWithMailboxes(trx: Transaction<Database>, tenantId: string, userId: string): Promise<{ mailboxes: number; messages: number }> {
  const mailboxIds = (
    await trx.selectFrom('mailboxes').select('id').where('tenant_id', '=', tenantId).where('user_id', '=', userId).orderBy('id').forUpdate().execute()
  ).map((m) => m.id);
  let messages = 0;
  if (mailboxIds.length > 0) {
    const raws = await trx.selectFrom('messages').select('raw_blob_key as key').where('mailbox_id', 'in', mailboxIds).execute();
    const attachments = await trx
      .selectFrom('attachments')
      .innerJoin('messages', 'messages.id', 'attachments.message_id')
      .select('attachments.blob_key as key')
      .where('messages.mailbox_id', 'in', mailboxIds)
      .execute();
    await removeReferences(trx, [...raws, ...attachments].map((r) => r.key));
    const deleted = await trx.deleteFrom('messages').where('mailbox_id', 'in', mailboxIds).executeTakeFirst();
    messages = Number(deleted.numDeletedRows);
    await trx.deleteFrom('mailboxes').where('id', 'in', mailboxIds).execute();
  }
  await trx.deleteFrom('users').where('tenant_id', '=', tenantId).where('id', '=', userId).execute();
  return { mailboxes: mailboxIds.length, messages };
}
