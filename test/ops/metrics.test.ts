/**
 * Prometheus metrics against the real server: /metrics on the API port parses as strict
 * exposition text (test/helpers/prometheus-text.ts) and declares every family; real SMTP sessions
 * move the connection, session, received/stored/bytes and reject counters (reasons from the error
 * codes and smtp-server's own refusals, each counted once); an API call lands in the latency
 * histogram under its route pattern, never its raw id; a submitted message shows in the queue
 * gauges (read from the database at scrape time) and its attempt in the deliveries counter; a
 * domain DNS check (against a local DNS server) counts per record; a ROLES=smtp process answers
 * on METRICS_PORT with its own registry; the Grafana dashboard only names metrics the server
 * exports. Bad input (other methods, other paths) is refused and changes no number.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { routeLabel } from '../../src/core/metrics.js';
import { libraryRejectReason } from '../../src/smtp/smtp-metrics.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { markVerified, seedMailbox, startTestServer, type TestServer } from '../helpers/harness.js';
import { call } from '../helpers/http.js';
import { parsePrometheusText, sampleNames, valueOf, type Family } from '../helpers/prometheus-text.js';
import { RawSmtp, simpleMessage } from '../helpers/smtp-client.js';
import { UNTHROTTLED_ENV, usersApi } from '../helpers/users-api.js';

type Scrape = Map<string, Family>;

const PASSWORD = 'password-123';
const FAMILIES = [
  'mailserver_smtp_connections_total',
  'mailserver_smtp_sessions_open',
  'mailserver_smtp_rejects_total',
  'mailserver_smtp_messages_received_total',
  'mailserver_smtp_messages_stored_total',
  'mailserver_smtp_stored_bytes_total',
  'mailserver_outbound_deliveries_total',
  'mailserver_outbound_queue_depth',
  'mailserver_outbound_queue_oldest_age_seconds',
  'mailserver_dns_checks_total',
  'mailserver_domain_verifications_total',
  'mailserver_http_request_duration_seconds',
  'mailserver_db_pool_connections',
  'mailserver_db_pool_waiting',
  'nodejs_eventloop_lag_seconds',
  'nodejs_eventloop_lag_p99_seconds',
  'nodejs_heap_size_used_bytes',
  'process_cpu_seconds_total',
  'process_resident_memory_bytes',
];

let t: TestServer;
let dns: DnsServer;

before(async () => {
  dns = await startDnsServer();
  t = await startTestServer({ ...UNTHROTTLED_ENV, DNS_SERVERS: dns.address, DNS_TIMEOUT_MS: '1000' });
  await seedMailbox(t.services, 'alice@metrics.test', { password: PASSWORD });
  await markVerified(t.services, 'metrics.test');
});

after(async () => {
  await t.stop();
  await dns.stop();
});

async function scrape(port = t.apiPort): Promise<Scrape> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  return parsePrometheusText(await res.text());
}

/** Scrapes until `check` holds (responses are counted when the server sees them close). */
async function scrapeUntil(check: (m: Scrape) => boolean, port = t.apiPort): Promise<Scrape> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const m = await scrape(port);
    if (check(m) || Date.now() > deadline) return m;
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function deliver(to: string, message: string): Promise<string> {
  const c = await RawSmtp.connect(t.smtpPort);
  await c.hello();
  assert.match((await c.command('MAIL FROM:<sender@example.org>')).text, /^250/);
  assert.match((await c.command(`RCPT TO:<${to}>`)).text, /^250/);
  const reply = await c.data(message);
  await c.command('QUIT');
  c.close();
  return reply.text;
}

const rejects = (m: Scrape, listener: string, reason: string): number => valueOf(m, 'mailserver_smtp_rejects_total', { listener, reason });

