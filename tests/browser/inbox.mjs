// The voice-mail inbox of the agent console of `ivr serve` in headless Chromium:
//
//   node inbox.mjs URL AGENT PASSWORD CALLER
//
// logs in at URL (the console), waits for the inbox row of CALLER's message, checks it is
// new, plays it in the page's player and seeks into it (range requests), sees it heard after
// a refresh, marks it done (the row goes), and finds it again under "show done". Prints one
// JSON line (what the rows showed, the audio's duration) and exits 0; exits 1 with a message
// on failure. CHROMIUM names the browser binary.

import { chromium } from "playwright-core";

const [url, agent, password, caller] = process.argv.slice(2);
if (!caller) {
  console.error("usage: node inbox.mjs URL AGENT PASSWORD CALLER");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "chromium",
  headless: true,
  args: ["--autoplay-policy=no-user-gesture-required"],
});
const fail = async (why) => {
  console.error("inbox.mjs: " + why);
  await browser.close().catch(() => {});
  process.exit(1);
};
const timer = setTimeout(() => fail("timed out"), 60_000);

try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error("page: " + m.text()));
  const ranges = [];
  page.on("request", (r) => {
    if (r.url().includes("/audio")) ranges.push(r.headers()["range"] || "");
  });
  const until = async (what, test, ms) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await test()) return;
      await page.waitForTimeout(100);
    }
    await fail(`no ${what}: inbox ${JSON.stringify(await page.$eval("#messages", (e) => e.innerText))}`);
  };
  const row = () => page.$("#messages tbody tr[data-id]");
  const rowText = () => page.$eval("#messages tbody", (e) => e.innerText);
  await page.goto(url);
  await page.fill("#agent-id", agent);
  await page.fill("#password", password);
  await page.click("#login-button");
  await until("message row", async () => (await rowText()).includes(caller), 15_000);
  const first = {
    text: await rowText(),
    class: await (await row()).getAttribute("class"),
    count: await page.$eval("#inbox-count", (e) => e.textContent),
  };
  // Play it, then seek to the middle: the player asks for ranges of the file.
  const played = await page.$eval("#messages audio", async (a) => {
    a.preload = "auto";
    a.muted = true;
    await a.play();
    await new Promise((r) => setTimeout(r, 500));
    const duration = a.duration;
    a.currentTime = duration / 2;
    await new Promise((r) => a.addEventListener("seeked", r, { once: true }));
    const at = a.currentTime;
    a.pause();
    return { duration, at };
  });
  if (!(played.duration > 0.5)) await fail("no audio: " + JSON.stringify(played));
  await page.click("#refresh-inbox");
  await until("heard state", async () => (await rowText()).includes("heard by " + agent), 10_000);
  await page.click("#messages button.mark");
  await until("the row to go", async () => (await rowText()).includes("no messages"), 10_000);
  await page.check("#show-done");
  await until("the done row", async () => (await rowText()).includes("done by " + agent), 10_000);
  console.log(JSON.stringify({ first, played, ranges, done: await rowText() }));
  clearTimeout(timer);
  await browser.close();
} catch (err) {
  await fail(err.stack || String(err));
}
