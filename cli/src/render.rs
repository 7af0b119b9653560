//! Text for people: every table and summary the command prints. Rendering only; the numbers come
//! from the library.

use std::fmt::Write;
use std::time::Duration;

use gpuplace::engine::explain::Explanation;
use gpuplace::kernel::score::Term;
use gpuplace::kernel::state::NodeState;
use gpuplace::replay::ReplayReport;
use gpuplace::report::metrics::site_gpus;
use gpuplace::report::out::OutFile;
use gpuplace::sim::bench::BenchReport;
use gpuplace::sim::compare::CompareRow;
use gpuplace::{Fleet, Placement};

/// Writes a line to stderr (notices, errors). A stderr that cannot be written is ignored: there is
/// nowhere left to report it.
pub fn note(line: &str) {
    use std::io::Write as _;
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// `place --tenants`: what each tenant holds against its quota and borrowing limit, a line each
/// after a header.
pub fn tenants(tenants: &gpuplace::Tenants, held_milli: &[u64]) -> String {
    let mut text = format!("\n\n{:<20} {:>12} {:>10} {:>14}", "tenant", "GPUs held", "quota", "borrow limit");
    for (tenant, &held) in tenants.tenants().iter().zip(held_milli) {
        let limit = tenant.borrow_limit_gpus.map_or_else(|| "none".to_string(), |b| b.to_string());
        let held = held as f64 / 1000.0;
        text.push_str(&format!("\n{:<20} {held:>12} {:>10} {limit:>14}", tenant.name, tenant.quota_gpus));
    }
    text
}

/// `place`: the summary.
pub fn summary(out: &OutFile, placement: &Placement, wall: Duration) -> String {
    let s = &out.summary;
    let mut text = String::new();
    let _ = writeln!(text, "placed {} of {} jobs ({} GPUs) on {}", s.placed, s.jobs, s.gpus_placed, s.at);
    let _ = writeln!(text, "\n{:<12} {:>8} {:>9} {:>12}", "kind", "placed", "unplaced", "GPUs placed");
    for k in &s.kinds {
        let _ = writeln!(text, "{:<12} {:>8} {:>9} {:>12}", k.kind.name(), k.placed, k.unplaced, k.gpus_placed);
    }
    if !s.unplaced_by_cause.is_empty() {
        let causes: Vec<String> = s.unplaced_by_cause.iter().map(|(code, count)| format!("{code} {count}")).collect();
        let _ = writeln!(text, "unplaced by cause: {}", causes.join(", "));
    }
    let _ = writeln!(
        text,
        "\n{:<22} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "site", "GPUs", "used", "free", "MW drawn", "MW avail"
    );
    for site in &s.sites {
        let _ = writeln!(
            text,
            "{:<22} {:>9} {:>9} {:>9} {:>10.2} {:>10.2}",
            site.site, site.gpus, site.gpus_used, site.gpus_free, site.it_mw_drawn, site.it_mw_available
        );
    }
    let _ = writeln!(
        text,
        "\nenergy of placed jobs: {:.0} USD/h, {:.0} kg CO2/h",
        s.energy_usd_per_hour, s.carbon_kg_per_hour
    );
    let _ = writeln!(
        text,
        "backend: {}; {} scoring rounds, {} pairs scored, {} host re-scans",
        placement.backend, placement.stats.rounds, placement.stats.scored_pairs, placement.stats.host_rescans
    );
    if placement.policy.consolidate {
        let _ = writeln!(
            text,
            "consolidation: {} jobs placed by moving {} placed ones ({} racks tried)",
            placement.stats.consolidated, placement.stats.moves, placement.consolidation.tries
        );
    }
    let _ = write!(text, "wall time: {:.3} s", wall.as_secs_f64());
    text
}

/// `replay`: the summary.
pub fn replay(report: &ReplayReport, backend: &str, wall: Duration) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "{} intervals of {} s replayed", report.intervals, report.interval_s);
    let _ = writeln!(
        text,
        "\n{:<12} {:>8} {:>8} {:>9} {:>10} {:>10} {:>10}",
        "kind", "jobs", "placed", "rejected", "p50 (s)", "p95 (s)", "p99 (s)"
    );
    for k in &report.kinds {
        let _ = writeln!(
            text,
            "{:<12} {:>8} {:>8} {:>9} {:>10} {:>10} {:>10}",
            k.kind.name(),
            k.jobs,
            k.placed,
            k.rejected,
            k.delay_p50_s,
            k.delay_p95_s,
            k.delay_p99_s
        );
    }
    let peak = |site: usize| report.timeline.iter().map(|s| s.gpus_used[site]).max().unwrap_or(0);
    let peak_mw = |site: usize| report.timeline.iter().map(|s| s.it_mw[site]).fold(0.0, f64::max);
    let _ = writeln!(text, "\n{:<22} {:>9} {:>14} {:>12}", "site", "GPUs", "peak GPUs used", "peak MW");
    for (i, site) in report.sites.iter().enumerate() {
        let _ = writeln!(text, "{:<22} {:>9} {:>14} {:>12.2}", site, report.site_gpus[i], peak(i), peak_mw(i));
    }
    let _ = writeln!(
        text,
        "\nGPUs placed {}; stranded GPUs mean {:.1}, max {}; energy {:.0} USD, {:.0} kg CO2; latency violations {}",
        report.gpus_placed,
        report.stranded_gpus_mean,
        report.stranded_gpus_max,
        report.energy_usd,
        report.carbon_kg,
        report.latency_violations
    );
    if report.preemptions > 0 {
        let _ = writeln!(
            text,
            "preemptions {}: evicted jobs had run {:.1} GPU-hours, to be run again",
            report.preemptions, report.preempted_gpu_hours
        );
    }
    let _ = writeln!(
        text,
        "scheduling per interval p50 {:.3} ms, p99 {:.3} ms, total {:.3} s; backend: {backend}; wall time {:.3} s",
        report.scheduling_ms_p50,
        report.scheduling_ms_p99,
        report.scheduling_s_total,
        wall.as_secs_f64()
    );
    text
}

