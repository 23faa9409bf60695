/**
 * The webmail's main path (issue 5, "Prove it"), all of it clicked through in a real Chromium
 * against the real server on the embedded database: sign up → add a domain → publish its
 * records in a local DNS server → Verify → "verified" → create two users → log out → log in as
 * one → a message sent over SMTP to the MX port appears in the list without a reload (SSE) →
 * open it (authentication badge) → reply with an attachment (upload progress) → the reply
 * reaches the other user's mailbox with the attachment's bytes intact → search finds it →
 * delete to Trash → empty Trash. Along the way: no dialog fired, no request left the origin.
 * Screenshots of the inbox, the message and the compose view go to test-results/screenshots.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, afterEach, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { eventually, launchBrowser, recordingContext, screenshot, screenshotIfFailed, type RecordingContext } from '../helpers/browser.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { startTestServer, type TestServer } from '../helpers/harness.js';
import { call } from '../helpers/http.js';
import { sendWithNodemailer } from '../helpers/smtp-client.js';
import { PASSWORD, UNTHROTTLED_ENV } from '../helpers/users-api.js';

const MAIL_HOSTNAME = 'mx.flow.test';
const DOMAIN = 'flow-example.test';
const ALICE = `alice@${DOMAIN}`;
const BOB = `bob@${DOMAIN}`;
const OWNER = 'owner@flow-corp.test';
const SUBJECT = 'Quarterly numbers';
const MARKER = 'pineapple';
const ATTACHMENT = randomBytes(1024 * 1024);

interface DnsRecordBody {
  record: string;
  type: 'MX' | 'TXT';
  host: string;
  value: string;
  priority?: number | null;
}

let t: TestServer;
let dns: DnsServer;
let browser: Browser;
let rc: RecordingContext;
let page: Page;
let origin: string;

before(async () => {
  dns = await startDnsServer({ [MAIL_HOSTNAME]: { A: '127.0.0.1' } });
  t = await startTestServer({
    ...UNTHROTTLED_ENV,
    ROLES: 'api,smtp,worker',
    DNS_SERVERS: dns.address,
    DNS_TIMEOUT_MS: '1000',
    MAIL_HOSTNAME,
    // SPF/DKIM/DMARC of the SMTP message are checked against the local DNS server: the badge
    INBOUND_AUTH_ENABLED: 'true',
  });
  origin = `http://127.0.0.1:${t.apiPort}`;
  browser = await launchBrowser();
  rc = await recordingContext(browser, origin);
  page = rc.page;
});

afterEach((test) => screenshotIfFailed(page, 'flow', test));

after(async () => {
  if (rc?.errors.length) console.log(`browser errors:\n${rc.errors.join('\n')}`);
  await rc?.close();
  await browser?.close();
  await t?.stop();
  await dns?.stop();
});

async function apiLogin(email: string): Promise<string> {
  const res = await call<{ access_token: string }>(t.apiPort, 'POST', '/api/auth/login', { body: { email, password: PASSWORD } });
  assert.equal(res.status, 200, res.text);
  return res.body.access_token;
}

function folderLink(name: string) {
  return page.getByRole('navigation', { name: 'Folders' }).getByRole('link', { name: new RegExp(`^${name}(, \\d+ unread)?$`) });
}

function rows() {
  return page.getByRole('list', { name: 'Messages' }).getByTestId('message-row');
}

/** The reading pane's text plus the text inside its sandboxed body frame. */
async function shownBody(): Promise<string> {
  const pane = (await page.getByRole('article', { name: 'Message' }).textContent()) ?? '';
  const frame = await page.locator('iframe[title="Message body"]').elementHandle({ timeout: 100 }).catch(() => null);
  const inner = frame ? await (await frame.contentFrame())?.evaluate<string>('document.body ? document.body.innerText : ""') : '';
  return `${pane}\n${inner ?? ''}`;
}

async function search(q: string): Promise<void> {
  const box = page.getByLabel('Search mail');
  await box.fill(q);
  // wait for this query's answer, so the rows counted next are not the previous search's
  const answered = page.waitForResponse((r) => r.url().includes('/api/webmail/messages?') && new URL(r.url()).searchParams.get('q') === q);
  await box.press('Enter');
  assert.equal((await answered).status(), 200);
  await page.getByRole('heading', { name: 'Search results' }).waitFor();
}

async function rowCount(expected: number): Promise<number> {
  return eventually(`${expected} rows`, async () => ((await rows().count()) === expected ? expected : null), 3000).catch(async () => rows().count());
}

