// chat.test.mjs — browser test of hearth's chat page (web/), with Debian's Chromium driven
// by playwright-core.
//
// Part 1 runs against mock_server.mjs (the page's files from web/ plus a fake streaming
// Ollama API), which makes the hostile-reply (XSS), cancellation and error cases
// deterministic. Part 2 (real.mjs) runs the same user journey against `hearth serve` on a
// loopback port with a model created from ../shared/models/stories260K.gguf; it runs
// whenever $HEARTH is set and `$HEARTH serve --help` works.
//
// Screenshots go to build/test-artifacts/. Run: `npm ci && node --test chat.test.mjs`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startMock } from './mock_server.mjs';
import {
  ROOT, DESKTOP, PHONE, T, launch, openPage, pageWeight, firstPaint, waitModels, waitIdle,
  sampleGrowth, send, lastReply, screenshot, bodyLuminance,
} from './lib.mjs';
import { realServerJourney, realServerApiKey, hearthServeAvailable } from './real.mjs';

const SHARED = process.env.HEARTH_TEST_SHARED || path.join(ROOT, '../shared');
let browser;
let mock;

before(async () => {
  browser = await launch();
  mock = await startMock();
});
after(async () => {
  if (browser) await browser.close();
  if (mock) await mock.close();
});

const lastRequest = () => mock.state.requests[mock.state.requests.length - 1];

