/**
 * Direct delivery to the recipient domain's mail exchangers: the last route, used only when
 * DIRECT_DELIVERY=true (DESIGN.md §1). The queue calls send() with one message for recipients of
 * one domain; the answer follows the transport contract (delivery/transport.ts). This route is
 * never `routeUnavailable`: there is no route after it, so every failure is the message's.
 *
 * Routing (RFC 5321 §5.1): MX records through our DNS resolver (DNS_SERVERS), lowest preference
 * first and shuffled among equals; no MX records means the domain's own A/AAAA (implicit MX); a
 * null MX (RFC 7505, exchange ".") means the domain accepts no mail: permanent 5.1.10. NXDOMAIN is
 * permanent 5.1.2; a DNS timeout or SERVFAIL is temporary 4.4.3. An address literal recipient
 * (`user@[192.0.2.1]`, RFC 5321 §4.1.3) goes to that address.
 *
 * Each MX host's addresses (IPv4 first) are tried in order, at most MAX_MX_ADDRESSES of them, and
 * never a loopback, private or other special-purpose address unless `allowPrivate` (the same
 * ranges as the relay SSRF guard, services/host-guard.ts): a domain must not make us probe our
 * own network. A host that cannot be reached, or that refuses the session in its greeting or EHLO
 * reply (Postfix's smtp_skip_5xx_greeting), makes us try the next one; once a host has accepted
 * the session, its reply to MAIL, RCPT or DATA ends the attempt: 4xx temporary, 5xx permanent,
 * with that reply. When every host failed to connect the result is temporary.
 *
 * TLS is opportunistic, like Postfix's `smtp_tls_security_level = may`: STARTTLS is used whenever
 * offered, and certificates are NOT verified, because MX certificates rarely match the MX name
 * (self-signed, expired, or for another name) and refusing them would only push the mail into
 * plain text, which is worse. When the TLS handshake itself fails, the same host is tried once more
 * without STARTTLS, as Postfix does. This protects against passive eavesdropping only; a network
 * attacker can still strip STARTTLS (MTA-STS/DANE are not implemented).
 *
 * The SMTP client is nodemailer's SMTPConnection (what its SMTP transport runs on, one connection
 * per attempt, no pool) used directly, because the route logic needs to know whether an error
 * happened before the session was established (try the next host) or after (end the attempt).
 */
import net from 'node:net';
import type tls from 'node:tls';
import { domainToASCII } from 'node:url';
import SMTPConnection, { type SMTPConnectionSendInfo } from 'nodemailer/lib/smtp-connection';
import type { NodemailerError } from 'nodemailer/lib/errors';
import type { DnsResolve } from '../../services/dns-resolver.js';
import { ipRefusal } from '../../services/host-guard.js';
import { statusFromReply } from '../dsn.js';
import { DeliveryError, type DeliveryResult, type DeliveryStage, type OutgoingMessage, type Transport } from '../transport.js';

export interface MxTransportOptions {
  /** The shared resolver (services/dns-resolver.ts), so DNS_SERVERS applies. */
  resolve: DnsResolve;
  /** DIRECT_DELIVERY_PORT: 25 in production, a test peer's port in tests. */
  port: number;
  /** Our name in EHLO (MAIL_HOSTNAME). */
  heloName: string;
  /** OUTBOUND_TIMEOUT in ms: connect, greeting and each command's reply. */
  timeoutMs: number;
  /**
   * Extra CA certificates (OUTBOUND_TLS_CA_FILE contents), handed to TLS like the relay transports
   * do; since MX certificates are not verified (see the header) it never decides delivery.
   */
  ca?: tls.SecureContextOptions['ca'];
  /** Allow loopback/private MX addresses (tests; ALLOW_PRIVATE_RELAY_HOSTS). */
  allowPrivate?: boolean;
}

