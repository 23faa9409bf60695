/**
 * MX per-session command limits (src/smtp/command-limits.ts) over real TCP, with small limits so
 * each case takes a few commands: SMTP_JUNK_COMMAND_LIMIT (NOOP/RSET/VRFY/HELP/ETRN) and
 * SMTP_ERROR_LIMIT (5xx replies) cut the session with 421 4.7.0; 4xx replies such as the 452 for
 * recipients past MAX_RECIPIENTS do not count; a delivered message restarts both counts; each
 * cut is counted in the metrics; a bad value of either key is refused at startup. The defaults are exercised by
 * test/reliability/load-abuse.test.ts against the server process.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { seedMailbox, startTestServer, tempDir, type TestServer } from '../helpers/harness.js';
import { RawSmtp, simpleMessage } from '../helpers/smtp-client.js';

const JUNK = 3;
const ERRORS = 3;

describe('MX command limits', () => {
  let t: TestServer;
  const open: RawSmtp[] = [];

  before(async () => {
    t = await startTestServer({ SMTP_JUNK_COMMAND_LIMIT: String(JUNK), SMTP_ERROR_LIMIT: String(ERRORS), MAX_RECIPIENTS: '1' });
    await seedMailbox(t.services, 'limits@acme.test');
  });

  after(async () => {
    for (const c of open) c.close();
    await t.stop();
  });

  async function session(): Promise<RawSmtp> {
    const c = await RawSmtp.connect(t.smtpPort);
    open.push(c);
    assert.equal((await c.hello()).code, 250);
    return c;
  }

  async function deliver(c: RawSmtp): Promise<void> {
    assert.equal((await c.command('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await c.command('RCPT TO:<limits@acme.test>')).code, 250);
    assert.equal((await c.data(simpleMessage({ to: 'limits@acme.test' }))).code, 250);
  }

  it('when a client sends more junk commands than SMTP_JUNK_COMMAND_LIMIT, then 421 4.7.0 and the connection closes', async () => {
    const c = await session();
    for (const command of ['NOOP', 'RSET', 'HELP']) assert.notEqual((await c.command(command)).code, 421, command);
    assert.match((await c.command('VRFY postmaster')).text, /^421 4\.7\.0 Too many NOOP, RSET, VRFY or HELP commands/);
    assert.ok(await c.waitClosed(), 'the connection is closed');
  });

  it('when a client gets SMTP_ERROR_LIMIT 5xx replies, then 421 4.7.0 follows the last one and the connection closes', async () => {
    const c = await session();
    assert.equal((await c.command('MAIL FROM:<a@example.org>')).code, 250);
    for (let i = 0; i < ERRORS; i++) assert.match((await c.command(`RCPT TO:<nobody${i}@acme.test>`)).text, /^550 5\.1\.1 /);
    assert.match((await c.reply()).text, /^421 4\.7\.0 Too many errors/);
    assert.ok(await c.waitClosed(), 'the connection is closed');
  });

  it('when recipients past MAX_RECIPIENTS get 452, then they do not count as errors and the message is still delivered', async () => {
    const c = await session();
    assert.equal((await c.command('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await c.command('RCPT TO:<limits@acme.test>')).code, 250);
    for (let i = 0; i < ERRORS + 2; i++) assert.match((await c.command(`RCPT TO:<limits+${i}@acme.test>`)).text, /^452 4\.5\.3 /);
    assert.equal((await c.data(simpleMessage({ to: 'limits@acme.test' }))).code, 250);
  });

  it('when a message is delivered between junk commands and errors, then both counts restart', async () => {
    const c = await session();
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < JUNK; i++) assert.equal((await c.command('NOOP')).code, 250, `round ${round}: NOOP ${i}`);
      assert.equal((await c.command('MAIL FROM:<a@example.org>')).code, 250);
      for (let i = 0; i < ERRORS - 1; i++) assert.equal((await c.command(`RCPT TO:<nobody${i}@acme.test>`)).code, 550, `round ${round}: RCPT ${i}`);
      assert.equal((await c.command('RCPT TO:<limits@acme.test>')).code, 250);
      assert.equal((await c.data(simpleMessage({ to: 'limits@acme.test' }))).code, 250, `round ${round}: the message`);
    }
    await deliver(c);
  });

  it('when sessions are cut, then each cut is counted by reason in mailserver_smtp_rejects_total', async () => {
    const metrics = await (await fetch(`http://127.0.0.1:${t.apiPort}/metrics`)).text();
    // the two cutting cases above ran first (node:test runs a suite's tests in order)
    assert.match(metrics, /^mailserver_smtp_rejects_total\{listener="mx",reason="junk_commands"\} 1$/m);
    assert.match(metrics, /^mailserver_smtp_rejects_total\{listener="mx",reason="error_limit"\} 1$/m);
  });

  for (const [key, value] of [
    ['SMTP_JUNK_COMMAND_LIMIT', '0'],
    ['SMTP_JUNK_COMMAND_LIMIT', 'many'],
    ['SMTP_ERROR_LIMIT', '-1'],
    ['SMTP_ERROR_LIMIT', '2.5'],
  ] as const) {
    it(`when ${key}=${value}, then startup is refused naming the key`, () => {
      assert.throws(
        () => loadConfig({ env: { DATA_DIR: tempDir(), [key]: value }, envFile: null }),
        (err: unknown) => err instanceof ConfigError && err.message.includes(key),
      );
    });
  }
});
