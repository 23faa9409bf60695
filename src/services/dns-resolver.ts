/**
 * The one DNS resolver every lookup goes through (inbound SPF/DKIM/DMARC/ARC, and later domain
 * verification and MX delivery). Queries DNS_SERVERS when set (tests point it at a local DNS
 * server on 127.0.0.1), the system resolvers otherwise. Answers, including "no such record", are
 * cached for DNS_CACHE_TTL_MS; failures (timeouts, SERVFAIL) are not cached. The function shape
 * is the one mailauth takes: (name, rrtype) => records, with node's error codes.
 */
import { Resolver } from 'node:dns/promises';
import { DNS_CACHE_MAX_ENTRIES, DNS_CACHE_TTL_MS } from '../core/limits.js';

/**
 * `fresh`: skip the cache read (the answer still refreshes the cache). Domain verification uses it:
 * an operator who has just published a record must not get a five-minute-old "no such record".
 */
export type DnsResolve = (name: string, rrtype: string, options?: { fresh?: boolean }) => Promise<unknown>;

/** Error codes that mean "the name or record does not exist": a stable answer worth caching. */
const NEGATIVE_CODES = new Set(['ENOTFOUND', 'ENODATA']);

interface CacheEntry {
  expires: number;
  value?: unknown;
  error?: Error;
}

export function createDnsResolver(options: { servers?: string[]; timeoutMs: number }): DnsResolve {
  const resolver = new Resolver({ timeout: options.timeoutMs, tries: 2 });
  if (options.servers && options.servers.length > 0) resolver.setServers(options.servers);
  const cache = new Map<string, CacheEntry>();

  return async (name: string, rrtype: string, lookup?: { fresh?: boolean }): Promise<unknown> => {
    const key = `${rrtype}:${name.toLowerCase()}`;
    const hit = lookup?.fresh ? undefined : cache.get(key);
    if (hit && hit.expires > Date.now()) {
      if (hit.error) throw hit.error;
      return hit.value;
    }
    try {
      const value = await resolver.resolve(name, rrtype);
      remember(cache, key, { expires: Date.now() + DNS_CACHE_TTL_MS, value });
      return value;
    } catch (err) {
      if (err instanceof Error && NEGATIVE_CODES.has((err as NodeJS.ErrnoException).code ?? '')) {
        remember(cache, key, { expires: Date.now() + DNS_CACHE_TTL_MS, error: err });
      }
      throw err;
    }
  };
}

function remember(cache: Map<string, CacheEntry>, key: string, entry: CacheEntry): void {
  if (cache.size >= DNS_CACHE_MAX_ENTRIES) {
    // Map iterates in insertion order: drop the oldest tenth
    let drop = Math.ceil(DNS_CACHE_MAX_ENTRIES / 10);
    for (const k of cache.keys()) {
      cache.delete(k);
      if (--drop === 0) break;
    }
  }
  cache.set(key, entry);
}
