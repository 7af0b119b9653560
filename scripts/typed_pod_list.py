#!/usr/bin/env python3
"""Writes a copy of an openb pod list in which about a third of the GPU pods name allowed GPU models
(`gpu_spec`), drawn with a fixed seed from specs seen in the trace's gpuspec variants. Used to check
that an inflate preset that wins on the default list does not lose on model-constrained workloads.

Usage: scripts/typed_pod_list.py POD_LIST.csv OUT.csv
"""
import csv
import random
import sys

SPECS = ["V100M16|V100M32", "T4", "G2", "P100|T4|V100M16|V100M32", "G3", "A10", "G2|P100|T4|V100M16|V100M32"]


def main():
    source, out = sys.argv[1], sys.argv[2]
    rng = random.Random(1)
    with open(source, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        for row in rows:
            if int(row["num_gpu"]) > 0 and rng.random() < 0.33:
                row["gpu_spec"] = rng.choice(SPECS)
            writer.writerow(row)


if __name__ == "__main__":
    main()
