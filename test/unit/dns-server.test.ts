/**
 * The test DNS server (test/helpers/dns-server.ts), queried through the resolver the server uses
 * (src/services/dns-resolver.ts), so both are checked against each other over real UDP/TCP: the
 * answers node's resolver sees, the errors mailauth relies on (ENOTFOUND, ENODATA, ETIMEOUT,
 * ESERVFAIL), and the resolver's cache (negative answers kept, failures not).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createDnsResolver, type DnsResolve } from '../../src/services/dns-resolver.js';
import { startDnsServer, txtChunks, type DnsServer } from '../helpers/dns-server.js';

let dns: DnsServer;

before(async () => {
  dns = await startDnsServer({
    'Example.ORG': {
      A: ['192.0.2.10', '192.0.2.11'],
      AAAA: '2001:db8::10',
      MX: [
        { priority: 10, exchange: 'mx1.example.org' },
        { priority: 20, exchange: 'mx2.example.org' },
      ],
      TXT: 'v=spf1 ip4:192.0.2.0/24 -all',
    },
    'www.example.org': { CNAME: 'example.org' },
    'sel._domainkey.example.org': { TXT: 'v=DKIM1; k=rsa; p=AAAA' },
  });
});

after(async () => {
  await dns.stop();
});

/** A fresh resolver (and so an empty cache) pointed at the test server. */
function resolver(timeoutMs = 1000): DnsResolve {
  return createDnsResolver({ servers: [dns.address], timeoutMs });
}

async function errorCode(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
  assert.fail('the lookup was expected to fail');
}

function countQueries(name: string, type: string): number {
  return dns.queries.filter((q) => q.name === name && q.type === type).length;
}

