/**
 * One run of the crash harness (crash.test.ts): the server process, the relay sink, the ledger,
 * and the cycle of traffic → SIGKILL at a chosen moment → restart → checks. Also what the run
 * learns at each kill, read from the orphaned postgres before the restart stops it: which
 * outbound rows the killed process had claimed and not finished (`sending`, claimed since it was
 * spawned). Those recipients are the kill's crash window: the sink may have their message while
 * the server never recorded it, so each such kill allows one more copy of them at the sink, and
 * a copy beyond that (or a second copy no kill explains) is a duplicate the queue made itself.
 * After every restart the queue is drained before the next traffic, so every check can demand
 * that every queued recipient has reached the sink, and a recipient caught by one kill is
 * delivered before the next one (only a start-up kill, right after a traffic kill, could catch
 * it a second time).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import type { FakeRelay } from '../helpers/fake-relay.js';
import { call } from '../helpers/http.js';
import type { ProcessServer } from '../helpers/process-server.js';
import { checkAccounting, checkMessages, collectAndCheckBlobs, deliveryKey, openStorage, sinkView, takeSnapshot, type BlobReport } from './crash-checks.js';
import { Ledger, startTraffic, type Sent, type TrafficTarget } from './crash-traffic.js';
import { assertCoverage, PhaseClock, report, type KillKind, type KillRecord } from './crash-report.js';

export const PASSWORD = 'password-123';
const MAILBOX = 'victim@acme.test';
const USER = 'sender@acme.test';
const REMOTE_DOMAIN = 'far.test';
/** How long a triggered kill waits for its moment before killing anyway (then unproven). */
const TRIGGER_TIMEOUT_MS = 15_000;
const DRAIN_TIMEOUT_MS = 90_000;
/** First-time deliveries a mid-delivery kill lets through before it strikes. */
const MID_DELIVERY_SKIP = 2;
const TRAFFIC_KINDS: KillKind[] = ['mid-delivery', 'large-mid-data', 'random'];

export class CrashRun {
  readonly ledger = new Ledger();
  readonly kills: KillRecord[] = [];
  /** Per `subject rcpt`: how many kills caught its outbound row in flight. */
  readonly caught = new Map<string, number>();
  private readonly restarts: number[] = [];
  private readonly blobReports: BlobReport[] = [];
  /** Blob keys already read back with the right hash. */
  private readonly verified = new Set<string>();
  private readonly phases = new PhaseClock();
  private readonly began = Date.now();
  /** When the current server process was spawned. */
  private incarnation = new Date(0);

  constructor(
    private readonly server: ProcessServer,
    private readonly sink: FakeRelay,
    private readonly dataDir: string,
  ) {}

  /** First start and the tenant (through the API). */
  async setUp(): Promise<void> {
    await this.start();
    await setUpTenant(this.server);
    this.phases.lap('setup');
  }

  /** One cycle: traffic, a kill of the cycle's kind (and every tenth kill one during start-up), restart, checks. */
  async cycle(cycle: number, kills: number): Promise<void> {
    const kind = TRAFFIC_KINDS[cycle % TRAFFIC_KINDS.length]!;
    const traffic = startTraffic(this.target(), cycle, this.ledger);
    const record = await this.killDuringTraffic(kind, cycle, traffic.largeHalfWritten);
    await traffic.stop();
    this.kills.push(record);
    this.phases.lap('traffic');
    if (this.kills.length < kills && this.kills.length % 10 === 9) this.kills.push(await this.killDuringStartup(cycle));
    await this.start();
    this.phases.lap('restart');
    // what the killed process left queued or in flight is delivered before the next traffic
    await this.waitForDrain();
    this.phases.lap('drain');
    await this.check(`after kill ${this.kills.length} (${record.kind}, cycle ${cycle})`, true);
    this.phases.lap('check');
  }

  /** No blob row is left unreferenced after the last collection, the report, a clean stop. */
  async finish(): Promise<void> {
    const storage = await openStorage(this.server.dbUrl(), this.dataDir);
    let slowest: number;
    try {
      const zero = await storage.db.selectFrom('blobs').select('key').where('refcount', '=', 0).execute();
      assert.deepEqual(zero, [], 'unreferenced blob rows remain after the final collection');
      // claim to outcome of the last attempt: the lease must outlast it, or the queue would duplicate on its own
      const took = await sql<{ ms: number | null }>`SELECT max(extract(epoch FROM updated_at - last_attempt_at) * 1000)::float8 AS ms FROM outbound WHERE status = 'sent'`.execute(storage.db);
      slowest = Math.round(took.rows[0]?.ms ?? 0);
    } finally {
      await storage.close();
    }
    report({
      ledger: this.ledger.entries,
      kills: this.kills,
      blobs: this.blobReports,
      restarts: this.restarts,
      relayed: this.sink.messages,
      caught: this.caught,
      slowestDeliveryMs: slowest,
      elapsedMs: Date.now() - this.began,
    });
    console.log(`# time by phase: ${this.phases.summary()}`);
    assertCoverage(this.ledger.entries, this.kills, this.blobReports);
    assert.equal(await this.server.stop(), 0, 'a clean stop after the crashes');
  }

