// real.mjs — the browser journey against the real `hearth serve` ($HEARTH) on a random
// loopback port, with a temporary model store (HEARTH_MODELS) holding a model created from
// ../shared/models/stories260K.gguf. Skipped (with the reason) while the binary has no
// server; it turns on by itself once `$HEARTH serve --help` exits 0.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  ROOT, DESKTOP, PHONE, T, openPage, pageWeight, firstPaint, waitModels, waitIdle, sampleGrowth,
  send, lastReply, screenshot,
} from './lib.mjs';

const HEARTH = process.env.HEARTH || '';
const SHARED = process.env.HEARTH_TEST_SHARED || path.join(ROOT, '../shared');
const MODEL_FILE = path.join(SHARED, 'models/stories260K.gguf');
const MODEL = 'stories';

// Returns null when the real server can be tested, else why not.
export async function hearthServeAvailable() {
  if (!HEARTH) return 'HEARTH is not set';
  if (!fs.existsSync(HEARTH)) return `${HEARTH} does not exist`;
  const r = spawnSync(HEARTH, ['serve', '--help'], { encoding: 'utf8', timeout: T(20000) });
  if (r.status !== 0) return `\`hearth serve\` is not available in this build yet (${(r.stderr || r.stdout || '').trim().split('\n')[0]})`;
  return null;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

// The listen address option is read from `serve --help`, so the test follows the CLI.
function listenArgs(help, port) {
  if (/--port\b/.test(help)) return [...(/--host\b/.test(help) ? ['--host', '127.0.0.1'] : []), '--port', String(port)];
  for (const flag of ['--host', '--listen', '--addr', '--address', '--bind']) {
    if (new RegExp(flag + '\\b').test(help)) return [flag, `127.0.0.1:${port}`];
  }
  return [];
}

async function waitReady(url, child, log) {
  const deadline = Date.now() + T(60000);
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`hearth serve exited (${child.exitCode}):\n${log.join('')}`);
    try {
      const r = await fetch(url + '/api/tags');
      if (r.ok || r.status === 401) return;   // answering (401: API keys are on)
    } catch (_) { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`hearth serve did not answer on ${url}:\n${log.join('')}`);
}

// Creates the test model with the CLI (the server's /api/create does not read its own
// files, so a path cannot go through it).
async function createModel(env, url, dir) {
  const modelfile = path.join(dir, 'Modelfile');
  fs.writeFileSync(modelfile, `FROM ${MODEL_FILE}\n`);
  const cli = spawnSync(HEARTH, ['create', MODEL, '-f', modelfile], { env, encoding: 'utf8', timeout: T(60000) });
  if (cli.status === 0) return 'cli';
  throw new Error(`could not create the model: hearth create said: ${(cli.stderr || '').trim()}`);
}

