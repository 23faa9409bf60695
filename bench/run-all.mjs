#!/usr/bin/env node
/**
 * bench/run-all: what `npm run bench` runs. Builds dist/ once, then runs the benchmarks of issue
 * [6/6] "Proof" one after another, each on its own fresh server, so they never disturb each other:
 *
 *   1. bench/side-by-side.mjs   SMTP: us next to smtp-sink, Haraka and Postfix's own queue
 *   2. bench/api-mail.mjs       API list/search at 100,000 messages, alone and under SMTP load
 *   3. bench/large-message.mjs  RSS growth while accepting one 25 MB message
 *
 * Each prints its table as it finishes (stdout passes through; progress goes to stderr); at the
 * end comes one block with every script's "Summary:" line. A script that is missing is listed as
 * such; one that fails does not stop the others, but makes the exit status 1. No pass/fail on
 * the figures themselves: that is each script's rule.
 *
 *   node bench/run-all.mjs [--quick] [--no-build]      (npm run bench [-- --quick])
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SCRIPTS = [
  { file: 'bench/side-by-side.mjs', what: 'SMTP side by side' },
  { file: 'bench/api-mail.mjs', what: 'API list/search at 100k messages' },
  { file: 'bench/large-message.mjs', what: '25 MB message memory' },
];
/** A script still running after this long is stopped (its own watchdogs are shorter). */
const SCRIPT_TIMEOUT_MS = 60 * 60_000;

const USAGE = `usage: node bench/run-all.mjs [--quick] [--no-build]   (npm run bench -- [--quick])
  --quick      smoke run: passes --quick to every benchmark (a few minutes in all)
  --no-build   skip npm run -s build
Runs ${SCRIPTS.map((s) => s.file).join(', ')} (those present), then prints their summaries.
`;

const log = (line) => process.stderr.write(`${line}\n`);

function options() {
  const { values } = parseArgs({ options: { quick: { type: 'boolean' }, 'no-build': { type: 'boolean' }, help: { type: 'boolean' } } });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  return { quick: values.quick ?? process.env.BENCH_QUICK === '1', build: !(values['no-build'] ?? false) };
}

/**
 * `npm run -s build`. tsc writes dist/ even when it reports type errors (in tests, say), so a
 * failed build with a dist/src/main.js present is a warning, not the end of the benchmarks.
 */
function build() {
  log('build: npm run -s build');
  try {
    execFileSync('npm', ['run', '-s', 'build'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });
  } catch (err) {
    const output = `${err.stdout ?? ''}${err.stderr ?? ''}`.trim().split('\n').slice(0, 5).join('\n');
    if (!existsSync(path.join(ROOT, 'dist/src/main.js'))) throw new Error(`build failed:\n${output}`, { cause: err });
    log(`build: failed, benchmarking the dist/ it left:\n${output}`);
  }
}

let current = null;
let stopping = false;

/** Runs one script, passing its stdout through and keeping it; resolves with exit code and output. */
function runScript(file, args) {
  return new Promise((resolve) => {
    const started = performance.now();
    // its own process group, so a Ctrl-C reaches it once, from us, and never twice
    const child = spawn(process.execPath, [path.join(ROOT, file), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], detached: true });
    current = child;
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      process.stdout.write(d);
    });
    const timer = setTimeout(() => child.kill('SIGTERM'), SCRIPT_TIMEOUT_MS);
    const done = (code, why) => {
      clearTimeout(timer);
      current = null;
      resolve({ code, why, out, seconds: (performance.now() - started) / 1000 });
    };
    child.once('error', (err) => done(1, err.message));
    child.once('exit', (code, signal) => done(code ?? 1, signal ? `stopped by ${signal}` : null));
  });
}

/** The "Summary:" lines of a script's output, or what to say instead. */
function summaryOf(result) {
  const lines = result.out.split('\n').filter((l) => /^Summary\b/i.test(l.trim()));
  const status = result.code === 0 ? '' : ` [exit ${result.code}${result.why ? `, ${result.why}` : ''}]`;
  if (lines.length === 0) return [`(no summary line)${status}`];
  return lines.map((l, i) => `${l.trim().replace(/^Summary:\s*/i, '')}${i === lines.length - 1 ? status : ''}`);
}

async function main() {
  const opts = options();
  const began = performance.now();
  // a benchmark script stops its own servers on SIGINT/SIGTERM: pass the signal on, then wait for it
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      if (stopping) return;
      stopping = true;
      log(`bench: ${sig}; stopping${current ? ' the running benchmark' : ''}`);
      if (current) current.kill(sig);
      else process.exit(130);
    });
  }
  if (opts.build) build();
  const args = ['--no-build', ...(opts.quick ? ['--quick'] : [])];
  const results = [];
  for (const s of SCRIPTS) {
    if (stopping) break;
    if (!existsSync(path.join(ROOT, s.file))) {
      results.push({ ...s, missing: true });
      continue;
    }
    log(`\n=== ${s.file} ${args.join(' ')} (${s.what})`);
    results.push({ ...s, ...(await runScript(s.file, args)) });
  }
  const total = (performance.now() - began) / 1000;
  const block = [
    '',
    `=== npm run bench${opts.quick ? ' -- --quick' : ''}: summaries (${new Date().toISOString()}, ${total.toFixed(0)} s in all)`,
    ...results.flatMap((r) =>
      r.missing ? [`- ${r.file}: not present, skipped`] : summaryOf(r).map((l, i) => (i === 0 ? `- ${r.file} (${r.seconds.toFixed(0)} s): ${l}` : `  ${l}`)),
    ),
    '',
  ];
  process.stdout.write(block.join('\n'));
  if (stopping) process.exitCode = 130;
  else if (results.some((r) => !r.missing && r.code !== 0)) process.exitCode = 1;
}

main().catch((err) => {
  log(`bench: ${err.stack ?? err.message}`);
  process.exit(1);
});
