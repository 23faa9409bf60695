/**
 * Smaller webmail checks in a real Chromium against the real server: the login error is the
 * API's own text; an expired access token is refreshed silently (the session keeps working
 * without a new login); keyboard shortcuts (j/k/o/r/c/#, '/'); no horizontal scrolling at 375 px;
 * a password change in Settings works and kills the old refresh tokens; the admin pages render
 * for an owner and are refused to a member. Also how the API process serves the SPA: hashed
 * assets cached for a year, any other page path answered with index.html, /api paths never
 * (JSON 404), and the page's Content-Security-Policy header.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import jwt from 'jsonwebtoken';
import type { Browser, Page, Response } from 'playwright-core';
import { launchBrowser, recordingContext, screenshot, screenshotIfFailed, type RecordingContext } from '../helpers/browser.js';
import { startTestServer, type TestServer } from '../helpers/harness.js';
import { call } from '../helpers/http.js';
import { sendWithNodemailer } from '../helpers/smtp-client.js';
import { PASSWORD, UNTHROTTLED_ENV, usersApi, type ApiTenant, type UserBody } from '../helpers/users-api.js';

const NEW_PASSWORD = 'a brand new passphrase';

let t: TestServer;
let browser: Browser;
let origin: string;
let tenant: ApiTenant;
let alice: UserBody;
const open: RecordingContext[] = [];

before(async () => {
  t = await startTestServer(UNTHROTTLED_ENV);
  origin = `http://127.0.0.1:${t.apiPort}`;
  const users = usersApi(t);
  tenant = await users.newTenant('ui');
  alice = await users.createUser(tenant, { name: 'Alice Ui' });
  for (const n of ['one', 'two', 'three']) {
    assert.match(await sendWithNodemailer(t.smtpPort, { from: 'someone@elsewhere.test', to: alice.email, subject: `kbd ${n}`, text: `message ${n}` }), /^250 /);
  }
  browser = await launchBrowser();
});

afterEach((test) => screenshotIfFailed(open.at(-1)?.page, 'ui', test));

after(async () => {
  for (const rc of open) {
    if (rc.errors.length) console.log(`browser errors:\n${rc.errors.join('\n')}`);
    await rc.close();
  }
  await browser?.close();
  await t?.stop();
});

async function newPage(viewport?: { width: number; height: number }): Promise<RecordingContext> {
  const rc = await recordingContext(browser, origin, { viewport });
  open.push(rc);
  return rc;
}

async function logIn(page: Page, email: string, password = PASSWORD): Promise<void> {
  await page.goto('/login');
  await page.getByLabel('Email', { exact: true }).fill(email);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('navigation', { name: 'Sections' }).waitFor();
}

function rows(page: Page) {
  return page.getByRole('list', { name: 'Messages' }).getByTestId('message-row');
}

async function blur(page: Page): Promise<void> {
  await page.evaluate('document.activeElement && document.activeElement.blur && document.activeElement.blur()');
}

async function openSubject(page: Page): Promise<string> {
  const h2 = page.getByRole('article', { name: 'Message' }).getByRole('heading', { level: 2 });
  await h2.waitFor();
  return ((await h2.textContent()) ?? '').trim();
}

describe('static serving of the webmail', () => {
  it('serves index.html with the page CSP for / and any unknown page path, never cached', async () => {
    for (const p of ['/', '/mail/INBOX', '/some/unknown/path']) {
      const res = await fetch(`${origin}${p}`, { headers: { accept: 'text/html' } });
      assert.equal(res.status, 200, p);
      assert.match(res.headers.get('content-type') ?? '', /^text\/html/, p);
      const csp = res.headers.get('content-security-policy') ?? '';
      for (const directive of ["default-src 'self'", "script-src 'self'", "object-src 'none'", "frame-ancestors 'none'", "base-uri 'none'"]) {
        assert.ok(csp.includes(directive), `${p}: CSP ${csp} has ${directive}`);
      }
      assert.equal(res.headers.get('cache-control'), 'no-cache', p);
      assert.match(await res.text(), /<script[^>]+src="\/assets\/[^"]+\.js"/, p);
    }
  });

  it('serves the hashed assets as immutable for a year, and 404 for a missing one', async () => {
    const html = await (await fetch(`${origin}/`, { headers: { accept: 'text/html' } })).text();
    const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    assert.ok(assets.some((a) => a.endsWith('.js')) && assets.some((a) => a.endsWith('.css')), assets.join(', '));
    for (const a of assets) {
      const res = await fetch(`${origin}${a}`);
      assert.equal(res.status, 200, a);
      const cache = res.headers.get('cache-control') ?? '';
      assert.match(cache, /immutable/, `${a}: ${cache}`);
      assert.match(cache, /max-age=31536000/, `${a}: ${cache}`);
    }
    const missing = await fetch(`${origin}/assets/does-not-exist.js`);
    assert.equal(missing.status, 404);
    await missing.arrayBuffer();
  });

  it('answers an unknown /api path with a JSON 404, even to a browser asking for HTML', async () => {
    for (const accept of ['application/json', 'text/html']) {
      const res = await call<{ code: string; error: string }>(t.apiPort, 'GET', '/api/x', { headers: { accept } });
      assert.equal(res.status, 404, accept);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/, accept);
      assert.equal(res.body.code, 'not_found', res.text);
      assert.equal(res.headers.get('content-security-policy')?.includes("script-src 'self'") ?? false, false, 'no page CSP on API answers');
    }
  });
});

describe('webmail UI in Chromium', () => {
  it('shows the API error text on a wrong password', async () => {
    const expected = await call<{ error: string }>(t.apiPort, 'POST', '/api/auth/login', { body: { email: alice.email, password: 'wrong password' } });
    assert.equal(expected.status, 401);
    const { page } = await newPage();
    await page.goto('/login');
    await page.getByRole('heading', { name: 'Log in' }).waitFor();
    await page.getByLabel('Email', { exact: true }).fill(alice.email);
    await page.getByLabel('Password', { exact: true }).fill('wrong password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('alert').filter({ hasText: expected.body.error }).waitFor();
    assert.equal(await page.getByRole('navigation', { name: 'Sections' }).count(), 0, 'not signed in');
  });

  it('refreshes an expired access token silently and keeps working', async () => {
    const rc = await newPage();
    const { page } = rc;
    // the login answer is the real one, except its access token expired a minute ago (signed
    // with the server's own key): the next API call meets a real 401 from the server
    const expired = jwt.sign(
      { tenant_id: alice.tenant_id, email: alice.email, role: alice.role, typ: 'access', exp: Math.floor(Date.now() / 1000) - 60 },
      t.config.JWT_SECRET,
      { algorithm: 'HS256', subject: alice.id },
    );
    await page.route('**/api/auth/login', async (route) => {
      const response = await route.fetch();
      const body = (await response.json()) as Record<string, unknown>;
      await route.fulfill({ response, json: { ...body, access_token: expired } });
    });
    const statuses: string[] = [];
    page.on('response', (res: Response) => {
      const u = new URL(res.url());
      if (u.pathname.startsWith('/api/')) statuses.push(`${res.request().method()} ${u.pathname} ${res.status()}`);
    });
    await logIn(page, alice.email);
    await rows(page).first().waitFor();
    assert.ok(statuses.some((s) => / 401$/.test(s)), `the expired token met a 401: ${statuses.join(', ')}`);
    assert.ok(statuses.includes('POST /api/auth/refresh 200'), `then a silent refresh: ${statuses.join(', ')}`);
    // keeps working: another section and back, no login page in between
    await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Settings' }).click();
    await page.getByRole('heading', { name: 'Settings' }).waitFor();
    await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Mail' }).click();
    await rows(page).first().waitFor();
    assert.equal(await page.getByRole('heading', { name: 'Log in' }).count(), 0);
    assert.equal(statuses.filter((s) => s === 'POST /api/auth/refresh 200').length, 1, 'one refresh was enough');
  });

  it('keyboard: j/k move, o opens, r replies, c composes, Escape closes, / focuses search, # deletes', async () => {
    const { page } = await newPage();
    await logIn(page, alice.email);
    await rows(page).nth(2).waitFor();
    const subjects = (await rows(page).allTextContents()).map((text) => ['kbd one', 'kbd two', 'kbd three'].find((s) => text.includes(s)));

    await blur(page);
    await page.keyboard.press('j');
    await page.keyboard.press('o');
    const first = await openSubject(page);
    const i = subjects.indexOf(first);
    assert.ok(i >= 0 && i < 2, `opened ${first} of ${subjects.join(', ')}`);

    await blur(page);
    await page.keyboard.press('j');
    await page.keyboard.press('o');
    await page.getByRole('article', { name: 'Message' }).getByRole('heading', { level: 2, name: subjects[i + 1] }).waitFor();

    await blur(page);
    await page.keyboard.press('k');
    await page.keyboard.press('o');
    await page.getByRole('article', { name: 'Message' }).getByRole('heading', { level: 2, name: first }).waitFor();

    await blur(page);
    await page.keyboard.press('r');
    const compose = page.getByRole('form', { name: 'Compose' });
    await compose.waitFor();
    assert.equal(await compose.getByLabel('Subject').inputValue(), `Re: ${first}`);
    await blur(page);
    await page.keyboard.press('Escape');
    await compose.waitFor({ state: 'detached' });

    await blur(page);
    await page.keyboard.press('c');
    await compose.waitFor();
    assert.equal(await compose.getByLabel('To', { exact: true }).inputValue(), '');
    await blur(page);
    await page.keyboard.press('Escape');
    await compose.waitFor({ state: 'detached' });

    await blur(page);
    await page.keyboard.press('/');
    const search = page.getByLabel('Search mail');
    assert.equal(await page.evaluate('document.activeElement === document.querySelector(\'input[type="search"]\')'), true, 'search focused');
    assert.equal(await search.inputValue(), '', 'the slash was not typed into it');

    // the open message goes to Trash
    await blur(page);
    await page.keyboard.press('o');
    assert.equal(await openSubject(page), first);
    await blur(page);
    await page.keyboard.press('#');
    await rows(page).filter({ hasText: first }).waitFor({ state: 'detached' });
    assert.equal(await rows(page).count(), 2);
  });

  it('at 375 px wide the inbox has no horizontal scrollbar and the folders fold behind a button', async () => {
    const { page } = await newPage({ width: 375, height: 740 });
    await logIn(page, alice.email);
    await rows(page).first().waitFor();
    const overflow = async () => page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth');
    assert.ok((await overflow()) <= 0, `the inbox overflows by ${await overflow()} px`);
    await page.getByRole('button', { name: 'Folders' }).waitFor();
    await screenshot(page, 'inbox-375');
    await rows(page).first().click();
    await openSubject(page);
    assert.ok((await overflow()) <= 0, `the open message overflows by ${await overflow()} px`);
    await screenshot(page, 'message-375');
  });

  it('changes the password in Settings: the old refresh tokens die, the page keeps its session', async () => {
    const users = usersApi(t);
    const carol = await users.createUser(tenant, { name: 'Carol Ui' });
    const other = await users.login(carol.email);
    assert.equal(other.status, 200);
    const { page } = await newPage();
    await logIn(page, carol.email);
    const before = await page.evaluate<string | null>("localStorage.getItem('webmail.refresh_token')");
    assert.ok(before, 'the page holds a refresh token');

    await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Settings' }).click();
    await page.getByRole('heading', { name: 'Settings' }).waitFor();
    await page.getByLabel('Current password').fill('not my password');
    await page.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD);
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.getByRole('alert').first().waitFor();
    assert.equal((await users.login(carol.email)).status, 200, 'a wrong current password changes nothing');

    await page.getByLabel('Current password').fill(PASSWORD);
    await page.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD);
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.getByText('Password changed').waitFor();

    assert.equal((await users.refresh(other.body.refresh_token)).status, 401, 'the other session is revoked');
    assert.equal((await users.refresh(before)).status, 401, "the page's old refresh token is dead");
    assert.equal((await users.login(carol.email)).status, 401, 'the old password is refused');
    assert.equal((await users.login(carol.email, NEW_PASSWORD)).status, 200, 'the new one works');
    // the page got a new pair: a reload signs in again from its (new) refresh token
    await page.reload();
    await page.getByRole('navigation', { name: 'Sections' }).waitFor();
    assert.equal(await page.getByRole('heading', { name: 'Log in' }).count(), 0);
  });

  it('renders the admin pages for the owner', async () => {
    const { page } = await newPage();
    await logIn(page, tenant.ownerEmail);
    await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Admin' }).click();
    await page.getByLabel('Domain name').waitFor();
    await page.getByText(tenant.domain, { exact: true }).first().waitFor();
    const admin = page.getByRole('navigation', { name: 'Admin' });
    await admin.getByRole('link', { name: 'Users' }).click();
    await page.getByRole('button', { name: 'Create user' }).waitFor();
    await page.getByRole('progressbar', { name: `Quota used by ${alice.email}` }).waitFor();
    await admin.getByRole('link', { name: 'Providers' }).click();
    await page.getByRole('heading', { name: /provider/i }).first().waitFor();
    await admin.getByRole('link', { name: 'Audit log' }).click();
    await page.getByRole('table').first().waitFor();
    await page.getByRole('cell', { name: /^user\.create/ }).first().waitFor();
  });

  it('refuses the admin pages to a member, in the page and in the API', async () => {
    const { page } = await newPage();
    await logIn(page, alice.email);
    assert.equal(await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Admin' }).count(), 0, 'no Admin link');
    await page.goto('/admin/users');
    await page.getByText('Only owners and admins manage the organisation.').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Create user' }).count(), 0);
    const login = await usersApi(t).login(alice.email);
    const res = await call(t.apiPort, 'GET', '/api/users', { token: login.body.access_token });
    assert.equal(res.status, 403, res.text);
  });
});
