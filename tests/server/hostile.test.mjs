// Hostile and broken input: every case gets the right status and a JSON error, and the
// server keeps serving everyone else. Also API keys, CORS and a taken port.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import OpenAI from 'openai';
import { tmpdir, createModel, startServer, request, rawExchange, cli, STORIES, SLOW } from './lib.mjs';

const models = tmpdir();
let srv;

test.before(async () => {
  createModel(models, 'stories', `FROM ${STORIES}\n`);
  srv = await startServer(models, ['--timeout', '2', '--max-body', '1']);
});

test.after(async () => {
  assert.equal(await srv.stop(), 0);
  fs.rmSync(models, { recursive: true, force: true });
});

async function stillServing() {
  const r = await request(`${srv.url}/api/tags`);
  assert.equal(r.status, 200);
  assert.equal(r.json.models[0].name, 'stories:latest');
}

test('malformed JSON is a 400 with a JSON error (Ollama and OpenAI shapes)', async () => {
  for (const body of ['{"model":', 'not json', '{"model":"stories"}}', '[1,2', '\u0000']) {
    const r = await request(`${srv.url}/api/generate`, { method: 'POST', body });
    assert.equal(r.status, 400, body);
    assert.equal(typeof r.json.error, 'string');
  }
  const o = await request(`${srv.url}/v1/chat/completions`, { method: 'POST', body: '{"model":' });
  assert.equal(o.status, 400);
  assert.equal(typeof o.json.error.message, 'string');
  assert.equal(o.json.error.type, 'invalid_request_error');
  const arr = await request(`${srv.url}/api/chat`, { method: 'POST', body: '[]' });
  assert.equal(arr.status, 400);
  await stillServing();
});

test('wrong types and missing fields are 400s naming the field', async () => {
  const cases = [
    ['/api/generate', { model: 5 }, /model/],
    ['/api/generate', { model: 'stories', prompt: 7 }, /prompt/],
    ['/api/generate', { model: 'stories', prompt: 'x', options: { temperature: 'hot' } }, /temperature/],
    ['/api/generate', { model: 'stories', prompt: 'x', options: { top_p: 7 } }, /top_p/],
    ['/api/generate', { model: 'stories', prompt: 'x', options: { stop: [1] } }, /stop/],
    ['/api/generate', { model: 'stories', prompt: 'x', format: 12 }, /format/],
    ['/api/generate', { model: 'stories', prompt: 'x', keep_alive: 'soon' }, /keep_alive/],
    ['/api/chat', { model: 'stories', messages: 'hi' }, /messages/],
    ['/api/chat', { model: 'stories', messages: [{ content: 'no role' }] }, /role/],
    ['/api/generate', {}, /model/],
    ['/api/show', {}, /model/],
    ['/api/copy', { source: 'stories' }, /destination/],
    ['/api/pull', {}, /model/],
    ['/api/create', { model: 'x' }, /from/],
    ['/api/create', { model: '../../etc', from: 'stories' }, /invalid/],
    ['/v1/chat/completions', { model: 'stories', messages: [], stream: 'yes' }, /stream/],
    ['/v1/chat/completions', { model: 'stories', messages: [{ role: 'user', content: 'x' }], max_tokens: -5 }, /max_tokens/],
    ['/v1/embeddings', { model: 'stories', input: 'x', encoding_format: 'hex' }, /encoding_format/],
    ['/v1/embeddings', { model: 'stories', input: 'x', encoding_format: 5 }, /encoding_format/],
    ['/api/embed', { model: 'stories', input: [[1, 2], [3, -1]] }, /input\[1\]\[1\] is not a token id/],
    ['/api/embed', { model: 'stories', input: [1, -1] }, /^input\[1\] is not a token id/],
  ];
  for (const [url, body, re] of cases) {
    const r = await request(`${srv.url}${url}`, { method: url === '/api/delete' ? 'DELETE' : 'POST', body });
    assert.equal(r.status, 400, `${url} ${JSON.stringify(body)} -> ${r.status} ${r.body}`);
    const msg = url.startsWith('/v1/') ? r.json.error.message : r.json.error;
    assert.match(msg, re, `${url} ${JSON.stringify(body)}`);
  }
  await stillServing();
});