describe('webmail: the whole path in Chromium', () => {
  it('signs up a tenant owner', async () => {
    await page.goto('/signup');
    await page.getByRole('heading', { name: 'Create an account' }).waitFor();
    await page.getByLabel('Organisation name').fill('Flow Company');
    await page.getByLabel('Email', { exact: true }).fill(OWNER);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign up' }).click();
    await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Admin' }).waitFor();
  });

  it('adds a domain, publishes its records in the DNS server, clicks Verify and sees "verified"', async () => {
    await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Admin' }).click();
    await page.getByLabel('Domain name').fill(DOMAIN);
    await page.getByRole('button', { name: 'Add domain' }).click();
    await page.getByText(DOMAIN, { exact: true }).first().waitFor();
    await page.getByText(/^pending$/i).first().waitFor();

    // the records the page shows come from the API: publish exactly those
    const token = await apiLogin(OWNER);
    const list = await call<{ data: { id: string; name: string }[] }>(t.apiPort, 'GET', '/api/domains', { token });
    const domain = list.body.data.find((d) => d.name === DOMAIN);
    assert.ok(domain, list.text);
    const detail = await call<{ dns_records: DnsRecordBody[] }>(t.apiPort, 'GET', `/api/domains/${domain.id}`, { token });
    for (const r of detail.body.dns_records) {
      if (r.type === 'MX') dns.set(r.host, 'MX', { priority: r.priority ?? 10, exchange: r.value });
      else dns.set(r.host, 'TXT', [r.value]);
      // each record's value is on the page with its copy button (named by type or by record)
      await page.getByRole('button', { name: new RegExp(`^Copy (${r.type}|${r.record}) record value$`, 'i') }).first().waitFor();
    }

    await page.getByRole('button', { name: /^Verify/ }).first().click();
    await page.getByText(/^verified$/i).first().waitFor({ timeout: 15_000 });
    assert.ok(dns.received(DOMAIN, 'MX'), 'the check asked our DNS server');
  });

  it('creates two users with mailboxes on the domain', async () => {
    await page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Users' }).click();
    for (const [email, name] of [
      [ALICE, 'Alice Example'],
      [BOB, 'Bob Example'],
    ] as const) {
      await page.getByLabel('Email', { exact: true }).fill(email);
      await page.getByLabel('Name', { exact: true }).fill(name);
      await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
      await page.getByRole('button', { name: 'Create user' }).click();
      await page.getByRole('progressbar', { name: `Quota used by ${email}` }).waitFor();
    }
  });

  it('logs out and logs in as the new user', async () => {
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('heading', { name: 'Log in' }).waitFor();
    await page.getByLabel('Email', { exact: true }).fill(ALICE);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    await folderLink('Inbox').waitFor();
    await page.getByText('No messages').waitFor();
  });

  it('shows a message sent over SMTP without a reload (server-sent events)', async () => {
    await page.evaluate('globalThis.__noReload = true');
    const navigations = rc.requests.filter((r) => r.resourceType === 'document').length;
    const reply = await sendWithNodemailer(t.smtpPort, {
      from: BOB,
      to: ALICE,
      subject: SUBJECT,
      text: 'Hi Alice,\n\nthe numbers are attached to your reply, please.\n\nBob',
    });
    assert.match(reply, /^250 /);
    const row = rows().filter({ hasText: SUBJECT });
    await row.waitFor({ timeout: 10_000 });
    assert.equal(await page.evaluate('globalThis.__noReload === true'), true, 'the page was not reloaded');
    assert.equal(rc.requests.filter((r) => r.resourceType === 'document').length, navigations, 'no navigation happened');
    assert.ok(
      rc.requests.some((r) => r.url.endsWith('/api/webmail/events')),
      'the list is fed by the event stream',
    );
    assert.equal(await row.getAttribute('data-unread'), 'true');
    assert.match((await row.textContent()) ?? '', /bob/i, 'the row shows the sender');
    await page.getByRole('navigation', { name: 'Folders' }).getByRole('link', { name: 'Inbox, 1 unread', exact: true }).waitFor();
    await screenshot(page, 'inbox');
  });

  it('opens it: subject, sender and the authentication badge', async () => {
    await rows().filter({ hasText: SUBJECT }).click();
    const article = page.getByRole('article', { name: 'Message' });
    await article.getByRole('heading', { level: 2, name: SUBJECT }).waitFor();
    const badge = article.getByTestId('auth-badge');
    await badge.waitFor();
    // SPF: bob's domain lists mx.flow.test, which resolves to 127.0.0.1 in the local DNS server
    assert.match((await badge.textContent()) ?? '', /SPF pass/);
    // a text/plain message may be shown in a <pre> or in the body frame: either will do
    await eventually('the body text', async () => (await shownBody()).includes('the numbers are attached'));
    await eventually('the message to be marked read', async () => (await rows().filter({ hasText: SUBJECT }).getAttribute('data-unread')) === 'false');
    await screenshot(page, 'message');
  });

  it('replies with an attachment, showing upload progress, and sends it', async () => {
    await page.getByRole('article', { name: 'Message' }).getByRole('button', { name: 'Reply', exact: true }).click();
    const compose = page.getByRole('form', { name: 'Compose' });
    await compose.waitFor();
    assert.match(await compose.getByLabel('To', { exact: true }).inputValue(), new RegExp(BOB.replace(/\./g, '\\.')));
    assert.match(await compose.getByLabel('Subject').inputValue(), /^Re: Quarterly numbers$/i);
    const body = compose.getByLabel('Message');
    await body.fill(`Here they are, ${MARKER} included.\n\n${await body.inputValue()}`);

    // the progress bar may be on screen for a few milliseconds: watch the DOM for it
    await page.evaluate(`(() => {
      const seen = () => document.querySelector('progress[aria-label="Upload progress"]') !== null;
      globalThis.__sawProgress = seen();
      new MutationObserver(() => { if (seen()) globalThis.__sawProgress = true; })
        .observe(document.body, { subtree: true, childList: true, attributes: true });
    })()`);
    await compose.getByLabel('Attach files').setInputFiles({ name: 'report.bin', mimeType: 'application/octet-stream', buffer: ATTACHMENT });
    await compose.getByRole('button', { name: 'Remove report.bin' }).waitFor({ timeout: 15_000 });
    assert.equal(await page.evaluate('globalThis.__sawProgress'), true, 'an Upload progress bar was shown');
    await screenshot(page, 'compose');

    await compose.getByRole('button', { name: 'Send' }).click();
    const status = page.getByTestId('send-status');
    await status.waitFor();
    await status.getByText(BOB).waitFor();
  });

  it('the reply reaches the other mailbox with the attachment bytes unchanged', async () => {
    const token = await apiLogin(BOB);
    type Summary = { id: string; subject: string; has_attachments: boolean };
    const arrived = await eventually(
      'the reply in bob@ INBOX',
      async () => {
        const res = await call<{ data: Summary[] }>(t.apiPort, 'GET', '/api/webmail/messages?mailbox=INBOX', { token });
        return res.body.data?.find((m) => /^Re: Quarterly numbers$/i.test(m.subject));
      },
      20_000,
      200,
    );
    assert.equal(arrived.has_attachments, true);
    const full = await call<{ text: string; attachments: { id: string; filename: string; size: number }[] }>(t.apiPort, 'GET', `/api/webmail/messages/${arrived.id}`, { token });
    assert.match(full.body.text, new RegExp(MARKER));
    const att = full.body.attachments.find((a) => a.filename === 'report.bin');
    assert.ok(att, full.text);
    const bytes = await fetch(`${origin}/api/webmail/messages/${arrived.id}/attachments/${att.id}`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(bytes.status, 200);
    assert.ok(Buffer.from(await bytes.arrayBuffer()).equals(ATTACHMENT), 'the attachment arrived byte for byte');

    // and the sender's page shows the per-recipient status moving past "queued"
    await page.getByTestId('send-status').getByText(/sent|delivered/i).first().waitFor({ timeout: 15_000 });
  });

  it('search finds the reply by from:, subject: and free text', async () => {
    await search('subject:Quarterly');
    await rows().filter({ hasText: /Re: Quarterly numbers/i }).first().waitFor();
    assert.equal(await rowCount(2), 2, 'the original (Inbox) and the reply (Sent)');

    await search(`from:${ALICE}`);
    await rows().filter({ hasText: /Re: Quarterly numbers/i }).first().waitFor();
    assert.equal(await rowCount(1), 1, 'alice sent the reply and nothing else (no draft left behind)');

    await search(MARKER);
    await rows().filter({ hasText: /Re: Quarterly numbers/i }).first().waitFor();
    assert.equal(await rowCount(1), 1, 'only the reply has the word');

    await search('has:attachment');
    await rows().filter({ hasText: /Re: Quarterly numbers/i }).first().waitFor();
    await rows().filter({ has: page.getByLabel('Has attachments') }).first().waitFor();
  });

  it('deletes the original to Trash, then empties Trash', async () => {
    await folderLink('Inbox').click();
    await rows().filter({ hasText: SUBJECT }).click();
    await page.getByRole('article', { name: 'Message' }).getByRole('button', { name: 'Delete' }).click();
    await page.getByText('No messages').waitFor();

    await folderLink('Trash').click();
    await rows().filter({ hasText: SUBJECT }).waitFor();
    await page.getByRole('button', { name: 'Empty Trash' }).click();
    await page.getByRole('button', { name: 'Delete all forever' }).click();
    await page.getByText('No messages').waitFor();

    const token = await apiLogin(ALICE);
    const trash = await call<{ data: unknown[] }>(t.apiPort, 'GET', '/api/webmail/messages?mailbox=Trash', { token });
    assert.deepEqual(trash.body.data, []);
    const anywhere = await call<{ data: { subject: string }[] }>(t.apiPort, 'GET', `/api/webmail/messages?q=${encodeURIComponent('in:anywhere subject:Quarterly')}`, { token });
    assert.deepEqual(
      anywhere.body.data.map((m) => m.subject),
      ['Re: Quarterly numbers'],
      'only the sent reply is left',
    );
  });

  it('fired no dialog and sent no request anywhere but its own origin', () => {
    assert.deepEqual(rc.dialogs, []);
    assert.deepEqual(rc.foreignRequests(origin), []);
  });
});