test('mock: full chat journey at desktop width', async (t) => {
  const { page, context, watch } = await openPage(browser, mock.url, { viewport: DESKTOP });
  try {
    await t.test('page loads fast, small, with no console errors', async () => {
      await waitModels(page);
      const weight = await pageWeight(watch);
      const fcp = await firstPaint(page);
      t.diagnostic(`page weight ${weight} bytes (${watch.resources.map(([p, n]) => `${p} ${n}`).join(', ')}); first contentful paint ${fcp.toFixed(0)} ms`);
      assert.ok(weight > 5000 && weight < 100 * 1024, `page weight ${weight} must be under 100 KB`);
      assert.ok(fcp < T(1500), `first paint ${fcp} ms`);
      assert.ok(watch.resources.every(([, , s]) => s === 200), JSON.stringify(watch.resources));
      assert.deepEqual(watch.errors, []);
      await screenshot(page, 'chat-desktop-empty.png');
    });

    await t.test('model picker lists models with details and loaded state', async () => {
      const options = await page.locator('#model option').allTextContents();
      assert.equal(options.length, 2);
      assert.ok(options[0].includes('stories:260k') && options[0].includes('260K F32'), options[0]);
      await page.selectOption('#model', 'llava-mock:7b');
      await page.waitForSelector('#attach:not([hidden])');
      await assert.doesNotReject(page.waitForSelector('#model-info .chip >> text=vision'));
      await page.selectOption('#model', 'stories:260k');
      await page.waitForSelector('#model-info .chip >> text=512 ctx');
      const info = await page.textContent('#model-info');
      for (const want of ['not loaded', 'llama', '260K', 'F32', '512 ctx']) assert.ok(info.includes(want), `${want} in ${info}`);
      assert.ok(await page.locator('#attach').isHidden(), 'no image control for a text-only model');
    });

    await t.test('settings show model defaults and are sent with the request', async () => {
      await page.click('#settings-btn');
      await page.waitForSelector('#settings:not([hidden])');
      assert.equal(await page.evaluate(() => document.activeElement.name), 'system', 'the focus moves into the panel');
      assert.equal(await page.getAttribute('[name=temperature]', 'placeholder'), '0.7');   // from the model's parameters
      assert.equal(await page.getAttribute('[name=top_k]', 'placeholder'), '40');
      assert.ok((await page.getAttribute('[name=num_ctx]', 'placeholder')).includes('512'));
      await page.fill('[name=temperature]', '0.3');
      await page.fill('[name=seed]', '42');
      await page.fill('[name=system]', 'You are terse.');
      await page.keyboard.press('Escape');
      assert.ok(await page.locator('#settings').isHidden());
      assert.equal(await page.evaluate(() => document.activeElement.id), 'settings-btn', 'and back when it closes');
    });

    await t.test('send a message: the reply streams in over several frames', async () => {
      const growth = sampleGrowth(page);
      await send(page, 'Hello there');
      const seen = await growth;
      await waitIdle(page);
      t.diagnostic(`reply lengths seen per frame: ${seen.length} distinct`);
      assert.ok(seen.length >= 5, `reply grew over ${seen.length} frames`);
      // (rendered length may dip for a frame when a Markdown marker closes, e.g. "**bold**")
      const final = seen[seen.length - 1];
      assert.ok(final > 100 && seen.filter((n) => n > 0 && n < final * 0.8).length >= 3, `partial replies were shown: ${seen}`);
      const req = lastRequest();
      assert.equal(req.model, 'stories:260k');
      assert.equal(req.stream, true);
      assert.deepEqual(req.options, { temperature: 0.3, seed: 42 });
      assert.deepEqual(req.messages, [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Hello there' }]);
      const reply = lastReply(page);
      assert.equal(await reply.locator('h2').textContent(), 'A short answer');
      assert.equal(await reply.locator('strong').first().textContent(), 'bold');
      assert.equal(await reply.locator('ul > li').count(), 2);
      assert.equal(await reply.locator('ol > li').count(), 2);
      assert.equal(await reply.locator('pre code').textContent(), 'int main(void) {\n    return 0;\n}');
      assert.equal(await reply.locator('.code button.copy-code').count(), 1);
      assert.equal(await reply.locator('table tbody tr').count(), 2);
      assert.equal(await reply.locator('a').getAttribute('href'), 'https://example.com/');
      const stats = await page.locator('.msg.assistant .stats').last().textContent();
      for (const want of ['to first token', 'tok/s', ' in', ' out', 'no cache hit']) assert.ok(stats.includes(want), `${want} in ${stats}`);
      assert.ok((await page.textContent('#model-info')).includes('loaded'));
      assert.ok((await page.locator('#model option').first().textContent()).startsWith('● '), 'loaded marker in the picker');
    });

    await t.test('code block copy button copies the code', async () => {
      await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: mock.url });
      await lastReply(page).locator('.copy-code').click();
      await page.waitForSelector('.copy-code >> text=Copied');
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), 'int main(void) {\n    return 0;\n}');
    });

    await t.test('Esc stops a long reply and the request is cancelled', async () => {
      const abortedBefore = mock.state.aborted;
      await send(page, 'tell me a long story');
      await page.waitForFunction(() => {
        const b = [...document.querySelectorAll('.msg.assistant .body')].pop();
        return b && b.textContent.length > 40;
      }, null, { timeout: T(10000) });
      assert.ok(await page.locator('#stop').isVisible());
      await page.keyboard.press('Escape');
      await waitIdle(page, 5000);
      const deadline = Date.now() + 3000;
      while (mock.state.aborted === abortedBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(mock.state.aborted, abortedBefore + 1, 'the server saw the connection close');
      const frozen = await lastReply(page).textContent();
      await page.waitForTimeout(300);
      assert.equal(await lastReply(page).textContent(), frozen, 'no more text after stop');
      assert.ok((await page.locator('.msg.assistant .stats').last().textContent()).includes('stopped'));
    });

    await t.test('the Stop button also cancels', async () => {
      const abortedBefore = mock.state.aborted;
      await send(page, 'another long one');
      await page.waitForFunction(() => [...document.querySelectorAll('.msg.assistant .body')].pop().textContent.length > 10, null, { timeout: T(10000) });
      await page.click('#stop');
      await waitIdle(page, 5000);
      assert.equal(await page.evaluate(() => document.activeElement.id), 'input', 'the focus goes back to the message box');
      const deadline = Date.now() + 3000;
      while (mock.state.aborted === abortedBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(mock.state.aborted, abortedBefore + 1);
    });

    await t.test('regenerate replaces the last reply', async () => {
      const count = await page.locator('.msg').count();
      const nreq = mock.state.requests.length;
      await page.locator('.msg.assistant').last().locator('button', { hasText: 'Regenerate' }).click();
      await page.waitForSelector('#stop:not([hidden])', { timeout: T(5000) }).catch(() => {});
      await page.waitForFunction(() => [...document.querySelectorAll('.msg.assistant .body')].pop().textContent.length > 10, null, { timeout: T(10000) });
      await page.keyboard.press('Escape');
      await waitIdle(page, 5000);
      assert.equal(mock.state.requests.length, nreq + 1);
      const req = lastRequest();
      assert.equal(req.messages[req.messages.length - 1].content, 'another long one');
      assert.equal(req.messages.filter((m) => m.role === 'assistant').length, 2, 'stopped partial replies stay in the history');
      assert.equal(await page.locator('.msg').count(), count, 'same number of messages');
      assert.equal(await page.locator('.actions button', { hasText: 'Regenerate' }).count(), 1, 'only the last reply offers regenerate');
    });

    await t.test('edit and resend a message truncates the conversation after it', async () => {
      const first = page.locator('.msg.user').first();
      await first.hover();
      await first.locator('button', { hasText: 'Edit' }).click();
      await page.fill('.edit-box textarea', 'Edited question');
      await page.click('.edit-box .edit-send');
      await waitIdle(page);
      assert.equal(await page.locator('.msg').count(), 2);
      assert.equal(await page.locator('.msg.user .body').first().textContent(), 'Edited question');
      const req = lastRequest();
      assert.deepEqual(req.messages.map((m) => m.role), ['system', 'user']);
      assert.equal(req.messages[1].content, 'Edited question');
      assert.equal(await page.locator('.chat-item.active .chat-open').textContent(), 'Edited question');
    });

    await t.test('hostile reply renders as text: no script, no handlers, no javascript: links', async () => {
      await page.click('#new-chat');
      await send(page, 'please xss me');
      await waitIdle(page);
      const reply = lastReply(page);
      const text = await reply.textContent();
      for (const s of ['<script>window.__xss = 1</script>', '<img src=x onerror="window.__xss=2">', '[click me](javascript:window.__xss=3)', '<iframe src="javascript:alert(1)"></iframe>', '<svg onload=alert(1)>', '![pic](javascript:alert(1))']) {
        assert.ok(text.includes(s), `shown literally: ${s}`);
      }
      const found = await page.evaluate(() => {
        const root = [...document.querySelectorAll('.msg.assistant .body')].pop();
        const bad = [];
        for (const el of root.querySelectorAll('*')) {
          if (!['P', 'STRONG', 'EM', 'CODE', 'BR', 'A', 'DEL'].includes(el.tagName)) bad.push(el.tagName);
          for (const a of el.attributes) if (/^on/i.test(a.name) || /javascript:/i.test(a.value)) bad.push(el.tagName + ' ' + a.name);
        }
        return { bad, links: [...root.querySelectorAll('a')].map((a) => a.href), xss: window.__xss };
      });
      assert.deepEqual(found.bad, []);
      assert.deepEqual(found.links, []);
      assert.equal(found.xss, undefined);
      await page.waitForTimeout(200);
      assert.equal(await page.evaluate(() => window.__xss), undefined);
    });

    await t.test('server errors are shown clearly', async () => {
      await send(page, 'toolong please');
      await waitIdle(page);
      const err = await page.locator('.msg.assistant .err').last().textContent();
      assert.ok(/too long for the context window/.test(err) && err.includes('the context holds 512'), err);
      await page.locator('.actions button', { hasText: 'Retry' }).waitFor();
      await send(page, 'loadfail please');
      await waitIdle(page);
      assert.ok((await page.locator('.msg.assistant .err').last().textContent()).includes('failed to load'));
    });

    await t.test('rename, export, and delete conversations', async () => {
      const item = page.locator('.chat-item.active');
      await item.hover();
      await item.locator('button.edit').click();
      await page.fill('.chat-rename', 'Security check');
      await page.press('.chat-rename', 'Enter');
      assert.equal(await page.locator('.chat-item.active .chat-open').textContent(), 'Security check');
      const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
      const json = JSON.parse(fs.readFileSync(await dl.path(), 'utf8'));
      assert.equal(json.title, 'Security check');
      assert.equal(json.model, 'stories:260k');
      assert.equal(json.messages[0].content, 'please xss me');
      const [dl2] = await Promise.all([page.waitForEvent('download'), page.click('#export-md')]);
      assert.equal(dl2.suggestedFilename(), 'security-check.md');
      const md = fs.readFileSync(await dl2.path(), 'utf8');
      assert.ok(md.startsWith('# Security check\n') && md.includes('## User\n\nplease xss me'), md.slice(0, 200));
      // a throwaway chat to delete (two clicks: the first asks for confirmation)
      await page.click('#new-chat');
      await send(page, 'delete me');
      await waitIdle(page);
      const n = await page.locator('.chat-item').count();
      const victim = page.locator('.chat-item.active');
      await victim.hover();
      await victim.locator('button.trash').click();
      await victim.locator('button.trash').click();
      await page.waitForFunction((k) => document.querySelectorAll('.chat-item').length === k, n - 1);
      assert.equal(await page.locator('.chat-open', { hasText: 'delete me' }).count(), 0);
    });

    await t.test('conversations survive a reload', async () => {
      await page.reload();
      await waitModels(page);
      const titles = await page.locator('.chat-open').allTextContents();
      assert.ok(titles.includes('Edited question') && titles.includes('Security check'), titles.join('|'));
      await page.locator('.chat-open', { hasText: 'Edited question' }).click();
      assert.equal(await page.locator('.msg.user .body').first().textContent(), 'Edited question');
      assert.equal(await page.locator('.msg.assistant h2').first().textContent(), 'A short answer');
      await page.click('#settings-btn');
      assert.equal(await page.inputValue('[name=temperature]'), '0.3', 'settings are per chat and persisted');
      await page.click('#close-settings');
    });

    await t.test('image attachment for a vision model', async () => {
      const img = path.join(SHARED, 'images/example.jpg');
      assert.ok(fs.existsSync(img), `${img} missing (../shared is required)`);
      await page.click('#new-chat');
      await page.selectOption('#model', 'llava-mock:7b');
      await page.waitForSelector('#attach:not([hidden])');
      await page.setInputFiles('#file', img);
      await page.waitForSelector('.attachments .thumb img');
      await send(page, 'what is in this picture?');
      await waitIdle(page);
      const req = lastRequest();
      assert.equal(req.model, 'llava-mock:7b');
      const user = req.messages[req.messages.length - 1];
      assert.equal(user.images.length, 1);
      assert.ok(Buffer.from(user.images[0], 'base64').subarray(0, 3).equals(Buffer.from([0xff, 0xd8, 0xff])), 'a JPEG, base64 without the data: prefix');
      assert.equal(await page.locator('.msg.user .images img').count(), 1);
      await page.selectOption('#model', 'stories:260k');
      await page.waitForSelector('#attach', { state: 'hidden' });
    });

    await t.test('keyboard: Shift+Enter adds a line, Enter sends', async () => {
      await page.click('#new-chat');
      await page.fill('#input', 'line one');
      await page.press('#input', 'Shift+Enter');
      await page.type('#input', 'line two');
      assert.equal(await page.inputValue('#input'), 'line one\nline two');
      await page.press('#input', 'Enter');
      await waitIdle(page);
      assert.equal(await page.inputValue('#input'), '');
      assert.equal(lastRequest().messages.pop().content, 'line one\nline two');
    });

    await t.test('desktop screenshots, light and dark', async () => {
      await page.locator('.chat-open', { hasText: 'Edited question' }).click();
      await page.emulateMedia({ colorScheme: 'light' });
      const light = await bodyLuminance(page);
      await screenshot(page, 'chat-desktop-light.png');
      await page.emulateMedia({ colorScheme: 'dark' });
      const dark = await bodyLuminance(page);
      await screenshot(page, 'chat-desktop-dark.png');
      assert.ok(light > 0.9 && dark < 0.15, `light ${light} dark ${dark}`);
      // the manual toggle overrides the system preference and survives reload
      await page.click('#theme');   // system -> light
      assert.ok(await bodyLuminance(page) > 0.9);
      await page.reload();
      await waitModels(page);
      assert.ok(await bodyLuminance(page) > 0.9, 'light theme kept after reload');
      await page.click('#theme');   // light -> dark
      await page.click('#theme');   // dark -> system
      await page.emulateMedia({ colorScheme: 'light' });
    });

    await t.test('no console errors on the happy path', () => {
      assert.deepEqual(watch.errors.filter((e) => !/status of (400|500)/.test(e)), []);
    });
  } finally {
    await context.close();
  }
});

