#!/usr/bin/env bash
# benches/cores.sh [--quick] [--threads N]: wsreactor on several reactors.
#
# Without --threads (any machine with 2 CPUs or more; servers pinned to
# BENCH_SERVER_CPU, default 0, the generator to BENCH_CLIENT_CPU, default 1):
#
#   a. CPU per echo at equal offered load (open loop, `bench --rate`):
#      `wsreactor echo --threads 2` against `--threads 1`, 100 connections
#      x 20 B at 60,000 msg/s, paired per repetition (the two servers run
#      seconds apart). Both reactors of the 2-thread server share the one
#      server CPU here, so this measures what the machinery costs (inbox
#      checks, per-reactor polls and wake-ups), not the scaling.
#   b. CPU per delivery, cross-reactor against same-reactor fan-out:
#      `wsreactor broadcast --threads 2` (connections on both reactors,
#      every publish of topic "all" sequenced by its owner reactor and
#      handed to the other) against `--threads 1` (every delivery on one
#      reactor), 1,000 connections x 20 B, one publisher at 150 broadcasts/s
#      (150,000 deliveries/s), open loop, paired per repetition.
#   c. Connection spread: 1,000 and 10,000 idle connections (from 10
#      loopback source addresses) to `echo --threads 2`, with
#      `--accept reuseport` and `--accept handoff`; the WebSocket
#      connections open on each reactor, from `/metrics`.
#
# With --threads N (needs 2N CPUs): the scaling curve. For T = 1, 2, 4, ...,
# N: `wsreactor echo --threads T` pinned to CPUs 0..T-1, and N closed-loop
# generators (`wsreactor bench`, 100 connections x 20 B each) pinned to
# CPUs N..2N-1, so the generators never share the servers' CPUs. Reports
# msg/s in all, the scaling efficiency (msg/s / (T x msg/s at T = 1)) and
# server CPU per echo. (benches/compare.sh --threads N runs this.)
#
# Writes benches/results/<date>-cores.md (or -scaling.md) and the raw runs
# as .jsonl. --quick: fewer, shorter repetitions. BENCH_PARTS: which of
# a, b, c to run (default abc). Loopback only; ports BENCH_PORT_BASE+1..+3
# (default 19400).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0
THREADS=
usage() { echo "usage: $0 [--quick] [--threads N]" >&2; exit 2; }
while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --threads) THREADS=${2:-}; shift || true
      [[ $THREADS =~ ^[1-9][0-9]*$ ]] || usage ;;
    -h|--help) sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) usage ;;
  esac
  shift
done

if ((QUICK)); then REPS=${BENCH_REPS:-2}; DURATION=${BENCH_DURATION:-2}; WARMUP=${BENCH_WARMUP:-0.5}
else REPS=${BENCH_REPS:-5}; DURATION=${BENCH_DURATION:-3}; WARMUP=${BENCH_WARMUP:-1}; fi
PORT_BASE=${BENCH_PORT_BASE:-19400}
PARTS=${BENCH_PARTS:-abc}
SCPU=${BENCH_SERVER_CPU:-0}
CCPU=${BENCH_CLIENT_CPU:-1}
NCPU=$(nproc)
if [[ -n $THREADS ]] && ((NCPU < 2 * THREADS)); then
  echo "cores.sh: --threads $THREADS needs $((2 * THREADS)) CPUs (servers on 0..$((THREADS - 1)), generators on the rest); this machine has $NCPU" >&2
  exit 1
fi
((NCPU >= 2)) || { echo "cores.sh: needs 2 CPUs" >&2; exit 1; }

echo "== building (release)" >&2
cargo build --release --features loadgen --bin wsreactor >&2
cargo build --release --manifest-path benches/peers/Cargo.toml --bin idle-conns >&2
target_of() {
  cargo metadata --format-version 1 --no-deps "$@" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'
}
WSR=$(target_of)/release/wsreactor
IDLE=$(target_of --manifest-path benches/peers/Cargo.toml)/release/idle-conns
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

