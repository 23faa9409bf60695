/**
 * The SMTP relay transport (delivery/transports/smtp.transport.ts) against a real SMTP peer on
 * 127.0.0.1 (helpers/fake-relay.ts) with a real certificate check: delivery over STARTTLS and
 * implicit TLS with AUTH, every failure class the queue relies on (auth, stripped STARTTLS,
 * untrusted certificate, 5xx/4xx replies, nothing listening, greeting refusal) and the SSRF guard
 * applied at connect time. Also parseRelayUrl for RELAY_URL.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { DeliveryError, type OutgoingMessage, type Transport } from '../../src/delivery/transport.js';
import { createSmtpTransport, parseRelayUrl, type SmtpTransportOptions } from '../../src/delivery/transports/smtp.transport.js';
import { startFakeRelay, type FakeRelay } from '../helpers/fake-relay.js';
import { testCertificate } from '../helpers/test-tls.js';

const AUTH = { user: 'relay-user', pass: 'correct horse battery staple' };
const CA = [readFileSync(testCertificate().caFile, 'utf8')];

// CRLF line endings, 8-bit text, a line starting with a dot (dot-stuffing, RFC 5321 section 4.5.2)
const RAW = Buffer.from(
  [
    'From: Alice <alice@sender.test>',
    'To: bob@rcpt.test',
    'Subject: relay test',
    'Message-ID: <relay-test-1@sender.test>',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    'Grüße aus dem Test.',
    '.a line that starts with a dot',
    '..two dots',
    '',
  ].join('\r\n'),
);

function message(overrides: Partial<OutgoingMessage> = {}): OutgoingMessage {
  return { mailFrom: 'alice@sender.test', rcptTo: ['bob@rcpt.test'], raw: RAW, id: 'ob-1', ...overrides };
}

const open: Transport[] = [];
function transport(relay: FakeRelay | { port: number }, overrides: Partial<SmtpTransportOptions> = {}): Transport {
  const t = createSmtpTransport({
    route: 'user-relay',
    host: 'localhost',
    port: relay.port,
    secure: false,
    requireTLS: true,
    user: AUTH.user,
    pass: AUTH.pass,
    heloName: 'mail.ours.test',
    timeoutMs: 3000,
    ca: CA,
    ...overrides,
  });
  open.push(t);
  return t;
}

async function deliveryError(promise: Promise<unknown>): Promise<DeliveryError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof DeliveryError, `expected a DeliveryError, got ${String(err)}`);
    return err;
  }
  assert.fail('the delivery succeeded');
}

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('SMTP relay transport', () => {
  let starttls: FakeRelay;
  let implicit: FakeRelay;
  let stripped: FakeRelay;

  before(async () => {
    [starttls, implicit, stripped] = await Promise.all([
      startFakeRelay({ tls: 'starttls', auth: AUTH }),
      startFakeRelay({ tls: 'implicit', auth: AUTH }),
      startFakeRelay({ tls: 'none', auth: AUTH }),
    ]);
  });
  after(async () => {
    for (const t of open) t.close();
    await Promise.all([starttls.close(), implicit.close(), stripped.close()]);
  });

  it('when the relay offers STARTTLS and AUTH, then the message arrives byte for byte over TLS, authenticated', async () => {
    starttls.clear();
    const result = await transport(starttls).send(message());
    assert.match(result.reply, /^250 /);
    const [got] = await starttls.waitForMessages(1);
    assert.ok(got);
    assert.equal(got.mailFrom, 'alice@sender.test');
    assert.deepEqual(got.rcptTo, ['bob@rcpt.test']);
    assert.ok(got.raw.equals(RAW), 'the relay got exactly the bytes given');
    assert.equal(got.secure, true);
    assert.equal(got.authUser, AUTH.user);
    assert.equal(got.heloName, 'mail.ours.test');
    assert.deepEqual(
      starttls.authAttempts.map((a) => ({ secure: a.secure, success: a.success })),
      [{ secure: true, success: true }],
    );
  });

  it('when several messages go through one transport, then the pooled connection is reused', async () => {
    starttls.clear();
    const before = starttls.connectionCount();
    const t = transport(starttls);
    await t.send(message({ id: 'a' }));
    await t.send(message({ id: 'b' }));
    assert.equal(starttls.messages.length, 2);
    assert.equal(starttls.connectionCount() - before, 1);
  });

  it('when the sender is the null reverse-path (a bounce), then MAIL FROM:<> is sent', async () => {
    starttls.clear();
    await transport(starttls).send(message({ mailFrom: '' }));
    assert.equal(starttls.messages[0]?.mailFrom, '');
  });

  it('when the relay uses implicit TLS (port 465 style), then the message arrives', async () => {
    implicit.clear();
    await transport(implicit, { secure: true, requireTLS: false }).send(message());
    const [got] = await implicit.waitForMessages(1);
    assert.ok(got);
    assert.ok(got.raw.equals(RAW));
    assert.equal(got.secure, true);
  });

  it('when the password is wrong, then it is a temporary auth failure and the route is unavailable', async () => {
    const err = await deliveryError(transport(starttls, { pass: 'wrong' }).send(message()));
    assert.equal(err.kind, 'temporary');
    assert.equal(err.stage, 'auth');
    assert.equal(err.routeUnavailable, true);
    assert.match(err.reply, /535 5\.7\.8 Authentication credentials invalid/);
    assert.ok(!err.reply.includes('wrong'));
  });

  it('when STARTTLS is stripped, then it is a temporary TLS failure and the password was never sent', async () => {
    stripped.clear();
    const err = await deliveryError(transport(stripped).send(message()));
    assert.equal(err.kind, 'temporary');
    assert.equal(err.stage, 'tls');
    assert.equal(err.routeUnavailable, false);
    assert.match(err.reply, /STARTTLS/);
    assert.deepEqual(stripped.authAttempts, [], 'no AUTH attempt reached the relay');
    assert.equal(stripped.messages.length, 0);
  });

  it('when the relay certificate is not trusted (no extra CA), then the connection is refused at TLS', async () => {
    starttls.clear();
    const viaStarttls = await deliveryError(transport(starttls, { ca: undefined }).send(message()));
    assert.equal(viaStarttls.stage, 'tls');
    assert.equal(viaStarttls.kind, 'temporary');
    assert.match(viaStarttls.reply, /self[- ]signed|certificate/i);
    const viaImplicit = await deliveryError(transport(implicit, { ca: undefined, secure: true, requireTLS: false }).send(message()));
    assert.equal(viaImplicit.stage, 'tls');
    assert.deepEqual(starttls.authAttempts, []);
  });

  it('when the certificate does not name the host, then the connection is refused at TLS', async () => {
    // the certificate is for localhost and 127.0.0.1; ::ffff:127.0.0.1 reaches the relay but is neither
    const err = await deliveryError(transport(starttls, { host: '::ffff:127.0.0.1' }).send(message()));
    assert.equal(err.stage, 'tls');
  });

  it('when the relay answers 550 at RCPT, then it is permanent with the remote reply', async () => {
    starttls.setFailure({ stage: 'rcpt', code: 550, message: '5.1.1 No such user here' });
    try {
      const err = await deliveryError(transport(starttls).send(message()));
      assert.equal(err.kind, 'permanent');
      assert.equal(err.stage, 'rcpt');
      assert.equal(err.reply, '550 5.1.1 No such user here');
      assert.equal(err.routeUnavailable, false);
    } finally {
      starttls.setFailure(null);
    }
  });

  it('when the relay answers 554 after DATA, then it is permanent at the data stage', async () => {
    starttls.setFailure({ stage: 'data', code: 554, message: '5.7.1 Message rejected as spam' });
    try {
      const err = await deliveryError(transport(starttls).send(message()));
      assert.equal(err.kind, 'permanent');
      assert.equal(err.stage, 'data');
      assert.equal(err.reply, '554 5.7.1 Message rejected as spam');
    } finally {
      starttls.setFailure(null);
    }
  });

  it('when the relay answers 451 at MAIL or 450 at RCPT, then it is temporary with the remote reply', async () => {
    starttls.setFailure({ stage: 'mail', code: 451, message: '4.3.0 Try again later' });
    try {
      const err = await deliveryError(transport(starttls).send(message()));
      assert.equal(err.kind, 'temporary');
      assert.equal(err.stage, 'mail');
      assert.equal(err.reply, '451 4.3.0 Try again later');
      starttls.setFailure({ stage: 'rcpt', code: 450, message: '4.2.1 Mailbox busy' });
      const rcpt = await deliveryError(transport(starttls).send(message()));
      assert.equal(rcpt.kind, 'temporary');
      assert.equal(rcpt.stage, 'rcpt');
      assert.equal(rcpt.routeUnavailable, false);
    } finally {
      starttls.setFailure(null);
    }
  });

  it('when the relay refuses the session with 421 in its greeting, then the route is unavailable', async () => {
    starttls.setFailure({ stage: 'connect', code: 421, message: 'Too busy, try later' });
    try {
      const err = await deliveryError(transport(starttls).send(message()));
      assert.equal(err.kind, 'temporary');
      assert.equal(err.stage, 'connect');
      assert.equal(err.routeUnavailable, true);
      assert.match(err.reply, /421 Too busy/);
    } finally {
      starttls.setFailure(null);
    }
  });

  it('when nothing listens on the port, then the route is unavailable (with and without the guard)', async () => {
    const port = await closedPort();
    const plain = await deliveryError(transport({ port }).send(message()));
    assert.equal(plain.kind, 'temporary');
    assert.equal(plain.stage, 'connect');
    assert.equal(plain.routeUnavailable, true);
    assert.match(plain.reply, /ECONNREFUSED/);
    const guarded = await deliveryError(transport({ port }, { guard: { allowPrivate: true } }).send(message()));
    assert.equal(guarded.stage, 'connect');
    assert.equal(guarded.routeUnavailable, true);
    assert.match(guarded.reply, /ECONNREFUSED/);
  });

  it('when the guard is set and the host is private, then nothing is contacted and the route is unavailable', async () => {
    const before = starttls.connectionCount();
    for (const host of ['localhost', '127.0.0.1', '0x7f000001', '[::ffff:127.0.0.1]']) {
      const err = await deliveryError(transport(starttls, { host, guard: { allowPrivate: false } }).send(message()));
      assert.equal(err.stage, 'config', host);
      assert.equal(err.kind, 'temporary');
      assert.equal(err.routeUnavailable, true);
      assert.match(err.reply, /is not allowed: it is .*loopback/);
    }
    assert.equal(starttls.connectionCount(), before, 'the relay saw no connection');
  });

  it('when the guard allows private hosts, then delivery goes to the vetted address with the certificate checked against the name', async () => {
    starttls.clear();
    await transport(starttls, { host: 'LOCALHOST.', guard: { allowPrivate: true } }).send(message());
    assert.equal(starttls.messages.length, 1);
    assert.equal(starttls.messages[0]?.secure, true);
  });

  it('when verify() is called, then it connects, upgrades and authenticates; a wrong password fails it', async () => {
    starttls.clear();
    await transport(starttls, { guard: { allowPrivate: true } }).verify();
    assert.deepEqual(
      starttls.authAttempts.map((a) => [a.secure, a.success]),
      [[true, true]],
    );
    const err = await deliveryError(transport(starttls, { pass: 'nope' }).verify());
    assert.equal(err.stage, 'auth');
    assert.equal(starttls.messages.length, 0);
  });
});

describe('parseRelayUrl', () => {
  it('when the URL is smtp://, then STARTTLS is required and the port defaults to 587', () => {
    assert.deepEqual(parseRelayUrl('smtp://apikey:SG.secret@smtp.sendgrid.net'), {
      host: 'smtp.sendgrid.net',
      port: 587,
      secure: false,
      requireTLS: true,
      user: 'apikey',
      pass: 'SG.secret',
    });
  });
  it('when the URL is smtps://, then TLS is implicit and the port defaults to 465', () => {
    assert.deepEqual(parseRelayUrl('smtps://u:p@relay.example.test'), { host: 'relay.example.test', port: 465, secure: true, requireTLS: false, user: 'u', pass: 'p' });
  });
  it('when user and password are percent-encoded, then they are decoded', () => {
    const parsed = parseRelayUrl('smtp://user%40example.test:p%40ss%3Aw%2Frd@relay.example.test:2525');
    assert.equal(parsed.user, 'user@example.test');
    assert.equal(parsed.pass, 'p@ss:w/rd');
    assert.equal(parsed.port, 2525);
  });
  it('when there are no credentials, then none are returned', () => {
    assert.deepEqual(parseRelayUrl('smtp://[::1]:25'), { host: '::1', port: 25, secure: false, requireTLS: true });
  });
  const malformed: [string, RegExp][] = [
    ['not a url', /not a valid URL/],
    ['http://u:p@relay.example.test', /smtp:\/\/ or smtps:\/\//],
    ['smtp://u:p@relay.example.test:99999', /not a valid URL/],
    ['smtp://', /no host/],
    ['smtp://user@relay.example.test', /both a user name and a password/],
    ['smtp://u:%E0%A4%A@relay.example.test', /percent-encoded password/],
  ];
  for (const [url, error] of malformed) {
    it(`when the URL is ${JSON.stringify(url)}, then a clear error is thrown that does not repeat it`, () => {
      assert.throws(
        () => parseRelayUrl(url),
        (err: Error) => error.test(err.message) && !err.message.includes('relay.example.test'),
      );
    });
  }
});