test('mock: phone width', async (t) => {
  const { page, context, watch } = await openPage(browser, mock.url, { viewport: PHONE, isMobile: true });
  try {
    await waitModels(page);
    await screenshot(page, 'chat-phone-empty.png');
    await send(page, 'Hello from a phone');
    await waitIdle(page);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal scrolling (overflow ${overflow}px)`);
    assert.ok(await page.locator('#sidebar').evaluate((el) => el.getBoundingClientRect().right <= 0), 'sidebar tucked away');
    await screenshot(page, 'chat-phone-light.png');
    await page.emulateMedia({ colorScheme: 'dark' });
    await screenshot(page, 'chat-phone-dark.png');
    await page.click('#open-side');
    await page.waitForFunction(() => document.getElementById('sidebar').getBoundingClientRect().left >= 0);
    await page.waitForTimeout(250);
    await screenshot(page, 'chat-phone-sidebar.png');
    await page.click('#close-side');
    await page.emulateMedia({ colorScheme: 'light' });
    // 16 px text fields: iOS would zoom into smaller ones
    assert.equal(await page.$eval('#input', (el) => getComputedStyle(el).fontSize), '16px');
    await page.click('#settings-btn');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'close-settings');
    assert.equal(await page.$eval('[name=temperature]', (el) => getComputedStyle(el).fontSize), '16px');
    await screenshot(page, 'chat-phone-settings.png');
    assert.ok(await page.locator('#settings').evaluate((el) => el.getBoundingClientRect().width <= 390));
    await page.click('#close-settings');
    assert.deepEqual(watch.errors, []);
    t.diagnostic('screenshots in build/test-artifacts/');
  } finally {
    await context.close();
  }
});

test('mock: Markdown renderer on random and pathological input', async () => {
  const { page, context, watch } = await openPage(browser, mock.url);
  try {
    const r = await page.evaluate(async () => {
      const { renderMarkdown } = await import('/md.js');
      const ok = new Set(['H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'P', 'BR', 'STRONG', 'EM', 'DEL', 'CODE', 'PRE', 'A', 'UL', 'OL', 'LI',
        'BLOCKQUOTE', 'HR', 'DIV', 'SPAN', 'BUTTON', 'TABLE', 'THEAD', 'TBODY', 'TR', 'TH', 'TD', 'DETAILS', 'SUMMARY']);
      const bad = [];
      const check = (root, src) => {
        for (const el of root.querySelectorAll('*')) {
          if (!ok.has(el.tagName)) bad.push(el.tagName + ' from ' + JSON.stringify(src).slice(0, 80));
          for (const a of el.attributes) {
            if (!['class', 'href', 'target', 'rel', 'style', 'type', 'start', 'data-lang', 'open'].includes(a.name)) bad.push('attr ' + a.name);
            if (a.name === 'href' && !/^(https?:|mailto:)/.test(a.value)) bad.push('href ' + a.value);
          }
        }
      };
      // Deterministic pseudo-random strings over Markdown's special characters.
      let seed = 12345;
      const rnd = (n) => { seed = (seed * 1103515245 + 12345) >>> 0; return seed % n; };
      const atoms = ['*', '**', '_', '`', '```', '~~', '#', '# ', '- ', '1. ', '> ', '|', '---', '[', ']', '(', ')', '<', '>', '\\',
        '\n', '\n\n', '  ', 'a', 'word ', 'javascript:alert(1)', 'http://x.y/', 'mailto:a@b', '<script>', '"', "'", '!', ':', '<think>', '</think>', '\t'];
      const div = document.createElement('div');
      for (let k = 0; k < 3000; k++) {
        let src = '';
        const len = 1 + rnd(60);
        for (let j = 0; j < len; j++) src += atoms[rnd(atoms.length)];
        renderMarkdown(div, src);
        check(div, src);
      }
      // Pathological inputs must stay fast (rendered once per frame while streaming).
      const slow = [];
      for (const src of ['*'.repeat(50000), '**a '.repeat(5000), '>'.repeat(5000) + ' x', '- '.repeat(3000) + 'x',
        '['.repeat(20000), '`'.repeat(30001), ('| a '.repeat(40) + '|\n') + ('|---'.repeat(40) + '|\n') + ('| 1 '.repeat(40) + '|\n').repeat(100),
        '_a'.repeat(20000), ('  '.repeat(40) + '- x\n').repeat(500), 'http://' + 'a'.repeat(50000),
        '[a]('.repeat(20000), '[a](' + '(b)'.repeat(5000), '[a](x(' .repeat(10000), 'http://x' + ')'.repeat(50000), '***a '.repeat(10000)]) {
        const t0 = performance.now();
        renderMarkdown(div, src);
        const ms = performance.now() - t0;
        check(div, src.slice(0, 40));
        if (ms > 250) slow.push(`${JSON.stringify(src.slice(0, 20))}: ${ms.toFixed(0)} ms`);
      }
      return { bad: bad.slice(0, 10), slow, xss: window.__xss };
    });
    assert.deepEqual(r.bad, []);
    assert.deepEqual(r.slow, []);
    assert.equal(r.xss, undefined);
    // URLs with parentheses, and *** for strong emphasis
    const cases = await page.evaluate(async () => {
      const { renderMarkdown } = await import('/md.js');
      const out = {};
      for (const src of ['see https://en.wikipedia.org/wiki/Foo_(bar) now', '(see https://x.org/a).', '[docs](https://ex.com/a_(b)) ok', '***both*** and **b** *e*']) {
        const d = document.createElement('div');
        renderMarkdown(d, src);
        const a = d.querySelector('a');
        out[src] = a ? [a.getAttribute('href'), a.textContent, d.textContent] : [...d.querySelectorAll('*')].map((e) => e.tagName + ':' + e.textContent).join(' ');
      }
      return out;
    });
    assert.deepEqual(cases, {
      'see https://en.wikipedia.org/wiki/Foo_(bar) now': ['https://en.wikipedia.org/wiki/Foo_(bar)', 'https://en.wikipedia.org/wiki/Foo_(bar)', 'see https://en.wikipedia.org/wiki/Foo_(bar) now'],
      '(see https://x.org/a).': ['https://x.org/a', 'https://x.org/a', '(see https://x.org/a).'],
      '[docs](https://ex.com/a_(b)) ok': ['https://ex.com/a_(b)', 'docs', 'docs ok'],
      '***both*** and **b** *e*': 'P:both and b e EM:both STRONG:both STRONG:b EM:e',
    });
    assert.deepEqual(watch.errors, []);
  } finally {
    await context.close();
  }
});

