/**
 * Microsoft Graph (Microsoft 365 / Exchange Online) as a delivery route (Transport,
 * delivery/transport.ts), with an Azure AD app registration's client credentials:
 *
 * 1. token: `POST {MSGRAPH_LOGIN_URL}/<tenant_id>/oauth2/v2.0/token` (form: client_id,
 *    client_secret, scope=https://graph.microsoft.com/.default, grant_type=client_credentials),
 *    kept until shortly before it expires and shared by concurrent sends; a 401 from Graph drops
 *    it so the next attempt fetches a new one;
 * 2. `POST {MSGRAPH_API_URL}/v1.0/users/<sender>/sendMail`, answered 202 with no body. The sender
 *    is the provider's `sender` setting, else the envelope sender; the app needs the Mail.Send
 *    application permission on that mailbox. Graph returns no message id, so the `request-id`
 *    header (which Microsoft support asks for) is kept as the provider id.
 *
 * Why the JSON form and not Graph's MIME form: a base64 MIME body takes its recipients from the
 * To/Cc/Bcc headers, so each per-recipient call the queue makes would deliver to every recipient
 * again (duplicates). The JSON form names the envelope recipient alone in `toRecipients`, with
 * the subject, the body (HTML if the message has it, else text), attachments as
 * fileAttachments (base64, inline ones with their Content-ID), and X- headers as
 * `internetMessageHeaders` (Graph accepts only X- names there, at most 5); `saveToSentItems` is
 * false because our own Sent folder already has the copy. What that costs: Exchange rebuilds the
 * message, so the To header shows only that recipient, In-Reply-To/References are not carried,
 * and the DKIM signature is Microsoft's. Graph's request limit is 4 MB; a larger message is
 * refused (413, a permanent failure) — upload sessions for big attachments are not implemented.
 */
import type { MsgraphConfig } from './config.js';
import { httpFailure, httpRequest, parseJsonObject, routeFailure, type HttpReply } from './http.js';
import { readMimeParts, type MimeAddress, type MimeParts } from './mime.js';
import { DeliveryError, type DeliveryResult, type OutgoingMessage, type Transport } from '../transport.js';

export interface MsgraphOptions {
  route: string;
  /** MSGRAPH_API_URL, without a trailing slash. */
  graphUrl: string;
  /** MSGRAPH_LOGIN_URL, without a trailing slash. */
  loginUrl: string;
  timeoutMs: number;
  /** Clock, for token expiry (tests). */
  now?: () => number;
}

const LABEL = 'Microsoft Graph';
const GRAPH_SCOPE = 'https://graph.microsoft.com/.default';
/** A token is renewed this long before Azure AD says it expires (clock skew, a slow request). */
const TOKEN_RENEW_BEFORE_MS = 5 * 60_000;
/** Graph refuses more custom internetMessageHeaders than this on one message. */
const MAX_CUSTOM_HEADERS = 5;

interface CachedToken {
  token: string;
  renewAt: number;
}

