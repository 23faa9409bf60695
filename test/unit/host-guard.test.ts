/**
 * The SSRF host guard (services/host-guard.ts): every spelling of a refused address is refused,
 * public addresses pass and come back normalised, names are resolved (the system resolver for
 * `localhost`, a real local DNS server for made-up names) and refused if ANY address is refused.
 */
import assert from 'node:assert/strict';
import dns from 'node:dns';
import { after, before, describe, it } from 'node:test';
import { AppError } from '../../src/core/errors.js';
import { parseLooseIPv4, resolveAllowedHost, type HostGuardOptions, type HostLookup } from '../../src/services/host-guard.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';

const STRICT: HostGuardOptions = { allowPrivate: false };

async function refusal(host: string, options: HostGuardOptions = STRICT): Promise<AppError> {
  try {
    await resolveAllowedHost(host, options);
  } catch (err) {
    assert.ok(err instanceof AppError, `expected an AppError for ${host}, got ${String(err)}`);
    return err;
  }
  assert.fail(`${JSON.stringify(host)} was allowed`);
}

describe('parseLooseIPv4 (inet_aton forms)', () => {
  const table: [string, string | null][] = [
    ['127.0.0.1', '127.0.0.1'],
    ['2130706433', '127.0.0.1'],
    ['0x7f000001', '127.0.0.1'],
    ['0177.0.0.1', '127.0.0.1'],
    ['0x7f.1', '127.0.0.1'],
    ['127.1', '127.0.0.1'],
    ['10.1.65535', '10.1.255.255'],
    ['0', '0.0.0.0'],
    ['1.2.3.256', null],
    ['4294967296', null],
    ['08.1.1.1', null],
    ['1.2.3.4.5', null],
    ['1..2', null],
  ];
  for (const [input, expected] of table) {
    it(`when given ${input}, then it reads ${String(expected)}`, () => assert.equal(parseLooseIPv4(input), expected));
  }
});

describe('resolveAllowedHost refuses special-purpose addresses in any spelling', () => {
  const refused: [string, RegExp][] = [
    ['127.0.0.1', /loopback/],
    ['127.1', /loopback/],
    ['2130706433', /loopback/],
    ['0x7f000001', /loopback/],
    ['0177.0.0.1', /loopback/],
    ['0x7F.0.0.1', /loopback/],
    ['127.0.0.1.', /loopback/],
    ['[127.0.0.1]', /loopback/],
    ['::1', /loopback/],
    ['[::1]', /loopback/],
    ['0:0:0:0:0:0:0:1', /loopback/],
    ['::ffff:127.0.0.1', /loopback/],
    ['::ffff:7f00:1', /loopback/],
    ['[::ffff:7f00:1]', /loopback/],
    ['::127.0.0.1', /loopback/],
    ['64:ff9b::7f00:1', /loopback/],
    ['2002:7f00:1::1', /loopback/],
    ['0.0.0.0', /unspecified/],
    ['0', /unspecified/],
    ['::', /unspecified/],
    ['10.0.0.1', /private/],
    ['172.16.5.4', /private/],
    ['172.31.255.255', /private/],
    ['192.168.1.1', /private/],
    ['3232235777', /private/],
    ['::ffff:192.168.1.1', /private/],
    ['fc00::1', /private/],
    ['fd12:3456::1', /private/],
    ['169.254.1.1', /link-local/],
    ['fe80::1', /link-local/],
    ['169.254.169.254', /metadata/],
    ['0xa9fea9fe', /metadata/],
    ['::ffff:169.254.169.254', /metadata/],
    ['fd00:ec2::254', /metadata/],
    ['100.64.0.1', /CGNAT/],
    ['100.127.255.254', /CGNAT/],
    ['224.0.0.1', /multicast/],
    ['ff02::1', /multicast/],
    ['240.0.0.1', /reserved/],
    ['255.255.255.255', /reserved/],
    ['192.0.2.10', /documentation/],
    ['2001:db8::1', /documentation/],
    ['198.18.0.1', /benchmarking/],
    ['2001::1', /reserved/],
    ['100::1', /reserved/],
  ];
  for (const [host, reason] of refused) {
    it(`when the host is ${host}, then it is refused (${reason.source})`, async () => {
      const err = await refusal(host);
      assert.equal(err.code, 'validation_failed');
      assert.match(err.message, reason);
      assert.ok(err.message.includes(`"${host}"`), `the message names the host: ${err.message}`);
    });
  }
});

describe('resolveAllowedHost refuses malformed hosts', () => {
  const malformed = ['', '   ', '1.2.3.256', '999999999999', 'exa mple.com', 'a..b', '-bad.example', 'fe80::1%eth0', '::ffff:1.2.3', 'x'.repeat(64) + '.com', 'host/path', 'user@host'];
  for (const host of malformed) {
    it(`when the host is ${JSON.stringify(host)}, then it is a validation error`, async () => {
      const err = await refusal(host);
      assert.equal(err.code, 'validation_failed');
      assert.match(err.message, /is not valid/);
    });
  }
});

