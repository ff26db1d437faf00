// Behaviour that clients of Ollama and of the OpenAI API rely on, found missing or different
// in review: image parts are a 4xx (clients retry 5xx), /api/show's Modelfile recreates the
// model, /api/tags and /api/ps carry the parameter size, /api/ps names models canonically, embedding `dimensions` and empty inputs, `suffix`
// (fill-in-the-middle), `logit_bias`, `logprobs`, CORS and Host rules for local apps, lone UTF-16
// surrogates, OpenAI's model_not_found error, tool_choice "none".
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { tmpdir, createModel, startServer, request, cli, STORIES } from './lib.mjs';

const models = tmpdir();
let srv, openai;

test.before(async () => {
  createModel(models, 'stories', `FROM ${STORIES}\n`);
  createModel(models, 'qtools', `FROM ${STORIES}\nTEMPLATE """{% if tools %}Tools: {{ tools | tojson }}\n{% endif %}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:"""\n`);
  srv = await startServer(models);
  openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 2 });
});

test.after(async () => {
  assert.equal(await srv.stop(), 0);
  fs.rmSync(models, { recursive: true, force: true });
});

const post = (p, body, headers = {}) => request(`${srv.url}${p}`, { method: 'POST', body, headers: { 'Content-Type': 'application/json', ...headers } });
const greedy = { temperature: 0, top_k: 1 };

test('image parts are a 400 the OpenAI client does not retry', async () => {
  const before = (srv.log().match(/path="\/v1\/chat\/completions"/g) || []).length;
  await assert.rejects(openai.chat.completions.create({
    model: 'stories',
    messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AA==' } }] }],
  }), (e) => e.status === 400 && e.error?.type === 'invalid_request_error' && /vision/.test(e.message));
  await new Promise((r) => setTimeout(r, 1500)); // the access log line follows the reply; retries would come ~0.5-1 s apart
  const after = (srv.log().match(/path="\/v1\/chat\/completions"/g) || []).length;
  assert.equal(after - before, 1, 'one request, no retries');
  const ps = (await request(`${srv.url}/api/ps`)).json.models.map((m) => m.name);
  assert.ok(!ps.includes('stories:latest'), 'a refused request loads no model');
  for (const [p, body] of [['/api/generate', { model: 'stories', prompt: 'hi', images: ['AA=='] }],
                           ['/api/chat', { model: 'stories', messages: [{ role: 'user', content: 'hi', images: ['AA=='] }] }]]) {
    const r = await post(p, body);
    assert.equal(r.status, 400, p);
    assert.match(r.json.error, /images/);
  }
});

test('/api/show modelfile carries SYSTEM, PARAMETER, LICENSE and MESSAGE, and recreates the model', async () => {
  const made = await post('/api/create', {
    model: 's3', from: 'stories', system: 'You are a "storyteller".', license: 'MIT (test)',
    parameters: { temperature: 0.2, stop: ['THE END', 'say "bye"'] },
    messages: [{ role: 'user', content: 'hello' }, { role: 'assistant', content: 'Once upon a time' }], stream: false,
  });
  assert.equal(made.status, 200, made.body);
  const show = (await post('/api/show', { model: 's3' })).json;
  const mf = show.modelfile;
  for (const line of ['SYSTEM """You are a "storyteller"."""', 'PARAMETER temperature 0.2', 'PARAMETER stop """THE END"""',
                      'PARAMETER stop "say \\"bye\\""', 'LICENSE """MIT (test)"""', 'MESSAGE user """hello"""',
                      'MESSAGE assistant """Once upon a time"""']) assert.ok(mf.includes(line), `${line} in:\n${mf}`);
  // the text is a Modelfile hearth reads back into the same model
  const dir = tmpdir('hearth-mf-');
  fs.writeFileSync(path.join(dir, 'Modelfile'), mf);
  const r = cli(['create', 's4', '-f', path.join(dir, 'Modelfile')], { HEARTH_MODELS: models });
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(r.code, 0, r.err);
  const again = (await post('/api/show', { model: 's4' })).json;
  for (const k of ['system', 'parameters', 'license', 'messages', 'template']) assert.deepEqual(again[k], show[k], k);
});

