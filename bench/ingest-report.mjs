/**
 * Output of bench/smtp-ingest.mjs: the progress line per configuration (stderr), the results
 * table, the early-talker note, the stored-message check, the one-line summary, and the
 * per-step timings written by bench/ingest-trace.mjs (--trace).
 */
import { readFileSync } from 'node:fs';

/** A row is marked disturbed when more than this share of the machine's CPU went elsewhere. */
const DISTURBED_SHARE = 0.1;

/** Load modes: who drives the target and whether a session keeps its connection. */
export const MODES = {
  new: { label: 'smtp-source', tool: 'smtp-source', reuse: false },
  reuse: { label: 'smtp-source -d', tool: 'smtp-source', reuse: true },
  node: { label: 'node-loadgen', tool: 'loadgen', reuse: true },
};

export function fmt(v, digits = 1) {
  return v === null || v === undefined || Number.isNaN(v) ? '-' : v.toFixed(digits);
}

export function describe(cfg) {
  return `${cfg.size / 1024} KB, ${cfg.sessions} sessions, ${MODES[cfg.mode].label}`;
}

/** One configuration's runs, CPU split and load, for the progress log. */
export function progressLine(r, isOurs) {
  const lat = r.p50 !== null ? `, p50 ${fmt(r.p50, 2)} ms, p99 ${fmt(r.p99, 2)} ms` : '';
  const c = r.cpuSplitPer1k;
  return (
    `${r.target.padEnd(9)} ${describe(r)}: ${r.count} msgs/run, runs ${r.rates.map((x) => x.toFixed(0)).join(' ')} msgs/s${lat}` +
    `, CPU s/1k: ${isOurs ? 'node' : 'sink'} ${fmt(c.mainUser, 2)} user + ${fmt(c.mainSys, 2)} sys` +
    `${isOurs ? ` + postgres ${fmt(c.children, 2)}` : ''}, client ${fmt(c.client, 2)}, rest of machine ${fmt(c.other, 2)}` +
    `; main thread busy ${fmt(r.mainThreadLoad * 100, 0)}% of a CPU, machine CPU busy ${fmt(r.machineBusy * 100, 0)}%`
  );
}

