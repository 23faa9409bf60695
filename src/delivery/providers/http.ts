/**
 * HTTP plumbing shared by the ESP API transports (SendGrid, Mailgun, Microsoft Graph): one
 * request with a deadline, and the one classification of an HTTP failure into a DeliveryError
 * (delivery/transport.ts), so every provider means the same thing by the same status:
 *
 * - 401/403: the credentials are wrong or lack a permission → temporary + routeUnavailable (the
 *   queue tries the next route now; the message is fine);
 * - 429, 5xx, network errors, timeouts, any other status → temporary + routeUnavailable (anything
 *   unclassified is temporary: an outage never bounces mail);
 * - 400/413/422: the provider refused this message → permanent, with the provider's own text
 *   in `reply` so the bounce says why.
 *
 * Redirects are refused: the base URLs come from operator config and an API key is never
 * carried to wherever a redirect points.
 */
import { DeliveryError, type DeliveryStage } from '../transport.js';

export interface HttpReply {
  status: number;
  headers: Headers;
  text: string;
}

/** One request; network errors and the deadline become temporary, route-unavailable DeliveryErrors. */
export async function httpRequest(label: string, url: string, init: RequestInit, timeoutMs: number): Promise<HttpReply> {
  try {
    const res = await fetch(url, { ...init, redirect: 'error', signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, headers: res.headers, text: await res.text() };
  } catch (err) {
    throw routeFailure('connect', `${label}: ${networkReason(err, timeoutMs)}`, err);
  }
}

function networkReason(err: unknown, timeoutMs: number): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return `no answer within ${timeoutMs} ms`;
  const cause = err instanceof Error ? (err.cause as { code?: string; message?: string } | undefined) : undefined;
  if (cause?.code) return `cannot reach the API (${cause.code})`;
  return `cannot reach the API (${err instanceof Error ? (cause?.message ?? err.message) : String(err)})`;
}

/** The DeliveryError for a non-success HTTP reply (see the header for the rules). */
export function httpFailure(label: string, reply: HttpReply, stage: DeliveryStage = 'http'): DeliveryError {
  return statusFailure(label, reply.status, providerErrorText(reply.text), stage);
}

/** The DeliveryError for an HTTP status and the provider's reason (also used for SDK errors). */
export function statusFailure(label: string, status: number, reason: string, stage: DeliveryStage = 'http'): DeliveryError {
  const text = `${label} ${status}: ${reason || 'no reason given'}`;
  if (status === 400 || status === 413 || status === 422) {
    return new DeliveryError('permanent', stage, text, { status: status === 413 ? '5.3.4' : '5.0.0' });
  }
  return new DeliveryError('temporary', status === 401 || status === 403 ? 'auth' : stage, text, { routeUnavailable: true, status: '4.0.0' });
}

/** A temporary, route-unavailable failure for a route that is not usable as configured or right now. */
export function routeFailure(stage: DeliveryStage, reply: string, cause?: unknown): DeliveryError {
  return new DeliveryError('temporary', stage, reply, { routeUnavailable: true, status: '4.0.0', cause });
}

/**
 * The human part of an error body in any of the shapes the providers use: SendGrid
 * `{errors: [{message}]}`, Mailgun `{message}`, Graph `{error: {code, message}}`, OAuth
 * `{error, error_description}`, AWS `{message}`; otherwise the text itself, shortened.
 */
export function providerErrorText(body: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return oneLine(body);
  }
  if (typeof parsed !== 'object' || parsed === null) return oneLine(body);
  const o = parsed as Record<string, unknown>;
  if (Array.isArray(o.errors)) {
    const messages = o.errors.map((e) => (typeof e === 'object' && e !== null ? describeItem(e as Record<string, unknown>) : String(e))).filter(Boolean);
    if (messages.length > 0) return oneLine(messages.join('; '));
  }
  if (typeof o.error === 'object' && o.error !== null) {
    const e = o.error as Record<string, unknown>;
    return oneLine([e.code, e.message].filter((x) => typeof x === 'string').join(': '));
  }
  if (typeof o.error_description === 'string') return oneLine(o.error_description);
  for (const key of ['message', 'Message', 'error'] as const) {
    if (typeof o[key] === 'string') return oneLine(o[key]);
  }
  return oneLine(body);
}

function describeItem(e: Record<string, unknown>): string {
  const message = typeof e.message === 'string' ? e.message : '';
  return typeof e.field === 'string' && e.field ? `${e.field}: ${message}` : message;
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim().slice(0, 500);
}

/** The success reply recorded on the outbound row, e.g. `202 Accepted (SendGrid id 4bX...)`. */
export function acceptedReply(label: string, reply: HttpReply, id?: string): string {
  const text = reply.status === 202 ? 'Accepted' : 'OK';
  return `${reply.status} ${text} (${label}${id ? ` id ${id}` : ''})`;
}

export function basicAuth(user: string, pass: string): string {
  return `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
}

export function parseJsonObject(text: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
