#!/usr/bin/env bash
# benches/compare-tls.sh [--quick | --tls-only | --report RESULTS.jsonl]: the echo comparison with its TLS phase (kept apart from compare.sh's fan-out phase for now; the phases are to be merged into one script).
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
#   4. TLS (wss://): `wsreactor echo` over TLS (--features tls) beside plain
#      `wsreactor echo` and tokio-tungstenite over tokio-rustls (the same
#      rustls provider, ring), closed loop at 100 x 20 B and 200 x 16 KiB,
#      servers interleaved as in 1 (msg/s, server CPU per echo, paired
#      ratios), then memory per idle TLS connection as in 3 (10,000
#      connections, TLS and WebSocket handshakes done). A throwaway CA and
#      certificate from autobahn/tls-certs.sh; clients verify them.
#
# Writes benches/results/<date>.md (medians, min-max spread, ratios to raw TCP
# and to each peer, CPU of server and generator), <date>.svg (the chart) and
# <date>.jsonl (every run's raw JSON). --quick: two repetitions, under
# 5 minutes. The full run (10 repetitions of 0.5 s + 1.5 s, 3 of the equal
# load, 4 of the latency) takes about 13 minutes, plus about 3 for TLS.
# --tls-only: only phase 4 (with --quick's repetitions if BENCH_REPS is unset).
# --report R.jsonl: only rewrite R.md and R.svg from the runs in R.jsonl.
#
# Environment: BENCH_PORT_BASE (default 19300; ports BASE+1..BASE+6 must be
# free), BENCH_REPS, BENCH_DURATION, BENCH_WARMUP to override the defaults,
# BENCH_SERVER_CPU / BENCH_CLIENT_CPU (default 0 / 1). Loopback only.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0
TLS_ONLY=0
REPORT_ONLY=
case "${1:-}" in
  --quick) QUICK=1 ;;
  --tls-only) QUICK=1; TLS_ONLY=1 ;;
  --report) REPORT_ONLY=${2:?--report needs a results .jsonl file} ;;
  "") ;;
  -h|--help) sed -n '2,43p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--quick | --tls-only | --report RESULTS.jsonl]" >&2; exit 2 ;;
esac

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
tls_rows = [r for r in rows if r.get("kind") == "tls"]
if tls_rows:
    tls_servers = ["wsreactor", "wsreactor-tls", "tokio-tungstenite-tls"]
    tls_cases = [c for c in ["100x20B", "200x16KiB"] if any(r.get("case") == c for r in tls_rows)]
    w("## TLS (wss://)\n")
    w("Closed loop as above, servers started once and interleaved per repetition: plain "
      "`wsreactor echo`, `wsreactor echo --tls-cert/--tls-key` (`wsreactor-tls`) and "
      "tokio-tungstenite over tokio-rustls (`tokio-tungstenite-tls`), both TLS servers on rustls "
      "with the ring provider; the generator verifies the certificate (TLS 1.3, ECDSA P-256). "
      "msg/s median [min-max]; server CPU per echo in microseconds (median).\n")
    w("| case | " + " | ".join(f"{s} msg/s" for s in tls_servers) + " | "
      + " | ".join(f"{s} CPU us/echo" for s in tls_servers) + " |")
    w("|---" * (2 * len(tls_servers) + 1) + "|")
    for c in tls_cases:
        cells, cpu = [], []
        for s in tls_servers:
            rs = runs("tls", s, c)
            v = [r["msg_per_s"] for r in rs]
            cells.append(f"{med(v):,.0f} [{min(v):,.0f}-{max(v):,.0f}]" if v else "-")
            us = [r["server_cpu_us_per_msg"] for r in rs if r.get("server_cpu_us_per_msg")]
            cpu.append(f"{med(us):.2f}" if us else "-")
        w(f"| {labels[c]} | " + " | ".join(cells + cpu) + " |")
    w("")
    w("Paired ratios (median of per-repetition ratios, min-max in brackets); CPU: the reference's "
      "CPU per echo over wsreactor-tls's (above 1: wsreactor-tls is cheaper).\n")
    w("| case | wsreactor-tls / wsreactor msg/s | wsreactor-tls / tokio-tungstenite-tls msg/s "
      "| CPU vs wsreactor | CPU vs tokio-tungstenite-tls |")
    w("|---|---|---|---|---|")
    for c in tls_cases:
        w(f"| {labels[c]} | {cell(paired('wsreactor-tls', c, 'msg_per_s', ref='wsreactor', kind='tls'))} "
          f"| {cell(paired('wsreactor-tls', c, 'msg_per_s', ref='tokio-tungstenite-tls', kind='tls'))} "
          f"| {cell(paired('wsreactor-tls', c, 'server_cpu_us_per_msg', invert=True, ref='wsreactor', kind='tls'))} "
          f"| {cell(paired('wsreactor-tls', c, 'server_cpu_us_per_msg', invert=True, ref='tokio-tungstenite-tls', kind='tls'))} |")
    w("")
