/**
 * Delivery webhooks over real HTTP against the app on an embedded PostgreSQL: SendGrid (ECDSA
 * P-256 keys made here), Mailgun (HMAC), SES through SNS (a self-signed RSA certificate served by
 * a local HTTP server on 127.0.0.1, SNS_CERT_URL_PATTERN pointed at it). Providers and outbound
 * rows are written straight into the database (credentials sealed with the server's SecretBox).
 * Valid events are recorded and change the rows; every kind of bad request is refused with
 * nothing changed; events never reach another tenant's rows; a bounce returns the blob reference
 * and calls onBounced after the commit.
 */
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, randomBytes, randomUUID, sign, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { generate } from 'selfsigned';
import { createLogger } from '../../src/core/logger.js';
import type { OutboundStatus } from '../../src/db/types.js';
import { MailgunWebhook } from '../../src/delivery/webhooks/mailgun.js';
import { SendgridWebhook } from '../../src/delivery/webhooks/sendgrid.js';
import { SesWebhook } from '../../src/delivery/webhooks/ses.js';
import { SnsVerifier } from '../../src/delivery/webhooks/sns.js';
import { DeliveryEventsService } from '../../src/services/delivery-events.service.js';
import { SecretBox } from '../../src/services/secret-box.js';
import { seedMailbox, startTestServer, type TestServer } from '../helpers/harness.js';
import { call, type ApiResponse } from '../helpers/http.js';
import { UNTHROTTLED_ENV } from '../helpers/users-api.js';

let t: TestServer;
let tenantA = '';
let tenantB = '';

before(async () => {
  t = await startTestServer({ ...UNTHROTTLED_ENV, ROLES: 'api', SNS_CERT_URL_PATTERN: '^http://127\\.0\\.0\\.1:\\d+/' });
  tenantA = (await seedMailbox(t.services, 'alice@wh-a.test')).user.tenant_id;
  tenantB = (await seedMailbox(t.services, 'bob@wh-b.test')).user.tenant_id;
});
after(async () => {
  await t.stop();
});

// ---- database setup -------------------------------------------------------------------------

