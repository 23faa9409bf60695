/**
 * The DNS records a tenant publishes for a domain, and the pure checks that compare what DNS
 * answered with them. Used by DomainsService (GET /api/domains/:id/dns-records) and by the
 * verification job (DomainVerifier). No I/O here: the verifier resolves, these functions judge.
 *
 * Records and why each looks the way it does:
 * - MX (RFC 5321 section 5.1): `<domain> MX 10 <MAIL_HOSTNAME>`. Matches when any MX of the
 *   domain names MAIL_HOSTNAME (other, backup MX hosts may sit beside it).
 * - SPF (RFC 7208): `v=spf1 mx a:<MAIL_HOSTNAME> ~all`. Soft fail (`~all`) rather than `-all`
 *   because a tenant's mail may also leave through an ESP they add later; DMARC quarantine plus
 *   our DKIM signature is the enforcement. Matches when the domain has exactly one SPF record
 *   (two is a permerror, section 4.5) that authorizes us before any `all` term: a pass-qualified
 *   `mx`, `mx:<domain>` or `a:<MAIL_HOSTNAME>` mechanism. `redirect=` and `include:` are not
 *   followed, so a record that only reaches us through them is reported as a mismatch.
 * - DKIM (RFC 6376 section 3.6.1): TXT at `<selector>._domainkey.<domain>`,
 *   `v=DKIM1; k=rsa; p=<base64 of the SubjectPublicKeyInfo DER>`. Matches when a record there
 *   carries our public key.
 * - DMARC (RFC 7489 section 6.3): TXT at `_dmarc.<domain>`,
 *   `v=DMARC1; p=quarantine; rua=mailto:postmaster@<domain>` (postmaster must exist for every
 *   mail domain, RFC 5321 section 4.5.1, so reports have a home). Reported, not required: any
 *   single valid DMARC record the tenant prefers counts as ok.
 * - Ownership: TXT at `_mailserver-verify.<domain>`, `mailserver-verification=<token>`. A label
 *   of its own keeps the apex TXT set (where SPF lives) untouched.
 */
import { createPublicKey } from 'node:crypto';

export const RECORD_KEYS = ['mx', 'spf', 'dkim', 'dmarc', 'verification'] as const;
export type RecordKey = (typeof RECORD_KEYS)[number];

/** MX, SPF, DKIM and the token decide `verified`; DMARC is reported only. */
export const REQUIRED_RECORDS: ReadonlySet<RecordKey> = new Set<RecordKey>(['mx', 'spf', 'dkim', 'verification']);

export const MX_PRIORITY = 10;
export const VERIFICATION_LABEL = '_mailserver-verify';
export const VERIFICATION_PREFIX = 'mailserver-verification=';

export interface DnsRecord {
  /** Which check this record answers to (the key in a domain's dns_results). */
  record: RecordKey;
  type: 'MX' | 'TXT';
  host: string;
  value: string;
  priority?: number;
  required: boolean;
  purpose: string;
}

/** ok; missing: nothing there; mismatch: something there, but not ours; error: DNS did not answer. */
export type CheckStatus = 'ok' | 'missing' | 'mismatch' | 'error';

export interface RecordCheck {
  status: CheckStatus;
  type: 'MX' | 'TXT';
  host: string;
  expected: string;
  found: string[];
  required: boolean;
  /** Why it is not ok, for people. */
  detail?: string;
}

export type RecordChecks = Record<RecordKey, RecordCheck>;

export interface DomainForRecords {
  name: string;
  dkim_selector: string;
  dkim_public_key: string | null;
  verification_token: string;
}

/** The `p=` value of a DKIM record: base64 of the SubjectPublicKeyInfo DER (RFC 6376 section 3.6.1). */
export function dkimPublicKeyValue(pem: string | null): string {
  if (!pem) return '';
  return createPublicKey(pem).export({ type: 'spki', format: 'der' }).toString('base64');
}

export function expectedRecords(domain: DomainForRecords, mailHostname: string): DnsRecord[] {
  const host = domain.name;
  return [
    { record: 'mx', type: 'MX', host, value: mailHostname, priority: MX_PRIORITY, required: true, purpose: `delivers mail for ${host} to this server` },
    {
      record: 'spf',
      type: 'TXT',
      host,
      value: `v=spf1 mx a:${mailHostname} ~all`,
      required: true,
      purpose: 'SPF: authorizes this server to send mail from the domain (merge into an existing SPF record: a domain may have only one)',
    },
    {
      record: 'dkim',
      type: 'TXT',
      host: `${domain.dkim_selector}._domainkey.${host}`,
      value: `v=DKIM1; k=rsa; p=${dkimPublicKeyValue(domain.dkim_public_key)}`,
      required: true,
      purpose: 'DKIM: the public key receivers use to check the signature this server adds to outgoing mail',
    },
    {
      record: 'dmarc',
      type: 'TXT',
      host: `_dmarc.${host}`,
      value: `v=DMARC1; p=quarantine; rua=mailto:postmaster@${host}`,
      required: false,
      purpose: 'DMARC: tells receivers to quarantine mail that fails SPF and DKIM alignment (recommended, not required)',
    },
    {
      record: 'verification',
      type: 'TXT',
      host: `${VERIFICATION_LABEL}.${host}`,
      value: `${VERIFICATION_PREFIX}${domain.verification_token}`,
      required: true,
      purpose: 'proves the domain belongs to your organisation',
    },
  ];
}

