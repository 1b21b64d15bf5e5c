use super::*;

fn packet(pt: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = [0u8; rtp::HEADER_LEN];
    rtp::Header {
        payload_type: pt,
        marker: false,
        seq: 1,
        timestamp: 160,
        ssrc: 7,
    }
    .write(&mut h);
    let mut v = h.to_vec();
    v.extend_from_slice(payload);
    v
}

fn silence(law: Law) -> Vec<u8> {
    packet(if law == Law::Ulaw { 0 } else { 8 }, &[law.silence(); 160])
}

fn tone(amplitude: f32, hz: f32) -> [i16; FRAME_SAMPLES] {
    let mut f = [0i16; FRAME_SAMPLES];
    for (i, s) in f.iter_mut().enumerate() {
        *s = (amplitude * (i as f32 * hz * std::f32::consts::TAU / 8000.0).sin()) as i16;
    }
    f
}

/// Mean absolute amplitude of a packet's payload.
fn energy(p: &[u8], law: Law) -> u32 {
    let payload = rtp::parse(p).expect("rtp").payload;
    payload
        .iter()
        .map(|&b| u32::from(law.decode(b).unsigned_abs()))
        .sum::<u32>()
        / payload.len() as u32
}

/// Runs `frames` 20 ms rounds: the supervisor says a tone, each party sends a silent packet.
/// The energy of what reached the agent and the caller, summed over the rounds.
fn rounds(tap: &mut BridgeTap, end: &mut SupervisorEnd, frames: usize) -> (u64, u64) {
    let voice = tone(8000.0, 1000.0);
    let (mut agent, mut caller) = (0u64, 0u64);
    for _ in 0..frames {
        end.speak(&voice);
        // Silence is not quite 0 in G.711: only what changed counts.
        let mut to_agent = silence(Law::Ulaw);
        tap.caller_to_agent(&mut to_agent, Law::Ulaw, 0);
        if to_agent != silence(Law::Ulaw) {
            agent += u64::from(energy(&to_agent, Law::Ulaw));
        }
        let mut to_caller = silence(Law::Alaw);
        tap.agent_to_caller(&mut to_caller, Law::Alaw, 8);
        if to_caller != silence(Law::Alaw) {
            caller += u64::from(energy(&to_caller, Law::Alaw));
        }
    }
    (agent, caller)
}

#[test]
fn a_whisper_reaches_the_agent_and_never_the_caller() {
    let (mut tap, mut end) = pair(Mode::Whisper);
    let (agent, caller) = rounds(&mut tap, &mut end, 50);
    assert!(agent > 50 * 3000, "the agent hears the whisper: {agent}");
    assert_eq!(caller, 0, "the caller hears nothing of it");
    assert_eq!(end.stats().to_caller.load(Ordering::Relaxed), 0);
    assert!(end.stats().to_agent.load(Ordering::Relaxed) >= 48 * 160);
}

#[test]
fn a_barge_reaches_both() {
    let (mut tap, mut end) = pair(Mode::Barge);
    let (agent, caller) = rounds(&mut tap, &mut end, 50);
    assert!(agent > 50 * 3000, "{agent}");
    assert!(caller > 50 * 3000, "{caller}");
}

#[test]
fn listening_says_nothing_to_anyone() {
    let (mut tap, mut end) = pair(Mode::Listen);
    let (agent, caller) = rounds(&mut tap, &mut end, 50);
    assert_eq!((agent, caller), (0, 0));
    assert_eq!(end.stats().to_agent.load(Ordering::Relaxed), 0);
}

#[test]
fn what_was_said_in_barge_is_not_heard_by_the_caller_after_a_switch_to_whisper() {
    let (mut tap, mut end) = pair(Mode::Barge);
    // Said in barge, not yet relayed.
    for _ in 0..5 {
        end.speak(&tone(8000.0, 1000.0));
    }
    end.set_mode(Mode::Whisper);
    let (agent, caller) = rounds(&mut tap, &mut end, 20);
    assert!(agent > 0);
    assert_eq!(caller, 0);
}