STAMP=$(date -u +%Y-%m-%d)
OUT=$ROOT/benches/results
mkdir -p "$OUT"
NAME=cores; [[ -n $THREADS ]] && NAME=scaling
((QUICK)) && NAME=$NAME-quick
[[ -z $THREADS && $PARTS != abc ]] && NAME=$NAME-$PARTS
BASE=$OUT/$STAMP-$NAME
RAW=$BASE.jsonl
REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || REV="$REV+uncommitted changes"
echo "{\"kind\":\"meta\",\"revision\":\"$REV\",\"started\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"loadavg_start\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"cpus\":$NCPU}" > "$RAW"
LOGDIR=$(mktemp -d /tmp/wsreactor-cores.XXXXXX)

port_busy() {
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2).close()" 2>/dev/null
}
SERVER_PID=
start() {  # cpus port command...
  local cpus=$1 port=$2; shift 2
  if port_busy "$port"; then echo "cores.sh: port $port is in use (set BENCH_PORT_BASE)" >&2; exit 1; fi
  env RUST_LOG=warn taskset -c "$cpus" "$@" >>"$LOGDIR/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 50); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    port_busy "$port" && return 0
    sleep 0.1
  done
  echo "cores.sh: the server did not start (see $LOGDIR/server.log)" >&2; exit 1
}
stop() {
  [[ -n $SERVER_PID ]] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
IDLE_PID=
GEN_PIDS=()
cleanup() {
  [[ -n $IDLE_PID ]] && kill "$IDLE_PID" 2>/dev/null
  for p in "${GEN_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  stop
}
trap cleanup EXIT
trap 'exit 130' INT TERM

record() {  # kind threads rep json
  echo "{\"kind\":\"$1\",\"threads\":$2,\"rep\":$3,\"run\":$4}" >> "$RAW"
}

if [[ -z $THREADS ]]; then
  P_ECHO=$((PORT_BASE + 1)); P_FAN=$((PORT_BASE + 2)); P_SPREAD=$((PORT_BASE + 3))
  echo "== a. CPU per echo at equal load, b. CPU per delivery: $REPS repetition(s) of ${WARMUP}s + ${DURATION}s; logs in $LOGDIR" >&2
  for ((rep = 0; rep < REPS; rep++)); do
    order=(1 2); ((rep % 2)) && order=(2 1)
    # echo: the default scheduler, then SCHED_BATCH (no wake-up preemption
    # between the two reactors sharing the CPU; see the report).
    kinds=(); [[ $PARTS == *a* ]] && kinds=(echo echo-batch)
    for kind in ${kinds[@]+"${kinds[@]}"}; do
      sched=(); [[ $kind == echo-batch ]] && sched=(chrt --batch 0)
      for t in "${order[@]}"; do
        start "$SCPU" "$P_ECHO" ${sched[@]+"${sched[@]}"} "$WSR" echo --threads "$t" --addr "127.0.0.1:$P_ECHO"
        if json=$(taskset -c "$CCPU" "$WSR" bench --url "ws://127.0.0.1:$P_ECHO/" --connections 100 --size 20 \
              --rate 60000 --duration "$DURATION" --warmup "$WARMUP" --server-pid "$SERVER_PID" --json -q 2>>"$LOGDIR/bench.log"); then
          record "$kind" "$t" "$rep" "$json"
          python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("   %-10s --threads %s: %8.0f msg/s  server CPU %5.1f%%  %.3f us/echo" % (sys.argv[3], sys.argv[2], r["msg_per_s"], r["server_cpu_pct"], r["server_cpu_us_per_msg"]))' "$json" "$t" "$kind" >&2
        else echo "   $kind --threads $t: FAILED (see $LOGDIR/bench.log)" >&2; fi
        stop
      done
    done
    [[ $PARTS == *b* ]] || continue
    for t in "${order[@]}"; do
      start "$SCPU" "$P_FAN" "$WSR" broadcast --threads "$t" --accept handoff --addr "127.0.0.1:$P_FAN"
      if json=$(taskset -c "$CCPU" "$WSR" bench --fanout --url "ws://127.0.0.1:$P_FAN/" --connections 1000 --size 20 \
            --publishers 1 --rate 150 --sources 10 --duration "$DURATION" --warmup "$WARMUP" --server-pid "$SERVER_PID" --json -q 2>>"$LOGDIR/bench.log"); then
        record fanout "$t" "$rep" "$json"
        python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("   broadcast --threads %s: %8.0f deliveries/s  server CPU %5.1f%%  %.4f us/delivery" % (sys.argv[2], r["msg_per_s"], r["server_cpu_pct"], r["server_cpu_us_per_msg"]))' "$json" "$t" >&2
      else echo "   broadcast --threads $t: FAILED (see $LOGDIR/bench.log)" >&2; fi
      stop
    done
  done

  spread_reps=3; ((QUICK)) && spread_reps=1
  [[ $PARTS == *c* ]] || spread_reps=0
  ((spread_reps)) && echo "== c. connection spread over 2 reactors" >&2
  for count in 1000 10000; do
    for accept in reuseport handoff; do
      for ((rep = 0; rep < spread_reps; rep++)); do
        start "$SCPU" "$P_SPREAD" "$WSR" echo --threads 2 --accept "$accept" --max-connections 20000 \
          --ping-interval 0 --addr "127.0.0.1:$P_SPREAD"
        : > "$LOGDIR/idle.out"
        taskset -c "$CCPU" "$IDLE" --addr "127.0.0.1:$P_SPREAD" --count "$count" --sources 10 --hold 60 \
          >"$LOGDIR/idle.out" 2>>"$LOGDIR/idle.log" &
        IDLE_PID=$!
        ok=0
        for _ in $(seq 600); do
          grep -q '^ready' "$LOGDIR/idle.out" && { ok=1; break; }
          kill -0 "$IDLE_PID" 2>/dev/null || break
          sleep 0.1
        done
        if ((ok)); then
          sleep 0.5
          per=$(python3 - "$P_SPREAD" <<'PY'
import re, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
body = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    body += b
per = {int(m.group(1)): int(m.group(2)) for m in re.finditer(rb'wsreactor_reactor_connections_open\{reactor="(\d+)"\} (\d+)', body)}
print(",".join(str(per[k]) for k in sorted(per)))
PY
)
          echo "{\"kind\":\"spread\",\"accept\":\"$accept\",\"count\":$count,\"rep\":$rep,\"per_reactor\":[$per]}" >> "$RAW"
          echo "   $count connections, $accept: per reactor $per" >&2
        else
          echo "   $count connections, $accept: FAILED to open (see $LOGDIR/idle.log)" >&2
        fi
        kill "$IDLE_PID" 2>/dev/null || true
        wait "$IDLE_PID" 2>/dev/null || true
        IDLE_PID=
        stop
      done
    done
  done
else
  P=$((PORT_BASE + 1))
  GEN_CPUS=()
  for ((i = THREADS; i < 2 * THREADS; i++)); do GEN_CPUS+=("$i"); done
  counts=(); t=1
  while ((t < THREADS)); do counts+=("$t"); t=$((t * 2)); done
  counts+=("$THREADS")
  echo "== scaling: --threads ${counts[*]}, servers on CPUs 0..$((THREADS - 1)), ${#GEN_CPUS[@]} generators on CPUs ${GEN_CPUS[*]}; $REPS repetition(s)" >&2
  for ((rep = 0; rep < REPS; rep++)); do
    for t in "${counts[@]}"; do
      start "0-$((t - 1))" "$P" "$WSR" echo --threads "$t" --addr "127.0.0.1:$P"
      GEN_PIDS=()
      for i in "${!GEN_CPUS[@]}"; do
        taskset -c "${GEN_CPUS[$i]}" "$WSR" bench --url "ws://127.0.0.1:$P/" --connections 100 --size 20 \
          --duration "$DURATION" --warmup "$WARMUP" --server-pid "$SERVER_PID" --json -q \
          >"$LOGDIR/gen-$i.json" 2>>"$LOGDIR/bench.log" &
        GEN_PIDS+=($!)
      done
      failed=0
      for p in "${GEN_PIDS[@]}"; do wait "$p" || failed=1; done
      GEN_PIDS=()
      if ((failed)); then
        echo "   --threads $t: a generator FAILED (see $LOGDIR/bench.log)" >&2
      else
        json=$(python3 - "$LOGDIR" "${#GEN_CPUS[@]}" <<'PY'
import json, sys
runs = [json.load(open(f"{sys.argv[1]}/gen-{i}.json")) for i in range(int(sys.argv[2]))]
total = sum(r["msg_per_s"] for r in runs)
# The generators measure the same seconds: the server's CPU over one of
# them, per echo of all of them.
cpu = runs[0]["server_cpu_pct"]
print(json.dumps({"msg_per_s": total, "server_cpu_pct": cpu,
                  "server_cpu_us_per_msg": cpu / 100 * 1e6 / total if total else None,
                  "generators": [r["msg_per_s"] for r in runs]}))
PY
)
        record scaling "$t" "$rep" "$json"
        python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("   --threads %s: %10.0f msg/s  server CPU %6.1f%%  %.3f us/echo" % (sys.argv[2], r["msg_per_s"], r["server_cpu_pct"], r["server_cpu_us_per_msg"]))' "$json" "$t" >&2
      fi
      stop
    done
  done
fi
echo "{\"kind\":\"meta_end\",\"finished\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"loadavg_end\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >> "$RAW"

# ---- report -------------------------------------------------------------------
MACHINE=$(lscpu | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); m=$2} END {print m}')
python3 - "$RAW" "$BASE" "$MACHINE" "$NCPU" "$REPS" "$DURATION" "$WARMUP" <<'PY'
import json, os, statistics, sys
raw, base, machine, ncpu, reps, dur, warm = sys.argv[1:8]
rows = [json.loads(l) for l in open(raw) if l.strip()]
meta = rows[0]
end = [r for r in rows if r["kind"] == "meta_end"]
out = []
w = out.append
def med(xs):
    return statistics.median(xs) if xs else None
