/**
 * SendGrid as a delivery route (Transport, delivery/transport.ts): the v3 Web API,
 * `POST {SENDGRID_API_URL}/v3/mail/send` with `Authorization: Bearer <api_key>`, answered 202
 * with the message id in the `X-Message-Id` header (the id SendGrid's event webhook reports as
 * the prefix of `sg_message_id`).
 *
 * SendGrid's JSON API builds the message itself, so the finished MIME is read back into its
 * parts (providers/mime.ts): one personalization per envelope recipient (the queue sends one),
 * From and Reply-To, subject, text/plain before text/html (SendGrid requires that order),
 * attachments (inline ones with their Content-ID), and the headers SendGrid lets a sender set:
 * X- headers (except its own X-SG-*), Message-ID, In-Reply-To, References, List-* and
 * Auto-Submitted, so threads and unsubscribe links survive. `custom_args.outbound_id` carries our
 * id into the webhook events. Consequences of the JSON form: the To header shows only that
 * recipient (Cc is not repeated), and our DKIM signature is replaced by SendGrid's own (the
 * tenant authenticates its domain at SendGrid).
 *
 * `verify()` reads the key's scopes (`GET /v3/scopes`) and requires `mail.send`.
 */
import type { SendgridConfig } from './config.js';
import { acceptedReply, httpFailure, httpRequest, parseJsonObject, routeFailure } from './http.js';
import { readMimeParts, type MimeAddress, type MimeHeader, type MimeParts } from './mime.js';
import { DeliveryError, type DeliveryResult, type OutgoingMessage, type Transport } from '../transport.js';

export interface SendgridOptions {
  route: string;
  /** SENDGRID_API_URL, without a trailing slash. */
  baseUrl: string;
  timeoutMs: number;
}

const LABEL = 'SendGrid';
/** Headers SendGrid accepts in `headers` besides X- ones (its reserved list forbids To, From, Subject, ...). */
const PASSED_HEADERS = new Set(['message-id', 'in-reply-to', 'references', 'list-unsubscribe', 'list-unsubscribe-post', 'list-id', 'auto-submitted']);

export function createSendgridTransport(config: SendgridConfig, options: SendgridOptions): Transport {
  const auth = { authorization: `Bearer ${config.credentials.api_key}` };
  return {
    route: options.route,
    async send(message: OutgoingMessage): Promise<DeliveryResult> {
      const body = sendgridMail(message, await readMimeParts(message.raw));
      const reply = await httpRequest(
        LABEL,
        `${options.baseUrl}/v3/mail/send`,
        { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(body) },
        options.timeoutMs,
      );
      if (reply.status !== 202 && reply.status !== 200) throw httpFailure(LABEL, reply);
      const id = reply.headers.get('x-message-id') ?? undefined;
      return { reply: acceptedReply(LABEL, reply, id), providerMessageId: id };
    },
    async verify(): Promise<void> {
      const reply = await httpRequest(LABEL, `${options.baseUrl}/v3/scopes`, { method: 'GET', headers: auth }, options.timeoutMs);
      if (reply.status !== 200) throw httpFailure(LABEL, reply, 'auth');
      const scopes = parseJsonObject(reply.text)?.scopes;
      if (!Array.isArray(scopes) || !scopes.includes('mail.send')) {
        throw routeFailure('auth', `${LABEL}: the API key lacks the mail.send permission`);
      }
    },
    close(): void {
      // stateless HTTP: nothing pooled
    },
  };
}

/** The v3 mail/send body for one message to the envelope recipients. */
export function sendgridMail(message: OutgoingMessage, parts: MimeParts): Record<string, unknown> {
  if (message.rcptTo.length === 0) throw new DeliveryError('permanent', 'config', `${LABEL}: no recipient given`);
  const from = parts.from ?? { address: message.mailFrom, name: '' };
  if (!from.address) throw new DeliveryError('permanent', 'config', `${LABEL}: the message has no From address`);
  const body: Record<string, unknown> = {
    personalizations: message.rcptTo.map((email) => ({ to: [{ email }] })),
    from: sgAddress(from),
    // SendGrid refuses an empty subject; a message without one gets what mail clients show for it
    subject: parts.subject || '(no subject)',
    content: sgContent(parts),
    custom_args: { outbound_id: message.id },
  };
  if (parts.replyTo.length === 1) body.reply_to = sgAddress(parts.replyTo[0]!);
  else if (parts.replyTo.length > 1) body.reply_to_list = parts.replyTo.map(sgAddress);
  if (parts.attachments.length > 0) {
    body.attachments = parts.attachments.map((a) => ({
      content: a.content.toString('base64'),
      filename: a.filename,
      type: a.contentType,
      // SendGrid requires a content_id for inline parts; without one the part is a plain attachment
      disposition: a.inline && a.contentId ? 'inline' : 'attachment',
      ...(a.inline && a.contentId ? { content_id: a.contentId } : {}),
    }));
  }
  const headers = sgHeaders(parts.headers);
  if (Object.keys(headers).length > 0) body.headers = headers;
  return body;
}

function sgAddress(a: MimeAddress): { email: string; name?: string } {
  return a.name ? { email: a.address, name: a.name } : { email: a.address };
}

function sgContent(parts: MimeParts): { type: string; value: string }[] {
  const content: { type: string; value: string }[] = [];
  if (parts.text) content.push({ type: 'text/plain', value: parts.text });
  if (parts.html) content.push({ type: 'text/html', value: parts.html });
  // SendGrid needs at least one non-empty content item, even for an attachment-only message
  if (content.length === 0) content.push({ type: 'text/plain', value: ' ' });
  return content;
}

function sgHeaders(lines: MimeHeader[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { name, value } of lines) {
    const lower = name.toLowerCase();
    const passed = (lower.startsWith('x-') && !lower.startsWith('x-sg-')) || PASSED_HEADERS.has(lower);
    if (!passed || !value) continue;
    out[name] = out[name] === undefined ? value : `${out[name]}, ${value}`;
  }
  return out;
}