  private target(): TrafficTarget {
    return {
      mxPort: Number(this.server.env.SMTP_PORT),
      smtpsPort: Number(this.server.env.SMTPS_PORT),
      mailbox: MAILBOX,
      user: { email: USER, password: PASSWORD },
      remoteDomain: REMOTE_DOMAIN,
    };
  }

  private async start(): Promise<void> {
    const t = Date.now();
    this.incarnation = new Date(t);
    await this.server.start();
    this.restarts.push(Date.now() - t);
  }

  private async check(label: string, drained = false): Promise<void> {
    const storage = await openStorage(this.server.dbUrl(), this.dataDir);
    try {
      const snap = await takeSnapshot(storage.db, MAILBOX, USER);
      const blobs = await collectAndCheckBlobs(storage, snap, this.verified);
      this.blobReports.push(blobs);
      const violations = [
        ...checkMessages(this.ledger.entries, snap, sinkView(this.sink.messages), { drained, caught: this.caught }),
        ...(await checkAccounting(storage.db)),
        ...blobs.violations,
      ];
      assert.deepEqual(violations.slice(0, 25), [], `${label}: ${violations.length} violation(s):\n${violations.slice(0, 25).join('\n')}`);
    } finally {
      await storage.close();
    }
  }

  private async killDuringTraffic(kind: KillKind, cycle: number, largeHalfWritten: Promise<Sent>): Promise<KillRecord> {
    if (kind === 'mid-delivery') return this.killMidDelivery(cycle);
    if (kind === 'large-mid-data') {
      const large = await Promise.race([largeHalfWritten, sleep(TRIGGER_TIMEOUT_MS, null)]);
      const dotSent = await this.killNow(() => large?.dotSent);
      const rows = await this.recordInFlight();
      if (!large) return { kind, cycle, proven: false, detail: `no large message half written within ${TRIGGER_TIMEOUT_MS} ms` };
      return { kind, cycle, proven: !dotSent, detail: `"${large.subject}" ${dotSent ? 'had its end of data sent' : 'was half written'}; ${rows.length} row(s) in flight` };
    }
    await sleep(500 + Math.random() * 2000);
    const smtp = await this.killNow(() => this.ledger.entries.filter((s) => s.cycle === cycle && s.outcome === 'unknown').length);
    const rows = await this.recordInFlight();
    return { kind, cycle, proven: true, detail: `${smtp} SMTP transaction(s) and ${rows.length} outbound row(s) in flight` };
  }

  /**
   * Kills the moment the sink records a recipient's first copy (after MID_DELIVERY_SKIP others,
   * so some traffic comes first); proven when that recipient's row is among those in flight.
   */
  private async killMidDelivery(cycle: number): Promise<KillRecord> {
    const seen = new Set(this.sink.messages.map(deliveryKey));
    const deadline = Date.now() + TRIGGER_TIMEOUT_MS;
    let index = this.sink.messages.length;
    let skip = MID_DELIVERY_SKIP;
    let first: string | null = null;
    while (!first && Date.now() < deadline) {
      await this.sink.waitForMessages(index + 1, Math.max(1, deadline - Date.now())).catch(() => null);
      for (; index < this.sink.messages.length && !first; index++) {
        const key = deliveryKey(this.sink.messages[index]!);
        if (seen.has(key)) continue;
        seen.add(key);
        if (skip-- === 0) first = key;
      }
    }
    await this.killNow(() => undefined);
    const rows = await this.recordInFlight();
    if (!first) return { kind: 'mid-delivery', cycle, proven: false, detail: `the sink got no new message within ${TRIGGER_TIMEOUT_MS} ms` };
    const proven = rows.includes(first);
    return {
      kind: 'mid-delivery',
      cycle,
      proven,
      detail: `"${first.replace(' ', '" → ')} was at the sink, its row ${proven ? 'still sending' : 'already finished'}; ${rows.length} row(s) in flight`,
    };
  }

