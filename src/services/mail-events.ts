/**
 * MailEvents: the API process's one PostgreSQL connection LISTENing on `mail_events`, fanned
 * out to the webmail's event streams (GET /api/webmail/events) by mailbox id.
 *
 * Writers NOTIFY in the transaction that changes a mailbox (the ingest statement for new mail,
 * webmail.repository.ts notifyMailEvents() for flags, moves and deletions), so an event is
 * delivered only when the change is committed and reaches every API process, whichever process
 * (SMTP, worker, another API) made it. A lost connection is reopened with exponential backoff;
 * events sent while it was down are lost, so on reconnecting every subscriber gets a `changed`
 * event per mailbox and re-reads what it shows. Built by server.ts when the api role runs;
 * stop() ends every stream, then the connection.
 */
import pg from 'pg';
import { describeError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { MAIL_EVENTS_CHANNEL, type MailEventPayload } from '../db/webmail.repository.js';

export interface MailEventSubscriber {
  /** A change in the subscriber's mailbox. */
  onEvent(event: MailEventPayload): void;
  /** The hub is stopping: end the stream. */
  onClose(): void;
}

export interface MailEventsOptions {
  minBackoffMs: number;
  maxBackoffMs: number;
}

const DEFAULTS: MailEventsOptions = { minBackoffMs: 500, maxBackoffMs: 30_000 };

export class MailEvents {
  private client: pg.Client | null = null;
  private readonly subscribers = new Map<string, Set<MailEventSubscriber>>();
  private stopped = false;
  private backoffMs: number;
  private timer: NodeJS.Timeout | null = null;
  private readonly options: MailEventsOptions;

  constructor(
    private readonly connectionString: string,
    private readonly logger: Logger,
    options: Partial<MailEventsOptions> = {},
  ) {
    this.options = { ...DEFAULTS, ...options };
    this.backoffMs = this.options.minBackoffMs;
  }

  /** Connects and listens; a failure is retried in the background rather than failing the boot. */
  async start(): Promise<void> {
    await this.connect();
  }

  subscribe(mailboxId: string, subscriber: MailEventSubscriber): () => void {
    let set = this.subscribers.get(mailboxId);
    if (!set) this.subscribers.set(mailboxId, (set = new Set()));
    set.add(subscriber);
    return () => {
      set.delete(subscriber);
      if (set.size === 0 && this.subscribers.get(mailboxId) === set) this.subscribers.delete(mailboxId);
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const set of [...this.subscribers.values()]) for (const s of [...set]) s.onClose();
    this.subscribers.clear();
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const client = new pg.Client({ connectionString: this.connectionString, application_name: 'mailserver-events' });
    client.on('notification', (msg) => this.dispatch(msg.payload));
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, new Error('connection ended')));
    try {
      await client.connect();
      await client.query(`LISTEN ${MAIL_EVENTS_CHANNEL}`);
    } catch (err) {
      this.lost(client, err);
      return;
    }
    if (this.stopped) {
      await client.end().catch(() => undefined);
      return;
    }
    const reconnected = this.backoffMs > this.options.minBackoffMs;
    this.client = client;
    this.backoffMs = this.options.minBackoffMs;
    if (reconnected) this.resync();
  }

  private lost(client: pg.Client, err: unknown): void {
    // already reconnecting, or an old connection's last words
    if (this.stopped || this.timer || (this.client !== null && this.client !== client)) return;
    this.client = null;
    client.removeAllListeners('end');
    client.on('error', () => undefined);
    client.end().catch(() => undefined);
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.options.maxBackoffMs);
    this.logger.warn({ event: 'mail_events.lost', err: describeError(err), retry_ms: delay }, 'mail event listener lost its connection; reconnecting');
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, delay);
    this.timer.unref();
  }

  private dispatch(payload: string | undefined): void {
    let event: MailEventPayload;
    try {
      event = JSON.parse(payload ?? '') as MailEventPayload;
    } catch {
      this.logger.warn({ event: 'mail_events.bad_payload' }, 'ignored a mail event that is not JSON');
      return;
    }
    for (const s of this.subscribers.get(event.mailbox_id) ?? []) s.onEvent(event);
  }

  /** After an outage: every open stream re-reads its mailbox. */
  private resync(): void {
    for (const [mailboxId, set] of this.subscribers) {
      for (const s of set) s.onEvent({ mailbox_id: mailboxId, folder_id: '', reason: 'changed' });
    }
  }
}
