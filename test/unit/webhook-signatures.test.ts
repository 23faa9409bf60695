/**
 * Webhook signature checks and event normalisation, with real keys made here: an ECDSA P-256
 * pair for SendGrid, an HMAC key for Mailgun, and a self-signed RSA certificate served by a local
 * HTTP server on 127.0.0.1 for SNS. The SNS canonical string is checked against text written out
 * from the AWS documentation, not against our own builder.
 */
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { generate } from 'selfsigned';
import { AppError } from '../../src/core/errors.js';
import { WEBHOOK_MAX_AGE_MS } from '../../src/core/limits.js';
import { MailgunWebhook, parseMailgunEvent, verifyMailgunSignature } from '../../src/delivery/webhooks/mailgun.js';
import { assertFreshTimestamp, RecentNonces } from '../../src/delivery/webhooks/replay-guard.js';
import {
  parseSendgridEvents,
  parseSendgridKey,
  SENDGRID_SIGNATURE_HEADER,
  SENDGRID_TIMESTAMP_HEADER,
  SendgridWebhook,
  verifySendgridSignature,
} from '../../src/delivery/webhooks/sendgrid.js';
import { parseSesEvents } from '../../src/delivery/webhooks/ses.js';
import { parseSnsMessage, SnsVerifier, snsStringToSign, type SnsMessage } from '../../src/delivery/webhooks/sns.js';
import type { WebhookProvider } from '../../src/services/delivery-events.service.js';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof AppError ? err.code : 'not-an-AppError';
  }
  return undefined;
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (err) {
    return err instanceof AppError ? err.code : `not-an-AppError: ${String(err)}`;
  }
  return undefined;
}

function provider(type: WebhookProvider['type'], settings: Record<string, unknown> = {}, credentials: Record<string, unknown> = {}): WebhookProvider {
  return { id: '00000000-0000-4000-8000-000000000001', tenantId: '00000000-0000-4000-8000-000000000002', type, settings, credentials };
}

const nowSeconds = () => String(Math.floor(Date.now() / 1000));

