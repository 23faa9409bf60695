/**
 * The admin API's response shapes as the pages use them (API.md; snake_case as served). Dates
 * arrive as ISO strings. Kept beside the admin pages because nothing else reads them.
 */

export type DomainStatus = 'pending' | 'verified' | 'failed';
export type RecordKey = 'mx' | 'spf' | 'dkim' | 'dmarc' | 'verification';
export type CheckStatus = 'ok' | 'missing' | 'mismatch' | 'error';

export interface DnsRecord {
  record: RecordKey;
  type: 'MX' | 'TXT';
  host: string;
  value: string;
  priority?: number;
  required: boolean;
  purpose: string;
}

export interface RecordCheck {
  status: CheckStatus;
  type: 'MX' | 'TXT';
  host: string;
  expected: string;
  found: string[];
  required: boolean;
  detail?: string;
}

export interface Domain {
  id: string;
  name: string;
  status: DomainStatus;
  dkim_selector: string;
  dns_results: Partial<Record<RecordKey, RecordCheck>> | null;
  status_reason: string | null;
  last_checked_at: string | null;
  verified_at: string | null;
  created_at: string;
}

export type Role = 'owner' | 'admin' | 'member';

export interface AdminUser {
  id: string;
  email: string;
  name: string | null;
  role: Role;
  status: 'active' | 'suspended';
  created_at: string;
  mailbox: { id: string; address: string; quota_mb: number; used_bytes: number } | null;
}

export type ProviderType = 'sendgrid' | 'ses' | 'mailgun' | 'msgraph' | 'smtp';

export interface Provider {
  id: string;
  name: string;
  provider_type: ProviderType;
  enabled: boolean;
  priority: number;
  credentials_set: string[];
  created_at: string;
  updated_at: string;
  [setting: string]: unknown;
}

export type TestResult = { success: true; message: string } | { success: false; error: string };

export interface AuditEntry {
  id: string;
  actor_user_id: string | null;
  actor_email: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  ip: string | null;
  details: unknown;
  created_at: string;
}
