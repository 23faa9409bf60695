/**
 * A real SMTP peer for tests (smtp-server on 127.0.0.1, free port) standing in for a user's
 * relay, a smarthost or a recipient's MX. It speaks the protocol for real (RFC 5321, STARTTLS per
 * RFC 3207, AUTH PLAIN/LOGIN per RFC 4954 / RFC 4616) with the process-wide test certificate
 * (helpers/test-tls.ts), so a client must trust `testCertificate().caFile` to get through.
 *
 * TLS modes: 'starttls' offers STARTTLS on a plain connection; 'implicit' is TLS from the first
 * byte (port 465 style); 'none' does not offer STARTTLS at all, which is what a client sees when
 * an attacker strips it. AUTH is accepted even in clear text (allowInsecureAuth) ON PURPOSE: a
 * naive client would then send the password, and `authAttempts` records whether the connection
 * was TLS at that moment, so a test can prove ours never did.
 *
 * Every accepted message is recorded with its exact bytes. Failures are injected per stage with
 * any reply code and text (`setFailure`), optionally only for some recipients or only a number of
 * times (to test retries), and `setFailure(null)` restores normal service.
 */
import { SMTPServer, type SMTPServerAuthentication, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { testCertificate } from './test-tls.js';

export type FakeRelayTls = 'starttls' | 'implicit' | 'none';

export interface FakeRelayOptions {
  /** TLS mode (see the header). */
  tls: FakeRelayTls;
  /** When given, AUTH PLAIN/LOGIN with exactly these credentials is required before MAIL FROM. */
  auth?: { user: string; pass: string };
  /** The name in the greeting and EHLO reply; default `relay.test`. */
  hostname?: string;
  /** SIZE limit in bytes; a bigger message gets 552. Default: no limit. */
  maxMessageBytes?: number;
}

export interface RelayMessage {
  /** The MAIL FROM address ('' for the null reverse-path of a bounce). */
  mailFrom: string;
  rcptTo: string[];
  /** The DATA bytes exactly as received (dot-unstuffed, without the final `.`). */
  raw: Buffer;
  /** The user who authenticated on this connection, if any. */
  authUser?: string;
  /** Whether the connection was TLS when the message was sent. */
  secure: boolean;
  /** The name the client gave in EHLO/HELO. */
  heloName: string;
}

export interface AuthAttempt {
  method: string;
  user: string;
  /** Whether the connection was TLS when the credentials arrived. */
  secure: boolean;
  success: boolean;
}

export type FailureStage = 'connect' | 'mail' | 'rcpt' | 'data';

export interface RelayFailure {
  stage: FailureStage;
  /** Reply code, e.g. 421, 450, 451, 550, 552, 554. */
  code: number;
  /** Reply text after the code, e.g. `5.1.1 No such user`. */
  message: string;
  /** Stage 'rcpt' only: fail just these addresses (case-insensitive); the others are accepted. */
  recipients?: string[];
  /** Fail this many times, then serve normally again. Default: until changed. */
  times?: number;
}

export interface FakeRelay {
  port: number;
  /** Accepted messages, oldest first. */
  readonly messages: readonly RelayMessage[];
  /** Every AUTH attempt, oldest first. */
  readonly authAttempts: readonly AuthAttempt[];
  /** How many TCP connections were accepted so far. */
  connectionCount(): number;
  /** Injects a failure, or with null restores normal service. */
  setFailure(failure: RelayFailure | null): void;
  /** Resolves with the messages once at least `n` have been accepted; rejects after `timeoutMs`. */
  waitForMessages(n: number, timeoutMs?: number): Promise<readonly RelayMessage[]>;
  /** Forgets recorded messages and AUTH attempts. */
  clear(): void;
  close(): Promise<void>;
}

interface SmtpError extends Error {
  responseCode?: number;
}

function smtpError(code: number, message: string): SmtpError {
  const err: SmtpError = new Error(message);
  err.responseCode = code;
  return err;
}

class RelayState {
  readonly messages: RelayMessage[] = [];
  readonly authAttempts: AuthAttempt[] = [];
  connections = 0;
  private failure: RelayFailure | null = null;
  private remaining = Infinity;
  private waiters: (() => void)[] = [];

  setFailure(failure: RelayFailure | null): void {
    this.failure = failure;
    this.remaining = failure?.times ?? Infinity;
  }

  /** The injected error for this stage (and recipient), counting it against `times`. */
  takeFailure(stage: FailureStage, recipient?: string): SmtpError | null {
    const failure = this.failure;
    if (!failure || failure.stage !== stage || this.remaining <= 0) return null;
    if (recipient !== undefined && failure.recipients) {
      const wanted = failure.recipients.map((r) => r.toLowerCase());
      if (!wanted.includes(recipient.toLowerCase())) return null;
    }
    this.remaining -= 1;
    return smtpError(failure.code, failure.message);
  }

  record(message: RelayMessage): void {
    this.messages.push(message);
    for (const wake of this.waiters.splice(0)) wake();
  }

  waitForMessages(n: number, timeoutMs: number): Promise<readonly RelayMessage[]> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        if (this.messages.length < n) return false;
        clearTimeout(timer);
        resolve(this.messages);
        return true;
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== onRecord);
        reject(new Error(`fake relay: expected ${n} message(s) within ${timeoutMs} ms, got ${this.messages.length}`));
      }, timeoutMs);
      const onRecord = (): void => {
        if (!check()) this.waiters.push(onRecord);
      };
      if (!check()) this.waiters.push(onRecord);
    });
  }
}

