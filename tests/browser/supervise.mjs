// A supervisor of `ivr serve` in headless Chromium listens to a bridged call, whispers to the
// agent and barges in:
//
//   node supervise.mjs URL SUPERVISOR PASSWORD WAV
//
// logs in (POST /supervisor/login), opens /supervisor, waits for a Listen button of a live
// call (id listen-CALLID, shown once window.ivrSupervise is there) and clicks it; once
// connected, measures for 3 s what it hears with WebAudio (power at 440 Hz, 1000 Hz and,
// for reference, 1700 Hz and 2500 Hz); clicks Whisper for 4 s, then Barge for 3 s, then
// stops. The microphone is Chromium's fake device playing WAV (a 1700 Hz tone). Prints one
// JSON line {call, heard:{...}, listen:[t0,t1], whisper:[t0,t1], barge:[t0,t1]} (times: ms
// since the epoch) and exits 0; exits 1 with a message on failure. CHROMIUM names the
// browser binary.

import { chromium } from "playwright-core";

const [url, who, password, wav] = process.argv.slice(2);
if (!wav) {
  console.error("usage: node supervise.mjs URL SUPERVISOR PASSWORD WAV");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "chromium",
  headless: true,
  args: [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    `--use-file-for-fake-audio-capture=${wav}`,
    "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
  ],
});
const fail = async (why) => {
  console.error("supervise.mjs: " + why);
  await browser.close().catch(() => {});
  process.exit(1);
};
const timer = setTimeout(() => fail("timed out"), 90_000);

try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("console", (m) => console.error("page: " + m.text()));
  const basic = "Basic " + Buffer.from(`${who}:${password}`).toString("base64");
  const login = await page.request.post(url + "/supervisor/login", { headers: { Authorization: basic } });
  if (!login.ok()) await fail(`login: ${login.status()} ${await login.text()}`);
  await page.goto(url + "/supervisor");
  const button = page.locator('button[id^="listen-"]:visible').first();
  await button.waitFor({ timeout: 40_000 });
  const call = (await button.getAttribute("id")).slice("listen-".length);
  const state = () => page.evaluate(() => window.ivrSupervise.state);
  const until = async (what, test, ms) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await test()) return;
      await page.waitForTimeout(100);
    }
    await fail(`no ${what}: ${JSON.stringify(await state())}`);
  };
  // A tone must reach the agent as it is: no noise suppression, no gain control.
  await page.evaluate(() => {
    window.ivrSupervise.audio = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
  });
  await button.click();
  await until("connection", async () => (await state())?.status === "connected", 20_000);
  await until("remote audio", () => page.evaluate(() => !!window.ivrSupervise.remote), 5_000);
  const listen0 = Date.now();
  // What the supervisor hears: average power per tone over 3 s.
  const heard = await page.evaluate(async () => {
    const ctx = new AudioContext();
    await ctx.resume();
    const src = ctx.createMediaStreamSource(window.ivrSupervise.remote);
    const an = ctx.createAnalyser();
    an.fftSize = 8192;
    an.smoothingTimeConstant = 0;
    src.connect(an);
    const bins = new Float32Array(an.frequencyBinCount);
    const hz = [440, 1000, 1700, 2500];
    const sum = hz.map(() => 0);
    let n = 0;
    const end = Date.now() + 3000;
    while (Date.now() < end) {
      await new Promise((r) => setTimeout(r, 100));
      an.getFloatFrequencyData(bins);
      hz.forEach((f, i) => {
        const b = Math.round((f * an.fftSize) / ctx.sampleRate);
        let best = -Infinity;
        for (let k = b - 2; k <= b + 2; k++) best = Math.max(best, bins[k]);
        sum[i] += Math.pow(10, best / 10);
      });
      n++;
    }
    await ctx.close();
    return Object.fromEntries(hz.map((f, i) => [f, 10 * Math.log10(sum[i] / n)]));
  });
  const listen1 = Date.now();
  const whisper0 = Date.now();
  const byId = (id) => page.locator(`[id="${id.replace(/["\\]/g, "\\$&")}"]`);
  await byId("whisper-" + call).click();
  await until("whisper", async () => (await state())?.mode === "whisper", 5_000);
  await page.waitForTimeout(4000);
  const whisper1 = Date.now();
  await byId("barge-" + call).click();
  await until("barge", async () => (await state())?.mode === "barge", 5_000);
  const barge0 = Date.now();
  await page.waitForTimeout(3000);
  const barge1 = Date.now();
  const still = await state();
  await page.evaluate(() => window.ivrSupervise.stop());
  clearTimeout(timer);
  console.log(JSON.stringify({
    call, heard, still,
    listen: [listen0, listen1], whisper: [whisper0, whisper1], barge: [barge0, barge1],
  }));
  await browser.close();
  process.exit(0);
} catch (e) {
  await fail(e.stack || String(e));
}
