#!/usr/bin/env python3
"""Runs `gpuplace inflate` for every preset over a range of seeds and prints a Markdown table of the
GPU capacity allocated at 100% arrived (mean, min, max, per seed), with the command of each run.

Usage: scripts/inflate_table.py BINARY NODES.csv PODS.csv [--seeds 42-51] [--backend cpu]
The numbers come from the runs' --json files; nothing is typed in by hand.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

PRESETS = ["default", "fgd", "best-fit", "random"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("nodes")
    parser.add_argument("pods")
    parser.add_argument("--seeds", default="42-51")
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--presets", default=",".join(PRESETS))
    args = parser.parse_args()
    low, high = (int(x) for x in args.seeds.split("-"))
    seeds = list(range(low, high + 1))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            values = []
            for seed in seeds:
                out = os.path.join(tmp, f"{preset}-{seed}.json")
                command = [args.binary, "inflate", "--nodes", args.nodes, "--pods", args.pods,
                           "--policy-preset", preset, "--seed", str(seed), "--backend", args.backend,
                           "--json", out]
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
                with open(out) as f:
                    report = json.load(f)
                point = next(p for p in report["curve"] if p["arrived_pct"] == 100)
                values.append(point["allocated_pct"])
            rows.append((preset, values))
    print(f"| preset | mean | min | max | seeds {seeds[0]}–{seeds[-1]} |")
    print("|---|---:|---:|---:|---|")
    for preset, values in rows:
        mean = sum(values) / len(values)
        each = " ".join(f"{v:.2f}" for v in values)
        print(f"| {preset} | {mean:.2f} | {min(values):.2f} | {max(values):.2f} | {each} |")


if __name__ == "__main__":
    sys.exit(main())
