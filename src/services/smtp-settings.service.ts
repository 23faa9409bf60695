/**
 * SmtpSettingsService: a user's own outgoing SMTP server (API.md "Per-user SMTP settings"), for
 * /api/smtp/* (api/routes/smtp-settings.routes.ts) and for the delivery queue, which sends the
 * user's mail through it first (delivery/routes.ts asks transportFor()).
 *
 * Guarantees:
 * - Every user sees and changes only their own settings (the caller's id is the key).
 * - The password is encrypted with SecretBox (SECRETS_KEY) and never returned or logged; the
 *   test endpoint's failure reason has it scrubbed even if a relay echoes it back.
 * - The host goes through the SSRF guard (services/host-guard.ts) at save, at test and at every
 *   delivery connection, unless ALLOW_PRIVATE_RELAY_HOSTS is set.
 * - STARTTLS is required whenever TLS is not implicit, so the password never travels in clear.
 * - Saves and deletions are audited (smtp_settings.save, smtp_settings.delete), without the password.
 * - transportFor() caches one pooled transport per user, keyed on the row's version (updated_at and
 *   the sealed password, which gets a fresh IV on every save), so a change made by another process
 *   is picked up on the next message; save and delete close the cached one at once.
 */
import { AppError, isAppError } from '../core/errors.js';
import type { Db } from '../db/database.js';
import type { SmtpSettings } from '../db/types.js';
import { isDeliveryError, DeliveryError, type Transport } from '../delivery/transport.js';
import { createSmtpTransport } from '../delivery/transports/smtp.transport.js';
import type { AuditService } from './audit.service.js';
import { resolveAllowedHost } from './host-guard.js';
import type { SecretBox } from './secret-box.js';

/** How long POST /api/smtp/test waits for connect + EHLO + STARTTLS + AUTH. */
export const SMTP_TEST_TIMEOUT_MS = 10_000;
const IMPLICIT_TLS_PORT = 465;

export interface SmtpSettingsOptions {
  /** ALLOW_PRIVATE_RELAY_HOSTS. */
  allowPrivateHosts: boolean;
  /** Our EHLO name (MAIL_HOSTNAME). */
  heloName: string;
  /** OUTBOUND_TIMEOUT, for deliveries. */
  timeoutMs: number;
  /** Extra trusted CAs (OUTBOUND_TLS_CA_FILE). */
  ca?: string[];
  /** RELAY_URL's host and port (never its credentials), shown when a user has no settings. */
  globalRelay: { host: string; port: number; secure: boolean } | null;
}

export interface SmtpSettingsCaller {
  userId: string;
  tenantId: string;
  email: string;
}

export interface SmtpSettingsInput {
  host: string;
  port: number;
  secure?: boolean;
  user: string;
  pass: string;
}

export interface SmtpSettingsView {
  host: string | null;
  port: number | null;
  secure: boolean | null;
  user: string | null;
  hasPassword: boolean;
  isGlobal: boolean;
}

export interface SavedSmtpSettings {
  message: string;
  settings: { host: string; port: number; secure: boolean; user: string; updatedAt: Date; updatedBy: string | null };
}

export type SmtpTestResult = { success: true; message: string } | { success: false; error: string };

interface CachedTransport {
  version: string;
  transport: Transport;
}

export class SmtpSettingsService {
  private readonly cache = new Map<string, CachedTransport>();

  constructor(
    private readonly db: Db,
    private readonly secrets: SecretBox,
    private readonly audit: AuditService,
    private readonly options: SmtpSettingsOptions,
  ) {}

  async getSettings(caller: SmtpSettingsCaller): Promise<SmtpSettingsView> {
    const row = await this.find(caller.userId);
    if (row) return { host: row.host, port: row.port, secure: row.secure, user: row.username, hasPassword: row.password_enc !== '', isGlobal: false };
    const global = this.options.globalRelay;
    return { host: global?.host ?? null, port: global?.port ?? null, secure: global?.secure ?? null, user: null, hasPassword: false, isGlobal: true };
  }

  async saveSettings(caller: SmtpSettingsCaller, input: SmtpSettingsInput, ip: string): Promise<SavedSmtpSettings> {
    const secure = secureFor(input);
    await this.vetHost(input.host);
    const values = { host: input.host, port: input.port, secure, username: input.user, password_enc: this.secrets.encrypt(input.pass) };
    const row = await this.db
      .insertInto('smtp_settings')
      .values({ user_id: caller.userId, tenant_id: caller.tenantId, ...values, updated_by: caller.userId })
      .onConflict((oc) => oc.column('user_id').doUpdateSet((eb) => ({ ...values, updated_by: caller.userId, updated_at: eb.fn('now') })))
      .returningAll()
      .executeTakeFirstOrThrow();
    this.drop(caller.userId);
    await this.record(caller, 'smtp_settings.save', ip, { host: row.host, port: row.port, secure: row.secure, user: row.username });
    return {
      message: 'SMTP settings saved successfully',
      settings: { host: row.host, port: row.port, secure: row.secure, user: row.username, updatedAt: row.updated_at, updatedBy: row.updated_by },
    };
  }

