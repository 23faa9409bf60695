/**
 * The shipped nginx site (nginx/mailserver.conf) in Debian's real nginx in front of the real
 * server, all on 127.0.0.1. The file is rendered only by substituting its ports, certificate and
 * webroot paths, server_name and upstream port (each substitution must match, so a change of the
 * shipped file's shape breaks this test rather than slipping past it); then `nginx -t` must pass
 * and nginx runs as a child process that is always stopped.
 *
 * Through nginx: health and API calls over TLS 1.3 and HTTP/2, weak TLS 1.2 ciphers refused,
 * exactly one HSTS header; port 80 redirects to https keeping the path, except ACME challenges,
 * which come from the webroot; the API sees the client's own address (127.0.0.2) through
 * X-Forwarded-For and the default TRUST_PROXY=loopback; server-sent events arrive within 2 s of
 * an SMTP delivery (no buffering); a 5 MB upload passes and a body over client_max_body_size is
 * refused by nginx itself (declared or chunked) without touching the draft; webmail assets are
 * gzipped; /metrics in any spelling is nginx's own 404. nginx/acme-bootstrap.conf (first
 * issuance) is checked the same way.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import path from 'node:path';
import tls from 'node:tls';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { startTestServer, tempDir, type TestServer } from '../helpers/harness.js';
import { certificateFor, headerValues, ipv6Loopback, openRequest, request, requireNginx, startNginx, substitute, type Certificate, type Nginx, type Reply, type RequestOptions } from '../helpers/nginx.js';
import { freePort, ROOT } from '../helpers/process-server.js';
import { deliverSimple } from '../helpers/smtp-client.js';
import { SseEvents } from '../helpers/sse.js';
import { UNTHROTTLED_ENV, usersApi } from '../helpers/users-api.js';

const NAME = 'mail.nginx.test';
const SHIPPED = path.join(ROOT, 'nginx/mailserver.conf');
const BOOTSTRAP = path.join(ROOT, 'nginx/acme-bootstrap.conf');
const MIB = 1024 * 1024;

interface Ports {
  http: number;
  https: number;
  /** Where the shipped [::] listens went: [::1] on the same ports, or extra 127.0.0.1 ports. */
  v6: { address: string; http: number; https: number };
}

let t: TestServer;
let nginx: Nginx | undefined;
let bootstrap: Nginx | undefined;
let dir: string;
let webroot: string;
let cert: Certificate;
let ports: Ports;
let owner: { token: string };
let alice: { token: string; address: string };

async function pickPorts(): Promise<Ports> {
  const v6 = await ipv6Loopback();
  const http = await freePort();
  const https = await freePort();
  return { http, https, v6: v6 ? { address: '::1', http, https } : { address: '127.0.0.1', http: await freePort(), https: await freePort() } };
}

function listen(address: string, port: number, extra = ''): string {
  return `listen ${address.includes(':') ? `[${address}]` : address}:${port}${extra};`;
}

/** The shipped site with this test's ports, paths and name; nothing else changes. */
function renderSite(shipped: string, apiPort: number): string {
  let s = shipped;
  // the [::] lines first: "listen 80;" is also the end of "listen [::]:80;"
  s = substitute(s, 'listen [::]:80;', listen(ports.v6.address, ports.v6.http));
  s = substitute(s, 'listen 80;', listen('127.0.0.1', ports.http));
  s = substitute(s, 'listen [::]:443 ssl http2;', listen(ports.v6.address, ports.v6.https, ' ssl http2'));
  s = substitute(s, 'listen 443 ssl http2;', listen('127.0.0.1', ports.https, ' ssl http2'));
  s = substitute(s, 'server 127.0.0.1:3000;', `server 127.0.0.1:${apiPort};`);
  s = substitute(s, 'ssl_certificate /etc/letsencrypt/live/mail.example.com/fullchain.pem;', `ssl_certificate ${dir}/fullchain.pem;`);
  s = substitute(s, 'ssl_certificate_key /etc/letsencrypt/live/mail.example.com/privkey.pem;', `ssl_certificate_key ${dir}/privkey.pem;`);
  s = substitute(s, 'root /var/www/letsencrypt;', `root ${webroot};`);
  s = substitute(s, 'server_name mail.example.com;', `server_name ${NAME};`, 2);
  assertOnlyCommentsMention(s, ['mail.example.com', '/etc/letsencrypt', ':3000', 'listen 80', 'listen 443', '/var/www']);
  return s;
}