test('unknown model is a 404 everywhere', async () => {
  const cases = [
    ['/api/generate', 'POST', { model: 'nope', prompt: 'x' }],
    ['/api/chat', 'POST', { model: 'nope', messages: [{ role: 'user', content: 'x' }] }],
    ['/api/embed', 'POST', { model: 'nope', input: 'x' }],
    ['/api/show', 'POST', { model: 'nope' }],
    ['/api/delete', 'DELETE', { model: 'nope' }],
    ['/v1/chat/completions', 'POST', { model: 'nope', messages: [{ role: 'user', content: 'x' }] }],
    ['/v1/completions', 'POST', { model: 'nope', prompt: 'x' }],
    ['/v1/embeddings', 'POST', { model: 'nope', input: 'x' }],
  ];
  for (const [url, method, body] of cases) {
    const r = await request(`${srv.url}${url}`, { method, body });
    assert.equal(r.status, 404, `${url}: ${r.body}`);
    assert.ok(r.json.error, url);
  }
  const e = await request(`${srv.url}/api/nothing`);
  assert.equal(e.status, 404);
  assert.ok(e.json.error);
});

test('huge bodies are 413 (declared and chunked); deep nesting is 400', async () => {
  const big = 'x'.repeat(2 * 1024 * 1024); // the server runs with --max-body 1 (MiB)
  // Declared too large: the server answers 413 at once and closes without reading the body,
  // so a client still writing may see EPIPE; a raw socket ignores that and keeps the reply.
  const body = `{"model":"stories","prompt":"${big}"}`;
  const r = await rawExchange(srv.port, `POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`, 10000 * SLOW);
  assert.match(r, /^HTTP\/1\.1 413/);
  assert.match(r, /"error":"[^"]*larger than/);
  // chunked upload without Content-Length
  const raw = await rawExchange(srv.port, `POST /api/generate HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n` +
    `${(big.length).toString(16)}\r\n${big}\r\n0\r\n\r\n`, 10000 * SLOW);
  assert.match(raw, /^HTTP\/1\.1 413/);
  const deep = '['.repeat(5000) + ']'.repeat(5000);
  const d = await request(`${srv.url}/api/generate`, { method: 'POST', body: `{"model":"stories","x":${deep}}` });
  assert.equal(d.status, 400);
  assert.match(d.json.error, /nesting/);
  await stillServing();
});

test('a request with both Transfer-Encoding and Content-Length is refused', async () => {
  const body = '{"model":"stories","prompt":"x","stream":false}';
  const raw = await rawExchange(srv.port, `POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n` +
    `Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`, 5000 * SLOW);
  assert.match(raw, /^HTTP\/1\.1 400/);
  assert.match(raw, /both Transfer-Encoding and Content-Length/);
  await stillServing();
});

test('too many headers are refused', async () => {
  let hdrs = '';
  for (let i = 0; i < 150; i++) hdrs += `X-H${i}: v\r\n`;
  const raw = await rawExchange(srv.port, `GET /api/tags HTTP/1.1\r\nHost: localhost\r\n${hdrs}\r\n`, 5000 * SLOW);
  assert.match(raw, /^HTTP\/1\.1 431/);
  // absurdly long headers hit the connection memory limit instead
  const long = await rawExchange(srv.port, `GET /api/tags HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'a'.repeat(200000)}\r\n\r\n`, 5000 * SLOW);
  assert.ok(!/^HTTP\/1\.1 200/.test(long));
  await stillServing();
});

test('a slow client does not block others and is dropped after the idle timeout', async () => {
  const s = net.connect(srv.port, '127.0.0.1');
  s.on('error', () => {});
  await new Promise((r) => s.on('connect', r));
  s.write('POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{"mod');
  const closed = new Promise((r) => s.on('close', () => r(Date.now())));
  const t0 = Date.now();
  await stillServing();
  await stillServing();
  const when = await Promise.race([closed, new Promise((r) => setTimeout(() => r(null), 15000 * SLOW).unref())]);
  assert.ok(when !== null, 'slow connection closed by the server');
  assert.ok(when - t0 < 15000 * SLOW);
});

test('bad blob digests and methods', async () => {
  const h = await request(`${srv.url}/api/blobs/sha256:zz`, { method: 'HEAD' });
  assert.equal(h.status, 400, h.body);
  const r = await request(`${srv.url}/api/blobs/sha256:../../etc/passwd`, { method: 'POST', body: 'x' });
  assert.equal(r.status, 400, r.body);
  const g = await request(`${srv.url}/api/generate`);
  assert.equal(g.status, 404, g.body);
  const missing = `sha256:${'0'.repeat(64)}`;
  const m = await request(`${srv.url}/api/blobs/${missing}`);
  assert.equal(m.status, 404);
  assert.match(m.json.error, /not found/);
  assert.equal((await request(`${srv.url}/api/blobs/${missing}`, { method: 'HEAD' })).status, 404);
});

