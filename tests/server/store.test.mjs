// Store endpoints through the official `ollama` client (and raw HTTP where the client has
// no call): list, show, copy, delete, create, blobs, ps, version, pull from a stand-in
// registry (interrupted and resumed, corrupt blob refused), OpenAI /v1/models.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { tmpdir, createModel, startServer, request, startRegistry, cli, cliAsync, sha256, STORIES, SHARED } from './lib.mjs';

// Distinct real GGUF files for the pull tests (the store already holds stories260K).
const pullA = fs.readFileSync(path.join(SHARED, 'models', 'random', 'llama.Q4_0.gguf'));
const pullB = fs.readFileSync(path.join(SHARED, 'models', 'random', 'llama.Q8_0.gguf'));
const pullC = fs.readFileSync(path.join(SHARED, 'models', 'random', 'llama.Q4_1.gguf'));

const models = tmpdir();
let srv, ollama, openai;
const storiesBytes = fs.readFileSync(STORIES);

test.before(async () => {
  createModel(models, 'stories', `FROM ${STORIES}\nPARAMETER temperature 0.3\nPARAMETER stop "THE END"\nSYSTEM You tell stories.\nLICENSE """MIT (test)"""\n`);
  srv = await startServer(models);
  ollama = new Ollama({ host: srv.url });
  openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused' });
});

test.after(async () => {
  const code = await srv.stop();
  assert.equal(code, 0, 'server exits cleanly on SIGTERM');
  fs.rmSync(models, { recursive: true, force: true });
});

test('version and list', async () => {
  const v = await ollama.version();
  assert.match(v.version, /^\d+\.\d+\.\d+/);
  const l = await ollama.list();
  assert.equal(l.models.length, 1);
  const m = l.models[0];
  assert.equal(m.name, 'stories:latest');
  assert.equal(m.details.format, 'gguf');
  assert.equal(m.details.family, 'llama');
  // the listed size is the bytes of all layers, which include the model file itself
  assert.ok(m.size > storiesBytes.length);
  assert.match(m.digest, /^[0-9a-f]{64}$/);
});

test('show reports metadata from the GGUF and the stored layers', async () => {
  const s = await ollama.show({ model: 'stories' });
  assert.equal(s.system, 'You tell stories.');
  assert.equal(s.license, 'MIT (test)');
  assert.match(s.parameters, /temperature\s+0.3/);
  assert.match(s.parameters, /stop\s+"THE END"/);
  assert.equal(s.model_info['general.architecture'], 'llama');
  assert.equal(typeof s.model_info['llama.context_length'], 'number');
  assert.equal(s.model_info['llama.embedding_length'], 64); // stories260K: dim 64 (shared/README)
  assert.equal(s.model_info['tokenizer.ggml.tokens'], null); // arrays only with verbose
  const v = await ollama.show({ model: 'stories', verbose: true });
  assert.equal(v.model_info['tokenizer.ggml.tokens'].length, 512); // 512-token vocab (shared/README)
  assert.ok(s.capabilities.includes('completion'));
  assert.equal(s.details.family, 'llama');
  await assert.rejects(ollama.show({ model: 'nope' }), (e) => e.status_code === 404);
});

test('copy and delete', async () => {
  await ollama.copy({ source: 'stories', destination: 'me/story-copy:v2' });
  let names = (await ollama.list()).models.map((m) => m.name).sort();
  assert.deepEqual(names, ['me/story-copy:v2', 'stories:latest']);
  await ollama.delete({ model: 'me/story-copy:v2' });
  names = (await ollama.list()).models.map((m) => m.name);
  assert.deepEqual(names, ['stories:latest']);
  await assert.rejects(ollama.delete({ model: 'me/story-copy:v2' }), (e) => e.status_code === 404);
  await assert.rejects(ollama.copy({ source: 'missing', destination: 'x' }), (e) => e.status_code === 404);
  // the blob the copy shared is still there for the original
  const s = await ollama.show({ model: 'stories' });
  assert.equal(s.system, 'You tell stories.');
});