/** A placeholder left in a directive would make the test exercise something else than shipped. */
function assertOnlyCommentsMention(rendered: string, words: string[]): void {
  for (const line of rendered.split('\n')) {
    if (line.trim().startsWith('#')) continue;
    for (const w of words) assert.ok(!line.includes(w), `unrendered "${w}" in: ${line.trim()}`);
  }
}

const https = (opts: Omit<RequestOptions, 'host' | 'ca'> & { host?: string }): Promise<Reply> => request(ports.https, { host: NAME, ca: cert.cert, ...opts });
const plain = (opts: Omit<RequestOptions, 'host'> & { host?: string }, port = ports.http): Promise<Reply> => request(port, { host: NAME, ...opts });
const json = (r: Reply): Record<string, unknown> => JSON.parse(r.body.toString()) as Record<string, unknown>;
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

before(async () => {
  requireNginx();
  t = await startTestServer(UNTHROTTLED_ENV);
  const h = usersApi(t);
  const tenant = await h.newTenant('nginx');
  owner = { token: tenant.token };
  const a = await h.userWithToken(tenant, 'member');
  alice = { token: a.token, address: a.user.email };

  dir = tempDir('nginx-test-');
  dirs.push(dir);
  webroot = path.join(dir, 'webroot');
  mkdirSync(path.join(webroot, '.well-known/acme-challenge'), { recursive: true });
  cert = await certificateFor(NAME);
  writeFileSync(path.join(dir, 'fullchain.pem'), cert.cert);
  writeFileSync(path.join(dir, 'privkey.pem'), cert.key, { mode: 0o600 });
  ports = await pickPorts();
  const site = renderSite(readFileSync(SHIPPED, 'utf8'), t.apiPort);
  nginx = await startNginx(dir, site, [
    { host: '127.0.0.1', port: ports.http },
    { host: '127.0.0.1', port: ports.https },
    { host: ports.v6.address, port: ports.v6.http },
  ]);
});

const dirs: string[] = [];

