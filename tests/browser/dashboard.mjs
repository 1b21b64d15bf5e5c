// Watches the dashboard of `ivr serve` in headless Chromium while the test places a call and
// breaks a flow file:
//
//   node dashboard.mjs URL FLOW NODE
//
// opens URL (the dashboard), waits until its WebSocket is live and prints `ready`; waits for a
// call to show under FLOW and NODE and prints `call {"text": PAGE_TEXT}`; waits for it to go
// and prints `gone`; waits for the failed reload and prints `reload {"text": ...}`; then exits
// 0. Exits 1 with a message on failure or after 90 s. CHROMIUM names the browser binary.

import { chromium } from "playwright-core";

const [url, flow, node] = process.argv.slice(2);
if (!node) {
  console.error("usage: node dashboard.mjs URL FLOW NODE");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "chromium",
  headless: true,
});
const fail = async (why) => {
  console.error("dashboard.mjs: " + why);
  await browser.close().catch(() => {});
  process.exit(1);
};
const timer = setTimeout(() => fail("timed out"), 90_000);

try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error("page: " + m.text()));
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById("conn").textContent === "live", null, { timeout: 15_000 });
  // The charts: the first sample of the calls is drawn, the queue's series is there.
  await page.waitForSelector("#chart-calls polyline", { state: "attached", timeout: 15_000 });
  await page.waitForSelector("#chart-waiting polyline[data-series=general]", { state: "attached", timeout: 15_000 });
  console.log("ready");
  const row = `#calls tr[data-flow="${flow}"][data-node="${node}"]`;
  await page.waitForSelector(row, { timeout: 30_000 });
  const calls = await page.textContent(`${row} td.calls`);
  const text = await page.textContent("body");
  console.log("call " + JSON.stringify({ calls, text, in_progress: await page.textContent("#in-progress") }));
  await page.waitForSelector(row, { state: "detached", timeout: 30_000 });
  console.log("gone " + JSON.stringify({ in_progress: await page.textContent("#in-progress") }));
  await page.waitForSelector("#reload.failed", { timeout: 30_000 });
  console.log("reload " + JSON.stringify({
    text: await page.textContent("#reload"),
    detail: await page.textContent("#reload-detail"),
  }));
  clearTimeout(timer);
  await browser.close();
  process.exit(0);
} catch (e) {
  await fail(e.stack || String(e));
}