describe('resolveAllowedHost allows public addresses', () => {
  const allowed: [string, string][] = [
    ['93.184.216.34', '93.184.216.34'],
    ['1.1.1.1', '1.1.1.1'],
    ['0x01010101', '1.1.1.1'],
    ['16843009', '1.1.1.1'],
    ['100.63.255.255', '100.63.255.255'],
    ['172.32.0.1', '172.32.0.1'],
    ['2606:4700::1111', '2606:4700::1111'],
    ['[2606:4700::1111]', '2606:4700::1111'],
    ['::ffff:1.1.1.1', '::ffff:1.1.1.1'],
  ];
  for (const [host, ip] of allowed) {
    it(`when the host is ${host}, then it is allowed as ${ip}`, async () => {
      assert.equal(await resolveAllowedHost(host, STRICT), ip);
    });
  }
});

describe('resolveAllowedHost resolves names', () => {
  let dnsServer: DnsServer;
  let lookup: HostLookup;

  before(async () => {
    dnsServer = await startDnsServer({
      'relay.example.test': { A: '93.184.216.34' },
      'mixed.example.test': { A: ['93.184.216.34', '10.0.0.7'] },
      'v6private.example.test': { A: '93.184.216.34', AAAA: 'fd00:ec2::254' },
      'rebind.example.test': { A: '127.0.0.1' },
      'alias.example.test': { CNAME: 'rebind.example.test' },
      'dual.example.test': { A: '93.184.216.35', AAAA: '2606:4700::1111' },
    });
    const resolver = new dns.promises.Resolver();
    resolver.setServers([dnsServer.address]);
    // the guard's own contract is lookup {all: true}; here both families come from the local DNS server
    lookup = async (name) => {
      const settle = async (query: Promise<string[]>): Promise<string[]> => query.catch(() => []);
      const [v4, v6] = await Promise.all([settle(resolver.resolve4(name)), settle(resolver.resolve6(name))]);
      const found = [...v6.map((address) => ({ address, family: 6 })), ...v4.map((address) => ({ address, family: 4 }))];
      if (found.length === 0) throw Object.assign(new Error(`queryA ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
      return found;
    };
  });
  after(() => dnsServer.stop());

  it('when the name is localhost (the system resolver gives 127.0.0.1), then it is refused', async () => {
    const err = await refusal('localhost');
    assert.match(err.message, /host "localhost" is not allowed: it is (127\.0\.0\.1|::1), a loopback address/);
  });

  it('when the name is localhost with a trailing dot, then it is refused too', async () => {
    assert.match((await refusal('LOCALHOST.')).message, /loopback/);
  });

  it('when a name resolves to a public address, then that address is returned', async () => {
    assert.equal(await resolveAllowedHost('relay.example.test', { allowPrivate: false, lookup }), '93.184.216.34');
    assert.equal(await resolveAllowedHost('Relay.Example.Test.', { allowPrivate: false, lookup }), '93.184.216.34');
  });

  it('when one of several addresses is private, then the name is refused', async () => {
    const err = await refusal('mixed.example.test', { allowPrivate: false, lookup });
    assert.match(err.message, /10\.0\.0\.7, a private address/);
  });

  it('when the IPv6 address of a name is the metadata address, then the name is refused', async () => {
    const err = await refusal('v6private.example.test', { allowPrivate: false, lookup });
    assert.match(err.message, /fd00:ec2::254, a cloud metadata address/);
  });

  it('when a public-looking name resolves to loopback (directly or through a CNAME), then it is refused', async () => {
    assert.match((await refusal('rebind.example.test', { allowPrivate: false, lookup })).message, /loopback/);
    assert.match((await refusal('alias.example.test', { allowPrivate: false, lookup })).message, /loopback/);
  });

  it('when a name has both families, then the IPv4 address is the one to connect to', async () => {
    assert.equal(await resolveAllowedHost('dual.example.test', { allowPrivate: false, lookup }), '93.184.216.35');
  });

  it('when a name does not exist, then it is a validation error naming it', async () => {
    const err = await refusal('nothing.example.test', { allowPrivate: false, lookup });
    assert.equal(err.code, 'validation_failed');
    assert.match(err.message, /host "nothing\.example\.test" is not valid: it does not resolve/);
  });

  it('when the resolver fails, then it is dns_unavailable (temporary), not a validation error', async () => {
    const failing: HostLookup = () => Promise.reject(Object.assign(new Error('queryA ETIMEOUT relay.example.test'), { code: 'ETIMEOUT' }));
    const err = await refusal('relay.example.test', { allowPrivate: false, lookup: failing });
    assert.equal(err.code, 'dns_unavailable');
    assert.equal(err.kind, 'temporary');
  });
});

describe('resolveAllowedHost with allowPrivate (ALLOW_PRIVATE_RELAY_HOSTS=true)', () => {
  const allow = { allowPrivate: true };
  it('when the host is loopback in any spelling, then it is allowed and normalised', async () => {
    assert.equal(await resolveAllowedHost('127.1', allow), '127.0.0.1');
    assert.equal(await resolveAllowedHost('0x7f000001', allow), '127.0.0.1');
    assert.equal(await resolveAllowedHost('[::1]', allow), '::1');
    assert.equal(await resolveAllowedHost('10.0.0.1', allow), '10.0.0.1');
  });
  it('when the host is localhost, then its IPv4 address is returned', async () => {
    assert.equal(await resolveAllowedHost('localhost', allow), '127.0.0.1');
  });
  it('when the host is malformed, then it is still refused', async () => {
    assert.equal((await refusal('1.2.3.256', allow)).code, 'validation_failed');
    assert.equal((await refusal('', allow)).code, 'validation_failed');
  });
});