after(async () => {
  await nginx?.stop();
  await bootstrap?.stop();
  await t?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('nginx in front of the server', () => {
  it('when the shipped site is checked, then nginx -t passes without warnings', (c) => {
    assert.match(nginx!.testOutput, /syntax is ok/);
    assert.match(nginx!.testOutput, /test is successful/);
    // newer nginx (>= 1.25.1) deprecates "listen ... http2"; the file says what to write there
    const warnings = nginx!.testOutput.split('\n').filter((l) => /\[(warn|emerg|alert|crit|error)\]/.test(l) && !/"listen \.\.\. http2" directive is deprecated/.test(l));
    assert.deepEqual(warnings, []);
    if (ports.v6.address !== '::1') c.diagnostic('no IPv6 loopback here: the shipped [::] listens were rendered on extra 127.0.0.1 ports');
  });

  it('when /healthz and an API call go through https, then the app answers, with one HSTS header and no version', async () => {
    const health = await https({ path: '/healthz' });
    assert.equal(health.status, 200);
    assert.deepEqual(json(health), { status: 'ok' });
    assert.equal(health.headers.server, 'nginx');
    const hsts = headerValues(health, 'strict-transport-security');
    assert.equal(hsts.length, 1, `one HSTS header, got ${JSON.stringify(hsts)}`);
    assert.ok(Number(/max-age=(\d+)/.exec(hsts[0]!)?.[1]) >= 365 * 24 * 3600, hsts[0]);

    const folders = await https({ path: '/api/webmail/mailboxes', headers: bearer(alice.token) });
    assert.equal(folders.status, 200, folders.body.toString());
    assert.ok((json(folders).data as { name: string }[]).some((f) => f.name === 'INBOX'));
    const anonymous = await https({ path: '/api/webmail/mailboxes' });
    assert.equal(anonymous.status, 401);
    assert.equal(json(anonymous).code, 'unauthorized');
  });

  it('when a client connects with TLS, then 1.3 and HTTP/2 are offered, and TLS 1.2 only with strong ciphers', async () => {
    const h2 = http2.connect(`https://127.0.0.1:${ports.https}`, { ca: cert.cert, servername: NAME });
    try {
      const reply = await new Promise<{ status: number; body: string; alpn: string | undefined; protocol: string | null }>((resolve, reject) => {
        const stream = h2.request({ ':path': '/healthz', ':authority': NAME });
        let body = '';
        let status = 0;
        stream.on('response', (headers) => (status = Number(headers[':status'])));
        stream.on('data', (d: Buffer) => (body += d.toString()));
        stream.on('end', () => resolve({ status, body, alpn: h2.alpnProtocol, protocol: (h2.socket as tls.TLSSocket).getProtocol() }));
        stream.on('error', reject);
      });
      assert.deepEqual(reply, { status: 200, body: '{"status":"ok"}', alpn: 'h2', protocol: 'TLSv1.3' });
    } finally {
      h2.close();
    }

    assert.equal(await handshake({ maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' }), 'TLSv1.2');
    // RSA key exchange (no forward secrecy) and CBC suites: the server has none of them
    for (const ciphers of ['AES128-SHA', 'AES256-GCM-SHA384', 'ECDHE-RSA-AES128-SHA']) {
      await assert.rejects(handshake({ maxVersion: 'TLSv1.2', ciphers }), /handshake failure/i, `${ciphers} must be refused`);
    }
  });

  it('when a plain HTTP request comes, then it is redirected to https with the same host, path and query', async () => {
    for (const method of ['GET', 'POST']) {
      const r = await plain({ method, path: '/api/webmail/messages?folder=INBOX&q=a%20b' });
      assert.equal(r.status, 301, method);
      assert.equal(r.headers.location, `https://${NAME}/api/webmail/messages?folder=INBOX&q=a%20b`);
    }
    const root = await plain({ path: '/' });
    assert.equal(root.headers.location, `https://${NAME}/`);
    const v6 = await plain({ path: '/x', address: ports.v6.address }, ports.v6.http);
    assert.equal(v6.status, 301);
    assert.equal(v6.headers.location, `https://${NAME}/x`);
  });

  it('when an ACME challenge file is in the webroot, then it is served over plain HTTP; a missing one is 404', async () => {
    const token = 'Zk3dQ1-challenge_token';
    writeFileSync(path.join(webroot, '.well-known/acme-challenge', token), `${token}.account-thumbprint`);
    const r = await plain({ path: `/.well-known/acme-challenge/${token}` });
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), `${token}.account-thumbprint`);
    assert.match(String(r.headers['content-type']), /^text\/plain/);
    const missing = await plain({ path: '/.well-known/acme-challenge/nope' });
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.location, undefined);
  });

  it('when a client logs in through nginx from 127.0.0.2, then the audit log records 127.0.0.2', async () => {
    const login = await https({
      method: 'POST',
      path: '/api/auth/login',
      localAddress: '127.0.0.2',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: alice.address, password: 'correct horse battery' }),
    });
    assert.equal(login.status, 200, login.body.toString());
    const logs = await https({ path: '/api/audit-logs?limit=100', headers: bearer(owner.token) });
    assert.equal(logs.status, 200, logs.body.toString());
    const logins = (json(logs).data as { action: string; actor_email: string; ip: string }[]).filter((e) => e.action === 'auth.login' && e.actor_email === alice.address);
    // the earlier login (usersApi, straight to the app) was from 127.0.0.1; this one is the newest
    assert.equal(logins[0]?.ip, '127.0.0.2', JSON.stringify(logins));
  });

  it('when mail is delivered over SMTP, then the event stream through nginx hears of it within 2 s', async () => {
    const stream = await openEvents(alice.token);
    try {
      assert.equal(stream.status, 200);
      assert.match(stream.headers['content-type'] ?? '', /^text\/event-stream/);
      assert.equal(stream.headers['content-encoding'], undefined);
      await stream.next('ready');
      const start = Date.now();
      await deliver(alice.address, 'through nginx');
      const event = await stream.next('mailbox');
      assert.equal((event.data as { reason: string }).reason, 'new');
      assert.ok(Date.now() - start < 2000, `${Date.now() - start} ms`);
    } finally {
      stream.close();
    }
  });

  it('when a 5 MB file is uploaded to a draft, then it passes; a body over client_max_body_size is refused by nginx and changes nothing', async () => {
    const draft = await https({
      method: 'POST',
      path: '/api/webmail/messages',
      headers: { ...bearer(alice.token), 'content-type': 'application/json' },
      body: JSON.stringify({ to: 'frank@remote.invalid', subject: 'Big one', text: 'see attached', draft: true }),
    });
    assert.equal(draft.status, 201, draft.body.toString());
    const id = json(draft).stored_message_id as string;

    // declared too large: refused from the headers, before any of the body is read
    const declared = await refusedUpload(id, { 'content-length': String(27 * MIB) });
    assert.equal(declared.status, 413);
    assert.match(declared.body, /<center>nginx<\/center>/);
    // no length given (chunked): refused once 26 MiB have come
    const chunked = await refusedUpload(id, { 'transfer-encoding': 'chunked' }, 27 * MIB);
    assert.equal(chunked.status, 413);
    assert.match(chunked.body, /<center>nginx<\/center>/);
    const unchanged = await https({ path: `/api/webmail/messages/${id}`, headers: bearer(alice.token) });
    assert.equal(unchanged.status, 200);
    assert.deepEqual(json(unchanged).attachments, []);

    const file = Buffer.alloc(5 * MIB, 'abcdefghij');
    const form = new FormData();
    form.append('attachments', new Blob([file]), 'five.bin');
    const encoded = new Response(form);
    const body = Buffer.from(await encoded.arrayBuffer());
    const up = await https({ method: 'POST', path: `/api/webmail/messages/${id}/attachments`, headers: { ...bearer(alice.token), 'content-type': encoded.headers.get('content-type')! }, body });
    assert.equal(up.status, 201, up.body.toString());
    assert.deepEqual((json(up).attachments as { filename: string; size: number }[]).map((a) => [a.filename, a.size]), [['five.bin', file.length]]);
  });

  it('when a webmail asset is asked for with gzip, then it comes compressed, with the app cache headers kept', async () => {
    const assets = readdirSync(path.join(ROOT, 'dist/webmail/assets'));
    const js = assets.find((f) => f.endsWith('.js'));
    assert.ok(js, 'dist/webmail/assets has no .js: build the webmail (npm run build)');
    const original = readFileSync(path.join(ROOT, 'dist/webmail/assets', js));
    const gz = await https({ path: `/assets/${js}`, headers: { 'accept-encoding': 'gzip' } });
    assert.equal(gz.status, 200);
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.match(String(gz.headers.vary), /Accept-Encoding/i);
    assert.match(String(gz.headers['cache-control']), /immutable/);
    assert.ok(gunzipSync(gz.body).equals(original));
    assert.ok(gz.body.length < original.length / 2);
    const identity = await https({ path: `/assets/${js}` });
    assert.equal(identity.headers['content-encoding'], undefined);
    assert.ok(identity.body.equals(original));
  });

  it('when /metrics is asked for through nginx in any spelling, then nginx answers 404 itself', async () => {
    // what is hidden is real: the app serves it (in more than one spelling) to local scrapers
    for (const p of ['/metrics', '/METRICS']) {
      const direct = await request(t.apiPort, { path: p, host: '127.0.0.1' });
      assert.equal(direct.status, 200, p);
      assert.match(direct.body.toString(), /^# HELP /m);
    }
    for (const p of ['/metrics', '/metrics/', '/METRICS', '/Metrics?x=1', '/%6Detrics', '//metrics', '/api/../metrics']) {
      const r = await https({ path: p });
      assert.equal(r.status, 404, p);
      assert.match(r.body.toString(), /<center>nginx<\/center>/, `${p} must not reach the app`);
    }
  });
});

describe('nginx/acme-bootstrap.conf (first issuance)', () => {
  it('when only the bootstrap site runs, then challenges are served and everything else is 404', async () => {
    const bdir = tempDir('nginx-bootstrap-');
    dirs.push(bdir);
    const broot = path.join(bdir, 'webroot');
    mkdirSync(path.join(broot, '.well-known/acme-challenge'), { recursive: true });
    writeFileSync(path.join(broot, '.well-known/acme-challenge/first'), 'first.thumb');
    const port = await freePort();
    const v6 = ports.v6.address === '::1' ? { address: '::1', port } : { address: '127.0.0.1', port: await freePort() };
    let site = readFileSync(BOOTSTRAP, 'utf8');
    site = substitute(site, 'listen [::]:80;', listen(v6.address, v6.port));
    site = substitute(site, 'listen 80;', listen('127.0.0.1', port));
    site = substitute(site, 'root /var/www/letsencrypt;', `root ${broot};`);
    site = substitute(site, 'server_name mail.example.com;', `server_name ${NAME};`);
    assertOnlyCommentsMention(site, ['mail.example.com', 'listen 80', '/var/www']);
    bootstrap = await startNginx(bdir, site, [{ host: '127.0.0.1', port }]);
    const r = await plain({ path: '/.well-known/acme-challenge/first' }, port);
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'first.thumb');
    for (const p of ['/', '/api/auth/login', '/.well-known/acme-challenge/missing']) {
      assert.equal((await plain({ path: p }, port)).status, 404, p);
    }
    await bootstrap.stop();
  });
});