describe('test DNS server', () => {
  it('when A, AAAA, MX and TXT are asked, then the resolver gets the records as node returns them', async () => {
    const r = resolver();
    assert.deepEqual(await r('example.org', 'A'), ['192.0.2.10', '192.0.2.11']);
    assert.deepEqual(await r('example.org', 'AAAA'), ['2001:db8::10']);
    const mx = (await r('example.org', 'MX')) as { priority: number; exchange: string }[];
    assert.deepEqual(
      mx.map((m) => [m.priority, m.exchange]).sort(),
      [
        [10, 'mx1.example.org'],
        [20, 'mx2.example.org'],
      ],
    );
    assert.deepEqual(await r('example.org', 'TXT'), [['v=spf1 ip4:192.0.2.0/24 -all']]);
    assert.ok(dns.received('example.org', 'MX'));
  });

  it('when names differ only in case or a trailing dot, then they are the same name', async () => {
    const r = resolver();
    assert.deepEqual(await r('EXAMPLE.org.', 'A'), ['192.0.2.10', '192.0.2.11']);
    assert.deepEqual(await r('SEL._DomainKey.example.org', 'TXT'), [['v=DKIM1; k=rsa; p=AAAA']]);
  });

  it('when a name is a CNAME, then the chain is followed inside the zone', async () => {
    const r = resolver();
    assert.deepEqual(await r('www.example.org', 'A'), ['192.0.2.10', '192.0.2.11']);
    assert.deepEqual(await r('www.example.org', 'CNAME'), ['example.org']);
  });

  it('when a TXT string is longer than 255 bytes, then it is one record of 255-byte chunks that join back to the original', async () => {
    const key = `v=DKIM1; k=rsa; p=${'A'.repeat(380)}`;
    dns.set('long._domainkey.example.org', 'TXT', key);
    const answer = (await resolver()('long._domainkey.example.org', 'TXT')) as string[][];
    assert.equal(answer.length, 1);
    assert.deepEqual(
      answer[0]!.map((c) => c.length),
      [255, key.length - 255],
    );
    assert.equal(answer[0]!.join(''), key);
    assert.deepEqual(
      txtChunks('x'.repeat(600)).map((c) => c.length),
      [255, 255, 90],
    );
  });

  it('when the answer is too large for UDP, then it is truncated and the resolver gets it whole over TCP', async () => {
    const records = ['a', 'b', 'c'].map((ch) => ch.repeat(300));
    dns.set('big.example.org', 'TXT', records);
    const answer = (await resolver()('big.example.org', 'TXT')) as string[][];
    assert.deepEqual(answer.map((chunks) => chunks.join('')).sort(), records);
    const transports = dns.queries.filter((q) => q.name === 'big.example.org').map((q) => q.transport);
    assert.deepEqual(transports, ['udp', 'tcp']);
  });

  it('when the name does not exist, then ENOTFOUND (NXDOMAIN)', async () => {
    assert.equal(await errorCode(resolver()('nothing.example.org', 'TXT')), 'ENOTFOUND');
    assert.equal(await errorCode(resolver()('example.net', 'A')), 'ENOTFOUND');
  });

  it('when the name exists without the asked type, then ENODATA (NODATA), also for an empty non-terminal', async () => {
    assert.equal(await errorCode(resolver()('sel._domainkey.example.org', 'A')), 'ENODATA');
    assert.equal(await errorCode(resolver()('_domainkey.example.org', 'TXT')), 'ENODATA');
  });

  it('when a negative answer was received, then the resolver caches it and does not ask again', async () => {
    const r = resolver();
    assert.equal(await errorCode(r('later.example.org', 'TXT')), 'ENOTFOUND');
    assert.equal(await errorCode(r('example.org', 'CNAME')), 'ENODATA');
    dns.set('later.example.org', 'TXT', 'v=spf1 -all');
    assert.equal(await errorCode(r('Later.example.org', 'TXT')), 'ENOTFOUND');
    assert.equal(await errorCode(r('example.org', 'CNAME')), 'ENODATA');
    assert.equal(countQueries('later.example.org', 'TXT'), 1);
    assert.equal(countQueries('example.org', 'CNAME'), 1);
    // a resolver with an empty cache sees the record added meanwhile
    assert.deepEqual(await resolver()('later.example.org', 'TXT'), [['v=spf1 -all']]);
  });

  it('when a record is replaced or removed while running, then a fresh lookup sees the change', async () => {
    dns.set('change.example.org', 'A', '192.0.2.1');
    assert.deepEqual(await resolver()('change.example.org', 'A'), ['192.0.2.1']);
    dns.set('change.example.org', 'A', ['192.0.2.2']);
    assert.deepEqual(await resolver()('change.example.org', 'A'), ['192.0.2.2']);
    dns.set('change.example.org', 'TXT', 'hello');
    dns.remove('change.example.org', 'A');
    assert.equal(await errorCode(resolver()('change.example.org', 'A')), 'ENODATA');
    dns.remove('change.example.org');
    assert.equal(await errorCode(resolver()('change.example.org', 'TXT')), 'ENOTFOUND');
  });

  it('when the server answers SERVFAIL, then ESERVFAIL and the failure is not cached', async () => {
    const r = resolver();
    dns.respond('servfail');
    try {
      assert.equal(await errorCode(r('example.org', 'A')), 'ESERVFAIL');
    } finally {
      dns.respond('answer');
    }
    const before = countQueries('example.org', 'A');
    assert.deepEqual(await r('example.org', 'A'), ['192.0.2.10', '192.0.2.11']);
    assert.equal(countQueries('example.org', 'A'), before + 1);
  });

  it('when the server stops answering, then ETIMEOUT within a bounded time and the timeout is not cached', async () => {
    const r = resolver(200);
    dns.respond('drop');
    const started = Date.now();
    try {
      assert.equal(await errorCode(r('quiet.example.org', 'A')), 'ETIMEOUT');
    } finally {
      dns.respond('answer');
    }
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 200 && elapsed < 3000, `timed out after ${elapsed} ms`);
    assert.ok(dns.received('quiet.example.org', 'A'), 'the dropped query still reached the server');
    dns.set('quiet.example.org', 'A', '192.0.2.5');
    assert.deepEqual(await r('quiet.example.org', 'A'), ['192.0.2.5']);
  });

  it('when the server is stopped, then lookups fail instead of hanging, and stop() can be called again', async () => {
    const other = await startDnsServer({ 'gone.test': { A: '192.0.2.9' } });
    const r = createDnsResolver({ servers: [other.address], timeoutMs: 200 });
    assert.deepEqual(await r('gone.test', 'A'), ['192.0.2.9']);
    await other.stop();
    await other.stop();
    const code = await errorCode(createDnsResolver({ servers: [other.address], timeoutMs: 200 })('gone.test', 'A'));
    assert.ok(code === 'ECONNREFUSED' || code === 'ETIMEOUT', `got ${code}`);
  });
});
