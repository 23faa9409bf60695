/**
 * Mailgun webhooks (docs: "Securing Webhooks"): a JSON body `{signature: {timestamp, token,
 * signature}, "event-data": {...}}`, where `signature` is the hex HMAC-SHA256 of
 * `timestamp + token` under the provider's webhook signing key (`credentials.webhook_signing_key`).
 * Compared in constant time; a timestamp further than WEBHOOK_MAX_AGE_MS from our clock or a token
 * already used is refused (replay), as Mailgun recommends.
 *
 * Events: delivered, failed (severity permanent → bounced; temporary → a `deferred` event only),
 * complained, opened, clicked, accepted (→ processed). Ours carry `user-variables["outbound-id"]`
 * (sent as `v:outbound-id`); the message's Message-ID header is Mailgun's message id, which the
 * send response gave us in angle brackets.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { AppError } from '../../core/errors.js';
import type { DeliveryEventKind, VerifiedWebhook, WebhookEvent, WebhookProvider, WebhookReceiver, WebhookRequest } from '../../services/delivery-events.service.js';
import { assertFreshTimestamp, RecentNonces } from './replay-guard.js';

const signatureBlock = z.object({
  timestamp: z.union([z.string(), z.number()]).transform(String),
  token: z.string().min(1).max(512),
  signature: z.string().min(1).max(512),
});

const eventData = z.looseObject({
  event: z.string(),
  recipient: z.string().min(1),
  timestamp: z.number().optional(),
  severity: z.string().optional(),
  reason: z.string().optional(),
  'delivery-status': z.looseObject({ code: z.union([z.number(), z.string()]).optional(), message: z.string().optional(), description: z.string().optional() }).optional(),
  message: z.looseObject({ headers: z.looseObject({ 'message-id': z.string().optional() }).optional() }).optional(),
  'user-variables': z.record(z.string(), z.unknown()).optional(),
});

/** True when `signature` is the HMAC of `timestamp + token` under `signingKey`. */
export function verifyMailgunSignature(signingKey: string, timestamp: string, token: string, signature: string): boolean {
  const expected = createHmac('sha256', signingKey).update(timestamp + token).digest();
  if (!/^[0-9a-f]+$/i.test(signature)) return false;
  const given = Buffer.from(signature, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function parseJson(body: Buffer): Record<string, unknown> {
  try {
    const json: unknown = JSON.parse(body.toString('utf8'));
    if (json !== null && typeof json === 'object' && !Array.isArray(json)) return json as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new AppError('bad_request', 'the Mailgun webhook body is not a JSON object');
}

/** The event of `event-data`, or null for kinds we do not keep; AppError bad_request when malformed. */
export function parseMailgunEvent(data: unknown): WebhookEvent | null {
  const parsed = eventData.safeParse(data);
  if (!parsed.success) throw new AppError('bad_request', `the Mailgun event-data is malformed: ${parsed.error.issues[0]?.message ?? ''}`);
  const e = parsed.data;
  const kind = kindOf(e.event, e.severity);
  if (!kind) return null;
  const outboundId = e['user-variables']?.['outbound-id'];
  const messageId = e.message?.headers?.['message-id'];
  return {
    event: kind,
    outboundId: typeof outboundId === 'string' ? outboundId : null,
    providerMessageId: messageId ? messageId.trim().replace(/^<|>$/g, '') : null,
    recipient: e.recipient,
    occurredAt: e.timestamp !== undefined ? new Date(e.timestamp * 1000) : new Date(),
    reply: replyOf(e),
    payload: e,
  };
}

function kindOf(event: string, severity: string | undefined): DeliveryEventKind | null {
  switch (event) {
    case 'accepted':
      return 'processed';
    case 'delivered':
      return 'delivered';
    case 'failed':
      // Mailgun retries a temporary failure itself: only a permanent one is a bounce
      return severity === 'permanent' ? 'bounced' : 'deferred';
    case 'complained':
      return 'complained';
    case 'opened':
      return 'opened';
    case 'clicked':
      return 'clicked';
    default:
      return null;
  }
}

function replyOf(e: z.infer<typeof eventData>): string | null {
  const status = e['delivery-status'];
  const text = status?.message || status?.description || e.reason;
  if (!text) return null;
  return status?.code !== undefined ? `${status.code} ${text}` : text;
}

export class MailgunWebhook implements WebhookReceiver {
  private readonly usedTokens = new RecentNonces();

  constructor(private readonly now: () => number = Date.now) {}

  receive(request: WebhookRequest, candidates: WebhookProvider[]): Promise<VerifiedWebhook> {
    // the executor turns a throw into a rejection: callers get a promise either way
    return new Promise((resolve) => resolve(this.verify(request, candidates)));
  }

  private verify(request: WebhookRequest, candidates: WebhookProvider[]): VerifiedWebhook {
    const body = parseJson(request.body);
    const sig = signatureBlock.safeParse(body.signature);
    if (!sig.success) throw new AppError('unauthorized', 'the Mailgun signature (timestamp, token, signature) is missing');
    const { timestamp, token, signature } = sig.data;
    assertFreshTimestamp(timestamp, this.now());
    const providers = candidates.filter((p) => {
      const key = p.credentials.webhook_signing_key;
      return typeof key === 'string' && key !== '' && verifyMailgunSignature(key, timestamp, token, signature);
    });
    if (providers.length === 0) throw new AppError('unauthorized', 'the Mailgun signature does not verify with any configured signing key');
    const event = parseMailgunEvent(body['event-data']);
    if (!this.usedTokens.claim(token, this.now())) throw new AppError('unauthorized', 'this Mailgun token was already used (replay)');
    return { providers, events: event ? [event] : [], abandon: () => this.usedTokens.release(token) };
  }
}
