/**
 * Direct MX delivery (src/delivery/transports/mx.transport.ts) against real peers: a real DNS
 * server on 127.0.0.1 holds the recipient domains' MX/A records, and real SMTP servers listen on
 * loopback addresses (127.0.0.1, 127.0.0.2, ...) on one port, since the transport, like port 25
 * in production, uses the same port for every host. Covers MX order and fallback, implicit MX,
 * null MX, NXDOMAIN, DNS outages, opportunistic STARTTLS, remote replies and the private-address
 * guard. Nothing leaves 127.0.0.0/8.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { createDnsResolver } from '../../src/services/dns-resolver.js';
import { DeliveryError } from '../../src/delivery/transport.js';
import { createMxTransport } from '../../src/delivery/transports/mx.transport.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { startFakeRelay, type FakeRelay } from '../helpers/fake-relay.js';
import { testCertificate } from '../helpers/test-tls.js';

const HELO = 'mail.sender.test';
const RAW = Buffer.from('From: alice@sender.test\r\nTo: bob@example.test\r\nSubject: hello\r\nMessage-ID: <m1@sender.test>\r\n\r\nHello Bob.\r\n');

interface Peer {
  host: string;
  port: number;
  /** Envelope senders of the accepted messages, in order. */
  mailFrom: string[];
  connections: number;
  /** Whether each accepted message arrived over TLS. */
  secure: boolean[];
  close(): Promise<void>;
}

