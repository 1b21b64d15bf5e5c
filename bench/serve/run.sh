#!/usr/bin/env bash
# The `ivr serve` benchmark, driven by SIPp on this machine (loopback only, bounded):
#
#   bench/serve/run.sh rate [RATE] [CALLS]      call rate: short calls (answer, prompt, key 1 by
#                                               SIP INFO, prompt, the flow hangs up), default
#                                               1000 calls/s, 20000 calls
#   bench/serve/run.sh channels [N] [SECONDS]   N concurrent channels playing for SECONDS
#                                               (default 2000, 20): RSS per channel, RTP gaps at
#                                               the receiver, DTMF-to-audio latency
#
# It builds the release binary and the RTP probe, makes a deployment of two flows in
# $IVR_BENCH_DIR (default /tmp/ivr-bench), starts `ivr serve` on 127.0.0.1:5090 and prints
# what it measured. Figures and method: docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
MODE=${1:-rate}
DIR=${IVR_BENCH_DIR:-/tmp/ivr-bench}
PORT=5090
PROBE_PORT=7078

command -v sipp >/dev/null || { echo "sipp (Debian package sip-tester) is needed" >&2; exit 2; }
cargo build -q --release --bin ivr --example rtp_probe
IVR=$ROOT/target/release/ivr
PROBE=$ROOT/target/release/examples/rtp_probe

rm -rf "$DIR"; mkdir -p "$DIR/flows" "$DIR/prompts/zh-CN"
cat > "$DIR/ivr.toml" <<'EOF'
[paths]
flows      = "flows"
prompts    = "prompts"
recordings = "recordings"

[server]
rtp_ports = "20000-39999"
max_calls = 20000

[database]
url = "sqlite://ivr-data/ivr.db"

[routes]
"1" = "short"
"2" = "hold"
default = "short"
EOF
cat > "$DIR/flows/short.flow" <<'EOF'
flow short {
    title    "bench: answer, prompt, one key, prompt, hang up"
    language zh-CN
    entry    ask
}

menu ask {
    prompt   hello
    timeout  2s
    attempts 1 -> done
    key 1 -> done
}

step done {
    play bye
    hangup
}
EOF
cat > "$DIR/flows/hold.flow" <<'EOF'
flow hold {
    title    "bench: a channel that plays until key 1, then plays a tone"
    language zh-CN
    entry    wait
}

menu wait {
    prompt   quiet
    timeout  60s
    attempts 1 -> done
    key 1 -> done
}

step done {
    play tone
    hangup
}
EOF
# Prompts: 200 ms tones for the short call; 60 s of digital silence and a 60 s tone for the
# channels (the probe sees the key's effect as the first non-silent frame).
python3 - "$DIR/prompts/zh-CN" <<'EOF'
import math, struct, sys, wave
d = sys.argv[1]
def wav(name, ms, hz):
    with wave.open(f"{d}/{name}.wav", "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
        n = ms * 8
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i / 8000)) if hz else 0) for i in range(n)))
wav("hello", 200, 500); wav("bye", 200, 700); wav("quiet", 60000, 0); wav("tone", 60000, 440)
with open(f"{d}/prompts.toml", "w") as f:
    for p in ["hello", "bye", "quiet", "tone"]:
        f.write(f'{p} = {{ text = "{p}" }}\n')
EOF

ulimit -n 65536 || true
IVR_LOG=warn "$IVR" --config "$DIR/ivr.toml" serve --sip 127.0.0.1:$PORT --no-watch \
    --rtp-timeout 120s --drain 5s > "$DIR/serve.out" 2> "$DIR/serve.err" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "SIP on" "$DIR/serve.out" 2>/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' /proc/$SERVER/status; }
cd "$DIR"

case "$MODE" in
rate)
    RATE=${2:-1000}; CALLS=${3:-20000}
    echo "== call rate: $CALLS short calls offered at $RATE/s"
    START=$(date +%s.%N)
    sipp -sf "$ROOT/bench/serve/short_call.xml" -s 1 127.0.0.1:$PORT -i 127.0.0.1 \
        -r "$RATE" -m "$CALLS" -l 20000 -nostdin -timeout 300 -key rtpport 9 \
        -trace_stat -stf rate.csv -fd 1 -max_socket 50000 > sipp.out 2>&1 || true
    END=$(date +%s.%N)
    grep -E "Successful call|Failed call|Elapsed Time|Call Rate" sipp.out | tail -6 || true
    python3 - "$START" "$END" rate.csv <<'EOF'
import csv, sys
start, end = float(sys.argv[1]), float(sys.argv[2])
rows = list(csv.reader(open(sys.argv[3]), delimiter=';'))
h = rows[0]
last = dict(zip(h, rows[-1]))
ok = int(last["SuccessfulCall(C)"]); failed = int(last["FailedCall(C)"])
print(f"successful {ok}, failed {failed}, wall {end-start:.1f} s, completed calls/s {ok/(end-start):.0f}")
# Peak 1-second completion rate from the periodic rows.
best = 0
for r in rows[1:]:
    d = dict(zip(h, r))
    try: best = max(best, int(d["SuccessfulCall(P)"]) / max(float(d["ElapsedTime(P)"].split(":")[-1]) or 1, 1e-3))
    except Exception: pass
print(f"peak completed calls/s over one period: {best:.0f}")
EOF
    ;;
channels)
    N=${2:-2000}; SECS=${3:-20}
    BASE=$(rss)
    echo "== channels: $N concurrent calls playing for $SECS s (RSS before: $BASE KiB)"
    # Let the probe have the 64 MiB receive buffer it asks for (as root; else the default).
    sysctl -qw net.core.rmem_max=67108864 2>/dev/null || true
    "$PROBE" $PROBE_PORT $((SECS + 10)) --dtmf > probe.json &
    PROBE_PID=$!
    # Open the channels at 500/s, hold each for SECS s.
    HOLD_MS=$((SECS * 1000))
    sipp -sf "$ROOT/bench/serve/hold_call.xml" -s 2 127.0.0.1:$PORT -i 127.0.0.1 \
        -r 500 -m "$N" -l "$N" -d "$HOLD_MS" -nostdin -timeout $((SECS + 60)) \
        -key rtpport $PROBE_PORT -max_socket 50000 > sipp.out 2>&1 &
    SIPP=$!
    # Sample the server's RSS once all channels are up.
    sleep $(( N / 500 + 3 ))
    PEAK=$(rss)
    ACTIVE=$(grep -c . /dev/null || true)
    wait $SIPP || true
    wait $PROBE_PID || true
    grep -E "Successful call|Failed call" sipp.out | tail -2 || true
    echo "RSS with $N channels: $PEAK KiB; per channel: $(( (PEAK - BASE) / N )) KiB"
    cat probe.json
    ;;
*)
    echo "usage: $0 rate [RATE] [CALLS] | channels [N] [SECONDS]" >&2; exit 2 ;;
esac
