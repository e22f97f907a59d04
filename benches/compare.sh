#!/usr/bin/env bash
# benches/compare.sh [--quick] [--phase echo|fanout|all]: wsreactor beside the
# raw-TCP limit and its peers.
#
# Builds everything in release (wsreactor with --features loadgen, the peers
# in benches/peers), then, with every server pinned to CPU 0 and the load
# generator (`wsreactor bench`) pinned to CPU 1:
#
#   1. throughput, closed loop: the cases below on every server, servers
#      interleaved (the order rotates each repetition) in short runs against
#      servers started once for the whole phase (so the runs a ratio pairs
#      are seconds apart); raw-tcp-echo is driven with `bench --mode tcp`,
#      the same generator without framing, twice: with messages of the
#      payload size (the reference every ratio is taken to) and of the size
#      of the client's WebSocket frame ("raw-tcp-wire": the same bytes on
#      the wire as the WebSocket echo, which matters to the kernel at 16 KiB);
#   1b. equal offered load, open loop (`bench --rate`): every server at the
#      same fixed rate (100 x 20 B at 80k msg/s, 200 x 16 KiB at 40k), its
#      CPU per echo compared with raw TCP's, the generator no co-bottleneck;
#   2. single-connection latency (1 x 20 B, binary), servers interleaved,
#      a fresh server per run, the median of the runs reported (a single
#      run can catch one of the VM's slow spells);
#   3. memory: the server's RSS with 10,000 idle connections (opened by
#      benches/peers idle-conns from 127.0.0.2-127.0.0.11, WebSocket
#      handshake done) minus its RSS before, per connection.
#
# Writes benches/results/<date>.md (medians, min-max spread, ratios to raw TCP
# and to each peer, CPU of server and generator), <date>.svg (the chart) and
# <date>.jsonl (every run's raw JSON). --quick: two repetitions, under
# 5 minutes. The full run (10 repetitions of 0.5 s + 1.5 s, 3 of the equal
# load, 4 of the latency) takes about 13 minutes.
# --report R.jsonl: only rewrite R.md and R.svg from the runs in R.jsonl.
#
# --phase fanout: instead of the above, the broadcast (fan-out) phase:
#   4. fan-out, closed loop (`bench --fanout`): every message a publisher
#      sends goes to every connection, the sender included. Cases 100 x 20 B,
#      1,000 x 20 B, 1,000 x 1 KiB, 10,000 x 20 B (one publisher, one
#      broadcast in flight) and 1,000 x 20 B with 8 in flight, on
#      raw-tcp-broadcast (`--mode tcp`), `wsreactor broadcast`,
#      tokio-tungstenite-broadcast and fastwebsockets-broadcast, servers
#      started once, interleaved in short runs with the order rotated each
#      repetition, connections from 127.0.0.2-127.0.0.11. Writes
#      <date>-fanout.md and <date>-fanout.jsonl: deliveries/s, paired
#      ratios to raw TCP, server CPU per delivery, latency. Fails at once if
#      the wsreactor build has no `broadcast` subcommand.
# --phase all: both. --phase echo (the default): phases 1-3. wsreactor runs
# one reactor (`--threads 1`) in these phases, pinned to one CPU.
#
# --threads N: instead, the scaling phase of benches/cores.sh (needs 2N
# CPUs): `wsreactor echo --threads T` for T = 1, 2, 4, ..., N on CPUs
# 0..T-1, N load generators on CPUs N..2N-1; msg/s, scaling efficiency and
# CPU per echo in <date>-scaling.md. On a 2-CPU machine, benches/cores.sh
# without --threads measures the multi-reactor costs instead.
#
# Environment: BENCH_PORT_BASE (default 19300; ports BASE+1..BASE+4 must be
# free, and for the fan-out phase BASE+12..BASE+14, BASE+20..BASE+21),
# BENCH_REPS, BENCH_DURATION, BENCH_WARMUP to override the defaults,
# BENCH_SERVER_CPU / BENCH_CLIENT_CPU (default 0 / 1). Loopback only.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0
REPORT_ONLY=
PHASE=echo
usage() { echo "usage: $0 [--quick] [--phase echo|fanout|all] | --threads N [--quick] | --report RESULTS.jsonl" >&2; exit 2; }
THREADS=
while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --report) REPORT_ONLY=${2:?--report needs a results .jsonl file}; shift ;;
    --phase)
      PHASE=${2:-}; shift || true
      case $PHASE in echo|fanout|all) ;; *) usage ;; esac ;;
    --threads) THREADS=${2:-}; shift || true; [[ $THREADS =~ ^[1-9][0-9]*$ ]] || usage ;;
    -h|--help) sed -n '2,58p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) usage ;;
  esac
  shift
done
if [[ -n $THREADS ]]; then
  quick=(); ((QUICK)) && quick=(--quick)
  exec "$ROOT/benches/cores.sh" --threads "$THREADS" ${quick[@]+"${quick[@]}"}
fi
RUN_ECHO=0; RUN_FANOUT=0
[[ $PHASE == echo || $PHASE == all ]] && RUN_ECHO=1
[[ $PHASE == fanout || $PHASE == all ]] && RUN_FANOUT=1

# Many short runs rather than a few long ones: this machine's speed shifts
# by up to 25% for seconds at a time, and the paired ratios below need each
# repetition's runs close together.
if ((QUICK)); then
  REPS=${BENCH_REPS:-2}; DURATION=${BENCH_DURATION:-1.5}; WARMUP=${BENCH_WARMUP:-0.5}
  LAT_REPS=2; LAT_DURATION=2; EQUAL_REPS=1; EQUAL_DURATION=2
else
  REPS=${BENCH_REPS:-10}; DURATION=${BENCH_DURATION:-1.5}; WARMUP=${BENCH_WARMUP:-0.5}
  LAT_REPS=4; LAT_DURATION=3; EQUAL_REPS=3; EQUAL_DURATION=3
fi
IDLE_CONNS=10000
PORT_BASE=${BENCH_PORT_BASE:-19300}
SCPU=${BENCH_SERVER_CPU:-0}
CCPU=${BENCH_CLIENT_CPU:-1}

for tool in cargo taskset python3; do
  command -v "$tool" >/dev/null || { echo "compare.sh: needs $tool" >&2; exit 1; }
done
if (( $(nproc) < 2 )); then
  echo "compare.sh: needs 2 CPUs (server on $SCPU, generator on $CCPU)" >&2; exit 1
fi