test('/api/tags and /api/ps give the parameter size /api/show gives', async () => {
  const show = (await post('/api/show', { model: 'stories' })).json.details.parameter_size;
  assert.match(show, /^\d+(\.\d)?[KMBT]?$/);
  const tags = (await request(`${srv.url}/api/tags`)).json.models.find((m) => m.name === 'stories:latest');
  assert.equal(tags.details.parameter_size, show);
  await post('/api/generate', { model: 'stories', prompt: '' });
  const ps = (await request(`${srv.url}/api/ps`)).json.models.find((m) => m.name === 'stories:latest');
  assert.equal(ps.details.parameter_size, show);
});

test('/api/ps names a model as /api/tags does, however the request spelled it', async () => {
  const r = await post('/api/generate', { model: 'registry.ollama.ai/library/stories:latest', prompt: 'Once', stream: false, options: { num_predict: 1 } });
  assert.equal(r.status, 200, r.body);
  const ps = (await request(`${srv.url}/api/ps`)).json;
  const names = ps.models.map((m) => m.name);
  assert.ok(names.includes('stories:latest'), names.join(','));
  assert.ok(!names.some((n) => n.startsWith('registry.')), names.join(','));
});

test('embeddings: dimensions keeps a unit-length prefix; empty inputs as each API has them', async () => {
  const full = (await post('/api/embed', { model: 'stories', input: 'hello' })).json.embeddings[0];
  const cut = (await post('/api/embed', { model: 'stories', input: 'hello', dimensions: 8 })).json.embeddings[0];
  assert.equal(cut.length, 8);
  const norm = Math.hypot(...cut), n8 = Math.hypot(...full.slice(0, 8));
  assert.ok(Math.abs(norm - 1) < 1e-5, String(norm));
  cut.forEach((v, i) => assert.ok(Math.abs(v - full[i] / n8) < 1e-5));
  const oa = await openai.embeddings.create({ model: 'stories', input: ['a', 'b'], dimensions: 4, encoding_format: 'float' });
  assert.deepEqual(oa.data.map((d) => d.embedding.length), [4, 4]);
  for (const d of [0, full.length + 1, 2.5, 'x']) {
    assert.equal((await post('/api/embed', { model: 'stories', input: 'hi', dimensions: d })).status, 400, String(d));
    assert.equal((await post('/v1/embeddings', { model: 'stories', input: 'hi', dimensions: d })).status, 400, String(d));
  }
  assert.deepEqual((await post('/api/embed', { model: 'stories', input: '' })).json.embeddings, []);
  assert.deepEqual((await post('/api/embeddings', { model: 'stories', prompt: '' })).json.embedding, []);
  for (const input of ['', [], ['a', '']]) {
    const r = await post('/v1/embeddings', { model: 'stories', input });
    assert.equal(r.status, 400, JSON.stringify(input));
    assert.equal(r.json.error.type, 'invalid_request_error');
  }
});

test('suffix asks for fill-in-the-middle; a model without its tokens says it cannot insert', async () => {
  for (const [p, body] of [['/api/generate', { model: 'stories', prompt: 'def f(', suffix: ') pass', stream: false }],
                           ['/v1/completions', { model: 'stories', prompt: 'def f(', suffix: ') pass' }]]) {
    const r = await post(p, body);
    assert.equal(r.status, 400, p);
    assert.match(JSON.stringify(r.json), /does not support insert/);
  }
  // an empty suffix is no suffix
  const r = await post('/api/generate', { model: 'stories', prompt: 'Once', suffix: '', stream: false, options: { num_predict: 2 } });
  assert.equal(r.status, 200, r.body);
});

