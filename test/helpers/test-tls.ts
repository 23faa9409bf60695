/**
 * A self-signed TLS certificate for test peers (fake relays, fake MX hosts, fake ESP APIs):
 * CN=localhost with subjectAltName DNS:localhost and IP:127.0.0.1, so a client that connects to
 * either name with certificate checks ON accepts it, provided it trusts this certificate.
 *
 * The certificate is generated once per process (selfsigned is async only, so it is made when this
 * module is first imported, with a top-level await) and written to a temporary PEM file: tests pass
 * `caFile` as OUTBOUND_TLS_CA_FILE, and our outbound TLS then trusts it as an extra CA while
 * `rejectUnauthorized` stays true. That way a test proves the real verification path, and a client
 * WITHOUT the file must refuse the peer (the "untrusted certificate" case).
 *
 * RSA 2048 (about 70 ms, once): selfsigned 5.5 with the installed @peculiar packages fails to
 * encode EC keys ("Cannot get schema for 'AlgorithmIdentifier'").
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generate } from 'selfsigned';

export interface TestCertificate {
  /** PEM certificate (also the CA to trust: it signs itself). */
  cert: string;
  /** PEM private key. */
  key: string;
  /** Absolute path of a file holding `cert`, for OUTBOUND_TLS_CA_FILE. */
  caFile: string;
}

const ONE_DAY_MS = 24 * 3600 * 1000;

type AltName = { type: 2; value: string } | { type: 7; ip: string };

/**
 * A self-signed server certificate for `commonName` and `altNames` (DNS names: type 2, IPs: type
 * 7), valid from a day ago for 30 days: a day of slack on both sides, so clock skew between test
 * processes does not matter. The other helpers and tests that need a certificate of their own
 * (nginx, the certificate reload) make it here.
 */
export async function selfSignedCertificate(commonName: string, altNames: AltName[] = [{ type: 2, value: commonName }]): Promise<{ cert: string; key: string }> {
  const pems = await generate([{ name: 'commonName', value: commonName }], {
    keySize: 2048,
    algorithm: 'sha256',
    notBeforeDate: new Date(Date.now() - ONE_DAY_MS),
    notAfterDate: new Date(Date.now() + 30 * ONE_DAY_MS),
    extensions: [
      { name: 'basicConstraints', cA: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, keyCertSign: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

async function createTestCertificate(): Promise<TestCertificate> {
  const pems = await selfSignedCertificate('localhost', [
    { type: 2, value: 'localhost' },
    { type: 7, ip: '127.0.0.1' },
  ]);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'test-tls-'));
  const caFile = path.join(dir, 'test-ca.pem');
  writeFileSync(caFile, pems.cert);
  return { ...pems, caFile };
}

const material = await createTestCertificate();

/** The process-wide test certificate; every call returns the same one. */
export function testCertificate(): TestCertificate {
  return material;
}
