/**
 * SMTP submission against the real server: the three listeners (SUBMISSION_PORT with STARTTLS,
 * SMTPS_PORT with implicit TLS, AUTH on SMTP_PORT after STARTTLS), the AUTH matrix (no TLS,
 * wrong password, lockout shared with the API, authzid, suspended), the sender-ownership matrix
 * (member, admin, unverified domain, two From: fields), per-user send limits, and what a
 * submitted message becomes: a Sent copy, one outbound row per recipient, Bcc removed, Date and
 * Message-ID added. Every refusal is checked to leave nothing behind.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { readAll } from '../../src/blobs/blob-store.js';
import { markVerified, seedMailbox, startTestServer, type TestServer } from '../helpers/harness.js';
import { RawSmtp, simpleMessage } from '../helpers/smtp-client.js';
import { call } from '../helpers/http.js';

const PASSWORD = 'password-123';

let t: TestServer;

before(async () => {
  t = await startTestServer({ LOGIN_MAX_FAILURES: '3', LOGIN_MAX_FAILURES_PER_IP: '1000', SEND_LIMIT_PER_HOUR: '3' });
  await seedMailbox(t.services, 'alice@send.test');
  await seedMailbox(t.services, 'bob@send.test');
  await seedMailbox(t.services, 'carol@pending.test');
  await markVerified(t.services, 'send.test');
  // an admin of send.test's tenant
  const tenant = await t.services.db.selectFrom('domains').select('tenant_id').where('name', '=', 'send.test').executeTakeFirstOrThrow();
  await t.services.accounts.createUser({ email: 'boss@send.test', password: PASSWORD, role: 'admin', tenantId: tenant.tenant_id });
  await t.services.accounts.createUser({ email: 'limited@send.test', password: PASSWORD, tenantId: tenant.tenant_id });
});

after(async () => {
  await t.stop();
});

async function rowCounts(): Promise<{ submissions: number; outbound: number; messages: number }> {
  const count = async (table: 'submissions' | 'outbound' | 'messages'): Promise<number> =>
    Number((await t.services.db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
  return { submissions: await count('submissions'), outbound: await count('outbound'), messages: await count('messages') };
}

/** A session on the submission port, through STARTTLS and AUTH PLAIN. */
async function loggedIn(user: string, port = t.submissionPort): Promise<RawSmtp> {
  const c = await RawSmtp.connect(port);
  await c.hello();
  assert.equal((await c.startTls()).code, 220);
  await c.command('EHLO client.test');
  const auth = await c.authPlain(user, PASSWORD);
  assert.equal(auth.code, 235, auth.text);
  return c;
}

