#!/usr/bin/env node
/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`, e.g. bench/smtp-ingest.mjs --cpu-prof DIR)
 * for the main thread: share of samples that were idle, garbage collection or JavaScript; self
 * time by package (node_modules/<name>, our dist/src/<dir>, node internals) and by function; and
 * inclusive time of selected call-tree frames (what a function and everything it called cost).
 *
 * Usage: node bench/cpu-profile-summary.mjs FILE.cpuprofile [--top N] [--inclusive name,name]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string' }, inclusive: { type: 'string' } },
});
if (positionals.length !== 1) {
  process.stderr.write('usage: node bench/cpu-profile-summary.mjs FILE.cpuprofile [--top N] [--inclusive fn,fn]\n');
  process.exit(2);
}
const top = Number(values.top ?? 25);
const profile = JSON.parse(readFileSync(positionals[0], 'utf8'));

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// time per sample: the delta to the next one (the last gets the median delta)
const selfMs = new Map();
const deltas = profile.timeDeltas;
for (let i = 0; i < profile.samples.length; i++) {
  const dt = (deltas[i + 1] ?? deltas[i] ?? 0) / 1000;
  selfMs.set(profile.samples[i], (selfMs.get(profile.samples[i]) ?? 0) + dt);
}
const totalMs = [...selfMs.values()].reduce((a, b) => a + b, 0);

function packageOf(url) {
  if (!url) return '(native/V8)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1];
  const ours = /dist\/(src\/[^/]+)/.exec(url);
  if (ours) return `ours: ${ours[1]}`;
  if (url.startsWith('node:')) return `node: ${url.slice(5).split('/')[0]}`;
  return url;
}

const add = (map, key, ms) => map.set(key, (map.get(key) ?? 0) + ms);
const special = new Map();
const packages = new Map();
const functions = new Map();
for (const [id, ms] of selfMs) {
  const { callFrame } = byId.get(id);
  const name = callFrame.functionName || '(anonymous)';
  if (name.startsWith('(') && !callFrame.url) {
    add(special, name, ms); // (idle), (program), (garbage collector), (root)
    continue;
  }
  add(packages, packageOf(callFrame.url), ms);
  add(functions, `${name}  ${packageOf(callFrame.url)}:${callFrame.lineNumber + 1}`, ms);
}

const pct = (ms) => `${((ms / totalMs) * 100).toFixed(1).padStart(5)}%`;
const print = (title, map, n = top) => {
  process.stdout.write(`\n${title}\n`);
  for (const [k, ms] of [...map.entries()].sort((a, b) => b[1] - a[1]).slice(0, n)) {
    process.stdout.write(`  ${pct(ms)} ${ms.toFixed(0).padStart(7)} ms  ${k}\n`);
  }
};
process.stdout.write(`profile: ${(totalMs / 1000).toFixed(1)} s of samples, ${profile.samples.length} samples\n`);
print('by category', new Map([...special, ['(JavaScript and native calls)', [...packages.values()].reduce((a, b) => a + b, 0)]]));
print('self time by package', packages);
print('self time by function', functions);

if (values.inclusive) {
  // inclusive: samples whose stack contains a frame with that function name (counted once)
  const wanted = values.inclusive.split(',').map((s) => s.trim());
  const inclusive = new Map(wanted.map((w) => [w, 0]));
  for (const [id, ms] of selfMs) {
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const name = byId.get(cur).callFrame.functionName;
      if (inclusive.has(name) && !seen.has(name)) {
        seen.add(name);
        add(inclusive, name, ms);
      }
    }
  }
  print('inclusive time (the function and all it called)', inclusive, wanted.length);
}
