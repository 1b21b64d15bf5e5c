// The supervisors' page of `ivr serve` in headless Chromium:
//
//   node supervisor.mjs URL SUPERVISOR PASSWORD CALLER_PART [DAY]
//
// First without a password: the page is refused (401). Then with HTTP Basic: the page shows
// who is logged in and takes a session cookie; a search by CALLER_PART lists the recordings
// (a caller written as HTML must show as text, and run nothing); the first recording with
// audio is played in the page's player and sought into (range requests). Prints one JSON line
// and exits 0; exits 1 with a message on failure. CHROMIUM names the browser binary; PAGE_TZ
// the browser's time zone (its default otherwise). With DAY (YYYY-MM-DD) the search is from
// and to that day.

import { chromium } from "playwright-core";

const [url, id, password, part, day] = process.argv.slice(2);
if (!part) {
  console.error("usage: node supervisor.mjs URL SUPERVISOR PASSWORD CALLER_PART");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "chromium",
  headless: true,
  args: ["--autoplay-policy=no-user-gesture-required"],
});
const fail = async (why) => {
  console.error("supervisor.mjs: " + why);
  await browser.close().catch(() => {});
  process.exit(1);
};
const timer = setTimeout(() => fail("timed out"), 60_000);

try {
  // Without a login.
  const stranger = await browser.newContext();
  // (A page would show the browser's login box; its request is the same.)
  const refusedStatus = (await stranger.request.get(url)).status();
  await stranger.close();

  const context = await browser.newContext({
    httpCredentials: { username: id, password },
    ...(process.env.PAGE_TZ ? { timezoneId: process.env.PAGE_TZ } : {}),
  });
  const page = await context.newPage();
  page.on("console", (m) => console.error("page: " + m.text()));
  const ranges = [];
  page.on("request", (r) => {
    if (/\/supervisor\/recordings\/\d+$/.test(r.url())) ranges.push(r.headers()["range"] || "");
  });
  const until = async (what, test, ms) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await test()) return;
      await page.waitForTimeout(100);
    }
    await fail(`no ${what}: ${await page.evaluate(() => document.body.innerText)}`);
  };
  const response = await page.goto(url);
  const who = async () => page.$eval("#who", (e) => e.textContent);
  await until("name", async () => (await who()).includes(id), 10_000);
  await until("session cookie", async () => (await context.cookies()).some((c) => c.name === "ivr_supervisor"), 10_000);
  const cookie = (await context.cookies()).find((c) => c.name === "ivr_supervisor");
  const status = await page.$eval("#status", (e) => e.textContent);

  await page.fill("#search input[name=caller]", part);
  if (day) {
    await page.fill("#search input[name=from]", day);
    await page.fill("#search input[name=to]", day);
  }
  await page.click("#search button[type=submit]");
  const rows = () => page.$$eval("#recordings tr", (trs) => trs.map((tr) => Array.from(tr.cells).map((c) => c.textContent)));
  await until("recordings", async () => (await rows()).length > 0, 10_000);
  const listed = await rows();
  const injected = await page.evaluate(() => ({
    pwned: window.pwned === true,
    images: document.querySelectorAll("#recordings img").length,
  }));

  // Play the first recording with audio, then seek into it.
  await page.click("#recordings button[data-recording]");
  const played = await page.$eval("#player", async (a) => {
    a.muted = true;
    if (a.paused) await a.play();
    for (let i = 0; i < 50 && !(a.duration > 0); i++) await new Promise((r) => setTimeout(r, 100));
    const duration = a.duration;
    a.currentTime = duration / 2;
    await new Promise((r) => a.addEventListener("seeked", r, { once: true }));
    const at = a.currentTime;
    a.pause();
    return { duration, at, src: a.getAttribute("src") };
  });
  const playing = await page.$eval("#playing", (e) => e.textContent);
  const buttons = await page.$$eval("button[data-action]", (bs) => bs.filter((b) => !b.hidden).length);
  console.log(JSON.stringify({
    refused: refusedStatus,
    status: response.status(),
    who: await who(),
    cookie: cookie ? { httpOnly: cookie.httpOnly, sameSite: cookie.sameSite } : null,
    polled: status,
    listed,
    injected,
    played,
    playing,
    ranges,
    visibleActionButtons: buttons,
  }));
  clearTimeout(timer);
  await browser.close();
} catch (e) {
  await fail(e.stack || String(e));
}
