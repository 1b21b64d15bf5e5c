#!/usr/bin/env bash
# The cluster benchmark: calls/s through Kamailio to 1 node and to 2 nodes on this machine
# (scripts/cluster.sh: PostgreSQL, Kamailio, N `ivr serve` nodes on loopback). SIPp sends its
# calls to Kamailio at a stepped rate; each call is the bench deployment's short flow: answered,
# a 200 ms prompt (10 RTP packets), the flow hangs up (BYE from the node through the proxy), and
# its records (the call row, its node visit) are written to the cluster's PostgreSQL.
#
#   bench/cluster/run.sh [RUNS]      # RUNS runs of each case (default 3)
#   bench/cluster/run.sh --smoke     # one short run of each case at 20 and 40 calls/s (< 1 min)
#
# Each run of a case starts the cluster (`scripts/cluster.sh up N`), measures it idle for 2 s,
# then offers STEP_SECONDS (default 6) of calls at each rate of RATES in turn, and stops at the
# first step with a failed call (or where fewer than half the offered calls/s completed). A
# rate is sustained when no call failed and at least 90 % of the offered calls/s completed. Per
# step it prints the offered rate, the calls SIPp completed and failed, completed calls/s (over
# the wall clock of the step), the calls each node answered (`ivr_calls_answered_total` of its
# /metrics) and its CPU per call (utime + stime of /proc/PID/stat before and after, over the
# calls it answered), Kamailio's and PostgreSQL's CPU per call (every process of each; the ones
# that ended are counted through their parent), SIPp's own, Kamailio's peak shared memory, how
# busy the machine's cores were (/proc/stat: everyone's work, 100 % = all cores) and the 1-minute
# load average. Then, per run, the highest sustained rate, the highest without a failed call
# and the most calls/s completed without one, what failed
# at the next step and the CPU per call at REF_RATE and at the highest rate; over the runs the
# medians of each case and the ratios 2 nodes / 1 node. Everything is stopped at the end, on
# failure too; the deployment's recordings and data are deleted (there are none: no call is
# recorded). Figures and method: docs/performance.md ("Cluster").
#
# Environment: IVR_BIN (default: the release build, built here), IVR_BENCH_DIR (default
# /tmp/ivr-bench-cluster: the deployment, the cluster's run folder, SIPp's files, results.jsonl),
# RATES (default "300 600 900 1200 1500 1800 2100 2400 2700 3000 3300 3600 3900 4200"), REF_RATE (the rate
# whose CPU per call is compared between the cases, default 1200), STEP_SECONDS (default 6), NODES
# (default "1 2"), IVR_CLUSTER_KAMAILIO_SHM (Kamailio's shared memory, default 1024 MB; its peak
# use is printed per step). Ports: the proxy on 15060, the nodes on 15061.. (SIP) and 18081..
# (HTTP), SIPp on 15090: below the kernel's ephemeral ports (32768 and up), where an outgoing
# connection (a node's to PostgreSQL) could hold a node's port.
set -euo pipefail
# IVR_BIN relative to where the script was started from.
if [ -n "${IVR_BIN:-}" ]; then IVR_BIN=$(realpath "$IVR_BIN"); fi
cd "$(dirname "$0")/../.."
ROOT=$PWD
SMOKE=""
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
RUNS=${1:-3}
RATES=${RATES:-"300 600 900 1200 1500 1800 2100 2400 2700 3000 3300 3600 3900 4200"}
STEP=${STEP_SECONDS:-6}
NODES=${NODES:-"1 2"}
REF=${REF_RATE:-1200}
if [ -n "$SMOKE" ]; then RUNS=1; RATES="20 40"; STEP=3; REF=20; fi
DIR=${IVR_BENCH_DIR:-/tmp/ivr-bench-cluster}
DEPLOY=$DIR/deploy
export IVR_CLUSTER_DIR=$DIR/run
export IVR_CLUSTER_SIP_PORT=15060
export IVR_CLUSTER_HTTP_PORT=18080
export IVR_CLUSTER_ARGS="--no-watch --rtp-timeout 30s"
export IVR_LOG=warn
# Kamailio keeps every transaction in its shared memory for a few seconds after it ends: the
# 64 MB of scripts/cluster.sh run out at about 500 calls/s (500 Server Internal Error); the
# peak grows by about 0.15 MB per call/s.
export IVR_CLUSTER_KAMAILIO_SHM=${IVR_CLUSTER_KAMAILIO_SHM:-1024}
PROXY=127.0.0.1:$IVR_CLUSTER_SIP_PORT

