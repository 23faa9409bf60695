/**
 * Migration 0001: the whole data model of DESIGN.md §4. Later issues fill the tables (outbound,
 * smtp_settings, providers, delivery_events, refresh_tokens, audit_logs). Every tenant-owned row
 * carries tenant_id. Text columns that hold mail-derived data never receive NUL bytes (ingest
 * strips them), because PostgreSQL text cannot store them.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE tenants (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      name text NOT NULL UNIQUE,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE users (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      email text NOT NULL UNIQUE,
      name text,
      password_hash text NOT NULL,
      role text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
      status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
      failed_logins integer NOT NULL DEFAULT 0,
      locked_until timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX users_tenant_idx ON users (tenant_id, created_at, id);

    CREATE TABLE refresh_tokens (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      family_id uuid NOT NULL,
      token_hash text NOT NULL UNIQUE,
      expires_at timestamptz NOT NULL,
      used_at timestamptz,
      revoked_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);

    CREATE TABLE domains (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      name text NOT NULL,
      status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'verified', 'failed')),
      verification_token text NOT NULL,
      dkim_selector text NOT NULL,
      dkim_public_key text,
      dkim_private_key_enc text,
      dns_results jsonb,
      last_checked_at timestamptz,
      verified_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (tenant_id, name)
    );
    -- a domain verified by one tenant cannot be verified by another
    CREATE UNIQUE INDEX domains_verified_name_idx ON domains (name) WHERE status = 'verified';
    CREATE INDEX domains_name_idx ON domains (name);

    CREATE TABLE mailboxes (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      user_id uuid REFERENCES users(id) ON DELETE CASCADE,
      domain_id uuid NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
      address text NOT NULL UNIQUE,
      quota_bytes bigint NOT NULL CHECK (quota_bytes >= 0),
      used_bytes bigint NOT NULL DEFAULT 0,
      message_count integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX mailboxes_user_idx ON mailboxes (user_id);
    CREATE INDEX mailboxes_tenant_idx ON mailboxes (tenant_id);

    CREATE TABLE folders (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      mailbox_id uuid NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
      name text NOT NULL,
      special_use text CHECK (special_use IN ('inbox', 'sent', 'drafts', 'trash', 'junk')),
      created_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (mailbox_id, name)
    );
    CREATE UNIQUE INDEX folders_special_use_idx ON folders (mailbox_id, special_use) WHERE special_use IS NOT NULL;

    -- every stored object (raw message, attachment) with the number of rows that reference it;
    -- a blob file with no row here is an orphan the collector may remove after a grace period
    CREATE TABLE blobs (
      key text PRIMARY KEY,
      sha256 text NOT NULL,
      size bigint NOT NULL,
      refcount integer NOT NULL CHECK (refcount >= 0),
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX blobs_unreferenced_idx ON blobs (created_at) WHERE refcount = 0;

    CREATE TABLE messages (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      mailbox_id uuid NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
      folder_id uuid NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
      message_id text,
      in_reply_to text,
      references_ids text[] NOT NULL DEFAULT '{}',
      subject text NOT NULL DEFAULT '',
      from_name text NOT NULL DEFAULT '',
      from_address text NOT NULL DEFAULT '',
      to_addresses jsonb NOT NULL DEFAULT '[]',
      cc_addresses jsonb NOT NULL DEFAULT '[]',
      sent_at timestamptz,
      received_at timestamptz NOT NULL DEFAULT now(),
      size bigint NOT NULL,
      snippet text NOT NULL DEFAULT '',
      text_body text,
      html_body text,
      has_attachments boolean NOT NULL DEFAULT false,
      seen boolean NOT NULL DEFAULT false,
      flagged boolean NOT NULL DEFAULT false,
      answered boolean NOT NULL DEFAULT false,
      draft boolean NOT NULL DEFAULT false,
      envelope_from text,
      envelope_to text,
      remote_ip text,
      raw_blob_key text NOT NULL REFERENCES blobs(key),
      raw_sha256 text NOT NULL,
      raw_size bigint NOT NULL,
      trace_headers text NOT NULL DEFAULT '',
      auth_results jsonb,
      auth_summary jsonb,
      search tsvector NOT NULL
    );
    CREATE INDEX messages_folder_list_idx ON messages (folder_id, received_at DESC, id DESC);
    CREATE INDEX messages_mailbox_idx ON messages (mailbox_id);
    CREATE INDEX messages_unread_idx ON messages (folder_id) WHERE NOT seen;
    CREATE INDEX messages_search_idx ON messages USING gin (search);
    CREATE INDEX messages_raw_blob_idx ON messages (raw_blob_key);

    CREATE TABLE attachments (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      message_id uuid NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
      position integer NOT NULL,
      filename text,
      content_type text NOT NULL,
      disposition text,
      content_id text,
      size bigint NOT NULL,
      sha256 text NOT NULL,
      blob_key text NOT NULL REFERENCES blobs(key),
      UNIQUE (message_id, position)
    );
    CREATE INDEX attachments_blob_idx ON attachments (blob_key);

    CREATE TABLE outbound (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      user_id uuid REFERENCES users(id) ON DELETE SET NULL,
      message_id uuid REFERENCES messages(id) ON DELETE SET NULL,
      raw_blob_key text NOT NULL REFERENCES blobs(key),
      mail_from text NOT NULL,
      rcpt_to text NOT NULL,
      status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sending', 'sent', 'deferred', 'bounced')),
      route text,
      attempts integer NOT NULL DEFAULT 0,
      next_attempt_at timestamptz NOT NULL DEFAULT now(),
      last_reply text,
      provider_message_id text,
      delay_warned_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX outbound_due_idx ON outbound (next_attempt_at) WHERE status IN ('queued', 'deferred');
    CREATE INDEX outbound_message_idx ON outbound (message_id);
    CREATE INDEX outbound_provider_idx ON outbound (provider_message_id);

    CREATE TABLE delivery_events (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      outbound_id uuid REFERENCES outbound(id) ON DELETE CASCADE,
      provider text NOT NULL,
      event text NOT NULL,
      payload jsonb NOT NULL,
      occurred_at timestamptz NOT NULL DEFAULT now(),
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX delivery_events_outbound_idx ON delivery_events (outbound_id);

    CREATE TABLE smtp_settings (
      user_id uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      host text NOT NULL,
      port integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
      secure boolean NOT NULL,
      username text NOT NULL,
      password_enc text NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now(),
      updated_by uuid REFERENCES users(id) ON DELETE SET NULL
    );

    CREATE TABLE providers (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      name text NOT NULL,
      provider_type text NOT NULL CHECK (provider_type IN ('sendgrid', 'ses', 'mailgun', 'smtp', 'msgraph')),
      enabled boolean NOT NULL DEFAULT true,
      priority integer NOT NULL DEFAULT 100,
      settings jsonb NOT NULL DEFAULT '{}',
      credentials_enc text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (tenant_id, name)
    );

    CREATE TABLE audit_logs (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id uuid REFERENCES tenants(id) ON DELETE CASCADE,
      actor_user_id uuid REFERENCES users(id) ON DELETE SET NULL,
      actor_email text,
      action text NOT NULL,
      target_type text,
      target_id text,
      ip text,
      details jsonb,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX audit_logs_tenant_idx ON audit_logs (tenant_id, created_at DESC, id DESC);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP TABLE audit_logs, providers, smtp_settings, delivery_events, outbound, attachments, messages,
      blobs, folders, mailboxes, domains, refresh_tokens, users, tenants;
  `.execute(db);
}