export function createMsgraphTransport(config: MsgraphConfig, options: MsgraphOptions): Transport {
  const now = options.now ?? Date.now;
  let cached: CachedToken | null = null;
  let pending: Promise<CachedToken> | null = null;

  async function fetchToken(): Promise<CachedToken> {
    const form = new URLSearchParams({
      client_id: config.settings.client_id,
      client_secret: config.credentials.client_secret,
      scope: GRAPH_SCOPE,
      grant_type: 'client_credentials',
    });
    const url = `${options.loginUrl}/${encodeURIComponent(config.settings.tenant_id)}/oauth2/v2.0/token`;
    const reply = await httpRequest(`${LABEL} login`, url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form }, options.timeoutMs);
    return tokenFrom(reply, now());
  }

  /** A valid token, fetched at most once at a time. */
  async function token(): Promise<string> {
    if (cached && now() < cached.renewAt) return cached.token;
    pending ??= fetchToken().finally(() => {
      pending = null;
    });
    cached = await pending;
    return cached.token;
  }

  return {
    route: options.route,
    async send(message: OutgoingMessage): Promise<DeliveryResult> {
      const sender = config.settings.sender ?? message.mailFrom;
      if (!sender) throw routeFailure('config', `${LABEL}: no mailbox to send as (set the provider's sender for mail with a null sender)`);
      const body = graphSendMail(message, await readMimeParts(message.raw), sender);
      const accessToken = await token();
      const reply = await httpRequest(
        LABEL,
        `${options.graphUrl}/v1.0/users/${encodeURIComponent(sender).replace('%40', '@')}/sendMail`,
        { method: 'POST', headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' }, body: JSON.stringify(body) },
        options.timeoutMs,
      );
      if (reply.status === 401) cached = null;
      if (reply.status !== 202) throw httpFailure(LABEL, reply);
      const requestId = reply.headers.get('request-id') ?? undefined;
      return { reply: `202 Accepted (${LABEL}${requestId ? ` request-id ${requestId}` : ''})`, providerMessageId: requestId };
    },
    async verify(): Promise<void> {
      cached = await fetchToken();
    },
    close(): void {
      cached = null;
    },
  };
}

function tokenFrom(reply: HttpReply, at: number): CachedToken {
  // any refusal of the client credentials (400 invalid_client, 401) means this route cannot be used now
  if (reply.status !== 200) throw routeFailure('auth', httpFailure(`${LABEL} login`, reply, 'auth').reply);
  const json = parseJsonObject(reply.text);
  const accessToken = json?.access_token;
  const expiresIn = Number(json?.expires_in ?? 3599);
  if (typeof accessToken !== 'string' || !accessToken) {
    throw routeFailure('auth', `${LABEL} login: the token response has no access_token`);
  }
  return { token: accessToken, renewAt: at + Math.max(0, (Number.isFinite(expiresIn) ? expiresIn : 0) * 1000 - TOKEN_RENEW_BEFORE_MS) };
}

/** The sendMail JSON body for one message to the envelope recipients. */
export function graphSendMail(message: OutgoingMessage, parts: MimeParts, sender: string): Record<string, unknown> {
  if (message.rcptTo.length === 0) throw new DeliveryError('permanent', 'config', `${LABEL}: no recipient given`);
  const graphMessage: Record<string, unknown> = {
    subject: parts.subject,
    body: parts.html !== null ? { contentType: 'HTML', content: parts.html } : { contentType: 'Text', content: parts.text ?? '' },
    toRecipients: message.rcptTo.map((address) => ({ emailAddress: { address } })),
  };
  // From a different address than the mailbox needs Send As rights on it; Graph refuses otherwise (403)
  if (parts.from && parts.from.address.toLowerCase() !== sender.toLowerCase()) graphMessage.from = graphAddress(parts.from);
  if (parts.replyTo.length > 0) graphMessage.replyTo = parts.replyTo.map(graphAddress);
  if (parts.attachments.length > 0) {
    graphMessage.attachments = parts.attachments.map((a) => ({
      '@odata.type': '#microsoft.graph.fileAttachment',
      name: a.filename,
      contentType: a.contentType,
      contentBytes: a.content.toString('base64'),
      isInline: a.inline && Boolean(a.contentId),
      ...(a.contentId ? { contentId: a.contentId } : {}),
    }));
  }
  const custom = parts.headers.filter((h) => /^x-/i.test(h.name) && h.value).slice(0, MAX_CUSTOM_HEADERS);
  if (custom.length > 0) graphMessage.internetMessageHeaders = custom.map((h) => ({ name: h.name, value: h.value }));
  return { message: graphMessage, saveToSentItems: false };
}

function graphAddress(a: MimeAddress): { emailAddress: { address: string; name?: string } } {
  return { emailAddress: a.name ? { address: a.address, name: a.name } : { address: a.address } };
}
