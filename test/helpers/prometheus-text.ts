/**
 * A strict parser of the Prometheus text exposition format 0.0.4, for tests of /metrics: what a
 * Prometheus server would accept and a little more (it refuses what Prometheus merely tolerates).
 * `# HELP name text` and `# TYPE name type` declare a family (each at most once, TYPE before its
 * samples); a sample is `name{label="value",...} value [timestamp]` with escaped label values;
 * every sample must belong to a declared family: the name itself for counters, gauges and
 * untyped, `_bucket` (with `le`), `_sum`, `_count` for histograms, the name (with `quantile`),
 * `_sum`, `_count` for summaries. No series may appear twice. Any violation throws with the line.
 */

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  help: string;
  type: MetricType;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES: ReadonlySet<string> = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const helps = new Map<string, string>();
  const seen = new Set<string>();
  const lines = text.split('\n');
  if (lines[lines.length - 1] !== '') throw new Error('exposition must end with a newline');
  lines.forEach((line, i) => {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`;
    if (line === '') return;
    if (line.startsWith('#')) return declare(line, where, families, helps);
    const sample = parseSample(line, where);
    const family = familyOf(sample, families);
    if (!family) throw new Error(`${where}: sample of no declared family`);
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seen.has(key)) throw new Error(`${where}: duplicate series`);
    seen.add(key);
    family.samples.push(sample);
  });
  for (const [name, help] of helps) {
    const family = families.get(name);
    if (family) family.help = help;
  }
  return families;
}

function declare(line: string, where: string, families: Map<string, Family>, helps: Map<string, string>): void {
  const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
  if (!m) return; // a plain comment
  const [, kind, name, rest = ''] = m;
  if (!METRIC_NAME.test(name!)) throw new Error(`${where}: bad metric name`);
  if (kind === 'HELP') {
    if (helps.has(name!)) throw new Error(`${where}: second HELP for ${name}`);
    if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) throw new Error(`${where}: bad escape in HELP`);
    helps.set(name!, rest);
    return;
  }
  if (!TYPES.has(rest)) throw new Error(`${where}: unknown type ${rest}`);
  if (families.has(name!)) throw new Error(`${where}: second TYPE for ${name}`);
  families.set(name!, { name: name!, help: '', type: rest as MetricType, samples: [] });
}

function parseSample(line: string, where: string): Sample {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)(?: (-?\d+))?$/.exec(line);
  if (!m) throw new Error(`${where}: not a sample line`);
  return { name: m[1]!, labels: m[2] ? parseLabels(m[2], where) : {}, value: parseValue(m[3]!, where) };
}

function parseLabels(block: string, where: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let rest = block.slice(1, -1);
  while (rest.length > 0) {
    const m = /^([^=]+)="((?:[^"\\]|\\.)*)"(,|$)/.exec(rest);
    if (!m) throw new Error(`${where}: bad label list`);
    const [all, name, raw] = m;
    if (!LABEL_NAME.test(name!)) throw new Error(`${where}: bad label name ${name}`);
    if (name! in labels) throw new Error(`${where}: label ${name} twice`);
    if (/\\[^\\"n]/.test(raw!.replace(/\\\\/g, ''))) throw new Error(`${where}: bad escape in label ${name}`);
    labels[name!] = raw!.replace(/\\(["\\n])/g, (_s, c: string) => (c === 'n' ? '\n' : c));
    rest = rest.slice(all.length);
  }
  return labels;
}

/**
 * A float as Prometheus reads it (Go's strconv.ParseFloat): the specials are case-insensitive,
 * which matters because prom-client writes NaN as `Nan` (an event-loop histogram with no data yet).
 */
function parseValue(v: string, where: string): number {
  if (/^\+?inf(inity)?$/i.test(v)) return Infinity;
  if (/^-inf(inity)?$/i.test(v)) return -Infinity;
  if (/^nan$/i.test(v)) return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v)) throw new Error(`${where}: bad value ${v}`);
  return Number(v);
}

function familyOf(sample: Sample, families: Map<string, Family>): Family | undefined {
  const direct = families.get(sample.name);
  if (direct && direct.type !== 'histogram') {
    if (direct.type === 'summary' && !('quantile' in sample.labels)) return undefined;
    return direct;
  }
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!sample.name.endsWith(suffix)) continue;
    const family = families.get(sample.name.slice(0, -suffix.length));
    if (!family || (family.type !== 'histogram' && family.type !== 'summary')) continue;
    if (suffix === '_bucket' && (family.type !== 'histogram' || !('le' in sample.labels))) return undefined;
    return family;
  }
  return undefined;
}

/** Every sample name a family may produce (what PromQL can name). */
export function sampleNames(family: Family): string[] {
  if (family.type === 'histogram') return ['_bucket', '_sum', '_count'].map((s) => family.name + s);
  if (family.type === 'summary') return [family.name, `${family.name}_sum`, `${family.name}_count`];
  return [family.name];
}

/** The sum of the samples named `name` whose labels include `labels`; 0 when none (a counter not yet touched). */
export function valueOf(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const family of families.values()) {
    for (const s of family.samples) {
      if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
    }
  }
  return sum;
}
