// lib.mjs — shared helpers for the browser tests: launching Debian's Chromium through
// playwright-core, watching a page for console errors and page weight, and driving the chat.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '../..');
export const ARTIFACTS = process.env.HEARTH_ARTIFACTS || path.join(ROOT, 'build/test-artifacts');
// Timeouts scale with HEARTH_TEST_SLOW (the ASan build of hearth is several times slower).
export const SLOW = Math.max(1, Number(process.env.HEARTH_TEST_SLOW || 1));
export const T = (ms) => Math.round(ms * SLOW);

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

export async function launch() {
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) throw new Error(`Chromium not found at ${executablePath} (apt-get install chromium)`);
  // --no-sandbox: CI and the dev machines run as root, where Chromium's sandbox cannot start.
  return chromium.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
}

// Opens `url` in a fresh context and records console errors, page errors and the bytes of
// every non-API response (the page weight).
export async function openPage(browser, url, { viewport = DESKTOP, colorScheme = 'light', isMobile = false } = {}) {
  const context = await browser.newContext({ viewport, colorScheme, isMobile, hasTouch: isMobile, acceptDownloads: true, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const watch = { errors: [], weight: 0, pending: [], resources: [] };
  page.on('console', (m) => { if (m.type() === 'error') watch.errors.push(m.text()); });
  page.on('pageerror', (e) => watch.errors.push('pageerror: ' + e.message));
  page.on('response', (r) => {
    if (new URL(r.url()).pathname.startsWith('/api/')) return;
    watch.pending.push(r.body().then((b) => { watch.weight += b.length; watch.resources.push([new URL(r.url()).pathname, b.length, r.status()]); }).catch(() => {}));
  });
  await page.goto(url, { waitUntil: 'load', timeout: T(30000) });
  return { page, context, watch };
}

export async function pageWeight(watch) {
  await Promise.all(watch.pending);
  return watch.weight;
}

export const firstPaint = (page) => page.evaluate(() => {
  const e = performance.getEntriesByName('first-contentful-paint')[0] || performance.getEntriesByName('first-paint')[0];
  return e ? e.startTime : NaN;
});

export async function waitModels(page) {
  await page.waitForSelector('#model:not([disabled])', { timeout: T(30000) });
}

export async function waitIdle(page, timeout = 30000) {
  await page.waitForSelector('#stop[hidden]', { state: 'attached', timeout: T(timeout) });
  await page.waitForSelector('.body.pending', { state: 'detached', timeout: T(timeout) });
}

// Starts sampling, once per animation frame, the text length of the last reply; resolves
// with the distinct lengths seen once the reply has started and finished.
export function sampleGrowth(page) {
  return page.evaluate(() => new Promise((resolve) => {
    const seen = [];
    let started = false;
    const t0 = performance.now();
    const tick = () => {
      const bodies = document.querySelectorAll('.msg.assistant .body');
      const b = bodies[bodies.length - 1];
      const len = b ? b.textContent.length : -1;
      if (!seen.length || seen[seen.length - 1] !== len) seen.push(len);
      const busy = !document.getElementById('stop').hidden;
      if (busy) started = true;
      if ((started && !busy) || performance.now() - t0 > 120000) { resolve(seen); return; }
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }));
}

export async function send(page, text) {
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
}

export const lastReply = (page) => page.locator('.msg.assistant .body').last();

export async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, name);
  await page.screenshot({ path: file });
  return file;
}

// Background luminance of <body> (0 = black, 1 = white).
export const bodyLuminance = (page) => page.evaluate(() => {
  const m = /rgba?\((\d+), (\d+), (\d+)/.exec(getComputedStyle(document.body).backgroundColor);
  return m ? (0.2126 * m[1] + 0.7152 * m[2] + 0.0722 * m[3]) / 255 : NaN;
});
