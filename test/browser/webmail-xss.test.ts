/**
 * Hostile HTML in a real Chromium (issue 5, "Prove it": XSS). Messages delivered over SMTP carry
 * the classic payloads: script tags (also inside SVG), event handlers, javascript: links, frames,
 * forms, objects, meta refresh, <base>, stylesheets and @import, CSS url() beacons and a remote
 * tracking pixel, all pointing at a local HTTP "beacon" server on 127.0.0.1. Each is opened in
 * the webmail and must execute nothing and load nothing: no dialog, no request to anything but
 * the page's own origin (from any frame), zero hits on the beacon, and the body's iframe never
 * allowed to run scripts or submit forms. Then "Show images" on the pixel message makes the
 * beacon see the image request: the block was the gate, not a broken test setup.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, afterEach, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { eventually, launchBrowser, recordingContext, screenshotIfFailed, type RecordingContext } from '../helpers/browser.js';
import { seedMailbox, startTestServer, type TestServer } from '../helpers/harness.js';
import { sendWithNodemailer } from '../helpers/smtp-client.js';
import { PASSWORD, UNTHROTTLED_ENV } from '../helpers/users-api.js';

const ALICE = 'alice@xss.test';
// a 1x1 transparent PNG
const PIXEL = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=', 'base64');

interface Beacon {
  url: string;
  hits: string[];
  stop(): Promise<void>;
}

/** Counts every request; answers images with a real PNG so a shown image really loads. */
async function startBeacon(): Promise<Beacon> {
  const hits: string[] = [];
  const server = http.createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    if (req.url?.endsWith('.png')) res.writeHead(200, { 'content-type': 'image/png' }).end(PIXEL);
    else res.writeHead(200, { 'content-type': 'text/plain' }).end('beacon');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    hits,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The payloads: subject → HTML body. `B` is the beacon's base URL. */
function payloads(B: string): [string, string][] {
  return [
    ['xss script', `<p>script test</p><script>alert('script')</script><script src="${B}/script.js"></script>`],
    ['xss onerror', `<p>onerror test</p><img src=x onerror="alert('onerror')"><img src="data:," onerror="alert('onerror2')"><p onmouseover="alert('hover')">hover me</p>`],
    ['xss javascript link', `<p>link test</p><a id="js" href="javascript:alert('link')">click me</a> <a href="JaVaScRiPt:alert('link2')">and me</a>`],
    ['xss iframe', `<p>iframe test</p><iframe src="${B}/iframe"></iframe><iframe srcdoc="<script>alert('srcdoc')</script>"></iframe>`],
    ['xss form', `<p>form test</p><form action="${B}/form" method="post"><input name="q" value="x" autofocus onfocus="alert('focus')"><button type="submit">Go</button></form>`],
    ['xss css background', `<div style="background:url(${B}/bg.png);width:50px;height:50px">css background</div><div style="background-image: url('${B}/bg2.png')">again</div>`],
    ['xss pixel', `<p>pixel test</p><img src="${B}/pixel.png" alt="pixel" width="1" height="1">`],
    ['xss link stylesheet', `<link rel="stylesheet" href="${B}/style.css"><p>stylesheet test</p>`],
    ['xss style import', `<style>@import url(${B}/import.css); p { background: url(${B}/style-bg.png) }</style><p>import test</p>`],
    ['xss svg script', `<p>svg test</p><svg xmlns="http://www.w3.org/2000/svg"><script>alert('svg')</script><image href="${B}/svg-image.png"/></svg>`],
    ['xss meta refresh', `<meta http-equiv="refresh" content="0;url=${B}/refresh"><p>refresh test</p>`],
    ['xss object', `<p>object test</p><object data="${B}/object"></object><embed src="${B}/embed">`],
    ['xss base href', `<base href="${B}/base/"><p>base test</p><img src="relative.png"><a href="relative-link">rel</a>`],
    ['xss media', `<body onload="alert('onload')"><p>media test</p><video poster="${B}/poster.png" src="${B}/video"></video><audio src="${B}/audio"></audio></body>`],
  ];
}

function rawMessage(subject: string, html: string): string {
  return [
    'From: Mallory <mallory@evil.example>',
    `To: ${ALICE}`,
    `Subject: ${subject}`,
    'Date: Sat, 21 Nov 2026 06:00:00 +0000',
    `Message-ID: <${subject.replace(/\W+/g, '-')}@evil.example>`,
    'MIME-Version: 1.0',
    'Content-Type: text/html; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    `<html><head><title>t</title></head><body>${html}</body></html>`,
    '',
  ].join('\r\n');
}

let t: TestServer;
let beacon: Beacon;
let browser: Browser;
let rc: RecordingContext;
let page: Page;
let origin: string;
let cases: [string, string][];

before(async () => {
  beacon = await startBeacon();
  t = await startTestServer(UNTHROTTLED_ENV);
  origin = `http://127.0.0.1:${t.apiPort}`;
  await seedMailbox(t.services, ALICE, { password: PASSWORD });
  cases = payloads(beacon.url);
  for (const [subject, html] of cases) {
    assert.match(await sendWithNodemailer(t.smtpPort, { from: 'mallory@evil.example', to: ALICE, raw: rawMessage(subject, html) }), /^250 /);
  }
  browser = await launchBrowser();
  rc = await recordingContext(browser, origin);
  page = rc.page;
  await page.goto('/login');
  await page.getByLabel('Email', { exact: true }).fill(ALICE);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('list', { name: 'Messages' }).getByTestId('message-row').first().waitFor();
});

afterEach((test) => screenshotIfFailed(page, 'xss', test));

after(async () => {
  if (rc?.errors.length) console.log(`browser errors:\n${rc.errors.join('\n')}`);
  await rc?.close();
  await browser?.close();
  await t?.stop();
  await beacon?.stop();
});

const settle = (ms = 300) => new Promise((r) => setTimeout(r, ms));

function body() {
  return page.locator('iframe[title="Message body"]');
}

async function open(subject: string): Promise<void> {
  await page.getByRole('list', { name: 'Messages' }).getByTestId('message-row').filter({ hasText: subject }).click();
  await page.getByRole('article', { name: 'Message' }).getByRole('heading', { level: 2, name: subject }).waitFor();
  await body().waitFor({ state: 'attached' });
}

describe('webmail: hostile HTML executes nothing and loads nothing', () => {
  it('opens every payload: no dialog, no request off the origin, zero beacon hits, a frame without scripts or forms', async () => {
    for (const [subject] of cases) {
      await open(subject);
      const sandbox = await body().getAttribute('sandbox');
      assert.notEqual(sandbox, null, `${subject}: the frame is sandboxed`);
      const tokens = (sandbox ?? '').split(/\s+/).filter(Boolean);
      for (const forbidden of ['allow-scripts', 'allow-forms', 'allow-top-navigation', 'allow-modals']) {
        assert.ok(!tokens.includes(forbidden), `${subject}: sandbox="${sandbox}" must not have ${forbidden}`);
      }
      const srcdoc = (await body().getAttribute('srcdoc')) ?? '';
      assert.match(srcdoc, /http-equiv="?Content-Security-Policy"?[^>]*default-src 'none'/i, `${subject}: the body carries its own CSP`);
      assert.doesNotMatch(srcdoc, /<script|javascript:|\son[a-z]+\s*=|<iframe|<form|<object|<embed|http-equiv="?refresh/i, `${subject}: sanitised`);
      assert.ok(!new RegExp(`<base[^>]*${beacon.url}`).test(srcdoc), `${subject}: no <base> pointing away`);
      await settle();
      const frame = page.frames().find((f) => f !== page.mainFrame() && f.url() !== '' && f.parentFrame() === page.mainFrame());
      assert.ok(!frame || /^about:(srcdoc|blank)$/.test(frame.url()), `${subject}: the body frame did not navigate (${frame?.url()})`);
    }
    await settle(500);
    assert.deepEqual(rc.dialogs, [], 'no dialog fired');
    assert.deepEqual(rc.foreignRequests(origin), [], 'no request left the origin');
    assert.deepEqual(beacon.hits, [], 'the beacon server saw nothing');
    assert.equal(page.url().startsWith(origin), true);
  });

  it('clicking the javascript: links does nothing', async () => {
    await open('xss javascript link');
    const pagesBefore = rc.context.pages().length;
    const url = page.url();
    const frame = page.frameLocator('iframe[title="Message body"]');
    await frame.getByText('click me').click();
    await frame.getByText('and me').click();
    await settle(500);
    assert.deepEqual(rc.dialogs, []);
    assert.equal(rc.context.pages().length, pagesBefore, 'no window opened');
    assert.equal(page.url(), url, 'the page did not navigate');
    assert.deepEqual(rc.foreignRequests(origin), []);
  });

  it('"Show images" on the pixel message lets exactly that image through to the beacon', async () => {
    await open('xss pixel');
    await settle();
    assert.deepEqual(beacon.hits, [], 'blocked until asked');
    await page.getByRole('button', { name: 'Show images' }).click();
    await eventually('the beacon to see the pixel', () => Promise.resolve(beacon.hits.includes('GET /pixel.png')), 5000);
    const foreign = rc.foreignRequests(origin).map((r) => r.url);
    assert.ok(foreign.length > 0 && foreign.every((u) => u === `${beacon.url}/pixel.png`), foreign.join(', '));
    assert.deepEqual(beacon.hits.filter((h) => h !== 'GET /pixel.png'), []);
    assert.deepEqual(rc.dialogs, []);
  });
});
