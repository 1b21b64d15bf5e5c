// Watches the flow map of `ivr serve` in headless Chromium while the test places a call:
//
//   node flow_map.mjs URL NODE NEW_NODE
//
// opens URL (`/flows/NAME`), waits until the drawing is there and its WebSocket live, and
// prints `ready {"class": ..., "nodes": N}` (NODE's classes, the number of nodes drawn); waits
// until NODE turns busy, clicks it and prints `busy {"class", "stats", "source", "text"}`
// (its classes and figures, the source lines the click shows, the page's text); waits until
// it is idle again and prints `idle {"class"}`; waits until a node named by the third argument
// appears (a new version of the flow went live and the map drew it again) and prints
// `redrawn {"nodes": N, "version": V}`; then exits 0. Exits 1 with a message on
// failure or after 90 s. CHROMIUM names the browser binary.

import { chromium } from "playwright-core";

const [url, node, added] = process.argv.slice(2);
if (!added) {
  console.error("usage: node flow_map.mjs URL NODE NEW_NODE");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "chromium",
  headless: true,
});
const fail = async (why) => {
  console.error("flow_map.mjs: " + why);
  await browser.close().catch(() => {});
  process.exit(1);
};
const timer = setTimeout(() => fail("timed out"), 90_000);

try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 700 } });
  page.on("console", (m) => console.error("page: " + m.text()));
  await page.goto(url);
  const sel = `#map g.node[data-node="${node}"]`;
  await page.waitForSelector(sel, { timeout: 15_000 });
  await page.waitForFunction(() => document.getElementById("conn").textContent === "live", null, { timeout: 15_000 });
  const cls = () => page.getAttribute(sel, "class");
  console.log("ready " + JSON.stringify({
    class: await cls(),
    nodes: await page.locator("#map g.node").count(),
    version: await page.textContent("#version"),
  }));
  await page.waitForSelector(`${sel}.busy`, { timeout: 30_000 });
  await page.click(sel);
  await page.waitForSelector("#node-source", { timeout: 5_000 });
  console.log("busy " + JSON.stringify({
    class: await cls(),
    stats: await page.textContent(`${sel} text.stats`),
    source: await page.textContent("#node-source"),
    text: await page.textContent("body"),
  }));
  await page.waitForSelector(`${sel}.idle`, { timeout: 30_000 });
  console.log("idle " + JSON.stringify({ class: await cls() }));
  await page.waitForSelector(`#map g.node[data-node="${added}"]`, { timeout: 30_000 });
  console.log("redrawn " + JSON.stringify({
    nodes: await page.locator("#map g.node").count(),
    version: await page.textContent("#version"),
  }));
  clearTimeout(timer);
  await browser.close();
  process.exit(0);
} catch (e) {
  await fail(e.stack || String(e));
}