command -v sipp >/dev/null || { echo "sipp (Debian package sip-tester) is needed" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 2; }
case "$RUNS" in '' | *[!0-9]* | 0) echo "usage: $0 [--smoke] [RUNS]" >&2; exit 2 ;; esac
if [ -z "${IVR_BIN:-}" ]; then
    cargo build -q --release --bin ivr
    IVR_BIN=$ROOT/target/release/ivr
fi
export IVR_BIN

SIPP=""
cleanup() {
    # SIPp of the step under way (its pid file), bounded by its -timeout anyway.
    if [ -n "$SIPP" ] && [ -s "$SIPP" ]; then kill "$(cat "$SIPP")" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    "$ROOT/scripts/cluster.sh" down >/dev/null 2>&1 || true
    rm -rf "$DEPLOY/recordings" "$DEPLOY/ivr-data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$DIR"; mkdir -p "$DEPLOY/flows" "$DEPLOY/prompts/zh-CN" "$DIR/sipp"
cat > "$DEPLOY/ivr.toml" <<'TOML'
[paths]
flows      = "flows"
prompts    = "prompts"
recordings = "recordings"

[server]
rtp_ports = "20000-39999"
max_calls = 3000

[database]
url = "sqlite://ivr-data/lookups.db"

[routes]
default = "short"
TOML
cat > "$DEPLOY/flows/short.flow" <<'FLOW'
flow short {
    title    "bench: answer, a 200 ms prompt, hang up"
    language zh-CN
    entry    speak
}

step speak {
    play hello
    hangup
}
FLOW
python3 - "$DEPLOY/prompts/zh-CN" <<'PY'
import math, struct, sys, wave
d = sys.argv[1]
with wave.open(f"{d}/hello.wav", "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
    w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 500 * i / 8000))) for i in range(1600)))
open(f"{d}/prompts.toml", "w").write('hello = { text = "hello" }\n')
PY
"$IVR_BIN" --config "$DEPLOY/ivr.toml" check >/dev/null

# tools.py sample PIDS...: CPU ticks of each process tree (the root with its reaped children,
# plus its live children) as JSON; tools.py report FILE: the summary of results.jsonl.
cat > "$DIR/tools.py" <<'PY'
import json, os, statistics, sys

def stat(pid):
    try:
        s = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    f = s[s.rindex(")") + 2:].split()
    # after the name: state ppid ... utime(14) stime(15) cutime(16) cstime(17), 1-based
    return int(f[1]), [int(x) for x in f[11:15]]

def tree(root):
    me = stat(root)
    if me is None:
        return 0
    total = sum(me[1])
    for p in os.listdir("/proc"):
        if p.isdigit() and int(p) != root:
            s = stat(p)
            if s and s[0] == root:
                total += s[1][0] + s[1][1]
    return total

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fmt(x, n=2):
    return "-" if x is None else f"{x:.{n}f}"

if sys.argv[1] == "sample":
    # and the machine's busy and total ticks over all its cores (/proc/stat).
    t = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = t[3] + t[4]
    print(json.dumps([tree(int(p)) for p in sys.argv[2:]] + [sum(t[:8]) - idle, sum(t[:8])]))
