/**
 * ProvidersService: a tenant's ESP providers (SendGrid, SES, Mailgun, Microsoft Graph, or any
 * SMTP relay) through the API (owner/admin), and the delivery queue's view of them as routes.
 *
 * Guarantees:
 * - Every query is scoped by the caller's tenant; an id that is not the tenant's (or not an id
 *   at all) is `not_found`. A name is unique per tenant (`conflict`).
 * - Credentials are sealed with SecretBox and never leave: responses and audit entries name
 *   which credentials are set (`credentials_set`), never their values. On a change, credentials
 *   that are not sent keep their stored values, so a client never needs to hold them.
 * - Fields are validated per type (delivery/providers/config.ts) on the complete result of a
 *   change, so a change cannot leave a provider that could not be built; the type itself cannot
 *   change (another type is another provider).
 * - Every create, change, delete and test is audited.
 *
 * transportsFor() gives the delivery queue the tenant's enabled providers as Transports, in
 * route order (priority ascending, then oldest first). Transports are cached per provider and
 * version (updated_at plus the sealed credentials, which are re-sealed with a fresh IV on every
 * change), so a change made by another process is picked up on the next delivery; a replaced or
 * removed provider's transport is closed. A provider whose stored row cannot be used (its
 * credentials no longer decrypt after a SECRETS_KEY change) is skipped with one warning, so its
 * mail moves on to the next route instead of failing.
 */
import { AppError, describeError } from '../core/errors.js';
import { isUuid } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import type { Db } from '../db/database.js';
import type { KeysetPosition } from '../db/keyset.js';
import * as repo from '../db/providers.repository.js';
import type { Provider, ProviderType } from '../db/types.js';
import {
  CREDENTIALS,
  effectiveSettings,
  mergeFields,
  parseProviderConfig,
  ProviderConfigError,
  splitFields,
  type CreateProviderBody,
  type ProviderConfig,
  type StoredFields,
  type UpdateProviderBody,
} from '../delivery/providers/config.js';
import { createProviderTransport, transportFor, type ProviderTransportDeps } from '../delivery/providers/index.js';
import { isDeliveryError, type Transport } from '../delivery/transport.js';
import type { AuditService } from './audit.service.js';
import type { Actor } from './domains.service.js';
import type { SecretBox } from './secret-box.js';


const TYPE_LABELS: Record<ProviderType, string> = { sendgrid: 'SendGrid', ses: 'SES', mailgun: 'Mailgun', msgraph: 'Microsoft Graph', smtp: 'SMTP' };

/** A provider as the API shows it: the settings flat beside the common fields, never a secret. */
export interface PublicProvider {
  id: string;
  name: string;
  provider_type: ProviderType;
  enabled: boolean;
  priority: number;
  /** Names of the credentials stored (e.g. `["api_key"]`); their values are write-only. */
  credentials_set: string[];
  created_at: Date;
  updated_at: Date;
  [setting: string]: unknown;
}

export type ProviderTestResult = { success: true; message: string } | { success: false; error: string };

interface CachedTransport {
  tenantId: string;
  version: string;
  /** null: the row cannot be used (already warned about). */
  transport: Transport | null;
}

export class ProvidersService {
  private readonly cache = new Map<string, CachedTransport>();

  constructor(
    private readonly db: Db,
    private readonly secrets: SecretBox,
    private readonly audit: AuditService,
    private readonly transportDeps: ProviderTransportDeps,
    private readonly logger: Logger,
  ) {}

  /** Newest first; `limit + 1` rows so the caller can tell whether a next page exists. */
  async listProviders(tenantId: string, limit: number, before: KeysetPosition | null): Promise<PublicProvider[]> {
    return (await repo.listForTenant(this.db, tenantId, limit, before)).map((row) => this.publicProvider(row));
  }

  async getProvider(tenantId: string, id: string): Promise<PublicProvider> {
    return this.publicProvider(await this.find(tenantId, id));
  }

