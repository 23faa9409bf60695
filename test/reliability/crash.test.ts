/**
 * Crash harness ("nothing accepted is lost", issue 7 item 2): ONE server process on its embedded
 * PostgreSQL receives MX mail and authenticated submissions at the same time, relaying the
 * submissions through its outbound queue to a relay sink (fake-relay.ts: STARTTLS + AUTH), while
 * it is killed with SIGKILL again and again. Each cycle starts the senders (crash-traffic.ts),
 * kills the server at a moment chosen by the cycle's kind, restarts it (which must cope with the
 * orphaned postgres) and checks every invariant of crash-checks.ts before the next cycle
 * (crash-run.ts runs the cycles):
 *   - `random`: after 0.5-2.5 s of traffic;
 *   - `large-mid-data`: when half of a 4 MB message's DATA is written (proved by its dot not
 *     having been sent; the staged file it leaves is collected by the check);
 *   - `mid-delivery`: the moment the sink records the third new recipient of the cycle, before
 *     the server hears the sink's 250 (proved when that recipient's row is still `sending` right
 *     after the kill, read from the orphaned postgres: the sink has a DATA the server never
 *     marked sent; that recipient is then relayed a second time, the documented crash window);
 *   - every tenth kill lands while the server is starting up (no traffic), at a random point of
 *     its start-up.
 * After every restart the queue drains before the checks, so each check also demands that every
 * queued recipient has reached the sink. At the end no unreferenced blob row may remain and the
 * server must stop cleanly. The summary printed
 * (`# crash harness: ...`) shows what the run exercised.
 *
 * CRASH_KILLS sets the number of kills: 10 by default (part of `npm test`), 50 in soak
 * (`npm run test:soak`). Senders run only while the server is up, so the time per kill is the
 * restart time (seconds on a busy machine) plus a short window of traffic; the kill count is
 * what the issue fixes, the windows are what keeps the short form short.
 */
import { rmSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { startFakeRelay, type FakeRelay } from '../helpers/fake-relay.js';
import { tempDir } from '../helpers/harness.js';
import { ProcessServer, processEnv } from '../helpers/process-server.js';
import { testCertificate } from '../helpers/test-tls.js';
import { CrashRun, stopOrphanedPostgres } from './crash-run.js';

const KILLS = Number(process.env.CRASH_KILLS ?? 10);
/** Generous: a restart takes seconds on a busy machine; this only stops a hung run. */
const TIMEOUT_MS = 180_000 + KILLS * 30_000;

describe('crash harness', { timeout: TIMEOUT_MS }, () => {
  const dataDir = tempDir('mailserver-crash-');
  let server: ProcessServer | undefined;
  let sink: FakeRelay | undefined;

  after(async () => {
    await server?.stop().catch(() => undefined);
    // a failure right after a kill leaves the killed server's postgres running: never leak it
    await stopOrphanedPostgres(dataDir);
    await sink?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it(
    `when the server is killed with SIGKILL ${KILLS} times under MX and submission traffic, then every 250 is stored exactly once and every queued recipient is relayed, twice at most when a kill caught it in flight`,
    { timeout: TIMEOUT_MS },
    async () => {
      sink = await startFakeRelay({ tls: 'starttls', auth: { user: 'sink', pass: 'sink pass' } });
      server = new ProcessServer(
        await processEnv(dataDir, {
          RELAY_URL: `smtp://sink:sink%20pass@localhost:${sink.port}`,
          OUTBOUND_TLS_CA_FILE: testCertificate().caFile,
          // a row left `sending` by a kill is taken over once its lease ends: about one restart.
          // The lease must outlast any delivery (the summary prints the slowest), else the queue
          // itself would deliver a row twice, which the checks report as an unexplained copy.
          OUTBOUND_LEASE: '3s',
          OUTBOUND_TIMEOUT: '2s',
          OUTBOUND_POLL_INTERVAL: '200ms',
          OUTBOUND_RETRY_SCHEDULE: '1s',
          SEND_LIMIT_PER_HOUR: '1000000',
          SEND_LIMIT_PER_DAY: '1000000',
        }),
      );
      const run = new CrashRun(server, sink, dataDir);
      await run.setUp();
      for (let cycle = 0; run.kills.length < KILLS; cycle++) await run.cycle(cycle, KILLS);
      await run.finish();
    },
  );
});
