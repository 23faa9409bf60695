/**
 * Amazon SNS message verification (AWS docs: "Verifying the signatures of Amazon SNS messages"),
 * used for SES delivery events, which reach us as SNS HTTP(S) notifications.
 *
 * - The string to sign is `Name\nValue\n` for, in this order: Message, MessageId, Subject (when
 *   present), Timestamp, TopicArn, Type for a Notification; Message, MessageId, SubscribeURL,
 *   Timestamp, Token, TopicArn, Type for (Un)SubscriptionConfirmation.
 * - SignatureVersion 1 is RSA with SHA1, 2 is RSA with SHA256, over that string, with the key of
 *   the X.509 certificate at SigningCertURL.
 * - SigningCertURL must match SNS_CERT_URL_PATTERN (by default only
 *   https://sns.<region>.amazonaws.com/…) in its given and in its normalised form; anything else is
 *   refused before any request is made, so a message cannot make us fetch an address of its
 *   choosing. The certificate is fetched with a timeout, a size limit and no redirects, and cached
 *   by URL. SubscribeURL is fetched only when it matches the same pattern.
 */
import { verify, X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { AppError, describeError } from '../../core/errors.js';
import { SNS_CERT_CACHE_ENTRIES, SNS_CERT_MAX_BYTES, SNS_FETCH_TIMEOUT_MS } from '../../core/limits.js';

export const snsMessageSchema = z.looseObject({
  Type: z.enum(['Notification', 'SubscriptionConfirmation', 'UnsubscribeConfirmation']),
  MessageId: z.string(),
  TopicArn: z.string(),
  Message: z.string(),
  Timestamp: z.string(),
  SignatureVersion: z.string(),
  Signature: z.string(),
  SigningCertURL: z.string(),
  Subject: z.string().nullish(),
  SubscribeURL: z.string().optional(),
  Token: z.string().optional(),
});
export type SnsMessage = z.infer<typeof snsMessageSchema>;

/** Parses an SNS POST body; AppError bad_request when it is not an SNS message. */
export function parseSnsMessage(body: Buffer): SnsMessage {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw new AppError('bad_request', 'the SNS message is not JSON');
  }
  const parsed = snsMessageSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AppError('bad_request', `the body is not an SNS message: ${issue ? `${issue.path.join('.')}: ${issue.message}` : ''}`);
  }
  if (parsed.data.Type !== 'Notification' && (parsed.data.SubscribeURL === undefined || parsed.data.Token === undefined)) {
    throw new AppError('bad_request', `an SNS ${parsed.data.Type} needs SubscribeURL and Token`);
  }
  return parsed.data;
}

/** The canonical string SNS signs (see the header). */
export function snsStringToSign(m: SnsMessage): string {
  const fields: [string, string | null | undefined][] =
    m.Type === 'Notification'
      ? [
          ['Message', m.Message],
          ['MessageId', m.MessageId],
          ['Subject', m.Subject],
          ['Timestamp', m.Timestamp],
          ['TopicArn', m.TopicArn],
          ['Type', m.Type],
        ]
      : [
          ['Message', m.Message],
          ['MessageId', m.MessageId],
          ['SubscribeURL', m.SubscribeURL],
          ['Timestamp', m.Timestamp],
          ['Token', m.Token],
          ['TopicArn', m.TopicArn],
          ['Type', m.Type],
        ];
  return fields
    .filter((f): f is [string, string] => typeof f[1] === 'string')
    .map(([name, value]) => `${name}\n${value}\n`)
    .join('');
}

function digestOf(signatureVersion: string): 'sha1' | 'sha256' {
  if (signatureVersion === '1') return 'sha1';
  if (signatureVersion === '2') return 'sha256';
  throw new AppError('unauthorized', `unsupported SNS SignatureVersion ${JSON.stringify(signatureVersion).slice(0, 20)}`);
}

export interface SnsVerifierOptions {
  /** SNS_CERT_URL_PATTERN. */
  certUrlPattern: RegExp;
  timeoutMs?: number;
  now?: () => number;
}