mem_tls = [r for r in rows if r.get("kind") == "memory-tls"]
if mem_tls:
    w("### Memory per idle TLS connection\n")
    w("As above, with TLS and WebSocket handshakes done on each connection (idle-conns --tls-ca).\n")
    w("| server | RSS before | RSS with idle TLS connections | per connection |")
    w("|---|---|---|---|")
    for m in mem_tls:
        per = (m["rss_after_kib"] - m["rss_before_kib"]) * 1024 / m["connections"]
        w(f"| {m['server']} | {m['rss_before_kib']:,} KiB | {m['rss_after_kib']:,} KiB | {per:,.0f} B |")
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

if [[ -n $REPORT_ONLY ]]; then
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
cargo build --release --features loadgen,tls --bin wsreactor >&2
cargo build --release --manifest-path benches/peers/Cargo.toml >&2
MAIN_TARGET=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
PEERS_TARGET=$(cargo metadata --format-version 1 --no-deps --manifest-path benches/peers/Cargo.toml \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
WSR=$MAIN_TARGET/release/wsreactor
PEERS=$PEERS_TARGET/release

# idle connections: the server and idle-conns each hold IDLE_CONNS sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < IDLE_CONNS + 512 )); then
  echo "compare.sh: ulimit -n is $(ulimit -n); the memory test needs $((IDLE_CONNS + 512))" >&2
  exit 1
fi

STAMP=$(date -u +%Y-%m-%d)
OUT=$ROOT/benches/results
mkdir -p "$OUT"
if ((TLS_ONLY)); then BASE=$OUT/$STAMP-tls; elif ((QUICK)); then BASE=$OUT/$STAMP-quick; else BASE=$OUT/$STAMP; fi
RAW=$BASE.jsonl
# Read before the results files are rewritten: they may be tracked.
REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || REV="$REV+uncommitted changes"
: > "$RAW"
echo "{\"kind\":\"meta\",\"revision\":\"$REV\",\"started\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"loadavg_start\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >> "$RAW"
LOGDIR=$(mktemp -d /tmp/wsreactor-compare.XXXXXX)
TLS_DIR=$LOGDIR/tls
"$ROOT/autobahn/tls-certs.sh" "$TLS_DIR"

# ---- servers ----------------------------------------------------------------
SERVERS=(raw-tcp wsreactor tokio-tungstenite fastwebsockets)
# Throughput adds raw TCP with messages of the WebSocket frame's size.
THROUGHPUT_SERVERS=(raw-tcp raw-tcp-wire wsreactor tokio-tungstenite fastwebsockets)
port_of() {
  case $1 in
    raw-tcp) echo $((PORT_BASE + 1)) ;; wsreactor) echo $((PORT_BASE + 2)) ;;
    tokio-tungstenite) echo $((PORT_BASE + 3)) ;; fastwebsockets) echo $((PORT_BASE + 4)) ;;
    raw-tcp-wire) echo $((PORT_BASE + 1)) ;;  # the same raw-tcp-echo
    wsreactor-tls) echo $((PORT_BASE + 5)) ;; tokio-tungstenite-tls) echo $((PORT_BASE + 6)) ;;
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
    wsreactor) cmd=("$WSR" echo --addr "$addr") ;;
    tokio-tungstenite) cmd=("$PEERS/tokio-tungstenite-echo" --addr "$addr") ;;
    fastwebsockets) cmd=("$PEERS/fastwebsockets-echo" --addr "$addr") ;;
    wsreactor-tls) cmd=("$WSR" echo --addr "$addr" --tls-cert "$TLS_DIR/cert.pem" --tls-key "$TLS_DIR/key.pem") ;;
    tokio-tungstenite-tls) cmd=("$PEERS/tokio-tungstenite-tls-echo" --addr "$addr"
                                --cert "$TLS_DIR/cert.pem" --key "$TLS_DIR/key.pem") ;;
  esac
  if port_busy "$port"; then
    echo "compare.sh: port $port is already in use (set BENCH_PORT_BASE)" >&2; exit 1
  fi
  # env and taskset exec: $! is the server's own PID.
  env RUST_LOG=warn taskset -c "$SCPU" "${cmd[@]}" >>"$LOGDIR/$1.log" 2>&1 &
  SERVER_PID=$!
  # Wait (at most 5 s) until it accepts connections.
  for _ in $(seq 50); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    if port_busy "$port"; then return 0; fi
    sleep 0.1
  done
  echo "compare.sh: $1 did not start on $addr (see $LOGDIR/$1.log)" >&2
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

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

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
  [[ $server == *-tls ]] && mode=(--url "wss://localhost:$port/" --ca "$TLS_DIR/ca.pem")
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

