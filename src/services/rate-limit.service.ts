/**
 * Rate limits and lockouts on rate-limiter-flexible's PostgreSQL store, so every process of a
 * split deployment counts the same attempts. One table (`rate_limits`, created by migration 0005)
 * for all limiters, told apart by key prefix.
 */
import type pg from 'pg';
import { RateLimiterPostgres, RateLimiterRes } from 'rate-limiter-flexible';
import { AppError } from '../core/errors.js';

export interface Limiter {
  /** Counts one unit for `key`; throws AppError rate_limited (with Retry-After) when over. */
  consume(key: string, message: string): Promise<void>;
  /** Throws rate_limited if `key` is currently blocked, without counting. */
  check(key: string, message: string): Promise<void>;
  reset(key: string): Promise<void>;
}

export function createLimiter(pool: pg.Pool, options: { prefix: string; points: number; durationMs: number; blockMs?: number }): Limiter {
  const limiter = new RateLimiterPostgres({
    storeClient: pool,
    tableName: 'rate_limits',
    tableCreated: true,
    keyPrefix: options.prefix,
    points: options.points,
    duration: Math.ceil(options.durationMs / 1000),
    blockDuration: options.blockMs === undefined ? 0 : Math.ceil(options.blockMs / 1000),
  });
  const limited = (res: RateLimiterRes, message: string): AppError =>
    new AppError('rate_limited', message, { retryAfterSeconds: Math.ceil(res.msBeforeNext / 1000) });
  return {
    async consume(key, message) {
      try {
        await limiter.consume(key);
      } catch (err) {
        if (err instanceof RateLimiterRes) throw limited(err, message);
        throw new AppError('database_unavailable', 'rate limiter unavailable', { cause: err });
      }
    },
    async check(key, message) {
      const res = await limiter.get(key);
      if (res && res.consumedPoints >= options.points && res.msBeforeNext > 0) throw limited(res, message);
    },
    async reset(key) {
      await limiter.delete(key);
    },
  };
}