describe('GET /metrics on the API port', () => {
  it('when scraped without a token, then it is strict Prometheus text declaring every family with HELP', async () => {
    const m = await scrape();
    for (const name of FAMILIES) {
      assert.ok(m.has(name), `${name} is not exported`);
      assert.ok(m.get(name)!.help.length > 10, `${name} has no HELP text`);
    }
    for (const state of ['queued', 'sending', 'deferred']) assert.equal(valueOf(m, 'mailserver_outbound_queue_depth', { state }), 0);
    assert.ok(valueOf(m, 'mailserver_db_pool_connections', { state: 'total' }) >= 1, 'the pool has connections');
    // a bogus token changes nothing: the endpoint is public
    const withToken = await call(t.apiPort, 'GET', '/metrics', { token: 'not-a-token' });
    assert.equal(withToken.status, 200);
  });

  it('when the strict parser meets broken text, then it refuses it (so the passes above mean something)', () => {
    const ok = '# HELP a_total help\n# TYPE a_total counter\na_total{x="1"} 2\n';
    assert.equal(valueOf(parsePrometheusText(ok), 'a_total', { x: '1' }), 2);
    assert.throws(() => parsePrometheusText('b 1\n'), /no declared family/);
    assert.throws(() => parsePrometheusText(ok.trimEnd()), /newline/);
    assert.throws(() => parsePrometheusText(`${ok}a_total{x="1"} 3\n`), /duplicate series/);
    assert.throws(() => parsePrometheusText('# TYPE a_total counter\na_total{x=1} 2\n'), /bad label list/);
    assert.throws(() => parsePrometheusText('# TYPE h histogram\nh_bucket 1\n'), /no declared family/);
    assert.throws(() => parsePrometheusText('# TYPE g gauge\n# TYPE g gauge\n'), /second TYPE/);
    assert.throws(() => parsePrometheusText('# TYPE g gauge\ng one\n'), /bad value/);
  });

  it('when another method or a query is sent to /metrics, then it is refused or ignored and no number moves', async () => {
    const before = await scrape();
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const res = await call(t.apiPort, method, '/metrics', { body: { reset: true } });
      assert.equal(res.status, 404, `${method} /metrics`);
      assert.equal(res.body.code, 'not_found');
    }
    const after = await scrape();
    const histogram = (m: Scrape) => JSON.stringify(m.get('mailserver_http_request_duration_seconds')!.samples);
    assert.equal(histogram(after), histogram(before), 'neither the refused requests nor the scrapes were timed');
  });
});

describe('SMTP metrics', () => {
  it('when a message is delivered over the MX listener, then connections, received, stored and bytes move by exactly one message', async () => {
    const message = simpleMessage({ to: 'alice@metrics.test', subject: 'counted' });
    const before = await scrape();
    assert.match(await deliver('alice@metrics.test', message), /^250 /);
    const after = await scrape();
    const delta = (name: string) => valueOf(after, name, { listener: 'mx' }) - valueOf(before, name, { listener: 'mx' });
    assert.equal(delta('mailserver_smtp_connections_total'), 1);
    assert.equal(delta('mailserver_smtp_messages_received_total'), 1);
    assert.equal(delta('mailserver_smtp_messages_stored_total'), 1);
    assert.equal(delta('mailserver_smtp_stored_bytes_total'), Buffer.byteLength(message));
    assert.equal(valueOf(after, 'mailserver_smtp_messages_stored_total', { listener: 'submission' }), 0, 'other listeners untouched');
  });

  it('when a session is open, then the open-sessions gauge shows it, and drops when it closes', async () => {
    const c = await RawSmtp.connect(t.smtpPort);
    await c.hello();
    assert.equal(valueOf(await scrape(), 'mailserver_smtp_sessions_open', { listener: 'mx' }), 1);
    c.close();
    const m = await scrapeUntil((s) => valueOf(s, 'mailserver_smtp_sessions_open', { listener: 'mx' }) === 0);
    assert.equal(valueOf(m, 'mailserver_smtp_sessions_open', { listener: 'mx' }), 0);
  });

  it('when a recipient is unknown or elsewhere, then the reject counter moves once with the error code as reason', async () => {
    const before = await scrape();
    const c = await RawSmtp.connect(t.smtpPort);
    await c.hello();
    await c.command('MAIL FROM:<sender@example.org>');
    assert.match((await c.command('RCPT TO:<nobody@metrics.test>')).text, /^550 5\.1\.1 /);
    assert.match((await c.command('RCPT TO:<someone@elsewhere.test>')).text, /^550 5\.7\.1 /);
    c.close();
    const after = await scrape();
    assert.equal(rejects(after, 'mx', 'mailbox_not_found') - rejects(before, 'mx', 'mailbox_not_found'), 1);
    assert.equal(rejects(after, 'mx', 'relay_denied') - rejects(before, 'mx', 'relay_denied'), 1);
    assert.equal(valueOf(after, 'mailserver_smtp_rejects_total') - valueOf(before, 'mailserver_smtp_rejects_total'), 2, 'each refusal counted once');
  });

  it("when smtp-server refuses on its own (early talker, AUTH required), then those count under protocol reasons", async () => {
    const before = await scrape();
    const early = await RawSmtp.connect(t.smtpPort);
    early.write('EHLO too.early\r\n');
    assert.match((await early.reply()).text, /^421 .*talk too soon/);
    early.close();
    const sub = await RawSmtp.connect(t.submissionPort);
    await sub.hello();
    assert.match((await sub.command('MAIL FROM:<alice@metrics.test>')).text, /^530 /);
    sub.close();
    const after = await scrape();
    assert.equal(rejects(after, 'mx', 'early_talker') - rejects(before, 'mx', 'early_talker'), 1);
    assert.equal(rejects(after, 'submission', 'auth_required') - rejects(before, 'submission', 'auth_required'), 1);
  });
});