function table(results) {
  const head = ['target', 'size', 'sessions', 'mode', 'msgs/s', 'p50 ms', 'p99 ms', 'CPU s/1k msgs', 'peak RSS MB', 'ratio vs smtp-sink'];
  const rows = results.map((r) => {
    const sink = results.find((s) => s.target === 'smtp-sink' && s.size === r.size && s.sessions === r.sessions && s.mode === r.mode);
    return [
      `${r.target}${r.otherShare > DISTURBED_SHARE ? '*' : ''}`,
      `${r.size / 1024} KB`,
      String(r.sessions),
      MODES[r.mode].label,
      fmt(r.rate, 0),
      fmt(r.p50, 2),
      fmt(r.p99, 2),
      fmt(r.cpuPer1k, 2),
      fmt(r.peakRssMb, 0),
      r.target === 'smtp-sink' || !sink ? '-' : fmt(r.rate / sink.rate, 2),
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells) => `| ${cells.map((c, i) => (i < 4 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i < 4 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(head), rule, ...rows.map(line)].join('\n');
}

/** How much of the new-connection rate the 100 ms pre-greeting wait explains. */
function greetingNote(results, greet) {
  if (Number.isNaN(greet.ours)) return '';
  const out = [
    `Note: smtp-server holds its greeting a fixed 100 ms (early-talker check). Measured connect→220: ` +
      `ours ${fmt(greet.ours, 1)} ms, smtp-sink ${fmt(greet.sink, 1)} ms (median of ${greet.n}). ` +
      `With a new connection per message one session sends at most 1000/${fmt(greet.ours, 0)} msgs/s, ` +
      `so N sessions cap near N×${fmt(1000 / greet.ours, 1)}/s:`,
  ];
  for (const r of results.filter((x) => x.target === 'ours' && x.mode === 'new')) {
    const cap = (r.sessions * 1000) / greet.ours;
    const perMsgMs = (r.sessions * 1000) / r.rate; // wall time one session spends per message
    out.push(
      `  ${describe(r)}: cap ${fmt(cap, 0)}/s, measured ${fmt(r.rate, 0)}/s (${fmt((r.rate / cap) * 100, 0)}% of cap); ` +
        `a session spends ${fmt(perMsgMs, 0)} ms per message, ${fmt((Math.min(greet.ours, perMsgMs) / perMsgMs) * 100, 0)}% of it waiting for the greeting`,
    );
  }
  return out.join('\n');
}

function summary(results, opts, verification) {
  const size = opts.sizesKb.includes(4) ? 4096 : opts.sizesKb[0] * 1024;
  const sessions = opts.sessions.includes(100) ? 100 : opts.sessions[opts.sessions.length - 1];
  const pick = (target, mode) => results.find((r) => r.target === target && r.size === size && r.sessions === sessions && r.mode === mode);
  const parts = [];
  for (const mode of new Set(opts.modes)) {
    const ours = pick('ours', mode);
    const sink = pick('smtp-sink', mode);
    if (!ours) continue;
    const lat = ours.p50 !== null ? `, p50 ${fmt(ours.p50, 1)} ms p99 ${fmt(ours.p99, 1)} ms` : '';
    parts.push(`${MODES[mode].label} ${fmt(ours.rate, 0)}/s (${sink ? `${fmt(ours.rate / sink.rate, 2)}× smtp-sink` : 'no sink figure'}${lat})`);
  }
  const v = verification;
  const check = v.mismatches.length === 0 ? `all ${v.replies} 250 replies stored` : `${v.mismatches.length} runs with stored ≠ 250 replies`;
  return (
    `Summary: ${size / 1024} KB × ${sessions} sessions, ours storing durably (inbound auth ${opts.inboundAuth ? 'on' : 'off'}): ` +
    `${parts.join('; ')}; ${check}. Issue-2 target at 4 KB × 100 sessions: ≥600/s.`
  );
}

function conditions(opts, results) {
  const env = Object.entries(opts.serverEnv).map(([k, v]) => `${k}=${v}`);
  return (
    `ours: embedded PostgreSQL (fsync on, synchronous_commit on), local blob store, INBOUND_AUTH_ENABLED=${opts.inboundAuth}` +
    `${opts.inboundAuth ? ' (DNS to a dead local port)' : ''}; CPU = node + all postgres processes; peak RSS = node process` +
    `${results.every((r) => r.rssReset) ? ' (reset before each configuration)' : ' (since start: VmHWM reset not permitted)'}` +
    `${env.length ? `; server env ${env.join(' ')}` : ''}` +
    `${opts.mailboxes > 1 ? `; node-loadgen spreads its messages over ${opts.mailboxes} mailboxes` : ''}` +
    `${opts.experiments.length ? `; WHAT-IF EXPERIMENT (not durable/complete): ${opts.experiments.join(', ')}` : ''}`
  );
}

/** The whole report printed on stdout at the end of a run. */
export function report({ machine, opts, results, greet, background, verification, elapsedS }) {
  const v = verification;
  return [
    '',
    `smtp-ingest benchmark, ${machine.date}, ${opts.quick ? 'quick' : 'full'} mode, ${opts.runs} run(s) of ~${opts.seconds} s each (median shown)`,
    `machine: ${machine.nproc} CPUs (${machine.cpu}), ${machine.memGiB} GiB RAM, node ${machine.node}, postfix ${machine.postfix}`,
    conditions(opts, results),
    '',
    table(results),
    ...(results.some((r) => r.otherShare > DISTURBED_SHARE)
      ? [`* more than ${DISTURBED_SHARE * 100}% of the machine's CPU went to other processes during this configuration: the figure is disturbed`]
      : []),
    '',
    greetingNote(results, greet),
    '',
    `Stored-message check (PostgreSQL count(*) FROM messages, every run incl. calibration): ${v.replies} × 250 → ${v.stored} stored` +
      (v.mismatches.length ? `; MISMATCH:\n  ${v.mismatches.join('\n  ')}` : ', equal'),
    `Machine CPU busy before the runs (other work): ${fmt(background * 100, 0)}%; during each configuration: ` +
      `${results.map((r) => fmt(r.machineBusy * 100, 0)).join(' ')}% (table order). Total time ${elapsedS.toFixed(0)} s.`,
    summary(results, opts, verification),
    '',
  ].join('\n');
}

/** The per-step timings bench/ingest-trace.mjs wrote when our server exited. */
export function traceReport(file) {
  const stats = JSON.parse(readFileSync(file, 'utf8'));
  const cols = (xs) => xs.map((x) => (typeof x === 'string' ? x : fmt(x, 2)).padStart(9)).join(' ');
  const rows = Object.entries(stats).map(([k, v]) => `  ${k.padEnd(28)} ${String(v.n).padStart(8)} ${cols([v.mean, v.p50, v.p99, v.max])}`);
  return [
    '',
    'Inside our server (whole run incl. calibration; ms unless noted):',
    `  ${'step'.padEnd(28)} ${'n'.padStart(8)} ${cols(['mean', 'p50', 'p99', 'max'])}`,
    ...rows,
    '',
  ].join('\n');
}
