//! `gpuplace compare`: every policy preset on the same input, batch or replay, in one table.

use serde::Serialize;

use crate::date::Day;
use crate::jobs::{JobKind, Workload};
use crate::place::Outcome;
use crate::policy::Preset;
use crate::replay::ReplayConfig;
use crate::scheduler::{Backend, Scheduler};
use crate::{Fleet, Result};

/// One policy's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompareRow {
    /// Preset name.
    pub policy: String,
    /// Jobs placed.
    pub jobs_placed: usize,
    /// GPUs of placed jobs.
    pub gpus_placed: u64,
    /// Stranded GPUs: after a batch, free GPUs in partly used racks; in a replay, the mean over time.
    pub stranded_gpus: f64,
    /// 95th-percentile queueing delay per kind, seconds (replay only).
    pub delay_p95_s: Option<Vec<(JobKind, u64)>>,
    /// Energy: USD per hour of the placed jobs (batch) or USD over the replay.
    pub energy_usd: f64,
    /// Carbon: kg CO2 per hour (batch) or over the replay.
    pub carbon_kg: f64,
    /// Placed jobs beyond their latency bound (must be 0).
    pub latency_violations: u64,
    /// Scheduling time, seconds.
    pub scheduling_s: f64,
}

/// Runs every preset on `workload`: a batch placement at `at`, or a replay when `replay` is given.
/// `open` opens a backend for each run (the same kind each time).
pub fn compare(
    fleet: &Fleet,
    workload: &Workload,
    at: Day,
    replay: Option<ReplayConfig>,
    seed: u64,
    open: &mut dyn FnMut() -> Result<Backend>,
) -> Result<Vec<CompareRow>> {
    let mut rows = Vec::new();
    for preset in Preset::ALL {
        let mut scheduler = Scheduler::with_backend(fleet.clone(), preset.policy(seed), open()?)?;
        let row = match replay {
            Some(config) => {
                let (report, _) = scheduler.replay(workload, config, &mut |_, _| {})?;
                CompareRow {
                    policy: preset.name().into(),
                    jobs_placed: report.kinds.iter().map(|k| k.placed).sum(),
                    gpus_placed: report.gpus_placed,
                    stranded_gpus: report.stranded_gpus_mean,
                    delay_p95_s: Some(report.kinds.iter().map(|k| (k.kind, k.delay_p95_s)).collect()),
                    energy_usd: report.energy_usd,
                    carbon_kg: report.carbon_kg,
                    latency_violations: report.latency_violations,
                    scheduling_s: report.scheduling_s_total,
                }
            }
            None => {
                let started = std::time::Instant::now();
                let placement = scheduler.place(workload, Some(at))?;
                let scheduling_s = started.elapsed().as_secs_f64();
                let out = crate::report::out_file(fleet, workload, &placement);
                let stranded = placement
                    .state
                    .racks
                    .iter()
                    .filter(|r| r.free_gpus > 0 && r.free_gpus < r.gpus)
                    .map(|r| u64::from(r.free_gpus))
                    .sum::<u64>();
                let violations = placement
                    .decisions
                    .iter()
                    .filter(|d| match &d.outcome {
                        Outcome::Placed { racks, .. } => {
                            let job = &workload.jobs[d.job];
                            let slot = fleet.racks[racks[0].rack as usize];
                            let site = &fleet.sites[fleet.clusters[slot.cluster as usize].site];
                            let region = fleet.region_index(&job.region).expect("validated");
                            job.max_latency_ms.is_some_and(|bound| site.latency_ms[region] > bound)
                        }
                        Outcome::Unplaced { .. } => false,
                    })
                    .count() as u64;
                CompareRow {
                    policy: preset.name().into(),
                    jobs_placed: out.summary.placed,
                    gpus_placed: out.summary.gpus_placed,
                    stranded_gpus: stranded as f64,
                    delay_p95_s: None,
                    energy_usd: out.summary.energy_usd_per_hour,
                    carbon_kg: out.summary.carbon_kg_per_hour,
                    latency_violations: violations,
                    scheduling_s,
                }
            }
        };
        rows.push(row);
    }
    Ok(rows)
}

/// The rows as a Markdown table.
pub fn markdown(rows: &[CompareRow], replay: bool) -> String {
    use std::fmt::Write;
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
            .map(|d| format!(" {} |", d.iter().map(|(_, s)| s.to_string()).collect::<Vec<_>>().join(" / ")))
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "| {} | {} | {} | {:.1} |{} {:.0} | {:.0} | {} | {:.3} |",
            row.policy,
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