describe('SendGrid signed event webhook', () => {
  const pair = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const keyB64 = pair.publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
  const keyPem = pair.publicKey.export({ format: 'pem', type: 'spki' }).toString();
  const body = Buffer.from(JSON.stringify([{ email: 'a@x.test', event: 'delivered', timestamp: 1700000000, sg_message_id: 'abc123.filterdrecv-1-2.0', outbound_id: 'id-1' }]));
  const signWith = (key: KeyObject, timestamp: string, bytes: Buffer) => sign('sha256', Buffer.concat([Buffer.from(timestamp), bytes]), key).toString('base64');

  it('when the key is given as SendGrid shows it (base64 DER) or as PEM, then both parse to the P-256 key', () => {
    assert.equal(parseSendgridKey(keyB64)?.asymmetricKeyType, 'ec');
    assert.equal(parseSendgridKey(keyPem)?.asymmetricKeyType, 'ec');
  });

  it('when the key is garbage, RSA or another curve, then it is refused', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).publicKey.export({ format: 'pem', type: 'spki' }).toString();
    for (const bad of ['', 'not a key', rsa, p384]) assert.equal(parseSendgridKey(bad), null, bad.slice(0, 20));
  });

  it('when timestamp + body are signed with the key, then the signature verifies; a changed body, timestamp or key does not', () => {
    const key = parseSendgridKey(keyB64)!;
    const ts = nowSeconds();
    const sig = signWith(pair.privateKey, ts, body);
    assert.equal(verifySendgridSignature(key, sig, ts, body), true);
    assert.equal(verifySendgridSignature(key, sig, ts, Buffer.concat([body, Buffer.from(' ')])), false);
    assert.equal(verifySendgridSignature(key, sig, String(Number(ts) + 1), body), false);
    assert.equal(verifySendgridSignature(key, signWith(other.privateKey, ts, body), ts, body), false);
    assert.equal(verifySendgridSignature(key, 'bm90IERFUg==', ts, body), false);
  });

  it('when events come in, then each SendGrid word maps to ours and the X-Message-Id is cut from sg_message_id', () => {
    const events = parseSendgridEvents(
      Buffer.from(
        JSON.stringify([
          { email: 'a@x.test', event: 'processed', timestamp: 1 },
          { email: 'a@x.test', event: 'delivered', timestamp: 2, sg_message_id: 'MSGID.filterdrecv-p3.0' },
          { email: 'a@x.test', event: 'bounce', timestamp: 3, reason: '550 5.1.1 no such user', status: '5.1.1' },
          { email: 'a@x.test', event: 'dropped', timestamp: 4, reason: 'Bounced Address' },
          { email: 'a@x.test', event: 'deferred', timestamp: 5, response: '421 try later' },
          { email: 'a@x.test', event: 'spamreport', timestamp: 6 },
          { email: 'a@x.test', event: 'open', timestamp: 7 },
          { email: 'a@x.test', event: 'click', timestamp: 8 },
          { email: 'a@x.test', event: 'group_unsubscribe', timestamp: 9 },
        ]),
      ),
    );
    assert.deepEqual(
      events.map((e) => e.event),
      ['processed', 'delivered', 'bounced', 'bounced', 'deferred', 'complained', 'opened', 'clicked'],
    );
    assert.equal(events[1]!.providerMessageId, 'MSGID');
    assert.equal(events[2]!.reply, '5.1.1 550 5.1.1 no such user');
    assert.equal(events[3]!.reply, 'Bounced Address');
    assert.equal(events[4]!.reply, '421 try later');
    assert.equal(events[6]!.occurredAt.getTime(), 7000);
  });

  it('when the body is not JSON, not an array, or an event lacks event/email, then it is bad_request', () => {
    for (const bad of ['{', '{"event":"delivered"}', '[{"email":"a@x.test"}]', '[{"event":"delivered"}]', '[1]']) {
      assert.equal(code(() => parseSendgridEvents(Buffer.from(bad))), 'bad_request', bad);
    }
  });

  it('when a request is stale, unsigned, signed by another key or a replay, then it is unauthorized; after abandon the retry passes', async () => {
    const receiver = new SendgridWebhook();
    const candidates = [provider('sendgrid', { webhook_public_key: keyB64 })];
    const request = (ts: string, key = pair.privateKey) => ({ headers: { [SENDGRID_SIGNATURE_HEADER]: signWith(key, ts, body), [SENDGRID_TIMESTAMP_HEADER]: ts }, body });
    const stale = String(Math.floor((Date.now() - WEBHOOK_MAX_AGE_MS) / 1000) - 5);
    assert.equal(await codeOf(receiver.receive(request(stale), candidates)), 'unauthorized');
    assert.equal(await codeOf(receiver.receive({ headers: {}, body }, candidates)), 'unauthorized');
    assert.equal(await codeOf(receiver.receive(request(nowSeconds(), other.privateKey), candidates)), 'unauthorized');
    assert.equal(await codeOf(receiver.receive(request(nowSeconds()), [provider('sendgrid', {})])), 'unauthorized');
    const good = request(nowSeconds());
    const verified = await receiver.receive(good, candidates);
    assert.equal(verified.events.length, 1);
    assert.equal(await codeOf(receiver.receive(good, candidates)), 'unauthorized');
    verified.abandon?.();
    assert.equal((await receiver.receive(good, candidates)).providers.length, 1);
  });
});

