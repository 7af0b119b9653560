#!/usr/bin/env python3
"""Markdown table of `gpuplace load --json` files, one row each, for BENCHMARKS.md."""
import json
import sys

print("| jobs in the system | placed before | clients | loop | jobs | jobs per submission | submissions | jobs placed | decisions/s | requests/s | submit p50 ms | submit p99 ms | submit max ms | finish p50 ms | finish p99 ms | rounds | commits | sent late p99 ms |")
print("|---:|---:|---:|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for path in sys.argv[1:]:
    r = json.load(open(path))
    r = r.get("body", r)
    loop = f"open, {r['rate']:,.0f}/s asked" if r.get("rate") else "closed"
    lag = f"{r['send_lag_ms'][1]:.2f}" if r.get("send_lag_ms") else "–"
    jobs = "24,000 shapes" if r.get("varied") else "one tray"
    print(
        f"| {r['in_system']:,} | {r['placed_before']:,} | {r['clients']} | {loop} | {jobs} | {r['batch']} | {r['submissions']:,} | {r['decisions']:,} "
        f"| {r['decisions_per_s']:,.0f} | {r['requests_per_s']:,.0f} | {r['submit_ms'][0]:.2f} | {r['submit_ms'][1]:.2f} "
        f"| {r['submit_ms'][2]:.2f} | {r['finish_ms'][0]:.2f} | {r['finish_ms'][1]:.2f} | {r.get('rounds', 0):,} | {r.get('commits', 0):,} | {lag} |"
    )
print()
first = json.load(open(sys.argv[1]))
first = first.get("body", first)
print(f"Backend: {first['backend']}; batch window {first['window_ms']:.0f} ms.")
