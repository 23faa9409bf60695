/**
 * The operator's path from the README, with real tools: the server as its own process on the
 * embedded PostgreSQL, the admin CLI creating a tenant, domain and user while it runs, `swaks`
 * (an independent SMTP client from Debian) delivering to it, and the CLI listing and showing the
 * message. Also the CLI's errors: one clear line and a non-zero exit.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { tempDir } from '../helpers/harness.js';
import { ProcessServer, processEnv } from '../helpers/process-server.js';

describe('operator flow: CLI + swaks against the running server', () => {
  const dataDir = tempDir('mailserver-operator-');
  let server: ProcessServer;

  before(async () => {
    server = new ProcessServer(await processEnv(dataDir));
    await server.start();
  });

  after(async () => {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('when an operator creates a user with the CLI, then swaks delivers to it and list-messages/show-message show the message', () => {
    assert.equal(server.admin('create-tenant', '--name', 'Acme').status, 0);
    const domain = server.admin('add-domain', '--tenant', 'Acme', '--domain', 'acme.test');
    assert.equal(domain.status, 0, domain.stderr);
    assert.match(domain.stdout, /added domain acme\.test to Acme/);
    const user = server.admin('create-user', '--email', 'alice@acme.test', '--password', 'correct horse', '--quota-mb', '50');
    assert.equal(user.status, 0, user.stderr);
    assert.match(user.stdout, /mailbox alice@acme\.test, quota 50 MB, folders INBOX Sent Drafts Trash Junk/);

    const swaks = spawnSync(
      'swaks',
      ['--server', `127.0.0.1:${server.env.SMTP_PORT}`, '--to', 'alice@acme.test', '--from', 'bob@example.org', '--header', 'Subject: hello from swaks'],
      { encoding: 'utf8', timeout: 30_000 },
    );
    assert.equal(swaks.status, 0, swaks.stdout + swaks.stderr);
    assert.match(swaks.stdout, /<- {2}250 2\.0\.0 Ok: stored as /);

    const list = server.admin('list-messages', '--mailbox', 'alice@acme.test');
    assert.equal(list.status, 0, list.stderr);
    const line = list.stdout.split('\n').find((l) => l.includes('hello from swaks'));
    assert.ok(line, list.stdout);
    assert.match(line, /bob@example\.org/);

    const id = line.split(/\s+/)[0]!;
    const show = server.admin('show-message', id);
    assert.equal(show.status, 0, show.stderr);
    assert.match(show.stdout, /subject: +hello from swaks/);
    const raw = server.admin('show-message', id, '--raw');
    assert.match(raw.stdout, /^Received: from [^\r\n]+\r\n\tby mx\.test\.local with ESMTP id /);
  });

  const errors: [string, string[], number, RegExp][] = [
    ['an unknown command', ['frobnicate'], 2, /error: unknown command "frobnicate"/],
    ['a missing required option', ['create-tenant'], 2, /error: --name is required/],
    ['an unknown option', ['create-tenant', '--nmae', 'x'], 2, /error: .*--nmae/],
    ['a bad address', ['create-user', '--email', 'not-an-address', '--password', 'password-123'], 1, /error: "not-an-address" is not a valid email address/],
    ['a domain nobody has', ['create-user', '--email', 'x@nowhere.test', '--password', 'password-123'], 1, /error: no tenant has the domain nowhere\.test/],
    ['a short password', ['create-user', '--email', 'y@acme.test', '--password', 'short'], 1, /error: password must be at least 8 characters/],
    ['a password over 72 bytes', ['create-user', '--email', 'y@acme.test', '--password', 'p'.repeat(73)], 1, /error: password must be at most 72 bytes/],
    ['a bad role', ['create-user', '--email', 'y@acme.test', '--password', 'password-123', '--role', 'root'], 2, /error: --role must be owner, admin or member/],
    ['a duplicate tenant', ['create-tenant', '--name', 'Acme'], 1, /error: a tenant named "Acme" already exists/],
    ['a duplicate domain', ['add-domain', '--tenant', 'Acme', '--domain', 'acme.test'], 1, /error: domain acme\.test is already added/],
    ['an unknown tenant', ['add-domain', '--tenant', 'Nobody', '--domain', 'x.test'], 1, /error: no tenant named "Nobody"/],
    ['a bad domain name', ['add-domain', '--tenant', 'Acme', '--domain', 'not a domain'], 1, /error: "not a domain" is not a valid domain name/],
    ['an unknown mailbox', ['list-messages', '--mailbox', 'ghost@acme.test'], 1, /error: no mailbox ghost@acme\.test/],
    ['an unknown message id', ['show-message', 'nope'], 1, /error: no message nope/],
  ];
  for (const [name, args, code, message] of errors) {
    it(`when the CLI gets ${name}, then it prints one clear error line and exits ${code}`, () => {
      const r = server.admin(...args);
      assert.equal(r.status, code, `${r.stdout}${r.stderr}`);
      assert.match(r.stderr, message);
      assert.ok(!/\n\s+at /.test(r.stderr), `no stack trace: ${r.stderr}`);
    });
  }

  it('when a duplicate user is created, then nothing changes', async () => {
    const r = server.admin('create-user', '--email', 'alice@acme.test', '--password', 'password-123');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /error: a user with the address alice@acme\.test already exists/);
    const db = await server.db();
    try {
      const n = await db.query<{ n: string }>(`SELECT count(*) AS n FROM mailboxes WHERE address = 'alice@acme.test'`);
      assert.equal(Number(n.rows[0]!.n), 1);
    } finally {
      await db.end();
    }
  });
});