describe('submission listeners and AUTH', () => {
  it('the submission port offers STARTTLS, and AUTH only after it', async () => {
    const c = await RawSmtp.connect(t.submissionPort);
    const ehlo = await c.hello();
    assert.match(ehlo.text, /STARTTLS/);
    assert.doesNotMatch(ehlo.text, /AUTH/);
    assert.match((await c.authPlain('alice@send.test', PASSWORD)).text, /^538 5\.7\.0 /);
    assert.match((await c.command('MAIL FROM:<alice@send.test>')).text, /^530 5\.7\.0 /);
    await c.startTls();
    const secured = await c.command('EHLO client.test');
    assert.match(secured.text, /AUTH PLAIN LOGIN/);
    c.close();
  });

  it('SMTPS is TLS from the first byte and requires AUTH', async () => {
    const c = await RawSmtp.connectTls(t.smtpsPort);
    const ehlo = await c.hello();
    assert.match(ehlo.text, /AUTH PLAIN LOGIN/);
    assert.match((await c.command('MAIL FROM:<alice@send.test>')).text, /^530 5\.7\.0 /);
    assert.equal((await c.authLogin('alice@send.test', PASSWORD)).code, 235);
    c.close();
  });

  it('the MX port offers AUTH after STARTTLS, and without AUTH stays an MX', async () => {
    const c = await RawSmtp.connect(t.smtpPort);
    assert.doesNotMatch((await c.hello()).text, /AUTH/);
    assert.match((await c.authPlain('alice@send.test', PASSWORD)).text, /^538 5\.7\.0 /);
    assert.match((await c.command('MAIL FROM:<x@elsewhere.test>')).text, /^250/);
    assert.match((await c.command('RCPT TO:<someone@elsewhere.test>')).text, /^550 5\.7\.1 /);
    await c.command('RSET');
    await c.startTls();
    assert.match((await c.command('EHLO client.test')).text, /AUTH PLAIN LOGIN/);
    assert.equal((await c.authPlain('alice@send.test', PASSWORD)).code, 235);
    assert.match((await c.command('MAIL FROM:<alice@send.test>')).text, /^250/);
    assert.match((await c.command('RCPT TO:<someone@elsewhere.test>')).text, /^250/);
    c.close();
  });

  it('a wrong password is 535 5.7.8; an authzid other than the login is refused', async () => {
    const c = await RawSmtp.connect(t.submissionPort);
    await c.hello();
    await c.startTls();
    await c.command('EHLO client.test');
    assert.match((await c.authPlain('bob@send.test', 'wrong-password')).text, /^535 5\.7\.8 /);
    assert.match((await c.authPlain('alice@send.test', PASSWORD, 'bob@send.test')).text, /^535 5\.7\.8 authorization identity/);
    // an authzid equal to the login is fine
    assert.equal((await c.authPlain('alice@send.test', PASSWORD, 'alice@send.test')).code, 235);
    c.close();
  });

  it('repeated failures lock the account with 454 4.7.0, for the API too', async () => {
    const email = 'limited@send.test';
    const c = await RawSmtp.connect(t.submissionPort);
    await c.hello();
    await c.startTls();
    await c.command('EHLO client.test');
    assert.match((await c.authPlain(email, 'nope-1')).text, /^535 /);
    assert.match((await c.authPlain(email, 'nope-2')).text, /^535 /);
    assert.match((await c.authPlain(email, 'nope-3')).text, /^535 /);
    // LOGIN_MAX_FAILURES=3 reached: locked
    assert.match((await c.authPlain(email, PASSWORD)).text, /^454 4\.7\.0 /, 'even the right password while locked');
    c.close();
    const api = await call(t.apiPort, 'POST', '/api/auth/login', { body: { email, password: PASSWORD } });
    assert.equal(api.status, 429);
  });

  it('a suspended user cannot log in', async () => {
    const user = await t.services.accounts.createUser({ email: 'sleepy@send.test', password: PASSWORD, tenantId: (await tenantOf('send.test')) });
    await t.services.db.updateTable('users').set({ status: 'suspended' }).where('id', '=', user.user.id).execute();
    const c = await RawSmtp.connect(t.submissionPort);
    await c.hello();
    await c.startTls();
    await c.command('EHLO client.test');
    assert.match((await c.authPlain('sleepy@send.test', PASSWORD)).text, /^535 5\.7\.8 this account is suspended/);
    c.close();
  });
});

async function tenantOf(domain: string): Promise<string> {
  return (await t.services.db.selectFrom('domains').select('tenant_id').where('name', '=', domain).executeTakeFirstOrThrow()).tenant_id;
}

