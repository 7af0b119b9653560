//! `gpuplace bench`: every backend on the same generated problem, checked for agreement, timed.
//! The report (table, JSON, Markdown) is what BENCHMARKS.md is built from.

use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::place::{Decision, decision_order, place_batched};
use crate::engine::{Backend, Ledger};
use crate::error::{InputError, Result};
#[cfg(feature = "gpu")]
use crate::gpu::GpuScorer;
use crate::kernel::cpu::{ScoreOutput, score_batch};
use crate::kernel::limits::MAX_FLEET_RACKS;
use crate::kernel::score::{JobGpu, MAX_CANDIDATES};
use crate::model::date::Day;
use crate::model::fleet::{ClusterFile, Fleet};
use crate::model::jobs::MAX_JOBS;
use crate::model::policy::Policy;

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct Machine {
    /// CPU model from /proc/cpuinfo (or "unknown").
    pub cpu: String,
    /// Hardware threads available.
    pub threads: usize,
    /// Operating system and architecture.
    pub os: String,
}

/// One backend's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
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

/// The most timed runs per measurement.
pub const MAX_REPEAT: usize = 100;

impl BenchConfig {
    /// Checks every value is in range before anything is allocated (the rack count is checked by
    /// [`bench_fleet`]).
    pub fn validate(&self) -> std::result::Result<(), InputError> {
        let err = |flag: &str, message: String| InputError::new("command line", format!("--{flag}"), flag, message);
        if self.jobs == 0 || self.jobs > MAX_JOBS {
            return Err(err("count", format!("{} is out of range: must be 1 to {MAX_JOBS}", self.jobs)));
        }
        if self.k == 0 || self.k > MAX_CANDIDATES as usize {
            return Err(err("k", format!("{} is out of range: must be 1 to {MAX_CANDIDATES}", self.k)));
        }
        if self.repeat == 0 || self.repeat > MAX_REPEAT {
            return Err(err("repeat", format!("{} is out of range: must be 1 to {MAX_REPEAT}", self.repeat)));
        }
        Ok(())
    }
}

/// The built-in fleet with its clusters scaled so that the fleet has exactly `racks` racks (at
/// least one per cluster, so at least the built-in fleet's cluster count; at most
/// [`MAX_FLEET_RACKS`]). Each site's power is scaled by its clusters' proportional shares before
/// rounding; the racks that rounding adds to or takes from the largest clusters leave power as it
/// is (kept so, so that every measured problem stays the one of earlier measurements).
pub fn bench_fleet(racks: usize) -> std::result::Result<Fleet, InputError> {
    let mut file = crate::model::builtin::default_fleet_file();
    let total: usize = file.sites.iter().flat_map(|s| &s.clusters).map(|c| c.racks as usize).sum();
    let clusters = file.sites.iter().map(|s| s.clusters.len()).sum::<usize>();
    if racks < clusters || racks > MAX_FLEET_RACKS as usize {
        return Err(InputError::new(
            "command line",
            "--racks",
            "racks",
            format!(
                "{racks} is out of range: must be {clusters} (one per cluster of the built-in fleet) to {MAX_FLEET_RACKS}"
            ),
        ));
    }
    let mut assigned = 0usize;
    for site in &mut file.sites {
        let before: u32 = site.clusters.iter().map(|c| c.racks).sum();
        for cluster in &mut site.clusters {
            cluster.racks = ((cluster.racks as usize * racks) / total).max(1) as u32;
            assigned += cluster.racks as usize;
        }
        let after: u32 = site.clusters.iter().map(|c| c.racks).sum();
        site.power_mw = (site.power_mw * f64::from(after) / f64::from(before)).min(crate::model::fleet::MAX_SITE_MW);
    }
    // Rounding: the shares' remainder goes to the largest cluster; racks given to clusters too
    // small for a share of one come off the largest clusters.
    let mut all: Vec<&mut ClusterFile> = file.sites.iter_mut().flat_map(|s| s.clusters.iter_mut()).collect();
    while assigned > racks {
        let largest = all.iter_mut().max_by_key(|c| c.racks).expect("clusters");
        largest.racks -= 1;
        assigned -= 1;
    }
    let largest = all.iter_mut().max_by_key(|c| c.racks).expect("clusters");
    largest.racks += (racks - assigned) as u32;
    // The built-in fleet's trays as they are on the racks that remain (racks added beyond the
    // built-in count are whole and free).
    for cluster in all {
        let racks = cluster.racks;
        cluster.set_racks(racks);
    }
    Fleet::from_file(file, "<bench>")
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

/// Places every job on a fresh ledger of `fleet` with `backend`.
fn place_with(
    fleet: &std::sync::Arc<Fleet>,
    jobs: &[JobGpu],
    order: &[usize],
    k: usize,
    backend: &mut Backend,
) -> Result<Vec<Decision>> {
    let mut ledger = Ledger::new(std::sync::Arc::clone(fleet));
    Ok(place_batched(&mut ledger, jobs, order, backend, k, &mut |_, _| {})?.0)
}

/// Runs the benchmark. `gpu` is the GPU scorer when one is available. `log` receives progress
/// lines. Fails when the backends disagree.
pub fn run(
    config: &BenchConfig,
    #[cfg(feature = "gpu")] gpu: Option<GpuScorer>,
    log: &mut dyn FnMut(&str),
) -> Result<BenchReport> {
    config.validate()?;
    let fleet = std::sync::Arc::new(bench_fleet(config.racks)?);
    let at = Day::parse("2026-11-26").expect("a valid date");
    let workload = crate::sim::generate::generate(&fleet, config.jobs, config.seed, at)?;
    let jobs = workload.compile(&fleet, &Policy::default(), at)?;
    let state = fleet.initial_state();
    let order = decision_order(&workload.jobs, &jobs, &fleet, &state);
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
    let place_cpu = |config: &BenchConfig| -> Result<Option<(Duration, Vec<Decision>)>> {
        if !config.place {
            return Ok(None);
        }
        let mut cpu = Backend::cpu();
        let (time, decisions) = fastest(config.repeat, || place_with(&fleet, &jobs, &order, k, &mut cpu));
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
    #[cfg(feature = "gpu")]
    if let Some(mut gpu) = gpu {
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
        let adapter = gpu.adapter().to_string();
        let place = if config.place {
            log("gpu: placing");
            // No fallback: a GPU failure must not be timed as the GPU.
            let mut backend = Backend::gpu(gpu).without_fallback();
            let mut result = Ok(Vec::new());
            let (time, ()) = fastest(config.repeat, || result = place_with(&fleet, &jobs, &order, k, &mut backend));
            Some((time, result?))
        } else {
            None
        };
        measured.push(Measured { backend: "gpu".into(), adapter, score, output, place });
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
        return Err(crate::error::Error::Mismatch(format!(
            "backends disagree on {} jobs × {} racks; not reporting timings",
            report.jobs, report.racks
        )));
    }
    Ok(report)
}