test('logit_bias steers /v1 sampling (-100 bans a token)', async () => {
  // the greedy next token's id, from Ollama's context (prompt ids, then the generated one)
  const g = (await post('/api/generate', { model: 'stories', prompt: 'Once upon a', raw: true, stream: false, options: { num_predict: 1, ...greedy } })).json;
  const id = g.context[g.context.length - 1];
  const base = await openai.completions.create({ model: 'stories', prompt: 'Once upon a', max_tokens: 1, temperature: 0 });
  assert.equal(base.choices[0].text, g.response);
  const banned = await openai.completions.create({ model: 'stories', prompt: 'Once upon a', max_tokens: 1, temperature: 0, logit_bias: { [id]: -100 } });
  assert.notEqual(banned.choices[0].text, g.response);
  const forced = await openai.completions.create({ model: 'stories', prompt: 'Once upon a', max_tokens: 1, temperature: 0, logit_bias: { 400: 100 } });
  const piece = cli(['detokenize', STORIES, '400']).out;
  assert.equal(forced.choices[0].text.trim(), piece.trim());
  for (const extra of [{ logit_bias: { x: 1 } }, { logit_bias: { 5: 101 } }, { logit_bias: [1] }, { top_logprobs: 3 }, { logprobs: true, top_logprobs: 21 }]) {
    const r = await post('/v1/chat/completions', { model: 'stories', messages: [{ role: 'user', content: 'hi' }], ...extra });
    assert.equal(r.status, 400, JSON.stringify(extra));
  }
  for (const stream of [false, true]) {
    const r = await post('/v1/completions', { model: 'stories', prompt: 'hi', max_tokens: 1, logit_bias: { 99999999: 5 }, stream });
    assert.equal(r.status, 400, `a token id past the vocabulary (stream ${stream})`);
  }
});

test('logprobs: the chosen tokens and their alternatives, whole and streamed', async () => {
  const messages = [{ role: 'user', content: 'Tell a story' }];
  const r = await openai.chat.completions.create({ model: 'stories', messages, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 3 });
  const content = r.choices[0].logprobs.content;
  assert.equal(content.length, r.usage.completion_tokens);
  assert.equal(content.map((e) => e.token).join(''), r.choices[0].message.content);
  for (const e of content) {
    assert.equal(e.top_logprobs.length, 3);
    assert.ok(e.logprob <= 0 && e.logprob === e.top_logprobs[0].logprob, 'greedy picks the most likely token');
    assert.ok(e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob && e.top_logprobs[1].logprob >= e.top_logprobs[2].logprob);
    assert.equal(Buffer.from(e.bytes).toString('utf8'), e.token);
  }
  let streamed = [];
  for await (const c of await openai.chat.completions.create({ model: 'stories', messages, max_tokens: 6, temperature: 0, logprobs: true, stream: true })) {
    const got = c.choices[0]?.logprobs?.content || [];
    // each chunk carries the tokens of its own text
    if (c.choices[0]?.delta?.content) assert.equal(got.map((e) => e.token).join(''), c.choices[0].delta.content);
    streamed = streamed.concat(got);
  }
  assert.deepEqual(streamed.map((e) => [e.token, e.logprob]), content.map((e) => [e.token, e.logprob]));
  assert.ok(streamed.every((e) => e.top_logprobs.length === 0));
  const plain = await openai.chat.completions.create({ model: 'stories', messages, max_tokens: 2 });
  assert.equal(plain.choices[0].logprobs, null);
  const comp = await openai.completions.create({ model: 'stories', prompt: 'Once upon a', max_tokens: 5, temperature: 0, logprobs: 2 });
  const l = comp.choices[0].logprobs;
  assert.equal(l.tokens.join(''), comp.choices[0].text);
  assert.equal(l.token_logprobs.length, 5);
  assert.ok(l.top_logprobs.every((o) => Object.keys(o).length <= 2));
  assert.deepEqual(l.text_offset, l.tokens.map((_, i) => l.tokens.slice(0, i).join('').length));
  // a stop string drops the tokens past it (one it cuts in two stays: part of its text is
  // the reply's); a reply right after BOS drops the first space as the text does
  for (const [prompt, stop] of [['Once upon a time', ['little']], ['', undefined]]) {
    const r2 = await openai.completions.create({ model: 'stories', prompt, max_tokens: 12, temperature: 0, logprobs: 1, stop });
    const l2 = r2.choices[0].logprobs, text2 = r2.choices[0].text;
    assert.ok(l2.tokens.join('').startsWith(text2) && l2.text_offset.every((o) => o < text2.length), JSON.stringify(l2.tokens));
    if (!stop) assert.equal(l2.tokens.join(''), text2);
    assert.deepEqual(l2.text_offset, l2.tokens.map((_, i) => l2.tokens.slice(0, i).join('').length));
    let text = '', toks = [];
    for await (const c of await openai.completions.create({ model: 'stories', prompt, max_tokens: 12, temperature: 0, logprobs: 1, stop, stream: true })) {
      text += c.choices[0]?.text || '';
      toks = toks.concat(c.choices[0]?.logprobs?.tokens || []);
    }
    assert.equal(text, r2.choices[0].text);
    assert.deepEqual(toks, l2.tokens);
  }
});

