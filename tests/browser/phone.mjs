// Places a call from the phone page of `ivr serve` in headless Chromium and follows it:
//
//   node phone.mjs URL ROUTE FIRST_PROMPT KEY NEXT_PROMPT
//
// opens URL (the page), picks ROUTE, presses Call, waits for FIRST_PROMPT in the transcript,
// presses KEY on the dial pad (RTCDTMFSender), waits for NEXT_PROMPT after it, checks that
// audio came in, hangs up and waits for the end. Prints one JSON line (the transcript, the
// audio packets received, the call's Location) and exits 0; exits 1 with a message on
// failure. CHROMIUM names the browser binary (default: chromium on the PATH).

import { chromium } from "playwright-core";

const [url, route, first, key, next] = process.argv.slice(2);
if (!next) {
  console.error("usage: node phone.mjs URL ROUTE FIRST_PROMPT KEY NEXT_PROMPT");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "chromium",
  headless: true,
  args: [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    // Real host candidates (not mDNS names) for the server on this machine.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
  ],
});
const fail = async (why) => {
  console.error("phone.mjs: " + why);
  await browser.close().catch(() => {});
  process.exit(1);
};
const timer = setTimeout(() => fail("timed out"), 60_000);

try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error("page: " + m.text()));
  await page.goto(url);
  await page.waitForSelector(`#route option[value="${route}"]`, { state: "attached" });
  await page.selectOption("#route", route);
  const lines = () => page.$$eval("#transcript li", (ls) => ls.map((l) => l.className + ": " + l.textContent));
  const waitFor = async (text, after, ms) => {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      const ls = await lines();
      const i = ls.findIndex((l, j) => j >= after && l === "prompt: " + text);
      if (i >= 0) return i;
      const end = ls.find((l) => l.startsWith("end: "));
      if (end) await fail(`the call ended before "${text}": ${JSON.stringify(ls)}`);
      await page.waitForTimeout(100);
    }
    await fail(`no "${text}" in the transcript: ${JSON.stringify(await lines())}`);
  };
  await page.click("#call");
  const at = await waitFor(first, 0, 20_000);
  await page.click(`#pad button[data-key="${key}"]`);
  await waitFor(next, at + 1, 15_000);
  const packets = await page.evaluate(async () => {
    let n = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") n += s.packetsReceived;
    });
    return n;
  });
  const location = await page.evaluate(() => location_);
  await page.click("#hangup");
  const until = Date.now() + 10_000;
  let ls = await lines();
  while (!ls.some((l) => l.startsWith("end: ")) && Date.now() < until) {
    await page.waitForTimeout(100);
    ls = await lines();
  }
  clearTimeout(timer);
  console.log(JSON.stringify({ transcript: ls, packets, location }));
  await browser.close();
  process.exit(0);
} catch (e) {
  await fail(e.stack || String(e));
}