/** Addresses tried per attempt across all MX hosts (Postfix smtp_mx_address_limit is 5). */
const MAX_MX_ADDRESSES = 10;

/** Node's resolver codes for "this name or record does not exist": stable answers, not outages. */
const NO_SUCH_NAME = 'ENOTFOUND';
const NO_DATA = 'ENODATA';

interface MxHost {
  name: string;
  /** Addresses already known (an address literal recipient); otherwise resolved from `name`. */
  addresses?: string[];
}

/** What one connection attempt came to: delivered, or a failure that ends the attempt or not. */
type AttemptOutcome = { ok: true; result: DeliveryResult } | { ok: false; tryNext: boolean; tlsFailed: boolean; error: DeliveryError };

export function createMxTransport(options: MxTransportOptions): Transport {
  return {
    route: 'mx',
    send: (message) => sendViaMx(options, message),
    // nothing to check up front: every domain has its own hosts, found at send time
    verify: () => Promise.resolve(),
    // one connection per attempt, closed when the attempt ends: nothing is pooled
    close: () => undefined,
  };
}

async function sendViaMx(options: MxTransportOptions, message: OutgoingMessage): Promise<DeliveryResult> {
  const domain = recipientDomain(message.rcptTo);
  const hosts = await mxHosts(options.resolve, domain);
  const failures = new AttemptFailures();
  let tried = 0;
  for (const host of hosts) {
    const addresses = await hostAddresses(options.resolve, host, failures);
    for (const address of addresses) {
      const refusal = options.allowPrivate ? null : ipRefusal(address);
      if (refusal) {
        failures.refused.push(`${host.name}[${address}] is ${refusal}`);
        continue;
      }
      if (tried++ >= MAX_MX_ADDRESSES) return failures.conclude(domain);
      const outcome = await attemptWithTlsFallback(options, host.name, address, message);
      if (outcome.ok) return outcome.result;
      if (!outcome.tryNext) throw outcome.error;
      failures.connect = outcome.error;
    }
  }
  return failures.conclude(domain);
}

/** The recipients' one domain, in its DNS (A-label) form, or an address literal as `[ip]`. */
function recipientDomain(rcptTo: string[]): string {
  const domains = new Set(rcptTo.map((address) => address.slice(address.lastIndexOf('@') + 1).toLowerCase()));
  if (domains.size !== 1) {
    throw new DeliveryError('permanent', 'config', `mx delivery takes recipients of one domain, got ${domains.size}`, { status: '5.5.3' });
  }
  const domain = [...domains][0]!;
  if (domain.startsWith('[') && domain.endsWith(']')) return domain;
  const ascii = rcptTo[0]!.includes('@') ? domainToASCII(domain) : '';
  if (ascii === '') throw new DeliveryError('permanent', 'rcpt', `bad recipient domain "${domain}"`, { status: '5.1.2' });
  return ascii;
}

/** The hosts to try, best first (RFC 5321 §5.1), or a DeliveryError for a domain that takes no mail. */
async function mxHosts(resolve: DnsResolve, domain: string): Promise<MxHost[]> {
  const literal = addressLiteral(domain);
  if (literal !== null) return [{ name: domain, addresses: [literal] }];
  let records: { priority: number; exchange: string }[];
  try {
    records = (await resolve(domain, 'MX')) as { priority: number; exchange: string }[];
  } catch (err) {
    const code = dnsCode(err);
    if (code === NO_DATA) return [{ name: domain }];
    if (code === NO_SUCH_NAME) throw new DeliveryError('permanent', 'connect', `domain ${domain} does not exist (NXDOMAIN)`, { status: '5.1.2', cause: err });
    throw new DeliveryError('temporary', 'connect', `DNS lookup of MX for ${domain} failed: ${code}`, { status: '4.4.3', cause: err });
  }
  if (records.length === 0) return [{ name: domain }];
  const usable = records.filter((r) => r.exchange !== '' && r.exchange !== '.');
  if (usable.length === 0) {
    throw new DeliveryError('permanent', 'connect', `domain ${domain} does not accept mail (null MX, RFC 7505)`, { status: '5.1.10' });
  }
  return byPreference(usable).map((r) => ({ name: r.exchange.replace(/\.$/, '').toLowerCase() }));
}