async function addProvider(tenantId: string, type: 'sendgrid' | 'mailgun' | 'ses', settings: Record<string, unknown>, credentials: Record<string, unknown> = {}): Promise<string> {
  const box = new SecretBox(t.config.SECRETS_KEY);
  const row = await t.services.db
    .insertInto('providers')
    .values({ tenant_id: tenantId, name: `${type}-${randomBytes(4).toString('hex')}`, provider_type: type, settings: JSON.stringify(settings), credentials_enc: box.encrypt(JSON.stringify(credentials)) })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

interface Row {
  id: string;
  blobKey: string;
}

/** An outbound row with its own blob; a row not yet sent holds one reference on it (migration 0006). */
async function addOutbound(tenantId: string, o: { status: OutboundStatus; rcpt: string; providerId?: string | null; providerMessageId?: string | null }): Promise<Row> {
  const blobKey = `wh-${randomBytes(8).toString('hex')}`;
  const held = o.status === 'queued' || o.status === 'sending' || o.status === 'deferred';
  await t.services.db.insertInto('blobs').values({ key: blobKey, sha256: 'x'.repeat(64), size: 5, refcount: held ? 1 : 0, data: Buffer.from('hello') }).execute();
  const row = await t.services.db
    .insertInto('outbound')
    .values({
      tenant_id: tenantId,
      raw_blob_key: blobKey,
      mail_from: 'alice@wh-a.test',
      rcpt_to: o.rcpt,
      status: o.status,
      provider_id: o.providerId ?? null,
      provider_message_id: o.providerMessageId ?? null,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { id: row.id, blobKey };
}

async function outboundRow(id: string) {
  return t.services.db.selectFrom('outbound').select(['status', 'last_event', 'last_reply']).where('id', '=', id).executeTakeFirstOrThrow();
}

async function refcount(key: string): Promise<number> {
  return (await t.services.db.selectFrom('blobs').select('refcount').where('key', '=', key).executeTakeFirstOrThrow()).refcount;
}

async function eventsOf(id: string): Promise<{ event: string; provider: string }[]> {
  return t.services.db.selectFrom('delivery_events').select(['event', 'provider']).where('outbound_id', '=', id).orderBy('occurred_at').execute();
}

/** Everything a webhook could change, to prove a refused request changed nothing. */
async function snapshot(): Promise<unknown> {
  const outbound = await t.services.db.selectFrom('outbound').select(['id', 'status', 'last_event', 'last_reply', 'updated_at']).orderBy('id').execute();
  const events = await t.services.db.selectFrom('delivery_events').select('id').orderBy('id').execute();
  const blobs = await t.services.db.selectFrom('blobs').select(['key', 'refcount']).orderBy('key').execute();
  return { outbound, events, blobs };
}

function post(path: string, body: Buffer | string, headers: Record<string, string> = {}): Promise<ApiResponse<{ recorded?: number; ignored?: number; confirmed?: boolean; error?: string; code?: string }>> {
  return call(t.apiPort, 'POST', path, { rawBody: body.toString(), headers: { 'content-type': 'application/json', ...headers } });
}

function assertRefused(res: ApiResponse<{ error?: string; code?: string }>, status: number, code: string, label: string): void {
  assert.equal(res.status, status, `${label}: ${res.text}`);
  assert.equal(res.body.code, code, label);
  assert.equal(typeof res.body.error, 'string', label);
}

const unix = (offsetSeconds = 0) => String(Math.floor(Date.now() / 1000) + offsetSeconds);

// ---- SendGrid -------------------------------------------------------------------------------

describe('SendGrid event webhook', () => {
  const keyA = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const keyB = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const stranger = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const shown = (k: KeyObject) => k.export({ format: 'der', type: 'spki' }).toString('base64');
  let providerA = '';
  let providerB = '';
  let a1: Row, a2: Row, b1: Row;
  let firstRequest: { body: string; headers: Record<string, string> };

  function signed(events: unknown[], key: KeyObject = keyA.privateKey, timestamp = unix()): { body: string; headers: Record<string, string> } {
    const body = JSON.stringify(events);
    const signature = sign('sha256', Buffer.from(timestamp + body), key).toString('base64');
    return { body, headers: { 'X-Twilio-Email-Event-Webhook-Signature': signature, 'X-Twilio-Email-Event-Webhook-Timestamp': timestamp } };
  }

  before(async () => {
    providerA = await addProvider(tenantA, 'sendgrid', { webhook_public_key: shown(keyA.publicKey) }, { api_key: 'SG.a' });
    // tenant B shows its key as PEM: both spellings are accepted
    providerB = await addProvider(tenantB, 'sendgrid', { webhook_public_key: keyB.publicKey.export({ format: 'pem', type: 'spki' }).toString() }, { api_key: 'SG.b' });
    a1 = await addOutbound(tenantA, { status: 'sent', rcpt: 'r1@remote.test', providerId: providerA, providerMessageId: 'sgA1' });
    a2 = await addOutbound(tenantA, { status: 'deferred', rcpt: 'r2@remote.test', providerId: providerA, providerMessageId: 'sgA2' });
    b1 = await addOutbound(tenantB, { status: 'sent', rcpt: 'r1@remote.test', providerId: providerB, providerMessageId: 'sgB1' });
  });

  it('when a signed batch arrives, then its events are recorded on the tenant rows, a bounce bounces and others are ignored', async () => {
    const ts = Math.floor(Date.now() / 1000);
    firstRequest = signed([
      { email: 'r1@remote.test', event: 'open', timestamp: ts + 20, outbound_id: a1.id },
      { email: 'R1@remote.test', event: 'delivered', timestamp: ts + 10, outbound_id: a1.id },
      { email: 'r2@remote.test', event: 'bounce', timestamp: ts + 5, sg_message_id: 'sgA2.filterdrecv-1.0', reason: '550 5.1.1 unknown user', status: '5.1.1' },
      { email: 'r1@remote.test', event: 'delivered', timestamp: ts, outbound_id: b1.id },
      { email: 'r1@remote.test', event: 'delivered', timestamp: ts, sg_message_id: 'sgB1.filterdrecv-1.0' },
      { email: 'x@remote.test', event: 'delivered', timestamp: ts, outbound_id: randomUUID() },
      { email: 'x@remote.test', event: 'delivered', timestamp: ts, outbound_id: 'not-a-uuid' },
    ]);
    const res = await post('/api/webhooks/sendgrid', firstRequest.body, firstRequest.headers);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { recorded: 3, ignored: 4 });

    assert.deepEqual(await outboundRow(a1.id), { status: 'sent', last_event: 'opened', last_reply: null }, 'the newest event wins, whatever the order');
    assert.deepEqual(await eventsOf(a1.id), [
      { event: 'delivered', provider: 'sendgrid' },
      { event: 'opened', provider: 'sendgrid' },
    ]);
    assert.deepEqual(await outboundRow(a2.id), { status: 'bounced', last_event: 'bounced', last_reply: '5.1.1 550 5.1.1 unknown user' });
    assert.equal(await refcount(a2.blobKey), 0, 'the bounced row gave back its blob reference');
    assert.deepEqual(await outboundRow(b1.id), { status: 'sent', last_event: null, last_reply: null }, "tenant B's row is untouched");
    assert.deepEqual(await eventsOf(b1.id), []);
  });

  it('when a request is forged, tampered, stale, unsigned, replayed or for another provider, then it is 401 and nothing changes', async () => {
    const before = await snapshot();
    const event = [{ email: 'r1@remote.test', event: 'bounce', timestamp: Number(unix()), outbound_id: a1.id, reason: 'forged' }];
    const good = signed(event);
    const stale = signed(event, keyA.privateKey, unix(-11 * 60));
    const cases: [string, string, { body: string; headers: Record<string, string> }][] = [
      ['signed by an unknown key', '/api/webhooks/sendgrid', signed(event, stranger.privateKey)],
      ['tampered body', '/api/webhooks/sendgrid', { body: good.body.replace('forged', 'changed'), headers: good.headers }],
      ['stale timestamp', '/api/webhooks/sendgrid', stale],
      ['no signature headers', '/api/webhooks/sendgrid', { body: good.body, headers: {} }],
      ['replay of an accepted request', '/api/webhooks/sendgrid', firstRequest],
      ["A's signature on B's provider address", `/api/webhooks/sendgrid/${providerB}`, good],
      ["B's key on A's provider address", `/api/webhooks/sendgrid/${providerA}`, signed(event, keyB.privateKey)],
    ];
    for (const [label, path, req] of cases) assertRefused(await post(path, req.body, req.headers), 401, 'unauthorized', label);
    assert.deepEqual(await snapshot(), before);
  });

  it('when the body is malformed or the provider unknown, then it is 400 or 404 and nothing changes', async () => {
    const before = await snapshot();
    const notJson = 'this is not json';
    const timestamp = unix();
    const headers = { 'X-Twilio-Email-Event-Webhook-Signature': sign('sha256', Buffer.from(timestamp + notJson), keyA.privateKey).toString('base64'), 'X-Twilio-Email-Event-Webhook-Timestamp': timestamp };
    assertRefused(await post('/api/webhooks/sendgrid', notJson, headers), 400, 'bad_request', 'signed non-JSON');
    const noEmail = signed([{ event: 'delivered', timestamp: 1 }]);
    assertRefused(await post('/api/webhooks/sendgrid', noEmail.body, noEmail.headers), 400, 'bad_request', 'event without email');
    assertRefused(await post(`/api/webhooks/sendgrid/${randomUUID()}`, '[]', signed([]).headers), 404, 'not_found', 'unknown provider');
    assertRefused(await post('/api/webhooks/sendgrid/not-an-id', '[]', signed([]).headers), 404, 'not_found', 'malformed provider id');
    assertRefused(await post('/api/webhooks/postmark', '[]'), 404, 'not_found', 'unknown type');
    assert.deepEqual(await snapshot(), before);
  });

  it('when posted to its own provider address, then the event is recorded; text/plain bodies are read raw too', async () => {
    const req = signed([{ email: 'r1@remote.test', event: 'click', timestamp: Number(unix(30)), outbound_id: b1.id }], keyB.privateKey);
    const res = await post(`/api/webhooks/sendgrid/${providerB}`, req.body, { ...req.headers, 'content-type': 'text/plain' });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { recorded: 1, ignored: 0 });
    assert.equal((await outboundRow(b1.id)).last_event, 'clicked');
  });

  it('when the OpenAPI document is read, then every webhook route is in it without bearer auth', async () => {
    const doc = await call<{ paths: Record<string, Record<string, { security: unknown[]; requestBody?: { content: Record<string, unknown> } }>> }>(t.apiPort, 'GET', '/api/openapi.json');
    for (const type of ['sendgrid', 'mailgun', 'ses']) {
      for (const path of [`/api/webhooks/${type}`, `/api/webhooks/${type}/{providerId}`]) {
        const op = doc.body.paths[path]?.post;
        assert.ok(op, path);
        assert.deepEqual(op.security, []);
        assert.ok(op.requestBody?.content[type === 'ses' ? 'text/plain' : 'application/json'], path);
      }
    }
  });
});

// ---- Mailgun --------------------------------------------------------------------------------

describe('Mailgun webhook', () => {
  const signingKey = `key-${randomBytes(16).toString('hex')}`;
  let provider = '';
  let m1: Row, m2: Row, b2: Row;

  function signed(eventData: Record<string, unknown>, o: { key?: string; timestamp?: string; token?: string } = {}): string {
    const timestamp = o.timestamp ?? unix();
    const token = o.token ?? randomBytes(25).toString('hex');
    const signature = createHmac('sha256', o.key ?? signingKey).update(timestamp + token).digest('hex');
    return JSON.stringify({ signature: { timestamp, token, signature }, 'event-data': eventData });
  }

  before(async () => {
    provider = await addProvider(tenantA, 'mailgun', { domain: 'mg.wh-a.test' }, { api_key: 'key-api', webhook_signing_key: signingKey });
    m1 = await addOutbound(tenantA, { status: 'deferred', rcpt: 'r3@remote.test', providerId: provider, providerMessageId: '<mg-1@mg.wh-a.test>' });
    m2 = await addOutbound(tenantA, { status: 'sent', rcpt: 'r4@remote.test', providerId: provider, providerMessageId: '<mg-2@mg.wh-a.test>' });
    b2 = await addOutbound(tenantB, { status: 'sent', rcpt: 'r4@remote.test', providerMessageId: 'mg-3@mg.wh-b.test' });
  });

  it('when a permanent failure arrives, then the row bounces with the diagnostic and gives back its blob reference', async () => {
    const body = signed({
      event: 'failed',
      severity: 'permanent',
      recipient: 'r3@remote.test',
      timestamp: Date.now() / 1000,
      'delivery-status': { code: 550, message: '5.1.1 mailbox unavailable' },
      'user-variables': { 'outbound-id': m1.id },
    });
    const res = await post('/api/webhooks/mailgun', body);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { recorded: 1, ignored: 0 });
    assert.deepEqual(await outboundRow(m1.id), { status: 'bounced', last_event: 'bounced', last_reply: '550 5.1.1 mailbox unavailable' });
    assert.equal(await refcount(m1.blobKey), 0);
  });

  it('when a temporary failure arrives by Message-ID, then only a deferred event is recorded', async () => {
    const body = signed({ event: 'failed', severity: 'temporary', recipient: 'r4@remote.test', timestamp: Date.now() / 1000, message: { headers: { 'message-id': 'mg-2@mg.wh-a.test' } } });
    const res = await post(`/api/webhooks/mailgun/${provider}`, body);
    assert.deepEqual(res.body, { recorded: 1, ignored: 0 });
    assert.deepEqual(await outboundRow(m2.id), { status: 'sent', last_event: 'deferred', last_reply: null });
  });

  it("when an event names another tenant's message, then it is ignored and that row is untouched", async () => {
    const res = await post('/api/webhooks/mailgun', signed({ event: 'failed', severity: 'permanent', recipient: 'r4@remote.test', message: { headers: { 'message-id': 'mg-3@mg.wh-b.test' } }, 'user-variables': { 'outbound-id': b2.id } }));
    assert.deepEqual(res.body, { recorded: 0, ignored: 1 });
    assert.deepEqual(await outboundRow(b2.id), { status: 'sent', last_event: null, last_reply: null });
  });

  it('when the key is wrong, the timestamp stale, the token reused or the body malformed, then it is refused and nothing changes', async () => {
    const event = { event: 'failed', severity: 'permanent', recipient: 'r4@remote.test', 'user-variables': { 'outbound-id': m2.id } };
    const token = randomBytes(25).toString('hex');
    const first = await post('/api/webhooks/mailgun', signed({ event: 'opened', recipient: 'r4@remote.test', 'user-variables': { 'outbound-id': m2.id } }, { token }));
    assert.equal(first.status, 200, first.text);
    const before = await snapshot();
    assertRefused(await post('/api/webhooks/mailgun', signed(event, { key: 'key-wrong' })), 401, 'unauthorized', 'wrong key');
    assertRefused(await post('/api/webhooks/mailgun', signed(event, { timestamp: unix(-11 * 60) })), 401, 'unauthorized', 'stale timestamp');
    assertRefused(await post('/api/webhooks/mailgun', signed(event, { token })), 401, 'unauthorized', 'reused token');
    assertRefused(await post('/api/webhooks/mailgun', JSON.stringify({ 'event-data': event })), 401, 'unauthorized', 'no signature');
    assertRefused(await post('/api/webhooks/mailgun', '{"signature":'), 400, 'bad_request', 'not JSON');
    assertRefused(await post('/api/webhooks/mailgun', signed({ event: 'failed' })), 400, 'bad_request', 'event-data without recipient');
    assert.deepEqual(await snapshot(), before);
  });
});

