//! `gpuplace bench`: every backend on the same generated problem, checked for agreement, timed.
//! The report (table, JSON, Markdown) is what BENCHMARKS.md is built from.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cpu::{CpuScorer, ScoreOutput, score_batch};
use crate::date::Day;
use crate::fleet::{Fleet, FleetState};
use crate::gpu::GpuScorer;
use crate::place::{Decision, RoundLimits, Scorer, decision_order, place_batched};
use crate::policy::Policy;
use crate::score::JobGpu;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Jobs to generate.
    pub jobs: usize,
    /// Racks in the fleet (the built-in fleet scaled to this many).
    pub racks: usize,
    /// Workload seed.
    pub seed: u64,
    /// Candidates per job.
    pub k: usize,
    /// Timed runs per measurement; the fastest is reported.
    pub repeat: usize,
    /// Also time end-to-end placement.
    pub place: bool,
    /// Also time the CPU backend on one thread.
    pub single_thread: bool,
    /// The command line, for the report.
    pub command: String,
}

/// The machine a report was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model from /proc/cpuinfo (or "unknown").
    pub cpu: String,
    /// Hardware threads available.
    pub threads: usize,
    /// Operating system and architecture.
    pub os: String,
}

/// One backend's figures.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// `cpu-1t`, `cpu-Nt` or `gpu`.
    pub backend: String,
    /// Adapter description (GPU) or thread count (CPU).
    pub adapter: String,
    /// Fastest scoring pass over all jobs × racks, seconds (GPU: upload, dispatch, wait, readback).
    pub score_seconds: f64,
    /// Scored pairs per second.
    pub pairs_per_second: f64,
    /// Scoring speed relative to the CPU backend on all cores.
    pub score_speedup: f64,
    /// End-to-end placement, seconds (compile excluded), when measured.
    pub place_seconds: Option<f64>,
    /// Placement speed relative to the CPU backend on all cores.
    pub place_speedup: Option<f64>,
}

/// A whole `gpuplace bench` report.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Where it ran.
    pub machine: Machine,
    /// When (UTC date).
    pub date: String,
    /// The commit of the binary.
    pub commit: String,
    /// The command line.
    pub command: String,
    /// Jobs.
    pub jobs: usize,
    /// Racks.
    pub racks: usize,
    /// Candidates per job.
    pub k: usize,
    /// Every backend gave identical candidate lists, feasible counts and placements.
    pub backends_agree: bool,
    /// Per backend.
    pub rows: Vec<BenchRow>,
}

/// The built-in fleet with its clusters scaled so that the fleet has exactly `racks` racks (at
/// least one per cluster), and site power scaled alike.
pub fn bench_fleet(racks: usize) -> Fleet {
    let mut file = crate::builtin::default_fleet_file();
    let total: usize = file.sites.iter().flat_map(|s| &s.clusters).map(|c| c.racks as usize).sum();
    let clusters = file.sites.iter().map(|s| s.clusters.len()).sum::<usize>();
    let racks = racks.max(clusters);
    let mut assigned = 0usize;
    for site in &mut file.sites {
        let before: u32 = site.clusters.iter().map(|c| c.racks).sum();
        for cluster in &mut site.clusters {
            cluster.racks = ((cluster.racks as usize * racks) / total).max(1) as u32;
            assigned += cluster.racks as usize;
        }
        let after: u32 = site.clusters.iter().map(|c| c.racks).sum();
        site.power_mw = (site.power_mw * f64::from(after) / f64::from(before)).min(crate::fleet::MAX_SITE_MW);
    }
    // Put the rounding remainder on the largest cluster.
    let largest = file.sites.iter_mut().flat_map(|s| s.clusters.iter_mut()).max_by_key(|c| c.racks).expect("clusters");
    largest.racks = (largest.racks as isize + racks as isize - assigned as isize).max(1) as u32;
    Fleet::from_file(file, "<bench>").expect("a scaled built-in fleet is valid")
}

fn fastest<T>(repeat: usize, mut run: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..repeat.max(1) {
        let started = Instant::now();
        let out = run();
        best = best.min(started.elapsed());
        last = Some(out);
    }
    (best, last.expect("ran at least once"))
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    Machine {
        cpu,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
    }
}

fn place_with(
    fleet: &Fleet,
    jobs: &[JobGpu],
    order: &[usize],
    k: usize,
    scorer: &mut dyn Scorer,
) -> crate::Result<Vec<Decision>> {
    Ok(place_batched(fleet, jobs, order, fleet.initial_state(), k, RoundLimits::default(), scorer, &mut |_, _| {})?.0)
}

