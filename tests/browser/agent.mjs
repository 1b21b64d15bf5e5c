// Takes a queued call in the agent console of `ivr serve` in headless Chromium:
//
//   node agent.mjs URL AGENT PASSWORD CALLER [agent|caller]
//
// opens URL (the console), tries a wrong password (refused), logs in, waits until the agent is
// available, waits for the offer whose screen pop shows CALLER, presses Answer, waits until
// the call is connected, talks (the fake microphone) for 3 s and hangs up (`agent`, the
// default), or until the caller hangs up (`caller`), and waits for the end and wrap-up. Prints
// one JSON line (the screen pop as shown, the states seen, audio packets received) and exits
// 0; exits 1 with a message on failure. CHROMIUM names the browser binary.

import { chromium } from "playwright-core";

const [url, agent, password, caller, who = "agent"] = process.argv.slice(2);
if (!caller) {
  console.error("usage: node agent.mjs URL AGENT PASSWORD CALLER");
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
  console.error("agent.mjs: " + why);
  await browser.close().catch(() => {});
  process.exit(1);
};
const timer = setTimeout(() => fail("timed out"), 90_000);
const states = [];

try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error("page: " + m.text()));
  const text = (sel) => page.$eval(sel, (e) => e.textContent);
  const until = async (what, test, ms) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const s = await text("#state");
      if (states[states.length - 1] !== s) states.push(s);
      if (await test()) return;
      await page.waitForTimeout(100);
    }
    await fail(`no ${what}: status "${await text("#call-status")}", states ${JSON.stringify(states)}, log ${JSON.stringify(await text("#log"))}`);
  };
  await page.goto(url);
  // A wrong password is refused.
  await page.fill("#agent-id", agent);
  await page.fill("#password", password + "x");
  await page.click("#login-button");
  await until("refusal", async () => (await text("#login-error")).includes("wrong"), 10_000);
  await page.fill("#password", password);
  await page.click("#login-button");
  await until("available state", async () => (await text("#state")) === "available", 15_000);
  console.log(JSON.stringify({ ready: true }));
  await until("offer", async () => (await text("#pop-caller")) === caller && !(await page.isDisabled("#answer")), 40_000);
  const pop = {
    caller: await text("#pop-caller"),
    queue: await text("#pop-queue"),
    data: await text("#pop-data"),
    path: await text("#pop-path"),
  };
  await page.click("#answer");
  await until("connection", async () => (await text("#call-status")) === "Connected", 25_000);
  // The conversation: count what comes in while it lasts.
  const received = () => page.evaluate(async () => {
    let n = 0;
    if (!pc) return -1;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") n += s.packetsReceived;
    });
    return n;
  });
  let packets = 0;
  const talk = Date.now();
  await until("on-call state", async () => (await text("#state")) === "on a call", 5_000);
  while (!(await text("#call-status")).startsWith("Ended")) {
    packets = Math.max(packets, await received());
    if (who === "agent" && Date.now() - talk > 3000) break;
    if (Date.now() - talk > 30_000) await fail("the caller did not hang up");
    await page.waitForTimeout(200);
  }
  if (who === "agent") await page.click("#hangup");
  await until("end", async () => (await text("#call-status")).startsWith("Ended"), 10_000);
  const ended = await text("#call-status");
  await until("wrap-up", async () => (await text("#state")) === "wrap-up", 5_000);
  clearTimeout(timer);
  console.log(JSON.stringify({ pop, packets, ended, states }));
  await browser.close();
  process.exit(0);
} catch (e) {
  await fail(e.stack || String(e));
}
