// Takes the screenshots of docs/screenshots/ from a running `ivr serve` of the reference
// deployment (not part of the tests):
//
//   cargo run -- serve                      # in the repository root, HTTP on 127.0.0.1:8080
//   cd tests/browser && npm install --no-save playwright-core
//   node screenshots.mjs [http://127.0.0.1:8080] [../../docs/screenshots]
//
// It logs agent 2001 in on the agent console (`/agent`, demo password demo2001) and makes it
// available, places a call from the phone page (`/`) to 10010 as a demo customer and waits for
// the main menu (phone.png), places a second call that presses 0 for an agent (agent.png shows
// the console, with the offer when it is business hours on the server's clock), and shows
// both calls on the dashboard (dashboard.png) and on the flow map of the hotline with the main
// menu's source lines shown (flow-map.png). Then it hangs up. CHROMIUM names the browser
// binary (default: chromium on the PATH).

import { chromium } from "playwright-core";
import { existsSync, mkdirSync } from "node:fs";
import { delimiter, join } from "node:path";

const base = (process.argv[2] || "http://127.0.0.1:8080").replace(/\/$/, "");
const out = process.argv[3] || "../../docs/screenshots";
mkdirSync(out, { recursive: true });

// The browser: $CHROMIUM, else chromium (or chromium-browser, google-chrome) on the PATH.
const onPath = (name) =>
  (process.env.PATH || "").split(delimiter).map((d) => join(d, name)).find((p) => existsSync(p));
const executablePath =
  process.env.CHROMIUM || ["chromium", "chromium-browser", "google-chrome"].map(onPath).find(Boolean);
if (!executablePath) {
  console.error("screenshots.mjs: no chromium on the PATH (set CHROMIUM)");
  process.exit(1);
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
  ],
});
const fail = async (why) => {
  console.error("screenshots.mjs: " + why);
  await browser.close().catch(() => {});
  process.exit(1);
};
setTimeout(() => fail("timed out"), 120_000);

const shot = async (page, name) => {
  const path = join(out, name);
  await page.screenshot({ path, fullPage: true });
  console.log("wrote " + path);
};

// Waits until the phone page's transcript has a line `kind: text` (at most `ms`).
const transcriptHas = async (page, kind, text, ms) => {
  await page.waitForFunction(
    ([k, t]) => [...document.querySelectorAll("#transcript li")].some((l) => l.className === k && l.textContent.includes(t)),
    [kind, text],
    { timeout: ms },
  );
};

const call = async (ctx, caller) => {
  const page = await ctx.newPage();
  await page.goto(base + "/");
  await page.waitForSelector('#route option[value="10010"]', { state: "attached" });
  await page.selectOption("#route", "10010");
  await page.fill("#caller", caller);
  await page.click("#call");
  await transcriptHas(page, "node", "main_menu", 30_000);
  return page;
};

try {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 600 } });

  // The agent console, if this server has one.
  const agent = await ctx.newPage();
  const r = await agent.goto(base + "/agent");
  const console_ = r && r.ok() && (await agent.$("#login")) !== null;
  if (console_) {
    await agent.fill("#agent-id", "2001");
    await agent.fill("#password", "demo2001");
    await agent.click("#login-button");
    await agent.waitForSelector("#console:not(.hidden)", { timeout: 10_000 });
    // Logged in is available, unless the agent was away: then make it available.
    await agent.waitForFunction(() => !/offline/.test(document.getElementById("state").textContent), null, { timeout: 10_000 });
    if (await agent.isEnabled("#available")) await agent.click("#available");
    await agent.waitForFunction(() => /available/.test(document.getElementById("state").textContent), null, { timeout: 10_000 });
  } else {
    console.log("no agent console on this server: agent.png not taken");
  }

  // A caller in the main menu.
  const phone = await call(ctx, "13800000001");
  await phone.waitForTimeout(4000);
  await shot(phone, "phone.png");

  // A second caller asks for an agent.
  const second = await call(ctx, "13800000002");
  await second.click('#pad button[data-key="0"]');
  if (console_) {
    const offered = await agent
      .waitForSelector("#card:not(.hidden)", { timeout: 15_000 })
      .then(() => true)
      .catch(() => false);
    if (!offered) console.log("no offer reached the agent (outside business hours?)");
    await agent.waitForTimeout(500);
    await shot(agent, "agent.png");
  }

  const dash = await ctx.newPage();
  await dash.goto(base + "/dashboard");
  await dash.waitForFunction(() => document.getElementById("conn").textContent === "live", null, { timeout: 15_000 });
  await dash.waitForSelector("#calls tr[data-flow]", { timeout: 15_000 });
  await dash.waitForTimeout(1200);
  await shot(dash, "dashboard.png");

  // The flow map: the main menu busy with the first call, its source lines shown.
  const map = await ctx.newPage();
  await map.setViewportSize({ width: 1400, height: 820 });
  await map.goto(base + "/flows/hotline");
  await map.waitForFunction(() => document.getElementById("conn").textContent === "live", null, { timeout: 15_000 });
  const menu = '#map g.node[data-node="main_menu"]';
  await map.waitForSelector(menu + ".busy", { timeout: 15_000 });
  await map.click(menu);
  await map.evaluate((sel) => {
    const box = document.querySelector(sel).getBoundingClientRect();
    const m = document.getElementById("map");
    m.scrollBy(box.left - m.clientWidth / 2 + box.width / 2, box.top - 200);
  }, menu);
  await map.waitForTimeout(500);
  const path = join(out, "flow-map.png");
  await map.screenshot({ path });
  console.log("wrote " + path);

  for (const p of [phone, second]) await p.click("#hangup").catch(() => {});
  if (console_) await agent.click("#logout").catch(() => {});
  await phone.waitForTimeout(500);
  await browser.close();
  process.exit(0);
} catch (e) {
  await fail(e.stack || String(e));
}
