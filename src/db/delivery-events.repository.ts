/**
 * Queries for delivery events (services/delivery-events.service.ts): finding the outbound row an
 * ESP event is about, always inside one tenant (and one provider, when the row records it),
 * recording the event, and the state changes an event makes. Rows are locked (FOR UPDATE) when
 * found, so two webhooks about one recipient apply one after the other.
 */
import { sql, type SelectQueryBuilder, type Transaction } from 'kysely';
import { removeReferences } from './blobs.repository.js';
import type { Database, OutboundStatus } from './types.js';

type Trx = Transaction<Database>;

export interface EventOutboundRow {
  id: string;
  tenant_id: string;
  status: OutboundStatus;
  raw_blob_key: string;
}

/** Which rows a verified provider may touch. */
export interface EventScope {
  tenantId: string;
  providerId: string;
}

const ROW_COLUMNS = ['id', 'tenant_id', 'status', 'raw_blob_key', 'rcpt_to', 'submission_id'] as const;

function scoped<O>(query: SelectQueryBuilder<Database, 'outbound', O>, scope: EventScope): SelectQueryBuilder<Database, 'outbound', O> {
  return query.where('tenant_id', '=', scope.tenantId).where((eb) => eb.or([eb('provider_id', 'is', null), eb('provider_id', '=', scope.providerId)]));
}

function sameAddress(a: string, b: string): boolean {
  return a.trim().toLowerCase() === b.trim().toLowerCase();
}

/** PostgreSQL text and jsonb cannot hold NUL: a provider's string with one would fail the whole batch. */
function withoutNul(_key: string, value: unknown): unknown {
  return typeof value === 'string' ? value.replaceAll('\0', '') : value;
}

function toRow(r: { id: string; tenant_id: string; status: OutboundStatus; raw_blob_key: string }): EventOutboundRow {
  return { id: r.id, tenant_id: r.tenant_id, status: r.status, raw_blob_key: r.raw_blob_key };
}

/**
 * The row with our outbound id, when its recipient is the event's. When one provider request
 * carried several recipients under the first one's id, the event's recipient is looked up among
 * the rows of the same submission; a recipient that matches none is not ours to change.
 */
export async function lockOutbound(trx: Trx, scope: EventScope, target: { id: string; recipient: string }): Promise<EventOutboundRow | null> {
  const row = await scoped(trx.selectFrom('outbound').select(ROW_COLUMNS).where('id', '=', target.id), scope).forUpdate().executeTakeFirst();
  if (!row) return null;
  if (sameAddress(row.rcpt_to, target.recipient)) return toRow(row);
  if (!row.submission_id) return null;
  const sibling = await scoped(
    trx
      .selectFrom('outbound')
      .select(ROW_COLUMNS)
      .where('submission_id', '=', row.submission_id)
      .where(sql<boolean>`lower(rcpt_to) = lower(${target.recipient.trim()})`),
    scope,
  )
    .orderBy('created_at')
    .limit(1)
    .forUpdate()
    .executeTakeFirst();
  return sibling ? toRow(sibling) : null;
}

/** The row the provider knows by its message id (stored with or without angle brackets) and recipient. */
export async function findOutboundByMessageId(trx: Trx, scope: EventScope, providerMessageId: string, recipient: string): Promise<EventOutboundRow | null> {
  const row = await scoped(
    trx
      .selectFrom('outbound')
      .select(ROW_COLUMNS)
      .where('provider_message_id', 'in', [providerMessageId, `<${providerMessageId}>`])
      .where(sql<boolean>`lower(rcpt_to) = lower(${recipient.trim()})`),
    scope,
  )
    .orderBy('created_at')
    .limit(1)
    .forUpdate()
    .executeTakeFirst();
  return row ? toRow(row) : null;
}

export async function insertDeliveryEvent(
  trx: Trx,
  e: { tenantId: string; outboundId: string; provider: string; event: string; payload: unknown; occurredAt: Date },
): Promise<void> {
  await trx
    .insertInto('delivery_events')
    .values({ tenant_id: e.tenantId, outbound_id: e.outboundId, provider: e.provider, event: e.event, payload: JSON.stringify(e.payload ?? null, withoutNul), occurred_at: e.occurredAt })
    .execute();
}

/** Sets last_event unless an event the provider dated later is already recorded (they arrive out of order). */
export async function setLastEventUnlessNewer(trx: Trx, outboundId: string, event: string, occurredAt: Date): Promise<void> {
  await trx
    .updateTable('outbound')
    .set({ last_event: event, updated_at: sql`now()` })
    .where('id', '=', outboundId)
    .where((eb) =>
      eb.not(eb.exists(eb.selectFrom('delivery_events').select(sql`1`.as('one')).where('outbound_id', '=', outboundId).where('occurred_at', '>', occurredAt))),
    )
    .execute();
}

/**
 * A permanent bounce reported by the provider: the row becomes `bounced` from any other state
 * (one UPDATE with the expected old state), and a row that was not yet `sent` gives back its blob
 * reference, as the queue does when it bounces a row itself. False when nothing changed.
 */
export async function markBouncedByEvent(trx: Trx, row: EventOutboundRow, reply: string): Promise<boolean> {
  if (row.status === 'bounced') return false;
  const result = await trx
    .updateTable('outbound')
    .set({ status: 'bounced', last_reply: reply.replaceAll('\0', ''), locked_until: null, updated_at: sql`now()` })
    .where('id', '=', row.id)
    .where('status', '=', row.status)
    .executeTakeFirst();
  if (result.numUpdatedRows !== 1n) return false;
  if (row.status !== 'sent') await removeReferences(trx, [row.raw_blob_key]);
  return true;
}
