/**
 * Load: the API answers while the SMTP side is under load. Against the real server process (one
 * Node process serving SMTP and the API, as deployed with ROLES=api,smtp,worker): SMTP_SESSIONS
 * sessions from 127.0.0.1..3 deliver messages back to back into the mailbox, and meanwhile
 * API_CLIENTS clients list that mailbox (GET /api/webmail/messages, newest 50) in a loop. Every
 * request must answer 200, and p99 must stay under P99_BOUND_MS.
 *
 * The bound (2 s) is generous: the target is a p99 under 20 ms with the machine to
 * ourselves; here the SMTP load alone keeps both cores busy (the load generator shares them) and
 * other suites run alongside, so a request waits behind many ingest steps. Measured on the busy
 * 2-core machine: p99 ~0.6 s with 50 sessions, ~0.85 s with 100 (soak), so 2 s leaves room
 * without hiding starvation. What the test proves is no starvation (an event loop blocked by
 * ingest, or a database pool held by SMTP sessions, would show as seconds or timeouts); the real
 * latency figure is printed by the API benchmark (bench/api-mail.mjs), not asserted here.
 * SOAK=1 (npm run test:soak) runs 100 sessions for 60 s.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { call } from '../helpers/http.js';
import { PASSWORD, RECIPIENT, openSession, pool, startLoadServer, transaction, type LoadServer } from './load-support.js';

const SOAK = process.env.SOAK === '1';
const SMTP_SESSIONS = SOAK ? 100 : 50;
const LOAD_MS = SOAK ? 60_000 : 8_000;
const API_CLIENTS = 4;
const P99_BOUND_MS = 2000;

describe('load: the API under SMTP load', () => {
  let load: LoadServer | undefined;

  after(async () => {
    await load?.stop();
  });

  it(`when ${SMTP_SESSIONS} SMTP sessions send continuously, then every message-list request answers 200 with p99 under ${P99_BOUND_MS} ms`, async () => {
    load = await startLoadServer('load-api', { API_RATE_LIMIT_PER_MINUTE: '1000000' });
    const { port, apiPort } = load;
    const login = await call<{ access_token: string }>(apiPort, 'POST', '/api/auth/login', { body: { email: RECIPIENT, password: PASSWORD } });
    assert.equal(login.status, 200, `login: ${login.text}`);
    const token = login.body.access_token;

    const sessions = await pool(
      Array.from({ length: SMTP_SESSIONS }, (_, i) => i),
      SMTP_SESSIONS,
      (i) => openSession(port, 1 + (i % 3), `sender-${i}.test`),
    );
    const started = Date.now();
    const running = (): boolean => Date.now() - started < LOAD_MS;

    const smtp = { accepted: 0, failed: [] as string[] };
    const senders = sessions.map(async (c, i) => {
      for (let n = 0; running(); n++) {
        const r = await transaction(c, `api-load-${i}-${n}`).catch((err: Error) => ({ code: 0, text: err.message }));
        if (r.code === 250) smtp.accepted++;
        else smtp.failed.push(`session ${i}: ${r.text}`);
      }
      c.close();
    });

    const requests: { ms: number; status: number; text: string }[] = [];
    const apiClients = Array.from({ length: API_CLIENTS }, async () => {
      while (running()) {
        const t0 = performance.now();
        const r = await call(apiPort, 'GET', '/api/webmail/messages?mailbox=INBOX&limit=50', { token }).catch((err: Error) => ({ status: 0, text: err.message }));
        requests.push({ ms: performance.now() - t0, status: r.status, text: r.status === 200 ? '' : r.text.slice(0, 200) });
      }
    });
    await Promise.all([...senders, ...apiClients]);

    const bad = requests.filter((r) => r.status !== 200);
    assert.deepEqual(bad.slice(0, 5), [], `API under SMTP load: ${bad.length} of ${requests.length} requests did not answer 200`);
    const sorted = requests.map((r) => r.ms).sort((a, b) => a - b);
    const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
    const summary = `${requests.length} list requests, p50 ${at(0.5).toFixed(0)} ms, p99 ${at(0.99).toFixed(0)} ms, max ${sorted.at(-1)!.toFixed(0)} ms; ${smtp.accepted} messages accepted over SMTP in ${LOAD_MS / 1000} s`;
    console.log(`API under SMTP load: ${summary}`);
    assert.deepEqual(smtp.failed.slice(0, 5), [], `SMTP load: ${smtp.failed.length} transactions did not get 250`);
    // the load must be real for the figure to mean anything
    assert.ok(smtp.accepted >= SMTP_SESSIONS, `SMTP load: only ${smtp.accepted} messages accepted (${summary})`);
    assert.ok(requests.length >= API_CLIENTS * 5, `API under SMTP load: only ${requests.length} requests answered (${summary})`);
    assert.ok(at(0.99) < P99_BOUND_MS, `API under SMTP load: p99 ${at(0.99).toFixed(0)} ms >= ${P99_BOUND_MS} ms (${summary})`);
  });
});
