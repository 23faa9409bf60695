/**
 * The fields each ESP provider type takes, as src/delivery/providers/config.ts defines them
 * (SETTINGS and CREDENTIALS): which are required, which are secret (write-only: never shown
 * back, the list only says they are set) and how to ask for them. The server's schema stays the
 * judge; this only decides which inputs the add form shows and how values are typed.
 */
import type { ProviderType } from './types';

export interface ProviderField {
  key: string;
  label: string;
  kind: 'text' | 'secret' | 'number' | 'checkbox' | 'textarea' | 'select';
  required: boolean;
  options?: { value: string; label: string }[];
  placeholder?: string;
  hint?: string;
}

export const PROVIDER_TYPE_LABELS: Record<ProviderType, string> = {
  sendgrid: 'SendGrid',
  ses: 'Amazon SES',
  mailgun: 'Mailgun',
  msgraph: 'Microsoft Graph',
  smtp: 'SMTP relay',
};

export const PROVIDER_FIELDS: Record<ProviderType, ProviderField[]> = {
  sendgrid: [
    { key: 'api_key', label: 'API key', kind: 'secret', required: true },
    { key: 'webhook_public_key', label: 'Event webhook verification key', kind: 'textarea', required: false, hint: 'From Mail Settings → Event Webhook → Signed Event Webhook (base64 or PEM).' },
  ],
  ses: [
    { key: 'access_key_id', label: 'Access key ID', kind: 'secret', required: true },
    { key: 'secret_access_key', label: 'Secret access key', kind: 'secret', required: true },
    { key: 'region', label: 'Region', kind: 'text', required: true, placeholder: 'eu-west-1' },
    { key: 'configuration_set', label: 'Configuration set', kind: 'text', required: false },
    { key: 'sns_topic_arn', label: 'SNS topic ARN', kind: 'text', required: false, placeholder: 'arn:aws:sns:eu-west-1:123456789012:ses-events' },
  ],
  mailgun: [
    { key: 'api_key', label: 'API key', kind: 'secret', required: true },
    { key: 'domain', label: 'Sending domain', kind: 'text', required: true, placeholder: 'mg.example.com' },
    {
      key: 'region',
      label: 'Region',
      kind: 'select',
      required: false,
      options: [
        { value: 'us', label: 'US' },
        { value: 'eu', label: 'EU' },
      ],
    },
    { key: 'webhook_signing_key', label: 'Webhook signing key', kind: 'secret', required: false },
  ],
  msgraph: [
    { key: 'tenant_id', label: 'Directory (tenant) ID', kind: 'text', required: true },
    { key: 'client_id', label: 'Application (client) ID', kind: 'text', required: true },
    { key: 'client_secret', label: 'Client secret', kind: 'secret', required: true },
    { key: 'sender', label: 'Send as mailbox', kind: 'text', required: false, placeholder: 'noreply@example.com' },
  ],
  smtp: [
    { key: 'host', label: 'Host', kind: 'text', required: true, placeholder: 'smtp.example.com' },
    { key: 'port', label: 'Port', kind: 'number', required: true, placeholder: '587' },
    { key: 'secure', label: 'TLS from the start (SMTPS, port 465)', kind: 'checkbox', required: false },
    { key: 'user', label: 'Username', kind: 'text', required: false },
    { key: 'pass', label: 'Password', kind: 'secret', required: false },
  ],
};

/** The body fields of one type from the form's string/boolean values; empty optional fields are left out. */
export function providerFieldValues(type: ProviderType, values: Record<string, string | boolean>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of PROVIDER_FIELDS[type]) {
    const raw = values[field.key];
    if (field.kind === 'checkbox') {
      if (raw === true) out[field.key] = true;
      continue;
    }
    const text = typeof raw === 'string' ? (field.kind === 'secret' ? raw : raw.trim()) : '';
    if (text === '') continue;
    out[field.key] = field.kind === 'number' ? Number(text) : text;
  }
  return out;
}

/** The non-secret settings of a listed provider worth showing, as label/value pairs. */
export function shownSettings(type: ProviderType, provider: Record<string, unknown>): { label: string; value: string }[] {
  return PROVIDER_FIELDS[type]
    .filter((f) => f.kind !== 'secret' && provider[f.key] !== undefined && provider[f.key] !== null && f.key !== 'webhook_public_key')
    .map((f) => ({ label: f.label, value: f.kind === 'checkbox' ? (provider[f.key] ? 'yes' : 'no') : String(provider[f.key] as string | number) }));
}

/** "API key, Webhook signing key" from credentials_set names. */
export function credentialLabels(type: ProviderType, names: string[]): string {
  return names.map((n) => PROVIDER_FIELDS[type].find((f) => f.key === n)?.label ?? n).join(', ');
}