test('an oversized body announced with Expect: 100-continue is refused before it is sent', async () => {
  const got = await rawExchange(srv.port, `POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${64 << 20}\r\nExpect: 100-continue\r\n\r\n`, 3000);
  assert.match(got, /^HTTP\/1\.1 413/);
  assert.doesNotMatch(got, /100 Continue/);
  assert.match(got, /larger than/);
});

test('API keys: 401 without a valid key; / and /health stay open', async () => {
  const k = await startServer(models, ['--api-key', 'k-one,k-two']);
  try {
    const no = await request(`${k.url}/api/tags`);
    assert.equal(no.status, 401);
    assert.match(no.json.error, /API key/);
    const bad = await request(`${k.url}/api/tags`, { headers: { Authorization: 'Bearer k-on' } });
    assert.equal(bad.status, 401);
    const ok = await request(`${k.url}/api/tags`, { headers: { Authorization: 'Bearer k-two' } });
    assert.equal(ok.status, 200);
    assert.equal((await request(`${k.url}/health`)).status, 200);
    assert.equal((await request(`${k.url}/`)).status, 200);
    const wrong = new OpenAI({ baseURL: `${k.url}/v1`, apiKey: 'nope', maxRetries: 0 });
    await assert.rejects(wrong.models.list(), (e) => e.status === 401);
    const right = new OpenAI({ baseURL: `${k.url}/v1`, apiKey: 'k-one', maxRetries: 0 });
    assert.equal((await right.models.list()).data[0].id, 'stories:latest');
  } finally { assert.equal(await k.stop(), 0); }
});

test('CORS: localhost origins allowed, others refused unless listed', async () => {
  const ok = await request(`${srv.url}/api/tags`, { headers: { Origin: 'http://localhost:5173' } });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers['access-control-allow-origin'], 'http://localhost:5173');
  const pre = await request(`${srv.url}/api/chat`, { method: 'OPTIONS', headers: { Origin: 'http://127.0.0.1:3000', 'Access-Control-Request-Method': 'POST' } });
  assert.equal(pre.status, 204);
  assert.match(pre.headers['access-control-allow-headers'], /Authorization/);
  for (const headers of [{}, { Origin: 'https://evil.example' }]) { // a refused preflight still says why, in JSON
    const no = await request(`${srv.url}/api/chat`, { method: 'OPTIONS', headers });
    assert.equal(no.status, 403);
    assert.match(no.json.error, /preflight/);
  }
  const evil = await request(`${srv.url}/api/tags`, { headers: { Origin: 'https://evil.example' } });
  assert.equal(evil.status, 403);
  assert.equal(evil.headers['access-control-allow-origin'], undefined);
  const same = await request(`${srv.url}/api/tags`, { headers: { Origin: `http://127.0.0.1:${srv.port}` } });
  assert.equal(same.status, 200);
  const listed = await startServer(models, [], { HEARTH_ORIGINS: 'https://app.example' });
  try {
    const r = await request(`${listed.url}/api/tags`, { headers: { Origin: 'https://app.example' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers['access-control-allow-origin'], 'https://app.example');
  } finally { await listed.stop(); }
});

test('DNS rebinding: a non-local Host is refused on a loopback server', async () => {
  const r = await request(`${srv.url}/api/tags`, { headers: { Host: 'attacker.example:11434' } });
  assert.equal(r.status, 403);
  assert.match(r.json.error, /Host/);
  for (const host of [`localhost:${srv.port}`, `127.0.0.1:${srv.port}`, 'localhost', `127.1.2.3:${srv.port}`,
                      `[::1]:${srv.port}`]) {
    assert.equal((await request(`${srv.url}/api/tags`, { headers: { Host: host } })).status, 200, host);
  }
  // names that only look local: a domain starting with "127.", text after an IPv6 literal, junk after the port
  for (const host of [`127.attacker.example:${srv.port}`, '127.0.0.1.attacker.example', `[::1]evil.example`,
                      `[::1]:${srv.port}x`, `localhost.attacker.example:${srv.port}`, `127.0.0.1:${srv.port}:1`]) {
    assert.equal((await request(`${srv.url}/api/tags`, { headers: { Host: host } })).status, 403, host);
  }
});

test('a taken port is a clear error', async () => {
  const r = cli(['serve', '--host', `127.0.0.1:${srv.port}`], { HEARTH_MODELS: models });
  assert.equal(r.code, 1);
  assert.match(r.err, /already in use/);
});