# ---- report -----------------------------------------------------------------
report() {  # raw.jsonl base quick reps duration warmup
MACHINE=$(lscpu | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); m=$2} /^CPU\(s\)/ {gsub(/^ +/, "", $2); c=$2} END {print c " x " m}')
KERNEL=$(uname -r)
RUSTC=$(rustc --version)
python3 - "$1" "$2" "$3" "$4" "$5" "$6" "$MACHINE" "$KERNEL" "$RUSTC" "$(nproc)" "$(cat /proc/loadavg)" <<'PY'
import json, sys, statistics, os, html

raw, base, quick, reps, dur, warm, machine, kernel, rustc, ncpu, loadavg = sys.argv[1:12]
rows = [json.loads(l) for l in open(raw) if l.strip()]
servers = ["raw-tcp", "wsreactor", "tokio-tungstenite", "fastwebsockets"]
cases = ["100x20B", "10x1KiB", "200x16KiB", "500x16KiB", "100x20B-text"]
labels = {"100x20B": "100 x 20 B", "10x1KiB": "10 x 1 KiB", "200x16KiB": "200 x 16 KiB",
          "500x16KiB": "500 x 16 KiB", "100x20B-text": "100 x 20 B text"}

def runs(kind, server, case):
    return [r["run"] for r in rows if r.get("kind") == kind and r["server"] == server
            and r.get("case") == case and r.get("run")]

def med(xs):
    return statistics.median(xs) if xs else None

tp = {}
for s in servers:
    for c in cases:
        rs = runs("throughput", s, c)
        if rs:
            v = [r["msg_per_s"] for r in rs]
            tp[s, c] = dict(med=med(v), lo=min(v), hi=max(v), n=len(v),
                            scpu=med([r["server_cpu_pct"] for r in rs if r["server_cpu_pct"] is not None] or [0]),
                            gcpu=med([r["generator_cpu_pct"] for r in rs if r["generator_cpu_pct"] is not None] or [0]),
                            p50=med([r["latency_us"]["p50"] for r in rs]),
                            p99=med([r["latency_us"]["p99"] for r in rs]),
                            scpu_us=med([r["server_cpu_us_per_msg"] for r in rs if r.get("server_cpu_us_per_msg")]),
                            gcpu_us=med([r["generator_cpu_us_per_msg"] for r in rs if r.get("generator_cpu_us_per_msg")]),
                            swait=med([r["server_runq_wait_pct"] for r in rs if r.get("server_runq_wait_pct") is not None]),
                            gwait=med([r["generator_runq_wait_pct"] for r in rs if r.get("generator_runq_wait_pct") is not None]))

def fmt(x):
    return "-" if x is None else f"{x:,.0f}"

def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b

out = []
w = out.append
title = "quick run" if quick == "1" else "full run"
w(f"# Echo benchmark: {os.path.basename(base)} ({title})\n")
meta = [r for r in rows if r.get("kind") == "meta"]
ends = [r for r in rows if r.get("kind") == "meta_end"]
if ends:
    loadavg = ends[-1]["loadavg_end"]
w(f"Machine: {machine} ({ncpu} CPUs online), Linux {kernel}, {rustc}. ")
if meta:
    w("wsreactor revision: " + ", ".join(f"`{m['revision']}` (run started {m['started']}, load average {m['loadavg_start']})" for m in meta) + ". ")
w(f"Servers pinned to CPU 0, load generator (`wsreactor bench`) to CPU 1. "
  f"{reps} repetition(s) per case, servers interleaved, each run {warm} s warm-up + {dur} s measured "
  f"against servers started once for the throughput phase (latency and memory: a fresh server each). Load average at the end: {loadavg.split()[0]} / {loadavg.split()[1]} / {loadavg.split()[2]}.\n")
w("Closed loop: each connection sends one message and waits for its echo (`wsreactor bench`, "
  "binary unless noted; raw TCP: `--mode tcp` against raw-tcp-echo). Every echo is checked.\n")
w("## Throughput (msg/s, median of runs; min-max in brackets)\n")
w("| case | " + " | ".join(servers) + " |")
w("|---" * (len(servers) + 1) + "|")
for c in cases:
    cells = []
    for s in servers:
        t = tp.get((s, c))
        cells.append("-" if not t else f"{t['med']:,.0f} ({t['lo']:,.0f}-{t['hi']:,.0f})")
    w(f"| {labels[c]} | " + " | ".join(cells) + " |")
w("")
w("## Ratio to raw TCP (median / median; target for wsreactor: >= 0.97)\n")
w("| case | " + " | ".join(servers[1:]) + " |")
w("|---" * len(servers) + "|")
for c in cases:
    base_t = tp.get(("raw-tcp", c))
    cells = []
    for s in servers[1:]:
        t = tp.get((s, c))
        r = ratio(t and t["med"], base_t and base_t["med"])
        cells.append("-" if r is None else f"{r:.2f}x")
    w(f"| {labels[c]} | " + " | ".join(cells) + " |")
w("")
# Paired: each repetition runs the servers one after another, within
# seconds, so a ratio within one repetition cancels the machine's slow
# shifts in speed that a ratio of medians taken minutes apart does not.
def paired(server, case, field, invert=False, ref="raw-tcp", kind="throughput"):
    out = []
    reps_seen = sorted({r.get("rep") for r in rows if r.get("kind") == kind
                        and r.get("rep") is not None and r["case"] == case})
    for rep in reps_seen:
        def one(s):
            for r in rows:
                if (r.get("kind") == kind and r["server"] == s and r["case"] == case
                        and r.get("rep") == rep and r.get("run") and r["run"].get(field)):
                    return r["run"][field]
        a, b = one(server), one(ref)
        if a and b:
            out.append(b / a if invert else a / b)
    return out
def cell(v):
    return "-" if not v else f"{statistics.median(v):.3f} ({min(v):.2f}-{max(v):.2f})"
if any(r.get("rep") is not None for r in rows):
    w("## Paired ratio to raw TCP (median of per-repetition ratios, min-max in brackets)\n")
    w("Each repetition's runs of all servers follow each other within seconds; the ratio "
      "is taken within a repetition, then the median over repetitions. msg/s: server / raw "
      "(target for wsreactor: >= 0.97). CPU: raw's CPU per echo / the server's (1.00 = as cheap "
      "as raw TCP).\n")
    w("| case | " + " | ".join(f"{s} msg/s" for s in servers[1:]) + " | "
      + " | ".join(f"{s} CPU" for s in servers[1:]) + " |")
    w("|---" * (2 * len(servers) - 1) + "|")
    for c in cases:
        cells = [cell(paired(s, c, "msg_per_s")) for s in servers[1:]]
        cells += [cell(paired(s, c, "server_cpu_us_per_msg", invert=True)) for s in servers[1:]]
        w(f"| {labels[c]} | " + " | ".join(cells) + " |")
    w("")