export class SnsVerifier {
  private readonly certs = new Map<string, Promise<X509Certificate>>();
  private readonly timeoutMs: number;
  private readonly now: () => number;

  constructor(private readonly options: SnsVerifierOptions) {
    this.timeoutMs = options.timeoutMs ?? SNS_FETCH_TIMEOUT_MS;
    this.now = options.now ?? Date.now;
  }

  /** True when `url` may be requested: it matches the pattern as given and once normalised. */
  isAllowedUrl(url: string): boolean {
    let normalised: string;
    try {
      normalised = new URL(url).href;
    } catch {
      return false;
    }
    return this.options.certUrlPattern.test(url) && this.options.certUrlPattern.test(normalised);
  }

  /** Throws AppError unauthorized unless AWS signed `m`; upstream_unavailable when the certificate cannot be fetched. */
  async verify(m: SnsMessage): Promise<void> {
    const digest = digestOf(m.SignatureVersion);
    if (!this.isAllowedUrl(m.SigningCertURL)) throw new AppError('unauthorized', 'SigningCertURL is not an allowed SNS certificate address');
    const cert = await this.certificate(m.SigningCertURL);
    let valid = false;
    try {
      valid = verify(digest, Buffer.from(snsStringToSign(m), 'utf8'), cert.publicKey, Buffer.from(m.Signature, 'base64'));
    } catch {
      valid = false;
    }
    if (!valid) throw new AppError('unauthorized', 'the SNS message signature does not verify');
  }

  /** Confirms a verified SubscriptionConfirmation by requesting its SubscribeURL (same pattern as the certificate). */
  async confirmSubscription(m: SnsMessage): Promise<void> {
    const url = m.SubscribeURL ?? '';
    if (!this.isAllowedUrl(url)) throw new AppError('bad_request', 'SubscribeURL is not an allowed SNS address; subscription not confirmed');
    const res = await this.fetch(url, 'SubscribeURL');
    await readLimited(res, SNS_CERT_MAX_BYTES).catch(() => Buffer.alloc(0));
  }

  private async certificate(url: string): Promise<X509Certificate> {
    let pending = this.certs.get(url);
    if (!pending) {
      pending = this.fetchCertificate(url);
      this.certs.set(url, pending);
      // a failed fetch is not remembered: the provider's retry tries again
      pending.catch(() => this.certs.delete(url));
      while (this.certs.size > SNS_CERT_CACHE_ENTRIES) this.certs.delete(this.certs.keys().next().value!);
    }
    const cert = await pending;
    const nowMs = this.now();
    if (nowMs < Date.parse(cert.validFrom) || nowMs > Date.parse(cert.validTo)) {
      this.certs.delete(url);
      throw new AppError('unauthorized', 'the SNS signing certificate is not valid now');
    }
    return cert;
  }

  private async fetchCertificate(url: string): Promise<X509Certificate> {
    const res = await this.fetch(url, 'the SNS signing certificate');
    const pem = await readLimited(res, SNS_CERT_MAX_BYTES);
    try {
      return new X509Certificate(pem);
    } catch (err) {
      throw new AppError('upstream_unavailable', `the SNS signing certificate is not an X.509 certificate: ${describeError(err)}`);
    }
  }

  private async fetch(url: string, what: string): Promise<Response> {
    let res: Response;
    try {
      // no redirects: the address that matched the pattern is the only one we talk to
      res = await fetch(url, { redirect: 'error', signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (err) {
      throw new AppError('upstream_unavailable', `${what} could not be fetched: ${describeError(err)}`, { cause: err });
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new AppError('upstream_unavailable', `${what} could not be fetched: HTTP ${res.status}`);
    }
    return res;
  }
}

async function readLimited(res: Response, maxBytes: number): Promise<Buffer> {
  if (Number(res.headers.get('content-length') ?? 0) > maxBytes) {
    await res.body?.cancel();
    throw new AppError('upstream_unavailable', `response larger than ${maxBytes} bytes`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (!res.body) return Buffer.alloc(0);
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      throw new AppError('upstream_unavailable', `response larger than ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}