/// `fleet`: the summary table.
pub fn fleet(fleet: &Fleet) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<22} {:<16} {:<4} {:>6} {:>8} {:>8} {:>9}  online",
        "site", "provider", "jur", "racks", "GPUs", "MW", "$/MWh"
    );
    let gpus = site_gpus(fleet);
    let mut total_racks = 0;
    for (s, site) in fleet.sites.iter().enumerate() {
        let racks: usize = site.clusters.clone().map(|c| fleet.clusters[c].racks.len()).sum();
        let phases: Vec<String> = site
            .clusters
            .clone()
            .map(|c| {
                let cluster = &fleet.clusters[c];
                format!("{} {}×{}", cluster.online, cluster.racks.len(), fleet.rack_types[cluster.rack_type].name)
            })
            .collect();
        total_racks += racks;
        let _ = writeln!(
            text,
            "{:<22} {:<16} {:<4} {:>6} {:>8} {:>8.1} {:>9.1}  {}",
            site.name,
            site.provider,
            site.jurisdiction,
            racks,
            gpus[s],
            f64::from(site.power_w) / 1e6,
            f64::from(site.price_milli_usd_per_mwh) / 1000.0,
            phases.join(", ")
        );
    }
    let _ = writeln!(text, "{:<22} {:<16} {:<4} {:>6} {:>8}", "total", "", "", total_racks, gpus.iter().sum::<u64>());
    let count = |state: NodeState| fleet.nodes.iter().filter(|n| n.state == state).count();
    let in_use: u64 = fleet.racks.iter().map(|r| u64::from(r.used_gpus)).sum();
    let _ = writeln!(
        text,
        "trays (nodes): {} — {} ready, {} cordoned, {} failed; GPUs in use: {in_use}",
        fleet.nodes.len(),
        count(NodeState::Ready),
        count(NodeState::Cordoned),
        count(NodeState::Failed)
    );
    match fleet.as_of {
        Some(day) => {
            let _ = writeln!(text, "\nas of {day}: the default placement date (--at overrides it)");
        }
        None => {
            let _ = writeln!(text, "\nno as_of date: placement defaults to today (--at sets the date)");
        }
    }
    text
}

