#!/usr/bin/env bash
# The campaign benchmark: `ivr serve` dials a list of NUMBERS (default 10000) through a trunk
# whose gateway is a SIPp UAS on this machine where every number answers at once; the
# campaign's flow plays a 200 ms prompt and hangs up. The campaign runs at RATE new calls a
# second (default 1000, the highest `rate` accepts) with up to MAX (default 2000) of its calls
# at once. It prints the attempts, how they ended (no failed attempt is the goal), attempts/s
# from start to finish and the server's CPU time per attempt. Figures: docs/performance.md.
#
#   bench/campaign/run.sh [NUMBERS] [RATE] [MAX]
#
# IVR_BIN runs another build of `ivr` (default: the release build, built here).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
NUMBERS=${1:-10000}; RATE=${2:-1000}; MAX=${3:-2000}
DIR=${IVR_BENCH_DIR:-/tmp/ivr-bench-campaign}
PORT=5092; GW=5093; HTTP=127.0.0.1:8092

command -v sipp >/dev/null || { echo "sipp (Debian package sip-tester) is needed" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 2; }
if [ -z "${IVR_BIN:-}" ]; then
    cargo build -q --release --bin ivr
    IVR_BIN=$ROOT/target/release/ivr
fi

rm -rf "$DIR"; mkdir -p "$DIR/flows" "$DIR/prompts/zh-CN"
cat > "$DIR/ivr.toml" <<TOML
[paths]
flows      = "flows"
prompts    = "prompts"
recordings = "recordings"

[server]
rtp_ports = "20000-39999"
max_calls = 20000

[database]
url = "sqlite://ivr-data/ivr.db"

[queries.bench_list]
sql    = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $NUMBERS) SELECT printf('139%08d', i) AS phone FROM n"
fields = { phone = "text" }

[trunks.gw]
uri       = "sip:127.0.0.1:$GW"
caller_id = "10010"
max_calls = $MAX

[campaigns.bench]
flow         = "notice"
list         = "bench_list"
trunk        = "gw"
max_calls    = $MAX
rate         = $RATE
attempts     = 1
ring_timeout = "10s"
TOML
cat > "$DIR/flows/notice.flow" <<'FLOW'
flow notice {
    title    "bench: a prompt, then hang up"
    language zh-CN
    entry    speak
}

step speak {
    play hello
    served "notice"
    hangup
}
FLOW
python3 - "$DIR/prompts/zh-CN" <<'PY'
import math, struct, sys, wave
d = sys.argv[1]
with wave.open(f"{d}/hello.wav", "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
    w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 500 * i / 8000))) for i in range(1600)))
open(f"{d}/prompts.toml", "w").write('hello = { text = "hello" }\n')
PY

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
cd "$DIR"
sipp -sf "$ROOT/bench/campaign/uas.xml" -i 127.0.0.1 -p $GW -m "$NUMBERS" -nostdin \
    -timeout 600 -max_socket 50000 > sipp.out 2>&1 &
SIPP=$!
IVR_LOG=warn "$IVR_BIN" --config "$DIR/ivr.toml" serve --sip 127.0.0.1:$PORT --http $HTTP \
    --no-watch > serve.out 2> serve.err &
SERVER=$!
trap 'kill $SERVER $SIPP 2>/dev/null || true; wait $SERVER $SIPP 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "SIP on" serve.out 2>/dev/null && break; sleep 0.1; done
for _ in $(seq 100); do
    curl -s "http://$HTTP/campaigns/bench" | grep -q "\"total\":$NUMBERS" && break; sleep 0.1
done
cpu() { awk '{print $14 + $15}' /proc/$SERVER/stat; }
TICKS=$(getconf CLK_TCK)
CPU0=$(cpu); T0=$(date +%s.%N)
curl -s -X POST "http://$HTTP/campaigns/bench/start" > /dev/null
# Bounded: a campaign that has not finished within 10 minutes is reported as it stands.
for _ in $(seq 3000); do
    curl -s "http://$HTTP/campaigns/bench" | grep -q '"finished":true' && break; sleep 0.2
done
T1=$(date +%s.%N); CPU1=$(cpu)
STATE=$(curl -s "http://$HTTP/campaigns/bench")
echo "$STATE"
"$IVR_BIN" --config "$DIR/ivr.toml" report --format json > report.json
python3 - "$T0" "$T1" "$CPU0" "$CPU1" "$TICKS" report.json <<'PY'
import json, sys
t0, t1, c0, c1, hz = map(float, sys.argv[1:6])
c = json.load(open(sys.argv[6]))["campaigns"][0]
n = c["attempts"]
print(f"attempts {n}: reached {c['reached']}, no answer {c['no_answer']}, busy {c['busy']}, failed {c['failed']}")
print(f"wall {t1 - t0:.1f} s: {n / (t1 - t0):.0f} attempts/s; server CPU {(c1 - c0) / hz:.1f} s: {1000 * (c1 - c0) / hz / n:.2f} ms per attempt")
PY
