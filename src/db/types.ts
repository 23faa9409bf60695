/**
 * Kysely table types, matching the migrations in db/migrations. Repositories use these; nothing
 * outside db/ sees them except as the row types repositories return.
 */
import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Json<T> = ColumnType<T, string, string>;
type Int8 = ColumnType<number, number | bigint | string, number | bigint | string>;

export type UserRole = 'owner' | 'admin' | 'member';
export type UserStatus = 'active' | 'suspended';
export type DomainStatus = 'pending' | 'verified' | 'failed';
export type SpecialUse = 'inbox' | 'sent' | 'drafts' | 'trash' | 'junk';

export interface AddressJson {
  name: string;
  address: string;
}

export interface TenantsTable {
  id: Generated<string>;
  name: string;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface UsersTable {
  id: Generated<string>;
  tenant_id: string;
  email: string;
  name: string | null;
  password_hash: string;
  role: ColumnType<UserRole, UserRole | undefined, UserRole>;
  status: ColumnType<UserStatus, UserStatus | undefined, UserStatus>;
  failed_logins: Generated<number>;
  locked_until: Timestamp | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface DomainsTable {
  id: Generated<string>;
  tenant_id: string;
  name: string;
  status: ColumnType<DomainStatus, DomainStatus | undefined, DomainStatus>;
  verification_token: string;
  dkim_selector: string;
  dkim_public_key: string | null;
  dkim_private_key_enc: string | null;
  dns_results: Json<unknown> | null;
  last_checked_at: Timestamp | null;
  verified_at: Timestamp | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface MailboxesTable {
  id: Generated<string>;
  tenant_id: string;
  user_id: string | null;
  domain_id: string;
  address: string;
  quota_bytes: Int8;
  used_bytes: ColumnType<number, never, number>;
  message_count: ColumnType<number, never, number>;
  created_at: Generated<Date>;
}

export interface FoldersTable {
  id: Generated<string>;
  tenant_id: string;
  mailbox_id: string;
  name: string;
  special_use: SpecialUse | null;
  created_at: Generated<Date>;
}

export interface BlobsTable {
  key: string;
  sha256: string;
  size: Int8;
  refcount: number;
  /** The bytes, when kept in the row (up to BLOB_INLINE_MAX_BYTES); null = in the blob store. */
  data: ColumnType<Buffer | null, Buffer | null | undefined, Buffer | null>;
  created_at: Generated<Date>;
}

export interface MessagesTable {
  id: Generated<string>;
  tenant_id: string;
  mailbox_id: string;
  folder_id: string;
  message_id: string | null;
  in_reply_to: string | null;
  references_ids: ColumnType<string[], string[] | undefined, string[]>;
  subject: string;
  from_name: string;
  from_address: string;
  to_addresses: Json<AddressJson[]>;
  cc_addresses: Json<AddressJson[]>;
  sent_at: Timestamp | null;
  received_at: Generated<Date>;
  size: Int8;
  snippet: string;
  text_body: string | null;
  html_body: string | null;
  has_attachments: boolean;
  seen: Generated<boolean>;
  flagged: Generated<boolean>;
  answered: Generated<boolean>;
  draft: Generated<boolean>;
  envelope_from: string | null;
  envelope_to: string | null;
  remote_ip: string | null;
  raw_blob_key: string;
  raw_sha256: string;
  raw_size: Int8;
  trace_headers: string;
  auth_results: Json<unknown> | null;
  auth_summary: Json<unknown> | null;
  search: ColumnType<string, unknown, unknown>;
}

export interface AttachmentsTable {
  id: Generated<string>;
  tenant_id: string;
  message_id: string;
  position: number;
  filename: string | null;
  content_type: string;
  disposition: string | null;
  content_id: string | null;
  size: Int8;
  sha256: string;
  blob_key: string;
}

export interface QuotaChargesTable {
  id: Generated<number>;
  mailbox_id: string;
  bytes: number;
  messages: number;
  created_at: Generated<Date>;
}

export interface RefreshTokensTable {
  id: Generated<string>;
  tenant_id: string;
  user_id: string;
  family_id: string;
  token_hash: string;
  expires_at: Timestamp;
  used_at: Timestamp | null;
  revoked_at: Timestamp | null;
  created_at: Generated<Date>;
}

export interface AuditLogsTable {
  id: Generated<string>;
  tenant_id: string | null;
  actor_user_id: string | null;
  actor_email: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  ip: string | null;
  details: Json<unknown> | null;
  created_at: Generated<Date>;
}

export type SubmissionSource = 'smtp' | 'api' | 'webmail' | 'dsn';
export type SubmissionStatus = 'draft' | 'submitted';
/** The closed set of states of one outbound recipient (API.md "Mails"). */
export const OUTBOUND_STATUSES = ['queued', 'sending', 'sent', 'deferred', 'bounced'] as const;
export type OutboundStatus = (typeof OUTBOUND_STATUSES)[number];
export type OutboundKind = 'mail' | 'dsn';
export type ProviderType = 'sendgrid' | 'ses' | 'mailgun' | 'smtp' | 'msgraph';

export interface SubmissionsTable {
  id: Generated<string>;
  tenant_id: string;
  user_id: string | null;
  source: SubmissionSource;
  status: SubmissionStatus;
  /** The envelope sender; '' is the null sender of bounces. */
  mail_from: Generated<string>;
  from_address: Generated<string>;
  subject: Generated<string>;
  to_addresses: Json<string[]>;
  cc_addresses: Json<string[]>;
  bcc_addresses: Json<string[]>;
  message_id: string | null;
  draft: Json<unknown> | null;
  stored_message_id: string | null;
  raw_blob_key: string | null;
  raw_size: Int8 | null;
  headers_prefix: Generated<string>;
  created_at: Generated<Date>;
  submitted_at: Timestamp | null;
}

/** One entry of outbound.attempt_log: what one delivery attempt did. */
export interface AttemptLogEntry {
  at: string;
  route: string;
  outcome: 'sent' | 'deferred' | 'bounced' | 'fallback';
  reply: string;
}

export interface OutboundTable {
  id: Generated<string>;
  tenant_id: string;
  user_id: string | null;
  message_id: string | null;
  submission_id: string | null;
  kind: Generated<OutboundKind>;
  raw_blob_key: string;
  mail_from: string;
  rcpt_to: string;
  status: Generated<OutboundStatus>;
  route: string | null;
  attempts: Generated<number>;
  next_attempt_at: Generated<Date>;
  locked_until: Timestamp | null;
  last_attempt_at: Timestamp | null;
  sent_at: Timestamp | null;
  last_reply: string | null;
  provider_id: string | null;
  provider_message_id: string | null;
  attempt_log: ColumnType<AttemptLogEntry[], string | undefined, string>;
  last_event: string | null;
  delay_warned_at: Timestamp | null;
  bounce_submission_id: string | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface DeliveryEventsTable {
  id: Generated<string>;
  tenant_id: string;
  outbound_id: string | null;
  provider: string;
  event: string;
  payload: Json<unknown>;
  occurred_at: Generated<Date>;
  created_at: Generated<Date>;
}

export interface SmtpSettingsTable {
  user_id: string;
  tenant_id: string;
  host: string;
  port: number;
  secure: boolean;
  username: string;
  password_enc: string;
  updated_at: Generated<Date>;
  updated_by: string | null;
}

export interface ProvidersTable {
  id: Generated<string>;
  tenant_id: string;
  name: string;
  provider_type: ProviderType;
  enabled: Generated<boolean>;
  priority: Generated<number>;
  /** Non-secret settings (region, domain, sender, ...), returned by the API. */
  settings: Json<Record<string, unknown>>;
  /** SecretBox-sealed JSON of the credentials: write-only. */
  credentials_enc: string;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface Database {
  tenants: TenantsTable;
  users: UsersTable;
  domains: DomainsTable;
  mailboxes: MailboxesTable;
  folders: FoldersTable;
  blobs: BlobsTable;
  messages: MessagesTable;
  attachments: AttachmentsTable;
  quota_charges: QuotaChargesTable;
  refresh_tokens: RefreshTokensTable;
  audit_logs: AuditLogsTable;
  submissions: SubmissionsTable;
  outbound: OutboundTable;
  delivery_events: DeliveryEventsTable;
  smtp_settings: SmtpSettingsTable;
  providers: ProvidersTable;
}

export type Tenant = Selectable<TenantsTable>;
export type User = Selectable<UsersTable>;
export type Domain = Selectable<DomainsTable>;
export type Mailbox = Selectable<MailboxesTable>;
export type Folder = Selectable<FoldersTable>;
export type Message = Selectable<MessagesTable>;
export type Attachment = Selectable<AttachmentsTable>;
export type NewMessage = Insertable<MessagesTable>;
export type Submission = Selectable<SubmissionsTable>;
export type Outbound = Selectable<OutboundTable>;
export type DeliveryEvent = Selectable<DeliveryEventsTable>;
export type SmtpSettings = Selectable<SmtpSettingsTable>;
export type Provider = Selectable<ProvidersTable>;
