#!/usr/bin/env node
// server_bench.mjs — aggregate generation throughput of `hearth serve` with 1 vs N parallel
// sequences (continuous batching). Not a test: prints a table for docs/performance.md.
//
//   node bench/server_bench.mjs [--hearth build/hearth] [--model PATH.gguf] [--clients 8]
//        [--tokens 64] [--parallel 1,4] [--threads 1] [--rounds 2]
//
// Each configuration starts its own server on a random port with a private store, warms the
// model up, then runs `clients` concurrent streaming /api/generate requests (distinct seeds,
// temperature 0.8) of `tokens` tokens each, `rounds` times, and reports generated tokens per
// wall-clock second (sum of eval_count / elapsed) and mean time to first token.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, all) => (v.startsWith('--') ? [...a, [v.slice(2), all[i + 1]]] : a), []));
const here = path.dirname(new URL(import.meta.url).pathname);
const HEARTH = path.resolve(args.hearth || path.join(here, '..', 'build', 'hearth'));
const MODEL = path.resolve(args.model || path.join(here, '..', '..', 'shared', 'models', 'stories260K.gguf'));
const CLIENTS = Number(args.clients || 8), TOKENS = Number(args.tokens || 64), ROUNDS = Number(args.rounds || 2);
const PARALLEL = (args.parallel || '1,4').split(',').map(Number);
const THREADS = String(args.threads || 1);

function startServer(models, parallel) {
  const proc = spawn(HEARTH, ['serve', '--host', '127.0.0.1:0', '--parallel', String(parallel), '--threads', THREADS, '--quiet', '--keep-alive', '-1'],
    { env: { ...process.env, HEARTH_MODELS: models, HEARTH_HOST: '' }, stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    let log = '';
    proc.stderr.on('data', (d) => {
      log += d;
      const m = log.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) resolve({ url: `http://127.0.0.1:${m[1]}`, proc });
    });
    proc.on('exit', (c) => reject(new Error(`server exited ${c}: ${log}`)));
  });
}

async function one(url, seed) {
  const t0 = performance.now();
  const res = await fetch(`${url}/api/generate`, { method: 'POST', body: JSON.stringify({ model: 'bench', prompt: 'Once upon a time', options: { temperature: 0.8, seed, num_predict: TOKENS } }) });
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '', ttft = null, evalCount = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    const lines = buf.split('\n');
    buf = lines.pop();
    for (const l of lines) {
      if (!l) continue;
      const j = JSON.parse(l);
      if (ttft === null && !j.done) ttft = performance.now() - t0;
      if (j.done) evalCount = j.eval_count;
    }
  }
  return { ttft: ttft ?? 0, evalCount };
}

async function bench(parallel) {
  const models = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-bench-'));
  const mf = path.join(models, 'Modelfile');
  fs.writeFileSync(mf, `FROM ${MODEL}\n`);
  const c = spawnSync(HEARTH, ['create', 'bench', '-f', mf], { env: { ...process.env, HEARTH_MODELS: models }, encoding: 'utf8' });
  if (c.status !== 0) throw new Error(c.stderr);
  const srv = await startServer(models, parallel);
  try {
    await one(srv.url, 1); // load + warm up
    let tokens = 0, wall = 0, ttfts = [];
    for (let r = 0; r < ROUNDS; r++) {
      const t0 = performance.now();
      const out = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => one(srv.url, 1000 * r + i)));
      wall += performance.now() - t0;
      for (const o of out) { tokens += o.evalCount; ttfts.push(o.ttft); }
    }
    return { parallel, tokens, tps: tokens / (wall / 1000), ttft: ttfts.reduce((a, b) => a + b, 0) / ttfts.length };
  } finally {
    srv.proc.kill('SIGTERM');
    fs.rmSync(models, { recursive: true, force: true });
  }
}

console.log(`model ${path.basename(MODEL)}, ${CLIENTS} concurrent clients x ${TOKENS} tokens x ${ROUNDS} rounds, ${THREADS} thread(s), ${os.cpus().length} cores`);
console.log('| parallel sequences | generated tokens | aggregate tokens/s | mean time to first token |');
console.log('|---:|---:|---:|---:|');
const results = [];
for (const p of PARALLEL) {
  const r = await bench(p);
  results.push(r);
  console.log(`| ${r.parallel} | ${r.tokens} | ${r.tps.toFixed(1)} | ${r.ttft.toFixed(0)} ms |`);
}
if (results.length > 1) console.log(`\nspeed-up ${results.at(-1).parallel} vs ${results[0].parallel}: ${(results.at(-1).tps / results[0].tps).toFixed(2)}x`);
