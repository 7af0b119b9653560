//! The `--out` document of a placement.

use serde::Serialize;

use crate::engine::Placement;
use crate::engine::place::Outcome;
use crate::model::fleet::Fleet;
use crate::model::jobs::Workload;
use crate::model::kind::JobKind;
use crate::report::metrics::{EnergyTally, HOUR_S, site_gpus, site_gpus_used, site_power_drawn_w, violates_latency};

/// The `--out` JSON document. It holds only what the inputs determine (no backend, adapter or
/// timing), so both backends write byte-identical files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutFile {
    /// Placed jobs in decision order.
    pub placements: Vec<PlacedRecord>,
    /// Unplaced jobs in decision order.
    pub unplaced: Vec<UnplacedRecord>,
    /// Totals.
    pub summary: Summary,
}

/// One placed job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlacedRecord {
    /// Job id.
    pub job: String,
    /// Site name.
    pub site: String,
    /// Cluster name.
    pub cluster: String,
    /// Racks (index within the cluster) and GPUs taken on each.
    pub racks: Vec<RackRecord>,
    /// Score of the anchor rack.
    pub score: u32,
}

/// GPUs taken on one rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RackRecord {
    /// Index of the rack within its cluster.
    pub rack: u32,
    /// GPUs taken.
    pub gpus: u32,
}

/// One unplaced job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnplacedRecord {
    /// Job id.
    pub job: String,
    /// Why.
    pub reason: String,
}

/// Totals of a placement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The placement date.
    pub at: String,
    /// Jobs in the workload.
    pub jobs: usize,
    /// Jobs placed.
    pub placed: usize,
    /// Jobs not placed.
    pub unplaced: usize,
    /// GPUs of placed jobs.
    pub gpus_placed: u64,
    /// Per job kind.
    pub kinds: Vec<KindSummary>,
    /// Per site.
    pub sites: Vec<SiteSummary>,
    /// Energy cost of the placed jobs, USD per hour (IT power × PUE × price).
    pub energy_usd_per_hour: f64,
    /// Emissions of the placed jobs, kg CO2 per hour (IT power × PUE × grid intensity).
    pub carbon_kg_per_hour: f64,
    /// Placed jobs further from their users than their latency bound, checked against the fleet's
    /// own numbers (a hard constraint: always 0).
    pub latency_violations: u64,
}

/// Totals of one job kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KindSummary {
    /// The kind.
    pub kind: JobKind,
    /// Jobs placed.
    pub placed: usize,
    /// Jobs unplaced.
    pub unplaced: usize,
    /// GPUs placed.
    pub gpus_placed: u64,
}

/// Totals of one site after placement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteSummary {
    /// Site name.
    pub site: String,
    /// GPUs in the site.
    pub gpus: u64,
    /// GPUs in use (initial occupancy plus placed jobs).
    pub gpus_used: u64,
    /// GPUs free.
    pub gpus_free: u64,
    /// IT power drawn, MW.
    pub it_mw_drawn: f64,
    /// IT power available, MW.
    pub it_mw_available: f64,
}

/// Builds the `--out` document.
pub fn out_file(fleet: &Fleet, workload: &Workload, placement: &Placement) -> OutFile {
    let mut placements = Vec::new();
    let mut unplaced = Vec::new();
    let mut kinds: Vec<KindSummary> =
        JobKind::ALL.iter().map(|&kind| KindSummary { kind, placed: 0, unplaced: 0, gpus_placed: 0 }).collect();
    let mut energy = EnergyTally::default();
    let mut latency_violations = 0;
    for decision in &placement.decisions {
        let job = &workload.jobs[decision.job];
        let kind = &mut kinds[job.kind.index()];
        match &decision.outcome {
            Outcome::Placed { allocation, score } => {
                let slot = fleet.racks[allocation.anchor() as usize];
                let cluster = &fleet.clusters[slot.cluster as usize];
                placements.push(PlacedRecord {
                    job: job.id.clone(),
                    site: fleet.sites[cluster.site].name.clone(),
                    cluster: cluster.name.clone(),
                    racks: allocation
                        .racks
                        .iter()
                        .map(|s| RackRecord { rack: fleet.racks[s.rack as usize].index_in_cluster, gpus: s.gpus })
                        .collect(),
                    score: *score,
                });
                kind.placed += 1;
                kind.gpus_placed += u64::from(job.gpus);
                energy.add(fleet, allocation, HOUR_S);
                latency_violations += u64::from(violates_latency(fleet, job, allocation));
            }
            Outcome::Unplaced { reason } => {
                unplaced.push(UnplacedRecord { job: job.id.clone(), reason: reason.to_string() });
                kind.unplaced += 1;
            }
        }
    }
    let (gpus, used, drawn) =
        (site_gpus(fleet), site_gpus_used(fleet, &placement.state), site_power_drawn_w(fleet, &placement.state));
    let sites = fleet
        .sites
        .iter()
        .enumerate()
        .map(|(s, site)| SiteSummary {
            site: site.name.clone(),
            gpus: gpus[s],
            gpus_used: used[s],
            gpus_free: gpus[s] - used[s],
            it_mw_drawn: drawn[s] as f64 / 1e6,
            it_mw_available: f64::from(site.power_w) / 1e6,
        })
        .collect();
    let gpus_placed = kinds.iter().map(|k| k.gpus_placed).sum();
    OutFile {
        summary: Summary {
            at: placement.at.to_string(),
            jobs: workload.jobs.len(),
            placed: placements.len(),
            unplaced: unplaced.len(),
            gpus_placed,
            kinds,
            sites,
            energy_usd_per_hour: energy.usd(),
            carbon_kg_per_hour: energy.kg_co2(),
            latency_violations,
        },
        placements,
        unplaced,
    }
}
