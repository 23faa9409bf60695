/**
 * DkimSigner: signs outgoing mail with the DKIM key of the From: domain (RFC 6376; RSA-SHA256,
 * relaxed/relaxed), through mailauth. Only verified domains sign: an unverified one has not
 * published its key, so a signature would fail at the receiver. Signed header fields: From, To,
 * Cc, Subject, Date, Message-ID and the threading and MIME fields (a receiver that sees any of
 * them changed fails the signature).
 *
 * A message is signed once, at its first delivery attempt, and the signature kept on the
 * submission (headers_prefix), so every recipient and every retry sends identical bytes.
 */
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import type { Logger } from '../core/logger.js';
import type { Db } from '../db/database.js';
import type { SecretBox } from '../services/secret-box.js';

export const SIGNED_HEADERS = ['From', 'To', 'Cc', 'Subject', 'Date', 'Message-ID', 'In-Reply-To', 'References', 'Reply-To', 'MIME-Version', 'Content-Type'];

export class DkimSigner {
  constructor(
    private readonly db: Db,
    private readonly secrets: SecretBox,
    private readonly logger: Logger,
  ) {}

  /** The DKIM-Signature field (CRLF-terminated) for `raw`, or '' when the domain cannot sign. */
  async sign(raw: Buffer, fromDomain: string): Promise<string> {
    const domain = await this.db
      .selectFrom('domains')
      .select(['name', 'dkim_selector', 'dkim_private_key_enc'])
      .where('name', '=', fromDomain.toLowerCase())
      .where('status', '=', 'verified')
      .executeTakeFirst();
    if (!domain?.dkim_private_key_enc) return '';
    const key = {
      signingDomain: domain.name,
      selector: domain.dkim_selector,
      privateKey: this.secrets.decrypt(domain.dkim_private_key_enc),
      canonicalization: 'relaxed/relaxed',
      algorithm: 'rsa-sha256',
    };
    // mailauth signs one signature per `signatureData` entry (its typings only show the
    // top-level fields, which alone sign nothing)
    const result = await dkimSign(raw, { ...key, headerList: SIGNED_HEADERS, signatureData: [key] });
    if (result.errors?.length) {
      this.logger.warn({ event: 'dkim.sign.failed', domain: domain.name, errors: result.errors.map((e) => e.err.message) }, 'DKIM signing failed');
    }
    return result.signatures;
  }
}