elif sys.argv[1] == "report":
    ref = int(sys.argv[3])
    steps = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
    cases = {}
    for s in steps:
        cases.setdefault(s["nodes"], {}).setdefault(s["run"], []).append(s)
    summary = {}
    for n, runs in sorted(cases.items()):
        print(f"== {n} node(s)")
        rows = []
        for r, ss in sorted(runs.items()):
            idle = [s for s in ss if s["rate"] == 0]
            ss = [s for s in ss if s["rate"] > 0]
            nxt = next((s for s in ss if s["failed"] > 0), None)
            clean = [s for s in ss if s["failed"] == 0 and (nxt is None or s["rate"] < nxt["rate"])]
            # Sustained: no failed call, and at least 90 % of the offered calls/s completed.
            kept = [s for s in clean if s["completed_per_s"] >= 0.9 * s["rate"]]
            best = clean[-1] if clean else None
            held = kept[-1] if kept else None
            at = next((s for s in ss if s["rate"] == ref and s["failed"] == 0), None)
            most = max((s["completed_per_s"] for s in clean), default=None)
            line = f"run {r}: highest sustained {held['rate'] if held else '-'}/s ("
            line += f"{held['completed_per_s']:.0f} completed/s); " if held else "none); "
            if best:
                line += (f"no failed call up to {best['rate']}/s offered ({best['completed_per_s']:.0f} "
                         f"completed/s; most completed/s in a step without a failure {most:.0f})")
            else:
                line += "every step had failed calls"
            if nxt:
                line += (f"; at {nxt['rate']}/s: {nxt['failed']} failed of {nxt['calls']}, "
                         f"{nxt['completed_per_s']:.0f} completed/s")
            else:
                line += "; no step failed (raise RATES)"
            print(line)
            if idle:
                i = idle[0]
                print(f"  idle: CPU {[fmt(100 * c / i['wall_s'], 1) for c in i['node_cpu_s']]} % of a core "
                      f"per node, Kamailio {fmt(100 * i['kam_cpu_s'] / i['wall_s'], 1)} %, PostgreSQL "
                      f"{fmt(100 * i['pg_cpu_s'] / i['wall_s'], 1)} %")
            for label, s in ((f"at {ref}/s", at), (f"at {best['rate'] if best else '-'}/s", best)):
                if s:
                    print(f"  {label}: calls per node {s['per_node_calls']}, CPU per call per node "
                          f"{[fmt(x, 3) for x in s['node_ms_per_call']]} ms, Kamailio "
                          f"{fmt(s['kam_ms_per_call'], 3)} ms, PostgreSQL {fmt(s['pg_ms_per_call'], 3)} ms, "
                          f"SIPp {fmt(s['sipp_ms_per_call'], 3)} ms, Kamailio's shm peak "
                          f"{s['kam_shm_peak_mb']} MB, machine {fmt(100 * s['machine_busy'], 0) if 'machine_busy' in s else '-'} % busy, "
                          f"load {s['load']}")
            rows.append((best, most, at, held))
        def node_ms(s):
            xs = [x for x in s["node_ms_per_call"] if x is not None]
            return sum(xs) / len(xs) if xs else None
        def med(f, which):
            return median([f(row[which]) for row in rows if row[which]])
        m = {
            "rate": med(lambda s: s["rate"], 0), "completed": median([row[1] for row in rows]),
            "held": med(lambda s: s["rate"], 3), "held_completed": med(lambda s: s["completed_per_s"], 3),
            "node_ms": med(node_ms, 2), "kam_ms": med(lambda s: s["kam_ms_per_call"], 2),
            "pg_ms": med(lambda s: s["pg_ms_per_call"], 2),
            "sipp_ms": med(lambda s: s["sipp_ms_per_call"], 2), "load": med(lambda s: s["load"], 2),
            "node_ms_best": med(node_ms, 0), "kam_ms_best": med(lambda s: s["kam_ms_per_call"], 0),
            "pg_ms_best": med(lambda s: s["pg_ms_per_call"], 0),
        }
        summary[n] = m
        print(f"median of {len(rows)} run(s): highest sustained {fmt(m['held'], 0)}/s "
              f"({fmt(m['held_completed'], 0)} completed/s); no failed call up to {fmt(m['rate'], 0)}/s offered, "
              f"most completed {fmt(m['completed'], 0)}/s; at {ref}/s CPU per call: node "
              f"{fmt(m['node_ms'], 3)} ms (mean of the nodes), Kamailio {fmt(m['kam_ms'], 3)} ms, "
              f"PostgreSQL {fmt(m['pg_ms'], 3)} ms, SIPp {fmt(m['sipp_ms'], 3)} ms, load "
              f"{fmt(m['load'], 2)}; at the highest rate without a failure: node "
              f"{fmt(m['node_ms_best'], 3)} ms, Kamailio {fmt(m['kam_ms_best'], 3)} ms, PostgreSQL "
              f"{fmt(m['pg_ms_best'], 3)} ms")
    a, b = summary.get(1), summary.get(2)
    if a and b and a["completed"] and b["completed"]:
        print(f"2 nodes / 1 node: most completed calls/s x{b['completed'] / a['completed']:.2f}"
              + (f", highest sustained rate x{b['held'] / a['held']:.2f}" if a["held"] and b["held"] else "")
              + (f", CPU per call per node at {ref}/s x{b['node_ms'] / a['node_ms']:.2f}"
                 if a["node_ms"] and b["node_ms"] else ""))
PY

# A node's counter or gauge from its /metrics (0 when it does not answer).
metric() { curl -s --max-time 2 "http://$1/metrics" | awk -v k="$2" '$1 == k {print $2; f=1} END {if (!f) print 0}'; }

