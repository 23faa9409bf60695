/**
 * Migration 0002: quota charges as an append-only ledger. Charging a message used to UPDATE its
 * mailbox row, so every delivery to one mailbox queued on that row's lock until COMMIT (measured:
 * the ingest throughput ceiling). Now a delivery INSERTs a charge; a mailbox's usage is
 * `mailboxes.used_bytes` plus its unfolded charges, and the worker folds charges into the
 * mailbox row in batches. The tenant foreign keys of messages and attachments go: the mailbox and
 * message keys already cascade, and each extra key share-locked the tenant row on every insert.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE quota_charges (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      mailbox_id uuid NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
      bytes bigint NOT NULL,
      messages integer NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX quota_charges_mailbox_idx ON quota_charges (mailbox_id);
    ALTER TABLE messages DROP CONSTRAINT messages_tenant_id_fkey;
    ALTER TABLE attachments DROP CONSTRAINT attachments_tenant_id_fkey;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE attachments ADD CONSTRAINT attachments_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE;
    ALTER TABLE messages ADD CONSTRAINT messages_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE;
    DROP TABLE quota_charges;
  `.execute(db);
}