// Enter that commits an input method's composition (Japanese, Chinese, ...) must not send.
test('mock: Enter during IME composition does not send', async () => {
  const { page, context } = await openPage(browser, mock.url);
  try {
    await waitModels(page);
    await page.click('#new-chat');
    await page.focus('#input');
    const nreq = mock.state.requests.length;
    const msgs = () => page.locator('.msg').count();
    // Chromium's own IME path (isComposing set)
    const cdp = await context.newCDPSession(page);
    await cdp.send('Input.imeSetComposition', { text: 'にほん', selectionStart: 3, selectionEnd: 3 });
    await cdp.send('Input.dispatchKeyEvent', { type: 'rawKeyDown', key: 'Enter', code: 'Enter', windowsVirtualKeyCode: 229 });
    await cdp.send('Input.insertText', { text: '日本' });
    // Safari: compositionend first, then the committing Enter with keyCode 229, isComposing false
    await page.evaluate(() => {
      const i = document.getElementById('input');
      i.dispatchEvent(new CompositionEvent('compositionend', { data: '日本', bubbles: true }));
      i.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', keyCode: 229, isComposing: false, bubbles: true, cancelable: true }));
    });
    // a browser that reports neither: between compositionstart and compositionend
    await page.evaluate(() => {
      const i = document.getElementById('input');
      i.dispatchEvent(new CompositionEvent('compositionstart', { bubbles: true }));
      i.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', keyCode: 13, bubbles: true, cancelable: true }));
      i.dispatchEvent(new CompositionEvent('compositionend', { data: '', bubbles: true }));
    });
    await page.waitForTimeout(200);
    assert.equal(await msgs(), 0, 'nothing was sent');
    assert.equal(mock.state.requests.length, nreq);
    assert.ok((await page.inputValue('#input')).includes('日本'));
    await page.press('#input', 'Enter');   // a plain Enter after the composition sends
    await waitIdle(page);
    assert.ok(lastRequest().messages.pop().content.includes('日本'));
    assert.equal(await msgs(), 2);
  } finally {
    await context.close();
  }
});

