/**
 * The operator's SMTP test client (`scripts/smtp-test-client`, or
 * `node dist/src/cli/smtp-test-client.js`): sends --count test messages to any SMTP server over
 * STARTTLS, implicit TLS or plain text, optionally with AUTH, at a given rate over a number of
 * parallel connections, and reports what the server answered (options in
 * smtp-test-client-options.ts, report in smtp-test-client-report.ts).
 *
 * It stands alone: it reads no server configuration and touches no database, so it can test a
 * deployment from anywhere. Each message is a fresh nodemailer send with a unique Message-ID and
 * `{subject} #n`. nodemailer's errors carry the server reply (responseCode, response, command),
 * which is what the report groups by; a failure without a reply is a connection error. Messages
 * are never retried or requeued: every attempt is reported as it went.
 *
 * Rate limiting is a schedule, not a sleep between sends: message i (from 0) may start no earlier
 * than i / rate seconds after the start, whichever connection takes it, so the overall rate holds
 * for any --concurrency. Ctrl-C stops starting new messages, waits for those under way and
 * prints the summary; a second Ctrl-C exits at once.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import nodemailer, { type SendMailOptions, type Transporter } from 'nodemailer';
import type { NodemailerError } from 'nodemailer/lib/errors';
import type { SMTPSentMessageInfo } from 'nodemailer/lib/smtp-transport';
import { smtpTestClientEnv } from '../config/client-env.js';
import { parseOptions, UsageError, USAGE, type ClientOptions } from './smtp-test-client-options.js';
import { formatSummary, Progress, Tally, type Outcome } from './smtp-test-client-report.js';

const EXIT_ALL_ACCEPTED = 0;
const EXIT_SOME_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_INTERRUPTED = 130;

type Sender = Transporter<SMTPSentMessageInfo>;

/** node's codes for a certificate that does not verify (self-signed, unknown CA, expired, other name). */
const CERTIFICATE_ERROR = /CERT|SELF_SIGNED|UNABLE_TO_|ALTNAME|HOSTNAME_MISMATCH/;

/** One sender per parallel connection: pooled (one kept-open connection) with --reuse. */
function createSender(o: ClientOptions): Sender {
  const isIp = /^[\d.]+$|:/.test(o.host);
  const common = {
    host: o.host,
    port: o.port,
    secure: o.tls === 'implicit',
    requireTLS: o.tls === 'starttls',
    ignoreTLS: o.tls === 'none',
    auth: o.auth ?? undefined,
    connectionTimeout: o.timeoutMs,
    greetingTimeout: o.timeoutMs,
    socketTimeout: o.timeoutMs,
    dnsTimeout: o.timeoutMs,
    // node warns about an IP address as SNI (RFC 6066 section 3); the IP is checked against the certificate anyway
    ...(isIp ? {} : { servername: o.host }),
    tls: { rejectUnauthorized: !o.insecure },
  };
  if (!o.reuse) return nodemailer.createTransport(common);
  return nodemailer.createTransport({ ...common, pool: true, maxConnections: 1, maxMessages: Infinity, maxRequeues: 0 });
}

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1);
}

function buildMessage(o: ClientOptions, n: number, runId: string): SendMailOptions {
  return {
    from: o.from,
    to: o.to,
    subject: `${o.subject} #${n}`,
    text: o.body,
    attachments: o.attachments.map((a) => ({ filename: a.filename, content: a.content })),
    messageId: `<${runId}.${n}@${domainOf(o.from)}>`,
    // lets an operator find one run's messages in logs and mailboxes
    headers: { 'X-Smtp-Test-Client': `run=${runId}; n=${n}` },
  };
}

function outcomeOfInfo(info: SMTPSentMessageInfo, latencyMs: number): Outcome {
  if (info.rejected.length === 0) return { kind: 'accepted', reply: info.response, latencyMs };
  const rejections = (info.rejectedErrors ?? []).map((e) => ({ stage: e.command ?? 'RCPT TO', reply: e.response ?? e.message }));
  return { kind: 'partial', reply: info.response, rejections, latencyMs };
}

