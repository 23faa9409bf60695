/**
 * The fields of each ESP provider type and how they are stored. A provider row keeps the
 * non-secret fields in `settings` (returned by the API) and the secret ones, sealed with
 * SecretBox, in `credentials_enc` (write-only: the API only says which names are set).
 *
 * The API body is flat (`{name, provider_type, enabled, priority?, ...fields}`, API.md "ESP
 * providers"); this module has one strict zod schema per type for creating, one for changing
 * (every field optional; `null` clears an optional one; omitted fields keep their stored value,
 * so credentials need not be sent again), and the split/merge between the flat body and the two
 * stored halves. Base URLs are never a field: they come from operator config only, as a tenant
 * choosing where we send an API key would be SSRF. Used by services/providers.service.ts (API)
 * and providers/index.ts (building transports from stored rows).
 */
import { createPublicKey } from 'node:crypto';
import { z } from 'zod';
import type { ProviderType } from '../../db/types.js';

export const PROVIDER_TYPES = ['sendgrid', 'ses', 'mailgun', 'msgraph', 'smtp'] as const satisfies readonly ProviderType[];

const secret = z.string().min(1, 'is required').max(4096);
const hostname = z
  .string()
  .trim()
  .toLowerCase()
  .max(253)
  .regex(/^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/, 'must be a domain name such as mg.example.com');
const guid = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, 'must be a GUID (Application (client) ID in Azure)');

/** SendGrid's signed-event-webhook verification key: base64 DER (as the dashboard shows it) or PEM. */
const webhookPublicKey = z
  .string()
  .trim()
  .min(1)
  .max(4096)
  .refine(isPublicKey, 'must be the verification key from SendGrid (base64 or PEM public key)');

function isPublicKey(value: string): boolean {
  try {
    if (value.includes('-----BEGIN')) createPublicKey(value);
    else createPublicKey({ key: Buffer.from(value, 'base64'), format: 'der', type: 'spki' });
    return true;
  } catch {
    return false;
  }
}

/** Per type: the non-secret settings and the secret credentials. Names never overlap within a type. */
export const SETTINGS = {
  sendgrid: z.strictObject({ webhook_public_key: webhookPublicKey.optional() }),
  ses: z.strictObject({
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d{1,2}$/, 'must be an AWS region such as eu-west-1'),
    configuration_set: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be an SES configuration set name (letters, digits, _ and -)').optional(),
    sns_topic_arn: z
      .string()
      .regex(/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/, 'must be an SNS topic ARN such as arn:aws:sns:eu-west-1:123456789012:ses-events')
      .optional(),
  }),
  mailgun: z.strictObject({ domain: hostname, region: z.enum(['us', 'eu']).optional() }),
  msgraph: z.strictObject({
    // goes into the token URL path: a GUID or a verified domain, nothing else
    tenant_id: z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/, 'must be the directory (tenant) ID or its domain name'),
    client_id: guid,
    sender: z.string().trim().max(254).email('must be the address of the mailbox to send as').optional(),
  }),
  smtp: z.strictObject({
    host: z
      .string()
      .trim()
      .min(1, 'is required')
      .max(253)
      .regex(/^[A-Za-z0-9.:[\]-]+$/, 'must be a host name or IP address'),
    port: z.number().int().min(1).max(65535),
    secure: z.boolean().optional(),
    user: z.string().min(1).max(500).optional(),
  }),
} as const;

export const CREDENTIALS = {
  sendgrid: z.strictObject({ api_key: secret }),
  ses: z.strictObject({
    access_key_id: z.string().regex(/^[A-Z0-9]{16,128}$/, 'must be an AWS access key id (16-128 upper-case letters and digits)'),
    secret_access_key: z.string().min(1, 'is required').max(128),
  }),
  mailgun: z.strictObject({ api_key: secret, webhook_signing_key: secret.optional() }),
  msgraph: z.strictObject({ client_secret: secret }),
  smtp: z.strictObject({ pass: z.string().min(1).max(1024).optional() }),
} as const;

type Settings<T extends ProviderType> = z.infer<(typeof SETTINGS)[T]>;
type Credentials<T extends ProviderType> = z.infer<(typeof CREDENTIALS)[T]>;

/** A provider's fields after validation, by type: what a transport is built from. */
export type ProviderConfig = {
  [T in ProviderType]: { type: T; name: string; settings: Settings<T>; credentials: Credentials<T> };
}[ProviderType];

export type SendgridConfig = Extract<ProviderConfig, { type: 'sendgrid' }>;
export type SesConfig = Extract<ProviderConfig, { type: 'ses' }>;
export type MailgunConfig = Extract<ProviderConfig, { type: 'mailgun' }>;
export type MsgraphConfig = Extract<ProviderConfig, { type: 'msgraph' }>;
export type SmtpProviderConfig = Extract<ProviderConfig, { type: 'smtp' }>;

export const providerName = z
  .string()
  .trim()
  .min(1, 'is required')
  .max(100)
  .regex(/^[^\s:][^:]*$/, 'must not contain ":" (it names the route, provider:<type>:<name>)');
export const providerPriority = z.number().int().min(0).max(10_000);

