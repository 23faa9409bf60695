/**
 * Certificate hot reload, as an operator meets it: the server runs as its own OS process with
 * TLS_CERT_FILE/TLS_KEY_FILE, the files are replaced the way certbot and our deploy hook do it
 * (written beside the target and renamed over it), and the next STARTTLS or implicit-TLS handshake
 * presents the new certificate while the process (same pid) keeps running. A broken pair keeps
 * the old certificate serving. SIGHUP reloads at once; scripts/certbot-deploy-hook.sh installs a
 * certbot lineage and signals the server. scripts/certbot-issue.sh is checked through --dry-run:
 * it needs Let's Encrypt, which this machine cannot reach.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createTestDatabase, tempDir } from '../helpers/harness.js';
import { ProcessServer, processEnv, ROOT } from '../helpers/process-server.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { selfSignedCertificate } from '../helpers/test-tls.js';

interface Pair {
  cert: string;
  key: string;
  fingerprint: string;
}

async function makePair(cn: string): Promise<Pair> {
  const pems = await selfSignedCertificate(cn);
  return { ...pems, fingerprint: new X509Certificate(pems.cert).fingerprint256 };
}

/** Replaces a file the way certbot's hook does: a new file renamed over the old one. */
function replaceFile(file: string, content: string): void {
  const tmp = `${file}.new`;
  writeFileSync(tmp, content);
  renameSync(tmp, file);
}

async function starttlsFingerprint(port: number): Promise<string> {
  const c = await RawSmtp.connect(port);
  try {
    await c.hello();
    const go = await c.startTls();
    assert.equal(go.code, 220, `STARTTLS answered ${go.code} ${go.text}`);
    return c.peerFingerprint()!;
  } finally {
    c.close();
  }
}

async function implicitFingerprint(port: number): Promise<string> {
  const c = await RawSmtp.connectTls(port);
  try {
    return c.peerFingerprint()!;
  } finally {
    c.close();
  }
}

/** Polls the next STARTTLS until it presents `fingerprint` (or the time is up). */
async function waitForCertificate(port: number, fingerprint: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let seen = '';
  while (Date.now() < deadline) {
    seen = await starttlsFingerprint(port);
    if (seen === fingerprint) return seen;
    await new Promise((r) => setTimeout(r, 100));
  }
  return seen;
}

async function startServer(certFile: string, keyFile: string, watchInterval: string): Promise<ProcessServer> {
  const env = await processEnv(tempDir('tls-reload-'), {
    DATABASE_URL: await createTestDatabase(),
    TLS_CERT_FILE: certFile,
    TLS_KEY_FILE: keyFile,
    TLS_WATCH_INTERVAL: watchInterval,
    LOG_LEVEL: 'info',
  });
  const server = new ProcessServer(env);
  await server.start();
  return server;
}