# The same bytes on the wire: raw TCP echoing messages of the client
# frame's size. At 16 KiB the few header bytes alone cost the kernel a few
# per cent (page fragments no longer line up with messages), which no
# WebSocket echo can avoid; this shows how much of a gap that is.
if any(r.get("server") == "raw-tcp-wire" for r in rows):
    w("## Raw TCP at the WebSocket wire size (paired, median of per-repetition ratios)\n")
    w("`raw-tcp-wire`: the raw-TCP echo with messages as long as the client's WebSocket frame "
      "(payload + 6 B, 8 B from 126 B, 14 B from 64 KiB), so the kernel moves the same bytes "
      "as for the WebSocket echo. The first column is what those few bytes cost raw TCP "
      "itself; the others are each server's msg/s over raw-tcp-wire's. The ratios to raw TCP "
      "above (payload size) remain the reference.\n")
    ws_servers = ["wsreactor", "tokio-tungstenite", "fastwebsockets"]
    w("| case | raw-tcp-wire msg/s | raw-tcp-wire / raw-tcp | " + " | ".join(f"{s} / raw-tcp-wire" for s in ws_servers) + " |")
    w("|---" * (3 + len(ws_servers)) + "|")
    for c in cases:
        rs = runs("throughput", "raw-tcp-wire", c)
        m = fmt(med([r["msg_per_s"] for r in rs])) if rs else "-"
        cells = [m, cell(paired("raw-tcp-wire", c, "msg_per_s"))]
        cells += [cell(paired(s, c, "msg_per_s", ref="raw-tcp-wire")) for s in ws_servers]
        w(f"| {labels[c]} | " + " | ".join(cells) + " |")
    w("")
w("## wsreactor relative to each peer (median / median)\n")
w("| case | vs tokio-tungstenite | vs fastwebsockets |")
w("|---|---|---|")
for c in cases:
    me = tp.get(("wsreactor", c))
    cells = []
    for p in ["tokio-tungstenite", "fastwebsockets"]:
        t = tp.get((p, c))
        r = ratio(me and me["med"], t and t["med"])
        cells.append("-" if r is None else f"{r:.2f}x")
    w(f"| {labels[c]} | " + " | ".join(cells) + " |")
w("")
w("## Server CPU per echo (microseconds of user + system time, median)\n")
w("The server's CPU time over the measured interval divided by the echoes; on loopback the "
  "kernel's TCP work is most of it. Unlike msg/s it is not lowered when other processes take "
  "the CPU (waiting is not counted). When server and generator are both saturated it is the "
  "reciprocal of msg/s and shares its limits. `raw / server`: the cost ratio to the raw-TCP "
  "echo (1.00 = as cheap).\n")
w("| case | " + " | ".join(servers) + " | " + " | ".join(f"raw / {s}" for s in servers[1:]) + " |")
w("|---" * (2 * len(servers)) + "|")
def us(x):
    return "-" if x is None else f"{x:.2f}"
for c in cases:
    raw_us = tp.get(("raw-tcp", c), {}).get("scpu_us")
    cells = [us(tp.get((s, c), {}).get("scpu_us")) for s in servers]
    rat = []
    for s in servers[1:]:
        v = tp.get((s, c), {}).get("scpu_us")
        rat.append("-" if not v or not raw_us else f"{raw_us / v:.2f}")
    w(f"| {labels[c]} | " + " | ".join(cells) + " | " + " | ".join(rat) + " |")
w("")
w("## CPU, contention and latency under load (medians)\n")
w("CPU over the measured interval as % of one core. A server near 100% with the generator below "
  "it means the server was the bottleneck; both near 100% means the generator may have been. "
  "\"waited\": % of the interval the process was runnable but another process had its CPU "
  "(from /proc/PID/schedstat); more than a few % means the machine was not quiet and msg/s "
  "understates what the servers can do.\n")
w("| case | server | msg/s | server CPU | generator CPU | server waited | generator waited | p50 us | p99 us |")
w("|---|---|---|---|---|---|---|---|---|")
def pct(x):
    return "-" if x is None else f"{x:.0f}%"
for c in cases:
    for s in servers:
        t = tp.get((s, c))
        if t:
            w(f"| {labels[c]} | {s} | {t['med']:,.0f} | {pct(t['scpu'])} | {pct(t['gcpu'])} | "
              f"{pct(t['swait'])} | {pct(t['gwait'])} | {t['p50']:.1f} | {t['p99']:.1f} |")
w("")
equal = sorted({r["case"] for r in rows if r.get("kind") == "equal-load"}, key=cases.index)
if equal:
    w("## Equal offered load (open loop): server CPU per echo\n")
    w("`wsreactor bench --rate R`: every server gets the same R messages per second, sent on a "
      "schedule whether or not earlier echoes came back, at a rate each sustains here. The "
      "generator is then no co-bottleneck, and the servers differ only in the CPU they spend "
      "per echo (microseconds of user + system time, median; wake-ups from idle make it higher "
      "than in the closed loop). `raw / server`: the paired ratio of raw TCP's CPU per echo to "
      "the server's, median of repetitions (min-max; 1.00 = as cheap as raw TCP). Round trips "
      "are timed from when each message was due.\n")
    w("| case | server | sent msg/s | server CPU | CPU per echo (us) | raw / server | p50 us | p99 us |")
    w("|---|---|---|---|---|---|---|---|")
    for c in equal:
        for s in servers:
            rs = runs("equal-load", s, c)
            if not rs:
                w(f"| {labels[c]} | {s} | not sustained | - | - | - | - | - |")
                continue
            rate = rs[0].get("rate") or 0
            cpu_us = med([r["server_cpu_us_per_msg"] for r in rs if r.get("server_cpu_us_per_msg")])
            rat = "-" if s == "raw-tcp" else cell(paired(s, c, "server_cpu_us_per_msg", invert=True, kind="equal-load"))
            w(f"| {labels[c]} at {rate:,.0f}/s | {s} | {med([r['sent_per_s'] for r in rs]):,.0f} | "
              f"{pct(med([r['server_cpu_pct'] for r in rs if r.get('server_cpu_pct') is not None]))} | "
              f"{us(cpu_us)} | {rat} | {med([r['latency_us']['p50'] for r in rs]):.1f} | "
              f"{med([r['latency_us']['p99'] for r in rs]):.1f} |")
    w("")
