#!/usr/bin/env bash
# benches/gateway.sh [NAME]: the rooms gateway (`wsreactor serve`) under
# `wsreactor bench --gateway`; writes benches/results/<date>-gateway[-NAME].md
# and .jsonl.
#
#   (a) 1,000 members in one room, JSON and Protobuf
#   (b) 10,000 clients in 100 rooms (100 members each), JSON and Protobuf
#   (c) stepped load: 2,000 -> 10,000 clients in 100 rooms (+2,000 a step) at
#       a fixed rate, and 1,000 clients in 10 rooms with the rate stepped up
#   (d) with REDIS=1 (needs redis-server; builds with --features redis): one
#       instance against two sharing rooms through Redis, at 1,000 publishes/s
#       over 100 rooms of 10 (latency), and 1,000 members of one room with the
#       rate stepped up (deliveries/s). Redis and both instances share CPU 0.
#
# The gateway (release build, a fresh process per case) is pinned to CPU 0,
# the bench to CPU 1. The bench binds its clients to 127.0.0.2-11 (--sources)
# and raises its own descriptor limit; the server needs `ulimit -n` above the
# client count (raised here). Rates are fixed below (RATE_* variables) and
# stated in the results. DUR: seconds measured per case (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${1:-}
DUR=${DUR:-5}
RATE_A=${RATE_A:-100}     # publishes/s in the 1,000-member room
RATE_B=${RATE_B:-1000}    # publishes/s over the 100 rooms (10/s per room)
RATE_C=${RATE_C:-1000}    # (c) stepped clients: publishes/s over 100 rooms
STEP=${STEP:-4}           # (c) seconds per step
NOTE=${NOTE:-}            # a line for the results file (e.g. the machine's state)

(( $(nproc) >= 2 )) || { echo "needs 2 CPUs (server on 0, bench on 1)" >&2; exit 2; }
REDIS=${REDIS:-}
cargo build --release --features "loadgen,gateway${REDIS:+,redis}"
WSR=target/release/wsreactor
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

