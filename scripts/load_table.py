#!/usr/bin/env python3
"""Markdown table of `gpuplace load --json` files, one row each, for BENCHMARKS.md.

When the files are of more than one backend, each row names its backend (short: `cpu`,
`gpu: ADAPTER`) and the footer lists them in full."""
import json
import sys

reports = []
for path in sys.argv[1:]:
    r = json.load(open(path))
    reports.append(r.get("body", r))
backends = list(dict.fromkeys(r["backend"] for r in reports))
mixed = len(backends) > 1
head = "| jobs in the system | placed before | clients | loop | jobs | jobs per submission | submissions | jobs placed | decisions/s | requests/s | submit p50 ms | submit p99 ms | submit max ms | finish p50 ms | finish p99 ms | rounds | commits | sent late p99 ms |"
rule = "|---:|---:|---:|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
if mixed:
    head = "| backend " + head
    rule = "|:---" + rule
print(head)
print(rule)
for r in reports:
    loop = f"open, {r['rate']:,.0f}/s asked" if r.get("rate") else "closed"
    lag = f"{r['send_lag_ms'][1]:.2f}" if r.get("send_lag_ms") else "–"
    jobs = "24,000 shapes" if r.get("varied") else "one tray"
    backend = f"| {r['backend'].split(' (')[0]} " if mixed else ""
    print(
        f"{backend}| {r['in_system']:,} | {r['placed_before']:,} | {r['clients']} | {loop} | {jobs} | {r['batch']} | {r['submissions']:,} | {r['decisions']:,} "
        f"| {r['decisions_per_s']:,.0f} | {r['requests_per_s']:,.0f} | {r['submit_ms'][0]:.2f} | {r['submit_ms'][1]:.2f} "
        f"| {r['submit_ms'][2]:.2f} | {r['finish_ms'][0]:.2f} | {r['finish_ms'][1]:.2f} | {r.get('rounds', 0):,} | {r.get('commits', 0):,} | {lag} |"
    )
print()
windows = sorted({f"{r['window_ms']:.0f}" for r in reports})
print(f"Backend{'s' if mixed else ''}: {'; '.join(backends)}; batch window {', '.join(windows)} ms.")