describe('who may send as whom', () => {
  it('a member may send as their own address (and +detail) and no other', async () => {
    const c = await loggedIn('alice@send.test');
    assert.match((await c.command('MAIL FROM:<alice@send.test>')).text, /^250/);
    await c.command('RSET');
    assert.match((await c.command('MAIL FROM:<alice+news@send.test>')).text, /^250/);
    await c.command('RSET');
    assert.match((await c.command('MAIL FROM:<bob@send.test>')).text, /^553 5\.7\.1 you may not send as <bob@send\.test>; you may send as <alice@send\.test>/);
    assert.match((await c.command('MAIL FROM:<ceo@other.test>')).text, /^553 5\.7\.1 <ceo@other\.test> is not an address of your organisation/);
    assert.match((await c.command('MAIL FROM:<>')).text, /^553 5\.7\.1 /);
    c.close();
  });

  it('an admin may send as any address of the tenant’s verified domains', async () => {
    const c = await loggedIn('boss@send.test');
    assert.match((await c.command('MAIL FROM:<noreply@send.test>')).text, /^250/);
    c.close();
  });

  it('an unverified domain cannot send', async () => {
    const c = await loggedIn('carol@pending.test');
    assert.match((await c.command('MAIL FROM:<carol@pending.test>')).text, /^553 5\.7\.1 the domain pending\.test is not verified yet/);
    c.close();
  });

  it('the From: header is checked too: another address, two From: fields, none', async () => {
    const before = await rowCounts();
    const cases: [string, RegExp][] = [
      [simpleMessage({ from: 'bob@send.test', to: 'x@remote.test' }), /^553 5\.7\.1 you may not send as <bob@send\.test>/],
      [simpleMessage({ from: 'alice@send.test', to: 'x@remote.test', extraHeaders: ['From: bob@send.test'] }), /^550 5\.6\.0 the message has 2 From: header fields/],
      ['To: x@remote.test\r\nSubject: no from\r\n\r\nbody\r\n', /^550 5\.6\.0 the message has no From: header field/],
      [simpleMessage({ from: 'alice@send.test, bob@send.test', to: 'x@remote.test' }), /^550 5\.6\.0 the From: header field must hold exactly one address/],
    ];
    for (const [message, expected] of cases) {
      const c = await loggedIn('alice@send.test');
      assert.match((await c.command('MAIL FROM:<alice@send.test>')).text, /^250/);
      assert.match((await c.command('RCPT TO:<x@remote.test>')).text, /^250/);
      assert.match((await c.data(message)).text, expected);
      c.close();
    }
    assert.deepEqual(await rowCounts(), before, 'nothing stored or queued');
  });

  it('recipients: any remote address; an unknown local one is 550 5.1.1 at once; syntax is checked', async () => {
    const c = await loggedIn('alice@send.test');
    await c.command('MAIL FROM:<alice@send.test>');
    assert.match((await c.command('RCPT TO:<anyone@remote.test>')).text, /^250/);
    assert.match((await c.command('RCPT TO:<nobody@send.test>')).text, /^550 5\.1\.1 /);
    assert.match((await c.command('RCPT TO:<bob@send.test>')).text, /^250/);
    assert.match((await c.command('RCPT TO:<a%b@remote.test>')).text, /^501 5\.1\.3 /);
    c.close();
  });
});

describe('a submitted message', () => {
  it('is stored in Sent and queued once per recipient, Bcc removed, Date and Message-ID added', async () => {
    const c = await loggedIn('alice@send.test');
    await c.command('MAIL FROM:<alice@send.test>');
    await c.command('RCPT TO:<Dest@Remote.test>');
    await c.command('RCPT TO:<bob@send.test>');
    await c.command('RCPT TO:<hidden@remote.test>');
    const message = 'From: Alice <alice@send.test>\r\nTo: dest@remote.test, bob@send.test\r\nBcc: hidden@remote.test\r\nSubject: hello world\r\n\r\nHi!\r\n';
    const reply = await c.data(message);
    assert.match(reply.text, /^250 2\.0\.0 Ok: queued as [0-9a-f-]{36}$/);
    c.close();
    const id = reply.text.slice(-36);
    const sub = await t.services.db.selectFrom('submissions').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    assert.equal(sub.source, 'smtp');
    assert.equal(sub.from_address, 'alice@send.test');
    assert.equal(sub.subject, 'hello world');
    assert.match(sub.message_id ?? '', /^<[0-9a-f-]+@send\.test>$/);
    const rows = await t.services.db.selectFrom('outbound').selectAll().where('submission_id', '=', id).orderBy('rcpt_to').execute();
    assert.deepEqual(
      rows.map((r) => [r.rcpt_to, r.status, r.route]),
      [
        ['bob@send.test', 'queued', 'local'],
        ['dest@remote.test', 'queued', null],
        ['hidden@remote.test', 'queued', null],
      ],
    );
    const sent = await t.services.db
      .selectFrom('messages')
      .innerJoin('folders', 'folders.id', 'messages.folder_id')
      .select(['messages.id', 'folders.special_use', 'messages.seen', 'messages.raw_blob_key', 'messages.trace_headers'])
      .where('messages.id', '=', sub.stored_message_id!)
      .executeTakeFirstOrThrow();
    assert.equal(sent.special_use, 'sent');
    assert.equal(sent.seen, true);
    const raw = (await readAll(await t.services.blobReader.open(sent.raw_blob_key))).toString('latin1');
    assert.doesNotMatch(raw, /^Bcc:/im, 'Bcc removed');
    assert.match(raw, /^Date: /m);
    assert.match(raw, /^Message-ID: <[0-9a-f-]+@send\.test>/m);
    // every outbound row holds a reference on the raw bytes (plus the Sent copy's)
    const blob = await t.services.db.selectFrom('blobs').select('refcount').where('key', '=', sent.raw_blob_key).executeTakeFirstOrThrow();
    assert.equal(blob.refcount, 4);
  });

  it('counts against the hourly send limit, 451 4.7.1 beyond it; local-only mail does not count', async () => {
    // SEND_LIMIT_PER_HOUR=3 and the test above used one; a fresh user for a clean count
    const { user } = await seedMailbox(t.services, 'counter@send.test');
    assert.ok(user);
    const send = async (to: string): Promise<string> => {
      const c = await loggedIn('counter@send.test');
      const mail = await c.command('MAIL FROM:<counter@send.test>');
      if (mail.code !== 250) {
        c.close();
        return mail.text;
      }
      await c.command(`RCPT TO:<${to}>`);
      const r = await c.data(simpleMessage({ from: 'counter@send.test', to }));
      c.close();
      return r.text;
    };
    assert.match(await send('bob@send.test'), /^250 /, 'local mail does not count');
    for (let i = 0; i < 3; i++) assert.match(await send('out@remote.test'), /^250 /);
    const before = await rowCounts();
    const c = await loggedIn('counter@send.test');
    await c.command('MAIL FROM:<counter@send.test>');
    assert.match((await c.command('RCPT TO:<out@remote.test>')).text, /^451 4\.7\.1 sending limit reached: at most 3 messages per hour/);
    c.close();
    assert.deepEqual(await rowCounts(), before);
    assert.match(await send('bob@send.test'), /^250 /, 'local mail still goes while over the limit');
  });
});

