/**
 * Queries on `domains`. Every read a tenant can trigger is scoped by tenant_id; the unscoped
 * ones (getById, idsAfter) are for the verification worker, which acts for every tenant.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import { newestFirst, type KeysetPosition } from './keyset.js';
import type { Database, Domain, DomainStatus } from './types.js';

type Executor = Kysely<Database> | Transaction<Database>;

/** A tenant's domains, newest first, strictly before an optional (created_at, id); limit + 1 rows. */
export async function listForTenant(db: Executor, tenantId: string, limit: number, before: KeysetPosition | null): Promise<Domain[]> {
  return newestFirst(db.selectFrom('domains').selectAll().where('tenant_id', '=', tenantId), before, limit).execute();
}

export async function getForTenant(db: Executor, tenantId: string, id: string): Promise<Domain | undefined> {
  return db.selectFrom('domains').selectAll().where('id', '=', id).where('tenant_id', '=', tenantId).executeTakeFirst();
}

/** The row locked until the transaction ends: mailbox inserts (which take a key-share lock on it) wait. */
export async function lockForTenant(trx: Transaction<Database>, tenantId: string, id: string): Promise<Domain | undefined> {
  return trx.selectFrom('domains').selectAll().where('id', '=', id).where('tenant_id', '=', tenantId).forUpdate().executeTakeFirst();
}

export async function lockById(trx: Transaction<Database>, id: string): Promise<Domain | undefined> {
  return trx.selectFrom('domains').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
}

export async function getById(db: Executor, id: string): Promise<Domain | undefined> {
  return db.selectFrom('domains').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function countMailboxes(db: Executor, domainId: string): Promise<number> {
  const row = await db.selectFrom('mailboxes').select((eb) => eb.fn.countAll<string>().as('n')).where('domain_id', '=', domainId).executeTakeFirstOrThrow();
  return Number(row.n);
}

export async function deleteById(db: Executor, id: string): Promise<void> {
  await db.deleteFrom('domains').where('id', '=', id).execute();
}

export async function updateDkim(db: Executor, id: string, dkim: { selector: string; publicKey: string | null; privateKeyEnc: string | null }): Promise<Domain> {
  return db
    .updateTable('domains')
    .set({ dkim_selector: dkim.selector, dkim_public_key: dkim.publicKey, dkim_private_key_enc: dkim.privateKeyEnc, updated_at: sql<Date>`now()` })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Whether another row with this name is verified (the partial unique index allows one). */
export async function isVerifiedElsewhere(db: Executor, name: string, exceptId: string): Promise<boolean> {
  const row = await db.selectFrom('domains').select('id').where('name', '=', name).where('status', '=', 'verified').where('id', '!=', exceptId).executeTakeFirst();
  return row !== undefined;
}

/** Stores the outcome of a DNS check. */
export async function recordCheck(
  db: Executor,
  id: string,
  check: { status: DomainStatus; dnsResults: unknown; verifiedAt: Date | null },
): Promise<void> {
  await db
    .updateTable('domains')
    .set({
      status: check.status,
      dns_results: JSON.stringify(check.dnsResults),
      last_checked_at: sql<Date>`now()`,
      verified_at: check.verifiedAt,
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', id)
    .execute();
}

/** Domain ids in id order after `afterId`, for walking every domain in batches. */
export async function idsAfter(db: Executor, afterId: string | null, limit: number): Promise<string[]> {
  const rows = await db
    .selectFrom('domains')
    .select('id')
    .$if(afterId !== null, (q) => q.where('id', '>', afterId!))
    .orderBy('id')
    .limit(limit)
    .execute();
  return rows.map((r) => r.id);
}
