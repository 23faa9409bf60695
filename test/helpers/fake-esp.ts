/**
 * A local stand-in for the four ESP HTTP APIs, on ONE HTTP server at 127.0.0.1:<random port>, so
 * the provider transports and the providers API are tested against real HTTP without the
 * internet. Point SENDGRID_API_URL, MAILGUN_API_URL, MAILGUN_EU_API_URL, SES_API_URL,
 * MSGRAPH_API_URL and MSGRAPH_LOGIN_URL all at `url`; the paths do not overlap:
 *
 * - SendGrid v3: `POST /v3/mail/send` (202 + X-Message-Id), `GET /v3/scopes`; Bearer key.
 * - Mailgun: `POST /v3/<domain>/messages.mime` (multipart: to, message file), `GET /v3/domains/<domain>`;
 *   basic auth `api:<key>`.
 * - Microsoft Graph: `POST /<tenant>/oauth2/v2.0/token` (client credentials form) issues tokens;
 *   `POST /v1.0/users/<sender>/sendMail` (202 + request-id) needs one of them as Bearer.
 * - SES v2: `POST /v2/email/outbound-emails`, `GET /v2/email/account`; the AWS SigV4 signature is
 *   recomputed here with node:crypto from the request as received (canonical request, string to
 *   sign, derived key) and compared, so a wrong secret or a tampered body is refused like AWS does.
 *
 * Each endpoint checks the request shape the real API requires and answers a malformed one with
 * 400 in that API's error format, so a test that gets a success knows the shape was right.
 * Every request is recorded (parsed) for assertions; `fail(endpoint, status)` makes an endpoint
 * answer that status (in the provider's error format) and `delay(endpoint, ms)` makes it slow,
 * both until `clearFailures()`.
 */
import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export type EspEndpoint = 'sendgrid.send' | 'sendgrid.scopes' | 'mailgun.send' | 'mailgun.domain' | 'graph.token' | 'graph.send' | 'ses.send' | 'ses.account';

export interface RecordedRequest {
  endpoint: EspEndpoint;
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** JSON body, form fields (strings; files as {filename, type, content}), or null. */
  body: unknown;
  /** The status the fake answered. */
  status: number;
}

export interface FormFile {
  filename: string;
  type: string;
  content: Buffer;
}

export interface FakeEspOptions {
  sendgrid?: { apiKey: string; scopes?: string[] };
  mailgun?: { apiKey: string; domains: string[] };
  graph?: { tenantId: string; clientId: string; clientSecret: string; tokenTtlSeconds?: number };
  ses?: { accessKeyId: string; secretAccessKey: string; region: string };
}

export const FAKE_ESP_DEFAULTS = {
  sendgrid: { apiKey: 'SG.fake-sendgrid-key', scopes: ['mail.send', 'user.profile.read'] },
  mailgun: { apiKey: 'key-fake-mailgun', domains: ['mg.sender.test'] },
  graph: { tenantId: '11111111-2222-3333-4444-555555555555', clientId: '66666666-7777-8888-9999-000000000000', clientSecret: 'fake-graph-secret', tokenTtlSeconds: 3599 },
  ses: { accessKeyId: 'AKIAFAKEFAKEFAKE0001', secretAccessKey: 'fake/ses/secret+key', region: 'eu-west-1' },
};

export interface FakeEsp {
  url: string;
  port: number;
  options: Required<FakeEspOptions>;
  requests: RecordedRequest[];
  /** Requests to one endpoint, oldest first. */
  calls(endpoint: EspEndpoint): RecordedRequest[];
  /** Makes an endpoint answer `status` (with `message`, in the provider's format) until cleared. */
  fail(endpoint: EspEndpoint, status: number, message?: string, errorType?: string): void;
  /** Makes an endpoint wait this long before answering (deadline tests), until clearFailures(). */
  delay(endpoint: EspEndpoint, ms: number): void;
  clearFailures(): void;
  reset(): void;
  /** Graph tokens issued so far. */
  tokensIssued(): number;
  close(): Promise<void>;
}

interface Failure {
  status: number;
  message: string;
  errorType?: string;
}

class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errorType?: string,
  ) {
    super(message);
  }
}

