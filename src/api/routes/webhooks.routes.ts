/**
 * /api/webhooks (API.md "Delivery events"): where SendGrid, Mailgun and SES (through SNS) post
 * delivery events. No bearer auth: each provider's own signature is verified, over the raw
 * bytes, which is why these routes take `rawBody` and app.ts mounts a raw parser on
 * WEBHOOKS_PATH ahead of the JSON one (SNS posts JSON as text/plain, too).
 *
 * `/api/webhooks/<type>` tries every enabled provider of that type; `/api/webhooks/<type>/:providerId`
 * (the address to configure when one ESP account serves several providers, or to pin one) checks
 * only that provider. Answers: 200 `{recorded, ignored, confirmed?}`, 401 bad or missing
 * signature (nothing recorded), 400 malformed body, 404 unknown provider id.
 */
import { z } from 'zod';
import { WEBHOOK_TYPES, type DeliveryEventsService, type WebhookRequest, type WebhookType } from '../../services/delivery-events.service.js';
import { defineRoute, type HandlerInput, type RouteDeps } from '../route.js';

export const WEBHOOKS_PATH = '/api/webhooks';

const CONTENT_TYPES: Record<WebhookType, string[]> = {
  sendgrid: ['application/json'],
  mailgun: ['application/json'],
  ses: ['text/plain', 'application/json'],
};

const SIGNATURES: Record<WebhookType, string> = {
  sendgrid: 'Signed Event Webhook (ECDSA, settings.webhook_public_key)',
  mailgun: 'HMAC-SHA256 with credentials.webhook_signing_key',
  ses: 'SNS message signature; settings.sns_topic_arn pins the topic',
};

const outcome = z.object({ recorded: z.number().int(), ignored: z.number().int(), confirmed: z.boolean().optional() });
const providerParams = z.strictObject({ providerId: z.string() });

function webhookRequest(input: HandlerInput<unknown, unknown, unknown>): WebhookRequest {
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(input.req.headers)) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  return { headers, body: input.rawBody ?? Buffer.alloc(0) };
}

export function registerWebhookRoutes(deps: RouteDeps, events: DeliveryEventsService): void {
  for (const type of WEBHOOK_TYPES) {
    const common = {
      method: 'post',
      tag: 'webhooks',
      auth: 'none',
      rawBody: { contentTypes: CONTENT_TYPES[type] },
      responses: { 200: { description: 'events recorded (events for unknown recipients are ignored)', schema: outcome } },
    } as const;
    defineRoute(
      deps,
      { ...common, path: `${WEBHOOKS_PATH}/${type}`, summary: `${type} delivery events, verified against every enabled ${type} provider: ${SIGNATURES[type]}` },
      async (input) => ({ status: 200, body: await events.receiveWebhook(type, webhookRequest(input)) }),
    );
    defineRoute(
      deps,
      { ...common, path: `${WEBHOOKS_PATH}/${type}/:providerId`, params: providerParams, summary: `${type} delivery events for one provider: ${SIGNATURES[type]}` },
      async (input) => ({ status: 200, body: await events.receiveWebhook(type, webhookRequest(input), input.params.providerId) }),
    );
  }
}