  async deleteSettings(caller: SmtpSettingsCaller, ip: string): Promise<{ message: string }> {
    const removed = await this.db.deleteFrom('smtp_settings').where('user_id', '=', caller.userId).returning(['host']).executeTakeFirst();
    this.drop(caller.userId);
    if (removed) await this.record(caller, 'smtp_settings.delete', ip, { host: removed.host });
    return { message: 'SMTP settings removed. System will use global SMTP settings.' };
  }

  /** Connect + EHLO + STARTTLS + AUTH with the given settings; a failure is an answer, not an error. */
  async testSettings(input: SmtpSettingsInput): Promise<SmtpTestResult> {
    await this.vetHost(input.host);
    const transport = this.build(input.host, input.port, secureFor(input), input.user, input.pass, SMTP_TEST_TIMEOUT_MS, 'user-relay-test');
    try {
      await transport.verify();
      return { success: true, message: 'SMTP connection test successful' };
    } catch (err) {
      const reason = isDeliveryError(err) ? err.reply : err instanceof Error ? err.message : String(err);
      return { success: false, error: `SMTP connection test failed: ${scrub(reason, input)}` };
    } finally {
      transport.close();
    }
  }

  /**
   * The user's relay for the delivery queue, or null when the user has none. A row that cannot be
   * used (the password no longer decrypts) gives a transport that fails as "route unavailable",
   * so the queue moves on to the next route instead of stalling.
   */
  async transportFor(userId: string): Promise<Transport | null> {
    const row = await this.find(userId);
    if (!row) {
      this.drop(userId);
      return null;
    }
    const version = `${row.updated_at.toISOString()}|${row.password_enc}`;
    const cached = this.cache.get(userId);
    if (cached?.version === version) return cached.transport;
    cached?.transport.close();
    const transport = this.transportFromRow(row);
    this.cache.set(userId, { version, transport });
    return transport;
  }

  /** Closes every cached transport (shutdown). */
  close(): void {
    for (const { transport } of this.cache.values()) transport.close();
    this.cache.clear();
  }

  private transportFromRow(row: SmtpSettings): Transport {
    let pass: string;
    try {
      pass = this.secrets.decrypt(row.password_enc);
    } catch {
      return unusableRoute('the saved SMTP password cannot be decrypted (was SECRETS_KEY changed?); save the settings again');
    }
    return this.build(row.host, row.port, row.secure, row.username, pass, this.options.timeoutMs, 'user-relay');
  }

  private build(host: string, port: number, secure: boolean, user: string, pass: string, timeoutMs: number, route: string): Transport {
    return createSmtpTransport({
      route,
      host,
      port,
      secure,
      user,
      pass,
      requireTLS: !secure,
      heloName: this.options.heloName,
      timeoutMs,
      ca: this.options.ca,
      guard: { allowPrivate: this.options.allowPrivateHosts },
    });
  }

  /** The SSRF guard, with its refusal reported against the `host` field of the body. */
  private async vetHost(host: string): Promise<void> {
    try {
      await resolveAllowedHost(host, { allowPrivate: this.options.allowPrivateHosts });
    } catch (err) {
      if (isAppError(err) && err.code === 'validation_failed') {
        throw new AppError('validation_failed', err.message, { details: [{ in: 'body', path: 'host', message: err.message }], cause: err });
      }
      throw err;
    }
  }

  private find(userId: string): Promise<SmtpSettings | undefined> {
    return this.db.selectFrom('smtp_settings').selectAll().where('user_id', '=', userId).executeTakeFirst();
  }

  private drop(userId: string): void {
    this.cache.get(userId)?.transport.close();
    this.cache.delete(userId);
  }

  private record(caller: SmtpSettingsCaller, action: string, ip: string, details: Record<string, unknown>): Promise<void> {
    return this.audit.record({
      tenantId: caller.tenantId,
      actorUserId: caller.userId,
      actorEmail: caller.email,
      action,
      targetType: 'smtp_settings',
      targetId: caller.userId,
      ip,
      details,
    });
  }
}

/** `secure` defaults to implicit TLS on 465 only (RFC 8314 section 3.3); 587 and 25 use STARTTLS. */
function secureFor(input: SmtpSettingsInput): boolean {
  return input.secure ?? input.port === IMPLICIT_TLS_PORT;
}

/** Removes the password, and the AUTH PLAIN/LOGIN encodings of it, from text shown to the user. */
function scrub(text: string, input: SmtpSettingsInput): string {
  const forms = [
    input.pass,
    Buffer.from(input.pass).toString('base64'),
    Buffer.from(`\0${input.user}\0${input.pass}`).toString('base64'),
  ];
  return forms.filter((f) => f.length > 0).reduce((out, form) => out.split(form).join('[redacted]'), text);
}

function unusableRoute(why: string): Transport {
  const fail = (): Promise<never> => Promise.reject(new DeliveryError('temporary', 'config', why, { routeUnavailable: true }));
  return { route: 'user-relay', send: fail, verify: fail, close: () => undefined };
}