w("## Single-connection latency (1 connection x 20 B, round trip, microseconds)\n")
nlat = max([len(runs("latency", s, "1x20B")) for s in servers] + [0])
w(f"Median of {nlat} run(s) per server, servers interleaved, a fresh server each run; "
  "max: the largest of the runs.\n")
w("| server | msg/s | p50 | p90 | p99 | p99.9 | max |")
w("|---|---|---|---|---|---|---|")
for s in servers:
    rs = runs("latency", s, "1x20B")
    if rs:
        q = lambda k: med([r["latency_us"][k] for r in rs])
        top = max(r["latency_us"]["max"] for r in rs)
        rate = med([r["msg_per_s"] for r in rs])
        w(f"| {s} | {rate:,.0f} | {q('p50'):.1f} | {q('p90'):.1f} | {q('p99'):.1f} | {q('p99_9'):.1f} | {top:.1f} |")
w("")
w("## Memory per idle connection\n")
w("RSS of the server with 10,000 idle connections (WebSocket handshake done; raw TCP: connected) "
  "minus its RSS before, divided by 10,000. Target for wsreactor: <= 200 B.\n")
w("| server | RSS before | RSS with 10,000 idle | per connection |")
w("|---|---|---|---|")
for s in servers:
    m = [r for r in rows if r.get("kind") == "memory" and r["server"] == s]
    if m:
        m = m[0]
        per = (m["rss_after_kib"] - m["rss_before_kib"]) * 1024 / m["connections"]
        w(f"| {s} | {m['rss_before_kib']:,} KiB | {m['rss_after_kib']:,} KiB | {per:,.0f} B |")
w("")
svg_name = os.path.basename(base) + ".svg"
w(f"![msg/s relative to raw TCP]({svg_name})\n")
w(f"Raw data: `{os.path.basename(base)}.jsonl` (one JSON object per run).\n")
open(base + ".md", "w").write("\n".join(out))

# ---- SVG: two panels of grouped bars, relative to raw TCP ----
# Top: msg/s / raw msg/s (median; whiskers min-max). Bottom: raw CPU per echo /
# server CPU per echo (1.00 = as cheap as raw TCP), which holds even when the
# generator or another process limited the run.
colors = {"raw-tcp": "#9e9e9e", "wsreactor": "#d9480f", "tokio-tungstenite": "#1971c2",
          "fastwebsockets": "#2f9e44"}
W, PH = 880, 300
left, right = 60, 40
pw = W - left - right
svg = []

def panel(y0, title, values):
    # values: {(server, case): (ratio, lo, hi, label)}
    top, ph = y0 + 40, PH - 90
    vmax = max([1.2] + [v[2] for v in values.values()])
    ymax = (int(vmax * 10) + 1) / 10
    def y(v):
        return top + ph - max(0.0, min(v, ymax)) / ymax * ph
    svg.append(f'<text x="{W/2}" y="{y0+22}" text-anchor="middle" font-size="15">{html.escape(title)}</text>')
    step = 0.2 if ymax <= 1.6 else 0.5
    v = 0.0
    while v <= ymax + 1e-9:
        svg.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{W-right}" y2="{y(v):.1f}" stroke="#e9ecef"/>')
        svg.append(f'<text x="{left-6}" y="{y(v)+4:.1f}" text-anchor="end">{v:.1f}</text>')
        v += step
    svg.append(f'<line x1="{left}" y1="{y(0.97):.1f}" x2="{W-right}" y2="{y(0.97):.1f}" stroke="#d9480f" '
               f'stroke-dasharray="4 3"/>')
    svg.append(f'<text x="{W-right+4}" y="{y(0.97)+4:.1f}" text-anchor="start" fill="#d9480f">0.97</text>')
    gw = pw / len(cases)
    bw = gw * 0.8 / len(servers)
    for ci, c in enumerate(cases):
        gx = left + ci * gw + gw * 0.1
        for si, s in enumerate(servers):
            if (s, c) not in values:
                continue
            r, lo, hi, label = values[s, c]
            x = gx + si * bw
            svg.append(f'<rect x="{x:.1f}" y="{y(r):.1f}" width="{bw-2:.1f}" height="{y(0)-y(r):.1f}" '
                       f'fill="{colors[s]}"><title>{html.escape(s)} {html.escape(labels[c])}: '
                       f'{html.escape(label)}</title></rect>')
            cx = x + (bw - 2) / 2
            if hi > lo:
                svg.append(f'<line x1="{cx:.1f}" y1="{y(lo):.1f}" x2="{cx:.1f}" y2="{y(hi):.1f}" stroke="#212529"/>')
            svg.append(f'<text x="{cx:.1f}" y="{y(max(r, hi))-4:.1f}" text-anchor="middle" font-size="9">{r:.2f}</text>')
        svg.append(f'<text x="{gx + gw*0.4:.1f}" y="{top+ph+18}" text-anchor="middle">{html.escape(labels[c])}</text>')

tput, cost = {}, {}
for c in cases:
    base_t = tp.get(("raw-tcp", c))
    for s in servers:
        t = tp.get((s, c))
        if t and base_t:
            m = base_t["med"]
            tput[s, c] = (t["med"] / m, t["lo"] / m, t["hi"] / m, f'{t["med"]:,.0f} msg/s')
        if t and base_t and t.get("scpu_us") and base_t.get("scpu_us"):
            r = base_t["scpu_us"] / t["scpu_us"]
            cost[s, c] = (r, r, r, f'{t["scpu_us"]:.2f} us of server CPU per echo')
panel(0, f"Echo throughput relative to raw TCP (median of {reps}; whiskers: min-max)", tput)
panel(PH, "Server CPU per echo, raw TCP's relative to each server's (1.00 = as cheap as raw TCP)", cost)
H = 2 * PH + 10
lx = left
for s in servers:
    svg.append(f'<rect x="{lx}" y="{H-22}" width="12" height="12" fill="{colors[s]}"/>')
    svg.append(f'<text x="{lx+16}" y="{H-12}">{html.escape(s)}</text>')
    lx += 40 + 8 * len(s)
svg.insert(0, f'<rect width="{W}" height="{H}" fill="white"/>')
svg.insert(0, f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
              f'font-family="sans-serif" font-size="12">')
svg.append('</svg>')
open(base + ".svg", "w").write("\n".join(svg) + "\n")
print(base + ".md")
PY
}