describe('Mailgun webhook', () => {
  const signingKey = 'key-mailgun-signing-0123456789';
  const hmac = (key: string, ts: string, token: string) => createHmac('sha256', key).update(ts + token).digest('hex');

  it('when the HMAC of timestamp + token matches, then it verifies; another key, token or a non-hex signature does not', () => {
    const ts = nowSeconds();
    const sig = hmac(signingKey, ts, 'tok');
    assert.equal(verifyMailgunSignature(signingKey, ts, 'tok', sig), true);
    assert.equal(verifyMailgunSignature(signingKey, ts, 'tok', sig.toUpperCase()), true);
    assert.equal(verifyMailgunSignature('other-key', ts, 'tok', sig), false);
    assert.equal(verifyMailgunSignature(signingKey, ts, 'tok2', sig), false);
    assert.equal(verifyMailgunSignature(signingKey, ts, 'tok', sig.slice(0, 62)), false);
    assert.equal(verifyMailgunSignature(signingKey, ts, 'tok', 'zz' + sig.slice(2)), false);
  });

  it('when failed is permanent, then it is a bounce; temporary is a deferral; unknown kinds are skipped', () => {
    const base = { recipient: 'b@y.test', timestamp: 1700000000.5, 'user-variables': { 'outbound-id': 'oid' }, message: { headers: { 'message-id': '<20240101.1@mg.test>' } } };
    const perm = parseMailgunEvent({ ...base, event: 'failed', severity: 'permanent', 'delivery-status': { code: 550, message: '5.1.1 user unknown' } });
    assert.deepEqual([perm?.event, perm?.reply, perm?.outboundId, perm?.providerMessageId], ['bounced', '550 5.1.1 user unknown', 'oid', '20240101.1@mg.test']);
    assert.equal(parseMailgunEvent({ ...base, event: 'failed', severity: 'temporary' })?.event, 'deferred');
    assert.equal(parseMailgunEvent({ ...base, event: 'delivered' })?.event, 'delivered');
    assert.equal(parseMailgunEvent({ ...base, event: 'complained' })?.event, 'complained');
    assert.equal(parseMailgunEvent({ ...base, event: 'opened' })?.event, 'opened');
    assert.equal(parseMailgunEvent({ ...base, event: 'unsubscribed' }), null);
    assert.equal(code(() => parseMailgunEvent({ event: 'delivered' })), 'bad_request');
    assert.equal(code(() => parseMailgunEvent('x')), 'bad_request');
  });

  it('when a request is stale, unsigned, wrongly signed or reuses a token, then it is unauthorized; a non-object body is bad_request', async () => {
    const receiver = new MailgunWebhook();
    const candidates = [provider('mailgun', {}, { webhook_signing_key: signingKey })];
    const body = (ts: string, token: string, key = signingKey) =>
      Buffer.from(JSON.stringify({ signature: { timestamp: ts, token, signature: hmac(key, ts, token) }, 'event-data': { event: 'delivered', recipient: 'b@y.test' } }));
    const stale = String(Math.floor((Date.now() - WEBHOOK_MAX_AGE_MS) / 1000) - 5);
    assert.equal(await codeOf(receiver.receive({ headers: {}, body: body(stale, 't1') }, candidates)), 'unauthorized');
    assert.equal(await codeOf(receiver.receive({ headers: {}, body: body(nowSeconds(), 't2', 'wrong') }, candidates)), 'unauthorized');
    assert.equal(await codeOf(receiver.receive({ headers: {}, body: Buffer.from('{"event-data":{}}') }, candidates)), 'unauthorized');
    assert.equal(await codeOf(receiver.receive({ headers: {}, body: Buffer.from('[1,2]') }, candidates)), 'bad_request');
    assert.equal(await codeOf(receiver.receive({ headers: {}, body: Buffer.from('nope') }, candidates)), 'bad_request');
    const once = body(nowSeconds(), 't3');
    assert.equal((await receiver.receive({ headers: {}, body: once }, candidates)).events.length, 1);
    assert.equal(await codeOf(receiver.receive({ headers: {}, body: once }, candidates)), 'unauthorized');
  });
});