test('CORS and Host: local app shells and local names are allowed, as Ollama allows them', async () => {
  for (const o of ['vscode-webview://abc', 'app://obsidian.md', 'tauri://localhost', 'file://', 'http://0.0.0.0:8080']) {
    const r = await request(`${srv.url}/api/tags`, { headers: { Origin: o } });
    assert.equal(r.status, 200, o);
    assert.equal(r.headers['access-control-allow-origin'], o);
  }
  const pre = await request(`${srv.url}/v1/chat/completions`, {
    method: 'OPTIONS',
    headers: { Origin: 'http://localhost:3000', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,x-stainless-helper-method' },
  });
  assert.equal(pre.status, 204);
  assert.match(pre.headers['access-control-allow-headers'], /x-stainless-helper-method/i);
  for (const host of [`0.0.0.0:${srv.port}`, 'ollama.localhost', 'host.docker.internal', 'mybox.local', `192.168.1.5:${srv.port}`, '10.0.0.2', '[fd00::1]']) {
    assert.equal((await request(`${srv.url}/api/tags`, { headers: { Host: host } })).status, 200, host);
  }
  for (const host of ['localhost.', `[::ffff:127.0.0.1]:${srv.port}`, `${'a'.repeat(100)}.localhost`]) {
    assert.equal((await request(`${srv.url}/api/tags`, { headers: { Host: host } })).status, 200, host);
  }
  for (const host of ['evil.example', 'localhost.evil.example', 'local.evil.example', '8.8.8.8', '[::ffff:8.8.8.8]']) {
    assert.equal((await request(`${srv.url}/api/tags`, { headers: { Host: host } })).status, 403, host);
  }
  // --origins takes glob patterns, entries trimmed; a pattern with a star does not turn the Host check off
  const pat = await startServer(models, [], { HEARTH_ORIGINS: 'chrome-extension://*, http://good.example' });
  try {
    for (const o of ['chrome-extension://abcdef', 'http://good.example']) {
      const r = await request(`${pat.url}/api/tags`, { headers: { Origin: o } });
      assert.equal(r.headers['access-control-allow-origin'], o, o);
    }
    assert.equal((await request(`${pat.url}/api/tags`, { headers: { Origin: 'moz-extension://x' } })).status, 403);
    const rebound = await request(`${pat.url}/api/tags`, { headers: { Host: `evil.com:${pat.port}`, Origin: `http://evil.com:${pat.port}` } });
    assert.equal(rebound.status, 403, 'DNS rebinding stays refused');
  } finally { await pat.stop(); }
});

test('a lone UTF-16 surrogate in a request reads as U+FFFD, as Go decodes it', async () => {
  const body = JSON.stringify({ model: 'stories', prompt: 'Once \ud83d upon', stream: false, options: { num_predict: 1 } });
  assert.ok(body.includes('\\ud83d'));
  const r = await post('/api/generate', body);
  assert.equal(r.status, 200, r.body);
  const pair = await post('/api/generate', JSON.stringify({ model: 'stories', prompt: 'Once \ud83d\ude00 \\ud83d', stream: false, options: { num_predict: 1 } }));
  assert.equal(pair.status, 200, pair.body);
});

test('OpenAI errors: an unknown model is model_not_found', async () => {
  await assert.rejects(openai.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] }),
    (e) => e.status === 404 && e.error?.type === 'invalid_request_error' && e.error?.code === 'model_not_found');
});

test('tool_choice "none" renders no tools', async () => {
  const tools = [{ type: 'function', function: { name: 'get_weather', description: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
  const messages = [{ role: 'user', content: 'weather in Paris?' }];
  const plain = await openai.chat.completions.create({ model: 'qtools', messages, max_tokens: 1, ...greedy });
  const withTools = await openai.chat.completions.create({ model: 'qtools', messages, tools, max_tokens: 1, ...greedy });
  const none = await openai.chat.completions.create({ model: 'qtools', messages, tools, tool_choice: 'none', max_tokens: 1, ...greedy });
  assert.ok(withTools.usage.prompt_tokens > plain.usage.prompt_tokens, 'the template renders tools');
  assert.equal(none.usage.prompt_tokens, plain.usage.prompt_tokens);
});