# One run of one case: $1 nodes, $2 the run's number. Appends a JSON line per step.
run_case() {
    local n=$1 r=$2
    local lines
    # A cluster that does not start (cluster.sh says why) skips this run; the others go on.
    if ! lines=$("$ROOT/scripts/cluster.sh" up "$n" "$DEPLOY"); then
        echo "  the cluster did not start: run $r of $n node(s) skipped"
        return 0
    fi
    echo "$lines" | sed 's/^/  /'
    local https=() pids=() l
    while read -r l; do
        case "$l" in node*) https+=("$(echo "$l" | awk '{print $4}' | sed 's#http://##')")
                            pids+=("$(echo "$l" | awk '{print $6}')") ;; esac
    done <<< "$lines"
    local kam pg
    kam=$(cat "$IVR_CLUSTER_DIR/kamailio.pid")
    pg=$(head -1 "$IVR_CLUSTER_DIR/pg/data/postmaster.pid")
    # Kamailio pings the nodes: let the first pings pass.
    sleep 2
    local rate
    # Rate 0 first: the cluster idle for 3 s (heartbeats, pings, the pacers' ticks).
    for rate in 0 $RATES; do
        local calls=$(( rate * STEP )) d="$DIR/sipp/n$n-r$r-$rate"
        mkdir -p "$d"
        local a0=() a1=() h
        for h in "${https[@]}"; do a0+=("$(metric "$h" ivr_calls_answered_total)"); done
        local c0; c0=$(python3 "$DIR/tools.py" sample "${pids[@]}" "$kam" "$pg")
        local t0; t0=$(date +%s.%N)
        # SIPp's own CPU: the subshell's children's user and system time (bash's `times`).
        if [ "$rate" = 0 ]; then sleep 2; else ( cd "$d" && sipp -sf "$ROOT/bench/cluster/call.xml" -s 100 "$PROXY" -i 127.0.0.1 -p 15090 \
            -r "$rate" -m "$calls" -l $(( rate * 4 + 50 )) -key rtpport 9 -nostdin \
            -timeout $(( STEP + 40 )) -max_socket 20000 -trace_stat -stf stat.csv -fd 1 \
            > sipp.out 2>&1 &
          echo $! > "$d/sipp.pid"; wait $! || true; times > "$d/time.txt" ) &
        SIPP=$d/sipp.pid
        wait $! || true
        SIPP=""
        fi
        local t1; t1=$(date +%s.%N)
        # Calls still ending on a node (its BYE's 200 lost): wait for them, at most 10 s.
        local w
        for w in $(seq 100); do
            local busy=0
            for h in "${https[@]}"; do
                [ "$(metric "$h" ivr_calls_in_progress)" = 0 ] || busy=1
            done
            [ $busy = 0 ] && break
            sleep 0.1
        done
        sleep 1 # the last records reach PostgreSQL
        local c1; c1=$(python3 "$DIR/tools.py" sample "${pids[@]}" "$kam" "$pg")
        for h in "${https[@]}"; do a1+=("$(metric "$h" ivr_calls_answered_total)"); done
        local load; load=$(cut -d' ' -f1 /proc/loadavg)
        # Kamailio's peak shared memory so far (bytes; 0 when kamcmd does not answer).
        local shm
        shm=$(kamcmd -s "unix:$IVR_CLUSTER_DIR/kamailio.ctl" core.shmmem 2>/dev/null |
            awk '$1 == "max_used:" {print $2; f=1} END {if (!f) print 0}')
        local step
        step=$(python3 - "$n" "$r" "$rate" "$calls" "$t0" "$t1" "$c0" "$c1" "${a0[*]}" "${a1[*]}" \
            "$load" "$d" "$(getconf CLK_TCK)" "$shm" <<'PY'
import csv, json, sys
n, r, rate, calls = map(int, sys.argv[1:5])
t0, t1 = float(sys.argv[5]), float(sys.argv[6])
c0, c1 = json.loads(sys.argv[7]), json.loads(sys.argv[8])
a0, a1 = [int(x) for x in sys.argv[9].split()], [int(x) for x in sys.argv[10].split()]
load, d, hz = float(sys.argv[11]), sys.argv[12], float(sys.argv[13])
shm_mb = int(sys.argv[14] or 0) / 2**20
ok = failed = 0
try:
    rows = list(csv.reader(open(f"{d}/stat.csv"), delimiter=";"))
    last = dict(zip(rows[0], rows[-1]))
    ok, failed = int(last["SuccessfulCall(C)"]), int(last["FailedCall(C)"])
except (OSError, IndexError, KeyError, ValueError):
    pass
failed = max(failed, calls - ok)  # calls SIPp never finished (its global timeout) failed too
try:
    # `times`: the shell's user and system time, then its children's ("0m1.234s 0m0.056s").
    def secs(t):
        m, s = t.rstrip("s").split("m")
        return 60 * float(m) + float(s)
    u, s = open(f"{d}/time.txt").read().splitlines()[1].split()
    sipp_s = secs(u) + secs(s)
except (OSError, ValueError, IndexError):
    sipp_s = None
wall = t1 - t0
per_node = [b - a for a, b in zip(a0, a1)]
cpu = [(b - a) / hz for a, b in zip(c0[:-2], c1[:-2])]
busy = (c1[-2] - c0[-2]) / max(c1[-1] - c0[-1], 1)
node_cpu, kam_cpu, pg_cpu = cpu[:n], cpu[n], cpu[n + 1]
ms = lambda s, k: 1000 * s / k if k else None
step = {
    "nodes": n, "run": r, "rate": rate, "calls": calls, "ok": ok, "failed": failed,
    "wall_s": round(wall, 2), "completed_per_s": ok / wall if wall > 0 else 0,
    "per_node_calls": per_node, "node_cpu_s": [round(x, 2) for x in node_cpu],
    "node_ms_per_call": [ms(c, k) for c, k in zip(node_cpu, per_node)],
    "kam_cpu_s": round(kam_cpu, 2), "kam_ms_per_call": ms(kam_cpu, ok),
    "pg_cpu_s": round(pg_cpu, 2), "pg_ms_per_call": ms(pg_cpu, ok),
    "sipp_cpu_s": sipp_s, "sipp_ms_per_call": ms(sipp_s, ok) if sipp_s is not None else None,
    "load": load, "kam_shm_peak_mb": round(shm_mb, 1), "machine_busy": round(busy, 3),
}
# Stepping stops at a failed call, or when fewer than half the offered calls/s completed.
step["stop"] = rate > 0 and (failed > 0 or step["completed_per_s"] < 0.5 * rate)
print(json.dumps(step))
PY
)
        echo "$step" >> "$DIR/results.jsonl"
        python3 - "$step" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
