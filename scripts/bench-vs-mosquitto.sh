#!/usr/bin/env bash
# Benchmarks the myqtt listener against mosquitto in one run, with the same
# load generator (myqtt-bench), and prints both figures and their ratio.
#
# Each case starts a fresh broker pinned to core 0 (taskset -c 0) and runs
# myqtt-bench pinned to core 1, first against mosquitto, then against the
# myqtt listener, so both see the same machine load. The cases are those of
# the engine issue's "Performance" section; doc/benchmarks.md explains them.
#
# usage: scripts/bench-vs-mosquitto.sh [--quick] [--idle N] [--duration S]
#            [--mosquitto-only] [--nice N] [--no-build] [--keep]
#   --quick           short runs (1 s, 1k idle connections): a smoke test
#   --idle N          idle connections for the RSS case (default 10000)
#   --duration S      measured seconds per throughput case (default 10)
#   --mosquitto-only  skip the myqtt listener
#   --nice N          run brokers and bench at this nice level (negative
#                     needs root; with sched_autogroup it only weighs within
#                     this session, see doc/benchmarks.md)
#   --no-build        use the release binaries already built
#   --keep            keep the scratch directory (logs, JSON lines)
#
# Exit status: 0 when every case ran (figures below a target are reported,
# not failures), 1 when a run failed (a QoS 1 loss, a broker that did not
# start, ...), 2 for a bad command line.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
IDLE=10000
IDLE_SET=0
DURATION=10
WARMUP=2
MYQTT=1
NICE=""
BUILD=1
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --idle) IDLE="$2"; IDLE_SET=1; shift ;;
    --duration) DURATION="$2"; shift ;;
    --mosquitto-only) MYQTT=0 ;;
    --nice) NICE="$2"; shift ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" -eq 1 ]; then
  DURATION=1
  WARMUP=0.5
  [ "$IDLE_SET" -eq 1 ] || IDLE=1000
fi

export PATH="$PATH:/usr/sbin"
for tool in mosquitto taskset python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing $tool (Debian: apt-get install mosquitto util-linux python3)" >&2; exit 1; }
done

# Two cores: the broker on 0, the bench on 1. With fewer, run unpinned.
if [ "$(nproc)" -ge 2 ]; then
  PIN_BROKER=(taskset -c 0)
  PIN_BENCH=(taskset -c 1)
else
  echo "warning: fewer than 2 cores: broker and bench are not pinned" >&2
  PIN_BROKER=()
  PIN_BENCH=()
fi
PRIO=()
[ -n "$NICE" ] && PRIO=(nice -n "$NICE")

