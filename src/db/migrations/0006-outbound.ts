/**
 * Migration 0006: sending. A `submissions` row is one message a user sent (SMTP submission, API,
 * webmail) or a bounce we generated, or an API draft not sent yet: what `/api/mails` lists. Its
 * recipients are `outbound` rows, one per recipient, worked by the delivery queue
 * (delivery/queue.ts): claimed with FOR UPDATE SKIP LOCKED, leased while `sending`, retried on the
 * configured schedule. Every outbound row not yet final holds one reference on the raw blob, so
 * the collector cannot remove bytes still to be delivered; the reference is dropped in the same
 * transaction that makes the row `sent` or `bounced`.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE submissions (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      user_id uuid REFERENCES users(id) ON DELETE SET NULL,
      source text NOT NULL CHECK (source IN ('smtp', 'api', 'webmail', 'dsn')),
      status text NOT NULL CHECK (status IN ('draft', 'submitted')),
      -- the envelope sender; '' is the null sender <> of bounces
      mail_from text NOT NULL DEFAULT '',
      from_address text NOT NULL DEFAULT '',
      subject text NOT NULL DEFAULT '',
      to_addresses jsonb NOT NULL DEFAULT '[]',
      cc_addresses jsonb NOT NULL DEFAULT '[]',
      bcc_addresses jsonb NOT NULL DEFAULT '[]',
      message_id text,
      -- an API draft's fields and attachments until it is sent
      draft jsonb,
      -- the copy in the sender's Sent (or Drafts) folder, when the sender has a mailbox
      stored_message_id uuid REFERENCES messages(id) ON DELETE SET NULL,
      raw_blob_key text REFERENCES blobs(key),
      raw_size bigint,
      -- header fields put in front of the raw bytes when delivered (DKIM-Signature)
      headers_prefix text NOT NULL DEFAULT '',
      created_at timestamptz(3) NOT NULL DEFAULT now(),
      submitted_at timestamptz(3)
    );
    CREATE INDEX submissions_user_idx ON submissions (tenant_id, user_id, created_at DESC, id DESC);

    ALTER TABLE outbound
      ADD COLUMN submission_id uuid REFERENCES submissions(id) ON DELETE CASCADE,
      ADD COLUMN kind text NOT NULL DEFAULT 'mail' CHECK (kind IN ('mail', 'dsn')),
      ADD COLUMN locked_until timestamptz,
      ADD COLUMN last_attempt_at timestamptz,
      ADD COLUMN sent_at timestamptz,
      ADD COLUMN provider_id uuid REFERENCES providers(id) ON DELETE SET NULL,
      ADD COLUMN attempt_log jsonb NOT NULL DEFAULT '[]',
      ADD COLUMN last_event text,
      ADD COLUMN bounce_submission_id uuid REFERENCES submissions(id) ON DELETE SET NULL;
    CREATE INDEX outbound_submission_idx ON outbound (submission_id);
    CREATE INDEX outbound_lease_idx ON outbound (locked_until) WHERE status = 'sending';
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP INDEX outbound_lease_idx;
    DROP INDEX outbound_submission_idx;
    ALTER TABLE outbound
      DROP COLUMN submission_id, DROP COLUMN kind, DROP COLUMN locked_until, DROP COLUMN last_attempt_at,
      DROP COLUMN sent_at, DROP COLUMN provider_id, DROP COLUMN attempt_log, DROP COLUMN last_event,
      DROP COLUMN bounce_submission_id;
    DROP TABLE submissions;
  `.execute(db);
}