#[test]
fn the_supervisor_hears_both_parties_mixed() {
    let (mut tap, mut end) = pair(Mode::Listen);
    let low = tone(4000.0, 500.0);
    let high = tone(4000.0, 2000.0);
    let enc = |f: &[i16; FRAME_SAMPLES], law: Law| -> Vec<u8> {
        let payload: Vec<u8> = f.iter().map(|&s| law.encode(s)).collect();
        packet(if law == Law::Ulaw { 0 } else { 8 }, &payload)
    };
    let mut heard = [0i16; FRAME_SAMPLES];
    let mut got = Vec::new();
    for _ in 0..10 {
        let mut a = enc(&low, Law::Ulaw);
        tap.caller_to_agent(&mut a, Law::Ulaw, 0);
        // The parties' packets pass unchanged.
        assert_eq!(a, enc(&low, Law::Ulaw));
        let mut b = enc(&high, Law::Alaw);
        tap.agent_to_caller(&mut b, Law::Alaw, 8);
        end.heard(&mut heard);
        got.extend_from_slice(&heard);
    }
    // Primed after two frames; from then on each frame is the sum of both tones.
    let frame = &got[5 * FRAME_SAMPLES..6 * FRAME_SAMPLES];
    for (i, &s) in frame.iter().enumerate() {
        let want = i32::from(low[i]) + i32::from(high[i]);
        assert!(
            (i32::from(s) - want).abs() < 400,
            "sample {i}: {s} vs {want}"
        );
    }
}

#[test]
fn mixing_saturates() {
    let (mut tap, mut end) = pair(Mode::Whisper);
    let loud = [30_000i16; FRAME_SAMPLES];
    for _ in 0..4 {
        end.speak(&loud);
    }
    let payload = [Law::Ulaw.encode(30_000); 160];
    let mut p = packet(0, &payload);
    tap.caller_to_agent(&mut p, Law::Ulaw, 0);
    let out = rtp::parse(&p).expect("rtp").payload;
    // Clipped at the top, not wrapped to a negative value.
    assert!(out.iter().all(|&b| Law::Ulaw.decode(b) > 30_000));
}

#[test]
fn events_and_other_payload_types_pass_untouched() {
    let (mut tap, mut end) = pair(Mode::Barge);
    for _ in 0..4 {
        end.speak(&tone(8000.0, 1000.0));
    }
    let event = packet(101, &[5, 0x80, 0, 160]);
    let mut p = event.clone();
    tap.caller_to_agent(&mut p, Law::Ulaw, 0);
    assert_eq!(p, event);
    assert_eq!(end.stats().heard.load(Ordering::Relaxed), 0);
}

#[test]
fn the_supervisors_voice_waits_at_most_max_lag() {
    let (mut tap, mut end) = pair(Mode::Whisper);
    // Far more than the ring holds: the excess is dropped, the rest skipped down to PRIME.
    for _ in 0..40 {
        end.speak(&tone(8000.0, 1000.0));
    }
    assert!(end.stats().dropped.load(Ordering::Relaxed) > 0);
    let mut p = silence(Law::Ulaw);
    tap.caller_to_agent(&mut p, Law::Ulaw, 0);
    assert!(tap.shared.to_agent.available() <= PRIME);
}

#[test]
fn each_end_sees_the_other_go() {
    let (tap, end) = pair(Mode::Listen);
    assert!(!end.call_gone() && !tap.supervisor_gone());
    drop(tap);
    assert!(end.call_gone());
    let (tap, end) = pair(Mode::Listen);
    drop(end);
    assert!(tap.supervisor_gone());
}

#[test]
fn modes_are_named() {
    for m in [Mode::Listen, Mode::Whisper, Mode::Barge] {
        assert_eq!(Mode::parse(m.as_str()), Some(m));
    }
    assert_eq!(Mode::parse("shout"), None);
}