# ---- fan-out report ----------------------------------------------------------
report_fanout() {  # raw.jsonl base quick
MACHINE=$(lscpu | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); m=$2} /^CPU\(s\)/ {gsub(/^ +/, "", $2); c=$2} END {print c " x " m}')
python3 - "$1" "$2" "$3" "$MACHINE" "$(uname -r)" "$(rustc --version)" "$(nproc)" <<'PY'
import json, sys, statistics, os

raw, base, quick, machine, kernel, rustc, ncpu = sys.argv[1:8]
rows = [json.loads(l) for l in open(raw) if l.strip()]
servers = ["raw-tcp", "wsreactor", "tokio-tungstenite", "fastwebsockets"]
cases = ["100x20B", "1000x20B", "1000x1KiB", "10000x20B", "1000x20B-8inflight"]
labels = {"100x20B": "100 x 20 B", "1000x20B": "1,000 x 20 B", "1000x1KiB": "1,000 x 1 KiB",
          "10000x20B": "10,000 x 20 B", "1000x20B-8inflight": "1,000 x 20 B, 8 in flight"}
fan = [r for r in rows if r.get("kind") == "fanout"]
cases = [c for c in cases if any(r["case"] == c for r in fan)]

def runs(server, case):
    return [r["run"] for r in fan if r["server"] == server and r["case"] == case and r.get("run")]

def failed(server, case):
    return sum(1 for r in fan if r["server"] == server and r["case"] == case and not r.get("run"))

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def paired(server, case, field, invert=False):
    out = []
    for rep in sorted({r["rep"] for r in fan if r["case"] == case}):
        def one(s):
            for r in fan:
                if r["server"] == s and r["case"] == case and r["rep"] == rep and r.get("run") and r["run"].get(field):
                    return r["run"][field]
        a, b = one(server), one("raw-tcp")
        if a and b:
            out.append(b / a if invert else a / b)
    return out

def cell(v):
    return "-" if not v else f"{statistics.median(v):.3f} ({min(v):.2f}-{max(v):.2f})"

def num(x, f="{:,.0f}"):
    return "-" if x is None else f.format(x)

out = []
w = out.append
meta = [r for r in rows if r.get("kind") == "meta"]
ends = [r for r in rows if r.get("kind") == "meta_end"]
nreps = len({r["rep"] for r in fan}) or 0
w(f"# Fan-out benchmark: {os.path.basename(base)} ({'quick run' if quick == '1' else 'full run'})\n")
w(f"Machine: {machine} ({ncpu} CPUs online), Linux {kernel}, {rustc}. ")
if meta:
    w("wsreactor revision: " + ", ".join(f"`{m['revision']}` (run started {m['started']}, load average {m['loadavg_start']})" for m in meta) + ". ")
if ends:
    w(f"Load average at the end: {ends[-1]['loadavg_end']}. ")
if fan and fan[0].get("run") is None:
    pass
w(f"Servers pinned to CPU 0, `wsreactor bench --fanout` to CPU 1, {nreps} repetition(s) per case, "
  "servers started once and interleaved (order rotated each repetition), connections from "
  "127.0.0.2-127.0.0.11.\n")
w("Every message a publisher sends goes to every connection, the sender included (uWebSockets' "
  "`broadcast_test` contract). Closed loop: one publisher keeps one broadcast (or 8) outstanding; "
  "a broadcast completes when every connection has received it. A delivery is one message "
  "received by one connection; every delivery is checked (loss, duplicates, order, content), "
  "and a run with any fault counts as failed. raw TCP: raw-tcp-broadcast with `--mode tcp` "
  "(fixed-size messages, no framing).\n")
w("## Deliveries per second (median of runs; min-max in brackets)\n")
w("| case | " + " | ".join(servers) + " |")
w("|---" * (len(servers) + 1) + "|")
for c in cases:
    cells = []
    for s in servers:
        v = [r["msg_per_s"] for r in runs(s, c)]
        f = failed(s, c)
        txt = "-" if not v else f"{med(v):,.0f} ({min(v):,.0f}-{max(v):,.0f})"
        if f:
            txt += f" [{f} failed]"
        cells.append(txt)
    w(f"| {labels[c]} | " + " | ".join(cells) + " |")
w("")
w("## Paired ratio to raw TCP (median of per-repetition ratios, min-max in brackets)\n")
w("Within one repetition the servers' runs follow each other within seconds. msg/s: the "
  "server's deliveries/s over raw TCP's. CPU: raw TCP's server CPU per delivery over the "
  "server's (1.00 = as cheap as raw TCP).\n")
w("| case | " + " | ".join(f"{s} msg/s" for s in servers[1:]) + " | "
  + " | ".join(f"{s} CPU" for s in servers[1:]) + " |")
w("|---" * (2 * len(servers) - 1) + "|")
for c in cases:
    cells = [cell(paired(s, c, "msg_per_s")) for s in servers[1:]]
    cells += [cell(paired(s, c, "server_cpu_us_per_msg", invert=True)) for s in servers[1:]]
    w(f"| {labels[c]} | " + " | ".join(cells) + " |")
w("")
w("## Server CPU per delivery (microseconds of user + system time, median)\n")
w("The server's CPU time over the measured interval divided by the deliveries; the kernel's "
  "loopback TCP work is most of it.\n")
w("| case | " + " | ".join(servers) + " |")
w("|---" * (len(servers) + 1) + "|")
for c in cases:
    w(f"| {labels[c]} | " + " | ".join(num(med([r['server_cpu_us_per_msg'] for r in runs(s, c)]), "{:.3f}") for s in servers) + " |")
w("")
w("## Broadcasts, CPU, contention and latency (medians)\n")
w("Latency: from when a message was published to when a connection received it (p50, p99), "
  "and to when the last connection received it (broadcast p99), in microseconds. \"waited\": % "
  "of the interval the process was runnable while another held its CPU.\n")
w("| case | server | deliveries/s | broadcasts/s | server CPU | generator CPU | server waited | generator waited | p50 us | p99 us | broadcast p99 us |")
w("|---|---|---|---|---|---|---|---|---|---|---|")
pct = lambda x: "-" if x is None else f"{x:.0f}%"
for c in cases:
    for s in servers:
        rs = runs(s, c)
        if not rs:
            continue
        w(f"| {labels[c]} | {s} | {med([r['msg_per_s'] for r in rs]):,.0f} | "
          f"{med([r['broadcasts_per_s'] for r in rs]):,.0f} | "
          f"{pct(med([r['server_cpu_pct'] for r in rs]))} | {pct(med([r['generator_cpu_pct'] for r in rs]))} | "
          f"{pct(med([r['server_runq_wait_pct'] for r in rs]))} | {pct(med([r['generator_runq_wait_pct'] for r in rs]))} | "
          f"{med([r['latency_us']['p50'] for r in rs]):.1f} | {med([r['latency_us']['p99'] for r in rs]):.1f} | "
          f"{med([r['broadcast_latency_us']['p99'] for r in rs]):.1f} |")