f = lambda x: "-" if x is None else f"{x:.3f}"
print(f"  {s['rate']:>5}/s: {s['ok']} ok, {s['failed']} failed, {s['completed_per_s']:.0f} completed/s "
      f"in {s['wall_s']} s; calls per node {s['per_node_calls']}, CPU per call per node "
      f"{[f(x) for x in s['node_ms_per_call']]} ms (CPU {s['node_cpu_s']} s); Kamailio "
      f"{f(s['kam_ms_per_call'])} ms, PostgreSQL {f(s['pg_ms_per_call'])} ms, SIPp "
      f"{f(s['sipp_ms_per_call'])} ms per call; Kamailio's shared memory peak "
      f"{s['kam_shm_peak_mb']} MB; the machine {100 * s['machine_busy']:.0f} % busy, load {s['load']}"
      + ("  <- failed calls" if s["failed"] else ""))
PY
        if ! python3 -c 'import json,sys; sys.exit(1 if json.loads(sys.argv[1])["stop"] else 0)' "$step"; then
            break
        fi
    done
    # The calls' records in the shared database, against what the nodes answered.
    if command -v psql >/dev/null; then
        echo "  call rows in PostgreSQL: $(psql "$(cat "$IVR_CLUSTER_DIR/database")" -Atc 'SELECT count(*) FROM calls' 2>/dev/null || echo '?')"
    fi
    "$ROOT/scripts/cluster.sh" down >/dev/null
}

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "steps of $STEP s at $RATES calls/s; $RUNS run(s) of each case: $NODES node(s)"
for r in $(seq "$RUNS"); do
    for n in $NODES; do
        echo "== $n node(s), run $r ($(date -u +%H:%M:%S) UTC)"
        run_case "$n" "$r"
    done
done
echo
python3 "$DIR/tools.py" report "$DIR/results.jsonl" "$REF"
if [ -n "$SMOKE" ]; then
    # The smoke test's check: every call of the lowest rate completed in every case, and with
    # 2 nodes both answered calls.
    python3 - "$DIR/results.jsonl" <<'PY'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l)["rate"] > 0]
first = [s for s in steps if s["rate"] == min(x["rate"] for x in steps)]
bad = [s for s in first if s["failed"] or s["ok"] != s["calls"]]
two = [s for s in first if s["nodes"] == 2]
if bad or any(min(s["per_node_calls"]) == 0 for s in two) or not first:
    print("smoke: FAILED", file=sys.stderr); sys.exit(1)
print("smoke: ok")
PY
fi
