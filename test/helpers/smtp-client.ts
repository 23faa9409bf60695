/**
 * SMTP clients for tests: RawSmtp speaks the protocol over a plain TCP socket, byte for byte,
 * for edge cases (smuggling, bare LF, pipelining); sendWithNodemailer() is a real client for the
 * ordinary path. Both return full reply lines ("550 5.1.1 ...") so tests assert them exactly.
 */
import net from 'node:net';
import tls from 'node:tls';
import nodemailer from 'nodemailer';

export interface Reply {
  code: number;
  /** Every line of the reply, joined with \n, including the codes. */
  text: string;
}

export class RawSmtp {
  private buffer = '';
  private waiters: (() => void)[] = [];
  private closed = false;

  private constructor(private socket: net.Socket) {
    this.listen(socket);
  }

  private listen(socket: net.Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.buffer += chunk.toString('latin1');
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {
      this.closed = true;
      this.wake();
    });
  }

  static async connect(port: number, host = '127.0.0.1', localAddress?: string): Promise<RawSmtp> {
    const socket = net.connect({ port, host, localAddress });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawSmtp(socket);
  }

  /** Connects with implicit TLS (SMTPS); the test certificate is self-signed, so not checked. */
  static async connectTls(port: number, host = '127.0.0.1'): Promise<RawSmtp> {
    const socket = tls.connect({ port, host, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    return new RawSmtp(socket);
  }

  /** STARTTLS, then the TLS handshake on the same connection (RFC 3207). */
  async startTls(): Promise<Reply> {
    const go = await this.command('STARTTLS');
    if (go.code !== 220) return go;
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('close');
    this.socket.removeAllListeners('error');
    const secured = tls.connect({ socket: this.socket, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secured.once('secureConnect', resolve);
      secured.once('error', reject);
    });
    this.socket = secured;
    this.listen(secured);
    return go;
  }

  /** AUTH PLAIN with an optional authorization identity (RFC 4616). */
  async authPlain(user: string, password: string, authzid = ''): Promise<Reply> {
    return this.command(`AUTH PLAIN ${Buffer.from(`${authzid}\0${user}\0${password}`).toString('base64')}`);
  }

  /** AUTH LOGIN, answering both challenges. */
  async authLogin(user: string, password: string): Promise<Reply> {
    const first = await this.command('AUTH LOGIN');
    if (first.code !== 334) return first;
    const second = await this.command(Buffer.from(user).toString('base64'));
    if (second.code !== 334) return second;
    return this.command(Buffer.from(password).toString('base64'));
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Reads one complete (possibly multi-line) reply. */
  async reply(timeoutMs = 10_000): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lines = this.buffer.split('\r\n');
      for (let i = 0; i < lines.length - 1; i++) {
        if (/^\d{3} /.test(lines[i]!) || /^\d{3}$/.test(lines[i]!)) {
          const text = lines.slice(0, i + 1).join('\n');
          this.buffer = lines.slice(i + 1).join('\r\n');
          return { code: Number(text.slice(text.lastIndexOf('\n') + 1, text.lastIndexOf('\n') + 4)), text };
        }
      }
      if (this.closed) throw new Error(`connection closed; unparsed: ${JSON.stringify(this.buffer)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply within ${timeoutMs} ms; got ${JSON.stringify(this.buffer)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  async command(line: string): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  /** Greeting + EHLO. */
  async hello(name = 'client.test'): Promise<Reply> {
    await this.reply();
    return this.command(`EHLO ${name}`);
  }

  /**
   * Sends DATA, the bytes as given (caller does dot-stuffing), then the end of data: `.\r\n`
   * after a body that ends with CRLF (that CRLF belongs to the content, RFC 5321 §4.1.1.4),
   * `\r\n.\r\n` otherwise. Reads the final reply.
   */
  async data(body: Buffer | string, terminator?: string): Promise<Reply> {
    const go = await this.command('DATA');
    if (go.code !== 354) return go;
    this.write(body);
    const tail = Buffer.isBuffer(body) ? body.subarray(-2).toString('latin1') : body.slice(-2);
    this.write(terminator ?? (tail === '\r\n' ? '.\r\n' : '\r\n.\r\n'));
    return this.reply(60_000);
  }

  /** The SHA-256 fingerprint of the certificate the server presented, once TLS is up (null before). */
  peerFingerprint(): string | null {
    return this.socket instanceof tls.TLSSocket ? this.socket.getPeerCertificate().fingerprint256 : null;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  async waitClosed(timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return this.closed;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Sends with nodemailer's SMTP client; resolves to the final reply line, rejects with it. */
export interface NodemailerAttachment {
  filename: string;
  content: Buffer;
  contentType: string;
}

export async function sendWithNodemailer(
  port: number,
  message: { from: string; to: string | string[]; raw?: Buffer | string; subject?: string; text?: string; attachments?: NodemailerAttachment[] },
): Promise<string> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, name: 'client.test' });
  try {
    const info = (await transport.sendMail({
      envelope: { from: message.from, to: message.to },
      ...(message.raw
        ? { raw: message.raw }
        : { from: message.from, to: message.to, subject: message.subject ?? 'test', text: message.text ?? 'hello', attachments: message.attachments ?? [] }),
    })) as { response: string };
    return info.response;
  } finally {
    transport.close();
  }
}

/** A minimal valid message with CRLF line endings. */
export function simpleMessage(opts: { from?: string; to?: string; subject?: string; body?: string; extraHeaders?: string[] } = {}): string {
  const headers = [
    `From: ${opts.from ?? 'sender@example.org'}`,
    `To: ${opts.to ?? 'rcpt@example.org'}`,
    `Subject: ${opts.subject ?? 'test message'}`,
    'Date: Sat, 21 Nov 2026 06:00:00 +0000',
    ...(opts.extraHeaders ?? []),
  ];
  return `${headers.join('\r\n')}\r\n\r\n${opts.body ?? 'Hello there.'}\r\n`;
}

/** Delivers simpleMessage({subject}) to `to` over plain SMTP on `port` (our MX); throws naming the step that did not get 250. */
export async function deliverSimple(port: number, to: string, subject: string): Promise<void> {
  const c = await RawSmtp.connect(port);
  try {
    await c.hello();
    const expect250 = (reply: Reply, step: string): void => {
      if (reply.code !== 250) throw new Error(`${step} for ${to}: ${reply.text}`);
    };
    expect250(await c.command('MAIL FROM:<sender@remote.example>'), 'MAIL FROM');
    expect250(await c.command(`RCPT TO:<${to}>`), 'RCPT TO');
    expect250(await c.data(simpleMessage({ subject })), 'DATA');
  } finally {
    c.close();
  }
}