/** MX answers as `<priority> <exchange>`. */
export function checkMx(expected: DnsRecord, answers: { exchange: string; priority: number }[]): RecordCheck {
  const found = answers.map((a) => `${a.priority} ${a.exchange}`);
  const ours = answers.some((a) => sameHost(a.exchange, expected.value));
  return result(expected, found, ours, `no MX record names ${expected.value}`);
}

export function checkSpf(expected: DnsRecord, txt: string[], mailHostname: string): RecordCheck {
  const found = txt.filter((t) => /^v=spf1(\s|$)/i.test(t.trim()));
  if (found.length > 1) return { ...base(expected, found), status: 'mismatch', detail: 'more than one SPF record (RFC 7208 section 4.5: a permanent error); merge them into one' };
  const record = found[0];
  return result(expected, found, record !== undefined && spfAuthorizes(record, expected.host, mailHostname), `the SPF record does not authorize ${mailHostname} (add "mx" or "a:${mailHostname}" before "all")`);
}

/** Whether a pass-qualified mx / mx:<domain> / a:<host> term comes before any `all`. */
export function spfAuthorizes(record: string, domain: string, mailHostname: string): boolean {
  for (const term of record.trim().split(/\s+/).slice(1)) {
    const m = /^([+?~-]?)([a-z0-9]+)(?::([^/]*))?(\/.*)?$/i.exec(term);
    if (!m) continue; // modifiers (name=value) and anything we do not parse
    const [, qualifier, mechanism, target] = m;
    const mech = mechanism!.toLowerCase();
    if (mech === 'all') return false;
    if (qualifier !== '' && qualifier !== '+') continue;
    if (mech === 'mx' && (target === undefined || sameHost(target, domain))) return true;
    if (mech === 'a' && target !== undefined && sameHost(target, mailHostname)) return true;
  }
  return false;
}

export function checkDkim(expected: DnsRecord, txt: string[]): RecordCheck {
  const wanted = tagValue(expected.value, 'p');
  const ours = txt.some((t) => {
    const v = tagValue(t, 'v');
    const k = tagValue(t, 'k');
    return (v === undefined || v === 'DKIM1') && (k === undefined || k.toLowerCase() === 'rsa') && tagValue(t, 'p') === wanted;
  });
  return result(expected, txt, ours, 'the DKIM record does not carry this domain\'s public key');
}

export function checkDmarc(expected: DnsRecord, txt: string[]): RecordCheck {
  // RFC 7489 section 6.6.3: records not starting with v=DMARC1 are discarded; more than one is none
  const found = txt.filter((t) => /^v\s*=\s*DMARC1\s*(;|$)/.test(t.trim()));
  if (found.length > 1) return { ...base(expected, found), status: 'mismatch', detail: 'more than one DMARC record: receivers ignore them all' };
  const policy = found[0] === undefined ? undefined : tagValue(found[0], 'p');
  return result(expected, found, policy !== undefined && ['none', 'quarantine', 'reject'].includes(policy.toLowerCase()), 'the DMARC record has no valid p= policy');
}

export function checkVerification(expected: DnsRecord, txt: string[]): RecordCheck {
  return result(expected, txt, txt.some((t) => t.trim() === expected.value), 'the verification record does not hold this domain\'s token');
}

/** A lookup that failed for a reason other than "no such record" (timeout, SERVFAIL). */
export function checkError(expected: DnsRecord, err: unknown): RecordCheck {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return { ...base(expected, []), status: 'error', detail: `DNS lookup failed${code ? ` (${code})` : ''}; will retry` };
}

/**
 * The outcome of a full check: `verified` when every required record is ok, `failed` when any
 * required record is missing or wrong, `inconclusive` when the only problems are DNS errors
 * (a DNS outage must not unverify a domain).
 */
export function verdict(checks: RecordChecks): 'verified' | 'failed' | 'inconclusive' {
  const required = RECORD_KEYS.filter((k) => REQUIRED_RECORDS.has(k)).map((k) => checks[k].status);
  if (required.some((s) => s === 'missing' || s === 'mismatch')) return 'failed';
  if (required.some((s) => s === 'error')) return 'inconclusive';
  return 'verified';
}

/** The required records that are not ok, in display order. */
export function failingRecords(checks: RecordChecks): RecordKey[] {
  return RECORD_KEYS.filter((k) => REQUIRED_RECORDS.has(k) && checks[k].status !== 'ok');
}

function base(expected: DnsRecord, found: string[]): Omit<RecordCheck, 'status'> {
  return {
    type: expected.type,
    host: expected.host,
    expected: expected.priority === undefined ? expected.value : `${expected.priority} ${expected.value}`,
    found,
    required: expected.required,
  };
}

function result(expected: DnsRecord, found: string[], ok: boolean, mismatchDetail: string): RecordCheck {
  if (ok) return { ...base(expected, found), status: 'ok' };
  if (found.length === 0) return { ...base(expected, found), status: 'missing', detail: `no ${expected.type} record at ${expected.host}` };
  return { ...base(expected, found), status: 'mismatch', detail: mismatchDetail };
}

function sameHost(a: string, b: string): boolean {
  return a.trim().toLowerCase().replace(/\.$/, '') === b.trim().toLowerCase().replace(/\.$/, '');
}

/** A tag of a `tag=value; tag=value` record (DKIM, DMARC), whitespace removed from the value. */
function tagValue(record: string, tag: string): string | undefined {
  for (const part of record.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === tag) return part.slice(eq + 1).replace(/\s+/g, '');
  }
  return undefined;
}