/// `explain`: the job's candidates with every term, the rejections and the decision.
pub fn explanation(e: &Explanation) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "job {}: {}", e.job, e.need);
    let _ = writeln!(
        text,
        "decided after {} jobs of higher rank; {} racks feasible then",
        e.decided_before, e.feasible_racks
    );
    if let Some(first) = e.candidates.first() {
        // Shared GPUs' room, only when some candidate has a shared GPU.
        let shared = e.candidates.iter().any(|c| !c.shared_free_milli.is_empty());
        let _ = write!(
            text,
            "\n{:<3} {:<22} {:<14} {:>5} {:>5} {:>12} ",
            "#", "site", "cluster", "rack", "free", "trays×free"
        );
        if shared {
            let _ = write!(text, "{:>16} ", "shared×milli");
        }
        let _ = write!(text, "{:>8}  ", "score");
        for term in Term::ALL {
            let _ = write!(text, " {:>7}", term.name());
        }
        text.push('\n');
        for (i, c) in e.candidates.iter().enumerate() {
            let _ = write!(
                text,
                "{:<3} {:<22} {:<14} {:>5} {:>5} {:>12} ",
                i + 1,
                c.site,
                c.cluster,
                c.rack,
                c.free_gpus,
                trays_by_free(&c.free_on_trays)
            );
            if shared {
                let _ = write!(text, "{:>16} ", shared_by_room(&c.shared_free_milli));
            }
            let _ = write!(text, "{:>8}  ", c.score);
            for term in Term::ALL {
                let _ = write!(text, " {:>7}", c.terms.get(term));
            }
            text.push('\n');
        }
        let _ = write!(text, "{:<3} {:<22} {:<14} {:>5} {:>5} {:>12} ", "", "weights", "", "", "", "");
        if shared {
            let _ = write!(text, "{:>16} ", "");
        }
        let _ = write!(text, "{:>8}  ", "");
        for term in Term::ALL {
            let _ = write!(text, " {:>7}", first.weights.get(term));
        }
        text.push('\n');
    }
    let _ = writeln!(text, "\nracks rejected per failed constraint (a rack may fail several):");
    for (name, count) in e.rejected.named() {
        let _ = writeln!(text, "  {name:<13} {count}");
    }
    let _ = writeln!(text, "\ndecision: {}", e.decision);
    text
}

/// A rack's free GPUs by tray, grouped: `16×4+1×2` is 16 trays with 4 free and one with 2; trays
/// with none free are left out (`-` when no tray has a free GPU).
fn trays_by_free(free_on_trays: &[u32]) -> String {
    let mut groups: Vec<(u32, usize)> = Vec::new();
    for free in (1..=free_on_trays.iter().copied().max().unwrap_or(0)).rev() {
        let trays = free_on_trays.iter().filter(|&&f| f == free).count();
        if trays > 0 {
            groups.push((free, trays));
        }
    }
    if groups.is_empty() {
        return "-".into();
    }
    groups.iter().map(|(free, trays)| format!("{trays}×{free}")).collect::<Vec<_>>().join("+")
}

/// A rack's shared GPUs by the thousandths they have left, grouped, most room first: `2×600+1×150`
/// is two shared GPUs with 600 left and one with 150 (`-` when none has room left).
fn shared_by_room(room: &[u32]) -> String {
    let mut sorted: Vec<u32> = room.iter().copied().filter(|&r| r > 0).collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let mut groups: Vec<(u32, usize)> = Vec::new();
    for milli in sorted {
        match groups.last_mut() {
            Some((last, count)) if *last == milli => *count += 1,
            _ => groups.push((milli, 1)),
        }
    }
    if groups.is_empty() {
        return "-".into();
    }
    groups.iter().map(|(milli, gpus)| format!("{gpus}×{milli}")).collect::<Vec<_>>().join("+")
}

/// `compare`: the rows as a Markdown table.
pub fn compare(rows: &[CompareRow], replay: bool) -> String {
    let mut text = String::new();
    let (energy, carbon) =
        if replay { ("energy (USD)", "carbon (kg CO2)") } else { ("energy (USD/h)", "carbon (kg CO2/h)") };
    let stranded = if replay { "stranded GPUs (mean)" } else { "stranded GPUs" };
    let delay = if replay { " p95 delay inference / agentic / multimodal / training (s) |" } else { "" };
    let _ = writeln!(
        text,
        "| policy | jobs placed | GPUs placed | {stranded} |{delay} {energy} | {carbon} | latency violations | scheduling (s) |"
    );
    let _ = writeln!(text, "|---|---|---|---|{}---|---|---|---|", if replay { "---|" } else { "" });
    for row in rows {
        let delays = row
            .delay_p95_s
            .as_ref()
            .map(|d| format!(" {} |", d.values().map(u64::to_string).collect::<Vec<_>>().join(" / ")))
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "| {} | {} | {} | {:.1} |{} {:.0} | {:.0} | {} | {:.3} |",
            // A `|` in a policy's name would split the Markdown cell.
            row.policy.replace('|', "\\|"),
            row.jobs_placed,
            row.gpus_placed,
            row.stranded_gpus,
            delays,
            row.energy_usd,
            row.carbon_kg,
            row.latency_violations,
            row.scheduling_s
        );
    }
    text
}