/** Sorted by preference, random order among equal preferences (RFC 5321 §5.1 load spreading). */
function byPreference<T extends { priority: number }>(records: T[]): T[] {
  return records
    .map((record) => ({ record, tiebreak: Math.random() }))
    .sort((a, b) => a.record.priority - b.record.priority || a.tiebreak - b.tiebreak)
    .map((entry) => entry.record);
}

/** `[192.0.2.1]` → `192.0.2.1`, `[IPv6:2001:db8::1]` → `2001:db8::1`, otherwise null. */
function addressLiteral(domain: string): string | null {
  if (!domain.startsWith('[') || !domain.endsWith(']')) return null;
  const inner = domain.slice(1, -1).replace(/^ipv6:/i, '');
  if (net.isIP(inner) === 0) throw new DeliveryError('permanent', 'rcpt', `bad address literal ${domain}`, { status: '5.1.2' });
  return inner;
}

/** A host's addresses, IPv4 first; a lookup that fails for a reason other than "none" is noted. */
async function hostAddresses(resolve: DnsResolve, host: MxHost, failures: AttemptFailures): Promise<string[]> {
  if (host.addresses) return host.addresses;
  const lookups = await Promise.allSettled([resolve(host.name, 'A'), resolve(host.name, 'AAAA')]);
  const addresses: string[] = [];
  for (const lookup of lookups) {
    if (lookup.status === 'fulfilled') addresses.push(...(lookup.value as string[]));
    else if (![NO_SUCH_NAME, NO_DATA].includes(dnsCode(lookup.reason))) failures.dns.push(`${host.name}: ${dnsCode(lookup.reason)}`);
  }
  return addresses;
}

function dnsCode(err: unknown): string {
  return (err as NodeJS.ErrnoException | undefined)?.code ?? 'unknown error';
}

/** Why no host took the message, turned into the one error the attempt ends with. */
class AttemptFailures {
  /** The last host that could not be reached or refused the session. */
  connect: DeliveryError | undefined;
  /** Address lookups that failed temporarily. */
  readonly dns: string[] = [];
  /** Addresses skipped as private/loopback. */
  readonly refused: string[] = [];

  conclude(domain: string): never {
    if (this.connect) throw this.connect;
    if (this.dns.length > 0) throw new DeliveryError('temporary', 'connect', `DNS lookup of mail hosts for ${domain} failed: ${this.dns.join('; ')}`, { status: '4.4.3' });
    if (this.refused.length > 0) {
      throw new DeliveryError('permanent', 'connect', `mail for ${domain} has no usable host: ${this.refused.join('; ')}, which is not allowed`, { status: '5.4.4' });
    }
    throw new DeliveryError('permanent', 'connect', `mail for ${domain} has no usable host: no addresses found`, { status: '5.4.4' });
  }
}

/** One host, with STARTTLS if offered; a failed TLS handshake is retried once in plain text. */
async function attemptWithTlsFallback(options: MxTransportOptions, host: string, address: string, message: OutgoingMessage): Promise<AttemptOutcome> {
  const first = await attempt(options, host, address, message, true);
  if (first.ok || !first.tlsFailed) return first;
  return attempt(options, host, address, message, false);
}