/** The negotiated protocol of a TLS handshake with these client settings (rejects when refused). */
function handshake(options: tls.ConnectionOptions): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: ports.https, servername: NAME, ca: cert.cert, ...options });
    socket.once('secureConnect', () => {
      const protocol = socket.getProtocol();
      socket.destroy();
      resolve(protocol);
    });
    socket.once('error', reject);
  });
}

/** Uploads (a declared or streamed) too-large body to a draft and returns nginx's answer. */
function refusedUpload(id: string, headers: Record<string, string>, stream = 0): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // a refusal is immediate; silence means nginx is waiting for the rest of the body to pass it on
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error('no answer within 5 s: nginx did not refuse the body'));
    }, 5000);
    const req = openRequest(
      ports.https,
      { method: 'POST', path: `/api/webmail/messages/${id}/attachments`, host: NAME, ca: cert.cert, headers: { ...bearer(alice.token), 'content-type': 'multipart/form-data; boundary=x', ...headers } },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => {
          clearTimeout(timer);
          req.destroy();
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    // nginx may answer and close while the body is still going out: that is the point
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') reject(err);
    });
    const chunk = Buffer.alloc(MIB, 'x');
    const write = (left: number): void => {
      if (left <= 0 || req.destroyed) return;
      if (req.write(chunk)) setImmediate(() => write(left - chunk.length));
      else req.once('drain', () => write(left - chunk.length));
    };
    if (stream > 0) {
      write(stream);
    } else {
      req.write('--x\r\n');
    }
  });
}

interface EventStream {
  status: number;
  headers: Record<string, string | undefined>;
  next(type: string, ms?: number): Promise<{ type: string; data: unknown }>;
  close(): void;
}

/** GET /api/webmail/events through nginx, parsed as it arrives. */
function openEvents(token: string): Promise<EventStream> {
  return new Promise((resolve, reject) => {
    const events = new SseEvents();
    // a buffering proxy holds back even the response head until its buffer fills
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error('no response head within 2 s: the stream is buffered'));
    }, 2000);
    const req = openRequest(ports.https, { path: '/api/webmail/events', host: NAME, ca: cert.cert, headers: { ...bearer(token), accept: 'text/event-stream', 'accept-encoding': 'gzip' } }, (res) => {
      clearTimeout(timer);
      res.on('data', (d: Buffer) => events.feed(d.toString()));
      res.on('error', () => undefined);
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers as Record<string, string | undefined>,
        next: (type, ms) => events.next(type, ms),
        close: () => req.destroy(),
      });
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ECONNRESET') reject(err);
    });
    req.end();
  });
}

function deliver(to: string, subject: string): Promise<void> {
  return deliverSimple(t.smtpPort, to, subject);
}
