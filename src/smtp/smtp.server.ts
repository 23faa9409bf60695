/**
 * The SMTP listeners, one smtp-server each:
 * - `mx` on SMTP_PORT: receives mail for our domains from other servers (RFC 5321). AUTH is
 *   offered too (SMTP_AUTH_ON_MX), only after STARTTLS; an authenticated session submits.
 * - `submission` on SUBMISSION_PORT (RFC 6409): AUTH required before MAIL (530 5.7.0), and
 *   STARTTLS required before AUTH (538 5.7.0).
 * - `smtps` on SMTPS_PORT (RFC 8314): implicit TLS, AUTH required.
 * Banner and EHLO name are MAIL_HOSTNAME; extensions SIZE, 8BITMIME, SMTPUTF8, PIPELINING,
 * ENHANCEDSTATUSCODES, STARTTLS and AUTH PLAIN LOGIN. An unauthenticated session may only
 * deliver to local mailboxes; an authenticated one goes through the send path (on-submit.ts).
 * Every callback goes through smtpCallback. Each listener reports connections, refusals and
 * messages to its metrics probe (core/metrics.ts, smtp/smtp-metrics.ts).
 *
 * smtp-server waits a fixed 100 ms before the greeting and drops a client that talks before it
 * (an early-talker check, like postscreen's pregreet test). We keep it: it costs a legitimate
 * MTA 100 ms per connection and stops a class of spam bots; the benchmark reports its effect.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { SMTPServer, type SMTPServerAddress, type SMTPServerOptions } from 'smtp-server';
import { SMTP_CALLBACK_TIMEOUT_MS } from '../core/limits.js';
import type { Logger } from '../core/logger.js';
import type { AuthService } from '../services/auth.service.js';
import type { IngestService } from '../services/ingest.service.js';
import type { SubmissionService } from '../services/submission.service.js';
import type { RecipientService } from '../services/recipient.service.js';
import type { TlsMaterial } from '../services/tls-material.service.js';
import { smtpCallback } from './callback.js';
import { limitCommands } from './command-limits.js';
import { installEnhancedCodePassthrough } from './enhanced-codes.js';
import { createOnAuth } from './on-auth.js';
import { createOnClose, createOnConnect } from './on-connect.js';
import { createOnData } from './on-data.js';
import { createOnMailFrom } from './on-mail-from.js';
import { createOnRcptTo, type RecipientMap } from './on-rcpt-to.js';
import { SessionRegistry } from './session-registry.js';
import { countData, observeLibraryRejects } from './smtp-metrics.js';
import type { Metrics } from '../core/metrics.js';

export type ListenerKind = 'mx' | 'submission' | 'smtps';

export interface SmtpServerOptions {
  kind: ListenerKind;
  /** mx only: offer AUTH (after STARTTLS). */
  authOnMx: boolean;
  host: string;
  port: number;
  hostname: string;
  maxMessageBytes: number;
  maxRecipients: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  idleTimeoutMs: number;
  sessionMaxMs: number;
  shutdownGraceMs: number;
  maxReceivedHeaders: number;
  /** NOOP/RSET/VRFY/HELP/ETRN, and 5xx replies, allowed between delivered messages (command-limits.ts). */
  junkCommandLimit: number;
  errorLimit: number;
  verifyInbound: boolean;
  tls: TlsMaterial;
}

const LABELS: Record<ListenerKind, string> = { mx: 'MX', submission: 'Submission (STARTTLS)', smtps: 'Submission (implicit TLS)' };

export interface RunningSmtpServer {
  /** The port actually bound (differs from the option when it was 0). */
  port: number;
  /** Stops accepting, lets transactions in flight finish (bounded by the grace period). */
  stop(): Promise<void>;
  /** Serves a new certificate from the next TLS handshake on (STARTTLS or implicit); sessions already encrypted keep theirs. */
  setTls(material: TlsMaterial): void;
}

export interface SmtpServerDeps {
  ingest: IngestService;
  recipients: RecipientService;
  submission: SubmissionService;
  auth: AuthService;
  logger: Logger;
  metrics: Metrics;
}

