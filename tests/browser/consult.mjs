// An agent consults another before passing the caller on, in the console of `ivr serve` in
// headless Chromium:
//
//   node consult.mjs URL CALLER TARGET complete|cancel [browser|phone]
//
// agent 2001 (pw2001) logs in and prints {"ready":true}; takes the call whose screen pop shows
// CALLER (browser: Answer, the audio in the page; phone: "calls on my SIP phone" at the
// login, the test's SIP phone answers and the page follows) and talks 2 s; consults TARGET with a note ("Consult": the caller holds), waits until
// the console says it talks with the target, talks 2 s, then completes (the console says
// "Transferred to TARGET") or cancels (back with the caller, who hangs up later: the call
// ends). Prints one JSON line (what the page showed) and exits 0; exits 1 with a message on
// failure. CHROMIUM names the browser binary.

import { chromium } from "playwright-core";

const [url, caller, target, mode, audio = "browser"] = process.argv.slice(2);
const phone = audio === "phone";
if (!mode) {
  console.error("usage: node consult.mjs URL CALLER TARGET complete|cancel");
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
  console.error("consult.mjs: " + why);
  await browser.close().catch(() => {});
  process.exit(1);
};
const timer = setTimeout(() => fail("timed out"), 100_000);

try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error("page: " + m.text()));
  const text = (sel) => page.$eval(sel, (e) => e.textContent);
  const until = async (what, test, ms) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await test()) return;
      await page.waitForTimeout(100);
    }
    await fail(`no ${what}: status "${await text("#call-status")}", transfer "${await text("#transfer-status")}", consult "${await text("#consult-status")}", log ${JSON.stringify(await text("#log"))}`);
  };
  await page.goto(url);
  await page.fill("#agent-id", "2001");
  await page.fill("#password", "pw2001");
  if (phone) await page.check("#use-phone");
  await page.click("#login-button");
  if (phone) {
    // The phone registers once the console is open.
    await until("the console", async () => page.isVisible("#console"), 15_000);
    console.log(JSON.stringify({ ready: true }));
    await until("available state", async () => (await text("#state")) === "available", 30_000);
    await until("the phone's call", async () => (await text("#pop-caller")) === caller && (await text("#call-status")).startsWith("Connected"), 40_000);
  } else {
    await until("available state", async () => (await text("#state")) === "available", 15_000);
    console.log(JSON.stringify({ ready: true }));
    await until("offer", async () => (await text("#pop-caller")) === caller && !(await page.isDisabled("#answer")), 40_000);
    await page.click("#answer");
    await until("connection", async () => (await text("#call-status")) === "Connected", 25_000);
  }
  const connected = await text("#call-status");
  await page.waitForTimeout(2000);
  await page.fill("#transfer-target", target);
  await page.fill("#transfer-note", "wants a refund of order 42");
  await page.click("#consult-button");
  await until("consultation", async () => (await text("#consult-status")).startsWith("Talking with"), 20_000);
  const consulting = await text("#consult-status");
  const completeShown = !(await page.isDisabled("#consult-complete"));
  await page.waitForTimeout(2000);
  let result;
  if (mode === "complete") {
    await page.click("#consult-complete");
    await until("transfer", async () => (await text("#call-status")).startsWith("Transferred"), 10_000);
    result = await text("#call-status");
  } else {
    await page.click("#consult-cancel");
    await until("the caller back", async () => (await text("#transfer-status")) === "Back with the caller", 10_000);
    result = await text("#transfer-status");
    const still = await text("#call-status");
    await until("the end", async () => (await text("#call-status")).startsWith("Ended"), 30_000);
    result += " / " + still;
  }
  await until("wrap-up", async () => (await text("#state")) === "wrap-up", 20_000);
  clearTimeout(timer);
  console.log(JSON.stringify({ connected, consulting, completeShown, result }));
  await browser.close();
  process.exit(0);
} catch (e) {
  await fail(e.stack || String(e));
}
