// wss:// interop check with headless Chromium (Debian's), driven by
// playwright-core. Chromium trusts the test CA through the NSS database in
// $HOME/.pki/nssdb (run.sh puts it there); nothing skips verification.
//
// Usage: node chromium_client.mjs URL
import { chromium } from 'playwright-core';

const [url] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // Recent Chromium asks before a page reaches a loopback address.
  args: ['--disable-features=LocalNetworkAccessChecks', '--no-sandbox'],
});
let ok = false;
try {
  const page = await browser.newPage();
  const result = await page.evaluate(async (url) => {
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    const queue = [];
    let waiting = null;
    ws.onmessage = (e) => { if (waiting) { const w = waiting; waiting = null; w(e.data); } else queue.push(e.data); };
    const next = () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => { waiting = r; }));
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('connection failed')); });
    const out = { extensions: ws.extensions };
    ws.send('hello over wss');
    out.text = (await next()) === 'hello over wss';
    const big = new Uint8Array(1 << 20);
    for (let i = 0; i < big.length; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
    ws.send(big);
    const back = new Uint8Array(await next());
    out.binary = back.length === big.length && back.every((b, i) => b === big[i]);
    for (let i = 0; i < 200; i++) ws.send(`msg ${i}`);
    out.pipelined = true;
    for (let i = 0; i < 200; i++) if ((await next()) !== `msg ${i}`) out.pipelined = false;
    const closed = new Promise((r) => { ws.onclose = (e) => r(e.code); });
    ws.close(1000, 'done');
    out.closeCode = await closed;
    return out;
  }, url);
  console.log('chromium:', JSON.stringify(result));
  ok = result.text && result.binary && result.pipelined && result.closeCode === 1000;
} catch (e) {
  console.error('chromium: FAILED:', e.message);
} finally {
  await browser.close();
}
console.log(ok ? 'chromium: ok' : 'chromium: FAILED');
process.exit(ok ? 0 : 1);