function authHandler(state: RelayState, expected: { user: string; pass: string }): NonNullable<SMTPServerOptions['onAuth']> {
  return (auth: SMTPServerAuthentication, session: SMTPServerSession, callback) => {
    const user = auth.username ?? '';
    const success = user === expected.user && auth.password === expected.pass;
    state.authAttempts.push({ method: auth.method, user, secure: session.secure, success });
    if (!success) {
      callback(smtpError(535, '5.7.8 Authentication credentials invalid'));
      return;
    }
    callback(null, { user });
  };
}

function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

function dataHandler(state: RelayState): NonNullable<SMTPServerOptions['onData']> {
  return (stream, session, callback) => {
    collect(stream).then(
      (raw) => {
        if (stream.sizeExceeded) return callback(smtpError(552, '5.3.4 Message too big'));
        const failure = state.takeFailure('data');
        if (failure) return callback(failure);
        const from = session.envelope.mailFrom;
        state.record({
          mailFrom: from ? from.address : '',
          rcptTo: session.envelope.rcptTo.map((r) => r.address),
          raw,
          authUser: typeof session.user === 'string' ? session.user : undefined,
          secure: session.secure,
          heloName: session.hostNameAppearsAs,
        });
        return callback(null, '2.0.0 Ok: queued');
      },
      (err: Error) => callback(smtpError(451, `4.3.0 read error: ${err.message}`)),
    );
  };
}

function serverOptions(options: FakeRelayOptions, state: RelayState): SMTPServerOptions {
  const { cert, key } = testCertificate();
  return {
    name: options.hostname ?? 'relay.test',
    key,
    cert,
    secure: options.tls === 'implicit',
    // hiding is not enough: a client may send STARTTLS unasked, and a stripping attacker refuses it
    hideSTARTTLS: options.tls === 'none',
    size: options.maxMessageBytes,
    authMethods: ['PLAIN', 'LOGIN'],
    authOptional: !options.auth,
    disabledCommands: [...(options.auth ? [] : ['AUTH']), ...(options.tls === 'none' ? ['STARTTLS'] : [])],
    allowInsecureAuth: true,
    disableReverseLookup: true,
    // a pooled client keeps idle connections open; close() must not wait the default 30 s for them
    closeTimeout: 100,
    logger: false,
    onConnect: (_session, callback) => {
      state.connections += 1;
      callback(state.takeFailure('connect'));
    },
    onAuth: options.auth ? authHandler(state, options.auth) : undefined,
    onMailFrom: (_address, _session, callback) => callback(state.takeFailure('mail')),
    onRcptTo: (address, _session, callback) => callback(state.takeFailure('rcpt', address.address)),
    onData: dataHandler(state),
  };
}

export async function startFakeRelay(options: FakeRelayOptions): Promise<FakeRelay> {
  const state = new RelayState();
  const server = new SMTPServer(serverOptions(options, state));
  // a client hanging up mid-session is normal in failure tests
  server.on('error', () => undefined);
  const port = await new Promise<number>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.server.address();
      if (typeof address === 'object' && address) resolve(address.port);
      else reject(new Error('fake relay: no port'));
    });
  });
  return {
    port,
    messages: state.messages,
    authAttempts: state.authAttempts,
    connectionCount: () => state.connections,
    setFailure: (failure) => state.setFailure(failure),
    waitForMessages: (n, timeoutMs = 5000) => state.waitForMessages(n, timeoutMs),
    clear: () => {
      state.messages.length = 0;
      state.authAttempts.length = 0;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
