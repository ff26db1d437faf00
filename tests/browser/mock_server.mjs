// mock_server.mjs — a tiny stand-in for `hearth serve`: serves web/* with the same headers
// the real server sends (CSP, ETag, no-cache) and fakes the Ollama API the page uses, with
// replies chosen by keywords in the last user message so browser tests are deterministic:
//   "xss"      a reply full of HTML/script injection attempts (must render as text)
//   "long"     streams (a token every 15 ms) until the client disconnects or options.num_predict
//   "toolong"  adds 900 tokens to the prompt; "loadfail"  500 "failed to load model"
//   "fillctx"  streams until the context is full (done_reason "length")
//   "nodone" / "reset" / "miderror"  broken streams (see brokenStream)
//   "think" / "thinkonly"  message.thinking, then an answer / no answer (see thinkStream)
//   otherwise  a Markdown reply streamed word by word (heading, list, code, table)
// Every /api/chat body is recorded in state.requests; state.aborted counts streams the
// client cancelled. Run alone for manual work: `node mock_server.mjs [port]`.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const WEB_DIR = path.resolve(here, '../../web');
export const CSP = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'";

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml' };

export const MODELS = [
  { name: 'stories:260k', family: 'llama', parameter_size: '260K', quantization_level: 'F32', ctx: 512, caps: ['completion'], params: 'temperature                    0.7\nstop                           "</s>"' },
  { name: 'llava-mock:7b', family: 'llama', parameter_size: '7B', quantization_level: 'Q4_K_M', ctx: 4096, caps: ['completion', 'vision'], params: '' },
];

export const XSS_REPLY = 'Careful: <script>window.__xss = 1</script> and <img src=x onerror="window.__xss=2"> ' +
  'and [click me](javascript:window.__xss=3) and <a href="javascript:alert(1)">raw link</a> and ' +
  '[data](data:text/html,<script>alert(1)</script>) and <iframe src="javascript:alert(1)"></iframe>\n\n' +
  '**bold <b onmouseover=alert(1)>x</b>** `<svg onload=alert(1)>`\n\n![pic](javascript:alert(1))';

const NORMAL_REPLY = '## A short answer\n\nHello! Here is **bold**, *emphasis* and `code`, plus a [link](https://example.com).\n\n' +
  '- first point\n- second point\n  1. nested one\n  2. nested two\n\n```c\nint main(void) {\n    return 0;\n}\n```\n\n' +
  '| name | value |\n|:-----|------:|\n| alpha | 1 |\n| beta | 22 |\n\nThat is all.';

function chunks(text) {
  return text.match(/\s*\S+|\s+/g) || [];
}

// Streams that go wrong after a 200: "nodone" ends without the final done line, "reset"
// drops the connection mid-reply, "miderror" sends an {"error"} line after some text.
async function brokenStream(kind, res, model) {
  const line = (o) => JSON.stringify(o) + '\n';
  res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
  for (const c of ['partial ', 'reply']) res.write(line({ model, created_at: new Date().toISOString(), message: { role: 'assistant', content: c }, done: false }));
  await new Promise((r) => setTimeout(r, 100));
  if (kind === 'reset') res.socket.destroy();
  else if (kind === 'miderror') res.end(line({ error: 'CUDA out of memory while decoding' }));
  else res.end();
}

// A reasoning model: message.thinking (holding a stray "</think>"), then the answer unless
// thinkOnly.
async function thinkStream(thinkOnly, res, model) {
  const line = (o) => JSON.stringify({ model, created_at: new Date().toISOString(), ...o }) + '\n';
  res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
  res.write(line({ message: { role: 'assistant', content: '', thinking: thinkOnly ? 'pondering' : 'let me think </think> <b>not the answer</b>' }, done: false }));
  await new Promise((r) => setTimeout(r, 100));
  if (!thinkOnly) res.write(line({ message: { role: 'assistant', content: 'Answer.' }, done: false }));
  res.end(line({ message: { role: 'assistant', content: '' }, done: true, done_reason: 'stop', eval_count: 3, eval_duration: 1e6, prompt_eval_count: 1 }));
}

function sendJson(res, status, obj) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(obj));
}

function serveStatic(req, res) {
  const url = new URL(req.url, 'http://x');
  const name = url.pathname === '/' ? 'index.html' : url.pathname.slice(1);
  if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith('.')) return sendJson(res, 404, { error: 'not found' });
  const file = path.join(WEB_DIR, name);
  if (!fs.existsSync(file)) return sendJson(res, 404, { error: 'not found' });
  const data = fs.readFileSync(file);
  const etag = '"' + crypto.createHash('sha1').update(data).digest('hex').slice(0, 16) + '"';
  const headers = {
    'Content-Type': TYPES[path.extname(name)] || 'application/octet-stream',
    'Cache-Control': 'no-cache', ETag: etag, 'Content-Security-Policy': CSP,
    'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer',
  };
  if (req.headers['if-none-match'] === etag) { res.writeHead(304, headers); res.end(); return; }
  res.writeHead(200, { ...headers, 'Content-Length': data.length });
  res.end(data);
}

function readBody(req) {
  return new Promise((resolve) => {
    let s = '';
    req.on('data', (d) => { s += d; });
    req.on('end', () => { try { resolve(JSON.parse(s || '{}')); } catch (_) { resolve(null); } });
  });
}

function showModel(m) {
  return {
    license: '', modelfile: '', parameters: m.params, template: '{{ .Prompt }}',
    details: { format: 'gguf', family: m.family, families: [m.family], parameter_size: m.parameter_size, quantization_level: m.quantization_level },
    model_info: { 'general.architecture': 'llama', 'llama.context_length': m.ctx },
    capabilities: m.caps,
  };
}