// ---- SES through SNS ------------------------------------------------------------------------

describe('SES events through SNS', () => {
  const TOPIC = 'arn:aws:sns:eu-west-1:123456789012:ses-events';
  let certServer: Server;
  let certBase = '';
  let privateKey = '';
  const hits: string[] = [];
  let s1: Row, s2: Row, b3: Row;

  before(async () => {
    const pems = await generate([{ name: 'commonName', value: 'sns.eu-west-1.amazonaws.test' }], {
      keySize: 2048,
      algorithm: 'sha256',
      notBeforeDate: new Date(Date.now() - 86_400_000),
      notAfterDate: new Date(Date.now() + 30 * 86_400_000),
    });
    privateKey = pems.private;
    certServer = createServer((req, res) => {
      hits.push(req.url ?? '');
      if (req.url === '/SimpleNotificationService-test.pem') res.end(pems.cert);
      else if (req.url?.startsWith('/confirm?')) res.end('<ConfirmSubscriptionResponse/>');
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => certServer.listen(0, '127.0.0.1', resolve));
    certBase = `http://127.0.0.1:${(certServer.address() as AddressInfo).port}`;
    const provider = await addProvider(tenantA, 'ses', { region: 'eu-west-1', sns_topic_arn: TOPIC }, { access_key_id: 'AKIA', secret_access_key: 's' });
    s1 = await addOutbound(tenantA, { status: 'sent', rcpt: 'r5@remote.test', providerId: provider, providerMessageId: 'ses-msg-1' });
    s2 = await addOutbound(tenantA, { status: 'sent', rcpt: 'r6@remote.test', providerId: provider, providerMessageId: 'ses-msg-2' });
    b3 = await addOutbound(tenantB, { status: 'sent', rcpt: 'r5@remote.test', providerMessageId: 'ses-msg-3' });
  });
  after(async () => {
    certServer.closeAllConnections();
    await new Promise((resolve) => certServer.close(resolve));
  });

  /** The canonical string, written out from the AWS documentation independently of ours. */
  function stringToSign(m: Record<string, string>): string {
    const keys = m.Type === 'Notification' ? ['Message', 'MessageId', 'Subject', 'Timestamp', 'TopicArn', 'Type'] : ['Message', 'MessageId', 'SubscribeURL', 'Timestamp', 'Token', 'TopicArn', 'Type'];
    return keys.filter((k) => m[k] !== undefined).map((k) => `${k}\n${m[k]}\n`).join('');
  }

  function snsMessage(fields: Record<string, string>, o: { version?: '1' | '2'; certUrl?: string } = {}): string {
    const m: Record<string, string> = {
      MessageId: randomUUID(),
      TopicArn: TOPIC,
      Timestamp: new Date().toISOString(),
      SignatureVersion: o.version ?? '2',
      SigningCertURL: o.certUrl ?? `${certBase}/SimpleNotificationService-test.pem`,
      ...fields,
    };
    m.Signature = sign(m.SignatureVersion === '1' ? 'sha1' : 'sha256', Buffer.from(stringToSign(m)), privateKey).toString('base64');
    return JSON.stringify(m);
  }

  const notification = (sesEvent: unknown, o?: { version?: '1' | '2'; certUrl?: string }, extra: Record<string, string> = {}) =>
    snsMessage({ Type: 'Notification', Message: JSON.stringify(sesEvent), ...extra }, o);
  const postSns = (body: string, path = '/api/webhooks/ses') => post(path, body, { 'content-type': 'text/plain; charset=UTF-8', 'x-amz-sns-message-type': 'Notification' });

  it('when a signed SubscriptionConfirmation arrives, then its SubscribeURL is requested', async () => {
    const body = snsMessage({ Type: 'SubscriptionConfirmation', Message: 'You have chosen to subscribe', Token: 'tok-1', SubscribeURL: `${certBase}/confirm?Token=tok-1` });
    const res = await postSns(body);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { recorded: 0, ignored: 0, confirmed: true });
    assert.ok(hits.includes('/confirm?Token=tok-1'));
  });

  it('when SES reports a permanent bounce and a delivery (signature versions 2 and 1), then the rows change; the certificate is fetched once', async () => {
    const bounce = {
      notificationType: 'Bounce',
      mail: { messageId: 'ses-msg-1', timestamp: new Date().toISOString(), destination: ['r5@remote.test'] },
      bounce: { bounceType: 'Permanent', bouncedRecipients: [{ emailAddress: 'r5@remote.test', status: '5.1.1', diagnosticCode: 'smtp; 550 5.1.1 no such user' }] },
    };
    const res = await postSns(notification(bounce, {}, { Subject: 'Amazon SES Email Event Notification' }));
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { recorded: 1, ignored: 0 });
    assert.deepEqual(await outboundRow(s1.id), { status: 'bounced', last_event: 'bounced', last_reply: '550 5.1.1 no such user' });

    const delivery = { eventType: 'Delivery', mail: { messageId: 'ses-msg-2', destination: ['r6@remote.test'] }, delivery: { recipients: ['r6@remote.test'], smtpResponse: '250 ok' } };
    const res2 = await postSns(notification(delivery, { version: '1' }));
    assert.deepEqual(res2.body, { recorded: 1, ignored: 0 });
    assert.equal((await outboundRow(s2.id)).last_event, 'delivered');
    assert.equal(hits.filter((h) => h === '/SimpleNotificationService-test.pem').length, 1);
  });

  it("when an event names another tenant's SES message, then it is ignored", async () => {
    const delivery = { eventType: 'Bounce', mail: { messageId: 'ses-msg-3', destination: ['r5@remote.test'] }, bounce: { bounceType: 'Permanent', bouncedRecipients: [{ emailAddress: 'r5@remote.test' }] } };
    const res = await postSns(notification(delivery));
    assert.deepEqual(res.body, { recorded: 0, ignored: 1 });
    assert.deepEqual(await outboundRow(b3.id), { status: 'sent', last_event: null, last_reply: null });
  });

  it('when the topic, certificate address, signature or body is wrong, then it is refused, nothing changes and no foreign address is fetched', async () => {
    const event = { eventType: 'Bounce', mail: { messageId: 'ses-msg-2', destination: ['r6@remote.test'] }, bounce: { bounceType: 'Permanent', bouncedRecipients: [{ emailAddress: 'r6@remote.test' }] } };
    const before = await snapshot();
    const hitsBefore = hits.length;
    const otherTopic = snsMessage({ Type: 'Notification', Message: JSON.stringify(event), TopicArn: 'arn:aws:sns:eu-west-1:999999999999:other' });
    assertRefused(await postSns(otherTopic), 401, 'unauthorized', 'another topic');
    const foreignCert = notification(event, { certUrl: `${certBase.replace('127.0.0.1', 'localhost')}/SimpleNotificationService-test.pem` });
    assertRefused(await postSns(foreignCert), 401, 'unauthorized', 'certificate outside the pattern');
    const tampered = JSON.parse(notification(event)) as Record<string, string>;
    tampered.Message = tampered.Message!.replace('Permanent', 'Permanent ');
    assertRefused(await postSns(JSON.stringify(tampered)), 401, 'unauthorized', 'tampered Message');
    const confirmElsewhere = snsMessage({ Type: 'SubscriptionConfirmation', Message: 'x', Token: 'tok-2', SubscribeURL: 'http://localhost:1/confirm?Token=tok-2' });
    assertRefused(await postSns(confirmElsewhere), 400, 'bad_request', 'SubscribeURL outside the pattern');
    assertRefused(await postSns('not json'), 400, 'bad_request', 'not JSON');
    assertRefused(await postSns(notification({ eventType: 'Bounce' })), 400, 'bad_request', 'SES event without mail');
    assert.deepEqual(await snapshot(), before);
    assert.equal(hits.length, hitsBefore, 'only the cached certificate was used; nothing else was requested');
  });

  it('when the certificate cannot be fetched, then the answer is 503 so SNS retries, and nothing changes', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const before = await snapshot();
    const res = await postSns(notification({ eventType: 'Open', mail: { messageId: 'ses-msg-2', destination: ['r6@remote.test'] } }, { certUrl: `http://127.0.0.1:${port}/cert.pem` }));
    assertRefused(res, 503, 'upstream_unavailable', 'certificate server down');
    assert.deepEqual(await snapshot(), before);
  });
});

