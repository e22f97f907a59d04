#!/usr/bin/env bash
# benches/pair-fanout.sh NEW OLD RAW OUT.jsonl [REPS] [DURATION]: paired
# fan-out runs of two wsreactor builds (NEW, OLD: `wsreactor` binaries built
# with --features loadgen) and the raw TCP broadcast peer (RAW:
# benches/peers/.../raw-tcp-broadcast), for a change to the publish path.
#
# Cases: 1,000 x 20 B with 8 broadcasts in flight, 1,000 x 20 B and
# 100 x 20 B with one. Each repetition runs every case on the three servers
# back to back (order rotated), so ratios are taken within a repetition.
# Servers on CPU 0, the load generator (OLD's `bench --fanout`) on CPU 1;
# one JSON line per run goes to OUT.jsonl. Summarise with
# benches/pair-fanout.py OUT.jsonl.
set -euo pipefail

NEW=$1 OLD=$2 RAW=$3 OUT=$4 REPS=${5:-5} DURATION=${6:-3}
WARMUP=1
SCPU=0 CCPU=1
CASES=("1000x20B-8inflight:1000:20:8" "1000x20B:1000:20:1" "100x20B:100:20:1")
# ONLY=regex: run only the cases whose name matches (e.g. ONLY='^1000x20B$|^100x').
if [[ -n ${ONLY:-} ]]; then
  keep=(); for c in "${CASES[@]}"; do [[ ${c%%:*} =~ $ONLY ]] && keep+=("$c"); done
  CASES=("${keep[@]}")
fi
declare -A PORT=([new]=39511 [old]=39512 [raw]=39513)
declare -A PID=()

cleanup() {
  for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

ulimit -n 65536 2>/dev/null || true
taskset -c $SCPU "$NEW" broadcast --threads 1 --addr "127.0.0.1:${PORT[new]}" >/dev/null 2>&1 &
PID[new]=$!
taskset -c $SCPU "$OLD" broadcast --threads 1 --addr "127.0.0.1:${PORT[old]}" >/dev/null 2>&1 &
PID[old]=$!
taskset -c $SCPU "$RAW" --addr "127.0.0.1:${PORT[raw]}" --size 20 >/dev/null 2>&1 &
PID[raw]=$!
sleep 1

echo "{\"kind\":\"meta\",\"started\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"reps\":$REPS,\"duration\":$DURATION,\"warmup\":$WARMUP}" >> "$OUT"
servers=(new old raw)
for ((rep = 0; rep < REPS; rep++)); do
  for c in "${CASES[@]}"; do
    IFS=: read -r name conns size inflight <<<"$c"
    for i in 0 1 2; do
      s=${servers[$(((i + rep) % 3))]}
      mode=(--url "ws://127.0.0.1:${PORT[$s]}/")
      [[ $s == raw ]] && mode=(--mode tcp --url "127.0.0.1:${PORT[$s]}")
      if json=$(timeout 120 taskset -c $CCPU "$OLD" bench --fanout "${mode[@]}" \
            --connections "$conns" --size "$size" --publishers 1 --inflight "$inflight" \
            --sources 10 --duration "$DURATION" --warmup "$WARMUP" \
            --server-pid "${PID[$s]}" --json -q 2>/dev/null); then
        echo "{\"server\":\"$s\",\"case\":\"$name\",\"rep\":$rep,\"run\":$json}" >> "$OUT"
        echo "rep $rep $name $s ok" >&2
      else
        echo "{\"server\":\"$s\",\"case\":\"$name\",\"rep\":$rep,\"run\":null}" >> "$OUT"
        echo "rep $rep $name $s FAILED" >&2
      fi
    done
  done
done
echo "{\"kind\":\"meta_end\",\"finished\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >> "$OUT"