async function startHearth({ apiKey = '', withModel = true } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-browser-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = { ...process.env, HEARTH_MODELS: path.join(dir, 'models'), HEARTH_HOST: `127.0.0.1:${port}` };
  fs.mkdirSync(env.HEARTH_MODELS);
  if (apiKey) env.HEARTH_API_KEYS = apiKey;
  const help = spawnSync(HEARTH, ['serve', '--help'], { encoding: 'utf8' }).stdout || '';
  const log = [];
  const child = spawn(HEARTH, ['serve', ...listenArgs(help, port)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => log.push(String(d)));
  child.stderr.on('data', (d) => log.push(String(d)));
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await Promise.race([new Promise((r) => child.once('exit', r)), new Promise((r) => setTimeout(r, T(10000)))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitReady(url, child, log);
    const how = withModel ? await createModel(env, url, dir) : 'none';
    return { url, child, log, stop, how };
  } catch (e) {
    await stop();
    throw e;
  }
}

// The headers docs/web.md asks for: content types, ETag + no-cache, 304 on revalidation,
// the CSP; and the page's files load without an API key when keys are on.
async function checkHeaders(url) {
  for (const [p, type] of [['/', 'text/html'], ['/app.js', 'text/javascript'], ['/md.js', 'text/javascript'], ['/style.css', 'text/css'], ['/favicon.svg', 'image/svg+xml']]) {
    const res = await fetch(url + p);
    assert.equal(res.status, 200, p);
    assert.ok((res.headers.get('content-type') || '').startsWith(type), `${p}: ${res.headers.get('content-type')}`);
    const etag = res.headers.get('etag');
    assert.ok(etag, `${p}: ETag`);
    assert.ok(/no-cache|max-age/.test(res.headers.get('cache-control') || ''), `${p}: Cache-Control ${res.headers.get('cache-control')}`);
    const again = await fetch(url + p, { headers: { 'If-None-Match': etag } });
    assert.equal(again.status, 304, `${p}: revalidation answers 304`);
  }
  const res = await fetch(url + '/');
  assert.ok((res.headers.get('content-security-policy') || '').includes("script-src 'self'"), 'CSP header on the page');
}

// With API keys on, the page and its files still load (the browser cannot send a key for
// them); the API answers 401 without the key and the page then asks for it.
export async function realServerApiKey(t, browser) {
  const srv = await startHearth({ apiKey: 'test-key-123', withModel: false });
  const { page, context } = await openPage(browser, srv.url);
  try {
    for (const p of ['/', '/app.js', '/md.js', '/style.css', '/theme.js', '/favicon.svg']) {
      assert.equal((await fetch(srv.url + p)).status, 200, `${p} without a key`);
    }
    assert.equal((await fetch(srv.url + '/api/tags')).status, 401);
    await page.waitForSelector('#apikey', { timeout: T(15000) });
    await page.fill('#apikey', 'test-key-123');
    await page.press('#apikey', 'Enter');
    // Accepted: the key prompt goes and the model list loads; with no models installed the
    // page then says so in a banner of its own (waiting for the banner to hide would sit out
    // the whole timeout whenever that banner came up first).
    await page.waitForFunction(() => {
      const b = document.querySelector('#banner');
      return !b || b.hidden || !/API key/.test(b.innerText);
    }, null, { timeout: T(15000) }).catch(() => {});
    const banner = await page.locator('#banner').innerText().catch(() => '');
    assert.ok(!/API key/.test(banner), `key accepted: ${banner}`);
  } finally {
    await context.close();
    await srv.stop();
  }
  assertCleanLog(srv.log);
}

// The ASan/UBSan build reports to stderr; any report fails the test.
function assertCleanLog(log) {
  const text = log.join('');
  const m = /(ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:)[^\n]*/.exec(text);
  assert.ok(!m, `sanitizer report from hearth serve: ${m && m[0]}\n${text.slice(-3000)}`);
}

export async function realServerJourney(t, browser) {
  const srv = await startHearth();
  t.diagnostic(`hearth serve on ${srv.url}, model created via ${srv.how}`);
  const { page, context, watch } = await openPage(browser, srv.url, { viewport: DESKTOP });
  let t0 = Date.now();
  const step = (what) => { t.diagnostic(`real server: ${what} ${Date.now() - t0} ms`); t0 = Date.now(); };
  try {
    await waitModels(page);
    const weight = await pageWeight(watch);
    const fcp = await firstPaint(page);
    t.diagnostic(`real server: page weight ${weight} bytes, first contentful paint ${fcp.toFixed(0)} ms`);
    assert.ok(weight < 100 * 1024, `page weight ${weight}`);
    assert.ok(fcp < T(2000), `first paint ${fcp} ms`);

    const names = await page.locator('#model option').evaluateAll((os) => os.map((o) => o.value));
    const name = names.find((n) => n.startsWith(MODEL));
    assert.ok(name, `model in picker: ${names}`);
    await page.selectOption('#model', name);
    await page.waitForSelector('#model-info .chip >> text=llama');

    // Enough tokens to stream over many frames, few enough to keep the ASan run short.
    await page.click('#settings-btn');
    await page.fill('[name=num_predict]', '100');
    await page.fill('[name=seed]', '7');
    await page.click('#close-settings');
    const growth = sampleGrowth(page);
    await send(page, 'Once upon a time');
    const seen = await growth;
    await waitIdle(page, 60000);
    step('first reply');
    t.diagnostic(`real server: reply grew over ${seen.length} distinct frames`);
    const errs = page.locator('.msg.assistant .err');
    const err = (await errs.count()) ? await errs.last().innerText() : '';
    assert.ok(!err, `the reply failed: ${err}`);
    assert.ok(seen.length >= 3, `reply grew over ${seen.length} frames`);
    const first = (await lastReply(page).textContent()).trim();
    assert.ok(first.length > 20, `a reply: ${first}`);
    const stats = await page.locator('.msg.assistant .stats').last().textContent();
    assert.ok(/tok\/s/.test(stats) && / out/.test(stats), stats);

    // Stop: ask for a long reply (the model may start with blank lines, so don't wait for
    // visible text), stop it while it streams, and check that the server ended the request
    // (it logs each request when it completes) instead of generating on.
    await page.click('#settings-btn');
    await page.fill('[name=num_predict]', '100000');
    await page.click('#close-settings');
    const chatLines = () => srv.log.join('').split('path="/api/chat"').length;
    const before = chatLines();
    await send(page, 'Tell me a very long story');
    await page.waitForTimeout(T(400));
    assert.ok(await page.locator('#stop').isVisible(), 'still generating when Esc is pressed');
    await page.keyboard.press('Escape');
    await waitIdle(page, 10000);
    const stoppedStats = await page.locator('.msg.assistant .stats').last().innerText();
    assert.ok(stoppedStats.includes('stopped'), stoppedStats);
    const deadline = Date.now() + T(5000);
    while (chatLines() === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(chatLines() > before, 'the server finished the cancelled request within 5 s');
    step('stop');
    t.diagnostic(`real server: after Esc: ${stoppedStats.replace(/\s+/g, ' ')}`);

    // Regenerate and edit: both must produce a fresh complete reply.
    await page.click('#settings-btn');
    await page.fill('[name=num_predict]', '12');
    await page.click('#close-settings');
    await page.locator('.actions button', { hasText: /Regenerate|Retry/ }).click();
    await waitIdle(page, 60000);
    assert.ok((await lastReply(page).textContent()).length > 0);
    step('regenerate');
    const u = page.locator('.msg.user').first();
    await u.hover();
    await u.locator('button', { hasText: 'Edit' }).click();
    await page.fill('.edit-box textarea', 'Lily went to the park');
    await page.click('.edit-box .edit-send');
    await waitIdle(page, 60000);
    assert.equal(await page.locator('.msg').count(), 2);
    assert.ok((await lastReply(page).textContent()).length > 0);

    step('edit');
    await page.reload();
    await waitModels(page);
    assert.ok((await page.locator('.chat-open').allTextContents()).includes('Lily went to the park'));
    assert.equal(await page.locator('.msg.user .body').first().textContent(), 'Lily went to the park');
    await screenshot(page, 'real-desktop-light.png');
    await page.setViewportSize(PHONE);
    await page.emulateMedia({ colorScheme: 'dark' });
    // the sidebar slides away when the layout turns narrow: wait for it
    await page.waitForFunction(() => document.getElementById('sidebar').getBoundingClientRect().right <= 0);
    await screenshot(page, 'real-phone-dark.png');
    assert.deepEqual(watch.errors, []);
    await checkHeaders(srv.url);

    // The server's context error, in its own words, and the way on; a reply that fills the
    // context says so (settings belong to the chat: a new chat starts without them).
    await page.setViewportSize(DESKTOP);
    await page.click('#new-chat');
    const settings = async (fields) => {
      await page.click('#settings-btn');
      for (const [k, v] of Object.entries(fields)) await page.fill(`[name=${k}]`, v);
      await page.click('#close-settings');
    };
    const story = 'Once upon a time there was a little girl named Lily. She liked to play.';
    await settings({ num_ctx: '30', seed: '7' });
    await send(page, story);
    await waitIdle(page, 60000);
    const full = await page.locator('.msg.assistant .stats').last().innerText();
    assert.ok(/context window full/.test(full) && !/max tokens/.test(full), full);
    await settings({ num_ctx: '48', num_predict: '8' });
    await send(page, story);
    await waitIdle(page, 60000);
    const cerr = await page.locator('.msg.assistant .err').last().innerText();
    assert.ok(/too long for the context window — it needs \d+ tokens, the context holds 48\./.test(cerr), cerr);
    await page.locator('.actions button', { hasText: 'Leave out older messages' }).click();
    await waitIdle(page, 60000);
    assert.equal(await page.locator('.msg.assistant .err').count(), 0, await page.locator('.msg.assistant .err').allInnerTexts().then((a) => a.join('|')));
    assert.equal(await page.locator('.msg.omitted').count(), 2);
    assert.ok((await lastReply(page).textContent()).trim().length > 0);
    step('context');
  } catch (e) {
    t.diagnostic('hearth serve log:\n' + srv.log.join('').slice(-4000));
    const c = srv.child;
    if (c.exitCode === null && !c.signalCode) await Promise.race([new Promise((r) => c.once('exit', r)), new Promise((r) => setTimeout(r, 500))]);
    if (c.exitCode !== null || c.signalCode) throw new Error(`hearth serve died (exit ${c.exitCode}, signal ${c.signalCode}) — ${e.message}`, { cause: e });
    throw e;
  } finally {
    await context.close();
    await srv.stop();
  }
  assertCleanLog(srv.log);
}