describe('API request metrics', () => {
  it('when a user is fetched by id, then the histogram counts it under the route pattern, never the id', async () => {
    const users = usersApi(t);
    const tenant = await users.newTenant('metrics');
    const user = await users.createUser(tenant);
    const series = { method: 'GET', route: '/api/users/:id', status: '200' };
    const before = await scrape();
    assert.equal((await users.api('GET', `/api/users/${user.id}`, tenant.token)).status, 200);
    assert.equal((await call(t.apiPort, 'GET', '/api/no-such-thing')).status, 404);
    const count = 'mailserver_http_request_duration_seconds_count';
    const after = await scrapeUntil((m) => valueOf(m, count, series) > valueOf(before, count, series));
    assert.equal(valueOf(after, count, series) - valueOf(before, count, series), 1);
    const unmatched = { method: 'GET', route: 'unmatched', status: '404' };
    assert.equal(valueOf(after, count, unmatched) - valueOf(before, count, unmatched), 1);
    const bucket = valueOf(after, 'mailserver_http_request_duration_seconds_bucket', { ...series, le: '+Inf' });
    assert.equal(bucket, valueOf(after, count, series), 'the +Inf bucket equals the count');
    const routes = new Set(after.get('mailserver_http_request_duration_seconds')!.samples.map((s) => s.labels.route));
    assert.ok(![...routes].some((r) => r!.includes(user.id)), 'no raw id in a route label');
    assert.ok(!routes.has('/metrics'), 'scrapes are not timed');
  });
});

describe('outbound queue metrics', () => {
  it('when a submitted message has no route, then the queue gauges show it queued, then deferred after its attempt', async () => {
    const c = await RawSmtp.connect(t.submissionPort);
    await c.hello();
    await c.startTls();
    await c.command('EHLO client.test');
    assert.equal((await c.authPlain('alice@metrics.test', PASSWORD)).code, 235);
    assert.match((await c.command('MAIL FROM:<alice@metrics.test>')).text, /^250/);
    assert.match((await c.command('RCPT TO:<bob@remote.test>')).text, /^250/);
    assert.match((await c.data(simpleMessage({ from: 'alice@metrics.test', to: 'bob@remote.test' }))).text, /^250 /);
    c.close();

    const queued = await scrape();
    assert.equal(valueOf(queued, 'mailserver_outbound_queue_depth', { state: 'queued' }), 1);
    assert.ok(valueOf(queued, 'mailserver_outbound_queue_oldest_age_seconds') >= 0);
    assert.equal(valueOf(queued, 'mailserver_smtp_messages_stored_total', { listener: 'submission' }), 1);

    // no worker runs in this server: one attempt, by hand (no RELAY_URL, no DIRECT_DELIVERY)
    assert.equal(await t.services.queue.runDue(), 1);
    const deferred = await scrape();
    assert.equal(valueOf(deferred, 'mailserver_outbound_queue_depth', { state: 'queued' }), 0);
    assert.equal(valueOf(deferred, 'mailserver_outbound_queue_depth', { state: 'deferred' }), 1);
    assert.equal(valueOf(deferred, 'mailserver_outbound_deliveries_total', { route: 'none', outcome: 'deferred' }), 1);
    const row = await t.services.db.selectFrom('outbound').select('created_at').executeTakeFirstOrThrow();
    const age = valueOf(deferred, 'mailserver_outbound_queue_oldest_age_seconds');
    assert.ok(Math.abs(age - (Date.now() - row.created_at.getTime()) / 1000) < 5, `oldest age ${age}s matches the row`);
  });
});

