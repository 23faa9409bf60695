/**
 * DeliveryEventsService: delivery events posted by the ESPs (API.md "Delivery events"; issue 4
 * item 6). The route hands over the raw request; the receiver for the provider type (built in
 * delivery/webhooks/ and passed in by the composition root) verifies the provider's signature
 * against the candidate provider rows and turns the body into normalised events; this service
 * then records each event on its outbound row, inside the tenant of the provider whose key
 * verified it, in one transaction.
 *
 * Guarantees:
 * - A request no candidate's key verifies is refused (401) before anything is written.
 * - An event only ever touches an outbound row of the verifying provider's tenant (and, when the
 *   row records the provider it went through, of that provider): a signing key of tenant A
 *   cannot change tenant B's mail.
 * - Events for rows we cannot find are ignored and still answered 200: the providers retry
 *   anything else for a day, and retrying cannot make the row appear.
 * - A permanent bounce makes the row `bounced` (from queued/sending/sent/deferred only; nothing
 *   un-bounces), keeps the diagnostic as last_reply, drops the row's blob reference when it still
 *   held one (see migration 0006), and `onBounced` runs after the commit.
 * - `last_event` follows the newest event by the provider's own time, whatever order they come in.
 */
import type { Transaction } from 'kysely';
import { AppError, describeError } from '../core/errors.js';
import { isUuid } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import type { Db } from '../db/database.js';
import {
  findOutboundByMessageId,
  insertDeliveryEvent,
  lockOutbound,
  markBouncedByEvent,
  setLastEventUnlessNewer,
  type EventOutboundRow,
} from '../db/delivery-events.repository.js';
import type { Database, ProviderType } from '../db/types.js';
import type { SecretBox } from './secret-box.js';

export const WEBHOOK_TYPES = ['sendgrid', 'mailgun', 'ses'] as const satisfies readonly ProviderType[];
export type WebhookType = (typeof WEBHOOK_TYPES)[number];

/** The event words kept in delivery_events.event and outbound.last_event. */
export type DeliveryEventKind = 'processed' | 'delivered' | 'deferred' | 'bounced' | 'complained' | 'opened' | 'clicked';

/** One provider event, normalised. `bounced` always means a permanent failure. */
export interface WebhookEvent {
  event: DeliveryEventKind;
  /** Our outbound id, when the provider echoes it (SendGrid custom_args, Mailgun user variables). */
  outboundId: string | null;
  /** The provider's id of the sent message (without angle brackets). */
  providerMessageId: string | null;
  recipient: string;
  occurredAt: Date;
  /** The remote diagnostic, for bounces and deferrals. */
  reply: string | null;
  /** The provider's event as received, kept in delivery_events.payload. */
  payload: unknown;
}

/** A provider row as the receivers see it: credentials already decrypted. */
export interface WebhookProvider {
  id: string;
  tenantId: string;
  type: WebhookType;
  settings: Record<string, unknown>;
  credentials: Record<string, unknown>;
}

export interface WebhookRequest {
  /** Lower-case header names. */
  headers: Record<string, string | undefined>;
  /** The body exactly as received: signatures are over these bytes. */
  body: Buffer;
}

export interface VerifiedWebhook {
  /** The candidates whose keys verified the request (at least one). */
  providers: WebhookProvider[];
  events: WebhookEvent[];
  /** True when the request was an SNS subscription confirmation that was confirmed. */
  confirmed?: boolean;
  /** Undo what verification remembered (a replay nonce): called when recording fails. */
  abandon?: () => void;
}

/** Verifies one provider type's webhook requests and parses their events (delivery/webhooks/). */
export interface WebhookReceiver {
  /** Throws AppError `unauthorized` when no candidate verifies the request, `bad_request` when the body is malformed. */
  receive(request: WebhookRequest, candidates: WebhookProvider[]): Promise<VerifiedWebhook>;
}

export interface WebhookOutcome {
  /** Events written to delivery_events. */
  recorded: number;
  /** Events for rows we do not know (or of kinds we do not keep). */
  ignored: number;
  confirmed?: boolean;
}

export interface DeliveryEventsOptions {
  receivers: Record<WebhookType, WebhookReceiver>;
  logger: Logger;
  /** Runs after the commit for each row a webhook made `bounced` (the DSN to the sender). */
  onBounced?: (outboundId: string, reply: string) => Promise<void>;
}


export class DeliveryEventsService {
  constructor(
    private readonly db: Db,
    private readonly secrets: SecretBox,
    private readonly options: DeliveryEventsOptions,
  ) {}

