import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  checkDkim,
  checkDmarc,
  checkMx,
  checkSpf,
  checkVerification,
  expectedRecords,
  spfAuthorizes,
  verdict,
  type RecordCheck,
  type RecordChecks,
  type RecordKey,
} from '../../src/services/domain-records.js';

const HOST = 'mx.test.local';
const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
const domain = { name: 'example.org', dkim_selector: 'ms20250101', dkim_public_key: publicKey, verification_token: 'abc123' };
const records = expectedRecords(domain, HOST);
const want = (key: RecordKey) => records.find((r) => r.record === key)!;

describe('records to publish', () => {
  it('when a domain is added, then MX, SPF, DKIM, DMARC and the token record are listed with hosts and values', () => {
    assert.deepEqual(
      records.map((r) => [r.record, r.type, r.host, r.required]),
      [
        ['mx', 'MX', 'example.org', true],
        ['spf', 'TXT', 'example.org', true],
        ['dkim', 'TXT', 'ms20250101._domainkey.example.org', true],
        ['dmarc', 'TXT', '_dmarc.example.org', false],
        ['verification', 'TXT', '_mailserver-verify.example.org', true],
      ],
    );
    assert.equal(want('mx').value, HOST);
    assert.equal(want('mx').priority, 10);
    assert.equal(want('spf').value, `v=spf1 mx a:${HOST} ~all`);
    assert.equal(want('dmarc').value, 'v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org');
    assert.equal(want('verification').value, 'mailserver-verification=abc123');
    const pem = publicKey.replace(/-----[^-]+-----|\s/g, '');
    assert.equal(want('dkim').value, `v=DKIM1; k=rsa; p=${pem}`);
  });
});

describe('SPF authorization', () => {
  const cases: [string, boolean][] = [
    ['v=spf1 mx a:mx.test.local ~all', true],
    ['v=spf1 mx -all', true],
    ['v=spf1 +mx -all', true],
    ['v=spf1 mx:example.org -all', true],
    ['v=spf1 a:MX.TEST.LOCAL. -all', true],
    ['v=spf1 a:mx.test.local/24 -all', true],
    ['v=spf1 include:_spf.google.com mx ~all', true],
    ['v=spf1 -mx a:other.example -all', false],
    ['v=spf1 ~mx -all', false],
    ['v=spf1 -all mx', false],
    ['v=spf1 +all', false],
    ['v=spf1 include:mx.test.local -all', false],
    ['v=spf1 redirect=_spf.example.org', false],
    ['v=spf1 mx:other.example -all', false],
  ];
  for (const [record, ok] of cases) {
    it(`when the SPF record is "${record}", then it ${ok ? 'authorizes' : 'does not authorize'} us`, () => {
      assert.equal(spfAuthorizes(record, 'example.org', HOST), ok);
    });
  }

  it('when there are two SPF records, then mismatch (RFC 7208 permerror) even if one is right', () => {
    const r = checkSpf(want('spf'), ['v=spf1 mx -all', 'v=spf1 a -all'], HOST);
    assert.equal(r.status, 'mismatch');
    assert.match(r.detail ?? '', /more than one/);
  });

  it('when the apex has TXT records but no SPF, then missing', () => {
    assert.equal(checkSpf(want('spf'), ['google-site-verification=x'], HOST).status, 'missing');
  });
});

describe('record checks', () => {
  const dkimValue = want('dkim').value;
  const p = dkimValue.split('p=')[1]!;
  const cases: [string, () => RecordCheck, RecordCheck['status']][] = [
    ['MX names us', () => checkMx(want('mx'), [{ exchange: 'backup.other', priority: 20 }, { exchange: 'MX.test.local.', priority: 10 }]), 'ok'],
    ['MX names someone else', () => checkMx(want('mx'), [{ exchange: 'mx.other', priority: 10 }]), 'mismatch'],
    ['no MX', () => checkMx(want('mx'), []), 'missing'],
    ['DKIM key as published', () => checkDkim(want('dkim'), [dkimValue]), 'ok'],
    ['DKIM key folded with spaces and no v/k tags', () => checkDkim(want('dkim'), [`p=${p.slice(0, 40)} ${p.slice(40)}`]), 'ok'],
    ['DKIM with another key', () => checkDkim(want('dkim'), ['v=DKIM1; k=rsa; p=MIIBIjANBgkqh']), 'mismatch'],
    ['DKIM with our key but k=ed25519', () => checkDkim(want('dkim'), [`v=DKIM1; k=ed25519; p=${p}`]), 'mismatch'],
    ['no DKIM', () => checkDkim(want('dkim'), []), 'missing'],
    ['DMARC quarantine', () => checkDmarc(want('dmarc'), ['v=DMARC1; p=quarantine']), 'ok'],
    ['DMARC none (the tenant\'s choice)', () => checkDmarc(want('dmarc'), ['v=DMARC1; p=none; rua=mailto:x@example.org']), 'ok'],
    ['DMARC without a policy', () => checkDmarc(want('dmarc'), ['v=DMARC1; rua=mailto:x@example.org']), 'mismatch'],
    ['two DMARC records', () => checkDmarc(want('dmarc'), ['v=DMARC1; p=none', 'v=DMARC1; p=reject']), 'mismatch'],
    ['no DMARC', () => checkDmarc(want('dmarc'), ['something else']), 'missing'],
    ['the token among others', () => checkVerification(want('verification'), ['other=1', 'mailserver-verification=abc123']), 'ok'],
    ['another token', () => checkVerification(want('verification'), ['mailserver-verification=zzz']), 'mismatch'],
    ['no token', () => checkVerification(want('verification'), []), 'missing'],
  ];
  for (const [name, run, status] of cases) {
    it(`when DNS has ${name}, then ${status}`, () => {
      assert.equal(run().status, status);
    });
  }
});

describe('verdict', () => {
  const all = (status: RecordCheck['status']): RecordChecks =>
    Object.fromEntries(records.map((r) => [r.record, { status, type: r.type, host: r.host, expected: r.value, found: [], required: r.required }])) as unknown as RecordChecks;
  it('when every record is ok, then verified', () => assert.equal(verdict(all('ok')), 'verified'));
  it('when only DMARC is missing, then still verified', () => assert.equal(verdict({ ...all('ok'), dmarc: { ...all('ok').dmarc, status: 'missing' } }), 'verified'));
  for (const key of ['mx', 'spf', 'dkim', 'verification'] as const) {
    it(`when ${key} is wrong, then failed`, () => assert.equal(verdict({ ...all('ok'), [key]: { ...all('ok')[key], status: 'mismatch' } }), 'failed'));
  }
  it('when DNS errors are the only problem, then inconclusive (no status change)', () => assert.equal(verdict({ ...all('ok'), mx: { ...all('ok').mx, status: 'error' } }), 'inconclusive'));
  it('when one record errors and another is wrong, then failed', () =>
    assert.equal(verdict({ ...all('ok'), mx: { ...all('ok').mx, status: 'error' }, spf: { ...all('ok').spf, status: 'missing' } }), 'failed'));
});