export async function startFakeEsp(options: FakeEspOptions = {}): Promise<FakeEsp> {
  const opts: Required<FakeEspOptions> = {
    // copies: a test may change its fake's options (e.g. the scopes) without touching the defaults
    sendgrid: structuredClone(options.sendgrid ?? FAKE_ESP_DEFAULTS.sendgrid),
    mailgun: structuredClone(options.mailgun ?? FAKE_ESP_DEFAULTS.mailgun),
    graph: structuredClone(options.graph ?? FAKE_ESP_DEFAULTS.graph),
    ses: structuredClone(options.ses ?? FAKE_ESP_DEFAULTS.ses),
  };
  const requests: RecordedRequest[] = [];
  const failures = new Map<EspEndpoint, Failure>();
  const delays = new Map<EspEndpoint, number>();
  const tokens = new Map<string, number>();
  let issued = 0;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req);
    const url = new URL(req.url ?? '/', 'http://fake');
    const endpoint = endpointOf(req.method ?? '', url.pathname);
    if (!endpoint) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ message: `no such endpoint ${req.method} ${url.pathname}` }));
      return;
    }
    const entry: RecordedRequest = { endpoint, method: req.method ?? '', path: url.pathname, headers: req.headers, body: null, status: 0 };
    requests.push(entry);
    const wait = delays.get(endpoint);
    if (wait) await new Promise((resolve) => setTimeout(resolve, wait));
    try {
      entry.body = await parseBody(req.headers, raw);
      const injected = failures.get(endpoint);
      const answer = injected ? null : serve(endpoint, req, url, raw, entry.body);
      if (injected) throw new Refusal(injected.status, injected.message, injected.errorType);
      entry.status = answer!.status;
      res.writeHead(answer!.status, { 'content-type': 'application/json', ...answer!.headers }).end(answer!.body === undefined ? '' : JSON.stringify(answer!.body));
    } catch (err) {
      const refusal = err instanceof Refusal ? err : new Refusal(500, String(err));
      entry.status = refusal.status;
      const { headers, body } = errorReply(endpoint, refusal);
      res.writeHead(refusal.status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
    }
  }

  function serve(endpoint: EspEndpoint, req: IncomingMessage, url: URL, raw: Buffer, body: unknown): Answer {
    switch (endpoint) {
      case 'sendgrid.send':
        checkBearer(req, opts.sendgrid.apiKey);
        checkSendgridMail(body);
        return { status: 202, headers: { 'x-message-id': randomBytes(11).toString('base64url') } };
      case 'sendgrid.scopes':
        checkBearer(req, opts.sendgrid.apiKey);
        return { status: 200, body: { scopes: opts.sendgrid.scopes ?? [] } };
      case 'mailgun.send': {
        checkBasic(req, 'api', opts.mailgun.apiKey);
        const domain = decodeURIComponent(url.pathname.split('/')[2] ?? '');
        if (!opts.mailgun.domains.includes(domain)) throw new Refusal(404, 'Domain not found');
        checkMailgunForm(body);
        return { status: 200, body: { id: `<${Date.now()}.${randomBytes(4).toString('hex')}@${domain}>`, message: 'Queued. Thank you.' } };
      }
      case 'mailgun.domain': {
        checkBasic(req, 'api', opts.mailgun.apiKey);
        const domain = decodeURIComponent(url.pathname.split('/')[3] ?? '');
        if (!opts.mailgun.domains.includes(domain)) throw new Refusal(404, 'Domain not found');
        return { status: 200, body: { domain: { name: domain, state: 'active' } } };
      }
      case 'graph.token':
        return issueToken(url, body);
      case 'graph.send':
        checkGraphToken(req);
        checkGraphSendMail(body);
        return { status: 202, headers: { 'request-id': randomUUID() } };
      case 'ses.send':
        checkSigV4(req, url, raw, opts.ses);
        checkSesSendEmail(body);
        return { status: 200, body: { MessageId: `0102${randomBytes(16).toString('hex')}-${randomUUID()}-000000` } };
      case 'ses.account':
        checkSigV4(req, url, raw, opts.ses);
        return { status: 200, body: { SendingEnabled: true, ProductionAccessEnabled: true, EnforcementStatus: 'HEALTHY' } };
    }
  }

  function issueToken(url: URL, body: unknown): Answer {
    const tenant = decodeURIComponent(url.pathname.split('/')[1] ?? '');
    const form = body as Record<string, unknown> | null;
    if (tenant !== opts.graph.tenantId) throw new Refusal(400, `AADSTS90002: Tenant '${tenant}' not found.`, 'invalid_request');
    if (form?.grant_type !== 'client_credentials' || form.scope !== 'https://graph.microsoft.com/.default') {
      throw new Refusal(400, 'AADSTS900144: grant_type client_credentials with the .default scope is required', 'invalid_request');
    }
    if (form.client_id !== opts.graph.clientId || form.client_secret !== opts.graph.clientSecret) {
      throw new Refusal(401, 'AADSTS7000215: Invalid client secret provided.', 'invalid_client');
    }
    const token = `eyFake.${randomBytes(24).toString('base64url')}`;
    const ttl = opts.graph.tokenTtlSeconds ?? 3599;
    tokens.set(token, Date.now() + ttl * 1000);
    issued++;
    return { status: 200, body: { token_type: 'Bearer', expires_in: ttl, ext_expires_in: ttl, access_token: token } };
  }

  function checkGraphToken(req: IncomingMessage): void {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const expires = token ? tokens.get(token) : undefined;
    if (expires === undefined || expires < Date.now()) throw new Refusal(401, 'Access token is empty or invalid.', 'InvalidAuthenticationToken');
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    options: opts,
    requests,
    calls: (endpoint) => requests.filter((r) => r.endpoint === endpoint),
    fail(endpoint, status, message = `injected failure ${status}`, errorType) {
      failures.set(endpoint, { status, message, errorType });
    },
    delay(endpoint, ms) {
      delays.set(endpoint, ms);
    },
    clearFailures() {
      failures.clear();
      delays.clear();
    },
    reset() {
      requests.length = 0;
      failures.clear();
      delays.clear();
    },
    tokensIssued: () => issued,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
}

