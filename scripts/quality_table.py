#!/usr/bin/env python3
"""Markdown rows from `scripts/quality.py --json` files: each policy's share of the optimum over all
the instances of the files together (mean and worst), as BENCHMARKS.md's quality tables show it,
and a last row for the priority-lexicographic optimum itself (of the optimum: the most a scheduler
keeping strict priority can reach).

Usage: scripts/quality_table.py LABEL FILE.json [FILE.json ...]
"""
import json
import os
import sys


def main():
    label, paths = sys.argv[1], sys.argv[2:]
    rows = [row for path in paths for row in json.load(open(path))["instances"]]
    policies = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    for policy in policies:
        share = [r[policy]["gpus"] / r["optimum_gpus"] for r in rows if r["optimum_gpus"]]
        lex = [r[policy]["gpus"] / r["lexicographic_gpus"] for r in rows if r["lexicographic_gpus"]]
        top = [r[policy]["top_gpus"] / r["optimum_top_gpus"] for r in rows if r["optimum_top_gpus"]]
        cells = [f"{100 * sum(v) / len(v):.2f}% | {100 * min(v):.2f}%" for v in (share, lex, top)]
        print(f"| {label} | {os.path.basename(policy)} | {len(rows)} | " + " | ".join(cells) + " |")
    # The lexicographic optimum itself: the most a scheduler keeping strict priority can reach.
    ceiling = [r["lexicographic_gpus"] / r["optimum_gpus"] for r in rows if r["optimum_gpus"]]
    print(f"| {label} | lexicographic optimum | {len(rows)} | {100 * sum(ceiling) / len(ceiling):.2f}% | "
          f"{100 * min(ceiling):.2f}% | 100.00% | 100.00% | 100.00% | 100.00% |")


if __name__ == "__main__":
    main()