stamp=$(date -u +%Y-%m-%d)
out=benches/results/$stamp-gateway${NAME:+-$NAME}
jsonl=$out.jsonl
: >"$jsonl"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# case ID DESCRIPTION BENCH-ARGS...: a fresh gateway, one bench run; every
# JSON line of the run goes to the .jsonl tagged with the case.
case_() {
  local id=$1 desc=$2; shift 2
  # INSTANCES=N (with REDIS_URL): N gateways sharing rooms through Redis,
  # the bench's clients spread over them; its server CPU/RSS are the first's.
  local n=${INSTANCES:-1} urls=() pids=() p i
  for ((i = 0; i < n; i++)); do
    p=$(port)
    taskset -c 0 "$WSR" serve --addr "127.0.0.1:$p" --max-connections 200000 \
      ${REDIS_URL:+--redis "$REDIS_URL"} >/dev/null 2>&1 &
    pids+=($!)
    urls+=(--url "ws://127.0.0.1:$p/ws")
    for _ in $(seq 50); do
      (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break
      sleep 0.1
    done
  done
  local pid=${pids[0]}
  echo "== $id: $desc" >&2
  local rc=0
  taskset -c 1 "$WSR" bench --gateway "${urls[@]}" --server-pid "$pid" \
    --sources 10 --json -q "$@" >/tmp/gwbench.$$ 2>/tmp/gwbench-err.$$ || rc=$?
  python3 - "$id" "$desc" "$rc" "$*" /tmp/gwbench.$$ /tmp/gwbench-err.$$ >>"$jsonl" <<'PY'
import json, sys
case, desc, rc, args, outf, errf = sys.argv[1:7]
rc = int(rc)
err = [l.strip() for l in open(errf) if l.strip()]
lines = [json.loads(l) for l in open(outf) if l.strip()]
if not lines or not lines[-1].get("summary"):
    lines.append({"failed": True})
for o in lines:
    o.update(case=case, desc=desc, exit=rc, args=args)
    if rc and (o.get("summary") or o.get("failed")):
        o["error"] = err[-1] if err else None
    print(json.dumps(o))
PY
  tail -n 3 /tmp/gwbench-err.$$ >&2
  rm -f /tmp/gwbench.$$ /tmp/gwbench-err.$$
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  (( rc == 0 )) || echo "   $id: bench exited $rc" >&2
}

for enc in json proto; do
  case_ "a-$enc" "1,000 members in 1 room, $RATE_A publishes/s, $enc" \
    --conns 1000 --rooms 1 --rate "$RATE_A" --encoding "$enc" --duration "$DUR"
  case_ "b-$enc" "10,000 clients in 100 rooms, $RATE_B publishes/s, $enc" \
    --conns 10000 --rooms 100 --rate "$RATE_B" --encoding "$enc" --duration "$DUR"
done
case_ c-conns "2,000 -> 10,000 clients in 100 rooms (+2,000 per step), $RATE_C publishes/s, json" \
  --conns 2000 --rooms 100 --rate "$RATE_C" --step-every "$STEP" --step-conns 2000 --steps 5
case_ c-rate "1,000 clients in 10 rooms, 200 -> 1,000 publishes/s (+200 per step), json" \
  --conns 1000 --rooms 10 --rate 200 --step-every "$STEP" --step-rate 200 --steps 5

if [[ -n $REDIS ]]; then
  rp=$(port)
  taskset -c 0 redis-server --port "$rp" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
  redis_pid=$!
  trap 'kill $redis_pid 2>/dev/null || true' EXIT
  sleep 0.5
  for inst in 1 2; do
    if ((inst == 1)); then tag="1 instance"; else tag="2 instances through Redis"; fi
    ( if ((inst == 2)); then export INSTANCES=2 REDIS_URL=redis://127.0.0.1:$rp; fi
      case_ "d-lat-$inst" "1,000 clients in 100 rooms, 1000 publishes/s, json, $tag" \
        --conns 1000 --rooms 100 --rate 1000 --encoding json --duration "$DUR"
      case_ "e-rate-$inst" "1,000 members in 1 room, 100 -> 400 publishes/s (+100 per step), json, $tag" \
        --conns 1000 --rooms 1 --rate 100 --step-every "$STEP" --step-rate 100 --steps 4 --allow-errors )
  done
fi

python3 - "$jsonl" "$out.md" "$(git rev-parse --short HEAD)" "$DUR" "$NOTE" <<'PY'
import json, sys
jsonl, md, rev, dur, note = sys.argv[1:6]
rows = [json.loads(l) for l in open(jsonl)]
out = []
w = out.append
w(f"# Rooms gateway under `bench --gateway` ({rev})\n")
w("`benches/gateway.sh`: `wsreactor serve` (release, one fresh process per case) pinned to CPU 0, "
  "`wsreactor bench --gateway` pinned to CPU 1, loopback, clients from 127.0.0.2-11. "
  f"Each of (a) and (b) is one run of {dur} s after a 1 s warm-up. Deliveries/s count the "
  "messages members received and checked (seq, publisher order, loss, duplicates); latency is "
  "publish (the bench's send) to receive, over every delivery. Server waited: time the "
  "gateway's thread was runnable but another process had its CPU (from /proc/PID/schedstat).\n")
if note:
    w(note + "\n")
def f(x, d=0):
    return "n/a" if x is None else f"{x:,.{d}f}"
w("## Fixed load\n")
w("| case | deliveries/s | publishes/s | p50 us | p99 us | p99.9 us | server CPU | server waited | bench CPU | bench waited | server RSS | faults | errors | exit |")
w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for s in rows:
    if s["case"][0] not in "abd":
        continue
    if s.get("failed"):
        w(f"| {s['desc']} | failed: {s.get('error')} | | | | | | | | | | | | {s['exit']} |")
        continue
    if not s.get("summary"):
        continue
    step = [r for r in rows if r["case"] == s["case"] and "step" in r]
    cpu = step[-1]["server_cpu_pct"] if step else None
    waited = step[-1].get("server_wait_pct") if step else None
    bcpu = step[-1].get("bench_cpu_pct") if step else None
    bwait = step[-1].get("bench_wait_pct") if step else None
    rss = step[-1]["server_rss_kib"] if step else None
    fl = sum(s["faults"].values())
    err = s["error_events"] + s["failed_connects"] + s["closes"]
    lat = s["latency_us"]
    w(f"| {s['desc']} | {f(s['deliveries_per_s'])} | {f(s['publishes_per_s'])} | {f(lat['p50'])} | "
      f"{f(lat['p99'])} | {f(lat['p99_9'])} | {f(cpu)}% | {f(waited, 1)}% | {f(bcpu)}% | {f(bwait, 1)}% | {f(rss and rss / 1024, 1)} MiB | {fl} | {err} | {s['exit']} |")
for case in sorted({r["case"] for r in rows if r["case"][0] in "ce"}):
    steps = [r for r in rows if r["case"] == case and "step" in r]
    summ = [r for r in rows if r["case"] == case and r.get("summary")]
    desc = (steps or summ or [{"desc": case}])[0]["desc"]
    w(f"\n## Stepped: {desc}\n")
    w("| step | members | offered/s | publishes/s | deliveries/s | p50 us | p99 us | error rate | server CPU | server waited | server RSS |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in steps:
        w(f"| {r['step']} | {r['members']:,} | {f(r['offered_per_s'])} | {f(r['publishes_per_s'])} | "
          f"{f(r['deliveries_per_s'])} | {f(r['latency_us']['p50'])} | {f(r['latency_us']['p99'])} | "
          f"{r['error_rate'] * 100:.2f}% | {f(r['server_cpu_pct'])}% | {f(r.get('server_wait_pct'), 1)}% | {f(r['server_rss_kib'] / 1024 if r['server_rss_kib'] else None, 1)} MiB |")
    for s in summ:
        w(f"\nFaults: {sum(s['faults'].values())}; errors: "
          f"{s['error_events'] + s['failed_connects'] + s['closes']}; exit {s['exit']}"
          + (f": {s.get('error')}" if s['exit'] else "."))
    for s in [r for r in rows if r["case"] == case and r.get("failed")]:
        w(f"\nThe run failed (exit {s['exit']}): {s.get('error')}")
open(md, "w").write("\n".join(out) + "\n")
print(md)
PY