// Reasoning (message.thinking) is shown apart from the answer: a "</think>" in it stays in it,
// and a reply that was only reasoning is not left "Thinking…" after a reload.
test('mock: thinking is kept apart from the answer, and closed once the reply ends', async () => {
  const { page, context } = await openPage(browser, mock.url);
  try {
    await waitModels(page);
    await page.click('#new-chat');
    await send(page, 'think please');
    await waitIdle(page);
    const reply = lastReply(page);
    assert.equal((await reply.locator('details.think div').textContent()).trim(), 'let me think </think> <b>not the answer</b>');
    assert.equal(await reply.locator(':scope > p').textContent(), 'Answer.');
    assert.equal(await reply.locator('details.think').evaluate((d) => d.open), false);
    await send(page, 'thinkonly please');
    await waitIdle(page);
    for (const when of ['after the reply', 'after a reload']) {
      assert.equal(await lastReply(page).locator('summary').textContent(), 'Thought process', when);
      assert.equal(await lastReply(page).locator('details.think').evaluate((d) => d.open), false, when);
      await page.reload();
      await waitModels(page);
    }
  } finally {
    await context.close();
  }
});

// A prompt over the context: the page explains it in its own words and offers ways on
// (leave out older messages, which sends the rest with "truncate"; or a new chat). A reply
// stopped by a full context says so rather than blaming "Max tokens".
test('mock: a conversation too long for the context window', async () => {
  const { page, context } = await openPage(browser, mock.url);
  try {
    await waitModels(page);
    await page.selectOption('#model', 'stories:260k');   // 512 tokens of context in the mock
    await page.click('#new-chat');
    await send(page, 'first ' + 'a'.repeat(1000));
    await waitIdle(page);
    await send(page, 'second ' + 'b'.repeat(200));
    await waitIdle(page);
    await send(page, 'third ' + 'c'.repeat(200));
    await waitIdle(page);
    const foot = page.locator('.msg.assistant .msg-foot').last();
    const err = await foot.locator('.err').textContent();
    assert.ok(/^The conversation is too long for the context window — it needs \d+ tokens, the context holds 512\./.test(err), err);
    assert.ok(err.includes('Context length'), err);
    const nreq = mock.state.requests.length;
    await foot.locator('button', { hasText: 'Leave out older messages' }).click();
    await waitIdle(page);
    assert.equal(mock.state.requests.length, nreq + 1);
    const req = lastRequest();
    assert.equal(req.truncate, true);
    assert.deepEqual(req.messages.map((m) => m.role + ':' + m.content.split(' ')[0]), ['user:second', 'assistant:##', 'user:third']);
    assert.equal(await page.locator('.msg.omitted').count(), 2, 'the first question and its answer are left out');
    assert.equal(await page.locator('.omit-note').count(), 1);
    assert.equal(await page.locator('.msg.assistant .err').count(), 0, 'the failed reply made way for the new one');
    assert.equal(await lastReply(page).locator('h2').textContent(), 'A short answer');
    // the next message goes without the left-out ones
    await send(page, 'fourth');
    await waitIdle(page);
    assert.equal(lastRequest().messages[0].content.split(' ')[0], 'second');
    // a message that cannot fit on its own: a new chat with it, or cut
    await send(page, 'toolong please');
    await waitIdle(page);
    await foot.locator('button', { hasText: 'Continue in a new chat' }).click();
    assert.equal(await page.locator('.msg').count(), 0);
    assert.equal(await page.inputValue('#input'), 'toolong please');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'input');
    // the context fills up during a reply (no max tokens set)
    await page.click('#settings-btn');
    await page.fill('[name=num_ctx]', '64');
    await page.click('#close-settings');
    await send(page, 'fillctx');
    await waitIdle(page);
    let stats = await page.locator('.msg.assistant .stats').last().textContent();
    assert.ok(stats.includes('context window full') && !stats.includes('max tokens'), stats);
    // ... and with max tokens set, it is max tokens
    await page.click('#settings-btn');
    await page.fill('[name=num_predict]', '5');
    await page.click('#close-settings');
    await page.locator('.actions button', { hasText: 'Regenerate' }).click();
    await waitIdle(page);
    stats = await page.locator('.msg.assistant .stats').last().textContent();
    assert.ok(stats.includes('max tokens reached') && !stats.includes('context window'), stats);
  } finally {
    await context.close();
  }
});

