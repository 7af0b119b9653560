#!/usr/bin/env python3
"""Placement quality against an exact optimum.

Generates small, contended, seeded instances (a fleet of NVLink racks of 4-GPU trays and 8-GPU
servers, some trays cordoned, failed or partly in use; more jobs than GPUs, of every kind, some
with pods, latency bounds, residency and HBM needs), places each with `gpuplace place` under the
policies asked for, and solves two integer programs per instance with HiGHS (`pip install highspy`):

- the most GPUs any placement can give (one job once, all or nothing, pods on trays under the
  shape rule of src/kernel/shape.rs, whole racks for jobs larger than one NVLink domain, site power,
  and every fixed need: HBM, jurisdiction, provider, latency, online date);
- the most GPUs the top priority class can get (the first step of a priority-lexicographic optimum).

It prints, per policy, the mean and the worst over instances of gpuplace's GPUs placed as a share of
the optimum, and the top class's share of its optimum. The feasibility rules here are written
independently of gpuplace's code (from docs/FORMATS.md), so a rule that differs shows up as a
placement the optimum could not make (reported as an error).

Usage: scripts/quality.py GPUPLACE_BINARY [--instances 16] [--seed 1] [--policy NAME_OR_FILE ...]
       [--json FILE]
Exit status: 0, or 3 when highspy is missing (the caller skips), 1 on an inconsistency.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

try:
    import highspy
except ImportError:  # the caller (a test) skips
    print("SKIPPED: highspy is not installed (pip install highspy)", file=sys.stderr)
    sys.exit(3)

DATE = "2026-11-26"
REGIONS = ["r0", "r1"]
RACK_TYPES = {
    # name: (gpu_model, gpus, hbm_gb_per_gpu, kw, nodes)
    "nvl16": ("GB300", 16, 288, 32.0, 4),
    "nvl8": ("GB200", 8, 186, 15.0, 2),
    "hgx8": ("H100", 8, 80, 10.2, 1),
}


def instance(rng):
    """A fleet file and a jobs file (as Python objects) for one contended instance."""
    sites = []
    for s in range(rng.randint(2, 3)):
        clusters = []
        for c in range(rng.randint(1, 2)):
            rack_type = rng.choice(list(RACK_TYPES))
            racks = rng.randint(2, 4)
            nodes = RACK_TYPES[rack_type][4]
            node_gpus = RACK_TYPES[rack_type][1] // nodes
            entries = []
            for r in range(racks):
                for n in range(nodes):
                    roll = rng.random()
                    if roll < 0.05:
                        entries.append({"rack": r, "node": n, "state": "failed"})
                    elif roll < 0.10:
                        entries.append({"rack": r, "node": n, "state": "cordoned"})
                    elif roll < 0.30:
                        entries.append({"rack": r, "node": n, "used_gpus": rng.randint(1, node_gpus)})
            cluster = {"name": f"c{c}", "rack_type": rack_type, "racks": racks}
            if entries:
                cluster["nodes"] = entries
            clusters.append(cluster)
        gpus = sum(RACK_TYPES[c["rack_type"]][1] * c["racks"] for c in clusters)
        # Sometimes power binds: room for about half of the site's GPUs.
        mw = 10.0 if rng.random() < 0.6 else round(gpus * 0.5 * 2.1 / 1000, 4)
        sites.append({
            # The first two sites differ, so that every name a job may give exists.
            "name": f"s{s}", "provider": ["P", "Q"][s] if s < 2 else rng.choice(["P", "Q"]), "country": "XX",
            "jurisdiction": ["US", "EU"][s] if s < 2 else rng.choice(["US", "EU"]), "power_mw": mw, "pue": 1.2,
            "price_usd_per_mwh": rng.randint(20, 150), "carbon_g_per_kwh": rng.randint(20, 600),
            "online": "2026-01-01",
            "latency_ms": {r: rng.randint(5, 150) for r in REGIONS},
            "clusters": clusters,
        })
    fleet = {
        "regions": REGIONS,
        "rack_types": {
            name: {"gpu_model": m, "gpus": g, "hbm_gb_per_gpu": h, "kw": kw, "nodes": n}
            for name, (m, g, h, kw, n) in RACK_TYPES.items()
        },
        "sites": sites,
    }
    capacity = sum(RACK_TYPES[c["rack_type"]][1] * c["racks"] for s in sites for c in s["clusters"])
    jobs = []
    demand = 0
    n = 0
    while demand < capacity * rng.uniform(1.3, 2.0):
        kind = rng.choice(["inference", "agentic", "multimodal", "training"])
        job = {"id": f"j{n:03}", "kind": kind, "priority": rng.randint(0, 3), "duration_h": 1,
               "region": rng.choice(REGIONS), "hbm_gb_per_gpu": rng.choice([0, 40, 80, 120, 180, 250])}
        if rng.random() < 0.25:
            pod_gpus = rng.choice([1, 2, 4])
            job["pods"] = rng.randint(1, 6)
            job["gpus"] = job["pods"] * pod_gpus
        else:
            job["gpus"] = rng.choice([1, 1, 2, 2, 4, 4, 8, 16, 24, 32])
        if kind in ("inference", "agentic") and rng.random() < 0.6:
            job["max_latency_ms"] = rng.choice([40, 80, 150])
        if rng.random() < 0.2:
            job["jurisdictions"] = [rng.choice(["US", "EU"])]
        if rng.random() < 0.1:
            job["providers"] = [rng.choice(["P", "Q"])]
        jobs.append(job)
        demand += job["gpus"]
        n += 1
    return fleet, jobs


def pod_layout(job, node_gpus):
    """(full pods, their size, the remainder pod's size or 0): docs/FORMATS.md, `gpus` and `pods`."""
    g = job["gpus"]
    if "pods" in job:
        return job["pods"], g // job["pods"], 0
    if g <= node_gpus:
        return 1, g, 0
    return g // node_gpus, node_gpus, g % node_gpus


def racks_of(fleet):
    """Every rack: (site index, cluster key, rack type, the usable free GPUs of each node)."""
    out = []
    for si, site in enumerate(fleet["sites"]):
        for ci, cluster in enumerate(site["clusters"]):
            _, gpus, _, _, nodes = RACK_TYPES[cluster["rack_type"]]
            node_gpus = gpus // nodes
            entries = {(e["rack"], e["node"]): e for e in cluster.get("nodes", [])}
            for r in range(cluster["racks"]):
                free = []
                for n in range(nodes):
                    e = entries.get((r, n), {})
                    state = e.get("state", "ready")
                    free.append(node_gpus - e.get("used_gpus", 0) if state == "ready" else 0)
                out.append((si, (si, ci), cluster["rack_type"], free))
    return out


def eligible(job, site, rack_type):
    _, _, hbm, _, _ = RACK_TYPES[rack_type]
    if hbm < job["hbm_gb_per_gpu"]:
        return False
    if "jurisdictions" in job and site["jurisdiction"] not in job["jurisdictions"]:
        return False
    if "providers" in job and site["provider"] not in job["providers"]:
        return False
    if "max_latency_ms" in job and site["latency_ms"][job["region"]] > job["max_latency_ms"]:
        return False
    return True


def gpu_watts(rack_type):
    _, gpus, _, kw, _ = RACK_TYPES[rack_type]
    return -(-round(kw * 1000) // gpus)


def optimum(fleet, jobs, lexicographic=False):
    """The most GPUs the jobs can hold on the fleet (an integer program). With `lexicographic`, the
    GPUs of a priority-lexicographic optimum instead: the most GPUs of the top priority class, then
    the most of the next class without giving up any of the first, and so on."""
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", 120.0)
    h.setOptionValue("mip_rel_gap", 0.0)
    racks = racks_of(fleet)
    node_load = {}  # (rack, node) -> list of (coefficient, variable)
    placed = {j: [] for j in range(len(jobs))}
    site_power = {}
    for j, job in enumerate(jobs):
        by_cluster = {}
        for ri, (si, key, rack_type, free) in enumerate(racks):
            by_cluster.setdefault(key, []).append(ri)
        for key, rack_ids in by_cluster.items():
            si, _ = key
            site = fleet["sites"][si]
            rack_type = racks[rack_ids[0]][2]
            if not eligible(job, site, rack_type):
                continue
            _, gpus, _, _, nodes = RACK_TYPES[rack_type]
            node_gpus = gpus // nodes
            full, size, rest = pod_layout(job, node_gpus)
            per_rack = nodes * (node_gpus // size)
            pods = full + (1 if rest else 0)
            if per_rack == 0:
                continue
            watts = job["gpus"] * gpu_watts(rack_type)
            if pods <= per_rack:
                for ri in rack_ids:
                    free = racks[ri][3]
                    x = h.addBinary()
                    placed[j].append(x)
                    site_power.setdefault(si, []).append((watts, x))
                    full_vars, rest_vars = [], []
                    for n, f in enumerate(free):
                        if f >= size and full:
                            y = h.addIntegral(lb=0, ub=min(full, f // size))
                            full_vars.append(y)
                            node_load.setdefault((ri, n), []).append((size, y))
                        if rest and f >= rest:
                            z = h.addBinary()
                            rest_vars.append(z)
                            node_load.setdefault((ri, n), []).append((rest, z))
                    if full:
                        h.addConstr(sum(full_vars) - full * x == 0 if full_vars else x == 0)
                    if rest:
                        h.addConstr(sum(rest_vars) - x == 0 if rest_vars else x == 0)
            else:
                # Whole racks of one cluster: all but the last filled with `per_rack` full pods, the
                # last with the rest (its room left over stays free for others).
                needed = -(-pods // per_rack)
                whole = [ri for ri in rack_ids if sum(racks[ri][3]) == gpus]
                if len(whole) < needed:
                    continue
                last_full = full - (needed - 1) * per_rack
                s = h.addBinary()
                placed[j].append(s)
                site_power.setdefault(si, []).append((watts, s))
                fulls, lasts = [], []
                for ri in whole:
                    wf, wl = h.addBinary(), h.addBinary()
                    fulls.append(wf)
                    lasts.append(wl)
                    h.addConstr(wf + wl <= 1)
                    per_node = node_gpus // size
                    ys, zs = [], []
                    for n in range(nodes):
                        node_load.setdefault((ri, n), []).append((size * per_node, wf))
                        if last_full:
                            y = h.addIntegral(lb=0, ub=per_node)
                            ys.append(y)
                            node_load[(ri, n)].append((size, y))
                        if rest:
                            z = h.addBinary()
                            zs.append(z)
                            node_load[(ri, n)].append((rest, z))
                    if last_full:
                        h.addConstr(sum(ys) - last_full * wl == 0)
                    if rest:
                        h.addConstr(sum(zs) - wl == 0)
                h.addConstr(sum(fulls) - (needed - 1) * s == 0)
                h.addConstr(sum(lasts) - s == 0)
    for (ri, n), load in node_load.items():
        h.addConstr(sum(c * v for c, v in load) <= racks[ri][3][n])
    for j, vars_ in placed.items():
        if len(vars_) > 1:
            h.addConstr(sum(vars_) <= 1)
    for si, load in site_power.items():
        site = fleet["sites"][si]
        used = 0
        for cluster in site["clusters"]:
            _, gpus, _, _, nodes = RACK_TYPES[cluster["rack_type"]]
            used += sum(e.get("used_gpus", 0) for e in cluster.get("nodes", [])) * gpu_watts(cluster["rack_type"])
        free_w = round(site["power_mw"] * 1_000_000) - used
        h.addConstr(sum(c * v for c, v in load) <= free_w)
    def solve(members):
        objective = sum(jobs[j]["gpus"] * v for j in members for v in placed[j])
        if isinstance(objective, int):  # no job of these can go anywhere
            return 0, None
        h.maximize(objective)
        status = h.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            raise RuntimeError(f"HiGHS did not prove an optimum: {status}")
        return round(h.getInfo().objective_function_value), objective

    if not lexicographic:
        return solve(range(len(jobs)))[0]
    total = 0
    for priority in sorted({job["priority"] for job in jobs}, reverse=True):
        members = [j for j, job in enumerate(jobs) if job["priority"] == priority]
        value, objective = solve(members)
        if objective is not None:
            h.addConstr(objective >= value)
        total += value
    return total


def place(binary, fleet_path, jobs_path, policy, workdir):
    out = os.path.join(workdir, "out.json")
    args = [binary, "place", "--fleet", fleet_path, "--jobs", jobs_path, "--at", DATE, "--backend", "cpu",
            "--out", out]
    args += ["--policy", policy] if os.path.exists(policy) else ["--policy-preset", policy]
    if os.path.exists(out):
        os.remove(out)
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        return {p["job"] for p in json.load(f)["placements"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("binary")
    parser.add_argument("--instances", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policy", action="append", default=None,
                        help="a preset name or a policy file; repeat (default: default and best-fit)")
    parser.add_argument("--json", help="write the per-instance results here")
    args = parser.parse_args()
    policies = args.policy or ["default", "best-fit"]
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for i in range(args.instances):
            rng = random.Random(args.seed * 1_000_003 + i)
            fleet, jobs = instance(rng)
            fleet_path, jobs_path = os.path.join(workdir, "fleet.json"), os.path.join(workdir, "jobs.json")
            with open(fleet_path, "w") as f:
                json.dump(fleet, f)
            with open(jobs_path, "w") as f:
                json.dump({"jobs": jobs}, f)
            best = optimum(fleet, jobs)
            best_lex = optimum(fleet, jobs, lexicographic=True)
            top = max(j["priority"] for j in jobs)
            top_jobs = [j for j in jobs if j["priority"] == top]
            best_top = optimum(fleet, top_jobs)
            row = {"instance": i, "jobs": len(jobs), "optimum_gpus": best, "lexicographic_gpus": best_lex,
                   "optimum_top_gpus": best_top}
            for policy in policies:
                placed = place(args.binary, fleet_path, jobs_path, policy, workdir)
                gpus = sum(j["gpus"] for j in jobs if j["id"] in placed)
                top_gpus = sum(j["gpus"] for j in top_jobs if j["id"] in placed)
                if gpus > best or top_gpus > best_top:
                    print(f"instance {i}: {policy} placed more than the optimum ({gpus} > {best} or "
                          f"{top_gpus} > {best_top}): the rules here and gpuplace's differ", file=sys.stderr)
                    sys.exit(1)
                row[policy] = {"gpus": gpus, "top_gpus": top_gpus}
            rows.append(row)
            print(f"instance {i:2}: {len(jobs):3} jobs, optimum {best:4} GPUs, lexicographic {best_lex:4} "
                  f"(top class {best_top:3}); "
                  + "; ".join(f"{p} {row[p]['gpus']} ({row[p]['top_gpus']})" for p in policies), file=sys.stderr)
    print(f"{'policy':<24} {'of optimum: mean':>17} {'worst':>7} {'of lexicographic: mean':>23} {'worst':>7} "
          f"{'top class: mean':>16} {'worst':>7}")
    summary = {}
    for policy in policies:
        share = [r[policy]["gpus"] / r["optimum_gpus"] for r in rows if r["optimum_gpus"]]
        lex = [r[policy]["gpus"] / r["lexicographic_gpus"] for r in rows if r["lexicographic_gpus"]]
        top = [r[policy]["top_gpus"] / r["optimum_top_gpus"] for r in rows if r["optimum_top_gpus"]]
        summary[policy] = {"mean": sum(share) / len(share), "worst": min(share),
                           "lexicographic_mean": sum(lex) / len(lex), "lexicographic_worst": min(lex),
                           "top_mean": sum(top) / len(top), "top_worst": min(top)}
        s = summary[policy]
        print(f"{os.path.basename(policy):<24} {100 * s['mean']:16.2f}% {100 * s['worst']:6.2f}% "
              f"{100 * s['lexicographic_mean']:22.2f}% {100 * s['lexicographic_worst']:6.2f}% "
              f"{100 * s['top_mean']:15.2f}% {100 * s['top_worst']:6.2f}%")
    # What no scheduler keeping strict priority can exceed: the lexicographic optimum's GPUs as a
    # share of the optimum's (the optimum may give a lower class what a higher one needed).
    ceiling = [r["lexicographic_gpus"] / r["optimum_gpus"] for r in rows if r["optimum_gpus"]]
    if ceiling:
        summary["strict_priority_ceiling"] = {"mean": sum(ceiling) / len(ceiling), "worst": min(ceiling)}
        print(f"{'(lexicographic optimum)':<24} {100 * sum(ceiling) / len(ceiling):16.2f}% {100 * min(ceiling):6.2f}%"
              "   <- the most a scheduler keeping strict priority can reach")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"instances": rows, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
