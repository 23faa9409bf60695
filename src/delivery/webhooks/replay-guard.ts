/**
 * Replay protection shared by the signed webhooks (SendGrid, Mailgun): a signed timestamp must be
 * recent, and a signature or token seen inside that window is refused a second time. A nonce is
 * claimed before the events are recorded and released when recording fails, so a provider's
 * retry after our 5xx is accepted while a concurrent or later copy of a processed request is not.
 *
 * The memory is per process: with several API processes a copy sent to another one within the
 * window gets through (its events are then recorded twice; the state it sets is the same).
 */
import { AppError } from '../../core/errors.js';
import { WEBHOOK_MAX_AGE_MS, WEBHOOK_REPLAY_CACHE_ENTRIES } from '../../core/limits.js';

/** Refuses a Unix timestamp (seconds, as the providers send it) outside the accepted window. */
export function assertFreshTimestamp(seconds: string, nowMs: number): void {
  if (!/^\d{1,12}(\.\d+)?$/.test(seconds)) throw new AppError('unauthorized', 'the signed timestamp is not a Unix time');
  const skew = Math.abs(nowMs - Number(seconds) * 1000);
  if (skew > WEBHOOK_MAX_AGE_MS) {
    throw new AppError('unauthorized', `the signed timestamp is more than ${WEBHOOK_MAX_AGE_MS / 60_000} minutes away from our clock (replayed or stale request)`);
  }
}

export class RecentNonces {
  /** nonce → when it may be forgotten (ms); insertion order is age order, for eviction. */
  private readonly seen = new Map<string, number>();

  constructor(private readonly maxEntries = WEBHOOK_REPLAY_CACHE_ENTRIES) {}

  /** Remembers `nonce` for the replay window; false when it was already seen. */
  claim(nonce: string, nowMs: number): boolean {
    this.forgetExpired(nowMs);
    if (this.seen.has(nonce)) return false;
    this.seen.set(nonce, nowMs + 2 * WEBHOOK_MAX_AGE_MS);
    while (this.seen.size > this.maxEntries) {
      const oldest = this.seen.keys().next().value;
      if (oldest === undefined) break;
      this.seen.delete(oldest);
    }
    return true;
  }

  /** Forgets a claimed nonce: the request it came with was not processed, its retry must pass. */
  release(nonce: string): void {
    this.seen.delete(nonce);
  }

  private forgetExpired(nowMs: number): void {
    for (const [nonce, expires] of this.seen) {
      if (expires > nowMs) break;
      this.seen.delete(nonce);
    }
  }
}