/** An SMTP server bound to `host:port` (port 0: a free one), for a second loopback address on a fake relay's port. */
async function startPeer(host: string, port: number, extra: Partial<SMTPServerOptions> = {}): Promise<Peer> {
  const peer: Peer = { host, port, mailFrom: [], connections: 0, secure: [], close: () => Promise.resolve() };
  const server = new SMTPServer({
    name: host,
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    disableReverseLookup: true,
    logger: false,
    closeTimeout: 100,
    onConnect: (_session, callback) => {
      peer.connections += 1;
      callback();
    },
    onData: (stream, session, callback) => {
      stream.resume();
      stream.on('end', () => {
        peer.mailFrom.push(session.envelope.mailFrom ? session.envelope.mailFrom.address : '');
        peer.secure.push(session.secure);
        callback(null, '2.0.0 accepted by peer');
      });
    },
    ...extra,
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.server.address();
  if (typeof address === 'object' && address) peer.port = address.port;
  peer.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return peer;
}

function message(rcpt: string, mailFrom = 'alice@sender.test') {
  return { mailFrom, rcptTo: [rcpt], raw: RAW, id: 'outbound-1' };
}

async function rejects(promise: Promise<unknown>, expected: { kind: string; stage?: string; status?: string; reply?: RegExp }): Promise<DeliveryError> {
  const err = await promise.then(
    () => assert.fail('expected a DeliveryError'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof DeliveryError, `a DeliveryError, got ${String(err)}`);
  assert.equal(err.kind, expected.kind, err.reply);
  assert.equal(err.routeUnavailable, false);
  if (expected.stage) assert.equal(err.stage, expected.stage, err.reply);
  if (expected.status) assert.equal(err.status, expected.status, err.reply);
  if (expected.reply) assert.match(err.reply, expected.reply);
  return err;
}

describe('MX transport', () => {
  let dns: DnsServer;
  let tlsRelay: FakeRelay; // 127.0.0.1, offers STARTTLS with a self-signed certificate
  let plainRelay: FakeRelay; // 127.0.0.1, no STARTTLS
  let second: Peer; // 127.0.0.2 on tlsRelay's port

  before(async () => {
    dns = await startDnsServer();
    tlsRelay = await startFakeRelay({ tls: 'starttls', hostname: 'mx-a.example.test' });
    plainRelay = await startFakeRelay({ tls: 'none', hostname: 'mx-plain.example.test' });
    second = await startPeer('127.0.0.2', tlsRelay.port);
  });

  after(async () => {
    await Promise.all([dns.stop(), tlsRelay.close(), plainRelay.close(), second.close()]);
  });

  /** A transport with its own resolver (no cache shared between tests) aimed at `port`. */
  function transport(port: number, allowPrivate = true) {
    const resolve = createDnsResolver({ servers: [dns.address], timeoutMs: 200 });
    return createMxTransport({ resolve, port, heloName: HELO, timeoutMs: 3000, allowPrivate, ca: testCertificate().cert });
  }

  it('when a domain has two MX hosts, then the one with the lowest preference gets the message', async () => {
    dns.set('order.test', 'MX', [
      { priority: 20, exchange: 'mx-a.order.test' },
      { priority: 10, exchange: 'mx-b.order.test' },
    ]);
    dns.set('mx-a.order.test', 'A', '127.0.0.1');
    dns.set('mx-b.order.test', 'A', '127.0.0.2');
    const before = { relay: tlsRelay.messages.length, second: second.mailFrom.length };
    const result = await transport(tlsRelay.port).send(message('bob@order.test'));
    assert.equal(result.reply, '250 2.0.0 accepted by peer');
    assert.equal(second.mailFrom.length, before.second + 1);
    assert.equal(tlsRelay.messages.length, before.relay, 'the less preferred host was not used');

    // swap the preferences: now 127.0.0.1 is preferred
    dns.set('order.test', 'MX', [
      { priority: 5, exchange: 'mx-a.order.test' },
      { priority: 10, exchange: 'mx-b.order.test' },
    ]);
    const swapped = await transport(tlsRelay.port).send(message('bob@order.test'));
    assert.match(swapped.reply, /^250 2\.0\.0 Ok: queued/);
    assert.equal(tlsRelay.messages.length, before.relay + 1);
    assert.equal(second.mailFrom.length, before.second + 1);
  });

  it('when the preferred MX refuses connections, then the next MX gets the message', async () => {
    dns.set('fallback.test', 'MX', [
      { priority: 10, exchange: 'down.fallback.test' },
      { priority: 20, exchange: 'up.fallback.test' },
    ]);
    dns.set('down.fallback.test', 'A', '127.0.0.3'); // nothing listens there
    dns.set('up.fallback.test', 'A', '127.0.0.1');
    dns.clearQueries();
    const count = plainRelay.messages.length;
    await transport(plainRelay.port).send(message('bob@fallback.test'));
    assert.equal(plainRelay.messages.length, count + 1);
    assert.ok(dns.received('down.fallback.test', 'A') && dns.received('up.fallback.test', 'A'));
  });

  it('when every MX refuses connections, then the failure is temporary and names the last host', async () => {
    dns.set('alldown.test', 'MX', { priority: 10, exchange: 'mx.alldown.test' });
    dns.set('mx.alldown.test', 'A', ['127.0.0.3', '127.0.0.4']);
    await rejects(transport(plainRelay.port).send(message('bob@alldown.test')), {
      kind: 'temporary',
      stage: 'connect',
      status: '4.4.1',
      reply: /^connect to mx\.alldown\.test\[127\.0\.0\.4\]: .*ECONNREFUSED/,
    });
  });

  it('when the preferred MX greets with 421, then the next MX gets the message', async () => {
    dns.set('busy.test', 'MX', [
      { priority: 10, exchange: 'busy.busy.test' },
      { priority: 20, exchange: 'ok.busy.test' },
    ]);
    dns.set('busy.busy.test', 'A', '127.0.0.1');
    dns.set('ok.busy.test', 'A', '127.0.0.2');
    tlsRelay.setFailure({ stage: 'connect', code: 421, message: '4.3.2 Too busy, try later' });
    try {
      const count = second.mailFrom.length;
      await transport(tlsRelay.port).send(message('bob@busy.test'));
      assert.equal(second.mailFrom.length, count + 1);
    } finally {
      tlsRelay.setFailure(null);
    }
  });

  it('when a domain has no MX but an A record, then the A host gets the message (implicit MX)', async () => {
    dns.set('implicit.test', 'A', '127.0.0.1');
    const count = plainRelay.messages.length;
    await transport(plainRelay.port).send(message('bob@implicit.test'));
    assert.equal(plainRelay.messages.length, count + 1);
    assert.deepEqual(plainRelay.messages.at(-1)!.rcptTo, ['bob@implicit.test']);
  });

  it('when a domain publishes a null MX, then delivery fails permanently with 5.1.10', async () => {
    dns.set('nullmx.test', 'MX', { priority: 0, exchange: '.' });
    dns.set('nullmx.test', 'A', '127.0.0.1');
    const connections = plainRelay.connectionCount();
    await rejects(transport(plainRelay.port).send(message('bob@nullmx.test')), { kind: 'permanent', status: '5.1.10', reply: /does not accept mail/ });
    assert.equal(plainRelay.connectionCount(), connections, 'no connection was made');
  });

  it('when the domain does not exist, then delivery fails permanently with 5.1.2', async () => {
    await rejects(transport(plainRelay.port).send(message('bob@nowhere.test')), { kind: 'permanent', status: '5.1.2', reply: /does not exist/ });
  });

  it('when the domain has neither MX nor address records, then delivery fails permanently', async () => {
    dns.set('empty.test', 'TXT', 'v=spf1 -all');
    await rejects(transport(plainRelay.port).send(message('bob@empty.test')), { kind: 'permanent', status: '5.4.4', reply: /no addresses found/ });
  });

  it('when the DNS server drops queries or answers SERVFAIL, then the failure is temporary', async () => {
    dns.set('outage.test', 'MX', { priority: 10, exchange: 'mx.outage.test' });
    for (const mode of ['drop', 'servfail'] as const) {
      dns.respond(mode);
      try {
        const err = await rejects(transport(plainRelay.port).send(message('bob@outage.test')), { kind: 'temporary', status: '4.4.3' });
        assert.match(err.reply, mode === 'drop' ? /ETIMEOUT/ : /ESERVFAIL/);
      } finally {
        dns.respond('answer');
      }
    }
  });

  it('when the MX host name does not answer A lookups, then the failure is temporary', async () => {
    dns.set('hostdns.test', 'MX', { priority: 10, exchange: 'mx.hostdns.test' });
    const resolve = createDnsResolver({ servers: [dns.address], timeoutMs: 200 });
    await resolve('hostdns.test', 'MX'); // cached: only the host lookups meet the outage
    dns.respond('servfail');
    try {
      const mx = createMxTransport({ resolve, port: plainRelay.port, heloName: HELO, timeoutMs: 3000, allowPrivate: true });
      await rejects(mx.send(message('bob@hostdns.test')), { kind: 'temporary', status: '4.4.3', reply: /mx\.hostdns\.test: ESERVFAIL/ });
    } finally {
      dns.respond('answer');
    }
  });

  it('when the MX offers STARTTLS, then the message goes over TLS even with a self-signed certificate', async () => {
    dns.set('tls.test', 'MX', { priority: 10, exchange: 'mx.tls.test' });
    dns.set('mx.tls.test', 'A', '127.0.0.1');
    const mx = createMxTransport({ resolve: createDnsResolver({ servers: [dns.address], timeoutMs: 200 }), port: tlsRelay.port, heloName: HELO, timeoutMs: 3000, allowPrivate: true });
    await mx.send(message('bob@tls.test'));
    const got = tlsRelay.messages.at(-1)!;
    assert.equal(got.secure, true);
    assert.equal(got.heloName, HELO);
    assert.deepEqual(got.raw, RAW);
  });

  it('when the MX does not offer STARTTLS, then the message goes in plain text', async () => {
    dns.set('plain.test', 'MX', { priority: 10, exchange: 'mx.plain.test' });
    dns.set('mx.plain.test', 'A', '127.0.0.1');
    await transport(plainRelay.port).send(message('bob@plain.test'));
    assert.equal(plainRelay.messages.at(-1)!.secure, false);
  });

  it('when the TLS handshake fails, then the same host is retried without STARTTLS', async () => {
    const { key, cert } = testCertificate();
    // TLS 1.0 only: a current client refuses to negotiate it, so the handshake fails
    const broken = await startPeer('127.0.0.1', 0, { disabledCommands: ['AUTH'], key, cert, minVersion: 'TLSv1', maxVersion: 'TLSv1' });
    try {
      dns.set('badtls.test', 'A', '127.0.0.1');
      await transport(broken.port).send(message('bob@badtls.test'));
      assert.deepEqual(broken.secure, [false]);
      assert.equal(broken.connections, 2);
    } finally {
      await broken.close();
    }
  });

  it('when the MX answers 550 to RCPT, then the failure is permanent with that reply', async () => {
    dns.set('reject.test', 'MX', { priority: 10, exchange: 'mx.reject.test' });
    dns.set('mx.reject.test', 'A', ['127.0.0.1', '127.0.0.2']);
    plainRelay.setFailure({ stage: 'rcpt', code: 550, message: '5.1.1 <bob@reject.test>: No such user' });
    try {
      const connections = plainRelay.connectionCount();
      await rejects(transport(plainRelay.port).send(message('bob@reject.test')), {
        kind: 'permanent',
        stage: 'rcpt',
        status: '5.1.1',
        reply: /^550 5\.1\.1 <bob@reject\.test>: No such user$/,
      });
      assert.equal(plainRelay.connectionCount(), connections + 1, 'a reply ends the attempt: no other host is tried');
    } finally {
      plainRelay.setFailure(null);
    }
  });

  it('when the MX answers 451 to DATA, then the failure is temporary with that reply', async () => {
    dns.set('defer.test', 'MX', { priority: 10, exchange: 'mx.defer.test' });
    dns.set('mx.defer.test', 'A', '127.0.0.1');
    plainRelay.setFailure({ stage: 'data', code: 451, message: '4.3.0 Local error in processing' });
    try {
      await rejects(transport(plainRelay.port).send(message('bob@defer.test')), { kind: 'temporary', stage: 'data', status: '4.3.0', reply: /^451 4\.3\.0 Local error in processing$/ });
    } finally {
      plainRelay.setFailure(null);
    }
  });

  it('when the MX is on a loopback or private address and private hosts are not allowed, then nothing connects', async () => {
    dns.set('private.test', 'MX', [
      { priority: 10, exchange: 'mx1.private.test' },
      { priority: 20, exchange: 'mx2.private.test' },
    ]);
    dns.set('mx1.private.test', 'A', '127.0.0.1');
    dns.set('mx2.private.test', 'A', '10.1.2.3');
    const connections = plainRelay.connectionCount();
    await rejects(transport(plainRelay.port, false).send(message('bob@private.test')), {
      kind: 'permanent',
      stage: 'connect',
      status: '5.4.4',
      reply: /127\.0\.0\.1\] is a loopback address; mx2\.private\.test\[10\.1\.2\.3\] is a private address/,
    });
    assert.equal(plainRelay.connectionCount(), connections);
    // an address literal is checked the same way
    await rejects(transport(plainRelay.port, false).send(message('bob@[127.0.0.1]')), { kind: 'permanent', status: '5.4.4' });
  });

  it('when the message is a bounce, then MAIL FROM is the null sender', async () => {
    dns.set('bounce.test', 'A', '127.0.0.1');
    await transport(plainRelay.port).send(message('bob@bounce.test', ''));
    assert.equal(plainRelay.messages.at(-1)!.mailFrom, '');
  });

  it('when the recipient is an address literal, then that address gets the message without DNS', async () => {
    dns.clearQueries();
    const count = plainRelay.messages.length;
    await transport(plainRelay.port).send(message('bob@[127.0.0.1]'));
    assert.equal(plainRelay.messages.length, count + 1);
    assert.equal(dns.queries.length, 0);
  });

  it('when the recipients or domain are unusable, then the failure is permanent and nothing is looked up', async () => {
    dns.clearQueries();
    const mx = transport(plainRelay.port);
    await rejects(mx.send({ ...message('a@one.test'), rcptTo: ['a@one.test', 'b@two.test'] }), { kind: 'permanent', stage: 'config' });
    await rejects(mx.send(message('no-at-sign')), { kind: 'permanent', status: '5.1.2' });
    await rejects(mx.send(message('bob@[not-an-ip]')), { kind: 'permanent', status: '5.1.2' });
    assert.equal(dns.queries.length, 0);
  });

  it('when asked to verify or close, then it has nothing to check or release', async () => {
    const mx = transport(plainRelay.port);
    assert.equal(mx.route, 'mx');
    await mx.verify();
    mx.close();
  });
});
