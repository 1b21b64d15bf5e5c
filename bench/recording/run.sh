#!/usr/bin/env bash
# The call recording benchmark: CALLS bridged calls at once (default 1000), each a SIPp caller
# whose flow plays a 200 ms prompt and transfers it to a SIPp far end ("the agent"), which
# answers at once; audio flows both ways through the bridge. Run
# without recording (`[recording] calls = "none"`) and with it (`"transferred"`: every bridged
# call recorded from the far end's answer), back to back, PAIRS times (default 3). It prints,
# per run and as medians, over the steady state (every call bridged):
#
#   - disk: bytes the server wrote (/proc/PID/io `write_bytes` and `wchar`) per second;
#   - CPU: the server's user + system time per second of wall time (100 % = one core);
#   - the bridge's RTP gap p50/p99/max: the time between consecutive packets of one call as
#     the far end's RTP probe receives them (kernel timestamps), caller to agent, and the same
#     agent to caller at the callers' probe;
#   - the 1-minute load average of the machine at the end of the steady state;
#
# and the ratios recorded / not recorded of each pair. Loopback only; every process is bounded
# and stopped at the end. Figures and method: docs/performance.md.
#
#   bench/recording/run.sh [CALLS] [PAIRS] [HOLD_SECONDS] [RATE]
#
# The calls are set up at RATE a second (default 100) and each lasts HOLD_SECONDS (default
# 40); the steady state is measured from 5 s after the last call is set up to 2 s before the
# first one hangs up. The media: two RTP probes (bench/serve/rtp_probe.rs --talk), one that all
# callers' SDP names and one that all far ends' SDP names; each sends a 20 ms PCMU packet
# every 20 ms to every server port it hears from, with an SSRC per call (the prompt is what
# the callers' probe first hears), so the bridge relays (and the recorder writes) both
# directions of every call.
#
# IVR_BIN and PROBE run other builds (default: the release builds, built here). Disk: a
# recorded run writes 1.26 MB a call (1.3 GB for 1,000 calls of 40 s) under IVR_BENCH_DIR; the
# files are removed once measured (IVR_BENCH_KEEP=1 keeps them).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CALLS=${1:-1000}; PAIRS=${2:-3}; HOLD=${3:-40}; RATE=${4:-100}
DIR=${IVR_BENCH_DIR:-/tmp/ivr-bench-recording}
PORT=5094; AGENT=5095; HTTP=127.0.0.1:8094; CALLER_RTP=7080; AGENT_RTP=7081

command -v sipp >/dev/null || { echo "sipp (Debian package sip-tester) is needed" >&2; exit 2; }
if [ -z "${IVR_BIN:-}" ] || [ -z "${PROBE:-}" ]; then
    cargo build -q --release --bin ivr --example rtp_probe
fi
IVR_BIN=${IVR_BIN:-$ROOT/target/release/ivr}
PROBE=${PROBE:-$ROOT/target/release/examples/rtp_probe}