async function chat(req, res, state) {
  const body = await readBody(req);
  if (!body || !Array.isArray(body.messages)) return sendJson(res, 400, { error: 'invalid request body' });
  const model = MODELS.find((m) => m.name === body.model);
  if (!model) return sendJson(res, 404, { error: `model '${body.model}' not found` });
  state.requests.push(body);
  const last = [...body.messages].reverse().find((m) => m.role === 'user');
  const text = (last && last.content) || '';
  // The context as the real server sees it (about 4 characters a token): a prompt that does
  // not fit is a 400 in its words, or with "truncate" its oldest tokens are cut.
  const ctx = (body.options && body.options.num_ctx) || model.ctx;
  let prompt = body.messages.reduce((n, m) => n + 4 + Math.ceil(String(m.content).length / 4), 0) + (/toolong/.test(text) ? 900 : 0);
  let truncated = 0;
  if (prompt >= ctx) {
    if (!body.truncate) return sendJson(res, 400, { error: `the prompt is ${prompt} tokens but the context is ${ctx} tokens; shorten it, raise num_ctx, or set "truncate": true` });
    truncated = prompt - (ctx - 1);
    prompt = ctx - 1;
  }
  if (/loadfail/.test(text)) return sendJson(res, 500, { error: 'failed to load model: out of memory' });
  state.loaded.add(model.name);
  const broken = /\b(nodone|reset|miderror)\b/.exec(text);
  if (broken) return brokenStream(broken[1], res, model.name);
  if (/\bthink(only)?\b/.test(text)) return thinkStream(/thinkonly/.test(text), res, model.name);
  res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
  const forever = /long|fillctx/.test(text);
  const np = body.options && body.options.num_predict;
  const ctxLeft = /fillctx/.test(text) ? ctx - prompt : Infinity;
  const limit = Math.min(Number.isInteger(np) && np > 0 ? np : Infinity, ctxLeft);   // honoured like the real server
  const parts = chunks(/xss/.test(text) ? XSS_REPLY : NORMAL_REPLY);
  let i = 0;
  let finished = false;
  const started = Date.now();
  const tick = () => {
    if (res.destroyed) return;
    if (i < limit && (forever || i < parts.length)) {
      const piece = forever ? ` word${i}` : parts[i];
      i++;
      res.write(JSON.stringify({ model: model.name, created_at: new Date().toISOString(), message: { role: 'assistant', content: piece }, done: false }) + '\n');
      setTimeout(tick, forever ? 15 : 12);
      return;
    }
    finished = true;
    res.end(JSON.stringify({
      model: model.name, created_at: new Date().toISOString(), message: { role: 'assistant', content: '' },
      done: true, done_reason: i >= limit ? 'length' : 'stop', total_duration: (Date.now() - started) * 1e6, load_duration: 2e6,
      prompt_eval_count: prompt, prompt_eval_duration: 5e6, eval_count: i, eval_duration: (Date.now() - started) * 1e6,
      prompt_cached_tokens: state.requests.length > 1 ? Math.floor(prompt / 2) : 0,
      ...(truncated ? { truncated_tokens: truncated } : {}),
    }) + '\n');
  };
  res.on('close', () => { if (!finished) state.aborted++; });
  setTimeout(tick, 60);
}

// Starts the mock on 127.0.0.1 (port 0 = any free port). Resolves {url, state, close()}.
export function startMock({ port = 0, apiKey = '' } = {}) {
  const state = { requests: [], aborted: 0, loaded: new Set() };
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    if (!url.pathname.startsWith('/api/')) return serveStatic(req, res);
    if (apiKey && req.headers.authorization !== 'Bearer ' + apiKey) return sendJson(res, 401, { error: 'unauthorized: missing or invalid API key' });
    if (url.pathname === '/api/tags' && req.method === 'GET') {
      return sendJson(res, 200, { models: MODELS.map((m) => ({ name: m.name, model: m.name, size: 1185376, digest: 'sha256:' + '0'.repeat(64), modified_at: new Date().toISOString(), details: { format: 'gguf', family: m.family, parameter_size: m.parameter_size, quantization_level: m.quantization_level } })) });
    }
    if (url.pathname === '/api/ps' && req.method === 'GET') {
      return sendJson(res, 200, { models: [...state.loaded].map((n) => ({ name: n, model: n, size: 1185376, expires_at: new Date(Date.now() + 3e5).toISOString() })) });
    }
    if (url.pathname === '/api/show' && req.method === 'POST') {
      const b = await readBody(req);
      const m = b && MODELS.find((x) => x.name === (b.model || b.name));
      return m ? sendJson(res, 200, showModel(m)) : sendJson(res, 404, { error: 'model not found' });
    }
    if (url.pathname === '/api/chat' && req.method === 'POST') return chat(req, res, state);
    if (url.pathname === '/api/create' && req.method === 'POST') {   // accepted, not stored: the models are fixed
      const b = await readBody(req);
      return b && (b.model || b.name) ? sendJson(res, 200, { status: 'success' }) : sendJson(res, 400, { error: 'model name required' });
    }
    return sendJson(res, 404, { error: 'not found' });
  });
  return new Promise((resolve) => {
    server.listen(port, '127.0.0.1', () => {
      const url = `http://127.0.0.1:${server.address().port}`;
      resolve({
        url, state,
        close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
      });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const m = await startMock({ port: Number(process.argv[2] || 11435) });
  console.log(`mock hearth on ${m.url}`);
}