def span(xs, f="{:.3f}"):
    return "-" if not xs else (f + " (" + f + "-" + f + ")").format(med(xs), min(xs), max(xs))
def paired(kind, field):
    by = {}
    for r in rows:
        if r["kind"] == kind and r.get("run"):
            by.setdefault(r["rep"], {})[r["threads"]] = r["run"][field]
    return [v[2] / v[1] for v in by.values() if 1 in v and 2 in v and v[1]]
load = f"load average {meta['loadavg_start']} at the start" + (f", {end[-1]['loadavg_end']} at the end" if end else "")
w(f"# wsreactor on several reactors: {os.path.basename(base)}\n")
w(f"Machine: {ncpu} x {machine}. Revision `{meta['revision']}`, started {meta['started']}; {load}. "
  f"{reps} repetition(s) of {warm} s warm-up + {dur} s measured. The machine is shared and noisy: "
  "figures move by several per cent between runs; the paired ratios (runs seconds apart) are the "
  "measurement, with their min-max.\n")
if any(r["kind"] == "echo" for r in rows):
    w("## a. CPU per echo at equal offered load (100 x 20 B at 60,000 msg/s, open loop)\n")
    w("Both servers pinned to one CPU (the 2-reactor server's two threads share it), the generator to the other.\n")
    w("| server | msg/s | server CPU | CPU per echo (us) | p50 us | p99 us |")
    w("|---|---|---|---|---|---|")
    for t in (1, 2):
        rs = [r["run"] for r in rows if r["kind"] == "echo" and r["threads"] == t and r.get("run")]
        if rs:
            w(f"| echo --threads {t} | {med([r['msg_per_s'] for r in rs]):,.0f} | {med([r['server_cpu_pct'] for r in rs]):.1f}% | "
              f"{span([r['server_cpu_us_per_msg'] for r in rs])} | {med([r['latency_us']['p50'] for r in rs]):.1f} | "
              f"{med([r['latency_us']['p99'] for r in rs]):.1f} |")
    w(f"\nPaired ratio, CPU per echo of 2 reactors / 1 reactor (median, min-max): **{span(paired('echo', 'server_cpu_us_per_msg'))}** (target: <= 1.02).\n")