function outcomeOfError(err: unknown, latencyMs: number): Outcome {
  const e = err as NodemailerError;
  if (e.responseCode !== undefined) {
    return { kind: 'rejected', stage: e.command ?? 'CONN', reply: e.response ?? `${e.responseCode} ${e.message}`, latencyMs };
  }
  // the socket's own code (ECONNREFUSED, DEPTH_ZERO_SELF_SIGNED_CERT) says more than nodemailer's ESOCKET
  const code = e.originalCode ?? e.code ?? 'ERROR';
  const message = e.message ?? String(err);
  return { kind: 'error', code, message: CERTIFICATE_ERROR.test(code) ? `${message} (--insecure accepts it)` : message, latencyMs };
}

async function sendOne(sender: Sender, message: SendMailOptions): Promise<Outcome> {
  const started = performance.now();
  try {
    const info = await sender.sendMail(message);
    return outcomeOfInfo(info, performance.now() - started);
  } catch (err) {
    return outcomeOfError(err, performance.now() - started);
  }
}

/** Sends every message over `concurrency` connections, on the --rate schedule, into `tally`. */
async function runLoad(o: ClientOptions, tally: Tally, stop: AbortSignal): Promise<void> {
  const runId = randomBytes(6).toString('hex');
  const intervalMs = o.rate > 0 ? 1000 / o.rate : 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    const sender = createSender(o);
    try {
      for (let i = next++; i < o.count && !stop.aborted; i = next++) {
        const wait = tally.startedAt + i * intervalMs - performance.now();
        if (wait > 0) await waitUnlessStopped(wait, stop);
        if (stop.aborted) break;
        tally.record(await sendOne(sender, buildMessage(o, i + 1, runId)));
      }
    } finally {
      sender.close();
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency, o.count) }, worker));
}

/** Resolves after `ms`, or at once when `stop` fires (a slow --rate must not delay Ctrl-C). */
function waitUnlessStopped(ms: number, stop: AbortSignal): Promise<void> {
  return sleep(ms, undefined, { signal: stop }).catch((err: unknown) => {
    if (!stop.aborted) throw err;
  });
}

/** First Ctrl-C: finish what is under way and report. Second: leave at once. */
function onInterrupt(): AbortSignal {
  const controller = new AbortController();
  process.on('SIGINT', () => {
    if (controller.signal.aborted) process.exit(EXIT_INTERRUPTED);
    controller.abort();
    process.stderr.write('\ninterrupted: waiting for the messages under way (Ctrl-C again to quit now)\n');
  });
  return controller.signal;
}

function readOptions(argv: string[]): ClientOptions | null | number {
  try {
    return parseOptions(argv, smtpTestClientEnv());
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`smtp-test-client: ${err.message}\nsee --help for the options\n`);
    return EXIT_USAGE;
  }
}

async function main(argv: string[]): Promise<number> {
  const o = readOptions(argv);
  if (typeof o === 'number') return o;
  if (o === null) {
    process.stdout.write(`${USAGE}\n`);
    return EXIT_ALL_ACCEPTED;
  }
  const stop = onInterrupt();
  const tally = new Tally(o.count);
  const progress = new Progress(tally, process.stderr);
  try {
    await runLoad(o, tally, stop);
  } finally {
    tally.finishedAt = performance.now();
    progress.stop();
  }
  const summary = tally.summary({ host: o.host, port: o.port, tls: o.tls, concurrency: o.concurrency, rate: o.rate, reuse: o.reuse });
  process.stdout.write(o.json ? `${JSON.stringify(summary, null, 2)}\n` : formatSummary(summary));
  return summary.accepted === summary.total ? EXIT_ALL_ACCEPTED : EXIT_SOME_FAILED;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`smtp-test-client: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = EXIT_SOME_FAILED;
  },
);