  async createProvider(actor: Actor, body: CreateProviderBody): Promise<PublicProvider> {
    const { name, provider_type: type, enabled, priority, ...fields } = body;
    const config = validated(type, name, splitFields(type, fields));
    const row = await uniqueName(name, () =>
      repo.insert(this.db, actor.tenantId, type, { name, enabled, priority, settings: config.settings, credentialsEnc: this.seal(config.credentials) }),
    );
    await this.record(actor, 'provider.created', row, { name, provider_type: type, enabled, priority, credentials_set: credentialNames(type, config.credentials) });
    return this.publicProvider(row);
  }

  async updateProvider(actor: Actor, id: string, body: UpdateProviderBody): Promise<PublicProvider> {
    if (!isUuid(id)) throw notFound();
    const { name, provider_type: type, enabled, priority, ...fields } = body;
    const change = splitFields(type, fields);
    const { before, after } = await this.db.transaction().execute(async (trx) => {
      const row = await repo.lockForTenant(trx, actor.tenantId, id);
      if (!row) throw notFound();
      if (row.provider_type !== type) {
        throw new AppError('validation_failed', `provider_type cannot change (this provider is ${row.provider_type}); create a new provider instead`, {
          details: [{ in: 'body', path: 'provider_type', message: `must be ${row.provider_type}` }],
        });
      }
      const merged = mergeFields({ settings: row.settings, credentials: this.openForChange(row) }, change);
      const newName = name ?? row.name;
      const config = validated(type, newName, merged);
      const values = { name: newName, enabled: enabled ?? row.enabled, priority: priority ?? row.priority, settings: config.settings, credentialsEnc: this.seal(config.credentials) };
      return { before: row, after: await uniqueName(newName, () => repo.update(trx, row.id, values)) };
    });
    this.forget(before.id);
    await this.record(actor, 'provider.updated', after, {
      name: after.name,
      ...(after.name !== before.name ? { old_name: before.name } : {}),
      changed: changedFields(before, after, change),
      credentials_changed: Object.keys(change.credentials),
    });
    return this.publicProvider(after);
  }

  async deleteProvider(actor: Actor, id: string): Promise<void> {
    if (!isUuid(id)) throw notFound();
    const row = await repo.deleteForTenant(this.db, actor.tenantId, id);
    if (!row) throw notFound();
    this.forget(row.id);
    await this.record(actor, 'provider.deleted', row, { name: row.name, provider_type: row.provider_type });
  }

  /** Checks the stored credentials against the provider (a fresh transport, closed after). */
  async testProvider(actor: Actor, id: string): Promise<ProviderTestResult> {
    const row = await this.find(actor.tenantId, id);
    const label = TYPE_LABELS[row.provider_type];
    let result: ProviderTestResult;
    try {
      const transport = createProviderTransport(row, this.open(row), this.transportDeps);
      try {
        await transport.verify();
      } finally {
        transport.close();
      }
      result = { success: true, message: `${label} connection test successful` };
    } catch (err) {
      result = { success: false, error: `${label} connection test failed: ${isDeliveryError(err) ? err.reply : describeError(err)}` };
    }
    await this.record(actor, 'provider.tested', row, { name: row.name, success: result.success });
    return result;
  }

  /** The tenant's enabled providers as routes, in order (see the header). */
  async transportsFor(tenantId: string): Promise<Transport[]> {
    const rows = await repo.listEnabled(this.db, tenantId);
    const transports: Transport[] = [];
    for (const row of rows) {
      const transport = this.cachedTransport(row);
      if (transport) transports.push(transport);
    }
    const current = new Set(rows.map((r) => r.id));
    for (const [id, entry] of this.cache) if (entry.tenantId === tenantId && !current.has(id)) this.forget(id);
    return transports;
  }

  /** Closes every cached transport (shutdown). */
  close(): void {
    for (const id of [...this.cache.keys()]) this.forget(id);
  }

  private cachedTransport(row: Provider): Transport | null {
    const version = `${row.updated_at.toISOString()}|${row.credentials_enc}`;
    const cached = this.cache.get(row.id);
    if (cached?.version === version) return cached.transport;
    this.forget(row.id);
    let transport: Transport | null = null;
    try {
      transport = transportFor(parseProviderConfig(row.provider_type, row.name, { settings: row.settings, credentials: this.open(row) }), this.transportDeps);
    } catch (err) {
      this.logger.warn({ provider_id: row.id, tenant_id: row.tenant_id, err: describeError(err) }, 'provider skipped: its stored settings or credentials cannot be used');
    }
    this.cache.set(row.id, { tenantId: row.tenant_id, version, transport });
    return transport;
  }

