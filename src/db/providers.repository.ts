/**
 * Queries on `providers` (a tenant's ESP providers). Every query is scoped by tenant_id; the
 * name is unique per tenant (the (tenant_id, name) index), which callers turn into a conflict.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import { newestFirst, type KeysetPosition } from './keyset.js';
import type { Database, Provider, ProviderType } from './types.js';

type Executor = Kysely<Database> | Transaction<Database>;

export interface ProviderValues {
  name: string;
  enabled: boolean;
  priority: number;
  settings: Record<string, unknown>;
  credentialsEnc: string;
}

/** Newest first, strictly before an optional (created_at, id); limit + 1 rows. */
export async function listForTenant(db: Executor, tenantId: string, limit: number, before: KeysetPosition | null): Promise<Provider[]> {
  return newestFirst(db.selectFrom('providers').selectAll().where('tenant_id', '=', tenantId), before, limit).execute();
}

/** The enabled providers in route order: priority ascending, then the oldest first. */
export async function listEnabled(db: Executor, tenantId: string): Promise<Provider[]> {
  return db
    .selectFrom('providers')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('enabled', '=', true)
    .orderBy('priority', 'asc')
    .orderBy('created_at', 'asc')
    .orderBy('id', 'asc')
    .execute();
}

export async function getForTenant(db: Executor, tenantId: string, id: string): Promise<Provider | undefined> {
  return db.selectFrom('providers').selectAll().where('id', '=', id).where('tenant_id', '=', tenantId).executeTakeFirst();
}

/** The row locked until the transaction ends, so two concurrent changes cannot lose one another. */
export async function lockForTenant(trx: Transaction<Database>, tenantId: string, id: string): Promise<Provider | undefined> {
  return trx.selectFrom('providers').selectAll().where('id', '=', id).where('tenant_id', '=', tenantId).forUpdate().executeTakeFirst();
}

export async function insert(db: Executor, tenantId: string, type: ProviderType, v: ProviderValues): Promise<Provider> {
  return db
    .insertInto('providers')
    .values({
      tenant_id: tenantId,
      name: v.name,
      provider_type: type,
      enabled: v.enabled,
      priority: v.priority,
      settings: JSON.stringify(v.settings),
      credentials_enc: v.credentialsEnc,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function update(db: Executor, id: string, v: ProviderValues): Promise<Provider> {
  return db
    .updateTable('providers')
    .set({
      name: v.name,
      enabled: v.enabled,
      priority: v.priority,
      settings: JSON.stringify(v.settings),
      credentials_enc: v.credentialsEnc,
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function deleteForTenant(db: Executor, tenantId: string, id: string): Promise<Provider | undefined> {
  return db.deleteFrom('providers').where('id', '=', id).where('tenant_id', '=', tenantId).returningAll().executeTakeFirst();
}
