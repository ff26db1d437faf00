// Shared helpers for the black-box server tests: start `hearth serve` on a random loopback
// port with a private model store, raw HTTP helpers, and a stand-in Ollama registry.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';

export const HEARTH = process.env.HEARTH;
export const SHARED = process.env.HEARTH_TEST_SHARED;
if (!HEARTH || !SHARED) throw new Error('HEARTH and HEARTH_TEST_SHARED must be set (run through tests/cli/server.sh)');
export const STORIES = path.join(SHARED, 'models', 'stories260K.gguf');
// ASan builds are ~3x slower: scale every timeout.
export const SLOW = Number(process.env.HEARTH_TEST_SLOW || 1);

export function tmpdir(prefix = 'hearth-srv-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function sha256(buf) {
  return 'sha256:' + crypto.createHash('sha256').update(buf).digest('hex');
}

// Runs a hearth CLI verb synchronously.
export function cli(args, env = {}) {
  const r = spawnSync(HEARTH, args, { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 120000 * SLOW });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

// Runs a hearth CLI verb without blocking the event loop (needed when this process also
// serves something the verb talks to, like the stand-in registry).
export function cliAsync(args, env = {}) {
  return new Promise((resolve) => {
    const p = spawn(HEARTH, args, { env: { ...process.env, ...env } });
    let out = '', err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('close', (code) => resolve({ code, out, err }));
  });
}

// Creates a stored model from a Modelfile text in `models`.
export function createModel(models, name, modelfile) {
  const dir = tmpdir('hearth-mf-');
  const mf = path.join(dir, 'Modelfile');
  fs.writeFileSync(mf, modelfile);
  const r = cli(['create', name, '-f', mf], { HEARTH_MODELS: models });
  fs.rmSync(dir, { recursive: true, force: true });
  if (r.code !== 0) throw new Error(`hearth create ${name} failed: ${r.err}`);
}

// Starts `hearth serve` on 127.0.0.1:0; resolves with { url, port, proc, log(), stop() }.
export async function startServer(models, extraArgs = [], env = {}) {
  const proc = spawn(HEARTH, ['serve', '--host', '127.0.0.1:0', ...extraArgs], {
    env: { ...process.env, HEARTH_MODELS: models, HEARTH_HOST: '', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start: ' + log)), 30000 * SLOW);
    proc.stderr.on('data', (d) => {
      log += d.toString();
      const m = log.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}): ${log}`)); });
  });
  proc.removeAllListeners('exit');
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve({ code, sig })));
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    proc,
    log: () => log,
    exited,
    async stop() {
      if (proc.exitCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 30000 * SLOW);
      const r = await exited;
      clearTimeout(t);
      if (r.code !== 0) console.error(`hearth serve exited with ${r.code} (${r.sig}); log tail:\n${log.slice(-6000)}`);
      return r.code;
    },
  };
}

// Plain HTTP request; resolves { status, headers, body (string), json (or undefined) }.
export function request(url, { method = 'GET', body, headers = {}, timeout = 60000 * SLOW } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: { ...headers }, timeout, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, body: text, json });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    if (body !== undefined) {
      const data = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
      req.setHeader('Content-Length', Buffer.byteLength(data));
      req.write(data);
    }
    req.end();
  });
}

// Raw socket: sends `data`, resolves with everything received until the server closes or
// `ms` passes.
export function rawExchange(port, data, ms = 5000) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    const done = () => { s.destroy(); resolve(got); };
    const t = setTimeout(done, ms);
    s.on('data', (d) => { got += d.toString(); });
    s.on('close', () => { clearTimeout(t); resolve(got); });
    s.on('error', () => {});
    s.write(data);
  });
}

// A stand-in Ollama registry on loopback serving one model (manifest + blobs), with Range
// support, an optional one-time cut in the middle of the largest blob, and optional
// corruption. Records the Range headers it saw.
export async function startRegistry(files, { cutOnce = false, corrupt = false } = {}) {
  const layers = [];
  const blobs = new Map();
  const add = (mediaType, buf) => {
    const d = sha256(buf);
    blobs.set(d, buf);
    return { mediaType, digest: d, size: buf.length };
  };
  for (const f of files) layers.push(add(f.mediaType, f.data));
  const config = add('application/vnd.docker.container.image.v1+json', Buffer.from(JSON.stringify({ model_format: 'gguf', model_family: 'llama', file_type: 'F32' })));
  const manifest = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json', config, layers });
  const state = { ranges: [], cut: false, requests: 0 };
  const big = layers.reduce((a, b) => (b.size > a.size ? b : a));
  const server = http.createServer((req, res) => {
    state.requests++;
    const m = req.url.match(/^\/v2\/([^/]+)\/([^/]+)\/(manifests|blobs)\/(.+)$/);
    if (!m) { res.writeHead(404); return res.end('{"errors":[{"code":"NAME_UNKNOWN"}]}'); }
    if (m[3] === 'manifests') {
      if (m[2] !== 'tiny') { res.writeHead(404); return res.end('{"errors":[{"code":"MANIFEST_UNKNOWN"}]}'); }
      res.writeHead(200, { 'Content-Type': 'application/vnd.docker.distribution.manifest.v2+json' });
      return res.end(manifest);
    }
    let data = blobs.get(m[4]);
    if (!data) { res.writeHead(404); return res.end(); }
    if (corrupt && m[4] === big.digest) { data = Buffer.from(data); data[data.length >> 1] ^= 0xff; }
    let start = 0;
    const range = req.headers.range;
    if (range) {
      state.ranges.push(range);
      start = Number(/bytes=(\d+)-/.exec(range)[1]);
      res.writeHead(206, { 'Content-Length': data.length - start, 'Content-Range': `bytes ${start}-${data.length - 1}/${data.length}` });
    } else {
      res.writeHead(200, { 'Content-Length': data.length });
    }
    if (cutOnce && !state.cut && m[4] === big.digest) {
      state.cut = true;
      const half = Math.floor(data.length / 2);
      res.write(data.subarray(start, half), () => setTimeout(() => res.socket.destroy(), 50));
      return;
    }
    res.end(data.subarray(start));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  return {
    host: `127.0.0.1:${port}`,
    state,
    layers,
    manifestDigest: sha256(Buffer.from(manifest)),
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }),
  };
}

// Does generation work in this build? (The engine may not have landed yet.)
export async function canGenerate(url, model) {
  const r = await request(`${url}/api/generate`, { method: 'POST', body: { model, prompt: 'Once', stream: false, options: { num_predict: 1 } } });
  return { ok: r.status === 200, why: r.body };
}
