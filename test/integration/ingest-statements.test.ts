/**
 * The hot path's statements stay cheap: the RCPT lookup and the ingest's one statement are
 * prepared statements, and once PostgreSQL has seen a few executions it runs them on their generic
 * plan (parsed and planned once per connection). A change that makes PostgreSQL re-plan them on
 * every message (array parameters do: the planner costs the generic plan for 10 elements) costs
 * about a third of the throughput at 4 KB, without any other test noticing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { seedMailbox, startTestServer, type TestServer } from '../helpers/harness.js';
import { RawSmtp, simpleMessage } from '../helpers/smtp-client.js';

// PostgreSQL makes 5 custom plans before it considers the generic one; two shapes, 7 runs each
const RUNS = 14;

let t: TestServer;

before(async () => {
  // one connection: every statement below ran on the connection inspected at the end
  t = await startTestServer({ DATABASE_POOL_SIZE: '1' });
  await seedMailbox(t.services, 'plans@acme.test');
});

after(async () => {
  await t?.stop();
});

function withAttachment(subject: string): string {
  return [
    'From: sender@example.org',
    `Subject: ${subject}`,
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="b"',
    '',
    '--b',
    'Content-Type: text/plain',
    '',
    'see attached',
    '--b',
    'Content-Type: application/octet-stream',
    'Content-Disposition: attachment; filename="x.bin"',
    'Content-Transfer-Encoding: base64',
    '',
    randomBytes(300).toString('base64'),
    '--b--',
    '',
  ].join('\r\n');
}

describe('ingest statements', () => {
  it('when messages arrive, then the RCPT lookup and the ingest statement run as prepared statements on their generic plan', async () => {
    for (let i = 0; i < RUNS; i++) {
      const c = await RawSmtp.connect(t.smtpPort);
      try {
        await c.hello();
        assert.match((await c.command('MAIL FROM:<sender@example.org>')).text, /^250 /);
        // the exact address and a +detail one: the lookup has one shape for both
        assert.match((await c.command(`RCPT TO:<plans${i % 2 ? '+tag' : ''}@acme.test>`)).text, /^250 /);
        const body = i % 2 ? simpleMessage({ subject: `plain ${i}`, body: 'x'.repeat(3000) }) : withAttachment(`attachment ${i}`);
        assert.match((await c.data(body)).text, /^250 /);
      } finally {
        c.close();
      }
    }
    const client = await t.services.pool.connect();
    try {
      const { rows } = await client.query<{ statement: string; generic_plans: string; custom_plans: string }>(
        'SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements ORDER BY statement',
      );
      const ingest = rows.filter((r) => /WITH blob_refs/.test(r.statement));
      const lookup = rows.filter((r) => /FROM mailboxes m/.test(r.statement));
      assert.equal(ingest.length, 2, 'one prepared ingest statement for plain messages, one for one attachment');
      assert.equal(lookup.length, 1, 'one prepared RCPT lookup for exact and +detail addresses');
      for (const r of [...ingest, ...lookup]) {
        assert.ok(Number(r.generic_plans) > 0, `re-planned on every execution (custom ${r.custom_plans}, generic ${r.generic_plans}):\n${r.statement.slice(0, 200)}`);
      }
    } finally {
      client.release();
    }
  });
});
