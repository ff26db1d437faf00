// Server lifecycle under concurrency: shutdown with replies in flight, queue places of
// clients that left, unload requests, models deleted mid-request. Each test starts its own
// server (they stop it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
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