// Streams that break after a 200 are not shown as finished replies.
test('mock: a cut-off stream, a dropped connection and an error line are reported', async () => {
  const { page, context } = await openPage(browser, mock.url);
  try {
    await waitModels(page);
    await page.click('#new-chat');
    const foot = () => page.locator('.msg.assistant .msg-foot').last();
    for (const [kw, want] of [['nodone', /^Connection lost — the reply is incomplete/], ['reset', /^Connection lost — the reply is incomplete/], ['miderror', /^CUDA out of memory while decoding/]]) {
      await send(page, kw + ' please');
      await waitIdle(page);
      const err = await foot().locator('.err').textContent().catch(() => '(no error shown)');
      assert.ok(want.test(err), `${kw}: ${err}`);
      assert.ok(!/answered 500|network error/i.test(err), `${kw}: ${err}`);
      assert.equal(await lastReply(page).textContent(), 'partial reply', `${kw}: the partial text is kept`);
      assert.equal(await foot().locator('.actions button', { hasText: 'Retry' }).count(), 1, `${kw}: Retry offered`);
    }
    // A reload while a reply streams leaves it marked incomplete, not finished.
    await send(page, 'a long one, then reload');
    await page.waitForFunction(() => [...document.querySelectorAll('.msg.assistant .body')].pop().textContent.length > 10, null, { timeout: T(10000) });
    await page.reload();
    await waitModels(page);
    assert.ok((await foot().locator('.err').textContent()).includes('incomplete'));
    assert.equal(await foot().locator('.actions button', { hasText: 'Retry' }).count(), 1);
  } finally {
    await context.close();
  }
});