function endpointOf(method: string, path: string): EspEndpoint | null {
  const table: [string, RegExp, EspEndpoint][] = [
    ['POST', /^\/v3\/mail\/send$/, 'sendgrid.send'],
    ['GET', /^\/v3\/scopes$/, 'sendgrid.scopes'],
    ['GET', /^\/v3\/domains\/[^/]+$/, 'mailgun.domain'],
    ['POST', /^\/v3\/[^/]+\/messages\.mime$/, 'mailgun.send'],
    ['POST', /^\/[^/]+\/oauth2\/v2\.0\/token$/, 'graph.token'],
    ['POST', /^\/v1\.0\/users\/[^/]+\/sendMail$/, 'graph.send'],
    ['POST', /^\/v2\/email\/outbound-emails$/, 'ses.send'],
    ['GET', /^\/v2\/email\/account$/, 'ses.account'],
  ];
  return table.find(([m, re]) => m === method && re.test(path))?.[2] ?? null;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

async function parseBody(headers: IncomingHttpHeaders, raw: Buffer): Promise<unknown> {
  const type = headers['content-type'] ?? '';
  if (raw.length === 0) return null;
  if (type.startsWith('application/json') || type.startsWith('application/x-amz-json')) {
    try {
      return JSON.parse(raw.toString('utf8'));
    } catch {
      throw new Refusal(400, 'the body is not valid JSON');
    }
  }
  if (type.startsWith('multipart/form-data') || type.startsWith('application/x-www-form-urlencoded')) {
    const form = await new Request('http://fake/', { method: 'POST', headers: { 'content-type': type }, body: new Uint8Array(raw) }).formData();
    const out: Record<string, string | FormFile | (string | FormFile)[]> = {};
    for (const [key, value] of form.entries()) {
      const item: string | FormFile = typeof value === 'string' ? value : { filename: value.name, type: value.type, content: Buffer.from(await value.arrayBuffer()) };
      const prev = out[key];
      out[key] = prev === undefined ? item : Array.isArray(prev) ? [...prev, item] : [prev, item];
    }
    return out;
  }
  return raw.toString('utf8');
}

function errorReply(endpoint: EspEndpoint, r: Refusal): { headers: Record<string, string>; body: unknown } {
  if (endpoint.startsWith('sendgrid.')) return { headers: {}, body: { errors: [{ message: r.message, field: null, help: null }] } };
  if (endpoint.startsWith('mailgun.')) return { headers: {}, body: { message: r.message } };
  if (endpoint === 'graph.token') return { headers: {}, body: { error: r.errorType ?? 'invalid_client', error_description: r.message } };
  if (endpoint === 'graph.send') return { headers: {}, body: { error: { code: r.errorType ?? 'ErrorInvalidRequest', message: r.message } } };
  const type = r.errorType ?? sesErrorType(r.status);
  return { headers: { 'x-amzn-errortype': type }, body: { message: r.message } };
}

function sesErrorType(status: number): string {
  if (status === 400) return 'MessageRejected';
  if (status === 401 || status === 403) return 'UnrecognizedClientException';
  if (status === 429) return 'TooManyRequestsException';
  return 'InternalFailure';
}

function checkBearer(req: IncomingMessage, key: string): void {
  if (req.headers.authorization !== `Bearer ${key}`) throw new Refusal(401, 'The provided authorization grant is invalid, expired, or revoked');
}

function checkBasic(req: IncomingMessage, user: string, pass: string): void {
  if (req.headers.authorization !== `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`) throw new Refusal(401, 'Forbidden');
}

function need(ok: unknown, message: string): void {
  if (!ok) throw new Refusal(400, message);
}

const SENDGRID_RESERVED = new Set(['x-sg-id', 'x-sg-eid', 'received', 'dkim-signature', 'content-type', 'content-transfer-encoding', 'to', 'from', 'subject', 'reply-to', 'cc', 'bcc']);

/** The rules of SendGrid's v3 mail/send that matter to us (its documented required fields and limits). */
function checkSendgridMail(body: unknown): void {
  const b = body as Record<string, unknown> | null;
  need(b && typeof b === 'object', 'the request body must be a JSON object');
  const personalizations = b!.personalizations as { to?: { email?: unknown }[] }[] | undefined;
  need(Array.isArray(personalizations) && personalizations.length > 0, 'personalizations: at least one is required');
  for (const p of personalizations!) need(Array.isArray(p.to) && p.to.length > 0 && p.to.every((t) => typeof t.email === 'string' && t.email.includes('@')), 'personalizations.to: a valid email is required');
  const from = b!.from as { email?: unknown; name?: unknown } | undefined;
  need(typeof from?.email === 'string' && from.email.includes('@'), 'from.email: a valid email is required');
  need(from?.name === undefined || (typeof from.name === 'string' && from.name.length > 0), 'from.name: must be a non-empty string');
  need(typeof b!.subject === 'string' && b!.subject.length > 0, 'subject: The subject is required');
  const content = b!.content as { type?: unknown; value?: unknown }[] | undefined;
  need(Array.isArray(content) && content.length > 0, 'content: at least one content item is required');
  need(content!.every((c) => typeof c.type === 'string' && typeof c.value === 'string' && c.value.length > 0), 'content: type and a non-empty value are required');
  const plainAt = content!.findIndex((c) => c.type === 'text/plain');
  need(plainAt <= 0, 'content: text/plain must come first');
  for (const a of (b!.attachments as Record<string, unknown>[] | undefined) ?? []) {
    need(typeof a.content === 'string' && /^[A-Za-z0-9+/]*={0,2}$/.test(a.content), 'attachments.content: must be base64');
    need(typeof a.filename === 'string' && a.filename.length > 0, 'attachments.filename: is required');
    need(a.disposition !== 'inline' || typeof a.content_id === 'string', 'attachments.content_id: is required for inline attachments');
  }
  const headers = (b!.headers as Record<string, unknown> | undefined) ?? {};
  for (const [name, value] of Object.entries(headers)) {
    need(!SENDGRID_RESERVED.has(name.toLowerCase()), `headers: ${name} is a reserved header`);
    need(typeof value === 'string', `headers: ${name} must be a string`);
  }
  for (const value of Object.values((b!.custom_args as Record<string, unknown> | undefined) ?? {})) need(typeof value === 'string', 'custom_args: values must be strings');
}

function checkMailgunForm(body: unknown): void {
  const form = body as Record<string, unknown> | null;
  need(form && typeof form === 'object', 'the request must be multipart/form-data');
  need(form!.to !== undefined, "'to' parameter is missing");
  const message = form!.message as FormFile | undefined;
  need(message && typeof message === 'object' && Buffer.isBuffer(message.content) && message.content.length > 0, "'message' parameter is missing (a file)");
}

function checkGraphSendMail(body: unknown): void {
  const b = body as { message?: Record<string, unknown>; saveToSentItems?: unknown } | null;
  need(b?.message && typeof b.message === 'object', 'message is required');
  const m = b!.message!;
  const to = m.toRecipients as { emailAddress?: { address?: unknown } }[] | undefined;
  need(Array.isArray(to) && to.length > 0 && to.every((r) => typeof r.emailAddress?.address === 'string'), 'At least one recipient is required');
  const body2 = m.body as { contentType?: unknown; content?: unknown } | undefined;
  need(body2 && (body2.contentType === 'HTML' || body2.contentType === 'Text') && typeof body2.content === 'string', 'message.body: contentType HTML or Text and content are required');
  for (const a of (m.attachments as Record<string, unknown>[] | undefined) ?? []) {
    need(a['@odata.type'] === '#microsoft.graph.fileAttachment', 'attachments: @odata.type must be #microsoft.graph.fileAttachment');
    need(typeof a.name === 'string' && typeof a.contentBytes === 'string', 'attachments: name and contentBytes are required');
  }
  const headers = (m.internetMessageHeaders as { name?: unknown; value?: unknown }[] | undefined) ?? [];
  need(headers.length <= 5, 'InvalidInternetMessageHeaderCollection: Maximum number of headers in one message should be less than or equal to 5.');
  need(headers.every((h) => typeof h.name === 'string' && /^x-/i.test(h.name) && typeof h.value === 'string'), 'InvalidInternetMessageHeader: custom headers must start with x-');
  need(b!.saveToSentItems === undefined || typeof b!.saveToSentItems === 'boolean', 'saveToSentItems must be a boolean');
}

function checkSesSendEmail(body: unknown): void {
  const b = body as { Content?: { Raw?: { Data?: unknown } }; Destination?: { ToAddresses?: unknown } } | null;
  need(typeof b?.Content?.Raw?.Data === 'string' && b.Content.Raw.Data.length > 0, 'Content.Raw.Data is required (base64)');
  need(Array.isArray(b!.Destination?.ToAddresses) && (b!.Destination.ToAddresses as unknown[]).length > 0, 'Destination.ToAddresses is required');
}

/**
 * AWS Signature Version 4 (docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html),
 * recomputed from the request as received.
 */
function checkSigV4(req: IncomingMessage, url: URL, raw: Buffer, ses: { accessKeyId: string; secretAccessKey: string; region: string }): void {
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(req.headers.authorization ?? '');
  if (!m) throw new Refusal(403, 'Missing or malformed Authorization header', 'IncompleteSignatureException');
  const [, keyId, date, region, service, signedList, signature] = m as unknown as string[];
  if (keyId !== ses.accessKeyId) throw new Refusal(403, 'The security token included in the request is invalid.', 'UnrecognizedClientException');
  if (region !== ses.region || service !== 'ses') throw new Refusal(403, `Credential should be scoped to a valid region and service ses, not ${region}/${service}`, 'SignatureDoesNotMatch');
  const amzDate = String(req.headers['x-amz-date'] ?? '');
  const at = Date.parse(amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'));
  if (!amzDate.startsWith(date!) || !Number.isFinite(at) || Math.abs(Date.now() - at) > 15 * 60_000) throw new Refusal(403, 'Signature expired or X-Amz-Date invalid', 'InvalidSignatureException');
  const signed = signedList!.split(';');
  if (!signed.includes('host') || !signed.includes('x-amz-date')) throw new Refusal(403, 'host and x-amz-date must be signed', 'SignatureDoesNotMatch');
  const payloadHash = sha256(raw);
  const declared = req.headers['x-amz-content-sha256'];
  if (typeof declared === 'string' && declared !== payloadHash) throw new Refusal(400, 'The provided x-amz-content-sha256 header does not match', 'XAmzContentSHA256Mismatch');
  const canonicalHeaders = signed.map((h) => `${h}:${headerValue(req.headers[h])}\n`).join('');
  const canonicalRequest = [req.method, canonicalUri(url.pathname), canonicalQuery(url.searchParams), canonicalHeaders, signedList, payloadHash].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(Buffer.from(canonicalRequest))].join('\n');
  let key = hmac(`AWS4${ses.secretAccessKey}`, date!);
  for (const part of [region, service, 'aws4_request']) key = hmac(key, part);
  const expected = Buffer.from(hmac(key, stringToSign).toString('hex'));
  if (!timingSafeEqual(expected, Buffer.from(signature!))) {
    throw new Refusal(403, 'The request signature we calculated does not match the signature you provided.', 'SignatureDoesNotMatch');
  }
}

function headerValue(v: string | string[] | undefined): string {
  return (Array.isArray(v) ? v.join(',') : (v ?? '')).trim().replace(/\s+/g, ' ');
}

function rfc3986(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** Non-S3 services encode each path segment of the (already encoded) path once more. */
function canonicalUri(path: string): string {
  return path.split('/').map(rfc3986).join('/');
}

function canonicalQuery(params: URLSearchParams): string {
  return [...params.entries()]
    .map(([k, v]) => [rfc3986(k), rfc3986(v)] as const)
    .sort(([a, av], [b, bv]) => (a === b ? (av < bv ? -1 : 1) : a < b ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}