  /**
   * Handles one webhook request: `providerId` (the `/api/webhooks/<type>/:providerId` path) checks
   * only that provider; without it every enabled provider of the type is a candidate.
   */
  async receiveWebhook(type: WebhookType, request: WebhookRequest, providerId?: string): Promise<WebhookOutcome> {
    const candidates = await this.candidates(type, providerId);
    const verified = await this.verify(type, request, candidates, providerId);
    let outcome: { recorded: number; ignored: number; bounced: { id: string; reply: string }[] };
    try {
      outcome = await this.record(type, verified);
    } catch (err) {
      verified.abandon?.();
      throw err;
    }
    await this.notifyBounced(outcome.bounced);
    return { recorded: outcome.recorded, ignored: outcome.ignored, ...(verified.confirmed ? { confirmed: true } : {}) };
  }

  private async verify(type: WebhookType, request: WebhookRequest, candidates: WebhookProvider[], providerId: string | undefined): Promise<VerifiedWebhook> {
    try {
      return await this.options.receivers[type].receive(request, candidates);
    } catch (err) {
      // a misconfigured key shows up here first: say which provider type and why, never the body
      if (err instanceof AppError && err.code === 'unauthorized') {
        this.options.logger.warn({ event: 'webhook.rejected', provider_type: type, provider_id: providerId, reason: err.message }, 'delivery webhook refused');
      }
      throw err;
    }
  }

  private async candidates(type: WebhookType, providerId: string | undefined): Promise<WebhookProvider[]> {
    if (providerId !== undefined && !isUuid(providerId)) throw new AppError('not_found', `no ${type} provider ${providerId}`);
    let query = this.db
      .selectFrom('providers')
      .select(['id', 'tenant_id', 'settings', 'credentials_enc'])
      .where('provider_type', '=', type)
      .orderBy('priority')
      .orderBy('id');
    // a disabled provider still gets the events of mail it sent before: only the bare path, which
    // has to guess, limits itself to the enabled ones
    query = providerId === undefined ? query.where('enabled', '=', true) : query.where('id', '=', providerId);
    const rows = await query.execute();
    if (providerId !== undefined && rows.length === 0) throw new AppError('not_found', `no ${type} provider ${providerId}`);
    return rows.map((r) => ({ id: r.id, tenantId: r.tenant_id, type, settings: r.settings, credentials: this.openCredentials(r.id, r.credentials_enc) }));
  }

  private openCredentials(providerId: string, sealed: string): Record<string, unknown> {
    try {
      const value: unknown = JSON.parse(this.secrets.decrypt(sealed));
      return value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : {};
    } catch (err) {
      // a provider whose credentials cannot be opened (SECRETS_KEY changed) verifies nothing
      this.options.logger.warn({ provider_id: providerId, err: describeError(err) }, 'provider credentials cannot be decrypted');
      return {};
    }
  }

  private async record(type: WebhookType, verified: VerifiedWebhook) {
    return this.db.transaction().execute(async (trx) => {
      let recorded = 0;
      const bounced: { id: string; reply: string }[] = [];
      for (const event of verified.events) {
        const row = await this.findRow(trx, event, verified.providers);
        if (!row) continue;
        await setLastEventUnlessNewer(trx, row.id, event.event, event.occurredAt);
        await insertDeliveryEvent(trx, { tenantId: row.tenant_id, outboundId: row.id, provider: type, event: event.event, payload: event.payload, occurredAt: event.occurredAt });
        recorded++;
        if (event.event === 'bounced') {
          const reply = event.reply ?? `bounced (reported by ${type})`;
          if (await markBouncedByEvent(trx, row, reply)) bounced.push({ id: row.id, reply });
        }
      }
      return { recorded, ignored: verified.events.length - recorded, bounced };
    });
  }

  /** The event's row in the tenant of the first verifying provider that has it, locked. */
  private async findRow(trx: Transaction<Database>, event: WebhookEvent, providers: WebhookProvider[]): Promise<EventOutboundRow | null> {
    for (const provider of providers) {
      const scope = { tenantId: provider.tenantId, providerId: provider.id };
      if (event.outboundId && isUuid(event.outboundId)) {
        const row = await lockOutbound(trx, scope, { id: event.outboundId, recipient: event.recipient });
        if (row) return row;
      }
      if (event.providerMessageId) {
        const row = await findOutboundByMessageId(trx, scope, event.providerMessageId, event.recipient);
        if (row) return row;
      }
    }
    return null;
  }

  private async notifyBounced(rows: { id: string; reply: string }[]): Promise<void> {
    for (const { id, reply } of rows) {
      this.options.logger.info({ event: 'webhook.bounced', outbound_id: id }, 'recipient bounced (provider webhook)');
      if (!this.options.onBounced) continue;
      try {
        await this.options.onBounced(id, reply);
      } catch (err) {
        // the bounce is committed and the provider must not retry: the failure is the DSN's alone
        this.options.logger.error({ event: 'webhook.bounce_notice_failed', outbound_id: id, err: describeError(err) }, 'bounce notice failed after a webhook bounce');
      }
    }
  }
}