  private forget(id: string): void {
    const entry = this.cache.get(id);
    if (!entry) return;
    this.cache.delete(id);
    // a send in flight on a replaced transport may fail; the queue retries it on the new one
    entry.transport?.close();
  }

  private async find(tenantId: string, id: string): Promise<Provider> {
    if (!isUuid(id)) throw notFound();
    const row = await repo.getForTenant(this.db, tenantId, id);
    if (!row) throw notFound();
    return row;
  }

  private seal(credentials: Record<string, unknown>): string {
    return this.secrets.encrypt(JSON.stringify(credentials));
  }

  /** The stored credentials; throws when they cannot be decrypted. */
  private open(row: Provider): Record<string, unknown> {
    const value: unknown = JSON.parse(this.secrets.decrypt(row.credentials_enc));
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('stored credentials are not an object');
    return value as Record<string, unknown>;
  }

  /** For a change: credentials that no longer decrypt count as unset, so sending them again repairs the row. */
  private openForChange(row: Provider): Record<string, unknown> {
    try {
      return this.open(row);
    } catch (err) {
      this.logger.warn({ provider_id: row.id, err: describeError(err) }, 'stored provider credentials cannot be decrypted; they must be sent again');
      return {};
    }
  }

  private publicProvider(row: Provider): PublicProvider {
    let names: string[] = [];
    try {
      names = credentialNames(row.provider_type, this.open(row));
    } catch (err) {
      this.logger.warn({ provider_id: row.id, err: describeError(err) }, 'stored provider credentials cannot be decrypted');
    }
    return {
      id: row.id,
      name: row.name,
      provider_type: row.provider_type,
      enabled: row.enabled,
      priority: row.priority,
      ...effectiveSettings(row.provider_type, row.settings),
      credentials_set: names,
      created_at: row.created_at,
      updated_at: row.updated_at,
    };
  }

  private async record(actor: Actor, action: string, row: Provider, details: Record<string, unknown>): Promise<void> {
    await this.audit.record({ tenantId: actor.tenantId, actorUserId: actor.userId, actorEmail: actor.email, action, targetType: 'provider', targetId: row.id, ip: actor.ip, details });
  }
}

function validated(type: ProviderType, name: string, fields: StoredFields): ProviderConfig {
  try {
    return parseProviderConfig(type, name, fields);
  } catch (err) {
    if (!(err instanceof ProviderConfigError)) throw err;
    throw new AppError('validation_failed', `invalid ${type} provider: ${err.message}`, {
      details: err.issues.map((i) => ({ in: 'body', path: i.path, message: i.message })),
    });
  }
}

/** Runs an insert/update; the unique (tenant_id, name) index turns a taken name into a conflict. */
async function uniqueName<T>(name: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    if ((err as { code?: string }).code === '23505') throw new AppError('conflict', `a provider named "${name}" already exists`, { cause: err });
    throw err;
  }
}

/** Set credential names, in the type's field order. */
function credentialNames(type: ProviderType, credentials: Record<string, unknown>): string[] {
  return Object.keys(CREDENTIALS[type].shape).filter((k) => credentials[k] !== undefined && credentials[k] !== null);
}

/** Names of the non-secret fields whose value changed (for the audit log; values of secrets never appear). */
function changedFields(before: Provider, after: Provider, change: StoredFields): string[] {
  const changed: string[] = [];
  for (const key of ['name', 'enabled', 'priority'] as const) if (before[key] !== after[key]) changed.push(key);
  for (const key of Object.keys(change.settings)) {
    if (JSON.stringify(before.settings[key]) !== JSON.stringify(after.settings[key])) changed.push(key);
  }
  return changed;
}

function notFound(): AppError {
  return new AppError('not_found', 'provider not found');
}
