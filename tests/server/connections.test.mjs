// Connection limits and timeouts: many idle keep-alive connections from one (loopback)
// address, the idle timeout between requests, --max-connections. Each test starts its own
// server (they stop it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { tmpdir, startServer, request, SLOW } from './lib.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Opens a connection, sends one keep-alive GET /health and resolves, once the reply has
// arrived, with { sock, reply, closed } (closed: a promise of the time the server closed it,
// or of 'reset' when the connection was reset); the connection stays open.
function keptAlive(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let reply = '', done = false;
    const closed = new Promise((r) => {
      sock.on('error', () => r('reset'));
      sock.on('close', () => r(Date.now()));
    });
    const finish = () => { if (!done) { done = true; resolve({ sock, reply, closed }); } };
    sock.on('data', (d) => { reply += d; if (reply.includes('"ok"')) finish(); });
    sock.on('close', finish);
    sock.on('error', finish);
    sock.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  });
}

test('300 idle keep-alive connections from 127.0.0.1 lock out no one (no per-IP limit on loopback)', async () => {
  const srv = await startServer(tmpdir());
  const conns = [];
  try {
    for (let i = 0; i < 300; i += 50) conns.push(...(await Promise.all(Array.from({ length: 50 }, () => keptAlive(srv.port)))));
    const refused = conns.filter((c) => !/^HTTP\/1\.1 200/.test(c.reply)).length;
    assert.equal(refused, 0, `${refused} of 300 connections were refused`);
    const r = await request(`${srv.url}/api/version`);
    assert.equal(r.status, 200, r.body);
  } finally {
    for (const c of conns) c.sock.destroy();
    await srv.stop();
  }
});

test('a kept-alive connection closes after --idle-timeout; a request in progress gets --timeout', async () => {
  const srv = await startServer(tmpdir(), ['--idle-timeout', '1', '--timeout', '4']);
  try {
    const c = await keptAlive(srv.port);
    assert.match(c.reply, /^HTTP\/1\.1 200/);
    assert.match(c.reply, /\r\nKeep-Alive: timeout=1\r\n/i);
    const t0 = Date.now();
    const when = await Promise.race([c.closed, sleep(3500 * SLOW).then(() => null)]);
    assert.ok(typeof when === 'number', `the idle connection was not closed (${when})`);
    assert.ok(when - t0 < 3000 * SLOW, `closed after ${when - t0} ms`);
    // a request whose body is slow to come is given --timeout between bytes, not the idle timeout
    const s = net.connect(srv.port, '127.0.0.1');
    s.on('error', () => {});
    let got = '';
    s.on('data', (d) => { got += d; });
    const sclosed = new Promise((r) => s.on('close', r));
    s.write('POST /api/show HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 16\r\n\r\n{"model"');
    await sleep(2000);
    s.write(':"nope"}');
    await Promise.race([sclosed, sleep(3000 * SLOW)]);
    s.destroy();
    assert.match(got, /^HTTP\/1\.1 404/, got);
  } finally {
    await srv.stop();
  }
});

test('--max-connections caps the connections open at once', async () => {
  const srv = await startServer(tmpdir(), ['--max-connections', '8']);
  const conns = [];
  try {
    for (let i = 0; i < 8; i++) conns.push(await keptAlive(srv.port));
    assert.equal(conns.filter((c) => /^HTTP\/1\.1 200/.test(c.reply)).length, 8);
    const extra = await keptAlive(srv.port);
    extra.sock.destroy();
    assert.doesNotMatch(extra.reply, /^HTTP\/1\.1 200/, 'a ninth connection was served');
    conns.pop().sock.destroy();
    await sleep(300 * SLOW);
    const again = await keptAlive(srv.port);
    again.sock.destroy();
    assert.match(again.reply, /^HTTP\/1\.1 200/, 'a connection closed makes room for another');
  } finally {
    for (const c of conns) c.sock.destroy();
    await srv.stop();
  }
});