describe('TLS certificate hot reload', () => {
  let a: Pair, b: Pair, c: Pair, d: Pair;
  before(async () => {
    [a, b, c, d] = await Promise.all([makePair('a.test.local'), makePair('b.test.local'), makePair('c.test.local'), makePair('d.test.local')]);
  });

  describe('when the certificate files are replaced while the server runs', () => {
    const dir = tempDir('tls-files-');
    const certFile = path.join(dir, 'fullchain.pem');
    const keyFile = path.join(dir, 'privkey.pem');
    let server: ProcessServer;
    before(async () => {
      writeFileSync(certFile, a.cert);
      writeFileSync(keyFile, a.key);
      server = await startServer(certFile, keyFile, '200ms');
    });
    after(async () => {
      await server?.stop();
    });

    it('then the next STARTTLS and implicit TLS present the new certificate, in the same process', async () => {
      const submission = Number(server.env.SUBMISSION_PORT);
      const smtps = Number(server.env.SMTPS_PORT);
      assert.equal(await starttlsFingerprint(submission), a.fingerprint, 'the starting certificate');
      assert.equal(await implicitFingerprint(smtps), a.fingerprint);
      const pid = server.pid;

      // a session encrypted before the swap goes on with its certificate
      const open = await RawSmtp.connect(Number(server.env.SMTP_PORT));
      await open.hello();
      await open.startTls();
      assert.equal(open.peerFingerprint(), a.fingerprint);

      replaceFile(keyFile, b.key);
      replaceFile(certFile, b.cert);
      assert.equal(await waitForCertificate(submission, b.fingerprint, 5000), b.fingerprint, 'STARTTLS presents the renewed certificate');
      assert.equal(await implicitFingerprint(smtps), b.fingerprint, 'implicit TLS presents it too');
      assert.equal(await starttlsFingerprint(Number(server.env.SMTP_PORT)), b.fingerprint, 'and the MX port');
      assert.equal(server.pid, pid, 'no restart');

      assert.equal((await open.command('EHLO client.test')).code, 250, 'the session encrypted before the swap still works');
      open.close();
      assert.match(server.output, /"event":"tls.reloaded"/);
    });

    it('when the new certificate does not match the key, then the old one keeps serving until the key arrives', async () => {
      const submission = Number(server.env.SUBMISSION_PORT);
      replaceFile(certFile, c.cert); // the key is still b's
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(await starttlsFingerprint(submission), b.fingerprint, 'a certificate without its key is not used');
      assert.match(server.output, /"event":"tls.reload.failed"/);
      assert.match(server.output, /key values mismatch|do not hold a usable certificate/);

      replaceFile(keyFile, c.key);
      assert.equal(await waitForCertificate(submission, c.fingerprint, 5000), c.fingerprint, 'the pair is used once complete');
    });

    it('when a file is garbage, then the server keeps the current certificate and keeps running', async () => {
      const submission = Number(server.env.SUBMISSION_PORT);
      replaceFile(certFile, 'not a certificate\n');
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(await starttlsFingerprint(submission), c.fingerprint);
      replaceFile(certFile, c.cert);
    });
  });

  describe('when the server polls rarely and gets SIGHUP from the certbot deploy hook', () => {
    const dir = tempDir('tls-hook-');
    const tlsDir = path.join(dir, 'tls');
    const lineage = path.join(dir, 'letsencrypt', 'live', 'mail.test.local');
    let server: ProcessServer;
    before(async () => {
      mkdirSync(tlsDir);
      writeFileSync(path.join(tlsDir, 'fullchain.pem'), a.cert);
      writeFileSync(path.join(tlsDir, 'privkey.pem'), a.key);
      server = await startServer(path.join(tlsDir, 'fullchain.pem'), path.join(tlsDir, 'privkey.pem'), '1h');
    });
    after(async () => {
      await server?.stop();
    });

    function hook(env: Record<string, string>, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
      const r = spawnSync('bash', [path.join(ROOT, 'scripts/certbot-deploy-hook.sh'), ...args], {
        env: { PATH: process.env.PATH, MAILSERVER_HOOK_ENV: '/nonexistent', MAILSERVER_USER: 'root', RELOAD_NGINX: 'no', ...env },
        encoding: 'utf8',
      });
      return { status: r.status, stdout: r.stdout, stderr: r.stderr };
    }

    it('then SIGHUP alone makes the next handshake present the new files', async () => {
      const submission = Number(server.env.SUBMISSION_PORT);
      replaceFile(path.join(tlsDir, 'privkey.pem'), b.key);
      replaceFile(path.join(tlsDir, 'fullchain.pem'), b.cert);
      await new Promise((r) => setTimeout(r, 700));
      assert.equal(await starttlsFingerprint(submission), a.fingerprint, 'with a 1 h poll interval nothing changed yet');
      server.signal('SIGHUP');
      assert.equal(await waitForCertificate(submission, b.fingerprint, 3000), b.fingerprint);
    });

    it('then the deploy hook installs the renewed lineage with safe modes and the server presents it', async () => {
      mkdirSync(lineage, { recursive: true });
      writeFileSync(path.join(lineage, 'fullchain.pem'), d.cert);
      writeFileSync(path.join(lineage, 'privkey.pem'), d.key, { mode: 0o600 });
      const r = hook({ RENEWED_LINEAGE: lineage, MAILSERVER_TLS_DIR: tlsDir, MAILSERVER_RELOAD_CMD: `kill -HUP ${server.pid}` });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /installed .* into /);
      assert.match(r.stdout, /reloaded the mail server/);
      assert.equal(readFileSync(path.join(tlsDir, 'fullchain.pem'), 'utf8'), d.cert);
      assert.equal(statSync(path.join(tlsDir, 'privkey.pem')).mode & 0o777, 0o600, 'the key copy is private');
      assert.equal(await waitForCertificate(Number(server.env.SUBMISSION_PORT), d.fingerprint, 3000), d.fingerprint);
    });

    it('when root runs it for the service user, then the copies belong to that user and the reload runs as that user', () => {
      const userDir = path.join(dir, 'tls-nobody');
      const nobody = spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout.trim();
      const r = hook({
        RENEWED_LINEAGE: lineage,
        MAILSERVER_TLS_DIR: userDir,
        MAILSERVER_USER: 'nobody',
        MAILSERVER_RELOAD_CMD: `echo "$(id -un) $HOME" > ${userDir}/reloaded-by`,
      });
      assert.equal(r.status, 0, r.stderr);
      for (const f of ['fullchain.pem', 'privkey.pem', '.']) assert.equal(String(statSync(path.join(userDir, f)).uid), nobody, `${f} owned by nobody`);
      assert.equal(statSync(userDir).mode & 0o777, 0o750);
      assert.equal(readFileSync(path.join(userDir, 'reloaded-by'), 'utf8').trim(), 'nobody /nonexistent', 'run as the user, with its HOME (where pm2 keeps its daemon)');
    });

    it('when the hook is called wrongly, then it says what is wrong and changes nothing', () => {
      const before = readFileSync(path.join(tlsDir, 'fullchain.pem'), 'utf8');
      const cases: [Record<string, string>, string[], RegExp][] = [
        [{ MAILSERVER_TLS_DIR: tlsDir }, [], /RENEWED_LINEAGE is not set/],
        [{ MAILSERVER_TLS_DIR: tlsDir }, ['--lineage', path.join(dir, 'missing')], /cannot read .*fullchain\.pem/],
        [{ MAILSERVER_TLS_DIR: tlsDir }, ['--bogus'], /unknown argument '--bogus'/],
        [{ MAILSERVER_TLS_DIR: tlsDir, MAILSERVER_USER: 'no-such-user-xyz' }, ['--lineage', lineage], /user 'no-such-user-xyz' does not exist/],
      ];
      for (const [env, args, message] of cases) {
        const r = hook(env, ...args);
        assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, message);
      }
      assert.equal(readFileSync(path.join(tlsDir, 'fullchain.pem'), 'utf8'), before);
    });

    it('when the reload command fails, then the hook still installs and says the poll will pick it up', () => {
      const r = hook({ RENEWED_LINEAGE: lineage, MAILSERVER_TLS_DIR: tlsDir, MAILSERVER_RELOAD_CMD: 'false' });
      assert.equal(r.status, 0);
      assert.match(r.stderr, /'false' failed; the server picks the certificate up within TLS_WATCH_INTERVAL/);
    });
  });

  describe('certbot-issue.sh (Let\'s Encrypt is out of reach here: --dry-run shows what it runs)', () => {
    const script = path.join(ROOT, 'scripts/certbot-issue.sh');
    const run = (...args: string[]): { status: number | null; stdout: string; stderr: string } => {
      const r = spawnSync('bash', [script, ...args], { encoding: 'utf8' });
      return { status: r.status, stdout: r.stdout, stderr: r.stderr };
    };

    it('then it runs certbot with the webroot and our deploy hook', () => {
      const r = run('--domain', 'mail.example.com', '--email', 'admin@example.com', '--staging', '--dry-run');
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^mkdir -p \/var\/www\/letsencrypt$/m);
      assert.match(r.stdout, /certbot certonly --non-interactive --agree-tos --email admin@example\.com --webroot -w \/var\/www\/letsencrypt -d mail\.example\.com --deploy-hook \S+\/scripts\/certbot-deploy-hook\.sh --staging/);
    });

    it('when an argument is missing or malformed, then it exits 2 naming it', () => {
      const cases: [string[], RegExp][] = [
        [['--email', 'a@example.com'], /--domain is required/],
        [['--domain', 'mail.example.com'], /--email is required/],
        [['--domain', 'not a host', '--email', 'a@example.com'], /--domain 'not a host' is not a fully qualified host name/],
        [['--domain', 'mail.example.com', '--email', 'nobody'], /--email 'nobody' is not an email address/],
        [['--domain'], /--domain needs a value/],
        [['--frobnicate'], /unknown argument '--frobnicate'/],
      ];
      for (const [args, message] of cases) {
        const r = run(...args, '--dry-run');
        assert.equal(r.status, 2, args.join(' '));
        assert.match(r.stderr, message);
      }
    });
  });
});
