/**
 * SendGrid Signed Event Webhook (docs: "Getting Started with the Event Webhook Security
 * Features"): the POST carries `X-Twilio-Email-Event-Webhook-Signature`, a base64 DER ECDSA
 * P-256 signature with SHA-256 over `timestamp + raw body`, and the timestamp in
 * `X-Twilio-Email-Event-Webhook-Timestamp`. The key is the provider's
 * `settings.webhook_public_key`, as SendGrid shows it (base64 of the DER SubjectPublicKeyInfo)
 * or as PEM. Timestamps further than WEBHOOK_MAX_AGE_MS from our clock and a signed request
 * already received are refused (replay).
 *
 * The body is a JSON array of events; ours carry `outbound_id` (custom_args of the send) and
 * `sg_message_id`, whose part before `.filter…` is the X-Message-Id we stored at send time.
 */
import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { AppError } from '../../core/errors.js';
import type { DeliveryEventKind, VerifiedWebhook, WebhookEvent, WebhookProvider, WebhookReceiver, WebhookRequest } from '../../services/delivery-events.service.js';
import { assertFreshTimestamp, RecentNonces } from './replay-guard.js';

export const SENDGRID_SIGNATURE_HEADER = 'x-twilio-email-event-webhook-signature';
export const SENDGRID_TIMESTAMP_HEADER = 'x-twilio-email-event-webhook-timestamp';

/** Parses the verification key as SendGrid shows it (base64 DER SPKI) or as PEM; null when it is not an EC P-256 public key. */
export function parseSendgridKey(text: string): KeyObject | null {
  try {
    const key = text.includes('-----BEGIN')
      ? createPublicKey(text)
      : createPublicKey({ key: Buffer.from(text.replace(/\s+/g, ''), 'base64'), format: 'der', type: 'spki' });
    return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1' ? key : null;
  } catch {
    return null;
  }
}

/** True when `signature` (base64 DER) signs `timestamp + body` under `key`. */
export function verifySendgridSignature(key: KeyObject, signature: string, timestamp: string, body: Buffer): boolean {
  const signed = Buffer.concat([Buffer.from(timestamp, 'utf8'), body]);
  try {
    return verify('sha256', signed, { key, dsaEncoding: 'der' }, Buffer.from(signature, 'base64'));
  } catch {
    // a signature that is not DER at all is simply not valid
    return false;
  }
}

const KINDS: Record<string, DeliveryEventKind> = {
  processed: 'processed',
  delivered: 'delivered',
  deferred: 'deferred',
  bounce: 'bounced',
  dropped: 'bounced',
  spamreport: 'complained',
  open: 'opened',
  click: 'clicked',
};

const sendgridEvent = z.looseObject({
  event: z.string(),
  email: z.string().min(1),
  timestamp: z.number().optional(),
  sg_message_id: z.string().optional(),
  outbound_id: z.string().optional(),
  reason: z.string().optional(),
  response: z.string().optional(),
  status: z.string().optional(),
});
const sendgridBody = z.array(sendgridEvent);

/** The events of a body; AppError bad_request when it is not SendGrid's JSON array of events. */
export function parseSendgridEvents(body: Buffer): WebhookEvent[] {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw new AppError('bad_request', 'the SendGrid event body is not JSON');
  }
  const parsed = sendgridBody.safeParse(json);
  if (!parsed.success) throw new AppError('bad_request', `the SendGrid event body is not an array of events: ${parsed.error.issues[0]?.message ?? ''}`);
  const events: WebhookEvent[] = [];
  for (const e of parsed.data) {
    const kind = KINDS[e.event];
    if (!kind) continue;
    events.push({
      event: kind,
      outboundId: e.outbound_id ?? null,
      providerMessageId: e.sg_message_id ? messageIdOf(e.sg_message_id) : null,
      recipient: e.email,
      occurredAt: e.timestamp !== undefined ? new Date(e.timestamp * 1000) : new Date(),
      reply: replyOf(e),
      payload: e,
    });
  }
  return events;
}

/** `<X-Message-Id>.filter…` → the X-Message-Id. */
function messageIdOf(sgMessageId: string): string {
  const filter = sgMessageId.indexOf('.filter');
  return (filter >= 0 ? sgMessageId.slice(0, filter) : sgMessageId).replace(/^<|>$/g, '');
}

function replyOf(e: z.infer<typeof sendgridEvent>): string | null {
  const text = e.reason ?? e.response;
  if (!text) return null;
  return e.status && !text.startsWith(e.status) ? `${e.status} ${text}` : text;
}

export class SendgridWebhook implements WebhookReceiver {
  private readonly seen = new RecentNonces();

  constructor(private readonly now: () => number = Date.now) {}

  receive(request: WebhookRequest, candidates: WebhookProvider[]): Promise<VerifiedWebhook> {
    // the executor turns a throw into a rejection: callers get a promise either way
    return new Promise((resolve) => resolve(this.verify(request, candidates)));
  }

  private verify(request: WebhookRequest, candidates: WebhookProvider[]): VerifiedWebhook {
    const signature = request.headers[SENDGRID_SIGNATURE_HEADER];
    const timestamp = request.headers[SENDGRID_TIMESTAMP_HEADER];
    if (!signature || !timestamp) throw new AppError('unauthorized', 'the SendGrid signature headers are missing');
    assertFreshTimestamp(timestamp, this.now());
    const providers = candidates.filter((p) => {
      const key = typeof p.settings.webhook_public_key === 'string' ? parseSendgridKey(p.settings.webhook_public_key) : null;
      return key !== null && verifySendgridSignature(key, signature, timestamp, request.body);
    });
    if (providers.length === 0) throw new AppError('unauthorized', 'the SendGrid signature does not verify with any configured webhook key');
    const events = parseSendgridEvents(request.body);
    // keyed on what was signed, not on the signature: an ECDSA signature can be re-encoded (s → n−s)
    const nonce = createHash('sha256').update(timestamp).update(request.body).digest('base64');
    if (!this.seen.claim(nonce, this.now())) throw new AppError('unauthorized', 'this signed request was already received (replay)');
    return { providers, events, abandon: () => this.seen.release(nonce) };
  }
}