if any(r["kind"] == "echo-batch" for r in rows):
    w("### a'. The same under SCHED_BATCH (`chrt --batch 0`)\n")
    w("Two reactors sharing one CPU preempt each other at every wake-up under the default scheduler, so each "
      "wakes for one or two messages where a lone reactor handles a batch: the CPU per echo above is mostly "
      "that ping-pong, which two reactors on two cores do not have. SCHED_BATCH turns wake-up preemption "
      "off for the server (both servers alike); what remains is the reactors' own cost. Latency is not "
      "comparable to the default runs (the batches wait for the scheduler's tick).\n")
    w("| server | msg/s | server CPU | CPU per echo (us) |")
    w("|---|---|---|---|")
    for t in (1, 2):
        rs = [r["run"] for r in rows if r["kind"] == "echo-batch" and r["threads"] == t and r.get("run")]
        if rs:
            w(f"| echo --threads {t} | {med([r['msg_per_s'] for r in rs]):,.0f} | {med([r['server_cpu_pct'] for r in rs]):.1f}% | "
              f"{span([r['server_cpu_us_per_msg'] for r in rs])} |")
    w(f"\nPaired ratio, CPU per echo of 2 reactors / 1 reactor (median, min-max): **{span(paired('echo-batch', 'server_cpu_us_per_msg'))}**.\n")
