/**
 * The SMTP relay transport: delivers through a user's own SMTP server, a tenant's SMTP provider
 * or the global relay (RELAY_URL), with nodemailer's pooled SMTP client (one pool per transport
 * instance, so one relay's connections are reused across messages).
 *
 * Security choices that never change: certificates are always verified (rejectUnauthorized, the
 * configured host name as servername); OUTBOUND_TLS_CA_FILE adds trusted CAs on top of the
 * system ones. With `requireTLS`, a relay that does not offer or refuses STARTTLS (RFC 3207) is
 * treated as stripped: the session ends before AUTH, so the password never travels in clear.
 * With `guard`, every new connection first vets the host through services/host-guard.ts and
 * connects to the vetted IP itself, so a DNS answer cannot change between check and connect.
 *
 * Failures come back as DeliveryError (delivery/transport.ts), classified for the queue:
 * connect/DNS/timeout/greeting and AUTH failures make the route unavailable (try the next one);
 * TLS failures are temporary on this route only; 5xx at MAIL/RCPT/DATA is permanent with the
 * remote reply, 4xx temporary (RFC 5321 section 4.2.1).
 */
import net from 'node:net';
import tls from 'node:tls';
import nodemailer, { type Transporter } from 'nodemailer';
import type { SMTPTransportGetSocket } from 'nodemailer/lib/smtp-transport';
import { AppError, describeError } from '../../core/errors.js';
import { parseHost, resolveAllowedHost, type HostGuardOptions } from '../../services/host-guard.js';
import { DeliveryError, type DeliveryStage, type Transport } from '../transport.js';

export interface SmtpTransportOptions {
  /** Recorded on the outbound row: `user-relay`, `provider:smtp:<name>`, `relay`. */
  route: string;
  host: string;
  port: number;
  /** Implicit TLS from the first byte (port 465). */
  secure: boolean;
  user?: string;
  pass?: string;
  /** Refuse to go on without STARTTLS (ignored when secure). */
  requireTLS: boolean;
  /** Our name in EHLO (MAIL_HOSTNAME). */
  heloName: string;
  /** Connect, greeting and per-command idle limit. */
  timeoutMs: number;
  /** Extra trusted CA certificates (PEM), added to the system ones. */
  ca?: string[];
  /** When set, every connection goes through the SSRF host guard. */
  guard?: { allowPrivate: boolean };
}

/** The pieces of RELAY_URL. */
export interface RelayEndpoint {
  host: string;
  port: number;
  secure: boolean;
  requireTLS: boolean;
  user?: string;
  pass?: string;
}

/** Connections one relay may have open at once; relays limit this per client, often to a few. */
const MAX_POOL_CONNECTIONS = 3;
/** A message whose connection dropped is retried once on a fresh one, then the queue decides. */
const MAX_REQUEUES = 1;

interface NodemailerError extends Error {
  code?: string;
  originalCode?: string;
  response?: string;
  responseCode?: number;
  command?: string;
}

/**
 * Parses RELAY_URL: `smtp://user:pass@host:587` (STARTTLS required) or `smtps://user:pass@host:465`
 * (implicit TLS); user and password are URL-decoded; ports default to 587 and 465. The error
 * never repeats the URL, which holds a password.
 */
export function parseRelayUrl(url: string): RelayEndpoint {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error('RELAY_URL is not a valid URL: expected smtp://user:pass@host:587 or smtps://user:pass@host:465');
  }
  if (parsed.protocol !== 'smtp:' && parsed.protocol !== 'smtps:') {
    throw new Error(`RELAY_URL must start with smtp:// or smtps://, not ${parsed.protocol}//`);
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!host) throw new Error('RELAY_URL has no host name');
  const secure = parsed.protocol === 'smtps:';
  const port = parsed.port ? Number(parsed.port) : secure ? 465 : 587;
  const user = decodeUrlPart(parsed.username, 'user name');
  const pass = decodeUrlPart(parsed.password, 'password');
  if (Boolean(user) !== Boolean(pass)) throw new Error('RELAY_URL must give both a user name and a password, or neither');
  return { host, port, secure, requireTLS: !secure, ...(user ? { user, pass } : {}) };
}

function decodeUrlPart(value: string, what: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    throw new Error(`RELAY_URL has a badly percent-encoded ${what}`);
  }
}

const TLS_FAILURE = /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_|EPROTO|ALTNAME|HOSTNAME/;
const CONNECT_COMMANDS = new Set(['CONN', 'EHLO', 'HELO', 'LHLO']);

function stageOf(command: string | undefined): DeliveryStage {
  if (command === 'MAIL FROM') return 'mail';
  if (command === 'RCPT TO') return 'rcpt';
  if (command === 'DATA') return 'data';
  if (command?.startsWith('AUTH')) return 'auth';
  if (command === 'STARTTLS') return 'tls';
  return CONNECT_COMMANDS.has(command ?? 'CONN') ? 'connect' : 'mail';
}

/** The reply of a MAIL/RCPT/DATA rejection: 5xx permanent, 4xx temporary; local checks permanent. */
function envelopeError(err: NodemailerError): DeliveryError {
  const stage = stageOf(err.command);
  const code = err.responseCode;
  const kind = code !== undefined && code >= 400 && code < 500 ? 'temporary' : 'permanent';
  return new DeliveryError(kind, stage === 'connect' ? 'mail' : stage, err.response ?? err.message, { cause: err });
}

