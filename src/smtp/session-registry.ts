/**
 * SessionRegistry: connection policy across all sessions of a listener. Caps connections per
 * client IP, ends sessions that exceed SMTP_SESSION_MAX_MS (an absolute cap, so a client that
 * keeps a session alive with NOOPs or a slow drip cannot hold a slot forever), and on shutdown
 * closes idle sessions at once while letting sessions inside a mail transaction finish. Each
 * session it ends is reported to `onEnded` (metrics) as session_timeout or shutting_down.
 */
import type { SMTPServer } from 'smtp-server';
import { SMTP_SESSION_SWEEP_MS } from '../core/limits.js';
import type { Logger } from '../core/logger.js';

interface Connection {
  id: string;
  // no envelope until smtp-server has greeted the client (the first 100 ms of a connection)
  session: { id: string; envelope?: { mailFrom: unknown } };
  send(code: number, data: string): void;
  close(): void;
}

export class SessionRegistry {
  private readonly perIp = new Map<string, number>();
  private readonly started = new Map<string, { ip: string; at: number }>();
  private sweeper: NodeJS.Timeout | undefined;
  private server: SMTPServer | undefined;
  shuttingDown = false;

  constructor(
    private readonly maxPerIp: number,
    private readonly maxSessionMs: number,
    private readonly logger: Logger,
    private readonly onEnded?: (reason: 'session_timeout' | 'shutting_down') => void,
  ) {}

  attach(server: SMTPServer): void {
    this.server = server;
    this.sweeper = setInterval(() => this.sweep(), SMTP_SESSION_SWEEP_MS);
    this.sweeper.unref();
  }

  /** Registers a new session; false when its IP already holds the maximum. */
  open(sessionId: string, ip: string): boolean {
    const count = this.perIp.get(ip) ?? 0;
    if (count >= this.maxPerIp) return false;
    this.perIp.set(ip, count + 1);
    this.started.set(sessionId, { ip, at: Date.now() });
    return true;
  }

  close(sessionId: string): void {
    const entry = this.started.get(sessionId);
    if (!entry) return;
    this.started.delete(sessionId);
    const left = (this.perIp.get(entry.ip) ?? 1) - 1;
    if (left <= 0) this.perIp.delete(entry.ip);
    else this.perIp.set(entry.ip, left);
  }

  /** Starts shutdown: idle sessions get 421 now, the others when their transaction ends. */
  beginShutdown(): void {
    this.shuttingDown = true;
    this.sweep();
  }

  /** Ends a session after its transaction completed, when shutting down. */
  afterTransaction(sessionId: string): void {
    if (!this.shuttingDown) return;
    setImmediate(() => {
      const conn = this.connection(sessionId);
      if (conn) this.end(conn, 'shutting_down', '4.3.2 Server shutting down, please reconnect later');
    });
  }

  stop(): void {
    if (this.sweeper) clearInterval(this.sweeper);
  }

  private sweep(): void {
    const now = Date.now();
    for (const conn of this.connections()) {
      const entry = this.started.get(conn.session.id);
      if (entry && now - entry.at > this.maxSessionMs) {
        this.logger.info({ event: 'smtp.session.expired', cid: conn.id, ip: entry.ip }, 'session exceeded the maximum session time');
        this.end(conn, 'session_timeout', '4.4.2 Session time limit reached, closing connection');
      } else if (this.shuttingDown && !conn.session.envelope?.mailFrom) {
        this.end(conn, 'shutting_down', '4.3.2 Server shutting down, please reconnect later');
      }
    }
  }

  private end(conn: Connection, reason: 'session_timeout' | 'shutting_down', text: string): void {
    this.onEnded?.(reason);
    conn.send(421, text);
    conn.close();
  }

  private connections(): Connection[] {
    const set = (this.server as unknown as { connections?: Set<Connection> } | undefined)?.connections;
    return set ? [...set] : [];
  }

  private connection(sessionId: string): Connection | undefined {
    return this.connections().find((c) => c.session.id === sessionId);
  }
}