/// Runs the benchmark. `gpu` is the GPU backend when one is available. `log` receives progress
/// lines. Fails when the backends disagree.
pub fn run(config: &BenchConfig, mut gpu: Option<GpuScorer>, log: &mut dyn FnMut(&str)) -> crate::Result<BenchReport> {
    let fleet = bench_fleet(config.racks);
    let at = Day::parse("2026-11-26").expect("a valid date");
    let workload = crate::generate::generate(&fleet, config.jobs, config.seed, at);
    let jobs = workload.compile(&fleet, &Policy::default(), at)?;
    let order = decision_order(&workload.jobs);
    let state: FleetState = fleet.initial_state();
    let pairs = jobs.len() as f64 * state.racks.len() as f64;
    let k = config.k;

    struct Measured {
        backend: String,
        adapter: String,
        score: Duration,
        output: ScoreOutput,
        place: Option<(Duration, Vec<Decision>)>,
    }
    let mut measured = Vec::new();
    let threads = rayon::current_num_threads();
    let place_cpu = |config: &BenchConfig| -> crate::Result<Option<(Duration, Vec<Decision>)>> {
        if !config.place {
            return Ok(None);
        }
        let (time, decisions) = fastest(config.repeat, || place_with(&fleet, &jobs, &order, k, &mut CpuScorer));
        Ok(Some((time, decisions?)))
    };
    if config.single_thread {
        log("cpu-1t: scoring");
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a one-thread pool");
        let (score, output) = pool.install(|| fastest(config.repeat, || score_batch(&jobs, &state, k)));
        if config.place {
            log("cpu-1t: placing");
        }
        let place = pool.install(|| place_cpu(config))?;
        measured.push(Measured { backend: "cpu-1t".into(), adapter: "1 thread".into(), score, output, place });
    }
    log(&format!("cpu-{threads}t: scoring"));
    let (score, output) = fastest(config.repeat, || score_batch(&jobs, &state, k));
    if config.place {
        log(&format!("cpu-{threads}t: placing"));
    }
    let place = place_cpu(config)?;
    measured.push(Measured {
        backend: format!("cpu-{threads}t"),
        adapter: format!("{threads} threads"),
        score,
        output,
        place,
    });
    if let Some(gpu) = gpu.as_mut() {
        // Warm up the driver on a slice; buffer growth for the full size is part of the first timed
        // run, as it would be in a real first call.
        log("gpu: warming up");
        gpu.score_batch(&jobs[..jobs.len().min(65_536)], &state, k)?;
        log("gpu: scoring");
        let mut failure = None;
        let (score, output) = fastest(config.repeat, || match gpu.score_batch(&jobs, &state, k) {
            Ok(out) => out,
            Err(e) => {
                failure = Some(e);
                ScoreOutput::default()
            }
        });
        if let Some(e) = failure {
            return Err(e.into());
        }
        let place = if config.place {
            log("gpu: placing");
            let mut result = Ok(Vec::new());
            let (time, ()) = fastest(config.repeat, || result = place_with(&fleet, &jobs, &order, k, gpu));
            Some((time, result?))
        } else {
            None
        };
        measured.push(Measured { backend: "gpu".into(), adapter: gpu.adapter().to_string(), score, output, place });
    }

    let reference = measured.iter().find(|m| m.backend == format!("cpu-{threads}t")).expect("cpu-all ran");
    let mut agree = true;
    for m in &measured {
        if m.output != reference.output {
            agree = false;
            log(&format!("MISMATCH: {} scoring differs from cpu-{threads}t", m.backend));
        }
        if let (Some((_, a)), Some((_, b))) = (&m.place, &reference.place)
            && a != b
        {
            agree = false;
            log(&format!("MISMATCH: {} placements differ from cpu-{threads}t", m.backend));
        }
    }
    let base_score = reference.score.as_secs_f64();
    let base_place = reference.place.as_ref().map(|(t, _)| t.as_secs_f64());
    let rows = measured
        .iter()
        .map(|m| BenchRow {
            backend: m.backend.clone(),
            adapter: m.adapter.clone(),
            score_seconds: m.score.as_secs_f64(),
            pairs_per_second: pairs / m.score.as_secs_f64(),
            score_speedup: base_score / m.score.as_secs_f64(),
            place_seconds: m.place.as_ref().map(|(t, _)| t.as_secs_f64()),
            place_speedup: m.place.as_ref().zip(base_place).map(|((t, _), base)| base / t.as_secs_f64()),
        })
        .collect();
    let report = BenchReport {
        machine: machine(),
        date: Day::today().to_string(),
        commit: env!("GPUPLACE_COMMIT").to_string(),
        command: config.command.clone(),
        jobs: jobs.len(),
        racks: state.racks.len(),
        k,
        backends_agree: agree,
        rows,
    };
    if !agree {
        return Err(crate::Error::Mismatch(format!(
            "backends disagree on {} jobs × {} racks; not reporting timings",
            report.jobs, report.racks
        )));
    }
    Ok(report)
}

/// The report as a plain-text table.
pub fn table(report: &BenchReport) -> String {
    use std::fmt::Write;
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

/// The report as a Markdown section for BENCHMARKS.md.
pub fn markdown(report: &BenchReport) -> String {
    use std::fmt::Write;
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
    text
}