RAMP=$(( (CALLS + RATE - 1) / RATE ))
FROM=$(( RAMP + 5 ))          # steady state: from here (seconds after the first call) ...
UNTIL=$(( HOLD - 2 ))         # ... to here
if [ "$UNTIL" -le $(( FROM + 5 )) ]; then
    echo "HOLD_SECONDS too short for $CALLS calls at $RATE/s: at least $(( FROM + 8 ))" >&2; exit 2
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
# Let the probes have the 64 MiB receive buffers they ask for (as root; else the default).
sysctl -qw net.core.rmem_max=67108864 2>/dev/null || true
TICKS=$(getconf CLK_TCK)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# One run: $1 = none | transferred; $2 = its folder. Prints one JSON line into $2/result.json.
run() {
    local policy=$1 d=$2
    rm -rf "$d"; mkdir -p "$d/flows" "$d/prompts/zh-CN"
    cat > "$d/ivr.toml" <<TOML
[paths]
flows      = "flows"
prompts    = "prompts"
recordings = "recordings"

[server]
rtp_ports = "20000-39999"
max_calls = 20000

[database]
url = "sqlite://ivr-data/ivr.db"

[recording]
calls  = "$policy"
folder = "recordings/calls"
keep   = "90d"

[routes]
default = "bridge"
TOML
    cat > "$d/flows/bridge.flow" <<FLOW
flow bridge {
    title    "bench: a 200 ms prompt (the callers' probe learns the call's port), then bridged"
    language zh-CN
    entry    hello
}

step hello {
    play hold
    goto out
}

transfer out {
    to        "sip:agent@127.0.0.1:$AGENT"
    music     hold
    no_agents -> bye
    after     -> bye
}

step bye {
    play hold
    hangup
}
FLOW
    python3 - "$d/prompts/zh-CN" <<'PY'
import math, struct, sys, wave
d = sys.argv[1]
with wave.open(f"{d}/hold.wav", "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
    w.writeframes(b"".join(struct.pack("<h", int(4000 * math.sin(2 * math.pi * 300 * i / 8000))) for i in range(1600)))
open(f"{d}/prompts.toml", "w").write('hold = { text = "hold" }\n')
PY
    cd "$d"
    IVR_LOG=warn "$IVR_BIN" --config ivr.toml serve --sip 127.0.0.1:$PORT --http $HTTP \
        --no-watch --rtp-timeout 120s --drain 10s > serve.out 2> serve.err &
    local server=$!; PIDS+=("$server")
    for _ in $(seq 100); do grep -q "SIP on" serve.out 2>/dev/null && break; sleep 0.1; done
    grep -q "SIP on" serve.out || { echo "ivr serve did not start:" >&2; cat serve.err >&2; exit 1; }
    sipp -sf "$ROOT/bench/recording/agent_uas.xml" -i 127.0.0.1 -p $AGENT -m "$CALLS" \
        -key agentrtp $AGENT_RTP -nostdin -timeout $(( HOLD + 60 )) -max_socket 50000 \
        > agent.out 2>&1 &
    local agent=$!; PIDS+=("$agent")
    "$PROBE" $CALLER_RTP "$UNTIL" --talk --from "$FROM" > probe_callers.json &
    local pa=$!; PIDS+=("$pa")
    "$PROBE" $AGENT_RTP "$UNTIL" --talk --from "$FROM" > probe_agents.json &
    local pb=$!; PIDS+=("$pb")
    sleep 0.5
    local t_start; t_start=$(date +%s.%N)
    sipp -sf "$ROOT/bench/serve/hold_call.xml" -s 1 127.0.0.1:$PORT -i 127.0.0.1 \
        -r "$RATE" -m "$CALLS" -l "$CALLS" -d $(( HOLD * 1000 )) -nostdin \
        -timeout $(( HOLD + 60 )) -key rtpport $CALLER_RTP -max_socket 50000 \
        > callers.out 2>&1 &
    local callers=$!; PIDS+=("$callers")
    sample() {
        local cpu io load
        cpu=$(awk '{print $14 + $15}' "/proc/$server/stat")
        io=$(awk '/^wchar|^write_bytes/ {printf "%s ", $2}' "/proc/$server/io")
        load=$(cut -d' ' -f1 /proc/loadavg)
        echo "$(date +%s.%N) $cpu $io$load"
    }
    sleep "$(python3 -c "import time; print(max(0, $t_start + $FROM - time.time()))")"
    local s0; s0=$(sample)
    sleep "$(python3 -c "import time; print(max(0, $t_start + $UNTIL - time.time()))")"
    local s1; s1=$(sample)
    wait "$pa" "$pb" || true
    wait "$callers" || true
    wait "$agent" || true
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    cd "$ROOT"
    python3 - "$policy" "$d" "$TICKS" "$CALLS" "$s0" "$s1" <<'PY'
import json, os, re, sys
policy, d, hz, calls = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
t0, c0, w0, b0, _ = map(float, sys.argv[5].split())
t1, c1, w1, b1, load = map(float, sys.argv[6].split())
dt = t1 - t0
def sipp_counts(path):
    text = open(path, errors="replace").read()
    ok = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", text)
    bad = re.findall(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", text)
    return int(ok[-1]) if ok else -1, int(bad[-1]) if bad else -1
ok, failed = sipp_counts(f"{d}/callers.out")
files, size = 0, 0
for root, _, names in os.walk(f"{d}/recordings/calls"):
    for n in names:
        if n.endswith(".wav"):
            files += 1; size += os.path.getsize(os.path.join(root, n))
pa = json.load(open(f"{d}/probe_callers.json")); pb = json.load(open(f"{d}/probe_agents.json"))
r = {
    "policy": policy, "calls_ok": ok, "calls_failed": failed, "window_s": round(dt, 1),
    "load1": load, "cpu_pct": round(100 * (c1 - c0) / hz / dt, 1),
    "write_bytes_MBps": round((b1 - b0) / dt / 1e6, 2), "wchar_MBps": round((w1 - w0) / dt / 1e6, 2),
    "files": files, "files_MB": round(size / 1e6, 1),
    "to_agent": {"channels": pb["channels"], "gap_p50_us": pb["gap_us"]["p50"], "gap_p99_us": pb["gap_us"]["p99"],
                 "gap_max_us": pb["gap_us"]["max"], "over_40ms": pb["gaps_over_40ms"], "lost": pb["lost"]},
    "to_caller": {"channels": pa["channels"], "gap_p50_us": pa["gap_us"]["p50"], "gap_p99_us": pa["gap_us"]["p99"],
                  "gap_max_us": pa["gap_us"]["max"], "over_40ms": pa["gaps_over_40ms"], "lost": pa["lost"]},
    "probe_tick_late_p99_us": max(pa["talk_late_us"]["p99"], pb["talk_late_us"]["p99"]),
    "rcvbuf_errors": max(pa["rcvbuf_errors"], pb["rcvbuf_errors"]),
}
open(f"{d}/result.json", "w").write(json.dumps(r) + "\n")
print(json.dumps(r))
PY
    # A recorded run of 1,000 calls leaves about 1.3 GB of WAV: measured, then removed (set
    # IVR_BENCH_KEEP=1 to keep them), so that the disk holds one run's files at a time.
    [ "${IVR_BENCH_KEEP:-0}" = 1 ] || rm -rf "$d/recordings"
    PIDS=()
}

rm -rf "$DIR"; mkdir -p "$DIR"
echo "== $CALLS bridged calls, $PAIRS pairs (not recorded, recorded), ${HOLD}s each, set up at $RATE/s;" \
     "steady state ${FROM}s..${UNTIL}s; $(nproc) cores"
for i in $(seq "$PAIRS"); do
    run none "$DIR/$i-none"
    run transferred "$DIR/$i-recorded"
done
python3 - "$DIR" "$PAIRS" <<'PY'
import json, statistics, sys
d, pairs = sys.argv[1], int(sys.argv[2])
runs = [(json.load(open(f"{d}/{i}-none/result.json")), json.load(open(f"{d}/{i}-recorded/result.json")))
        for i in range(1, pairs + 1)]
keys = [("cpu_pct", lambda r: r["cpu_pct"]), ("write_bytes_MBps", lambda r: r["write_bytes_MBps"]),
        ("wchar_MBps", lambda r: r["wchar_MBps"]),
        ("to_agent_gap_p99_us", lambda r: r["to_agent"]["gap_p99_us"]),
        ("to_caller_gap_p99_us", lambda r: r["to_caller"]["gap_p99_us"]),
        ("to_agent_gap_max_us", lambda r: r["to_agent"]["gap_max_us"]),
        ("load1", lambda r: r["load1"])]
print("== medians over %d pairs: not recorded | recorded | median of the pairs' ratios" % pairs)
for name, f in keys:
    a = statistics.median(f(n) for n, _ in runs); b = statistics.median(f(r) for _, r in runs)
    ratios = [f(r) / f(n) for n, r in runs if f(n)]
    ratio = statistics.median(ratios) if ratios else float("nan")
    print(f"{name:22} {a:>10} | {b:>10} | x{ratio:.2f}")
bad = [(n["calls_failed"], r["calls_failed"], n["to_agent"]["channels"], r["to_agent"]["channels"]) for n, r in runs]
print("failed calls and bridged channels seen per pair (none, recorded):", bad)
PY