describe('domain DNS check metrics', () => {
  it('when a domain is checked and DNS has none of its records, then every record counts as missing and the run as failed', async () => {
    await seedMailbox(t.services, 'owner@dnscheck.test');
    const domain = await t.services.db.selectFrom('domains').select('id').where('name', '=', 'dnscheck.test').executeTakeFirstOrThrow();
    const before = await scrape();
    assert.equal(await t.services.domainVerifier.verifyDomain(domain.id), 'failed');
    const after = await scrape();
    for (const record of ['mx', 'spf', 'dkim', 'dmarc', 'verification']) {
      const labels = { record, result: 'missing' };
      assert.equal(valueOf(after, 'mailserver_dns_checks_total', labels) - valueOf(before, 'mailserver_dns_checks_total', labels), 1, record);
    }
    assert.equal(valueOf(after, 'mailserver_domain_verifications_total', { outcome: 'failed' }), 1);
    assert.ok(dns.queries.length > 0, 'the checks asked the local DNS server');
  });
});

describe('METRICS_PORT', () => {
  let smtpOnly: TestServer;
  before(async () => {
    smtpOnly = await startTestServer({ ROLES: 'smtp', METRICS_PORT: '0' });
  });
  after(async () => {
    await smtpOnly.stop();
  });

  it('when a ROLES=smtp process sets METRICS_PORT, then /metrics answers there with its own counters only', async () => {
    const port = smtpOnly.server.ports.metrics!;
    assert.ok(port > 0);
    assert.equal(t.server.ports.metrics, undefined, 'off by default');
    const before = await scrape(port);
    const main = await scrape();
    const c = await RawSmtp.connect(smtpOnly.smtpPort);
    await c.hello();
    await c.command('QUIT');
    c.close();
    const after = await scrape(port);
    const connections = (m: Scrape) => valueOf(m, 'mailserver_smtp_connections_total', { listener: 'mx' });
    assert.equal(connections(after) - connections(before), 1);
    assert.equal(connections(await scrape()), connections(main), 'the other server in this process did not count it');
    for (const listener of ['mx', 'submission', 'smtps']) assert.ok(after.get('mailserver_smtp_messages_stored_total')!.samples.some((s) => s.labels.listener === listener));
    assert.ok(after.has('nodejs_eventloop_lag_seconds'));
  });

  it('when METRICS_PORT gets another method or path, then 405 or 404 and nothing else', async () => {
    const port = smtpOnly.server.ports.metrics!;
    const post = await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    assert.equal((await fetch(`http://127.0.0.1:${port}/`)).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${port}/api/users`)).status, 404);
    const head = await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
  });
});

describe('label reduction (pure)', () => {
  it('when a route is recorded on an outbound row, then its label is the route kind, never a tenant-chosen name', () => {
    const table: [string, string][] = [
      ['user-relay', 'user-relay'],
      ['relay', 'relay'],
      ['mx', 'mx'],
      ['local', 'local'],
      ['none', 'none'],
      ['provider:sendgrid:Marketing account', 'provider:sendgrid'],
      ['provider:smtp:alice@corp', 'provider:smtp'],
      ['provider:unknown:x', 'provider'],
      ['something-new', 'other'],
    ];
    for (const [route, label] of table) assert.equal(routeLabel(route), label, route);
  });

  it("when smtp-server writes its own refusal, then the reason comes from a closed list", () => {
    const table: [number, string, string][] = [
      [421, 'mx.test You talk too soon', 'early_talker'],
      [421, 'mx.test Too many connected clients, try again in a moment', 'max_connections'],
      [421, 'Timeout - closing connection', 'idle_timeout'],
      [421, 'Server shutting down', 'shutting_down'],
      [421, 'Error: too many unrecognized commands', 'protocol_error'],
      [530, 'Authentication required', 'auth_required'],
      [538, 'Error: Must issue a STARTTLS command first', 'encryption_required'],
      [552, 'Error: message exceeds fixed maximum message size 1000', 'message_too_large'],
      [452, 'Error: too many recipients', 'too_many_recipients'],
      [500, 'Error: command not recognized', 'protocol_error'],
      [501, 'Error: Bad recipient address syntax', 'protocol_error'],
      [503, 'Error: need MAIL command', 'protocol_error'],
    ];
    for (const [code, text, reason] of table) assert.equal(libraryRejectReason(code, text), reason, `${code} ${text}`);
  });
});

describe('labels and the Grafana dashboard', () => {
  it('when the traffic above has been counted, then no label value is an address or an id', async () => {
    const m = await scrape();
    const uuid = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;
    for (const family of m.values()) {
      for (const s of family.samples) {
        for (const [k, v] of Object.entries(s.labels)) {
          assert.ok(!v.includes('@') && !uuid.test(v), `${s.name} ${k}="${v}"`);
        }
      }
    }
    for (const s of m.get('mailserver_http_request_duration_seconds')!.samples) {
      assert.ok(s.labels.route!.startsWith('/') || ['unmatched', 'static'].includes(s.labels.route!), s.labels.route);
    }
  });

  it('when the dashboard is parsed, then it imports through DS_PROMETHEUS, every expr names only exported metrics, and every mailserver family has a panel', async () => {
    const dashboard = JSON.parse(readFileSync(path.resolve(import.meta.dirname, '../../../docs/grafana-dashboard.json'), 'utf8')) as Dashboard;
    assert.ok(dashboard.schemaVersion >= 36 && dashboard.schemaVersion <= 41);
    assert.ok(dashboard.__inputs.some((i) => i.name === 'DS_PROMETHEUS' && i.type === 'datasource' && i.pluginId === 'prometheus'));
    const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row');
    assert.ok(panels.length >= 10);
    const exprs: string[] = [];
    for (const p of panels) {
      assert.equal(p.datasource?.uid, '${DS_PROMETHEUS}', `panel ${p.title}`);
      for (const target of p.targets ?? []) exprs.push(target.expr);
    }
    const exported = new Set([...(await scrape()).values()].flatMap(sampleNames));
    const named = new Set<string>();
    for (const expr of exprs) {
      const names = metricNames(expr);
      assert.ok(names.length > 0, `no metric in ${expr}`);
      for (const name of names) {
        assert.ok(exported.has(name), `${name} (in ${expr}) is not exported by the server`);
        named.add(name);
      }
    }
    for (const v of dashboard.templating.list) {
      const m = /label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*),/.exec(v.definition ?? '');
      if (m) assert.ok(exported.has(m[1]!), `variable ${v.name} reads ${m[1]}`);
    }
    for (const family of FAMILIES.filter((f) => f.startsWith('mailserver_'))) {
      const fam = (await scrape()).get(family)!;
      assert.ok(sampleNames(fam).some((n) => named.has(n)), `no panel shows ${family}`);
    }
  });
});

interface Dashboard {
  schemaVersion: number;
  __inputs: { name: string; type: string; pluginId: string }[];
  panels: Panel[];
  templating: { list: { name: string; definition?: string }[] };
}
interface Panel {
  type: string;
  title: string;
  datasource?: { uid: string };
  targets?: { expr: string }[];
  panels?: Panel[];
}

/** PromQL words that are not metric names: functions, aggregations, keywords. */
const PROMQL_WORDS = new Set(['sum', 'max', 'min', 'avg', 'count', 'by', 'without', 'rate', 'increase', 'irate', 'histogram_quantile', 'on', 'ignoring', 'and', 'or', 'unless']);

/**
 * Metric names of an expression: every selector `name{...}`. Strict on purpose: after the
 * selectors, `by (...)` groupings, ranges and numbers are removed, any word left that is not a
 * PromQL function or keyword is an unexpected bare metric name and fails the test.
 */
function metricNames(expr: string): string[] {
  const names = [...expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{[^}]*\}/g)].map((m) => m[1]!);
  const rest = expr
    .replace(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{[^}]*\}/g, ' ')
    .replace(/\b(by|without)\s*\([^)]*\)/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b\d+(\.\d+)?\b/g, ' ');
  for (const word of rest.match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? []) {
    assert.ok(PROMQL_WORDS.has(word), `bare word ${word} in ${expr}: name metrics with a selector`);
  }
  return names;
}
