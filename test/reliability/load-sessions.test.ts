/**
 * Load: 1,000 concurrent SMTP sessions held with flat memory, against the real server process.
 * The sessions come from 25 loopback addresses (127.0.0.1..25, 40 each), so the default per-IP
 * cap (SMTP_MAX_CONNECTIONS_PER_IP=50) applies as it does in life; the default listener cap
 * (SMTP_MAX_CONNECTIONS=2000) is above 1,000 and is left alone. Each session is greeted and past
 * EHLO. The server's RSS (/proc/<pid>/status) is read at 0, 100, 500 and 1,000 sessions and again
 * after holding them, each after a full GC forced through the inspector (so garbage not yet
 * collected is not mistaken for memory the sessions keep), then:
 *   - per session: at most PER_SESSION_KB (32 KB). An idle session is a socket, its kernel
 *     buffers (not in RSS) and smtp-server's connection state: about 5 KB measured here. 32 KB
 *     leaves room for allocator noise on a busy machine while still catching a session that keeps
 *     a buffer (one 64 KB read buffer per session would show as 64 MB);
 *   - held: RSS grows by at most HOLD_SLACK_MB while nothing happens (no per-session timers or
 *     buffers that grow with time);
 *   - every held session still completes a transaction (250, stored once);
 *   - after they close, what the server holds (V8 heap in use + external Buffers, from /metrics) is
 *     back within HEAP_SLACK_MB (8 MB) of what it was before they opened, and RSS within
 *     CLOSE_SLACK_MB (32 MB: malloc keeps some freed arenas; measured 4-18 MB above). V8 keeps
 *     some of the heap it grew to, so a short warm-up of the same transaction load (WARM_MESSAGES
 *     over TX_WIDTH sessions) runs first and the baseline already holds what transactions need:
 *     growth left is the sessions'.
 * The server runs with NODE_OPTIONS=--inspect on a free 127.0.0.1 port for the forced GC.
 * SOAK=1 (npm run test:soak) holds longer and repeats the open/hold/close cycle three times, so
 * memory that leaks per cycle shows as growth of the baseline.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { RawSmtp } from '../helpers/smtp-client.js';
import { freePort } from '../helpers/process-server.js';
import { collectGarbage, heapFigures, openSession, pool, rssKb, sleep, startLoadServer, transaction, type LoadServer } from './load-support.js';

const SOAK = process.env.SOAK === '1';
const SESSIONS = 1000;
const ADDRESSES = 25;
const HOLD_MS = SOAK ? 30_000 : 5_000;
const CYCLES = SOAK ? 3 : 1;
const TX_WIDTH = 50;
const WARM_MESSAGES = SOAK ? 2000 : 150;
const PER_SESSION_KB = 32;
const HOLD_SLACK_MB = 16;
const CLOSE_SLACK_MB = 32;
const HEAP_SLACK_MB = 8;
// a leak per cycle of 1,000 sessions would add about that much each time
const CYCLE_GROWTH_SLACK_MB = 24;

const mb = (kb: number): string => `${(kb / 1024).toFixed(1)} MB`;

describe('load: 1,000 concurrent SMTP sessions', () => {
  let load: LoadServer | undefined;

  after(async () => {
    await load?.stop();
  });

  it(`when ${SESSIONS} sessions are opened, held ${HOLD_MS / 1000} s and each sends a message, then memory stays flat and every one gets 250`, async () => {
    // a held session must not hit the idle timeout; the per-IP cap stays at its default
    const inspectPort = await freePort();
    load = await startLoadServer('load-sessions', { SMTP_IDLE_TIMEOUT_MS: String(HOLD_MS + 120_000), NODE_OPTIONS: `--inspect=127.0.0.1:${inspectPort}` });
    const { server, port, apiPort } = load;
    const pid = server.pid;
    // every figure is read after a full GC, so it is memory still referenced, not garbage
    const rss = async (): Promise<number> => {
      // twice: objects freed by the first (weak references, finalizers) go in the second
      await collectGarbage(inspectPort);
      await sleep(100);
      await collectGarbage(inspectPort);
      await sleep(200);
      return rssKb(pid);
    };

    // warm up with the same transaction load the held sessions make later (TX_WIDTH at a time):
    // the heap grows to what that needs once, and V8 keeps it, so from here on what RSS shows is
    // the sessions' own memory
    const first = await openSession(port, 1);
    assert.equal((await transaction(first, 'warm-first')).code, 250, 'first message');
    first.close();
    const warm = await pool(Array.from({ length: TX_WIDTH }, (_, i) => i), TX_WIDTH, (i) => openSession(port, 1 + (i % ADDRESSES)));
    // each session sends its share one after the other (a session carries one transaction at a time)
    const warmReplies = await Promise.all(
      warm.map(async (c, i) => {
        const replies = [];
        for (let n = 0; n < WARM_MESSAGES / TX_WIDTH; n++) replies.push(await transaction(c, `warm-${i}-${n}`));
        return replies;
      }),
    );
    assert.deepEqual(warmReplies.flat().filter((r) => r.code !== 250), [], 'warm-up messages');
    for (const c of warm) c.close();
    await sleep(2000);
    let stored = WARM_MESSAGES + 1;

    const baselines: number[] = [];
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const started = Date.now();
      // V8 sweeps and releases concurrently after a GC: read the heap once that has settled
      await sleep(1000);
      await collectGarbage(inspectPort);
      const heapBefore = await heapFigures(apiPort);
      const figures: Record<string, number> = { 0: await rss() };
      baselines.push(figures[0]!);
      const sessions: RawSmtp[] = [];
      for (const target of [100, 500, SESSIONS]) {
        const batch = Array.from({ length: target - sessions.length }, (_, i) => sessions.length + i);
        sessions.push(...(await pool(batch, 100, (n) => openSession(port, 1 + (n % ADDRESSES), `held-${n}.test`))));
        await sleep(500);
        figures[target] = await rss();
      }
      await sleep(HOLD_MS);
      const held = await rss();
      const line = `cycle ${cycle + 1}: RSS ${mb(figures[0]!)} at 0, ${mb(figures[100]!)} at 100, ${mb(figures[500]!)} at 500, ${mb(figures[SESSIONS]!)} at ${SESSIONS}, ${mb(held)} after ${HOLD_MS / 1000} s held`;
      console.log(line);

      const perSession = (figures[SESSIONS]! - figures[0]!) / SESSIONS;
      assert.ok(perSession <= PER_SESSION_KB, `per-session memory: ${perSession.toFixed(1)} KB per session > ${PER_SESSION_KB} KB (${line})`);
      assert.ok(held - figures[SESSIONS]! <= HOLD_SLACK_MB * 1024, `memory while held: grew ${mb(held - figures[SESSIONS]!)} > ${HOLD_SLACK_MB} MB (${line})`);
      assert.ok(sessions.every((c) => !c.isClosed), `held sessions: ${sessions.filter((c) => c.isClosed).length} of ${SESSIONS} were closed while held (${line})`);

      const txStarted = Date.now();
      const replies = await pool(sessions, TX_WIDTH, (c, n) => transaction(c, `held-${cycle}-${n}`).catch((err: Error) => ({ code: 0, text: err.message })));
      const txSeconds = ((Date.now() - txStarted) / 1000).toFixed(1);
      const failed = replies.map((r, n) => ({ n, ...r })).filter((r) => r.code !== 250);
      assert.deepEqual(
        failed.slice(0, 5).map((r) => `session ${r.n}: ${r.text}`),
        [],
        `transactions on held sessions: ${failed.length} of ${SESSIONS} did not get 250`,
      );
      stored += SESSIONS;
      const afterTx = await rss();
      for (const c of sessions) c.write('QUIT\r\n');
      await Promise.all(sessions.map((c) => c.waitClosed(15_000)));
      await sleep(SOAK ? 10_000 : 1_000);
      const closed = await rss();
      const heapClosed = await heapFigures(apiPort);
      const heldBefore = heapBefore.heapUsed + heapBefore.external;
      const heldClosed = heapClosed.heapUsed + heapClosed.external;
      console.log(`cycle ${cycle + 1}: heap in use + external ${heldBefore} MB before, ${heldClosed} MB after close`);
      assert.ok(heldClosed <= heldBefore + HEAP_SLACK_MB, `heap after close: ${heldClosed} MB in use > ${heldBefore} MB before the sessions + ${HEAP_SLACK_MB} MB`);
      console.log(`cycle ${cycle + 1}: ${mb(afterTx)} after ${SESSIONS} transactions (${txSeconds} s), ${mb(closed)} after all closed (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      assert.ok(
        closed <= figures[0]! + CLOSE_SLACK_MB * 1024,
        `memory after close: ${mb(closed)} > ${mb(figures[0]!)} before the sessions + ${CLOSE_SLACK_MB} MB (${mb(afterTx)} after their transactions)`,
      );
    }
    if (CYCLES > 1) {
      const growth = baselines.at(-1)! - baselines[0]!;
      assert.ok(growth <= CYCLE_GROWTH_SLACK_MB * 1024, `baseline across cycles: grew ${mb(growth)} (${baselines.map(mb).join(', ')})`);
    }

    const db = await server.db();
    try {
      const r = await db.query<{ n: string; d: string }>(`SELECT count(*) AS n, count(DISTINCT subject) AS d FROM messages`);
      assert.equal(Number(r.rows[0]!.n), stored, 'every 250 is stored');
      assert.equal(Number(r.rows[0]!.d), stored, 'every message is stored once');
    } finally {
      await db.end();
    }
  });
});