# The servers in the order repetition REP runs them: rotated by REP, so no
# server always runs first or right after the same one.
rotation() {  # rep server...
  local rep=$1; shift
  local all=("$@") i
  for ((i = 0; i < $#; i++)); do echo "${all[$(((i + rep) % $#))]}"; done
}

if ((!TLS_ONLY)); then  # phases 1-3
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
fi  # phases 1-3

# ---- 4. TLS -----------------------------------------------------------------
TLS_SERVERS=(wsreactor wsreactor-tls tokio-tungstenite-tls)
TLS_CASES=("100x20B:100:20:binary" "200x16KiB:200:16384:binary")
echo "== TLS: $REPS repetition(s), ${WARMUP}s warm-up + ${DURATION}s per run" >&2
for server in "${TLS_SERVERS[@]}"; do
  start_server "$server"
  RUNNING[$server]=$SERVER_PID
  SERVER_PID=
done
for ((rep = 0; rep < REPS; rep++)); do
  REP=$rep
  for c in "${TLS_CASES[@]}"; do
    IFS=: read -r name conns size kind <<<"$c"
    for server in $(rotation "$rep" "${TLS_SERVERS[@]}"); do
      bench_run "$server" "$name" "$conns" "$size" "$kind" "$DURATION" "$WARMUP" tls
    done
  done
done
stop_running
echo "== TLS memory: $IDLE_CONNS idle TLS connections per server" >&2
for server in wsreactor-tls tokio-tungstenite-tls; do
  start_server "$server"
  sleep 0.5
  before=$(rss_kib "$SERVER_PID")
  taskset -c "$CCPU" "$PEERS/idle-conns" --addr "127.0.0.1:$(port_of "$server")" \
    --count "$IDLE_CONNS" --sources 10 --hold 120 --tls-ca "$TLS_DIR/ca.pem" \
    >"$LOGDIR/idle.out" 2>>"$LOGDIR/idle.log" &
  IDLE_PID=$!
  ok=0
  for _ in $(seq 1200); do  # at most 120 s: TLS handshakes cost more
    if grep -q '^ready' "$LOGDIR/idle.out"; then ok=1; break; fi
    kill -0 "$IDLE_PID" 2>/dev/null || break
    sleep 0.1
  done
  if ((ok)); then
    sleep 1
    after=$(rss_kib "$SERVER_PID")
    echo "{\"server\":\"$server\",\"kind\":\"memory-tls\",\"connections\":$IDLE_CONNS,\"rss_before_kib\":$before,\"rss_after_kib\":$after}" >> "$RAW"
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
