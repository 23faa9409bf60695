/**
 * A real Chromium for the webmail tests: Debian's /usr/bin/chromium driven by playwright-core
 * (`npx playwright install` cannot download browsers on these machines). Headless, sandbox off
 * (containers run it as root), and every background service that would phone home switched off,
 * so the only network traffic is what the page itself asks for.
 *
 * A context made by recordingContext() records every request of every page and frame in it
 * (srcdoc message frames included) and every dialog (alert/confirm/prompt, dismissed at once),
 * so a test can assert "nothing left the origin" and "nothing fired". Screenshots for review go
 * to test-results/screenshots/<name>.png.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** The flags DEVELOPERS.md documents; nothing here reaches Google's services. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // the Debian wrapper adds this when /dev/shm is small; containers often have 64 MB
  '--disable-dev-shm-usage',
];

export const SCREENSHOT_DIR = path.resolve('test-results', 'screenshots');

export interface RecordedRequest {
  url: string;
  method: string;
  resourceType: string;
  /** The URL of the frame that asked (about:srcdoc for a message body). */
  frameUrl: string;
}

export interface RecordedDialog {
  type: string;
  message: string;
}

export interface RecordingContext {
  context: BrowserContext;
  page: Page;
  requests: RecordedRequest[];
  dialogs: RecordedDialog[];
  /** console errors and uncaught page errors, shown when a test fails */
  errors: string[];
  /** Requests to anything but `origin` (data:, blob: and about: stay inside the page). */
  foreignRequests(origin: string): RecordedRequest[];
  close(): Promise<void>;
}

/** Set HEADFUL=1 (with a display) to watch a test; SLOWMO=<ms> slows each action. */
export async function launchBrowser(): Promise<Browser> {
  const headful = process.env.HEADFUL === '1';
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: !headful,
    args: headful ? CHROMIUM_ARGS.filter((a) => a !== '--headless') : CHROMIUM_ARGS,
    slowMo: Number(process.env.SLOWMO ?? 0),
    timeout: 30_000,
  });
}

export async function recordingContext(
  browser: Browser,
  baseURL: string,
  options: { viewport?: { width: number; height: number } } = {},
): Promise<RecordingContext> {
  const context = await browser.newContext({ baseURL, viewport: options.viewport ?? { width: 1280, height: 800 }, serviceWorkers: 'block' });
  context.setDefaultTimeout(10_000);
  const requests: RecordedRequest[] = [];
  const dialogs: RecordedDialog[] = [];
  const errors: string[] = [];
  context.on('request', (req) => {
    let frameUrl = '';
    try {
      frameUrl = req.frame().url();
    } catch {
      // a request without a frame (none expected: service workers are blocked)
    }
    requests.push({ url: req.url(), method: req.method(), resourceType: req.resourceType(), frameUrl });
  });
  context.on('dialog', (dialog) => {
    dialogs.push({ type: dialog.type(), message: dialog.message() });
    dialog.dismiss().catch(() => undefined);
  });
  const page = await context.newPage();
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  return {
    context,
    page,
    requests,
    dialogs,
    errors,
    foreignRequests(origin) {
      return requests.filter((r) => !r.url.startsWith(`${origin}/`) && !/^(data|blob|about):/.test(r.url));
    },
    close: () => context.close(),
  };
}

/** A full-page PNG in test-results/screenshots/<name>.png; returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes (then throws `what`). */
export async function eventually<T>(what: string, check: () => Promise<T | undefined | null | false>, timeoutMs = 10_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * For afterEach: a screenshot of `page` named after the test when it failed
 * (test-results/screenshots/failed-<prefix>-<test name>.png), the first thing to look at.
 */
export async function screenshotIfFailed(page: Page | undefined, prefix: string, test: { name: string }): Promise<void> {
  // node:test's TestContext has `passed` (Node >= 21); @types/node does not declare it yet
  if (!page || (test as { passed?: boolean }).passed !== false || page.isClosed()) return;
  const slug = test.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60);
  await screenshot(page, `failed-${prefix}-${slug}`).catch(() => undefined);
}
