/**
 * MX: recipient policy over real SMTP sessions. Each rejection asserts the full reply and that
 * nothing was stored.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { usageOf } from '../../src/db/mailboxes.repository.js';
import { countRows, messagesFor, seedMailbox, startTestServer, type TestServer } from '../helpers/harness.js';
import { RawSmtp, sendWithNodemailer, simpleMessage } from '../helpers/smtp-client.js';

let t: TestServer;

before(async () => {
  t = await startTestServer({ MAX_RECIPIENTS: '3' });
  await seedMailbox(t.services, 'alice@acme.test');
  await seedMailbox(t.services, 'bob@acme.test');
  await seedMailbox(t.services, 'full@acme.test', { quotaMb: 1 });
  await t.services.db.updateTable('mailboxes').set({ used_bytes: 1024 * 1024 }).where('address', '=', 'full@acme.test').execute();
  await seedMailbox(t.services, 'carol@other.test');
});

after(async () => {
  await t.stop();
});

async function rcpt(address: string, mailFrom = 'sender@example.org'): Promise<string> {
  const c = await RawSmtp.connect(t.smtpPort);
  try {
    await c.hello();
    await c.command(`MAIL FROM:<${mailFrom}>`);
    return (await c.command(`RCPT TO:<${address}>`)).text;
  } finally {
    c.close();
  }
}

describe('MX recipients', () => {
  it('when the client connects, then the banner and EHLO name the mail host and advertise the extensions', async () => {
    const c = await RawSmtp.connect(t.smtpPort);
    try {
      const banner = await c.reply();
      assert.match(banner.text, /^220 mx\.test\.local ESMTP/);
      const ehlo = await c.command('EHLO client.test');
      assert.equal(ehlo.code, 250);
      assert.match(ehlo.text, /^250-mx\.test\.local/);
      for (const ext of ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'STARTTLS', `SIZE ${t.config.MAX_MESSAGE_SIZE}`]) {
        assert.ok(ehlo.text.includes(ext), `EHLO lacks ${ext}: ${ehlo.text}`);
      }
      assert.ok(!/AUTH/.test(ehlo.text), 'AUTH is offered only after STARTTLS');
    } finally {
      c.close();
    }
  });

  it('when the recipient is an existing mailbox, then RCPT gets 250 and the message is stored once', async () => {
    const reply = await sendWithNodemailer(t.smtpPort, { from: 'sender@example.org', to: 'alice@acme.test', subject: 'first' });
    assert.match(reply, /^250 2\.0\.0 Ok: stored as /);
    const rows = await messagesFor(t.services, 'alice@acme.test');
    assert.equal(rows.filter((r) => r.subject === 'first').length, 1);
  });

  it('when the address uses +detail or another case, then it reaches the base mailbox', async () => {
    assert.match(await rcpt('Alice+News@ACME.test'), /^250 /);
  });

  it('when the local part is unknown, then 550 5.1.1', async () => {
    assert.match(await rcpt('nobody@acme.test'), /^550 5\.1\.1 /);
  });

  it('when the mailbox is deleted between RCPT and DATA, then 550 5.1.1 and nothing is stored', async () => {
    await seedMailbox(t.services, 'dave@acme.test');
    const before = { messages: await countRows(t.services, 'messages'), blobs: await countRows(t.services, 'blobs') };
    const c = await RawSmtp.connect(t.smtpPort);
    try {
      await c.hello();
      assert.match((await c.command('MAIL FROM:<sender@example.org>')).text, /^250 /);
      assert.match((await c.command('RCPT TO:<dave@acme.test>')).text, /^250 /);
      await t.services.db.deleteFrom('mailboxes').where('address', '=', 'dave@acme.test').execute();
      assert.match((await c.data(simpleMessage({ to: 'dave@acme.test', subject: 'gone' }))).text, /^550 5\.1\.1 /);
    } finally {
      c.close();
    }
    assert.deepEqual({ messages: await countRows(t.services, 'messages'), blobs: await countRows(t.services, 'blobs') }, before);
  });

  const relayTricks: [string, string][] = [
    ['a domain that is not ours', 'victim@gmail.com'],
    ['the percent hack', 'victim%gmail.com@acme.test'],
    ['a bang path', 'gmail.com!victim@acme.test'],
    ['an address literal', 'victim@[127.0.0.1]'],
    ['a subdomain of ours', 'alice@sub.acme.test'],
  ];
  for (const [name, address] of relayTricks) {
    it(`when the recipient uses ${name}, then 550 5.7.1 relay denied`, async () => {
      assert.match(await rcpt(address), /^550 5\.7\.1 /);
    });
  }

  // smtp-server's own address parser refuses these with a syntax error before our handler runs
  for (const [name, address] of [
    ['a source route', '@gmail.com:victim@acme.test'],
    ['a quoted local part with @', '"victim@gmail.com"@acme.test'],
  ]) {
    it(`when the recipient uses ${name}, then it is refused with a 5xx and never relayed`, async () => {
      assert.match(await rcpt(address!), /^5\d\d 5\.\d\.\d+ /);
    });
  }

  it('when the mailbox is full, then 452 4.2.2', async () => {
    assert.match(await rcpt('full@acme.test'), /^452 4\.2\.2 /);
  });

  it('when the declared SIZE does not fit the quota, then 452 4.2.2', async () => {
    const c = await RawSmtp.connect(t.smtpPort);
    try {
      await c.hello();
      await c.command(`MAIL FROM:<s@example.org> SIZE=${2 * 1024 * 1024}`);
      await seedMailbox(t.services, 'small@acme.test', { quotaMb: 1 });
      assert.match((await c.command('RCPT TO:<small@acme.test>')).text, /^452 4\.2\.2 /);
    } finally {
      c.close();
    }
  });

  it('when a transaction names more than MAX_RECIPIENTS, then 452 4.5.3 for the extra ones and the rest are delivered', async () => {
    const before = await countRows(t.services, 'messages');
    const c = await RawSmtp.connect(t.smtpPort);
    try {
      await c.hello();
      await c.command('MAIL FROM:<s@example.org>');
      for (const a of ['alice@acme.test', 'bob@acme.test', 'carol@other.test']) assert.match((await c.command(`RCPT TO:<${a}>`)).text, /^250 /);
      assert.match((await c.command('RCPT TO:<alice+2@acme.test>')).text, /^452 4\.5\.3 /);
      assert.match((await c.data(simpleMessage({ subject: 'three' }))).text, /^250 /);
    } finally {
      c.close();
    }
    assert.equal((await countRows(t.services, 'messages')) - before, 3);
  });

  it('when two recipients share a message, then one raw blob is stored and referenced twice', async () => {
    const c = await RawSmtp.connect(t.smtpPort);
    try {
      await c.hello();
      await c.command('MAIL FROM:<s@example.org>');
      await c.command('RCPT TO:<alice@acme.test>');
      await c.command('RCPT TO:<bob@acme.test>');
      assert.match((await c.data(simpleMessage({ subject: 'shared copy' }))).text, /^250 /);
    } finally {
      c.close();
    }
    const rows = [...(await messagesFor(t.services, 'alice@acme.test')), ...(await messagesFor(t.services, 'bob@acme.test'))].filter(
      (r) => r.subject === 'shared copy',
    );
    assert.equal(rows.length, 2);
    assert.equal(rows[0]!.raw_sha256, rows[1]!.raw_sha256);
    const blob = await t.services.db.selectFrom('blobs').selectAll().where('sha256', '=', rows[0]!.raw_sha256).executeTakeFirstOrThrow();
    assert.equal(blob.refcount, 2);
  });

  it('when two recipients of one transaction are the same mailbox (alice@, alice+news@), then it gets one copy', async () => {
    const c = await RawSmtp.connect(t.smtpPort);
    try {
      await c.hello();
      await c.command('MAIL FROM:<s@example.org>');
      assert.match((await c.command('RCPT TO:<alice@acme.test>')).text, /^250 /);
      assert.match((await c.command('RCPT TO:<alice+news@acme.test>')).text, /^250 /);
      assert.match((await c.data(simpleMessage({ subject: 'one copy' }))).text, /^250 /);
    } finally {
      c.close();
    }
    assert.equal((await messagesFor(t.services, 'alice@acme.test')).filter((m) => m.subject === 'one copy').length, 1);
  });

  it('when deliveries fill a mailbox, then the next RCPT gets 452 4.2.2 before the ledger is folded, and folding keeps the usage', async () => {
    const { mailbox } = await seedMailbox(t.services, 'filling@acme.test', { quotaMb: 1 });
    const body = 'x'.repeat(76).concat('\r\n').repeat(4500); // ~350 KB
    let accepted = 0;
    for (let i = 0; i < 5; i++) {
      const c = await RawSmtp.connect(t.smtpPort);
      try {
        await c.hello();
        await c.command('MAIL FROM:<s@example.org>');
        const r = await c.command('RCPT TO:<filling@acme.test>');
        if (r.code !== 250) {
          assert.match(r.text, /^452 4\.2\.2 /);
          break;
        }
        assert.match((await c.data(simpleMessage({ subject: `fill ${i}`, body }))).text, /^250 /);
        accepted++;
      } finally {
        c.close();
      }
    }
    assert.equal(accepted, 3, 'three ~350 KB messages fill 1 MB; the fourth RCPT is refused');
    const before = await usageOf(t.services.db, mailbox.id);
    assert.equal(before.message_count, 3);
    assert.ok(before.used_bytes >= 1024 * 1024);
    assert.ok((await t.services.quota.fold()) >= 3);
    assert.deepEqual(await usageOf(t.services.db, mailbox.id), before);
    const row = await t.services.db.selectFrom('mailboxes').select(['used_bytes', 'message_count']).where('id', '=', mailbox.id).executeTakeFirstOrThrow();
    assert.deepEqual({ used_bytes: row.used_bytes, message_count: row.message_count }, before, 'folded into the mailbox row');
  });

  it('when the sender is the null sender (a bounce), then the message is accepted', async () => {
    const c = await RawSmtp.connect(t.smtpPort);
    try {
      await c.hello();
      assert.match((await c.command('MAIL FROM:<>')).text, /^250 /);
      assert.match((await c.command('RCPT TO:<alice@acme.test>')).text, /^250 /);
      assert.match((await c.data(simpleMessage({ subject: 'bounce' }))).text, /^250 /);
    } finally {
      c.close();
    }
  });
});