function createSchema<T extends ProviderType>(type: T) {
  return z.strictObject({
    name: providerName,
    provider_type: z.literal(type),
    enabled: z.boolean().default(true),
    priority: providerPriority.default(100),
    ...SETTINGS[type].shape,
    ...CREDENTIALS[type].shape,
  });
}

/** Each field optional; an optional field may be null to clear it. Required ones cannot be cleared. */
function changeFields(shape: Record<string, z.ZodType>): Record<string, z.ZodType> {
  const out: Record<string, z.ZodType> = {};
  for (const [key, field] of Object.entries(shape)) {
    out[key] = field instanceof z.ZodOptional ? field.nullable() : field.optional();
  }
  return out;
}

function updateSchema<T extends ProviderType>(type: T) {
  return z.strictObject({
    name: providerName.optional(),
    provider_type: z.literal(type),
    enabled: z.boolean().optional(),
    priority: providerPriority.optional(),
    ...changeFields(SETTINGS[type].shape),
    ...changeFields(CREDENTIALS[type].shape),
  });
}

/** POST /api/providers body. */
export const createProviderBody = z.discriminatedUnion('provider_type', [
  createSchema('sendgrid'),
  createSchema('ses'),
  createSchema('mailgun'),
  createSchema('msgraph'),
  createSchema('smtp'),
]);

/** PUT /api/providers/:id body: provider_type names the schema (and must be the stored one). */
export const updateProviderBody = z.discriminatedUnion('provider_type', [
  updateSchema('sendgrid'),
  updateSchema('ses'),
  updateSchema('mailgun'),
  updateSchema('msgraph'),
  updateSchema('smtp'),
]);

export type CreateProviderBody = z.infer<typeof createProviderBody>;
export type UpdateProviderBody = z.infer<typeof updateProviderBody>;

export interface StoredFields {
  settings: Record<string, unknown>;
  credentials: Record<string, unknown>;
}

/** Splits the type's fields of a flat body into settings and credentials (common fields are left out). */
export function splitFields(type: ProviderType, body: Record<string, unknown>): StoredFields {
  const settings: Record<string, unknown> = {};
  const credentials: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body)) {
    if (value === undefined) continue;
    if (key in SETTINGS[type].shape) settings[key] = value;
    else if (key in CREDENTIALS[type].shape) credentials[key] = value;
  }
  return { settings, credentials };
}

/** Applies a change onto stored fields: given values replace, null removes, omitted keep. */
export function mergeFields(stored: StoredFields, change: StoredFields): StoredFields {
  return { settings: applyChange(stored.settings, change.settings), credentials: applyChange(stored.credentials, change.credentials) };
}

function applyChange(stored: Record<string, unknown>, change: Record<string, unknown>): Record<string, unknown> {
  const out = { ...stored };
  for (const [key, value] of Object.entries(change)) {
    if (value === null) delete out[key];
    else out[key] = value;
  }
  return out;
}

export class ProviderConfigError extends Error {
  constructor(
    message: string,
    readonly issues: { path: string; message: string }[],
  ) {
    super(message);
    this.name = 'ProviderConfigError';
  }
}

/** Validates the complete fields of one type (a new provider, a merged change, or a stored row). */
export function parseProviderConfig(type: ProviderType, name: string, fields: StoredFields): ProviderConfig {
  const settings = SETTINGS[type].safeParse(fields.settings);
  const credentials = CREDENTIALS[type].safeParse(fields.credentials);
  const issues = [
    ...(settings.success ? [] : settings.error.issues),
    ...(credentials.success ? [] : credentials.error.issues),
  ].map((i) => ({ path: i.path.join('.'), message: i.message }));
  if (settings.success && credentials.success) issues.push(...crossFieldIssues(type, settings.data, credentials.data));
  if (issues.length > 0 || !settings.success || !credentials.success) {
    throw new ProviderConfigError(issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; '), issues);
  }
  return { type, name, settings: settings.data, credentials: credentials.data } as ProviderConfig;
}

function crossFieldIssues(type: ProviderType, settings: Record<string, unknown>, credentials: Record<string, unknown>): { path: string; message: string }[] {
  if (type !== 'smtp') return [];
  if (settings.user !== undefined && credentials.pass === undefined) return [{ path: 'pass', message: 'is required when user is set' }];
  if (settings.user === undefined && credentials.pass !== undefined) return [{ path: 'user', message: 'is required when pass is set' }];
  return [];
}

/** The settings as the API shows them, with the defaults a transport applies filled in. */
export function effectiveSettings(type: ProviderType, settings: Record<string, unknown>): Record<string, unknown> {
  switch (type) {
    case 'mailgun':
      return { ...settings, region: settings.region ?? 'us' };
    case 'smtp':
      return { ...settings, secure: settings.secure ?? settings.port === 465 };
    case 'sendgrid':
    case 'ses':
    case 'msgraph':
      return settings;
  }
}

/** `provider:<type>:<name>`: how the route is recorded on outbound rows. */
export function providerRoute(type: ProviderType, name: string): string {
  return `provider:${type}:${name}`;
}
