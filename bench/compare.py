#!/usr/bin/env python3
"""Side by side: `kdrun bench` JSON against `bench/pytorch_bench.py` JSON.

Usage: python3 bench/compare.py KDRUN.json TORCH.json [--markdown]

For each workload in both files: shape, median ms per iteration and samples/s of each, and
kdrun ÷ PyTorch in samples/s (above 1: kdrun is faster; below 1: PyTorch is). Workloads whose
shapes or parameter counts differ are flagged: their ratio compares different work.
"""
import argparse
import json
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def describe(r):
    m = r.get("machine", {})
    return (f"{r['tool']}: {r['framework']}, {r['backend']} ({r['adapter']}), {r['threads']} threads; "
            f"{r['date']}; {m.get('cores', '?')} cores of {m.get('cpu', '?')}; commit {r.get('commit')}"
            + ("; QUICK (smoke test, not a measurement)" if r.get("quick") else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kdrun")
    ap.add_argument("torch")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    a = ap.parse_args()
    k, t = load(a.kdrun), load(a.torch)
    tw = {w["name"]: w for w in t["workloads"]}
    rows, notes = [], []
    for w in k["workloads"]:
        o = tw.get(w["name"])
        if o is None:
            notes.append(f"{w['name']}: not in {a.torch}")
            continue
        flag = ""
        if w["shape"] != o["shape"]:
            flag = " †"
            notes.append(f"{w['name']}: shapes differ ({w['shape']} vs {o['shape']})")
        elif abs(w["params"] - o["params"]) > 0.01 * max(w["params"], o["params"]):
            flag = " †"
            notes.append(f"{w['name']}: parameter counts differ ({w['params']:,} vs {o['params']:,})")
        rows.append((w["name"] + flag, w["shape"], w["median_ms"], o["median_ms"],
                     w["samples_per_s"], o["samples_per_s"], w["samples_per_s"] / o["samples_per_s"]))
    for name in tw:
        if name not in {w["name"] for w in k["workloads"]}:
            notes.append(f"{name}: not in {a.kdrun}")
    print(describe(k))
    print(describe(t))
    print()
    head = ("workload", "shape", "kdrun ms", "PyTorch ms", "kdrun samples/s",
            "PyTorch samples/s", "kdrun ÷ PyTorch")
    if a.markdown:
        print("| " + " | ".join(head) + " |")
        print("|---|---|--:|--:|--:|--:|--:|")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]:,.1f} | {r[3]:,.1f} | {r[4]:,.1f} | {r[5]:,.1f} | {r[6]:.2f} |")
    else:
        print(f"{head[0]:<24} {head[1]:>10} {head[2]:>11} {head[3]:>11} {head[4]:>16} {head[5]:>18} {head[6]:>16}")
        for r in rows:
            print(f"{r[0]:<24} {r[1]:>10} {r[2]:>11.1f} {r[3]:>11.1f} {r[4]:>16.1f} {r[5]:>18.1f} {r[6]:>16.2f}")
    if notes:
        print()
        for n in notes:
            print("note: " + n)
    if not rows:
        sys.exit("error: no workload is in both files")


if __name__ == "__main__":
    main()
