// Server lifecycle under concurrency: shutdown with replies in flight, queue places of
// clients that left, unload requests, models deleted mid-request, slow model loads
// (HEARTH_TEST_LOAD_DELAY_MS). Each test starts its own server (they stop it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { tmpdir, createModel, startServer, request, SHARED, STORIES, SLOW } from './lib.mjs';

const RANDOM_LLAMA = path.join(SHARED, 'models', 'random', 'llama.Q4_0.gguf');

// Opens a streamed generate on a raw socket and returns it (the caller destroys it).
function openStream(port, body) {
  const s = net.connect(port, '127.0.0.1');
  const b = JSON.stringify(body);
  s.on('error', () => {});
  s.write(`POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(b)}\r\n\r\n${b}`);
  return s;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Resolves with the request's result plus `ms`, the time it took.
async function timed(p) {
  const t0 = Date.now();
  const r = await p;
  return { ...r, ms: Date.now() - t0 };
}

// A short non-streamed generate.
function generate(srv, model, extra = {}) {
  return request(`${srv.url}/api/generate`, { method: 'POST', body: { model, prompt: 'Once', stream: false, options: { num_predict: 2 }, ...extra } });
}

const psNames = (ps) => ps.json.models.map((m) => m.name.replace(/:latest$/, '')).sort();

test('SIGTERM delivers the replies of non-streamed requests in flight', async () => {
  const models = tmpdir();
  createModel(models, 'stories', `FROM ${STORIES}\n`);
  const srv = await startServer(models, ['-p', '2']);
  await request(`${srv.url}/api/generate`, { method: 'POST', body: { model: 'stories' } });
  const long = { num_predict: 1000000 };
  const ollama = request(`${srv.url}/api/generate`, { method: 'POST', body: { model: 'stories', prompt: 'Once', stream: false, options: long } });
  const openai = request(`${srv.url}/v1/chat/completions`, { method: 'POST', body: { model: 'stories', messages: [{ role: 'user', content: 'x' }], max_tokens: 1000000 } });
  await sleep(1500 * SLOW);
  srv.proc.kill('SIGTERM');
  const [o, a] = await Promise.all([ollama, openai]);
  // Ollama's shape says the reply was cancelled; OpenAI's has no such finish reason, so a
  // cut reply is an error rather than finish_reason "stop"
  assert.equal(o.status, 200, o.body);
  assert.equal(o.json.done_reason, 'cancelled');
  assert.ok(a.status >= 500, `${a.status} ${a.body}`);
  assert.ok(a.json.error, a.body);
  assert.equal((await srv.exited).code, 0);
});

test('queued requests whose clients left give their places back', async () => {
  const models = tmpdir();
  createModel(models, 'stories', `FROM ${STORIES}\n`);
  // one slot, room for one waiting request beyond it
  const srv = await startServer(models, ['-p', '1', '--max-queue', '1']);
  try {
    const busy = openStream(srv.port, { model: 'stories', prompt: 'Once', options: { num_predict: 1000000 } });
    await sleep(500 * SLOW);
    for (let i = 0; i < 3; i++) { // each queues, then leaves
      const z = openStream(srv.port, { model: 'stories', prompt: 'Once', options: { num_predict: 5 } });
      await sleep(200 * SLOW);
      z.destroy();
      await sleep(200 * SLOW);
    }
    const live = request(`${srv.url}/api/generate`, { method: 'POST', body: { model: 'stories', prompt: 'Once', stream: false, options: { num_predict: 3 } } });
    await sleep(300 * SLOW);
    busy.destroy(); // frees the slot for the live request
    const r = await live;
    assert.equal(r.status, 200, r.body);
  } finally {
    await srv.stop();
  }
});

test('an unload request never loads the model (nor evicts another)', async () => {
  const models = tmpdir();
  createModel(models, 'a', `FROM ${STORIES}\n`);
  createModel(models, 'b', `FROM ${RANDOM_LLAMA}\n`);
  const srv = await startServer(models, ['--max-loaded', '1']);
  try {
    await request(`${srv.url}/api/generate`, { method: 'POST', body: { model: 'a', keep_alive: '1h' } });
    const r = await request(`${srv.url}/api/generate`, { method: 'POST', body: { model: 'b', keep_alive: 0 } });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json.done_reason, 'unload');
    const ps = await request(`${srv.url}/api/ps`);
    assert.deepEqual(ps.json.models.map((m) => m.name.replace(/:latest$/, '')), ['a']);
    assert.doesNotMatch(srv.log(), /loaded model=b/);
    const nf = await request(`${srv.url}/api/generate`, { method: 'POST', body: { model: 'nope', keep_alive: 0 } });
    assert.equal(nf.status, 404);
    // and unloading the loaded one works
    await request(`${srv.url}/api/generate`, { method: 'POST', body: { model: 'a', keep_alive: 0 } });
    for (let i = 0; i < 50; i++) {
      if ((await request(`${srv.url}/api/ps`)).json.models.length === 0) break;
      await sleep(100);
    }
    assert.equal((await request(`${srv.url}/api/ps`)).json.models.length, 0);
  } finally {
    await srv.stop();
  }
});