// Leaving a chat while its reply streams (New chat, or opening another chat) lets the reply
// go on in the background; the other chat can be used meanwhile.
test('mock: a reply keeps streaming in the background while another chat is open', async () => {
  const { page, context, watch } = await openPage(browser, mock.url);
  try {
    await waitModels(page);
    const abortedBefore = mock.state.aborted;
    const replyLen = () => page.evaluate(() => [...document.querySelectorAll('.msg.assistant .body')].pop().textContent.length);
    await page.click('#new-chat');
    await send(page, 'a long background story');
    await page.waitForFunction(() => [...document.querySelectorAll('.msg.assistant .body')].pop().textContent.length > 40, null, { timeout: T(10000) });
    const left = await replyLen();
    await page.click('#new-chat');
    assert.ok(await page.locator('#stop').isHidden(), 'the new chat is not busy');
    assert.equal(await page.locator('.chat-item.streaming .chat-open').textContent(), 'a long background story');
    await send(page, 'Hello meanwhile');
    await waitIdle(page);
    assert.equal(mock.state.aborted, abortedBefore, 'the background reply was not cancelled');
    await page.locator('.chat-open', { hasText: 'a long background story' }).click();
    assert.ok(await page.locator('#stop').isVisible(), 'Stop is back for the streaming chat');
    const back = await replyLen();
    assert.ok(back > left + 40, `the reply went on in the background (${left} -> ${back} characters)`);
    await page.waitForFunction((n) => [...document.querySelectorAll('.msg.assistant .body')].pop().textContent.length > n + 20, back, { timeout: T(5000) });
    await page.keyboard.press('Escape');
    await waitIdle(page, 5000);
    const deadline = Date.now() + 3000;
    while (mock.state.aborted === abortedBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(mock.state.aborted, abortedBefore + 1);
    assert.ok((await page.locator('.msg.assistant .stats').last().textContent()).includes('stopped'));
    assert.equal(await page.locator('.chat-item.streaming').count(), 0);
    await page.locator('.chat-open', { hasText: 'Hello meanwhile' }).click();
    assert.equal(await lastReply(page).locator('h2').textContent(), 'A short answer');
    assert.deepEqual(watch.errors, []);
  } finally {
    await context.close();
  }
});

// Two tabs share localStorage: each keeps the other's chats, and a delete in one reaches the
// other (the storage event) without the other writing the chat back.
test('mock: two tabs keep each other\'s chats; deletes reach both', async () => {
  const { page, context, watch } = await openPage(browser, mock.url);
  try {
    // chats saved by older pages (all under one key) move to their own keys
    await page.evaluate(() => localStorage.setItem('hearth.chats.v1', JSON.stringify([{ id: 'old1', title: 'Old chat', created: 1, updated: 1, settings: {}, messages: [{ role: 'user', content: 'hi' }] }])));
    await page.reload();
    const p2 = await context.newPage();
    await p2.goto(mock.url);
    await waitModels(page);
    assert.deepEqual(await page.evaluate(() => [localStorage.getItem('hearth.chats.v1'), JSON.parse(localStorage.getItem('hearth.chat.old1')).title]), [null, 'Old chat']);
    await waitModels(p2);
    const titles = (p) => p.locator('.chat-open').allTextContents();
    // (a page in the background gets no animation frames, which Playwright's clicks wait for)
    await page.bringToFront();
    await page.click('#new-chat');
    await send(page, 'TAB-ONE chat');
    await waitIdle(page);
    await p2.bringToFront();
    await p2.click('#new-chat');
    await send(p2, 'TAB-TWO chat');
    await waitIdle(p2);
    await page.waitForFunction(() => [...document.querySelectorAll('.chat-open')].some((b) => b.textContent === 'TAB-TWO chat'), null, { timeout: T(5000) });
    await page.bringToFront();
    await page.reload();
    await waitModels(page);
    const t1 = await titles(page);
    assert.ok(t1.includes('TAB-ONE chat') && t1.includes('TAB-TWO chat'), t1.join('|'));
    // tab 1 deletes tab 2's chat (two clicks: the first asks for confirmation)
    const victim = page.locator('.chat-item', { hasText: 'TAB-TWO chat' });
    await victim.hover();
    await victim.locator('button.trash').click();
    await victim.locator('button.trash').click();
    await p2.waitForFunction(() => ![...document.querySelectorAll('.chat-open')].some((b) => b.textContent === 'TAB-TWO chat'), null, { timeout: T(5000) });
    // tab 2 goes on in a new chat; the deleted one stays deleted
    await p2.bringToFront();
    await p2.click('#new-chat');
    await send(p2, 'TAB-TWO again');
    await waitIdle(p2);
    for (const p of [page, p2]) {
      await p.bringToFront();
      await p.reload();
      await waitModels(p);
      const t = await titles(p);
      assert.ok(t.includes('Old chat') && t.includes('TAB-ONE chat') && t.includes('TAB-TWO again') && !t.includes('TAB-TWO chat'), t.join('|'));
    }
    assert.deepEqual(watch.errors, []);
  } finally {
    await context.close();
  }
});

// One chat bigger than the storage quota is reported by name and does not stop later chats
// from being saved.
test('mock: a chat too big for storage does not block the others', async () => {
  const { page, context } = await openPage(browser, mock.url);
  try {
    await waitModels(page);
    // storage nearly full (Chromium holds about 5 M characters per origin)
    await page.evaluate(() => localStorage.setItem('test.filler', 'x'.repeat(4.5e6)));
    await page.click('#new-chat');
    await page.evaluate((t) => { const i = document.getElementById('input'); i.value = t; i.dispatchEvent(new Event('input')); }, 'huge ' + 'y'.repeat(1e6));
    await page.press('#input', 'Enter');
    await waitIdle(page);
    const banner = await page.textContent('#banner');
    await page.click('#new-chat');
    await send(page, 'small later chat');
    await waitIdle(page);
    await page.reload();
    await waitModels(page);
    const titles = await page.locator('.chat-open').allTextContents();
    assert.ok(titles.includes('small later chat'), titles.join('|'));
    assert.ok(/storage is full/.test(banner) && banner.includes('huge yyy'), `the warning names the chat: ${banner}`);
  } finally {
    await context.close();
  }
});

test('mock: server down, then API key required', async () => {
  const keyed = await startMock({ apiKey: 'sekrit' });
  const { page, context } = await openPage(browser, keyed.url);
  try {
    await page.waitForSelector('#apikey');
    assert.ok((await page.textContent('#banner')).includes('API key required'));
    assert.equal(await page.getAttribute('#apikey', 'aria-label'), 'API key');
    await page.fill('#apikey', 'wrong');
    await page.press('#apikey', 'Enter');
    await page.waitForFunction(() => /rejected/.test(document.getElementById('banner').textContent));
    await page.fill('#apikey', 'sekrit');
    await page.press('#apikey', 'Enter');
    await waitModels(page);
    assert.ok(await page.locator('#banner').isHidden());
    assert.equal(await page.evaluate(() => JSON.parse(localStorage.getItem('hearth.apikey'))), 'sekrit');
    await send(page, 'hi');
    await waitIdle(page);
    assert.equal(keyed.state.requests.length, 1);
    await keyed.close();   // the server goes away
    await send(page, 'are you there?');
    await waitIdle(page);
    const err = await page.locator('.msg.assistant .err').last().textContent();
    assert.ok(err.includes('Cannot reach the hearth server'), err);
    await screenshot(page, 'chat-desktop-server-down.png');
  } finally {
    await context.close();
  }
});

test('real server: hearth serve with stories260K', async (t) => {
  const why = await hearthServeAvailable();
  if (why) { t.skip(why); return; }
  await realServerJourney(t, browser);
});

// With API keys on, the page's own files load without a key (http.c auth_ok lets GET/HEAD of
// embedded assets through); the page then asks for the key and sends it with API calls.
test('real server: API keys on', async (t) => {
  const why = await hearthServeAvailable();
  if (why) { t.skip(why); return; }
  await realServerApiKey(t, browser);
});