if any(r["kind"] == "fanout" for r in rows):
    w("## b. CPU per delivery: cross-reactor against same-reactor fan-out (1,000 x 20 B, 150 broadcasts/s, open loop)\n")
    w("`broadcast --threads 2 --accept handoff`: connections alternate between the reactors, so every "
      "publish is delivered on both (and routed through the owner of topic \"all\" when the publisher "
      "sits on the other reactor); `--threads 1`: every delivery on the one reactor.\n")
    w("| server | deliveries/s | server CPU | CPU per delivery (us) | p50 us | p99 us |")
    w("|---|---|---|---|---|---|")
    for t in (1, 2):
        rs = [r["run"] for r in rows if r["kind"] == "fanout" and r["threads"] == t and r.get("run")]
        if rs:
            w(f"| broadcast --threads {t} | {med([r['msg_per_s'] for r in rs]):,.0f} | {med([r['server_cpu_pct'] for r in rs]):.1f}% | "
              f"{span([r['server_cpu_us_per_msg'] for r in rs], '{:.4f}')} | {med([r['latency_us']['p50'] for r in rs]):.1f} | "
              f"{med([r['latency_us']['p99'] for r in rs]):.1f} |")
    w(f"\nPaired ratio, CPU per delivery cross-reactor / same-reactor (median, min-max): **{span(paired('fanout', 'server_cpu_us_per_msg'))}** (target: <= 1.10).\n")
sp = [r for r in rows if r["kind"] == "spread"]
if sp:
    w("## c. Connection spread over 2 reactors\n")
    w("WebSocket connections open on each reactor (from `/metrics`), idle connections from 10 loopback source addresses. "
      "Deviation: the largest reactor's share over an even share, minus 1.\n")
    w("| connections | accept | per reactor (each run) | worst deviation from even |")
    w("|---|---|---|---|")
    for count in sorted({r["count"] for r in sp}):
        for accept in ("reuseport", "handoff"):
            rs = [r["per_reactor"] for r in sp if r["count"] == count and r["accept"] == accept and r["per_reactor"]]
            if not rs:
                continue
            dev = max(max(p) / (sum(p) / len(p)) - 1 for p in rs)
            w(f"| {count:,} | {accept} | " + "; ".join("/".join(map(str, p)) for p in rs) + f" | {dev * 100:+.1f}% |")
    w("")
sc = [r for r in rows if r["kind"] == "scaling" and r.get("run")]
if sc:
    w("## Scaling (closed loop, 100 connections x 20 B per generator)\n")
    w("| threads | msg/s (median, min-max) | efficiency vs 1 thread | server CPU | CPU per echo (us) |")
    w("|---|---|---|---|---|")
    base1 = med([r["run"]["msg_per_s"] for r in sc if r["threads"] == 1])
    for t in sorted({r["threads"] for r in sc}):
        rs = [r["run"] for r in sc if r["threads"] == t]
        m = med([r["msg_per_s"] for r in rs])
        eff = "-" if not base1 else f"{m / (t * base1):.2f}"
        w(f"| {t} | {span([r['msg_per_s'] for r in rs], '{:,.0f}')} | {eff} | {med([r['server_cpu_pct'] for r in rs]):.0f}% | "
          f"{med([r['server_cpu_us_per_msg'] for r in rs]):.3f} |")
    w("")
w(f"Raw data: `{os.path.basename(base)}.jsonl`.\n")
open(base + ".md", "w").write("\n".join(out))
print(base + ".md")
PY
echo "== wrote $BASE.md, $RAW" >&2
