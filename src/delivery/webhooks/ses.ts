/**
 * SES delivery events through SNS (AWS docs: "Amazon SES event publishing" and "notification
 * contents"). The SNS envelope is verified by SnsVerifier; its `Message` is the SES event, with
 * `eventType` (configuration-set event publishing) or `notificationType` (identity
 * notifications): Send → processed, Delivery, Bounce (Permanent → bounced; Transient and
 * Undetermined → a `deferred` event only: an unclassified failure must not bounce mail),
 * Complaint, DeliveryDelay → deferred, Open, Click, Reject → bounced. `mail.messageId` is the
 * MessageId SES returned at send time; recipients come from the event's own object, or from
 * `mail.destination` for events about the whole message.
 *
 * A provider's `settings.sns_topic_arn`, when set, is the only topic it accepts. A
 * SubscriptionConfirmation is confirmed (GET SubscribeURL) once verified and accepted by a
 * candidate; UnsubscribeConfirmation is acknowledged and nothing else.
 */
import { z } from 'zod';
import { AppError } from '../../core/errors.js';
import type { DeliveryEventKind, VerifiedWebhook, WebhookEvent, WebhookProvider, WebhookReceiver, WebhookRequest } from '../../services/delivery-events.service.js';
import { parseSnsMessage, type SnsVerifier } from './sns.js';

const recipientEntry = z.looseObject({ emailAddress: z.string(), status: z.string().optional(), diagnosticCode: z.string().optional() });

const sesEvent = z.looseObject({
  eventType: z.string().optional(),
  notificationType: z.string().optional(),
  mail: z.looseObject({ messageId: z.string(), timestamp: z.string().optional(), destination: z.array(z.string()).default([]) }),
  delivery: z.looseObject({ recipients: z.array(z.string()).default([]), timestamp: z.string().optional(), smtpResponse: z.string().optional() }).optional(),
  bounce: z.looseObject({ bounceType: z.string(), bouncedRecipients: z.array(recipientEntry).default([]), timestamp: z.string().optional() }).optional(),
  complaint: z.looseObject({ complainedRecipients: z.array(recipientEntry).default([]), timestamp: z.string().optional() }).optional(),
  deliveryDelay: z.looseObject({ delayedRecipients: z.array(recipientEntry).default([]), timestamp: z.string().optional() }).optional(),
  open: z.looseObject({ timestamp: z.string().optional() }).optional(),
  click: z.looseObject({ timestamp: z.string().optional() }).optional(),
  reject: z.looseObject({ reason: z.string().optional() }).optional(),
  send: z.looseObject({}).optional(),
});
type SesEvent = z.infer<typeof sesEvent>;

interface Occurrence {
  kind: DeliveryEventKind;
  recipients: { address: string; reply: string | null }[];
  at: string | undefined;
}

/** The events of an SES event JSON (the SNS Message); AppError bad_request when malformed. */
export function parseSesEvents(message: string): WebhookEvent[] {
  let json: unknown;
  try {
    json = JSON.parse(message);
  } catch {
    throw new AppError('bad_request', 'the SNS Message is not an SES event (not JSON)');
  }
  // SES posts a test notification when the topic is set up; it is about no message
  if (json !== null && typeof json === 'object' && (json as { notificationType?: unknown }).notificationType === 'AmazonSnsSubscriptionSucceeded') return [];
  const parsed = sesEvent.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AppError('bad_request', `the SNS Message is not an SES event: ${issue ? `${issue.path.join('.')}: ${issue.message}` : ''}`);
  }
  const e = parsed.data;
  const occurrence = occurrenceOf(e);
  if (!occurrence) return [];
  const occurredAt = dateOr(occurrence.at ?? e.mail.timestamp);
  return occurrence.recipients.map(({ address, reply }) => ({
    event: occurrence.kind,
    outboundId: null,
    providerMessageId: e.mail.messageId,
    recipient: bareAddress(address),
    occurredAt,
    reply,
    payload: e,
  }));
}

function occurrenceOf(e: SesEvent): Occurrence | null {
  const all = (reply: string | null) => e.mail.destination.map((address) => ({ address, reply }));
  const each = (list: z.infer<typeof recipientEntry>[]) => list.map((r) => ({ address: r.emailAddress, reply: replyOf(r) }));
  switch (e.eventType ?? e.notificationType) {
    case 'Send':
      return { kind: 'processed', recipients: all(null), at: undefined };
    case 'Delivery':
      return e.delivery ? { kind: 'delivered', recipients: e.delivery.recipients.map((address) => ({ address, reply: e.delivery?.smtpResponse ?? null })), at: e.delivery.timestamp } : null;
    case 'Bounce':
      if (!e.bounce) return null;
      return { kind: e.bounce.bounceType === 'Permanent' ? 'bounced' : 'deferred', recipients: each(e.bounce.bouncedRecipients), at: e.bounce.timestamp };
    case 'Complaint':
      return e.complaint ? { kind: 'complained', recipients: each(e.complaint.complainedRecipients), at: e.complaint.timestamp } : null;
    case 'DeliveryDelay':
      return e.deliveryDelay ? { kind: 'deferred', recipients: each(e.deliveryDelay.delayedRecipients), at: e.deliveryDelay.timestamp } : null;
    case 'Open':
      return { kind: 'opened', recipients: all(null), at: e.open?.timestamp };
    case 'Click':
      return { kind: 'clicked', recipients: all(null), at: e.click?.timestamp };
    case 'Reject':
      return { kind: 'bounced', recipients: all(`rejected by SES: ${e.reject?.reason ?? 'no reason given'}`), at: undefined };
    case undefined:
    default:
      return null;
  }
}

function replyOf(r: z.infer<typeof recipientEntry>): string | null {
  if (r.diagnosticCode) return r.diagnosticCode.replace(/^smtp;\s*/i, '');
  return r.status ?? null;
}

/** `Name <a@b>` → `a@b`. */
function bareAddress(address: string): string {
  const angle = /<([^>]+)>\s*$/.exec(address);
  return (angle ? angle[1]! : address).trim();
}

function dateOr(text: string | undefined): Date {
  const ms = text ? Date.parse(text) : NaN;
  return Number.isNaN(ms) ? new Date() : new Date(ms);
}

function topicOf(p: WebhookProvider): string | null {
  const topic = p.settings.sns_topic_arn;
  return typeof topic === 'string' && topic !== '' ? topic : null;
}

export class SesWebhook implements WebhookReceiver {
  constructor(private readonly sns: SnsVerifier) {}

  async receive(request: WebhookRequest, candidates: WebhookProvider[]): Promise<VerifiedWebhook> {
    const message = parseSnsMessage(request.body);
    if (candidates.length === 0) throw new AppError('unauthorized', 'no SES provider is configured to receive events');
    await this.sns.verify(message);
    // providers pinned to this very topic first: they are the surest owners of its events
    const providers = [...candidates.filter((p) => topicOf(p) === message.TopicArn), ...candidates.filter((p) => topicOf(p) === null)];
    if (providers.length === 0) throw new AppError('unauthorized', `the SNS topic ${message.TopicArn} is not the one configured for this SES provider`);
    switch (message.Type) {
      case 'SubscriptionConfirmation':
        await this.sns.confirmSubscription(message);
        return { providers, events: [], confirmed: true };
      case 'UnsubscribeConfirmation':
        return { providers, events: [] };
      case 'Notification':
        return { providers, events: parseSesEvents(message.Message) };
    }
  }
}