describe('replay guard', () => {
  it('when a timestamp is within the window, then it passes; outside it or not a number, it is unauthorized', () => {
    const now = 1_700_000_000_000;
    assert.equal(code(() => assertFreshTimestamp(String(now / 1000 - 60), now)), undefined);
    assert.equal(code(() => assertFreshTimestamp(String((now - WEBHOOK_MAX_AGE_MS) / 1000 - 1), now)), 'unauthorized');
    assert.equal(code(() => assertFreshTimestamp(String((now + WEBHOOK_MAX_AGE_MS) / 1000 + 1), now)), 'unauthorized');
    assert.equal(code(() => assertFreshTimestamp('yesterday', now)), 'unauthorized');
  });

  it('when a nonce is claimed twice, then the second claim fails until it is released or expires; the oldest go beyond the cap', () => {
    const nonces = new RecentNonces(2);
    assert.equal(nonces.claim('a', 0), true);
    assert.equal(nonces.claim('a', 1), false);
    nonces.release('a');
    assert.equal(nonces.claim('a', 2), true);
    assert.equal(nonces.claim('a', 3 * WEBHOOK_MAX_AGE_MS), true, 'expired');
    assert.equal(nonces.claim('b', 3 * WEBHOOK_MAX_AGE_MS), true);
    assert.equal(nonces.claim('c', 3 * WEBHOOK_MAX_AGE_MS), true);
    assert.equal(nonces.claim('a', 3 * WEBHOOK_MAX_AGE_MS), true, 'evicted as the oldest');
  });
});