test('delete unloads a model that is generating, whatever keep_alive its request asked for', async () => {
  await ollama.copy({ source: 'stories', destination: 'victim' });
  // names the store keeps for its own temporary files are refused
  await assert.rejects(ollama.copy({ source: 'stories', destination: 'victim.tmp-1' }), (e) => e.status_code === 400);
  const st = await ollama.generate({ model: 'victim', prompt: 'Once', stream: true, keep_alive: -1,
                                     options: { num_predict: 400, temperature: 0 } });
  let deleted = false;
  for await (const part of st) {
    if (!deleted) { await ollama.delete({ model: 'victim' }); deleted = true; }
    if (part.done) break;
  }
  let loaded = ['victim'];
  for (let i = 0; i < 50 && loaded.length; i++) { // the unloader runs every 200 ms
    loaded = (await ollama.ps()).models.map((m) => m.name).filter((n) => n.startsWith('victim'));
    if (loaded.length) await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(loaded, []);
  assert.deepEqual((await ollama.list()).models.map((m) => m.name), ['stories:latest']);
});

test('create from a stored model and from an uploaded blob', async () => {
  const r = await ollama.create({ model: 'brief', from: 'stories', system: 'Be brief.', parameters: { temperature: 0.1, stop: ['A', 'B'] }, stream: false });
  assert.equal(r.status, 'success');
  const s = await ollama.show({ model: 'brief' });
  assert.equal(s.system, 'Be brief.');
  assert.match(s.parameters, /temperature\s+0.1/);
  // blobs: HEAD missing, POST with the wrong digest, POST right, HEAD present
  const digest = sha256(storiesBytes);
  const wrong = sha256(Buffer.from('something else'));
  // this store already holds the model bytes (imported at create), so ask about another digest
  assert.equal((await request(`${srv.url}/api/blobs/${wrong}`, { method: 'HEAD' })).status, 404);
  const bad = await request(`${srv.url}/api/blobs/${wrong}`, { method: 'POST', body: storiesBytes });
  assert.equal(bad.status, 400);
  assert.match(bad.json.error, /digest mismatch/);
  const ok = await request(`${srv.url}/api/blobs/${digest}`, { method: 'POST', body: storiesBytes });
  assert.equal(ok.status, 201);
  assert.equal((await request(`${srv.url}/api/blobs/${digest}`, { method: 'HEAD' })).status, 200);
  const st = ollama.create({ model: 'uploaded', files: { 'model.gguf': digest }, template: '{{ messages[0].content }}', stream: true });
  const statuses = [];
  for await (const p of await st) statuses.push(p.status);
  assert.equal(statuses.at(-1), 'success');
  const u = await ollama.show({ model: 'uploaded' });
  assert.equal(u.template, '{{ messages[0].content }}');
  await assert.rejects(ollama.create({ model: 'x', files: { 'model.gguf': wrong }, stream: false }), (e) => e.status_code === 404);
  await assert.rejects(ollama.create({ model: 'x', from: 'stories', parameters: { bogus: 1 }, stream: false }), (e) => e.status_code === 400);
  // values generation would refuse are refused when stored, so no model becomes unusable
  for (const parameters of [{ temperature: 'hot' }, { temperature: { a: [1] } }, { num_ctx: -5 }, { top_k: 9999999999999 },
                            { stop: Array.from({ length: 17 }, (_, i) => `s${i}`) }, { stop: ['x'.repeat(1025)] }]) {
    await assert.rejects(ollama.create({ model: 'x', from: 'stories', parameters, stream: false }), (e) => e.status_code === 400,
                         JSON.stringify(parameters).slice(0, 80));
  }
  const legacy = await request(`${srv.url}/api/create`, { method: 'POST', body: JSON.stringify({ model: 'x', modelfile: 'FROM stories\nPARAMETER num_ctx -5\n', stream: false }) });
  assert.equal(legacy.status, 400);
  assert.match(legacy.json.error, /num_ctx/);
  // the server never reads its own files for a client: FROM paths are not names it knows
  for (const from of [STORIES, '/etc/passwd', './x.gguf', '~/x.gguf']) {
    const r = await request(`${srv.url}/api/create`, { method: 'POST', body: JSON.stringify({ model: 'x', from, stream: false }) });
    assert.ok(r.status === 400 || r.status === 404, `${from}: ${r.status}`);
    assert.ok(r.json.error, from);
    const lm = await request(`${srv.url}/api/create`, { method: 'POST', body: JSON.stringify({ model: 'x', modelfile: `FROM ${from}\n`, stream: false }) });
    assert.ok(lm.status === 400 || lm.status === 404, `modelfile FROM ${from}: ${lm.status}`);
  }
  // no temporary upload files are left behind
  const leftovers = fs.readdirSync(path.join(models, 'blobs')).filter((f) => f.includes('tmp') || f.includes('partial'));
  assert.deepEqual(leftovers, []);
  await ollama.delete({ model: 'uploaded' });
  await ollama.delete({ model: 'brief' });
});

test('ps lists nothing before any generation', async () => {
  const p = await ollama.ps();
  assert.ok(Array.isArray(p.models));
});

test('OpenAI models list and retrieve', async () => {
  const list = await openai.models.list();
  const ids = list.data.map((m) => m.id);
  assert.deepEqual(ids, ['stories:latest']);
  const one = await openai.models.retrieve('stories');
  assert.equal(one.id, 'stories:latest');
  await assert.rejects(openai.models.retrieve('nope'), (e) => e.status === 404);
});

test('pull from a stand-in registry through the API, interrupted once and resumed', async () => {
  const reg = await startRegistry([
    { mediaType: 'application/vnd.ollama.image.model', data: pullA },
    { mediaType: 'application/vnd.ollama.image.system', data: Buffer.from('pulled system') },
  ], { cutOnce: true });
  try {
    const name = `${reg.host}/library/tiny:latest`;
    // first attempt: the registry cuts the model blob halfway
    const events = [];
    let failed = null;
    try {
      for await (const p of await ollama.pull({ model: name, insecure: true, stream: true })) events.push(p);
    } catch (e) { failed = e; }
    const errLine = failed ? String(failed.message || failed) : events.find((e) => e.error)?.error;
    assert.ok(errLine, 'first pull reports an error');
    assert.ok(!(await ollama.list()).models.some((m) => m.name.includes('tiny')), 'no half model is visible');
    const partial = fs.readdirSync(path.join(models, 'blobs')).filter((f) => f.endsWith('-partial'));
    assert.equal(partial.length, 1, 'the partial download is kept for resume');
    // second attempt resumes with a Range request
    const statuses = [];
    for await (const p of await ollama.pull({ model: name, insecure: true, stream: true })) statuses.push(p.status);
    assert.equal(statuses.at(-1), 'success');
    assert.ok(reg.state.ranges.some((r) => /^bytes=[1-9]\d*-$/.test(r)), `resumed with Range (saw ${reg.state.ranges})`);
    const s = await ollama.show({ model: name });
    assert.equal(s.system, 'pulled system');
    // the stored model file is byte-identical to the original
    const modelLayer = reg.layers[0];
    const blob = fs.readFileSync(path.join(models, 'blobs', modelLayer.digest.replace(':', '-')));
    assert.ok(blob.equals(pullA));
    assert.deepEqual(fs.readdirSync(path.join(models, 'blobs')).filter((f) => f.endsWith('-partial')), []);
    await ollama.delete({ model: name });
  } finally { await reg.close(); }
});

test('pull refuses a corrupt blob and an unknown model; CLI pull works', async () => {
  const other = pullB;
  const reg = await startRegistry([{ mediaType: 'application/vnd.ollama.image.model', data: other }], { corrupt: true });
  try {
    const name = `${reg.host}/library/tiny`;
    const r = await request(`${srv.url}/api/pull`, { method: 'POST', body: { model: name, insecure: true, stream: false } });
    assert.equal(r.status, 400);
    assert.match(r.json.error, /digest mismatch/);
    assert.ok(!fs.readdirSync(path.join(models, 'blobs')).some((f) => f.includes(sha256(other).slice(7))), 'corrupt blob not stored');
    const nf = await request(`${srv.url}/api/pull`, { method: 'POST', body: { model: `${reg.host}/library/missing`, insecure: true, stream: false } });
    assert.equal(nf.status, 404);
    assert.ok(!(await ollama.list()).models.some((m) => m.name.includes('tiny')));
  } finally { await reg.close(); }
  const reg2 = await startRegistry([{ mediaType: 'application/vnd.ollama.image.model', data: pullC }]);
  try {
    const c = await cliAsync(['pull', '--insecure', `${reg2.host}/library/tiny:v1`], { HEARTH_MODELS: models });
    assert.equal(c.code, 0, c.err);
    assert.match(c.err, /success/);
    const l = cli(['list'], { HEARTH_MODELS: models });
    assert.match(l.out, new RegExp(`${reg2.host.replace(/\./g, '\\.')}/library/tiny:v1`));
  } finally { await reg2.close(); }
});

test('GET / serves the web page with ETag, CSP and 304 revalidation', async () => {
  const r = await request(`${srv.url}/`);
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/html/);
  assert.match(r.body, /<html/i);
  assert.match(r.headers['content-security-policy'], /default-src 'self'/);
  assert.equal(r.headers['cache-control'], 'no-cache');
  const etag = r.headers.etag;
  assert.ok(etag, 'ETag present');
  const again = await request(`${srv.url}/`, { headers: { 'If-None-Match': etag } });
  assert.equal(again.status, 304);
  assert.equal(again.body, '');
  assert.equal((await request(`${srv.url}/no-such-file.js`)).status, 404);
});
