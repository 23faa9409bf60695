/**
 * Mailgun as a delivery route (Transport, delivery/transport.ts): the MIME endpoint,
 * `POST {base}/v3/<domain>/messages.mime` with basic auth `api:<api_key>` and a multipart form:
 * `to` = the envelope recipient (Mailgun delivers to `to` only, whatever the headers say),
 * `message` = the finished message as a file (sent byte for byte, our DKIM signature included),
 * `v:outbound-id` = our id, which Mailgun returns in its webhook events as user-variables.
 * The base is MAILGUN_API_URL, or MAILGUN_EU_API_URL for a provider in region `eu` (an EU
 * domain only exists on the EU API).
 *
 * Mailgun answers 200 `{id: "<...@domain>", message: "Queued. Thank you."}`; the id is kept
 * without its angle brackets, as the webhook events carry it (`message.headers.message-id`).
 * `verify()` reads the sending domain (`GET /v3/domains/<domain>`): it checks the key and that
 * the domain is in that account.
 */
import type { MailgunConfig } from './config.js';
import { acceptedReply, basicAuth, httpFailure, httpRequest, parseJsonObject, routeFailure } from './http.js';
import { DeliveryError, type DeliveryResult, type OutgoingMessage, type Transport } from '../transport.js';

export interface MailgunOptions {
  route: string;
  /** MAILGUN_API_URL or MAILGUN_EU_API_URL by the provider's region, without a trailing slash. */
  baseUrl: string;
  timeoutMs: number;
}

const LABEL = 'Mailgun';

export function createMailgunTransport(config: MailgunConfig, options: MailgunOptions): Transport {
  const auth = { authorization: basicAuth('api', config.credentials.api_key) };
  const domain = encodeURIComponent(config.settings.domain);
  return {
    route: options.route,
    async send(message: OutgoingMessage): Promise<DeliveryResult> {
      if (message.rcptTo.length === 0) throw new DeliveryError('permanent', 'config', `${LABEL}: no recipient given`);
      const form = new FormData();
      for (const rcpt of message.rcptTo) form.append('to', rcpt);
      form.append('message', new Blob([new Uint8Array(message.raw)], { type: 'message/rfc822' }), 'message.eml');
      form.append('v:outbound-id', message.id);
      const reply = await httpRequest(LABEL, `${options.baseUrl}/v3/${domain}/messages.mime`, { method: 'POST', headers: auth, body: form }, options.timeoutMs);
      if (reply.status !== 200) throw httpFailure(LABEL, reply);
      const rawId = parseJsonObject(reply.text)?.id;
      const id = typeof rawId === 'string' ? rawId.replace(/^<|>$/g, '') : undefined;
      return { reply: acceptedReply(LABEL, reply, id), providerMessageId: id };
    },
    async verify(): Promise<void> {
      const reply = await httpRequest(LABEL, `${options.baseUrl}/v3/domains/${domain}`, { method: 'GET', headers: auth }, options.timeoutMs);
      if (reply.status === 404) {
        throw routeFailure('config', `${LABEL}: the domain ${config.settings.domain} is not in this Mailgun account (region ${config.settings.region ?? 'us'})`);
      }
      if (reply.status !== 200) throw httpFailure(LABEL, reply, 'auth');
    },
    close(): void {
      // stateless HTTP: nothing pooled
    },
  };
}
