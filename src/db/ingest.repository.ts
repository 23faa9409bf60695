/**
 * recordDelivery(): everything the ingest path writes for one received message, in ONE SQL
 * statement: the blob references (with the bytes of small blobs), one `messages` row per
 * recipient in the folder it asks for, the attachment rows of each copy, and one quota charge
 * per copy. One statement is one round trip where the same work as separate statements took six
 * (measured: each round trip to PostgreSQL costs both processes CPU, and that was most of the
 * ingest's cost at 4 KB). In its common shapes it is a prepared statement, parsed and planned
 * once per connection (see prepared-statements.ts).
 *
 * Called by IngestService.store(), either alone (autocommit: the statement is its own
 * transaction, durable when it returns) or inside a transaction that then publishes staged
 * blobs before COMMIT. Blob rows are upserted in key order and stay locked until the end of the
 * transaction, the contract blobs.repository.ts documents. The full-text vector is built here
 * from the subject (weight A), the addresses (B) and the body text (D), with the `simple`
 * configuration so every language is indexed the same way.
 *
 * The same statement NOTIFYs `mail_events` once per stored copy ({mailbox_id, folder_id,
 * reason: "new"}): PostgreSQL delivers it on COMMIT to every API process listening
 * (services/mail-events.ts), so the webmail learns of new mail whichever process stored it,
 * at no extra round trip.
 */
import { sql, type Kysely, type RawBuilder, type Transaction } from 'kysely';
import { AppError } from '../core/errors.js';
import { MAX_INDEXED_TEXT_CHARS } from '../core/limits.js';
import { upsertReferences, type BlobReference } from './blobs.repository.js';
import { PREPARED } from './prepared-statements.js';
import { MAIL_EVENTS_CHANNEL } from './webmail.repository.js';
import type { AddressJson, Database, SpecialUse } from './types.js';

type Executor = Kysely<Database> | Transaction<Database>;

/** Statements with up to this many copies and attachments are prepared (prepared-statements.ts). */
const MAX_PREPARED_COPIES = 4;
const MAX_PREPARED_ATTACHMENTS = 8;

/** What every copy shares. */
export interface DeliveredMessage {
  messageId: string | null;
  inReplyTo: string | null;
  references: string[];
  subject: string;
  fromName: string;
  fromAddress: string;
  to: AddressJson[];
  cc: AddressJson[];
  sentAt: Date | null;
  snippet: string;
  text: string | null;
  html: string | null;
  hasAttachments: boolean;
  envelopeFrom: string | null;
  remoteIp: string | null;
  rawBlobKey: string;
  rawSha256: string;
  rawSize: number;
  authSummary: unknown;
}

/** One copy: whose it is, where it goes and what differs per copy. */
export interface DeliveredCopy {
  tenantId: string;
  mailboxId: string;
  folder: SpecialUse;
  envelopeTo: string;
  size: number;
  traceHeaders: string;
  seen: boolean;
  draft: boolean;
}

export interface DeliveredAttachment {
  position: number;
  filename: string | null;
  contentType: string;
  disposition: string | null;
  contentId: string | null;
  size: number;
  sha256: string;
  blobKey: string;
}

export interface DeliveryRecord {
  /** The new message ids, one per copy, in the order of `copies`. */
  messageIds: string[];
  /** The blob keys whose row holds the bytes: nothing to publish for those. */
  inRow: Set<string>;
}