describe('SNS message signatures', () => {
  const base = { MessageId: 'm-1', TopicArn: 'arn:aws:sns:eu-west-1:123456789012:ses', Message: 'hello\nworld', Timestamp: '2024-01-01T00:00:00.000Z', SignatureVersion: '2', Signature: '', SigningCertURL: '' };

  it('when the canonical string is built, then it follows the AWS field lists for each type (Subject only when present)', () => {
    const notification: SnsMessage = { ...base, Type: 'Notification', Subject: 'subj' };
    assert.equal(
      snsStringToSign(notification),
      'Message\nhello\nworld\nMessageId\nm-1\nSubject\nsubj\nTimestamp\n2024-01-01T00:00:00.000Z\nTopicArn\narn:aws:sns:eu-west-1:123456789012:ses\nType\nNotification\n',
    );
    assert.equal(
      snsStringToSign({ ...base, Type: 'Notification', Subject: null }),
      'Message\nhello\nworld\nMessageId\nm-1\nTimestamp\n2024-01-01T00:00:00.000Z\nTopicArn\narn:aws:sns:eu-west-1:123456789012:ses\nType\nNotification\n',
    );
    assert.equal(
      snsStringToSign({ ...base, Type: 'SubscriptionConfirmation', SubscribeURL: 'https://s/confirm', Token: 'tk', Subject: 'ignored' }),
      'Message\nhello\nworld\nMessageId\nm-1\nSubscribeURL\nhttps://s/confirm\nTimestamp\n2024-01-01T00:00:00.000Z\nToken\ntk\nTopicArn\narn:aws:sns:eu-west-1:123456789012:ses\nType\nSubscriptionConfirmation\n',
    );
  });

  it('when the default pattern is used, then only https://sns.<region>.amazonaws.com/ addresses are allowed, in every spelling', () => {
    const sns = new SnsVerifier({ certUrlPattern: new RegExp('^https://sns\\.[a-z0-9-]+\\.amazonaws\\.com(\\.cn)?/') });
    const allowed = ['https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem', 'https://sns.cn-north-1.amazonaws.com.cn/x.pem'];
    const refused = [
      'http://sns.us-east-1.amazonaws.com/x.pem',
      'https://sns.us-east-1.amazonaws.com.evil.test/x.pem',
      'https://sns.us-east-1.amazonaws.com@evil.test/x.pem',
      'https://evil.test/https://sns.us-east-1.amazonaws.com/x.pem',
      'https://SNS.us-east-1.amazonaws.com:8443/x.pem',
      'not a url',
      '',
    ];
    for (const url of allowed) assert.equal(sns.isAllowedUrl(url), true, url);
    for (const url of refused) assert.equal(sns.isAllowedUrl(url), false, url);
  });

  it('when the body is not an SNS message, then it is bad_request', () => {
    for (const bad of ['', '[]', '{"Type":"Notification"}', JSON.stringify({ ...base, Type: 'Other' }), JSON.stringify({ ...base, Type: 'SubscriptionConfirmation' })]) {
      assert.equal(code(() => parseSnsMessage(Buffer.from(bad))), 'bad_request', bad);
    }
  });

  describe('with a certificate served on 127.0.0.1', () => {
    let server: Server;
    let port = 0;
    let certPem = '';
    let privateKey = '';
    const hits: string[] = [];

    before(async () => {
      const pems = await generate([{ name: 'commonName', value: 'sns.test' }], {
        keySize: 2048,
        algorithm: 'sha256',
        notBeforeDate: new Date(Date.now() - 86_400_000),
        notAfterDate: new Date(Date.now() + 30 * 86_400_000),
      });
      certPem = pems.cert;
      privateKey = pems.private;
      server = createServer((req, res) => {
        hits.push(req.url ?? '');
        if (req.url === '/cert.pem') res.end(certPem);
        else if (req.url === '/big.pem') res.end('x'.repeat(70_000));
        else if (req.url === '/redirect.pem') res.writeHead(302, { location: '/cert.pem' }).end();
        else if (req.url === '/slow.pem') setTimeout(() => res.end(certPem), 2_000);
        else res.writeHead(404).end();
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      port = (server.address() as AddressInfo).port;
    });
    after(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });

    const verifier = () => new SnsVerifier({ certUrlPattern: /^http:\/\/127\.0\.0\.1:\d+\//, timeoutMs: 500 });
    function signed(path: string, version = '2', change: Partial<SnsMessage> = {}): SnsMessage {
      const m: SnsMessage = { ...base, Type: 'Notification', SignatureVersion: version, SigningCertURL: `http://127.0.0.1:${port}${path}` };
      const text = snsStringToSign(m);
      return { ...m, Signature: sign(version === '1' ? 'sha1' : 'sha256', Buffer.from(text), privateKey).toString('base64'), ...change };
    }

    it('when a message is signed with version 1 or 2, then it verifies and the certificate is fetched once', async () => {
      const sns = verifier();
      const before = hits.length;
      await sns.verify(signed('/cert.pem', '2'));
      await sns.verify(signed('/cert.pem', '1'));
      assert.deepEqual(hits.slice(before), ['/cert.pem']);
    });

    it('when the message was changed after signing or the version is unknown, then it is unauthorized', async () => {
      const sns = verifier();
      assert.equal(await codeOf(sns.verify(signed('/cert.pem', '2', { Message: 'changed' }))), 'unauthorized');
      assert.equal(await codeOf(sns.verify(signed('/cert.pem', '2', { SignatureVersion: '3' }))), 'unauthorized');
    });

    it('when the certificate is too large, redirected, slow or missing, then it is upstream_unavailable and nothing is cached', async () => {
      const sns = verifier();
      assert.equal(await codeOf(sns.verify(signed('/big.pem'))), 'upstream_unavailable');
      const before = hits.length;
      assert.equal(await codeOf(sns.verify(signed('/redirect.pem'))), 'upstream_unavailable');
      assert.deepEqual(hits.slice(before), ['/redirect.pem'], 'the redirect is not followed');
      assert.equal(await codeOf(sns.verify(signed('/slow.pem'))), 'upstream_unavailable');
      assert.equal(await codeOf(sns.verify(signed('/missing.pem'))), 'upstream_unavailable');
      const again = hits.length;
      assert.equal(await codeOf(sns.verify(signed('/missing.pem'))), 'upstream_unavailable');
      assert.equal(hits.length, again + 1, 'a failure is fetched again next time');
    });

    it('when SigningCertURL is outside the pattern, then it is unauthorized and no request is made', async () => {
      const sns = verifier();
      const before = hits.length;
      const m = signed('/cert.pem', '2', { SigningCertURL: `http://localhost:${port}/cert.pem` });
      assert.equal(await codeOf(sns.verify(m)), 'unauthorized');
      assert.equal(hits.length, before);
    });
  });
});

describe('SES events', () => {
  const mail = { messageId: 'ses-msg-1', timestamp: '2024-01-01T00:00:00.000Z', destination: ['a@x.test', 'B@x.test'] };

  it('when each SES event type arrives, then it maps to our events per recipient', () => {
    const cases: [Record<string, unknown>, string[], (string | null)[]][] = [
      [{ eventType: 'Send', mail, send: {} }, ['processed', 'processed'], [null, null]],
      [{ eventType: 'Delivery', mail, delivery: { recipients: ['a@x.test'], smtpResponse: '250 ok', timestamp: '2024-01-01T00:00:01.000Z' } }, ['delivered'], ['250 ok']],
      [
        { notificationType: 'Bounce', mail, bounce: { bounceType: 'Permanent', bouncedRecipients: [{ emailAddress: 'Bob <B@x.test>', status: '5.1.1', diagnosticCode: 'smtp; 550 5.1.1 unknown' }] } },
        ['bounced'],
        ['550 5.1.1 unknown'],
      ],
      [{ eventType: 'Bounce', mail, bounce: { bounceType: 'Transient', bouncedRecipients: [{ emailAddress: 'a@x.test', status: '4.2.2' }] } }, ['deferred'], ['4.2.2']],
      [{ eventType: 'Bounce', mail, bounce: { bounceType: 'Undetermined', bouncedRecipients: [{ emailAddress: 'a@x.test' }] } }, ['deferred'], [null]],
      [{ eventType: 'Complaint', mail, complaint: { complainedRecipients: [{ emailAddress: 'a@x.test' }] } }, ['complained'], [null]],
      [{ eventType: 'DeliveryDelay', mail, deliveryDelay: { delayedRecipients: [{ emailAddress: 'a@x.test', diagnosticCode: '421 later' }] } }, ['deferred'], ['421 later']],
      [{ eventType: 'Open', mail, open: { timestamp: '2024-01-02T00:00:00.000Z' } }, ['opened', 'opened'], [null, null]],
      [{ eventType: 'Reject', mail, reject: { reason: 'Bad content' } }, ['bounced', 'bounced'], ['rejected by SES: Bad content', 'rejected by SES: Bad content']],
      [{ eventType: 'Rendering Failure', mail }, [], []],
      [{ notificationType: 'AmazonSnsSubscriptionSucceeded', message: 'ok' }, [], []],
    ];
    for (const [event, kinds, replies] of cases) {
      const events = parseSesEvents(JSON.stringify(event));
      assert.deepEqual(events.map((e) => e.event), kinds, JSON.stringify(event).slice(0, 60));
      assert.deepEqual(events.map((e) => e.reply), replies);
      for (const e of events) assert.equal(e.providerMessageId, 'ses-msg-1');
    }
    assert.equal(parseSesEvents(JSON.stringify(cases[2]![0]))[0]!.recipient, 'B@x.test');
    assert.equal(parseSesEvents(JSON.stringify(cases[1]![0]))[0]!.occurredAt.toISOString(), '2024-01-01T00:00:01.000Z');
  });

  it('when the Message is not an SES event, then it is bad_request', () => {
    for (const bad of ['nope', '{}', '{"eventType":"Delivery"}', '{"eventType":"Delivery","mail":{}}']) {
      assert.equal(code(() => parseSesEvents(bad)), 'bad_request', bad);
    }
  });
});