/** Socket-level failures: TLS handshakes, refused or dropped connections, timeouts. */
function connectionError(err: NodemailerError): DeliveryError {
  if (TLS_FAILURE.test(err.originalCode ?? '') || /certificate/i.test(err.message)) {
    return new DeliveryError('temporary', 'tls', err.message, { cause: err });
  }
  const stage = stageOf(err.command);
  // before the session is up the relay itself is unusable; mid-transaction the message may have
  // reached it, so the queue must not hurry it to another route
  const beforeSession = stage === 'connect';
  return new DeliveryError('temporary', stage, err.response ?? err.message, { routeUnavailable: beforeSession, cause: err });
}

/** Maps anything nodemailer (or our socket provider) throws to the queue's classification. */
export function toDeliveryError(err: unknown): DeliveryError {
  if (err instanceof DeliveryError) return err;
  if (!(err instanceof Error)) return new DeliveryError('temporary', 'connect', String(err), { routeUnavailable: true });
  const e = err as NodemailerError;
  switch (e.code) {
    case 'EAUTH':
    case 'ENOAUTH':
      return new DeliveryError('temporary', 'auth', e.response ?? e.message, { routeUnavailable: true, cause: e });
    case 'ETLS':
    case 'EREQUIRETLS':
      return new DeliveryError('temporary', 'tls', e.message, { cause: e });
    case 'EDNS':
      return new DeliveryError('temporary', 'connect', e.message, { routeUnavailable: true, cause: e });
    case 'EENVELOPE':
    case 'EMESSAGE':
      return envelopeError(e);
    case undefined:
    default:
      return connectionError(e);
  }
}

/** Vets the host, then opens the TCP connection to the vetted address (TLS is nodemailer's job). */
async function connectVetted(host: string, port: number, guard: HostGuardOptions, timeoutMs: number): Promise<net.Socket> {
  let address: string;
  try {
    address = await resolveAllowedHost(host, guard);
  } catch (err) {
    const stage = err instanceof AppError && err.code === 'validation_failed' ? 'config' : 'connect';
    throw new DeliveryError('temporary', stage, describeError(err), { routeUnavailable: true, cause: err });
  }
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: address, port, timeout: timeoutMs });
    const fail = (why: string, cause?: unknown): void => {
      socket.destroy();
      reject(new DeliveryError('temporary', 'connect', `cannot connect to ${host} (${address}) port ${port}: ${why}`, { routeUnavailable: true, cause }));
    };
    socket.once('timeout', () => fail(`no answer within ${timeoutMs} ms`));
    socket.once('error', (err: NodeJS.ErrnoException) => fail(err.code ?? err.message, err));
    socket.once('connect', () => {
      socket.setTimeout(0);
      socket.removeAllListeners('timeout');
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}

function guardedSocketProvider(host: string, port: number, guard: HostGuardOptions, timeoutMs: number): SMTPTransportGetSocket {
  return (_options, callback) => {
    connectVetted(host, port, guard, timeoutMs).then(
      (socket) => callback(null, { connection: socket }),
      (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))),
    );
  };
}

/**
 * The host as nodemailer should see it: brackets and a trailing dot removed, so TLS names match.
 * A malformed host is kept as given: creating a transport never throws, the first connection
 * fails instead (at the guard when set), which the queue classifies like any route failure.
 */
function connectName(host: string): string {
  try {
    const parsed = parseHost(host);
    return parsed.kind === 'ip' ? parsed.address : parsed.name;
  } catch {
    return host.trim();
  }
}

function createMailer(options: SmtpTransportOptions, host: string): Transporter {
  const isIp = net.isIP(host) !== 0;
  return nodemailer.createTransport({
    pool: true,
    maxConnections: MAX_POOL_CONNECTIONS,
    maxRequeues: MAX_REQUEUES,
    host,
    port: options.port,
    secure: options.secure,
    requireTLS: options.requireTLS && !options.secure,
    auth: options.user !== undefined ? { user: options.user, pass: options.pass ?? '' } : undefined,
    name: options.heloName,
    connectionTimeout: options.timeoutMs,
    greetingTimeout: options.timeoutMs,
    socketTimeout: options.timeoutMs,
    dnsTimeout: options.timeoutMs,
    // node would warn about an IP address as SNI (RFC 6066 section 3); the IP is checked against the certificate anyway
    ...(isIp ? {} : { servername: host }),
    tls: {
      rejectUnauthorized: true,
      // `ca` replaces the system roots in node, so they are listed along with the extra ones
      ...(options.ca?.length ? { ca: [...tls.rootCertificates, ...options.ca] } : {}),
    },
    getSocket: options.guard ? guardedSocketProvider(host, options.port, options.guard, options.timeoutMs) : undefined,
    disableFileAccess: true,
    disableUrlAccess: true,
    logger: false,
  });
}

export function createSmtpTransport(options: SmtpTransportOptions): Transport {
  const mailer = createMailer(options, connectName(options.host));
  return {
    route: options.route,
    async send(message) {
      try {
        const info = (await mailer.sendMail({
          envelope: { from: message.mailFrom, to: message.rcptTo },
          raw: message.raw,
        })) as { response: string };
        return { reply: info.response };
      } catch (err) {
        throw toDeliveryError(err);
      }
    },
    async verify() {
      try {
        await mailer.verify();
      } catch (err) {
        throw toDeliveryError(err);
      }
    },
    close() {
      mailer.close();
    },
  };
}
