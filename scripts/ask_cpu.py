#!/usr/bin/env python3
"""A jobs file whose small jobs ask for CPU and memory: every job of at most 4 GPUs given by `gpus`
alone becomes one pod (`pods` 1) asking for CORES cores and GB GB (GiB) of memory per GPU. For the
CPU-and-memory measurements of BENCHMARKS.md.

Usage: scripts/ask_cpu.py IN.json OUT.json CORES_PER_GPU [GB_PER_GPU (default 128)]
"""
import json
import sys


def whole(x):
    """x, as an integer when it is one (so that JSON reads 96, not 96.0)."""
    return int(x) if float(x).is_integer() else x


def main():
    src, dst, cores = sys.argv[1], sys.argv[2], float(sys.argv[3])
    gb = float(sys.argv[4]) if len(sys.argv) > 4 else 128.0
    doc = json.load(open(src))
    asked = 0
    for job in doc["jobs"]:
        if job["gpus"] <= 4 and "pods" not in job:
            job["pods"] = 1
            job["cpu"] = whole(cores * job["gpus"])
            job["memory_gb"] = whole(gb * job["gpus"])
            asked += 1
    with open(dst, "x") as out:
        json.dump(doc, out)
    print(f"{asked} of {len(doc['jobs'])} jobs ask for CPU and memory", file=sys.stderr)


if __name__ == "__main__":
    main()
