// End to end: the gateway's browser client (GET /) in headless Chromium.
//
//   node tests/browser/gateway_e2e.mjs http://127.0.0.1:PORT/
//
// Needs a running `wsreactor serve` (anonymous) at that URL, Debian's
// `chromium` (or CHROMIUM=/path) and `npm ci` in tests/browser. Two pages
// (separate browser contexts) join one room; alice goes offline (the
// context's network is cut, so the page drops its socket), bob posts three
// messages, alice comes back: her page must show them exactly once, in
// order, recovered with `since`, and both pages must show the same log.
// Exits 0 on success, 1 with a reason otherwise; bounded to 60 s.
import { chromium } from "playwright-core";

const url = process.argv[2];
if (!url) {
  console.error("usage: node gateway_e2e.mjs http://127.0.0.1:PORT/");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const room = "e2e-" + Date.now().toString(36);
const TIMEOUT = 10_000;

const watchdog = setTimeout(() => {
  console.error("gateway e2e: timed out after 60 s");
  process.exit(1);
}, 60_000);

function fail(msg) {
  throw new Error(msg);
}

async function open(browser, name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") console.error(`[${name}] console: ${m.text()}`);
  });
  await page.goto(url);
  await page.fill("#name", name);
  await page.click("#connect");
  await page.waitForSelector("#status.online", { timeout: TIMEOUT });
  await page.fill("#room", room);
  await page.click("#join");
  await page.waitForSelector(`#rooms li[data-room="${room}"]`, { timeout: TIMEOUT });
  // Joined once the server listed us as present.
  await page.waitForFunction(
    (n) => [...document.querySelectorAll("#presence li")].some((li) => li.textContent === n),
    name,
    { timeout: TIMEOUT },
  );
  return { context, page, name };
}

async function post(p, text) {
  await p.page.fill("#text", text);
  await p.page.click("#send");
  await waitForText(p, text);
}

async function waitForText(p, text) {
  await p.page.waitForFunction(
    ([r, t]) =>
      [...document.querySelectorAll(`ul[data-room="${r}"] li.msg .text`)].some((e) => e.textContent === t),
    [room, text],
    { timeout: TIMEOUT },
  );
}

async function log(p) {
  return p.page.$$eval(`ul[data-room="${room}"] li.msg`, (lis) =>
    lis.map((li) => ({ seq: Number(li.dataset.seq), from: li.dataset.from, text: li.querySelector(".text").textContent })),
  );
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // Root in CI: no sandbox. Recent Chromium asks before pages reach
  // loopback addresses (Local Network Access); the test serves from there.
  args: ["--no-sandbox", "--disable-features=LocalNetworkAccessChecks"],
});
let ok = false;
try {
  const alice = await open(browser, "alice");
  const bob = await open(browser, "bob");
  await alice.page.waitForFunction(
    () => [...document.querySelectorAll("#presence li")].length >= 1,
    null,
    { timeout: TIMEOUT },
  );

  await post(bob, "before");
  await waitForText(alice, "before");

  // Alice goes offline.
  await alice.context.setOffline(true);
  try {
    await alice.page.waitForSelector("#status.offline", { timeout: 3000 });
  } catch {
    fail("alice's page did not notice it went offline");
  }

  const missed = ["one", "two", "three"];
  for (const m of missed) await post(bob, m);
  const during = await log(alice);
  if (during.some((m) => missed.includes(m.text))) fail("alice received messages while offline");

  // Back online: the page reconnects and rejoins with since.
  await alice.context.setOffline(false);
  await alice.page.waitForSelector("#status.online", { timeout: TIMEOUT });
  await waitForText(alice, "three");
  // Give duplicates, if any, time to show up.
  await alice.page.waitForTimeout(1000);

  const want = ["before", ...missed];
  const a = await log(alice);
  const b = await log(bob);
  const texts = a.map((m) => m.text);
  if (JSON.stringify(texts) !== JSON.stringify(want)) fail(`alice shows ${JSON.stringify(texts)}, want ${JSON.stringify(want)}`);
  if (JSON.stringify(a) !== JSON.stringify(b)) fail(`logs differ:\nalice ${JSON.stringify(a)}\nbob   ${JSON.stringify(b)}`);
  for (let i = 1; i < a.length; i++) {
    if (a[i].seq !== a[i - 1].seq + 1) fail(`seqs not consecutive: ${JSON.stringify(a)}`);
  }
  if (a.some((m) => m.from !== "bob")) fail(`wrong sender: ${JSON.stringify(a)}`);
  const notes = await alice.page.$$eval(`ul[data-room="${room}"] li.note`, (l) => l.map((e) => e.textContent));
  if (notes.length) fail(`alice's page reports missed messages: ${JSON.stringify(notes)}`);
  ok = true;
  console.log(`gateway e2e: alice recovered ${missed.length} messages once, in order (seqs ${a.map((m) => m.seq).join(",")})`);
} catch (e) {
  console.error(`gateway e2e: FAILED: ${e.message}`);
} finally {
  await browser.close();
  clearTimeout(watchdog);
}
console.log(ok ? "1 passed, 0 failed" : "0 passed, 1 failed");
process.exit(ok ? 0 : 1);