# File descriptors: the idle case needs one per connection in both the
# broker and the bench; raise the soft limit to the hard one (children
# inherit it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/myqtt-bench.XXXXXX")
BROKER_PID=""
BENCH_PID=""
cleanup() {
  local rc=$?
  local pid
  for pid in $BENCH_PID $BROKER_PID; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$KEEP" -eq 1 ]; then
    echo "scratch directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n==> %s\n' "$*" >&2; }

BENCH=target/release/myqtt-bench
LISTENER=target/release/examples/listener
if [ "$BUILD" -eq 1 ]; then
  step "building release binaries"
  cargo build --release -p myqtt-bench
  if [ "$MYQTT" -eq 1 ]; then
    if [ -f myqtt-core/examples/listener.rs ]; then
      cargo build --release -p myqtt-core --example listener
    else
      echo "myqtt-core/examples/listener.rs does not exist yet: mosquitto only" >&2
      MYQTT=0
    fi
  fi
fi
[ -x "$BENCH" ] || { echo "$BENCH missing (run without --no-build)" >&2; exit 1; }
if [ "$MYQTT" -eq 1 ] && [ ! -x "$LISTENER" ]; then
  echo "$LISTENER missing: mosquitto only" >&2
  MYQTT=0
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts mosquitto on a free loopback port; sets BROKER_PID and PORT.
start_mosquitto() {
  local log="$WORK/$CASE.mosquitto.log"
  PORT=$(free_port)
  cat >"$WORK/$CASE.mosquitto.conf" <<EOF
listener $PORT 127.0.0.1
allow_anonymous true
persistence false
# Queue instead of dropping: a dropped message would count as a loss.
max_queued_messages 1000000
max_inflight_messages 0
log_dest file $log
log_type error
log_type warning
EOF
  "${PRIO[@]}" "${PIN_BROKER[@]}" mosquitto -c "$WORK/$CASE.mosquitto.conf" >"$log.out" 2>&1 &
  BROKER_PID=$!
  local i
  for i in $(seq 1 200); do
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
      echo "mosquitto exited: $(cat "$log" "$log.out" 2>/dev/null)" >&2
      BROKER_PID=""
      return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  echo "mosquitto did not listen on $PORT within 10 s" >&2
  return 1
}

# Starts the myqtt listener on a port it picks; sets BROKER_PID and PORT
# from its "listening on HOST:PORT" line. One log per case: the line must
# not be read from an earlier listener's log.
start_myqtt() {
  local log="$WORK/$CASE.listener.log"
  "${PRIO[@]}" "${PIN_BROKER[@]}" "$LISTENER" --host 127.0.0.1 --port 0 >"$log" 2>&1 &
  BROKER_PID=$!
  local i line
  for i in $(seq 1 200); do
    line=$(grep -m1 '^listening on ' "$log" 2>/dev/null || true)
    if [ -n "$line" ]; then
      PORT=${line##*:}
      return 0
    fi
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
      echo "the listener exited: $(cat "$log")" >&2
      BROKER_PID=""
      return 1
    fi
    sleep 0.05
  done
  echo "the listener printed no 'listening on' line within 10 s" >&2
  return 1
}

stop_broker() {
  if [ -n "$BROKER_PID" ]; then
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
  fi
}

FAILED=0
CASE=""
# run_case NAME BROKER BENCH-ARGS...: a fresh broker, one bench run, its
# JSON line kept in $WORK/NAME.BROKER.json.
run_case() {
  local name=$1 broker=$2
  shift 2
  CASE=$name
  local out="$WORK/$name.$broker"
  if ! "start_$broker"; then
    echo "{\"error\": \"$broker did not start\"}" >"$out.json"
    FAILED=1
    return
  fi
  step "$name on $broker (port $PORT, pid $BROKER_PID): myqtt-bench $*"
  local rc=0
  # In the background and waited for, so a signal to this script stops it
  # at once (through the EXIT trap).
  "${PRIO[@]}" "${PIN_BENCH[@]}" "$BENCH" --host 127.0.0.1 --port "$PORT" \
    --broker-pid "$BROKER_PID" --json "$@" >"$out.txt" 2>"$out.err" &
  BENCH_PID=$!
  wait "$BENCH_PID" || rc=$?
  BENCH_PID=""
  grep -v '^{' "$out.txt" >&2 || true
  cat "$out.err" >&2
  if ! grep '^{' "$out.txt" >"$out.json"; then
    echo "{\"error\": \"exit status $rc\"}" >"$out.json"
  fi
  [ "$rc" -eq 0 ] || FAILED=1
  stop_broker
}

BROKERS=(mosquitto)
[ "$MYQTT" -eq 1 ] && BROKERS+=(myqtt)
LOAD=(--duration "$DURATION" --warmup "$WARMUP")
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

for b in "${BROKERS[@]}"; do run_case q0-1to1 "$b" "${LOAD[@]}" --qos 0 --shape 1to1; done
for b in "${BROKERS[@]}"; do run_case q1-1to1 "$b" "${LOAD[@]}" --qos 1 --shape 1to1; done
for b in "${BROKERS[@]}"; do run_case q0-1to16 "$b" "${LOAD[@]}" --qos 0 --shape 1toN --subscribers 16; done
for b in "${BROKERS[@]}"; do run_case q1-1to16 "$b" "${LOAD[@]}" --qos 1 --shape 1toN --subscribers 16; done
for b in "${BROKERS[@]}"; do run_case lat-10k "$b" "${LOAD[@]}" --qos 0 --shape 1to1 --rate 10000; done
if [ "$IDLE" -gt 0 ]; then
  if [ "$FD_LIMIT" != unlimited ] && [ "$FD_LIMIT" -lt $((IDLE + 100)) ]; then
    echo "idle case skipped: $IDLE connections need an open-file limit above $((IDLE + 100)), the hard limit is $FD_LIMIT (raise it with ulimit -Hn as root, or pass --idle N)" >&2
    FAILED=1
  else
    for b in "${BROKERS[@]}"; do run_case idle "$b" --idle "$IDLE"; done
  fi
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

step "results"
python3 - "$WORK" "$MYQTT" "$IDLE" <<'PY'
import json, os, sys

work, with_myqtt, idle = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
# A load generator above this share of its core is near its own ceiling.
BENCH_BOUND = 75.0

def load(case, broker):
    try:
        with open(os.path.join(work, f"{case}.{broker}.json")) as f:
            return json.loads(f.readline())
    except (OSError, ValueError):
        return None

def ok(r):
    return r is not None and "error" not in r

def num(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)

def us_per_msg(r):
    """Broker CPU time per delivery, in microseconds."""
    if not ok(r) or not r.get("broker_cpu") or not r.get("delivery_rate"):
        return None
    return r["broker_cpu"] / 100.0 / r["delivery_rate"] * 1e6

cases = [
    ("q0-1to1", "QoS 0, 1->1, 64 B", "rate"),
    ("q1-1to1", "QoS 1, 1->1, 64 B", "rate"),
    ("q0-1to16", "QoS 0, 1->16, 64 B", "rate"),
    ("q1-1to16", "QoS 1, 1->16, 64 B", "rate"),
    ("lat-10k", "QoS 0, 1->1, 10k msg/s", "p50"),
    ("idle", f"idle RSS, {idle} conns", "rss"),
]
head = ["case", "mosquitto", "myqtt", "ratio", "broker us/msg", "cpu ratio",
        "bench cpu", "mosq p50/p99 us", "myqtt p50/p99 us", "target", ""]
rows = []
bench_bound = False
for key, label, kind in cases:
    m = load(key, "mosquitto")
    q = load(key, "myqtt") if with_myqtt else None
    if m is None and q is None:
        continue
    def lat(r):
        if not ok(r) or "p50_us" not in r:
            return "error" if r is not None else "-"
        return f"{num(r['p50_us'])}/{num(r['p99_us'])}"
    def flag(r):
        if not ok(r):
            return ""
        if r.get("mode") == "idle":
            return " !" if r.get("failed") else ""
        loss = r.get("lost", 0) or r.get("publish_errors", 0)
        return (" LOST" if r.get("qos", 0) > 0 else " q0-lost") if loss else ""
    if kind == "rss":
        mv = m.get("bytes_per_conn") if ok(m) else None
        qv = q.get("bytes_per_conn") if ok(q) else None
        cell = lambda r, v: (f"{v:,.0f} B/conn" if v is not None else ("error" if r else "-")) + flag(r)
        ratio = f"{qv / mv:.1f}x" if mv and qv is not None else "-"
        verdict = "" if qv is None else ("ok" if qv <= 2048 else "MISS")
        rows.append([label, cell(m, mv), cell(q, qv), ratio, "", "", "", "", "",
                     "<= 2 KiB/conn", verdict])
        continue
    mv = m.get("delivery_rate") if ok(m) else None
    qv = q.get("delivery_rate") if ok(q) else None
    ratio = f"{qv / mv:.2f}x" if mv and qv is not None else "-"
    mu, qu = us_per_msg(m), us_per_msg(q)
    per_msg = f"{num(mu, '{:.2f}')}/{num(qu, '{:.2f}')}" if mu or qu else "-"
    cpu_ratio = f"{mu / qu:.2f}x" if mu and qu else "-"
    bench = "/".join(num(r.get("bench_cpu") if ok(r) else None, "{:.0f}%") for r in (m, q) if r is not None)
    if kind == "rate":
        target = ">= 4x mosquitto"
        verdict = "" if qv is None or not mv else ("ok" if qv / mv >= 4.0 else "MISS")
        if ok(q) and (q.get("bench_cpu") or 0) >= BENCH_BOUND:
            ratio += "*"
            bench_bound = True
    else:
        target = "p50 <= 120 us"
        p50 = q.get("p50_us") if ok(q) else None
        verdict = "" if p50 is None else ("ok" if p50 <= 120 else "MISS")
    rows.append([
        label,
        (num(mv) + " /s" if mv is not None else ("error" if m else "-")) + flag(m),
        (num(qv) + " /s" if qv is not None else ("error" if q else "-")) + flag(q),
        ratio, per_msg, cpu_ratio, bench, lat(m), lat(q), target, verdict,
    ])
widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
for r in [head] + rows:
    print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
print("msgs/s: deliveries per second at the subscribers; latency: publish call to delivery;")
print("broker us/msg: broker CPU time per delivery, mosquitto/myqtt; cpu ratio: mosquitto's over myqtt's;")
print("bench cpu: the load generator's share of its core, mosquitto run/myqtt run.")
if bench_bound:
    print(f"* the load generator used {BENCH_BOUND:.0f}% or more of its core in the myqtt run: the rate")
    print("  is partly the generator's ceiling and the ratio a lower bound (see cpu ratio).")
PY
echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, load average before $LOAD_BEFORE, after $LOAD_AFTER, $(mosquitto -h 2>/dev/null | head -1), myqtt $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ "$FAILED" -ne 0 ]; then
  echo "some runs failed: see above" >&2
  exit 1
fi
