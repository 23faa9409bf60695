/**
 * The ESP provider transports (SendGrid, SES, Mailgun, Microsoft Graph, SMTP) built by
 * createProviderTransport() from provider rows, sending real HTTP to the local fake ESP
 * (helpers/fake-esp.ts, which checks each API's request shape and authentication, SES's SigV4
 * signature included) and real SMTP to a local relay: the request each provider gets for one
 * message and one envelope recipient, the provider id that comes back, and how failures are
 * classified for the queue (401 → route unavailable, 400 → permanent with the provider's text,
 * 429/500/network → temporary, route unavailable).
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import type { ProviderType } from '../../src/db/types.js';
import { createProviderTransport, type ProviderTransportDeps } from '../../src/delivery/providers/index.js';
import { DeliveryError, type OutgoingMessage, type Transport } from '../../src/delivery/transport.js';
import { FAKE_ESP_DEFAULTS, startFakeEsp, type EspEndpoint, type FakeEsp, type FormFile } from '../helpers/fake-esp.js';
import { startFakeRelay, type FakeRelay } from '../helpers/fake-relay.js';
import { testCertificate } from '../helpers/test-tls.js';

const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000a49444154789c6300010000050001', 'hex');
const CSV = 'month,total\njan,12\nfeb,15\n';
const OUTBOUND_ID = '0f8a3c2e-5b7d-4e1f-9a6b-2c3d4e5f6a7b';

interface SgAttachment {
  content: string;
  filename: string;
  type: string;
  disposition: string;
  content_id?: string;
}
interface SgBody {
  personalizations: unknown;
  from: unknown;
  reply_to: unknown;
  subject: string;
  content: { type: string; value: string }[];
  attachments: SgAttachment[];
  headers: Record<string, string>;
  custom_args: unknown;
}
interface SesBody {
  Content: { Raw: { Data: string } };
  Destination: unknown;
  FromEmailAddress: string;
  ConfigurationSetName: string;
  EmailTags: unknown;
}
interface GraphBody {
  saveToSentItems: boolean;
  message: {
    toRecipients: unknown;
    ccRecipients?: unknown;
    subject: string;
    body: { contentType: string; content: string };
    from?: unknown;
    replyTo: unknown;
    attachments: { name: string; isInline: boolean; contentId?: string }[];
    internetMessageHeaders: unknown;
  };
}

let fake: FakeEsp;
let closedUrl: string;
let raw: Buffer;

function deps(overrides: Partial<ProviderTransportDeps['urls']> = {}, allowPrivate = true): ProviderTransportDeps {
  const url = fake.url;
  return {
    timeoutMs: 5000,
    urls: { sendgrid: url, mailgun: url, mailgunEu: url, ses: url, msgraph: url, msgraphLogin: url, ...overrides },
    smtp: { heloName: 'mx.test.local', allowPrivate, ca: [testCertificate().cert] },
  };
}

const CONFIGS: Record<Exclude<ProviderType, 'smtp'>, { settings: Record<string, unknown>; credentials: Record<string, unknown>; send: EspEndpoint; verify: EspEndpoint }> = {
  sendgrid: { settings: {}, credentials: { api_key: FAKE_ESP_DEFAULTS.sendgrid.apiKey }, send: 'sendgrid.send', verify: 'sendgrid.scopes' },
  ses: {
    settings: { region: FAKE_ESP_DEFAULTS.ses.region, configuration_set: 'events' },
    credentials: { access_key_id: FAKE_ESP_DEFAULTS.ses.accessKeyId, secret_access_key: FAKE_ESP_DEFAULTS.ses.secretAccessKey },
    send: 'ses.send',
    verify: 'ses.account',
  },
  mailgun: { settings: { domain: FAKE_ESP_DEFAULTS.mailgun.domains[0] }, credentials: { api_key: FAKE_ESP_DEFAULTS.mailgun.apiKey }, send: 'mailgun.send', verify: 'mailgun.domain' },
  msgraph: {
    settings: { tenant_id: FAKE_ESP_DEFAULTS.graph.tenantId, client_id: FAKE_ESP_DEFAULTS.graph.clientId },
    credentials: { client_secret: FAKE_ESP_DEFAULTS.graph.clientSecret },
    send: 'graph.send',
    verify: 'graph.token',
  },
};
const HTTP_TYPES = Object.keys(CONFIGS) as (keyof typeof CONFIGS)[];

function transport(type: ProviderType, settings: Record<string, unknown>, credentials: Record<string, unknown>, d = deps()): Transport {
  return createProviderTransport({ name: 'main', provider_type: type, settings }, credentials, d);
}

function standard(type: keyof typeof CONFIGS, d = deps(), credentials: Record<string, unknown> = {}): Transport {
  return transport(type, CONFIGS[type].settings, { ...CONFIGS[type].credentials, ...credentials }, d);
}

function message(rcpt = 'carol@dest.test'): OutgoingMessage {
  return { mailFrom: 'alice@example.com', rcptTo: [rcpt], raw, id: OUTBOUND_ID };
}

async function failureOf(promise: Promise<unknown>): Promise<DeliveryError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof DeliveryError, `expected a DeliveryError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the call to fail');
}

function assertRouteUnavailable(err: DeliveryError, pattern: RegExp): void {
  assert.equal(err.kind, 'temporary', err.reply);
  assert.equal(err.routeUnavailable, true, err.reply);
  assert.match(err.reply, pattern);
}

before(async () => {
  fake = await startFakeEsp();
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  closedUrl = `http://127.0.0.1:${(probe.address() as { port: number }).port}`;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const built = await nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'windows' }).sendMail({
    from: '"Alice Sender" <alice@example.com>',
    to: 'bob@dest.test',
    cc: 'carol@dest.test',
    replyTo: 'replies@example.com',
    subject: 'Quarterly report ✓',
    messageId: '<m1.quarterly@example.com>',
    inReplyTo: '<prev@example.com>',
    references: ['<root@example.com>', '<prev@example.com>'],
    headers: { 'X-Campaign': 'q3-report', 'X-SG-Id': 'must-not-pass' },
    text: 'Hello Carol,\nthe figures are attached.\n',
    html: '<p>Hello Carol, the figures are attached.</p><img src="cid:logo@example.com">',
    attachments: [
      { filename: 'figures.csv', content: CSV, contentType: 'text/csv' },
      { filename: 'logo.png', content: PNG, contentType: 'image/png', cid: 'logo@example.com' },
    ],
  });
  raw = built.message as Buffer;
});

after(async () => {
  await fake.close();
});

describe('SendGrid', () => {
  it('when a message is sent, then SendGrid gets the v3 mail/send body for the envelope recipient only, with the key, and its X-Message-Id comes back', async () => {
    fake.reset();
    const result = await standard('sendgrid').send(message());
    const [req] = fake.calls('sendgrid.send');
    assert.equal(req?.status, 202);
    assert.equal(req.headers.authorization, `Bearer ${FAKE_ESP_DEFAULTS.sendgrid.apiKey}`);
    const body = req.body as SgBody;
    assert.deepEqual(body.personalizations, [{ to: [{ email: 'carol@dest.test' }] }]);
    assert.deepEqual(body.from, { email: 'alice@example.com', name: 'Alice Sender' });
    assert.deepEqual(body.reply_to, { email: 'replies@example.com' });
    assert.equal(body.subject, 'Quarterly report ✓');
    assert.deepEqual(
      body.content.map((c) => c.type),
      ['text/plain', 'text/html'],
    );
    assert.match(body.content[1]!.value, /cid:logo@example\.com/);
    const [csv, logo] = [...body.attachments].sort((a, b) => a.filename.localeCompare(b.filename)) as [SgAttachment, SgAttachment];
    assert.deepEqual({ ...csv, content: Buffer.from(csv.content, 'base64').toString() }, { content: CSV, filename: 'figures.csv', type: 'text/csv', disposition: 'attachment' });
    assert.deepEqual({ ...logo, content: undefined }, { content: undefined, filename: 'logo.png', type: 'image/png', disposition: 'inline', content_id: 'logo@example.com' });
    assert.deepEqual(Buffer.from(logo.content, 'base64'), PNG);
    assert.equal(body.headers['X-Campaign'], 'q3-report');
    assert.equal(body.headers['Message-ID'], '<m1.quarterly@example.com>');
    assert.equal(body.headers['In-Reply-To'], '<prev@example.com>');
    assert.equal(body.headers.References, '<root@example.com> <prev@example.com>');
    assert.deepEqual(
      Object.keys(body.headers).filter((h) => /^x-sg-/i.test(h)),
      [],
      'SendGrid reserves X-SG-* headers',
    );
    assert.deepEqual(body.custom_args, { outbound_id: OUTBOUND_ID });
    const id = String(result.providerMessageId);
    assert.ok(id.length > 10, 'the X-Message-Id is returned');
    assert.match(result.reply, /^202 Accepted \(SendGrid id /);
  });

  it('when the message has no subject and only an attachment, then SendGrid still gets a valid body', async () => {
    fake.reset();
    const bare = await nodemailer.createTransport({ streamTransport: true, buffer: true }).sendMail({
      from: 'alice@example.com',
      to: 'carol@dest.test',
      attachments: [{ filename: 'a.bin', content: Buffer.from([1, 2, 3]) }],
    });
    await standard('sendgrid').send({ ...message(), raw: bare.message as Buffer });
    const body = fake.calls('sendgrid.send')[0]?.body as SgBody;
    assert.equal(body.subject, '(no subject)');
    assert.equal(body.content.length, 1);
  });

  it('when verify() runs with a key lacking mail.send, then it fails and says so', async () => {
    await standard('sendgrid').verify();
    const saved = fake.options.sendgrid.scopes;
    fake.options.sendgrid.scopes = ['user.profile.read'];
    try {
      assertRouteUnavailable(await failureOf(standard('sendgrid').verify()), /lacks the mail\.send permission/);
    } finally {
      fake.options.sendgrid.scopes = saved;
    }
  });
});

describe('SES', () => {
  it('when a message is sent, then SES v2 SendEmail carries the raw bytes, the envelope, the configuration set and our id, signed with SigV4, and its MessageId comes back', async () => {
    fake.reset();
    const result = await standard('ses').send(message());
    const [req] = fake.calls('ses.send');
    assert.equal(req?.status, 200, 'the fake accepted the SigV4 signature');
    assert.match(String(req.headers.authorization), new RegExp(`^AWS4-HMAC-SHA256 Credential=${FAKE_ESP_DEFAULTS.ses.accessKeyId}/\\d{8}/eu-west-1/ses/aws4_request`));
    const body = req.body as SesBody;
    assert.deepEqual(Buffer.from(body.Content.Raw.Data, 'base64'), raw, 'the message leaves byte for byte');
    assert.deepEqual(body.Destination, { ToAddresses: ['carol@dest.test'] });
    assert.equal(body.FromEmailAddress, 'alice@example.com');
    assert.equal(body.ConfigurationSetName, 'events');
    assert.deepEqual(body.EmailTags, [{ Name: 'outbound_id', Value: OUTBOUND_ID }]);
    assert.match(String(result.providerMessageId), /^0102[0-9a-f]{32}-/);
  });

  it('when the secret key is wrong, then the signature does not verify (403) and the route is unavailable', async () => {
    const err = await failureOf(standard('ses', deps(), { secret_access_key: 'not-the-secret' }).send(message()));
    assertRouteUnavailable(err, /SES 403: SignatureDoesNotMatch/);
    assert.equal(err.stage, 'auth');
  });

  it('when SES says sending is paused (400 SendingPausedException), then the route is unavailable rather than the message bounced', async () => {
    fake.fail('ses.send', 400, 'Sending is paused for this account', 'SendingPausedException');
    try {
      assertRouteUnavailable(await failureOf(standard('ses').send(message())), /SendingPausedException/);
    } finally {
      fake.clearFailures();
    }
  });
});

describe('Mailgun', () => {
  it('when a message is sent, then messages.mime gets the envelope recipient, the MIME file byte for byte and our id, with basic auth, and the id comes back without brackets', async () => {
    fake.reset();
    const result = await standard('mailgun').send(message());
    const [req] = fake.calls('mailgun.send');
    assert.equal(req?.status, 200);
    assert.equal(req.path, '/v3/mg.sender.test/messages.mime');
    assert.equal(req.headers.authorization, `Basic ${Buffer.from(`api:${FAKE_ESP_DEFAULTS.mailgun.apiKey}`).toString('base64')}`);
    const form = req.body as Record<string, string | FormFile>;
    assert.equal(form.to, 'carol@dest.test');
    assert.deepEqual((form.message as FormFile).content, raw);
    assert.equal(form['v:outbound-id'], OUTBOUND_ID);
    assert.match(String(result.providerMessageId), /^\d+\.[0-9a-f]+@mg\.sender\.test$/);
  });

  it('when the provider is in region eu, then MAILGUN_EU_API_URL is used and not the US one', async () => {
    fake.reset();
    const eu = transport('mailgun', { ...CONFIGS.mailgun.settings, region: 'eu' }, CONFIGS.mailgun.credentials, deps({ mailgun: closedUrl }));
    await eu.send(message());
    assert.equal(fake.calls('mailgun.send').length, 1);
    const us = transport('mailgun', CONFIGS.mailgun.settings, CONFIGS.mailgun.credentials, deps({ mailgunEu: closedUrl }));
    await us.send(message());
    assert.equal(fake.calls('mailgun.send').length, 2);
  });

  it('when the domain is not in the account, then verify() says so', async () => {
    const other = transport('mailgun', { domain: 'other.test' }, CONFIGS.mailgun.credentials);
    assertRouteUnavailable(await failureOf(other.verify()), /domain other\.test is not in this Mailgun account/);
    await standard('mailgun').verify();
  });
});

describe('Microsoft Graph', () => {
  it('when a message is sent, then a client-credentials token is obtained and sendMail gets the JSON form for the envelope recipient only', async () => {
    fake.reset();
    const graph = transport('msgraph', { ...CONFIGS.msgraph.settings, sender: 'mailer@example.com' }, CONFIGS.msgraph.credentials);
    const result = await graph.send(message());
    const [tokenReq] = fake.calls('graph.token');
    assert.equal(tokenReq?.path, `/${FAKE_ESP_DEFAULTS.graph.tenantId}/oauth2/v2.0/token`);
    assert.deepEqual(tokenReq.body, {
      client_id: FAKE_ESP_DEFAULTS.graph.clientId,
      client_secret: FAKE_ESP_DEFAULTS.graph.clientSecret,
      scope: 'https://graph.microsoft.com/.default',
      grant_type: 'client_credentials',
    });
    const [req] = fake.calls('graph.send');
    assert.equal(req?.status, 202);
    assert.equal(req.path, '/v1.0/users/mailer@example.com/sendMail');
    const body = req.body as GraphBody;
    assert.equal(body.saveToSentItems, false);
    assert.deepEqual(body.message.toRecipients, [{ emailAddress: { address: 'carol@dest.test' } }]);
    assert.equal(body.message.ccRecipients, undefined, 'the Cc recipient gets its own call');
    assert.equal(body.message.subject, 'Quarterly report ✓');
    assert.equal(body.message.body.contentType, 'HTML');
    assert.deepEqual(body.message.from, { emailAddress: { address: 'alice@example.com', name: 'Alice Sender' } });
    assert.deepEqual(body.message.replyTo, [{ emailAddress: { address: 'replies@example.com' } }]);
    assert.deepEqual(
      body.message.attachments.map((a) => [a.name, a.isInline, a.contentId ?? null]).sort(),
      [
        ['figures.csv', false, null],
        ['logo.png', true, 'logo@example.com'],
      ],
    );
    assert.deepEqual(
      (body.message.internetMessageHeaders as { name: string; value: string }[]).map((h) => [h.name.toLowerCase(), h.value]),
      [
        ['x-campaign', 'q3-report'],
        ['x-sg-id', 'must-not-pass'],
      ],
    );
    assert.match(String(result.providerMessageId), /^[0-9a-f-]{36}$/, 'the request-id header is kept');
  });

  it('when no sender is configured, then the envelope sender is the mailbox; and the token is reused for the next send', async () => {
    fake.reset();
    const issued = fake.tokensIssued();
    const graph = standard('msgraph');
    await graph.send(message());
    await graph.send(message('bob@dest.test'));
    assert.equal(fake.tokensIssued() - issued, 1);
    assert.deepEqual(
      fake.calls('graph.send').map((r) => r.path),
      ['/v1.0/users/alice@example.com/sendMail', '/v1.0/users/alice@example.com/sendMail'],
    );
    assert.equal((fake.calls('graph.send')[0]?.body as GraphBody).message.from, undefined, 'From is the mailbox itself');
  });

  it('when Graph answers 401 (token revoked), then the route is unavailable and the next send gets a new token', async () => {
    const graph = standard('msgraph');
    await graph.send(message());
    const issued = fake.tokensIssued();
    fake.fail('graph.send', 401, 'Access token has expired', 'InvalidAuthenticationToken');
    assertRouteUnavailable(await failureOf(graph.send(message())), /Microsoft Graph 401: InvalidAuthenticationToken: Access token has expired/);
    fake.clearFailures();
    await graph.send(message());
    assert.equal(fake.tokensIssued() - issued, 1);
  });

  it('when the client secret is wrong, then the token request fails and the route is unavailable', async () => {
    const err = await failureOf(standard('msgraph', deps(), { client_secret: 'wrong' }).send(message()));
    assertRouteUnavailable(err, /Microsoft Graph login 401: AADSTS7000215/);
    assert.equal(err.stage, 'auth');
    assertRouteUnavailable(await failureOf(standard('msgraph', deps(), { client_secret: 'wrong' }).verify()), /Invalid client secret/);
  });
});

describe('failure classification, every HTTP provider', () => {
  const cases: { status: number; kind: 'permanent' | 'temporary'; routeUnavailable: boolean }[] = [
    { status: 401, kind: 'temporary', routeUnavailable: true },
    { status: 403, kind: 'temporary', routeUnavailable: true },
    { status: 400, kind: 'permanent', routeUnavailable: false },
    { status: 413, kind: 'permanent', routeUnavailable: false },
    { status: 429, kind: 'temporary', routeUnavailable: true },
    { status: 500, kind: 'temporary', routeUnavailable: true },
    { status: 503, kind: 'temporary', routeUnavailable: true },
  ];
  for (const type of HTTP_TYPES) {
    for (const c of cases) {
      it(`when ${type} answers ${c.status}, then the failure is ${c.kind}${c.routeUnavailable ? ' and the route unavailable' : ''}, with the provider's text`, async () => {
        fake.fail(CONFIGS[type].send, c.status, `reason for ${c.status} from ${type}`);
        try {
          const err = await failureOf(standard(type).send(message()));
          assert.equal(err.kind, c.kind, err.reply);
          assert.equal(err.routeUnavailable, c.routeUnavailable, err.reply);
          assert.match(err.reply, new RegExp(`${c.status}: .*reason for ${c.status} from ${type}`));
          if (c.kind === 'permanent') assert.match(String(err.status), /^5\./);
        } finally {
          fake.clearFailures();
        }
      });
    }

    it(`when ${type}'s credentials are wrong, then the fake refuses them for real and the route is unavailable`, async () => {
      const wrong = type === 'ses' ? { access_key_id: 'AKIAUNKNOWNKEY000001' } : type === 'msgraph' ? { client_secret: 'nope' } : { api_key: 'wrong-key' };
      const err = await failureOf(standard(type, deps(), wrong).send(message()));
      assertRouteUnavailable(err, /40[13]/);
      assert.equal(err.stage, 'auth');
      await failureOf(standard(type, deps(), wrong).verify());
    });

    it(`when ${type}'s API cannot be reached, then the failure is temporary and the route unavailable`, async () => {
      const down = { sendgrid: closedUrl, mailgun: closedUrl, mailgunEu: closedUrl, ses: closedUrl, msgraph: closedUrl, msgraphLogin: closedUrl };
      const err = await failureOf(standard(type, deps(down)).send(message()));
      assertRouteUnavailable(err, /ECONNREFUSED|cannot reach/);
      assert.equal(err.stage, 'connect');
    });

    it(`when ${type}'s API does not answer within OUTBOUND_TIMEOUT, then the failure is temporary and the route unavailable`, async () => {
      fake.delay(CONFIGS[type].send, 1500);
      try {
        const err = await failureOf(standard(type, { ...deps(), timeoutMs: 300 }).send(message()));
        assertRouteUnavailable(err, /no answer within 300 ms|timed? ?out/i);
      } finally {
        fake.clearFailures();
      }
    });

    it(`when ${type}'s verify() runs with good credentials, then it passes`, async () => {
      fake.reset();
      await standard(type).verify();
      assert.equal(fake.calls(CONFIGS[type].verify).length, 1);
    });
  }
});

describe('SMTP provider', () => {
  let relay: FakeRelay;
  before(async () => {
    relay = await startFakeRelay({ tls: 'starttls', auth: { user: 'relay-user', pass: 'relay-pass' } });
  });
  after(async () => {
    await relay.close();
  });

  it('when an SMTP provider sends, then the relay gets the message over STARTTLS with the login, and the route is provider:smtp:<name>', async () => {
    const smtp = transport('smtp', { host: '127.0.0.1', port: relay.port, user: 'relay-user' }, { pass: 'relay-pass' });
    try {
      assert.equal(smtp.route, 'provider:smtp:main');
      await smtp.verify();
      const result = await smtp.send(message());
      assert.match(result.reply, /^250/);
      const [got] = await relay.waitForMessages(1);
      assert.deepEqual(got?.rcptTo, ['carol@dest.test']);
      assert.equal(got.secure, true);
      assert.equal(got.authUser, 'relay-user');
    } finally {
      smtp.close();
    }
  });

  it('when private hosts are not allowed, then a tenant-given loopback host is refused by the host guard before any connection', async () => {
    const before = relay.connectionCount();
    const smtp = transport('smtp', { host: '127.0.0.1', port: relay.port }, {}, deps({}, false));
    try {
      const err = await failureOf(smtp.send(message()));
      assertRouteUnavailable(err, /loopback/);
      assert.equal(relay.connectionCount(), before);
    } finally {
      smtp.close();
    }
  });
});

describe('stored rows', () => {
  it('when a stored row no longer validates, then building its transport fails with the reason', () => {
    assert.throws(() => transport('sendgrid', {}, {}), /api_key/);
    assert.throws(() => transport('mailgun', { domain: 'mg.sender.test', region: 'mars' }, { api_key: 'k' }), /region/);
  });
});
