/**
 * TLS material for the SMTP listeners: TLS_CERT_FILE/TLS_KEY_FILE when set, otherwise a
 * self-signed pair for MAIL_HOSTNAME generated once into DATA_DIR/tls and reused. A self-signed
 * certificate still gives encryption against passive listeners; operators put a real one in
 * place with certbot (see docs).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { generate } from 'selfsigned';
import type { Logger } from '../core/logger.js';

export interface TlsMaterial {
  key: Buffer;
  cert: Buffer;
  /** Where they came from, for the start-up log. */
  source: 'files' | 'self-signed';
}

export async function loadTlsMaterial(options: {
  certFile?: string;
  keyFile?: string;
  dataDir: string;
  hostname: string;
  logger: Logger;
}): Promise<TlsMaterial> {
  if (options.certFile && options.keyFile) {
    try {
      return { cert: readFileSync(options.certFile), key: readFileSync(options.keyFile), source: 'files' };
    } catch (err) {
      throw new Error(`cannot read TLS_CERT_FILE/TLS_KEY_FILE: ${(err as Error).message}`, { cause: err });
    }
  }
  const dir = path.join(options.dataDir, 'tls');
  const certPath = path.join(dir, 'selfsigned-cert.pem');
  const keyPath = path.join(dir, 'selfsigned-key.pem');
  if (!existsSync(certPath) || !existsSync(keyPath)) {
    const pems = await generate([{ name: 'commonName', value: options.hostname }], {
      keySize: 2048,
      algorithm: 'sha256',
      notAfterDate: new Date(Date.now() + 10 * 365 * 24 * 3600 * 1000),
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: options.hostname }] }],
    });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(keyPath, pems.private, { mode: 0o600 });
    writeFileSync(certPath, pems.cert);
    options.logger.info({ event: 'tls.selfsigned.created', cert: certPath }, 'generated a self-signed TLS certificate');
  }
  return { cert: readFileSync(certPath), key: readFileSync(keyPath), source: 'self-signed' };
}
