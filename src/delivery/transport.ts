/**
 * The contract every outbound route implements (DESIGN.md §1 "Sending"): the user's own SMTP
 * relay, a tenant's ESP provider (sendgrid, ses, mailgun, msgraph, smtp), the global relay and
 * direct MX delivery. The queue (delivery/queue.ts) hands a transport one message for one
 * recipient and classifies what comes back:
 *
 * - resolves: the route accepted the message (its reply and, for ESPs, their message id);
 * - DeliveryError `permanent`: the recipient or message is refused for good (5xx): bounce;
 * - DeliveryError `temporary`: try again later (4xx, timeouts, HTTP 429/5xx);
 * - `routeUnavailable: true` on either: the route itself could not be used (connection refused,
 *   authentication failed, bad credentials); the queue then tries the next route in this attempt
 *   and records that it did.
 *
 * Transports never see the database; they get the bytes and the envelope.
 */

export interface OutgoingMessage {
  /** Envelope sender; '' is the null sender `<>` (bounces). */
  mailFrom: string;
  /** Envelope recipients (the queue sends one per outbound row). */
  rcptTo: string[];
  /** The complete RFC 5322 message as it is to leave (DKIM-Signature included). */
  raw: Buffer;
  /** Our id for the message (the outbound row), for logs and ESP custom arguments. */
  id: string;
}

export interface DeliveryResult {
  /** The remote reply, e.g. `250 2.0.0 Ok: queued as 1234` or `202 Accepted`. */
  reply: string;
  /** The provider's id for the message (ESP APIs), matched later by webhook events. */
  providerMessageId?: string;
}

export type DeliveryStage = 'connect' | 'tls' | 'auth' | 'mail' | 'rcpt' | 'data' | 'http' | 'config';

export class DeliveryError extends Error {
  readonly kind: 'permanent' | 'temporary';
  readonly stage: DeliveryStage;
  /** The remote reply or our description of what failed, one line, shown to users. */
  readonly reply: string;
  /** The route itself is unusable (connect, auth, credentials): the queue tries the next one. */
  readonly routeUnavailable: boolean;
  /** RFC 3463 status for a DSN, e.g. `5.1.1`; derived from the reply when absent. */
  readonly status?: string;

  constructor(
    kind: 'permanent' | 'temporary',
    stage: DeliveryStage,
    reply: string,
    options: { routeUnavailable?: boolean; status?: string; cause?: unknown } = {},
  ) {
    super(reply, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DeliveryError';
    this.kind = kind;
    this.stage = stage;
    this.reply = reply.replace(/[\r\n]+/g, ' ').slice(0, 1000);
    this.routeUnavailable = options.routeUnavailable ?? false;
    this.status = options.status;
  }
}

export function isDeliveryError(err: unknown): err is DeliveryError {
  return err instanceof DeliveryError;
}

export interface Transport {
  /** How the route is recorded on the outbound row: `user-relay`, `provider:sendgrid:<name>`, `relay`, `mx`, `local`. */
  readonly route: string;
  send(message: OutgoingMessage): Promise<DeliveryResult>;
  /** Checks that the route can be used (connect + authenticate / a credentials check), for the test endpoints. */
  verify(): Promise<void>;
  /** Releases pooled connections. */
  close(): void;
}
