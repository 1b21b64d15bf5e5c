// The Listen, Whisper and Barge buttons of /supervisor: a WebRTC session per supervised call
// (GET /supervisor/calls/CALLID/media, a WebSocket carrying the SDP offer and answer and the
// mode changes). Served as /supervisor/supervise.js to logged-in supervisors; the page loads
// it before its own script, which shows the buttons once window.ivrSupervise is there and
// calls ivrSupervise[action](callId, button) when one is clicked.
//
//   window.ivrSupervise.listen(callId)    start listening to callId (or switch to listen)
//   window.ivrSupervise.whisper(callId)   start (or switch to) whispering to the agent
//   window.ivrSupervise.barge(callId)     start (or switch to) speaking to both
//   window.ivrSupervise.stop()            end the session
//   window.ivrSupervise.state             {call, mode, status} or null
//   window.ivrSupervise.remote            the MediaStream heard (both parties mixed)
//   window.ivrSupervise.audio             the microphone's constraints (getUserMedia's audio)
//
// Clicking the button of the mode already on stops the session. The microphone is asked for
// at the start; it is sent only in whisper and barge (the server also ignores it in
// listen). Progress goes to the element #supervise-status, the buttons of the supervised
// call carry aria-pressed for the mode on, and an `ivr-supervise` event on document carries
// the state.
(function () {
  "use strict";
  let s = null;

  function report(status) {
    if (s) s.status = status;
    const state = s ? { call: s.call, mode: s.mode, status: status } : null;
    api.state = state;
    const el = document.getElementById("supervise-status");
    if (el) el.textContent = state ? `${state.mode} ${state.call}: ${status}` : status;
    for (const b of document.querySelectorAll("button[data-action]")) {
      const on = !!state && b.dataset.call === state.call && b.dataset.action === state.mode;
      b.setAttribute("aria-pressed", on ? "true" : "false");
    }
    document.dispatchEvent(new CustomEvent("ivr-supervise", { detail: state || { status } }));
  }

  function stop(why) {
    const old = s;
    s = null;
    if (!old) return;
    try { if (old.ws) old.ws.close(); } catch (e) { /* already closed */ }
    try { if (old.pc) old.pc.close(); } catch (e) { /* already closed */ }
    if (old.mic) old.mic.getTracks().forEach((t) => t.stop());
    if (old.audio) { old.audio.srcObject = null; old.audio.remove(); }
    api.remote = null;
    report(why || "stopped");
  }

  function gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((done) => {
      const t = setTimeout(done, 5000);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") { clearTimeout(t); done(); }
      });
    });
  }

  function setMode(mode) {
    if (!s) return;
    s.mode = mode;
    if (s.mic) s.mic.getAudioTracks().forEach((t) => { t.enabled = mode !== "listen"; });
    if (s.ws && s.ws.readyState === WebSocket.OPEN) s.ws.send(JSON.stringify({ type: "mode", mode }));
    report(s.status);
  }

  async function start(call, mode) {
    mode = mode || "listen";
    if (!["listen", "whisper", "barge"].includes(mode)) throw new Error("mode: listen, whisper or barge");
    if (s && s.call === call) { setMode(mode); return; }
    stop();
    const me = { call, mode, status: "connecting" };
    s = me;
    report("connecting");
    let mic = null;
    try {
      mic = await navigator.mediaDevices.getUserMedia({ audio: api.audio });
    } catch (e) {
      if (mode !== "listen") { stop("no microphone: " + e.message); return; }
    }
    if (s !== me) { if (mic) mic.getTracks().forEach((t) => t.stop()); return; }
    me.mic = mic;
    const pc = new RTCPeerConnection();
    me.pc = pc;
    if (mic) {
      mic.getAudioTracks().forEach((t) => { t.enabled = mode !== "listen"; pc.addTrack(t, mic); });
    } else {
      pc.addTransceiver("audio", { direction: "recvonly" });
    }
    pc.ontrack = (ev) => {
      const stream = ev.streams[0] || new MediaStream([ev.track]);
      api.remote = stream;
      const audio = document.createElement("audio");
      audio.autoplay = true;
      audio.srcObject = stream;
      audio.style.display = "none";
      document.body.appendChild(audio);
      me.audio = audio;
      audio.play().catch(() => {});
    };
    pc.onconnectionstatechange = () => {
      if (s !== me) return;
      if (pc.connectionState === "connected") report("connected");
      if (pc.connectionState === "failed") stop("the connection failed");
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    if (s !== me) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${proto}//${location.host}/supervisor/calls/${encodeURIComponent(call)}/media?mode=${mode}`;
    const ws = new WebSocket(url);
    me.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }));
    ws.onmessage = async (ev) => {
      if (s !== me) return;
      let m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m.type === "answer") {
        await pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
        // A mode chosen while the answer was on its way.
        if (me.mode !== mode) ws.send(JSON.stringify({ type: "mode", mode: me.mode }));
        report("answered");
      } else if (m.type === "mode") {
        report(me.status);
      } else if (m.type === "ended") {
        stop("the conversation is over");
      } else if (m.type === "error") {
        stop(m.message);
      }
    };
    ws.onclose = () => { if (s === me) stop("the server ended the session"); };
  }

  // A click on the button of the mode already on ends the session.
  const action = (mode) => (call) => {
    if (s && s.call === call && s.mode === mode) { stop(); return Promise.resolve(); }
    return start(call, mode).catch((e) => report("error: " + e.message));
  };
  const api = {
    listen: action("listen"),
    whisper: action("whisper"),
    barge: action("barge"),
    stop: () => stop(),
    state: null,
    remote: null,
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  };

  window.ivrSupervise = api;
})();