export async function recordDelivery(
  db: Executor,
  blobs: BlobReference[],
  message: DeliveredMessage,
  copies: DeliveredCopy[],
  attachments: DeliveredAttachment[],
): Promise<DeliveryRecord> {
  if (copies.length === 0 || blobs.length === 0) throw new Error('recordDelivery needs at least one copy and its raw blob');
  // one VALUES row per copy, blob and attachment: the planner sees the real numbers, so a
  // prepared statement keeps its generic plan (arrays would make it re-plan every time). The
  // common shapes are prepared; the text of a rare one (many copies or attachments) is not kept.
  const prepared = copies.length <= MAX_PREPARED_COPIES && attachments.length <= MAX_PREPARED_ATTACHMENTS ? sql.raw(PREPARED) : sql``;
  const statement = sql<{ in_row: string[]; ids: { id: string; mailbox_id: string; envelope_to: string }[] }>`${prepared}
    WITH blob_refs AS (${upsertReferences(blobs)}),
    shared AS (${sharedFields(message)}),
    copies (ord, tenant_id, mailbox_id, special_use, envelope_to, size, trace_headers, seen, draft) AS (
      VALUES ${sql.join(
        copies.map(
          (c, i) =>
            sql`(${i}::int, ${c.tenantId}::uuid, ${c.mailboxId}::uuid, ${c.folder}::text, ${c.envelopeTo}::text, ${c.size}::bigint, ${c.traceHeaders}::text, ${c.seen}::boolean, ${c.draft}::boolean)`,
        ),
      )}
    ),
    inserted AS (
      INSERT INTO messages (
        tenant_id, mailbox_id, folder_id, message_id, in_reply_to, references_ids, subject, from_name,
        from_address, to_addresses, cc_addresses, sent_at, size, snippet, text_body, html_body,
        has_attachments, seen, draft, envelope_from, envelope_to, remote_ip, raw_blob_key, raw_sha256,
        raw_size, trace_headers, auth_summary, search
      )
      SELECT c.tenant_id, c.mailbox_id,
        -- NULL when the mailbox or its folder is gone: the NOT NULL constraint refuses the row
        (SELECT f.id FROM folders f WHERE f.mailbox_id = c.mailbox_id AND f.special_use = c.special_use),
        s.message_id, s.in_reply_to, s.references_ids, s.subject, s.from_name,
        s.from_address, s.to_addresses, s.cc_addresses, s.sent_at, c.size, s.snippet, s.text_body, s.html_body,
        s.has_attachments, c.seen, c.draft, s.envelope_from, c.envelope_to, s.remote_ip, s.raw_blob_key, s.raw_sha256,
        s.raw_size, c.trace_headers, s.auth_summary, s.search
      FROM copies c CROSS JOIN shared s
      ORDER BY c.ord
      RETURNING id, tenant_id, mailbox_id, folder_id, envelope_to, size
    )${attachments.length > 0 ? sql`, attachment_rows AS (${insertAttachments(attachments)})` : sql``},
    charges AS (
      INSERT INTO quota_charges (mailbox_id, bytes, messages) SELECT mailbox_id, size, 1 FROM inserted
    )
    SELECT
      (SELECT coalesce(array_agg(key), '{}') FROM blob_refs WHERE in_row) AS in_row,
      (SELECT coalesce(json_agg(json_build_object('id', id, 'mailbox_id', mailbox_id, 'envelope_to', envelope_to)), '[]') FROM inserted) AS ids,
      (SELECT count(*) FROM inserted,
        LATERAL pg_notify('${sql.raw(MAIL_EVENTS_CHANNEL)}', json_build_object('mailbox_id', mailbox_id, 'folder_id', folder_id, 'reason', 'new')::text)) AS notified
  `;
  let row: { in_row: string[]; ids: { id: string; mailbox_id: string; envelope_to: string }[] } | undefined;
  try {
    row = (await statement.execute(db)).rows[0];
  } catch (err) {
    if (isFolderMissing(err)) throw new AppError('mailbox_not_found', 'a recipient mailbox or its folder no longer exists', { cause: err });
    throw err;
  }
  if (!row) throw new Error('recordDelivery returned no row');
  // match the returned rows to the copies they were made from (RETURNING has no promised order)
  const unused = [...row.ids];
  const messageIds = copies.map((c) => {
    const at = unused.findIndex((r) => r.mailbox_id === c.mailboxId && r.envelope_to === c.envelopeTo);
    if (at === -1) throw new Error('recordDelivery lost a copy');
    return unused.splice(at, 1)[0]!.id;
  });
  return { messageIds, inRow: new Set(row.in_row) };
}

/** The fields every copy shares, sent once; the search vector is computed once from them. */
function sharedFields(m: DeliveredMessage): RawBuilder<unknown> {
  const addressText = [m.fromName, m.fromAddress, ...m.to.flatMap((a) => [a.name, a.address]), ...m.cc.flatMap((a) => [a.name, a.address])]
    .join(' ')
    .replace(/[@.]/g, ' ');
  return sql`
    SELECT p.*,
      setweight(to_tsvector('simple', p.subject), 'A')
        || setweight(to_tsvector('simple', ${`${m.fromAddress} ${addressText}`}::text), 'B')
        || setweight(to_tsvector('simple', left(coalesce(p.text_body, p.snippet), ${MAX_INDEXED_TEXT_CHARS}::int)), 'D') AS search
    FROM (SELECT
      ${m.messageId}::text AS message_id, ${m.inReplyTo}::text AS in_reply_to, ${m.references}::text[] AS references_ids,
      ${m.subject}::text AS subject, ${m.fromName}::text AS from_name, ${m.fromAddress}::text AS from_address,
      ${JSON.stringify(m.to)}::jsonb AS to_addresses, ${JSON.stringify(m.cc)}::jsonb AS cc_addresses,
      ${m.sentAt}::timestamptz AS sent_at, ${m.snippet}::text AS snippet, ${m.text}::text AS text_body,
      ${m.html}::text AS html_body, ${m.hasAttachments}::boolean AS has_attachments,
      ${m.envelopeFrom}::text AS envelope_from, ${m.remoteIp}::text AS remote_ip, ${m.rawBlobKey}::text AS raw_blob_key,
      ${m.rawSha256}::text AS raw_sha256, ${m.rawSize}::bigint AS raw_size,
      ${m.authSummary === null ? null : JSON.stringify(m.authSummary)}::jsonb AS auth_summary
    ) p
  `;
}

/** Every attachment row for every inserted copy. */
function insertAttachments(attachments: DeliveredAttachment[]): RawBuilder<unknown> {
  return sql`
    INSERT INTO attachments (tenant_id, message_id, position, filename, content_type, disposition, content_id, size, sha256, blob_key)
    SELECT i.tenant_id, i.id, a.position, a.filename, a.content_type, a.disposition, a.content_id, a.size, a.sha256, a.blob_key
    FROM inserted i CROSS JOIN (VALUES ${sql.join(
      attachments.map(
        (a) =>
          sql`(${a.position}::int, ${a.filename}::text, ${a.contentType}::text, ${a.disposition}::text, ${a.contentId}::text, ${a.size}::bigint, ${a.sha256}::text, ${a.blobKey}::text)`,
      ),
    )}) AS a (position, filename, content_type, disposition, content_id, size, sha256, blob_key)
  `;
}

/** PostgreSQL refused the message row for a NULL folder_id (not_null_violation on that column). */
function isFolderMissing(err: unknown): boolean {
  const e = err as { code?: string; column?: string; table?: string } | null;
  return e?.code === '23502' && e.column === 'folder_id';
}
