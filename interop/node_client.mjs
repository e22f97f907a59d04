// wss:// interop check with Node's `ws` (an independent client).
//
// Usage: node node_client.mjs URL CA_FILE
//
// Trusts only CA_FILE (the test CA); echoes text, 1 MiB of binary and 200
// pipelined messages with permessage-deflate offered (ws's default), then
// closes with 1000. Exit 0 when every check passed.
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';

const [url, caFile] = process.argv.slice(2);
const ws = new WebSocket(url, { ca: readFileSync(caFile), ALPNProtocols: ['http/1.1'] });
const fail = (why) => { console.error('node ws: FAILED:', why); process.exit(1); };
setTimeout(() => fail('timed out'), 20000).unref();

const queue = [];
let waiting = null;
ws.on('message', (data, isBinary) => {
  const m = { data, isBinary };
  if (waiting) { const w = waiting; waiting = null; w(m); } else { queue.push(m); }
});
const next = () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => { waiting = r; }));
ws.on('error', (e) => fail(e.message));

ws.on('open', async () => {
  const sock = ws._socket;
  console.log('node ws: TLS', sock.getProtocol(), 'ALPN', sock.alpnProtocol, 'extensions', ws.extensions || '(none)');
  if (sock.alpnProtocol !== 'http/1.1') fail('ALPN ' + sock.alpnProtocol);
  ws.send('hello over wss');
  let m = await next();
  if (m.isBinary || m.data.toString() !== 'hello over wss') fail('text echo');
  const big = randomBytes(1 << 20);
  ws.send(big);
  m = await next();
  if (!m.isBinary || !Buffer.from(m.data).equals(big)) fail('binary echo');
  for (let i = 0; i < 200; i++) ws.send(`msg ${i}`);
  for (let i = 0; i < 200; i++) {
    m = await next();
    if (m.data.toString() !== `msg ${i}`) fail(`pipelined ${i}`);
  }
  ws.close(1000, 'done');
});
ws.on('close', (code) => {
  if (code !== 1000) fail('close code ' + code);
  console.log('node ws: ok');
  process.exit(0);
});
