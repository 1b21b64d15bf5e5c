// Two agent consoles of `ivr serve` in headless Chromium pass a caller on:
//
//   node agent_transfer.mjs URL CALLER
//
// agent 2001 (pw2001) logs in and prints {"ready":true}; takes the call whose screen pop shows
// CALLER; agent 2002 (pw2002) logs in; 2001 tries to transfer to queue.nowhere (refused: the
// call stays connected), then transfers to queue.billing with a note; 2002 is offered the call
// with "Transferred by 2001" and the note, answers, talks 2 s and hangs up. Prints one JSON
// line (what each page showed) and exits 0; exits 1 with a message on failure. CHROMIUM
// names the browser binary.

import { chromium } from "playwright-core";

const [url, caller] = process.argv.slice(2);
if (!caller) {
  console.error("usage: node agent_transfer.mjs URL CALLER");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "chromium",
  headless: true,
  args: [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
  ],
});
const fail = async (why) => {
  console.error("agent_transfer.mjs: " + why);
  await browser.close().catch(() => {});
  process.exit(1);
};
const timer = setTimeout(() => fail("timed out"), 100_000);

async function console_(agent, password) {
  const page = await browser.newPage();
  page.on("console", (m) => console.error(`page ${agent}: ` + m.text()));
  const text = (sel) => page.$eval(sel, (e) => e.textContent);
  const until = async (what, test, ms) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await test()) return;
      await page.waitForTimeout(100);
    }
    await fail(`${agent}: no ${what}: status "${await text("#call-status")}", transfer "${await text("#transfer-status")}", log ${JSON.stringify(await text("#log"))}`);
  };
  await page.goto(url);
  await page.fill("#agent-id", agent);
  await page.fill("#password", password);
  await page.click("#login-button");
  await until("available state", async () => (await text("#state")) === "available", 15_000);
  return { page, text, until };
}

try {
  const a = await console_("2001", "pw2001");
  console.log(JSON.stringify({ ready: true }));
  await a.until("offer", async () => (await a.text("#pop-caller")) === caller && !(await a.page.isDisabled("#answer")), 40_000);
  await a.page.click("#answer");
  await a.until("connection", async () => (await a.text("#call-status")) === "Connected", 25_000);
  const b = await console_("2002", "pw2002");
  // A queue that does not exist: refused, the caller stays.
  await a.until("transfer form", async () => a.page.isVisible("#transfer"), 5_000);
  await a.page.fill("#transfer-target", "queue.nowhere");
  await a.page.click("#transfer-button");
  await a.until("refusal", async () => (await a.text("#transfer-status")).startsWith("transfer refused"), 10_000);
  const refused = await a.text("#transfer-status");
  const still = await a.text("#call-status");
  // The billing queue, with a note.
  await a.page.fill("#transfer-target", "queue.billing");
  await a.page.fill("#transfer-note", "wants a refund of order 42");
  await a.page.click("#transfer-button");
  await a.until("transferred", async () => (await a.text("#call-status")).startsWith("Transferred"), 10_000);
  const transferred = await a.text("#call-status");
  await b.until("offer", async () => (await b.text("#pop-caller")) === caller && !(await b.page.isDisabled("#answer")), 20_000);
  const pop = {
    caller: await b.text("#pop-caller"),
    queue: await b.text("#pop-queue"),
    transferred_by: await b.text("#pop-transferred-by"),
    note: await b.text("#pop-note"),
    data: await b.text("#pop-data"),
  };
  await b.page.click("#answer");
  await b.until("connection", async () => (await b.text("#call-status")) === "Connected", 25_000);
  await b.page.waitForTimeout(2000);
  await b.page.click("#hangup");
  await b.until("end", async () => (await b.text("#call-status")).startsWith("Ended"), 10_000);
  const stateA = await a.text("#state");
  clearTimeout(timer);
  console.log(JSON.stringify({ refused, still, transferred, pop, stateA }));
  await browser.close();
  process.exit(0);
} catch (e) {
  await fail(e.stack || String(e));
}
