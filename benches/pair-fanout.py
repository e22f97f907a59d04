#!/usr/bin/env python3
"""Summarise benches/pair-fanout.sh output: python3 benches/pair-fanout.py OUT.jsonl

Prints a Markdown section: per case and server the median deliveries/s and
server CPU per delivery, then the paired ratios (within one repetition):
new/raw and old/raw, and new/old, for deliveries/s and for CPU per delivery
(below 1 = cheaper than the reference), each as median (min-max).
"""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
runs = [r for r in rows if "server" in r]
failed = [r for r in runs if r["run"] is None]
faulty = [r for r in runs if r["run"] and any(r["run"]["faults"].values())]
ok = {(r["case"], r["rep"], r["server"]): r["run"] for r in runs if r["run"]}
cases = list(dict.fromkeys(r["case"] for r in runs))
reps = sorted({r["rep"] for r in runs})
servers = ["new", "old", "raw"]


def med(xs):
    return f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})" if xs else "n/a"


print("| case | server | deliveries/s (median) | server CPU us/delivery (median) | runs |")
print("|---|---|---|---|---|")
for c in cases:
    for s in servers:
        rs = [ok[(c, p, s)] for p in reps if (c, p, s) in ok]
        if not rs:
            continue
        rate = statistics.median(r["msg_per_s"] for r in rs)
        cpu = statistics.median(r["server_cpu_us_per_msg"] for r in rs)
        print(f"| {c} | {s} | {rate:,.0f} | {cpu:.3f} | {len(rs)} |")
print()
print("Paired ratios, median (min-max) of the per-repetition ratios. msg/s: higher is better;")
print("CPU: server CPU per delivery, lower is better.")
print()
print("| case | new/raw msg/s | old/raw msg/s | new/old msg/s | new/raw CPU | old/raw CPU | new/old CPU |")
print("|---|---|---|---|---|---|---|")
for c in cases:
    ratios = defaultdict(list)
    for p in reps:
        got = {s: ok.get((c, p, s)) for s in servers}
        for a, b in [("new", "raw"), ("old", "raw"), ("new", "old")]:
            if got[a] and got[b]:
                ratios[f"{a}/{b} msg"].append(got[a]["msg_per_s"] / got[b]["msg_per_s"])
                ratios[f"{a}/{b} cpu"].append(
                    got[a]["server_cpu_us_per_msg"] / got[b]["server_cpu_us_per_msg"]
                )
    cells = [med(ratios[k]) for k in
             ["new/raw msg", "old/raw msg", "new/old msg", "new/raw cpu", "old/raw cpu", "new/old cpu"]]
    print(f"| {c} | " + " | ".join(cells) + " |")
print()
print(f"Runs failed: {len(failed)}; runs with faults (loss, duplicates, order, content): {len(faulty)}.")
