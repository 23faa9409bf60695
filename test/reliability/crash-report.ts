/**
 * What a crash harness run (crash.test.ts) prints and what it must have exercised: the summary
 * lines (kills by kind and whether each was proven to land where its kind says, outcomes per
 * sender, copies at the sink, blobs collected, time per phase), and the coverage assertions that
 * keep a run from passing without having tested its claims (e.g. no refused message, no kill
 * proven mid-delivery).
 */
import assert from 'node:assert/strict';
import type { RelayMessage } from '../helpers/fake-relay.js';
import { deliveryKey, type BlobReport } from './crash-checks.js';
import type { Sent } from './crash-traffic.js';

export type KillKind = 'random' | 'large-mid-data' | 'mid-delivery' | 'startup';

export interface KillRecord {
  kind: KillKind;
  cycle: number;
  /** The kill landed where its kind says (see crash.test.ts). */
  proven: boolean;
  detail: string;
}

/** Wall time spent per phase of the run (where the time goes on a busy machine). */
export class PhaseClock {
  private last = Date.now();
  private readonly spent = new Map<string, number>();

  lap(phase: string): void {
    const now = Date.now();
    this.spent.set(phase, (this.spent.get(phase) ?? 0) + now - this.last);
    this.last = now;
  }

  summary(): string {
    return [...this.spent].map(([phase, ms]) => `${phase} ${(ms / 1000).toFixed(1)} s`).join(', ');
  }
}

/** The run must have exercised what it claims to prove. */
export function assertCoverage(ledger: readonly Sent[], kills: readonly KillRecord[], blobs: readonly BlobReport[]): void {
  const count = (kind: Sent['kind'], outcome: Sent['outcome']): number => ledger.filter((s) => s.kind === kind && s.outcome === outcome).length;
  assert.ok(count('mx', 'accepted') >= 20, `too few MX messages accepted to prove anything (${count('mx', 'accepted')})`);
  assert.ok(count('submission', 'accepted') >= 5, `too few submissions accepted to prove anything (${count('submission', 'accepted')})`);
  assert.ok(count('mx', 'rejected') >= 1 && count('submission', 'rejected') >= 1, 'no refused message: the "refused is never visible" case went untested');
  const proven = (kind: KillKind): number => kills.filter((k) => k.kind === kind && k.proven).length;
  const tried = (kind: KillKind): boolean => kills.some((k) => k.kind === kind);
  const summary = kills.map((k) => `${k.kind}: ${k.detail}`).join('\n');
  if (tried('large-mid-data')) assert.ok(proven('large-mid-data') >= 1, `no kill landed mid-DATA of a large message:\n${summary}`);
  if (tried('mid-delivery')) assert.ok(proven('mid-delivery') >= 1, `no kill was proven to land mid-delivery:\n${summary}`);
  if (proven('large-mid-data') > 0) assert.ok(blobs.some((b) => b.staged > 0), 'a large message was cut off mid-DATA but no staged file was ever collected');
}

export interface RunFacts {
  ledger: readonly Sent[];
  kills: readonly KillRecord[];
  blobs: readonly BlobReport[];
  restarts: readonly number[];
  relayed: readonly RelayMessage[];
  caught: ReadonlyMap<string, number>;
  /** The longest delivery attempt that ended `sent`, claim to outcome. */
  slowestDeliveryMs: number;
  elapsedMs: number;
}

export function report(run: RunFacts): void {
  const by = (kind: Sent['kind']): string => {
    const of = run.ledger.filter((s) => s.kind === kind);
    const n = (o: Sent['outcome']): number => of.filter((s) => s.outcome === o).length;
    return `${kind} ${n('accepted')}/${n('rejected')}/${n('unknown')} (${of.filter((s) => s.outcome === 'unknown' && s.dotSent).length} after the dot)`;
  };
  const kinds = (['random', 'large-mid-data', 'mid-delivery', 'startup'] as const).map(
    (k) => `${k} ${run.kills.filter((r) => r.kind === k && r.proven).length}/${run.kills.filter((r) => r.kind === k).length}`,
  );
  const copies = new Map<string, number>();
  for (const m of run.relayed) copies.set(deliveryKey(m), (copies.get(deliveryKey(m)) ?? 0) + 1);
  const caught = [...run.caught.values()];
  const sum = (f: (b: BlobReport) => number): number => run.blobs.reduce((a, b) => a + f(b), 0);
  const avg = Math.round(run.restarts.reduce((a, b) => a + b, 0) / run.restarts.length);
  console.log(
    [
      `# crash harness: ${run.kills.length} kills in ${Math.round(run.elapsedMs / 1000)} s (start avg ${avg} ms, max ${Math.max(...run.restarts)} ms)`,
      `# kills proven/total: ${kinds.join(', ')}`,
      `# messages accepted/refused/unknown: ${by('mx')}, ${by('large')}, ${by('submission')}; ${run.ledger.filter((s) => s.attempt > 1).length} resent after a lost reply`,
      `# relayed ${run.relayed.length} copies to ${copies.size} recipients: ${[...copies.values()].filter((n) => n === 2).length} twice, ${[...copies.values()].filter((n) => n > 2).length} more often; ` +
        `${caught.length} recipients caught in flight by a kill, ${caught.filter((n) => n > 1).length} by two or more; slowest delivery ${run.slowestDeliveryMs} ms`,
      `# blobs: ${sum((b) => b.staged)} staged and ${sum((b) => b.orphans)} orphan files found, ${sum((b) => b.deleted)} deleted, ${sum((b) => b.read)} messages read back`,
      ...run.kills.map((k, i) => `#   kill ${i + 1} ${k.kind}${k.proven ? '' : ' (unproven)'}: ${k.detail}`),
    ].join('\n'),
  );
}
