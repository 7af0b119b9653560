//! `gpuplace compare`: every policy preset on the same input, batch or replay, in one table.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::Scheduler;
use crate::error::Result;
use crate::model::date::Day;
use crate::model::jobs::Workload;
use crate::model::kind::JobKind;
use crate::model::policy::{Policy, Preset};
use crate::report::metrics::stranded_gpus;
use crate::sim::replay::{ReplayConfig, replay};

/// One policy's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct CompareRow {
    /// Preset name.
    pub policy: String,
    /// Jobs placed.
    pub jobs_placed: usize,
    /// GPUs of placed jobs.
    pub gpus_placed: u64,
    /// Stranded GPUs: after a batch, free GPUs on partly used ready trays; in a replay, the mean
    /// over time.
    pub stranded_gpus: f64,
    /// 95th-percentile queueing delay per kind, seconds (replay only).
    pub delay_p95_s: Option<BTreeMap<JobKind, u64>>,
    /// Energy: USD per hour of the placed jobs (batch) or USD over the replay.
    pub energy_usd: f64,
    /// Carbon: kg CO2 per hour (batch) or over the replay.
    pub carbon_kg: f64,
    /// Placed jobs beyond their latency bound (must be 0).
    pub latency_violations: u64,
    /// Scheduling time, seconds.
    pub scheduling_s: f64,
}

/// The `compare --json` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct CompareFile {
    /// The version of the format ([`crate::model::FORMAT_VERSION`]).
    pub format_version: u32,
    /// `batch` (one placement at the placement date) or `replay` (over time).
    pub mode: CompareMode,
    /// Jobs in the workload.
    pub jobs: usize,
    /// The backend every row ran on.
    pub backend: String,
    /// One row per policy: a policy file's first, then the presets.
    pub rows: Vec<CompareRow>,
}

/// How `compare` ran the policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CompareMode {
    /// One batch placement.
    Batch,
    /// A replay over time.
    Replay,
}

impl CompareFile {
    /// The document of `rows`.
    pub fn new(mode: CompareMode, jobs: usize, backend: String, rows: Vec<CompareRow>) -> Self {
        CompareFile { format_version: crate::model::FORMAT_VERSION, mode, jobs, backend, rows }
    }
}

/// Runs `custom` (a named policy of the caller's, first, when given) and every preset on
/// `workload` with `scheduler`'s fleet and backend (one device for all): a batch placement at `at`,
/// or a replay when `replay` is given. Each run starts from the fleet file's occupancy; the
/// scheduler is left reset, with the last preset's policy.
pub fn compare(
    scheduler: &mut Scheduler,
    workload: &Workload,
    at: Day,
    replay_config: Option<ReplayConfig>,
    seed: u64,
    custom: Option<(&str, Policy)>,
) -> Result<Vec<CompareRow>> {
    let mut rows = Vec::new();
    let runs = custom
        .map(|(name, policy)| (name.to_string(), policy))
        .into_iter()
        .chain(Preset::ALL.map(|preset| (preset.name().to_string(), preset.policy(seed))));
    for (name, policy) in runs {
        scheduler.reset();
        scheduler.set_policy(policy)?;
        let row = match replay_config {
            Some(config) => {
                let report = replay(scheduler, workload, config, &mut |_, _| {}, &mut |_, _, _| {})?;
                CompareRow {
                    policy: name.clone(),
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
                let out = crate::report::out_file(scheduler.fleet(), workload, &placement);
                CompareRow {
                    policy: name.clone(),
                    jobs_placed: out.summary.placed,
                    gpus_placed: out.summary.gpus_placed,
                    stranded_gpus: stranded_gpus(&placement.state) as f64,
                    delay_p95_s: None,
                    energy_usd: out.summary.energy_usd_per_hour,
                    carbon_kg: out.summary.carbon_kg_per_hour,
                    latency_violations: out.summary.latency_violations,
                    scheduling_s,
                }
            }
        };
        rows.push(row);
    }
    scheduler.reset();
    Ok(rows)
}