/// `bench`: the report as a plain-text table.
pub fn bench_table(report: &BenchReport) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} jobs × {} racks (K = {}), backends agree: {}",
        report.jobs,
        report.racks,
        report.k,
        if report.backends_agree { "yes" } else { "NO" }
    );
    let _ = writeln!(
        text,
        "{:<8} {:>12} {:>14} {:>9} {:>11} {:>9}  adapter",
        "backend", "score (s)", "pairs/s", "speedup", "place (s)", "speedup"
    );
    for row in &report.rows {
        let _ = writeln!(
            text,
            "{:<8} {:>12.4} {:>14.3e} {:>8.2}× {:>11} {:>9}  {}",
            row.backend,
            row.score_seconds,
            row.pairs_per_second,
            row.score_speedup,
            row.place_seconds.map_or("-".into(), |s| format!("{s:.4}")),
            row.place_speedup.map_or("-".into(), |s| format!("{s:.2}×")),
            row.adapter
        );
    }
    text
}

/// `bench --markdown`: the report as a Markdown section for BENCHMARKS.md.
pub fn bench_markdown(report: &BenchReport) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "### {} jobs × {} racks — {}\n", report.jobs, report.racks, report.date);
    let _ =
        writeln!(text, "- machine: {} ({} threads, {})", report.machine.cpu, report.machine.threads, report.machine.os);
    if let Some(gpu) = report.rows.iter().find(|r| r.backend == "gpu") {
        let _ = writeln!(text, "- adapter: {}", gpu.adapter);
    } else {
        let _ = writeln!(text, "- adapter: none (no GPU backend available)");
    }
    let _ = writeln!(text, "- commit: `{}`", report.commit);
    let _ = writeln!(text, "- command: `{}`", report.command);
    let _ =
        writeln!(text, "- K = {}; backends agree: {}\n", report.k, if report.backends_agree { "yes" } else { "NO" });
    let _ = writeln!(
        text,
        "| backend | scoring (s) | scored pairs/s | speedup vs CPU all cores | placement (s) | speedup |"
    );
    let _ = writeln!(text, "|---|---|---|---|---|---|");
    for row in &report.rows {
        let _ = writeln!(
            text,
            "| {} | {:.4} | {:.3e} | {:.2}× | {} | {} |",
            row.backend,
            row.score_seconds,
            row.pairs_per_second,
            row.score_speedup,
            row.place_seconds.map_or("-".into(), |s| format!("{s:.4}")),
            row.place_speedup.map_or("-".into(), |s| format!("{s:.2}×"))
        );
    }
    // A blank line after the table, so that sections appended one after another stay apart.
    text.push('\n');
    text
}

/// `inflate`: totals, the curve every 10% of arrived workload, and the published anchors.
pub fn inflate(report: &gpuplace::sim::inflate::InflateReport, wall: Duration) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} nodes, {} GPUs; {} pods in the list, {} typical shapes; preset {}, seed {}, tune {}",
        report.nodes,
        report.total_gpus,
        report.pods_in_list,
        report.typical_shapes,
        report.preset.name(),
        report.seed,
        report.tune
    );
    let _ = writeln!(
        text,
        "{} pods arrived ({:.1}% of the GPUs requested), {} placed, {} GPU pods and {} CPU pods failed",
        report.arrived_pods,
        report.arrived_gpu_milli as f64 * 100.0 / report.total_gpu_milli as f64,
        report.placed_pods,
        report.failed_gpu_pods,
        report.failed_cpu_pods
    );
    let _ = writeln!(text, "\n{:>10} {:>12}", "arrived %", "allocated %");
    for point in report.curve.iter().filter(|p| p.arrived_pct % 10 == 0) {
        let _ = writeln!(text, "{:>10} {:>12.2}", point.arrived_pct, point.allocated_pct);
    }
    if let Some(at_100) = report.allocated_at(100) {
        let _ = writeln!(
            text,
            "\nallocated at 100% arrived: {at_100:.2}% (published, 10 seeds: FGD 95.23, BestFit 92.86, Random 86.30)"
        );
    }
    let _ = writeln!(text, "backend {}; {:.2} s", report.backend, wall.as_secs_f64());
    text
}