  /** Starts the server and kills it part-way through its start-up (a fraction of the last start's duration). */
  private async killDuringStartup(cycle: number): Promise<KillRecord> {
    const delay = Math.round((0.1 + 0.7 * Math.random()) * (this.restarts.at(-1) ?? 3000));
    this.incarnation = new Date();
    const starting = this.server.start().then(
      () => 'up',
      () => 'killed',
    );
    await sleep(delay);
    await this.killNow(() => undefined);
    const state = await starting;
    const rows = await this.recordInFlight();
    const when = state === 'killed' ? 'before it greeted' : 'it had already greeted';
    return { kind: 'startup', cycle, proven: state === 'killed', detail: `killed ${delay} ms into a start-up (${when}); ${rows.length} row(s) in flight` };
  }

  /** SIGKILL; `atKill` reads the harness's state the moment the signal is sent (kill() sends it before its first await). */
  private async killNow<T>(atKill: () => T): Promise<T> {
    const killed = this.server.kill();
    const state = atKill();
    await killed;
    return state;
  }

  /** The rows the killed process had claimed and not finished, counted into `caught`; none when postgres was not up yet. */
  private async recordInFlight(): Promise<string[]> {
    const db = await this.server.db().catch(() => null);
    if (!db) return [];
    try {
      const rows = await db.query<{ subject: string; rcpt_to: string }>(
        `SELECT s.subject, o.rcpt_to FROM outbound o JOIN submissions s ON s.id = o.submission_id WHERE o.status = 'sending' AND o.last_attempt_at >= $1`,
        [this.incarnation],
      );
      const keys = rows.rows.map((r) => `${r.subject} ${r.rcpt_to}`);
      for (const key of keys) this.caught.set(key, (this.caught.get(key) ?? 0) + 1);
      return keys;
    } finally {
      await db.end();
    }
  }

  private async waitForDrain(): Promise<void> {
    const db = await this.server.db();
    try {
      const deadline = Date.now() + DRAIN_TIMEOUT_MS;
      for (;;) {
        const left = await db.query(`SELECT rcpt_to, status, last_reply FROM outbound WHERE status <> 'sent' LIMIT 5`);
        if (left.rows.length === 0) return;
        if (Date.now() > deadline) assert.fail(`outbound rows not delivered within ${DRAIN_TIMEOUT_MS} ms: ${JSON.stringify(left.rows)}`);
        await sleep(250);
      }
    } finally {
      await db.end();
    }
  }
}

/** A tenant through the API: its domain (marked verified, as DNS is not what this tests), the MX mailbox and the submitting user. */
async function setUpTenant(server: ProcessServer): Promise<void> {
  const port = Number(server.env.API_PORT);
  await apiReady(port);
  const signup = await call<{ access_token: string }>(port, 'POST', '/api/auth/signup', {
    body: { company_name: 'Crash Co', email: 'owner@crash-corp.test', password: PASSWORD },
  });
  assert.equal(signup.status, 201, signup.text);
  const token = signup.body.access_token;
  const domain = await call(port, 'POST', '/api/domains', { token, body: { name: 'acme.test' } });
  assert.equal(domain.status, 201, domain.text);
  for (const email of [MAILBOX, USER]) {
    const user = await call(port, 'POST', '/api/users', { token, body: { email, password: PASSWORD, quota_mb: 1_000_000 } });
    assert.equal(user.status, 201, user.text);
  }
  const db = await server.db();
  try {
    await db.query(`UPDATE domains SET status = 'verified', verified_at = now() WHERE name = 'acme.test'`);
  } finally {
    await db.end();
  }
}

/** The API starts listening a little after SMTP greets (start() waits for the greeting). */
async function apiReady(port: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await call(port, 'GET', '/healthz').then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return;
    if (Date.now() > deadline) assert.fail('the API did not answer /healthz within 30 s');
    await sleep(100);
  }
}

/** Stops (SIGINT: fast shutdown) a postgres still running on the data directory, as the server's next start would. */
export async function stopOrphanedPostgres(dataDir: string): Promise<void> {
  const pidFile = path.join(dataDir, 'pg', 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  const alive = (): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (!Number.isInteger(pid) || pid <= 0 || !alive()) return;
  // a stale pid file may name a pid reused by someone else's process
  const command = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!command.includes('postgres') || !command.includes(dataDir)) return;
  process.kill(pid, 'SIGINT');
  for (let waited = 0; alive() && waited < 30_000; waited += 100) await sleep(100);
}
