#!/usr/bin/env node
/**
 * bench/api: REST API latency and throughput on the embedded database (issue [2/6] "Measure").
 * Starts our server (same helper as bench/smtp-ingest), signs up a tenant, creates domains and
 * users through the API, then drives each scenario with N concurrent keep-alive clients for a
 * fixed time and prints requests/s and p50/p99 latency. No pass/fail.
 *
 *   node bench/api.mjs [--clients 50] [--seconds 10] [--users 50] [--domains 20] [--no-build]
 *
 * Login is dominated by bcrypt (cost 12, deliberately slow): its rate is bounded by CPU cores.
 * The API rate limiter is raised for the run so it measures the server, not the limit.
 */
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { machineInfo, startOurServer } from './bench-support.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: {
    clients: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '10' },
    users: { type: 'string', default: '50' },
    domains: { type: 'string', default: '20' },
    'no-build': { type: 'boolean', default: false },
  },
});
const CLIENTS = Number(opts.clients);
const SECONDS = Number(opts.seconds);
const log = (line) => process.stderr.write(`${line}\n`);

const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
function request(port, method, urlPath, { body, token } = {}) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      { host: '127.0.0.1', port, method, path: urlPath, agent, headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) } },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode, body: text ? JSON.parse(text) : null });
        });
      },
    );
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function drive(name, seconds, make) {
  const latencies = [];
  let errors = 0;
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (performance.now() < deadline) {
        const started = performance.now();
        const res = await make();
        const ms = performance.now() - started;
        if (res.status >= 200 && res.status < 300) latencies.push(ms);
        else errors++;
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return { name, requests: latencies.length, errors, rps: latencies.length / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

if (!opts['no-build']) execFileSync('npm', ['run', '-s', 'build'], { cwd: root, stdio: 'inherit' });
const server = await startOurServer({ root, serverEnv: { API_RATE_LIMIT_PER_MINUTE: '100000000', LOGIN_MAX_FAILURES_PER_IP: '100000' }, log });
const port = server.apiPort;
try {
  const email = 'owner@bench-api.test';
  const signup = await request(port, 'POST', '/api/auth/signup', { body: { company_name: 'Bench API', email, password: 'benchpass123' } });
  if (signup.status !== 201) throw new Error(`signup failed: ${JSON.stringify(signup.body)}`);
  const token = signup.body.access_token;
  log(`creating ${opts.domains} domains and ${opts.users} users...`);
  for (let i = 0; i < Number(opts.domains); i++) {
    const r = await request(port, 'POST', '/api/domains', { token, body: { name: `d${i}.bench-api.test` } });
    if (r.status !== 201) throw new Error(`create domain failed: ${r.status} ${JSON.stringify(r.body)}`);
  }
  for (let i = 0; i < Number(opts.users); i++) {
    const r = await request(port, 'POST', '/api/users', { token, body: { email: `user${i}@d${i % Number(opts.domains)}.bench-api.test`, password: 'benchpass123' } });
    if (r.status !== 201) throw new Error(`create user failed: ${r.status} ${JSON.stringify(r.body)}`);
  }
  const results = [];
  results.push(await drive('POST /api/auth/login', SECONDS, () => request(port, 'POST', '/api/auth/login', { body: { email, password: 'benchpass123' } })));
  results.push(await drive('GET /api/users?limit=50', SECONDS, () => request(port, 'GET', '/api/users?limit=50', { token })));
  results.push(await drive('GET /api/domains?limit=50', SECONDS, () => request(port, 'GET', '/api/domains?limit=50', { token })));
  results.push(await drive('GET /api/auth/me', SECONDS, () => request(port, 'GET', '/api/auth/me', { token })));

  const m = machineInfo();
  console.log(`\nAPI benchmark, ${new Date().toISOString()}, ${CLIENTS} concurrent keep-alive clients, ${SECONDS} s per scenario`);
  console.log(`machine: ${m.nproc} CPUs (${m.cpu}), ${m.memGiB} GiB, node ${m.node}; server on the embedded PostgreSQL; ${opts.users} users, ${opts.domains} domains\n`);
  console.log('| scenario | requests | req/s | p50 ms | p99 ms | errors |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const r of results) console.log(`| ${r.name} | ${r.requests} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.errors} |`);
  console.log(`\nSummary: ${results.map((r) => `${r.name} ${r.rps.toFixed(0)} req/s (p99 ${r.p99.toFixed(0)} ms)`).join('; ')}.`);
} finally {
  agent.destroy();
  await server.stop();
}