// ---- onBounced ------------------------------------------------------------------------------

describe('bounce notice', () => {
  it('when a webhook bounces a row, then onBounced runs once after the commit; a second bounce does not call it again', async () => {
    const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const providerId = await addProvider(tenantA, 'sendgrid', { webhook_public_key: key.publicKey.export({ format: 'der', type: 'spki' }).toString('base64') });
    const row = await addOutbound(tenantA, { status: 'queued', rcpt: 'r7@remote.test', providerId });
    const calls: { id: string; reply: string; statusSeen: string }[] = [];
    const service = new DeliveryEventsService(t.services.db, new SecretBox(t.config.SECRETS_KEY), {
      receivers: { sendgrid: new SendgridWebhook(), mailgun: new MailgunWebhook(), ses: new SesWebhook(new SnsVerifier({ certUrlPattern: /^$/ })) },
      logger: createLogger('silent'),
      onBounced: async (id, reply) => {
        // a fresh connection sees the bounce: the transaction has committed
        const seen = await t.services.db.selectFrom('outbound').select('status').where('id', '=', id).executeTakeFirstOrThrow();
        calls.push({ id, reply, statusSeen: seen.status });
      },
    });
    const request = (reason: string) => {
      const body = Buffer.from(JSON.stringify([{ email: 'r7@remote.test', event: 'bounce', timestamp: Number(unix()), outbound_id: row.id, reason }]));
      const ts = unix();
      const signature = sign('sha256', Buffer.concat([Buffer.from(ts), body]), key.privateKey).toString('base64');
      return { headers: { 'x-twilio-email-event-webhook-signature': signature, 'x-twilio-email-event-webhook-timestamp': ts }, body };
    };
    assert.deepEqual(await service.receiveWebhook('sendgrid', request('550 gone'), providerId), { recorded: 1, ignored: 0 });
    assert.deepEqual(await service.receiveWebhook('sendgrid', request('550 gone again'), providerId), { recorded: 1, ignored: 0 });
    assert.deepEqual(calls, [{ id: row.id, reply: '550 gone', statusSeen: 'bounced' }]);
    assert.equal(await refcount(row.blobKey), 0);
    assert.equal((await outboundRow(row.id)).last_reply, '550 gone', 'a later bounce does not rewrite the first');
  });

  it('when onBounced fails, then the bounce stays recorded and the provider still gets 200 (no retry)', async () => {
    const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const providerId = await addProvider(tenantA, 'sendgrid', { webhook_public_key: key.publicKey.export({ format: 'der', type: 'spki' }).toString('base64') });
    const row = await addOutbound(tenantA, { status: 'sent', rcpt: 'r8@remote.test', providerId });
    const service = new DeliveryEventsService(t.services.db, new SecretBox(t.config.SECRETS_KEY), {
      receivers: { sendgrid: new SendgridWebhook(), mailgun: new MailgunWebhook(), ses: new SesWebhook(new SnsVerifier({ certUrlPattern: /^$/ })) },
      logger: createLogger('silent'),
      onBounced: () => Promise.reject(new Error('DSN store down')),
    });
    // a NUL in a provider string cannot be stored by PostgreSQL: it is dropped, not a failed batch
    const body = Buffer.from(JSON.stringify([{ email: 'r8@remote.test', event: 'bounce', timestamp: Number(unix()), outbound_id: row.id, reason: '550 no\u0000body' }]));
    const ts = unix();
    const signature = sign('sha256', Buffer.concat([Buffer.from(ts), body]), key.privateKey).toString('base64');
    const outcome = await service.receiveWebhook('sendgrid', { headers: { 'x-twilio-email-event-webhook-signature': signature, 'x-twilio-email-event-webhook-timestamp': ts }, body });
    assert.deepEqual(outcome, { recorded: 1, ignored: 0 });
    assert.deepEqual(await outboundRow(row.id), { status: 'bounced', last_event: 'bounced', last_reply: '550 nobody' });
  });
});