w("")
w(f"Raw data: `{os.path.basename(base)}.jsonl` (one JSON object per run).\n")
open(base + ".md", "w").write("\n".join(out))
print(base + ".md")
PY
}

if [[ -n $REPORT_ONLY ]]; then
  if grep -q '"kind":"fanout"' "$REPORT_ONLY"; then
    report_fanout "$REPORT_ONLY" "${REPORT_ONLY%.jsonl}" "$([[ $REPORT_ONLY == *-quick-fanout.jsonl ]] && echo 1 || echo 0)" >/dev/null
    echo "== wrote ${REPORT_ONLY%.jsonl}.md" >&2
    exit 0
  fi
  # Settings are read back from the runs themselves.
  read -r Q R D W < <(python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
t = [r["run"] for r in rows if r.get("kind") == "throughput" and r.get("run")]
reps = max([sum(1 for r in rows if r.get("kind") == "throughput" and r["server"] == "raw-tcp" and r.get("case") == "100x20B")] + [1])
print(1 if sys.argv[1].endswith("-quick.jsonl") else 0, reps, round(t[0]["elapsed_s"], 1) if t else 0, t[0]["warmup_s"] if t else 0)
' "$REPORT_ONLY")
  report "$REPORT_ONLY" "${REPORT_ONLY%.jsonl}" "$Q" "$R" "$D" "$W" >/dev/null
  echo "== wrote ${REPORT_ONLY%.jsonl}.md, ${REPORT_ONLY%.jsonl}.svg" >&2
  exit 0
fi

# ---- build ------------------------------------------------------------------
echo "== building (release)" >&2
cargo build --release --features loadgen --bin wsreactor >&2
cargo build --release --manifest-path benches/peers/Cargo.toml >&2
MAIN_TARGET=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
PEERS_TARGET=$(cargo metadata --format-version 1 --no-deps --manifest-path benches/peers/Cargo.toml \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
WSR=$MAIN_TARGET/release/wsreactor
PEERS=$PEERS_TARGET/release
# The fan-out phase needs the `broadcast` subcommand: fail now, not after
# the other phases.
if ((RUN_FANOUT)) && ! "$WSR" broadcast --help >/dev/null 2>&1; then
  why=$("$WSR" broadcast --help 2>&1 | head -1 || true)
  echo "compare.sh: $WSR has no working 'broadcast' subcommand ($why); the fan-out phase needs it" >&2
  exit 1
fi

# idle connections: the server and idle-conns each hold IDLE_CONNS sockets;
# the fan-out phase's largest case opens as many (generator and server).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < IDLE_CONNS + 512 )); then
  echo "compare.sh: ulimit -n is $(ulimit -n); the memory test and the fan-out phase need $((IDLE_CONNS + 512))" >&2
  exit 1
fi

STAMP=$(date -u +%Y-%m-%d)
OUT=$ROOT/benches/results
mkdir -p "$OUT"
if ((QUICK)); then BASE=$OUT/$STAMP-quick; else BASE=$OUT/$STAMP; fi
RAW=$BASE.jsonl
FRAW=$BASE-fanout.jsonl
# Read before the results files are rewritten: they may be tracked.
REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || REV="$REV+uncommitted changes"
meta() {  # file
  : > "$1"
  echo "{\"kind\":\"meta\",\"revision\":\"$REV\",\"started\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"loadavg_start\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >> "$1"
}
((RUN_ECHO)) && meta "$RAW"
((RUN_FANOUT)) && meta "$FRAW"
LOGDIR=$(mktemp -d /tmp/wsreactor-compare.XXXXXX)

# ---- servers ----------------------------------------------------------------
SERVERS=(raw-tcp wsreactor tokio-tungstenite fastwebsockets)
# Throughput adds raw TCP with messages of the WebSocket frame's size.
THROUGHPUT_SERVERS=(raw-tcp raw-tcp-wire wsreactor tokio-tungstenite fastwebsockets)
port_of() {
  case $1 in
    raw-tcp) echo $((PORT_BASE + 1)) ;; wsreactor) echo $((PORT_BASE + 2)) ;;
    tokio-tungstenite) echo $((PORT_BASE + 3)) ;; fastwebsockets) echo $((PORT_BASE + 4)) ;;
    raw-tcp-wire) echo $((PORT_BASE + 1)) ;;  # the same raw-tcp-echo
  esac
}
wire_size() {  # payload size -> size of the client's (masked) frame
  local n=$1 head=2
  ((n > 125)) && head=4
  ((n > 65535)) && head=10
  echo $((n + head + 4))
}
port_busy() {  # port: does something accept connections there?
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2).close()" 2>/dev/null
}
SERVER_PID=
start_server() {  # name
  local port; port=$(port_of "$1")
  local addr=127.0.0.1:$port
  local cmd
  case $1 in
    raw-tcp|raw-tcp-wire) cmd=("$PEERS/raw-tcp-echo" --addr "$addr") ;;
    wsreactor) cmd=("$WSR" echo --threads 1 --addr "$addr") ;;
    tokio-tungstenite) cmd=("$PEERS/tokio-tungstenite-echo" --addr "$addr") ;;
    fastwebsockets) cmd=("$PEERS/fastwebsockets-echo" --addr "$addr") ;;
  esac
  launch "$1" "$port" "${cmd[@]}"
}
launch() {  # log-name port command...: start a server pinned to SCPU
  local name=$1 port=$2; shift 2
  if port_busy "$port"; then
    echo "compare.sh: port $port is already in use (set BENCH_PORT_BASE)" >&2; exit 1
  fi
  # env and taskset exec: $! is the server's own PID.
  env RUST_LOG=warn taskset -c "$SCPU" "$@" >>"$LOGDIR/$name.log" 2>&1 &
  SERVER_PID=$!
  # Wait (at most 5 s) until it accepts connections.
  for _ in $(seq 50); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    if port_busy "$port"; then return 0; fi
    sleep 0.1
  done
  echo "compare.sh: $name did not start on 127.0.0.1:$port (see $LOGDIR/$name.log)" >&2
  stop_server; exit 1
}
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
IDLE_PID=
# The throughput phase's servers, started once: name -> PID.
declare -A RUNNING=()
stop_running() {
  local name
  for name in "${!RUNNING[@]}"; do
    SERVER_PID=${RUNNING[$name]}
    stop_server
  done
  RUNNING=()
}
cleanup() {
  [[ -n $IDLE_PID ]] && kill "$IDLE_PID" 2>/dev/null
  stop_server
  stop_running
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The servers in the order repetition REP runs them: rotated by REP, so no
# server always runs first or right after the same one.
rotation() {  # rep server...
  local rep=$1; shift
  local all=("$@") i
  for ((i = 0; i < $#; i++)); do echo "${all[$(((i + rep) % $#))]}"; done
}

if ((RUN_ECHO)); then
  # ---- 1. throughput ----------------------------------------------------------
  # name:connections:size:kind
  CASES=("100x20B:100:20:binary" "10x1KiB:10:1024:binary" "200x16KiB:200:16384:binary"
         "500x16KiB:500:16384:binary" "100x20B-text:100:20:text")

  bench_run() {  # server case-name conns size kind duration warmup tag [extra bench args]
    local server=$1 name=$2 conns=$3 size=$4 kind=$5 dur=$6 warm=$7 tag=$8
    local extra=(${9:-})
    local port; port=$(port_of "$server")
    local mode=(--url "ws://127.0.0.1:$port/")
    [[ $server == raw-tcp* ]] && mode=(--mode tcp --url "127.0.0.1:$port")
    [[ $server == raw-tcp-wire ]] && size=$(wire_size "$size")
    local own=1 pid_key=$server
    [[ $server == raw-tcp-wire ]] && pid_key=raw-tcp
    if [[ -n ${RUNNING[$pid_key]:-} ]]; then
      SERVER_PID=${RUNNING[$pid_key]}; own=0
      kill -0 "$SERVER_PID" 2>/dev/null || { echo "compare.sh: $pid_key exited (see $LOGDIR/$pid_key.log)" >&2; exit 1; }
    else
      start_server "$server"
    fi
    local json limit
    limit=$(awk -v d="$dur" -v w="$warm" 'BEGIN { print int(d + w) + 60 }')
    if json=$(timeout "$limit" taskset -c "$CCPU" "$WSR" bench "${mode[@]}" \
          --connections "$conns" --size "$size" "--$kind" --duration "$dur" --warmup "$warm" \
          "${extra[@]}" --server-pid "$SERVER_PID" --json -q 2>>"$LOGDIR/bench.log"); then
      echo "{\"server\":\"$server\",\"case\":\"$name\",\"kind\":\"$tag\",\"rep\":$REP,\"run\":$json}" >> "$RAW"
      python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("   %-18s %-13s %10.0f msg/s  p50 %7.1f us  p99 %8.1f us  cpu server %3.0f%% generator %3.0f%%" % (sys.argv[2], sys.argv[3], r["msg_per_s"], r["latency_us"]["p50"], r["latency_us"]["p99"], r["server_cpu_pct"] or 0, r["generator_cpu_pct"] or 0))' "$json" "$server" "$name" >&2
    else
      echo "   $server $name: FAILED (see $LOGDIR/bench.log)" >&2
      echo "{\"server\":\"$server\",\"case\":\"$name\",\"kind\":\"$tag\",\"rep\":$REP,\"run\":null}" >> "$RAW"
    fi
    if ((own)); then stop_server; else SERVER_PID=; fi
  }

  echo "== throughput: $REPS repetition(s), ${WARMUP}s warm-up + ${DURATION}s per run; logs in $LOGDIR" >&2
  for server in "${SERVERS[@]}"; do
    start_server "$server"
    RUNNING[$server]=$SERVER_PID
    SERVER_PID=
  done
  REP=0
  for ((rep = 0; rep < REPS; rep++)); do
    REP=$rep
    echo "-- repetition $((rep + 1))/$REPS" >&2
    for c in "${CASES[@]}"; do
      IFS=: read -r name conns size kind <<<"$c"
      for server in $(rotation "$rep" "${THROUGHPUT_SERVERS[@]}"); do
        bench_run "$server" "$name" "$conns" "$size" "$kind" "$DURATION" "$WARMUP" throughput
      done
    done
  done

  # ---- 1b. equal offered load (open loop) -------------------------------------
  # Every server gets the same fixed rate, below what each sustains here, and
  # what is compared is its CPU per echo: the generator is not a co-bottleneck
  # as it is in the closed loop. name:connections:size:rate
  EQUAL_CASES=("100x20B:100:20:80000" "200x16KiB:200:16384:40000")
  echo "== equal load: $EQUAL_REPS repetition(s), ${WARMUP}s warm-up + ${EQUAL_DURATION}s per run" >&2
  for ((rep = 0; rep < EQUAL_REPS; rep++)); do
    REP=$rep
    for c in "${EQUAL_CASES[@]}"; do
      IFS=: read -r name conns size rate <<<"$c"
      for server in $(rotation "$rep" "${SERVERS[@]}"); do
        bench_run "$server" "$name" "$conns" "$size" binary "$EQUAL_DURATION" "$WARMUP" equal-load "--rate $rate"
      done
    done
  done
  stop_running

  # ---- 2. single-connection latency -------------------------------------------
  echo "== latency: 1 connection x 20 B, $LAT_REPS repetition(s) of ${LAT_DURATION}s" >&2
  for ((rep = 0; rep < LAT_REPS; rep++)); do
    REP=$rep
    for server in $(rotation "$rep" "${SERVERS[@]}"); do
      bench_run "$server" "1x20B" 1 20 binary "$LAT_DURATION" 1 latency
    done
  done

  # ---- 3. memory per idle connection ------------------------------------------
  echo "== memory: $IDLE_CONNS idle connections per server" >&2
  rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
  for server in "${SERVERS[@]}"; do
    start_server "$server"
    sleep 0.5
    before=$(rss_kib "$SERVER_PID")
    raw=(); [[ $server == raw-tcp ]] && raw=(--raw)
    taskset -c "$CCPU" "$PEERS/idle-conns" --addr "127.0.0.1:$(port_of "$server")" \
      --count "$IDLE_CONNS" --sources 10 --hold 120 "${raw[@]}" \
      >"$LOGDIR/idle.out" 2>>"$LOGDIR/idle.log" &
    IDLE_PID=$!
    ok=0
    for _ in $(seq 600); do  # at most 60 s to open them
      if grep -q '^ready' "$LOGDIR/idle.out"; then ok=1; break; fi
      kill -0 "$IDLE_PID" 2>/dev/null || break
      sleep 0.1
    done
    if ((ok)); then
      sleep 1  # let the server finish what the last handshakes started
      after=$(rss_kib "$SERVER_PID")
      echo "{\"server\":\"$server\",\"kind\":\"memory\",\"connections\":$IDLE_CONNS,\"rss_before_kib\":$before,\"rss_after_kib\":$after}" >> "$RAW"
      echo "   $server: RSS $before KiB -> $after KiB: $(( (after - before) * 1024 / IDLE_CONNS )) B per connection" >&2
    else
      echo "   $server: FAILED to open $IDLE_CONNS connections (see $LOGDIR/idle.log)" >&2
    fi
    kill "$IDLE_PID" 2>/dev/null || true
    wait "$IDLE_PID" 2>/dev/null || true
    IDLE_PID=
    stop_server
  done

  echo "{\"kind\":\"meta_end\",\"finished\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"loadavg_end\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >> "$RAW"
  report "$RAW" "$BASE" "$QUICK" "$REPS" "$DURATION" "$WARMUP" >/dev/null
  echo "== wrote $BASE.md, $BASE.svg, $BASE.jsonl" >&2
fi

# ---- 4. fan-out (broadcast) --------------------------------------------------
# name:connections:size:publishers:inflight
FAN_CASES=("100x20B:100:20:1:1" "1000x20B:1000:20:1:1" "1000x1KiB:1000:1024:1:1"
           "10000x20B:10000:20:1:1" "1000x20B-8inflight:1000:20:1:8")
# raw-tcp-broadcast takes its (fixed) message size at start: one per size.
FAN_SIZES=(20 1024)
FAN_SOURCES=10
declare -A FAN_PORT=([wsreactor]=$((PORT_BASE + 12)) [tokio-tungstenite]=$((PORT_BASE + 13))
                     [fastwebsockets]=$((PORT_BASE + 14)))
for i in "${!FAN_SIZES[@]}"; do FAN_PORT[raw-tcp@${FAN_SIZES[$i]}]=$((PORT_BASE + 20 + i)); done

fan_run() {  # server case-name conns size publishers inflight
  local server=$1 name=$2 conns=$3 size=$4 pubs=$5 inflight=$6
  local key=$server
  [[ $server == raw-tcp ]] && key=raw-tcp@$size
  local port=${FAN_PORT[$key]} pid=${RUNNING[$key]}
  kill -0 "$pid" 2>/dev/null || { echo "compare.sh: $key exited (see $LOGDIR/fan-$key.log)" >&2; exit 1; }
  local mode=(--url "ws://127.0.0.1:$port/")
  [[ $server == raw-tcp ]] && mode=(--mode tcp --url "127.0.0.1:$port")
  local json limit
  # Generous: opening 10,000 connections and the drain come on top.
  limit=$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { print int(d + w) + 90 }')
  if json=$(timeout "$limit" taskset -c "$CCPU" "$WSR" bench --fanout "${mode[@]}" \
        --connections "$conns" --size "$size" --publishers "$pubs" --inflight "$inflight" \
        --sources "$FAN_SOURCES" --duration "$DURATION" --warmup "$WARMUP" \
        --server-pid "$pid" --json -q 2>>"$LOGDIR/fanout.log"); then
    echo "{\"server\":\"$server\",\"case\":\"$name\",\"kind\":\"fanout\",\"rep\":$REP,\"run\":$json}" >> "$FRAW"
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("   %-18s %-19s %11.0f deliveries/s %8.0f broadcasts/s  p50 %8.1f us  p99 %8.1f us  cpu server %3.0f%% generator %3.0f%%" % (sys.argv[2], sys.argv[3], r["msg_per_s"], r["broadcasts_per_s"], r["latency_us"]["p50"], r["latency_us"]["p99"], r["server_cpu_pct"] or 0, r["generator_cpu_pct"] or 0))' "$json" "$server" "$name" >&2
  else
    echo "   $server $name: FAILED (see $LOGDIR/fanout.log)" >&2
    echo "{\"server\":\"$server\",\"case\":\"$name\",\"kind\":\"fanout\",\"rep\":$REP,\"run\":null}" >> "$FRAW"
  fi
}

if ((RUN_FANOUT)); then
  echo "== fan-out: $REPS repetition(s), ${WARMUP}s warm-up + ${DURATION}s per run; logs in $LOGDIR" >&2
  for size in "${FAN_SIZES[@]}"; do
    launch "fan-raw-tcp@$size" "${FAN_PORT[raw-tcp@$size]}" \
      "$PEERS/raw-tcp-broadcast" --addr "127.0.0.1:${FAN_PORT[raw-tcp@$size]}" --size "$size"
    RUNNING[raw-tcp@$size]=$SERVER_PID
  done
  launch fan-wsreactor "${FAN_PORT[wsreactor]}" "$WSR" broadcast --threads 1 --addr "127.0.0.1:${FAN_PORT[wsreactor]}"
  RUNNING[wsreactor]=$SERVER_PID
  launch fan-tokio-tungstenite "${FAN_PORT[tokio-tungstenite]}" \
    "$PEERS/tokio-tungstenite-broadcast" --addr "127.0.0.1:${FAN_PORT[tokio-tungstenite]}"
  RUNNING[tokio-tungstenite]=$SERVER_PID
  launch fan-fastwebsockets "${FAN_PORT[fastwebsockets]}" \
    "$PEERS/fastwebsockets-broadcast" --addr "127.0.0.1:${FAN_PORT[fastwebsockets]}"
  RUNNING[fastwebsockets]=$SERVER_PID
  SERVER_PID=
  for ((rep = 0; rep < REPS; rep++)); do
    REP=$rep
    echo "-- repetition $((rep + 1))/$REPS" >&2
    for c in "${FAN_CASES[@]}"; do
      IFS=: read -r name conns size pubs inflight <<<"$c"
      for server in $(rotation "$rep" "${SERVERS[@]}"); do
        fan_run "$server" "$name" "$conns" "$size" "$pubs" "$inflight"
      done
    done
  done
  stop_running
  echo "{\"kind\":\"meta_end\",\"finished\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"loadavg_end\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >> "$FRAW"
  report_fanout "$FRAW" "${FRAW%.jsonl}" "$QUICK" >/dev/null
  echo "== wrote ${FRAW%.jsonl}.md, $FRAW" >&2
fi
