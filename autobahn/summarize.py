#!/usr/bin/env python3
"""Summarize an Autobahn|Testsuite fuzzingclient run (reports/servers/index.json).

Prints counts by behavior and behaviorClose, lists every case whose behavior or
behaviorClose is not OK/INFORMATIONAL, and compares the run with the expected
results file (index.json without "duration"/"reportfile", keys sorted).

Exit status: 0 if every case is OK/INFORMATIONAL and the run matches the
expected file (or there is no expected file yet); 1 otherwise; 2 on usage or
input errors. --update writes this run as the new expected file.
"""

import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
GOOD = ("OK", "INFORMATIONAL")
VOLATILE = ("duration", "reportfile")


def case_key(case_id):
    """Natural sort key: '1.1.10' after '1.1.9'."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.]", case_id)]


def strip(index):
    return {
        agent: {
            case: {k: v for k, v in result.items() if k not in VOLATILE}
            for case, result in cases.items()
        }
        for agent, cases in index.items()
    }


def counts(cases, field):
    out = {}
    for result in cases.values():
        value = str(result.get(field))
        out[value] = out.get(value, 0) + 1
    return out


def print_counts(agent, cases):
    by_behavior = counts(cases, "behavior")
    by_close = counts(cases, "behaviorClose")
    order = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
    values = [v for v in order if v in by_behavior or v in by_close]
    values += sorted((set(by_behavior) | set(by_close)) - set(order))
    print("agent %s: %d cases" % (agent, len(cases)))
    print("  %-15s %9s %14s" % ("result", "behavior", "behaviorClose"))
    for v in values:
        print("  %-15s %9d %14d" % (v, by_behavior.get(v, 0), by_close.get(v, 0)))


def bad_cases(agent, cases, reports_dir):
    bad = []
    for case in sorted(cases, key=case_key):
        r = cases[case]
        if r.get("behavior") in GOOD and r.get("behaviorClose") in GOOD:
            continue
        report = r.get("reportfile")
        bad.append(
            "  %-10s behavior=%-13s behaviorClose=%-13s remoteCloseCode=%s%s"
            % (
                case,
                r.get("behavior"),
                r.get("behaviorClose"),
                r.get("remoteCloseCode"),
                ("  " + display(os.path.join(reports_dir, report))) if report else "",
            )
        )
    return bad


def compare(expected, actual):
    """Return human-readable differences between two stripped indexes."""
    diffs = []
    for agent in sorted(set(expected) | set(actual)):
        if agent not in actual:
            diffs.append("agent %s: expected but not in this run" % agent)
            continue
        if agent not in expected:
            diffs.append("agent %s: in this run but not expected" % agent)
            continue
        exp, act = expected[agent], actual[agent]
        for case in sorted(set(exp) | set(act), key=case_key):
            if case not in act:
                diffs.append("%s %s: expected %s, missing from this run" % (agent, case, fmt(exp[case])))
            elif case not in exp:
                diffs.append("%s %s: new case %s, not in expected results" % (agent, case, fmt(act[case])))
            elif exp[case] != act[case]:
                changed = [
                    "%s %s -> %s" % (k, json.dumps(exp[case].get(k)), json.dumps(act[case].get(k)))
                    for k in sorted(set(exp[case]) | set(act[case]))
                    if exp[case].get(k) != act[case].get(k)
                ]
                diffs.append("%s %s: %s" % (agent, case, ", ".join(changed)))
    return diffs


def display(path):
    """Path relative to the current directory when it is below it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def fmt(result):
    return "(%s)" % ", ".join("%s=%s" % (k, result[k]) for k in sorted(result))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--index", default=os.path.join(HERE, "reports", "servers", "index.json"),
                    help="wstest index.json (default: %(default)s)")
    ap.add_argument("--expected", default=os.path.join(HERE, "expected-results.json"),
                    help="expected results file (default: %(default)s)")
    ap.add_argument("--update", action="store_true",
                    help="write this run (stripped) as the new expected results file")
    args = ap.parse_args()

    try:
        with open(args.index) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        print("summarize: cannot read %s: %s" % (args.index, e), file=sys.stderr)
        return 2
    if not isinstance(index, dict) or not index:
        print("summarize: %s has no results" % args.index, file=sys.stderr)
        return 2

    reports_dir = os.path.dirname(os.path.abspath(args.index))
    status = 0

    print("== Autobahn results (%s)" % display(args.index))
    bad = {}
    for agent in sorted(index):
        print_counts(agent, index[agent])
        agent_bad = bad_cases(agent, index[agent], reports_dir)
        if agent_bad:
            bad[agent] = agent_bad
    if bad:
        status = 1
        print()
        print("== Cases not OK/INFORMATIONAL (%d)" % sum(len(v) for v in bad.values()))
        for agent in sorted(bad):
            print("%s:" % agent)
            print("\n".join(bad[agent]))
    else:
        print("all cases OK/INFORMATIONAL")

    actual = strip(index)
    expected_name = display(args.expected)
    print()
    if args.update:
        with open(args.expected, "w") as f:
            json.dump(actual, f, indent=2, sort_keys=True)
            f.write("\n")
        n = sum(len(c) for c in actual.values())
        print("== Wrote %s (%d cases)" % (expected_name, n))
    elif not os.path.exists(args.expected):
        print("== No expected results file %s yet; skipping comparison "
              "(create it with --update)" % expected_name)
    else:
        try:
            with open(args.expected) as f:
                expected = json.load(f)
        except (OSError, ValueError) as e:
            print("summarize: cannot read %s: %s" % (args.expected, e), file=sys.stderr)
            return 2
        diffs = compare(expected, actual)
        if diffs:
            status = 1
            print("== Differences from %s (%d)" % (expected_name, len(diffs)))
            print("\n".join("  " + d for d in diffs))
            print("(if these changes are intended: autobahn/run.sh server --update, "
                  "or summarize.py --update on this run)")
        else:
            print("== Matches %s" % expected_name)

    print()
    print("RESULT: %s" % ("PASS" if status == 0 else "FAIL"))
    return status


if __name__ == "__main__":
    sys.exit(main())