test('a model deleted while requests use it: 404s, never a 500 naming server files', async () => {
  const models = tmpdir();
  createModel(models, 'base', `FROM ${STORIES}\n`);
  const srv = await startServer(models);
  try {
    const bad = [];
    for (let i = 0; i < 40; i++) {
      const name = `m${i}`;
      await request(`${srv.url}/api/copy`, { method: 'POST', body: { source: 'base', destination: name } });
      const reqs = [
        request(`${srv.url}/api/generate`, { method: 'POST', body: { model: name, prompt: 'Once', stream: false, options: { num_predict: 2 } } }),
        request(`${srv.url}/api/show`, { method: 'POST', body: { model: name } }),
        request(`${srv.url}/api/delete`, { method: 'DELETE', body: { model: name } }),
      ];
      for (const r of (await Promise.all(reqs)).map((r) => ({ ...r, body: r.body.slice(0, 300) }))) if (r.status >= 500 || (r.status >= 400 && /manifests|blobs\//.test(r.body))) bad.push(`${r.status} ${r.body}`);
    }
    assert.deepEqual(bad, []);
  } finally {
    await srv.stop();
  }
});

test('a model load holds up neither /api/ps, /metrics nor requests for a loaded model', async () => {
  const models = tmpdir();
  createModel(models, 'a', `FROM ${STORIES}\n`);
  createModel(models, 'b', `FROM ${RANDOM_LLAMA}\n`);
  const delay = 3000 * SLOW;
  const srv = await startServer(models, [], { HEARTH_TEST_LOAD_DELAY_MS: String(delay) });
  try {
    assert.equal((await request(`${srv.url}/api/generate`, { method: 'POST', body: { model: 'a' } })).status, 200);
    const b = [generate(srv, 'b'), generate(srv, 'b')]; // both wait for one load of b
    await sleep(500 * SLOW);
    const during = await Promise.all([timed(request(`${srv.url}/api/ps`)), timed(request(`${srv.url}/metrics`)), timed(generate(srv, 'a'))]);
    for (const r of during) {
      assert.equal(r.status, 200, r.body);
      assert.ok(r.ms < delay / 2, `answered in ${r.ms} ms during a load of ${delay} ms`);
    }
    assert.deepEqual(psNames(during[0]), ['a'], 'a model still loading is not listed');
    assert.match(during[1].body, /^hearth_loaded_models 1$/m);
    for (const r of await Promise.all(b)) assert.equal(r.status, 200, r.body);
    assert.equal(srv.log().match(/loaded model=b /g).length, 1, srv.log());
    assert.deepEqual(psNames(await request(`${srv.url}/api/ps`)), ['a', 'b']);
  } finally {
    await srv.stop();
  }
});

test('a failed load answers every request that waited for it; the next request loads afresh', async () => {
  const models = tmpdir();
  createModel(models, 'm', `FROM ${STORIES}\n`);
  const blobs = path.join(models, 'blobs');
  const gguf = fs.readdirSync(blobs).map((f) => path.join(blobs, f)).sort((x, y) => fs.statSync(y).size - fs.statSync(x).size)[0];
  const good = fs.readFileSync(gguf);
  fs.chmodSync(gguf, 0o644);
  fs.writeFileSync(gguf, good.subarray(0, 4096)); // a truncated GGUF
  const srv = await startServer(models, [], { HEARTH_TEST_LOAD_DELAY_MS: String(1000 * SLOW) });
  try {
    const rs = await Promise.all([0, 1, 2].map(() => generate(srv, 'm')));
    for (const r of rs) {
      assert.ok(r.status >= 400, `${r.status} ${r.body}`);
      assert.equal(r.body, rs[0].body);
    }
    assert.match(rs[0].json.error, /cannot load model/);
    assert.equal(srv.log().match(/model=m: cannot load model/g)?.length, 1, srv.log());
    assert.deepEqual(psNames(await request(`${srv.url}/api/ps`)), []);
    fs.writeFileSync(gguf, good);
    const ok = await generate(srv, 'm');
    assert.equal(ok.status, 200, ok.body);
    assert.deepEqual(psNames(await request(`${srv.url}/api/ps`)), ['m']);
  } finally {
    await srv.stop();
  }
});

test('SIGTERM during a load: requests waiting for it get 503 at once, the loading one after it; exit 0', async () => {
  const models = tmpdir();
  createModel(models, 'a', `FROM ${STORIES}\n`);
  const delay = 3000 * SLOW;
  const srv = await startServer(models, [], { HEARTH_TEST_LOAD_DELAY_MS: String(delay) });
  const loading = timed(generate(srv, 'a'));
  await sleep(300 * SLOW);
  const waiting = timed(generate(srv, 'a'));
  await sleep(300 * SLOW);
  srv.proc.kill('SIGTERM');
  const w = await waiting;
  assert.equal(w.status, 503, w.body);
  assert.ok(w.ms < delay / 2, `the waiting request was answered after ${w.ms} ms`);
  const l = await loading;
  assert.equal(l.status, 503, l.body);
  assert.match(l.json.error, /shutting down/);
  assert.equal((await srv.exited).code, 0);
});

test('/api/ps: a model in use shows the expiry it will have when its requests end', async () => {
  const models = tmpdir();
  createModel(models, 'stories', `FROM ${STORIES}\n`);
  const srv = await startServer(models, ['-p', '2']);
  const streams = [];
  try {
    const long = { num_predict: 1000000 };
    streams.push(openStream(srv.port, { model: 'stories', prompt: 'Once', keep_alive: '1h', options: long }));
    await sleep(300 * SLOW);
    let ps = await request(`${srv.url}/api/ps`);
    assert.equal(ps.json.models.length, 1, ps.body);
    const left = Date.parse(ps.json.models[0].expires_at) - Date.now();
    assert.ok(left > 59 * 60 * 1000 && left < 61 * 60 * 1000, `expires in ${left} ms, not in 1h: ${ps.body}`);
    // the latest request's keep_alive is the one that applies: forever
    streams.push(openStream(srv.port, { model: 'stories', prompt: 'Once', keep_alive: -1, options: long }));
    await sleep(300 * SLOW);
    ps = await request(`${srv.url}/api/ps`);
    assert.match(ps.json.models[0].expires_at, /^2318-/, ps.body);
  } finally {
    for (const s of streams) s.destroy();
    await srv.stop();
  }
});

test('a second SIGINT/SIGTERM during the drain ends the server at once', async () => {
  const models = tmpdir();
  createModel(models, 'a', `FROM ${STORIES}\n`);
  // a load of 30 s keeps the drain waiting (a load cannot be interrupted)
  const srv = await startServer(models, [], { HEARTH_TEST_LOAD_DELAY_MS: '30000' });
  try {
    const pending = generate(srv, 'a').catch((e) => e);
    await sleep(500 * SLOW);
    srv.proc.kill('SIGTERM');
    await sleep(500 * SLOW);
    srv.proc.kill('SIGINT');
    const r = await Promise.race([srv.exited, sleep(5000 * SLOW).then(() => null)]);
    assert.ok(r, 'the server was still draining 5 s after the second signal');
    assert.equal(r.code, 130);
    assert.match(srv.log(), /second SIGINT received/);
    await pending;
  } finally {
    if (srv.proc.exitCode === null) srv.proc.kill('SIGKILL');
  }
});