export async function startSmtpServer(options: SmtpServerOptions, deps: SmtpServerDeps): Promise<RunningSmtpServer> {
  installEnhancedCodePassthrough();
  const logger = deps.logger.child({ listener: options.kind });
  // open sessions are read from the server at scrape time (it exists before any scrape can run)
  const probe = deps.metrics.smtp(options.kind, () => server.connections.size);
  const registry = new SessionRegistry(options.maxConnectionsPerIp, options.sessionMaxMs, logger, probe.rejected);
  const resolved: RecipientMap = new WeakMap<SMTPServerAddress, never>();
  const t = SMTP_CALLBACK_TIMEOUT_MS;

  const serverOptions: SMTPServerOptions = {
    name: options.hostname,
    banner: 'Service ready',
    key: options.tls.key,
    cert: options.tls.cert,
    size: options.maxMessageBytes,
    secure: options.kind === 'smtps',
    // mx: anyone may deliver to local mailboxes; submission ports: log in first
    authOptional: options.kind === 'mx',
    authMethods: ['PLAIN', 'LOGIN'],
    // AUTH only over TLS (smtp-server answers 538 before STARTTLS)
    allowInsecureAuth: false,
    authRequiredMessage: 'Authentication required',
    disabledCommands: options.kind === 'mx' && !options.authOnMx ? ['AUTH'] : [],
    // enhanced status codes (RFC 2034/3463) are off by default in smtp-server
    hideENHANCEDSTATUSCODES: false,
    hideDSN: true,
    hideREQUIRETLS: true,
    disableReverseLookup: true,
    maxClients: options.maxConnections,
    socketTimeout: options.idleTimeoutMs,
    closeTimeout: options.shutdownGraceMs,
    logger: false,
    onConnect: smtpCallback('onConnect', logger, createOnConnect(registry, logger), t, probe.rejected),
    onClose: createOnClose(registry),
    onAuth: smtpCallback('onAuth', logger, createOnAuth(deps.auth, logger), t, probe.rejected),
    onMailFrom: smtpCallback('onMailFrom', logger, createOnMailFrom(registry, deps.submission), t, probe.rejected),
    onRcptTo: smtpCallback('onRcptTo', logger, createOnRcptTo(deps.recipients, deps.submission, resolved, options.maxRecipients, logger), t, probe.rejected),
    onData: smtpCallback(
      'onData',
      logger,
      countData(
        createOnData(
          deps.ingest,
          deps.submission,
          resolved,
          registry,
          { maxBytes: options.maxMessageBytes, maxReceived: options.maxReceivedHeaders, verify: options.verifyInbound },
          logger,
        ),
        probe,
      ),
      null,
      probe.rejected,
    ),
  };
  const server = new SMTPServer(serverOptions);
  server.server.on('connection', () => probe.connected());
  observeLibraryRejects(server, probe);
  limitCommands(server, { junkCommands: options.junkCommandLimit, errors: options.errorLimit, onCut: probe.rejected });
  server.on('error', (err: Error) => logger.warn({ err: err.message }, 'SMTP server error'));
  registry.attach(server);

  const port = await new Promise<number>((resolve, reject) => {
    const onError = (err: Error): void => reject(new Error(`cannot listen on ${options.host}:${options.port}: ${err.message}`, { cause: err }));
    server.server.once('error', onError);
    server.listen(options.port, options.host, () => {
      server.server.off('error', onError);
      const address = server.server.address();
      resolve(typeof address === 'object' && address ? address.port : options.port);
    });
  });
  logger.info({ event: 'smtp.listening', listener: options.kind, host: options.host, port }, `${LABELS[options.kind]} listening on ${options.host}:${port}`);

  return {
    port,
    setTls: (material) => server.updateSecureContext({ key: material.key, cert: material.cert }),
    stop: async () => {
      registry.beginShutdown();
      // stop accepting, and let the sessions inside a transaction finish it. smtp-server's own
      // close() answers every further command with 421, even RCPT in the middle of a transaction,
      // so it is only called once they are done or the grace period is over
      server.server.close();
      const deadline = Date.now() + options.shutdownGraceMs;
      while (server.connections.size > 0 && Date.now() < deadline) await sleep(SHUTDOWN_POLL_MS);
      // what is still open now is cut at once (421), rather than after another grace period
      server.options.closeTimeout = 1;
      await new Promise<void>((resolve) => server.close(() => resolve()));
      registry.stop();
      probe.close();
    },
  };
}

const SHUTDOWN_POLL_MS = 50;
