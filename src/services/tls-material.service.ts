/**
 * TLS material for the SMTP listeners: TLS_CERT_FILE/TLS_KEY_FILE when set, otherwise a
 * self-signed pair for MAIL_HOSTNAME generated once into DATA_DIR/tls and reused. A self-signed
 * certificate still gives encryption against passive listeners; operators put a real one in
 * place with certbot (docs/operations.md).
 *
 * Certificates are renewed while the server runs (certbot every 60 days), so the files are
 * watched: CertificateWatcher polls them (fs.watchFile stats the path, so certbot's swap of the
 * live/ symlinks to new archive/ files is seen like an in-place write) and SIGHUP asks for a
 * reload at once (scripts/certbot-deploy-hook.sh). A new pair only replaces the old one when it
 * loads: a certificate written before its key, or a broken file, keeps the old pair serving.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, unwatchFile, watchFile, writeFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { generate } from 'selfsigned';
import { describeError } from '../core/errors.js';
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
  if (options.certFile && options.keyFile) return readPair(options.certFile, options.keyFile);
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

/** Reads and checks a PEM pair: both files readable and the key belonging to the certificate. */
export function readPair(certFile: string, keyFile: string): TlsMaterial {
  let material: TlsMaterial;
  try {
    material = { cert: readFileSync(certFile), key: readFileSync(keyFile), source: 'files' };
  } catch (err) {
    throw new Error(`cannot read TLS_CERT_FILE/TLS_KEY_FILE: ${(err as Error).message}`, { cause: err });
  }
  try {
    // the same check the listeners make: a bad PEM or a key of another certificate throws here
    tls.createSecureContext({ cert: material.cert, key: material.key });
  } catch (err) {
    throw new Error(`TLS_CERT_FILE/TLS_KEY_FILE do not hold a usable certificate and key: ${describeError(err)}`, { cause: err });
  }
  return material;
}

/** A short fingerprint of a PEM certificate chain for logs (not the X.509 fingerprint). */
function pemDigest(cert: Buffer): string {
  return createHash('sha256').update(cert).digest('hex').slice(0, 16);
}

/**
 * Watches TLS_CERT_FILE/TLS_KEY_FILE and hands a new, valid pair to `apply`. reload() is also
 * what SIGHUP calls. Changes are debounced: certbot writes the certificate and the key one after
 * the other, and a reload between the two would fail the key check.
 */
export class CertificateWatcher {
  private timer: NodeJS.Timeout | null = null;
  private current: string;
  private readonly onChange = (): void => this.schedule();

  constructor(
    private readonly files: { certFile: string; keyFile: string },
    initial: TlsMaterial,
    private readonly apply: (material: TlsMaterial) => void,
    private readonly logger: Logger,
    private readonly options: { intervalMs: number; debounceMs?: number },
  ) {
    this.current = pemDigest(initial.cert) + pemDigest(initial.key);
  }

  start(): void {
    watchFile(this.files.certFile, { interval: this.options.intervalMs, persistent: false }, this.onChange);
    watchFile(this.files.keyFile, { interval: this.options.intervalMs, persistent: false }, this.onChange);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    unwatchFile(this.files.certFile, this.onChange);
    unwatchFile(this.files.keyFile, this.onChange);
  }

  /** Loads the files now; applies them when they changed and are valid. Never throws. */
  reload(reason: 'watch' | 'signal'): 'reloaded' | 'unchanged' | 'failed' {
    let material: TlsMaterial;
    try {
      material = readPair(this.files.certFile, this.files.keyFile);
    } catch (err) {
      this.logger.warn({ event: 'tls.reload.failed', reason, err: describeError(err) }, 'new TLS certificate not loaded; the previous one stays in use');
      return 'failed';
    }
    const digest = pemDigest(material.cert) + pemDigest(material.key);
    if (digest === this.current) return 'unchanged';
    this.apply(material);
    this.current = digest;
    this.logger.info({ event: 'tls.reloaded', reason, cert: this.files.certFile, digest: pemDigest(material.cert) }, 'TLS certificate reloaded');
    return 'reloaded';
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.reload('watch');
    }, this.options.debounceMs ?? 500);
    this.timer.unref();
  }
}