describe('under load', () => {
  it('concurrent submissions beyond the database pool size all complete (no connection deadlock)', { timeout: 30_000 }, async () => {
    const small = await startTestServer({ DATABASE_POOL_SIZE: '2' });
    try {
      await seedMailbox(small.services, 'busy@pool.test');
      await markVerified(small.services, 'pool.test');
      const one = async (i: number): Promise<string> => {
        const c = await RawSmtp.connectTls(small.smtpsPort);
        await c.hello();
        assert.equal((await c.authPlain('busy@pool.test', PASSWORD)).code, 235);
        await c.command('MAIL FROM:<busy@pool.test>');
        await c.command(`RCPT TO:<far${i}@remote.test>`);
        const r = await c.data(simpleMessage({ from: 'busy@pool.test', to: `far${i}@remote.test` }));
        c.close();
        return r.text;
      };
      const replies = await Promise.all(Array.from({ length: 8 }, (_, i) => one(i)));
      for (const r of replies) assert.match(r, /^250 /);
    } finally {
      await small.stop();
    }
  });
});

describe('a real mail client', () => {
  const swaks = promisify(execFile);
  it('swaks submits with STARTTLS + AUTH on the submission port, and with implicit TLS on SMTPS', async () => {
    for (const [port, tlsFlag] of [
      [t.submissionPort, '--tls'],
      [t.smtpsPort, '--tls-on-connect'],
    ] as const) {
      const { stdout } = await swaks(
        'swaks',
        ['--server', `127.0.0.1:${port}`, tlsFlag, '--auth', 'LOGIN', '--auth-user', 'bob@send.test', '--auth-password', PASSWORD,
          '--from', 'bob@send.test', '--to', 'friend@remote.test', '--header', `Subject: swaks ${tlsFlag}`],
        { timeout: 30_000 },
      );
      assert.match(stdout, /<~ {2}235 /, 'authenticated over TLS');
      assert.match(stdout, /<~ {2}250 2\.0\.0 Ok: queued as /);
      const sub = await t.services.db.selectFrom('submissions').select('id').where('subject', '=', `swaks ${tlsFlag}`).executeTakeFirst();
      assert.ok(sub, 'queued');
    }
  });
});