function attempt(options: MxTransportOptions, host: string, address: string, message: OutgoingMessage, useTls: boolean): Promise<AttemptOutcome> {
  return new Promise((resolve) => {
    const remote = `${host}[${address}]`;
    const connection = new SMTPConnection({
      host: address,
      port: options.port,
      name: options.heloName,
      secure: false,
      ignoreTLS: !useTls,
      // a server that refuses the STARTTLS command gets the message in plain text (level "may")
      opportunisticTLS: true,
      connectionTimeout: options.timeoutMs,
      greetingTimeout: options.timeoutMs,
      socketTimeout: options.timeoutMs,
      logger: false,
      // unverified on purpose: see the header (opportunistic TLS); servername for SNI only
      tls: { rejectUnauthorized: false, servername: net.isIP(host) === 0 ? host : undefined, ca: options.ca },
    });
    let established = false;
    let settled = false;
    const finish = (outcome: AttemptOutcome): void => {
      if (settled) return;
      settled = true;
      if (outcome.ok) connection.quit();
      else connection.close();
      resolve(outcome);
    };
    // a handshake error arrives from the TLS socket as ESOCKET, so the connection's state tells it apart
    connection.on('error', (err: NodemailerError) => finish(failure(err, remote, established, connection.upgrading === true)));
    connection.connect((err) => {
      if (err) return finish(failure(err, remote, false));
      established = true;
      const envelope = { from: message.mailFrom, to: message.rcptTo, size: message.raw.length, use8BitMime: message.raw.some((b) => b > 0x7f) };
      connection.send(envelope, message.raw, (sendErr, info) => {
        if (sendErr) return finish(failure(sendErr, remote, true));
        finish(delivered(info, remote));
      });
    });
  });
}

/** Success, unless the server took only some recipients: the queue sends one, so any refusal is the failure. */
function delivered(info: SMTPConnectionSendInfo, remote: string): AttemptOutcome {
  const rejected = info.rejectedErrors?.[0];
  if (rejected) return failure(rejected, remote, true);
  return { ok: true, result: { reply: oneLine(info.response) } };
}

/**
 * Classifies a nodemailer error. Before the session is established (connect, greeting, EHLO,
 * STARTTLS) the next host is tried; after it, the attempt ends. A reply decides the kind (5xx
 * permanent except 503, as nodemailer's `permanent` says); no reply (timeout, reset) is temporary.
 */
function failure(err: NodemailerError, remote: string, established: boolean, inHandshake = false): AttemptOutcome {
  const tlsFailed = !established && (inHandshake || err.code === 'ETLS') && err.responseCode === undefined;
  const stage: DeliveryStage = established ? stageOf(err.command) : err.command === 'STARTTLS' ? 'tls' : 'connect';
  if (typeof err.responseCode === 'number' && err.response) {
    const permanent = err.permanent ?? err.responseCode >= 500;
    const kind = permanent ? 'permanent' : 'temporary';
    const reply = oneLine(err.response);
    const error = new DeliveryError(kind, stage, reply, { status: statusFromReply(reply, permanent ? '5.0.0' : '4.0.0'), cause: err });
    return { ok: false, tryNext: !established, tlsFailed, error };
  }
  if (err.code === 'EMESSAGE' || err.code === 'EENVELOPE') {
    // refused by the client library itself: the server's SIZE limit, or an address it cannot send
    const status = err.code === 'EMESSAGE' ? '5.3.4' : '5.1.3';
    return { ok: false, tryNext: false, tlsFailed, error: new DeliveryError('permanent', stage, `${remote}: ${oneLine(err.message)}`, { status, cause: err }) };
  }
  const what = established ? 'lost connection with' : tlsFailed ? 'TLS handshake with' : 'connect to';
  const detail = oneLine(err.message) + (err.originalCode ? ` (${err.originalCode})` : '');
  const error = new DeliveryError('temporary', stage, `${what} ${remote}: ${detail}`, { status: established ? '4.4.2' : '4.4.1', cause: err });
  return { ok: false, tryNext: !established, tlsFailed, error };
}

function stageOf(command: string | undefined): DeliveryStage {
  if (command === 'MAIL FROM') return 'mail';
  if (command === 'RCPT TO') return 'rcpt';
  return 'data';
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}
