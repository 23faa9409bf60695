/**
 * Queries on `mailboxes`, `folders` and `quota_charges`. A mailbox's usage is its folded
 * `used_bytes`/`message_count` plus the charges not folded yet (see migration 0002); every
 * reader goes through usageOf()/withUsage() so the figure is exact at any moment.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import { DEFAULT_FOLDERS } from '../core/limits.js';
import { PREPARED } from './prepared-statements.js';
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

/** Bytes charged to the mailbox and not folded into it yet (sum() is numeric: cast back to bigint). */
const pendingBytes = sql<number>`coalesce((SELECT sum(q.bytes) FROM quota_charges q WHERE q.mailbox_id = mailboxes.id), 0)::bigint`;
const pendingMessages = sql<number>`coalesce((SELECT sum(q.messages) FROM quota_charges q WHERE q.mailbox_id = mailboxes.id), 0)::bigint`;

/**
 * The mailboxes for any of `addresses` (exact, normalised), with their owner's status and
 * current usage, in one query: the RCPT path runs this for every recipient, so it is a prepared
 * statement (one shape whatever the number of addresses; see prepared-statements.ts).
 */
export async function findForDelivery(db: Executor, addresses: [string] | [string, string]): Promise<MailboxForDelivery[]> {
  // always two scalar parameters (the first repeated when there is one): one shape, and one
  // the planner costs exactly, so the prepared statement keeps its generic plan
  const result = await sql<MailboxForDelivery>`${sql.raw(PREPARED)}
    SELECT m.id, m.tenant_id, m.address, m.quota_bytes,
      m.used_bytes + coalesce((SELECT sum(q.bytes) FROM quota_charges q WHERE q.mailbox_id = m.id), 0)::bigint AS used_bytes,
      u.status AS user_status
    FROM mailboxes m LEFT JOIN users u ON u.id = m.user_id
    WHERE m.address IN (${addresses[0]}::text, ${addresses[1] ?? addresses[0]}::text)
  `.execute(db);
  return result.rows;
}

/** Current usage of a mailbox: folded figures plus unfolded charges. */
export async function usageOf(db: Executor, mailboxId: string): Promise<{ used_bytes: number; message_count: number }> {
  return db
    .selectFrom('mailboxes')
    .select([
      sql<number>`mailboxes.used_bytes + ${pendingBytes}`.as('used_bytes'),
      sql<number>`mailboxes.message_count + ${pendingMessages}`.as('message_count'),
    ])
    .where('id', '=', mailboxId)
    .executeTakeFirstOrThrow();
}

export interface MailboxWithUsage {
  id: string;
  user_id: string | null;
  address: string;
  quota_bytes: number;
  used_bytes: number;
}

/** The mailboxes of a tenant's users, oldest first, with current usage (for user listings). */
export async function findByUsers(db: Executor, tenantId: string, userIds: string[]): Promise<MailboxWithUsage[]> {
  if (userIds.length === 0) return [];
  return db
    .selectFrom('mailboxes')
    .select(['id', 'user_id', 'address', 'quota_bytes', sql<number>`mailboxes.used_bytes + ${pendingBytes}`.as('used_bytes')])
    .where('tenant_id', '=', tenantId)
    .where('user_id', 'in', userIds)
    .orderBy('created_at')
    .orderBy('id')
    .execute();
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

/**
 * Charges stored (or, negative, removed) messages to mailboxes: one INSERT, no lock on the
 * mailbox row, so concurrent deliveries to one mailbox do not queue behind each other.
 */
export async function charge(trx: Transaction<Database>, charges: { mailboxId: string; bytes: number; messages: number }[]): Promise<void> {
  if (charges.length === 0) return;
  await trx
    .insertInto('quota_charges')
    .values(charges.map((c) => ({ mailbox_id: c.mailboxId, bytes: c.bytes, messages: c.messages })))
    .execute();
}

/**
 * Moves up to `limit` of the oldest charges into their mailboxes' folded figures, in one
 * statement (so a charge is counted exactly once at every moment). Returns how many it folded.
 */
export async function foldCharges(db: Executor, limit: number): Promise<number> {
  const result = await sql<{ n: number }>`
    WITH moved AS (
      DELETE FROM quota_charges
      WHERE id IN (SELECT id FROM quota_charges ORDER BY id LIMIT ${limit} FOR UPDATE SKIP LOCKED)
      RETURNING mailbox_id, bytes, messages
    ), totals AS (
      SELECT mailbox_id, sum(bytes)::bigint AS bytes, sum(messages)::int AS messages, count(*)::int AS n FROM moved GROUP BY mailbox_id
    ), folded AS (
      UPDATE mailboxes m
      SET used_bytes = greatest(m.used_bytes + t.bytes, 0), message_count = greatest(m.message_count + t.messages, 0)
      FROM totals t WHERE m.id = t.mailbox_id
      RETURNING t.n
    )
    SELECT coalesce(sum(n), 0)::int AS n FROM folded
  `.execute(db);
  return result.rows[0]?.n ?? 0;
}
