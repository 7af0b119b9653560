//! The `--out` file and the printed summary of a placement.

use serde::Serialize;

use crate::fleet::Fleet;
use crate::jobs::{JobKind, Workload};
use crate::place::Outcome;
use crate::scheduler::Placement;

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
    // Energy in integer units until the end: W × PUE‰ × price (milli-USD/MWh) and W × PUE‰ × g/kWh.
    let mut energy: u128 = 0;
    let mut carbon: u128 = 0;
    for decision in &placement.decisions {
        let job = &workload.jobs[decision.job];
        let kind = &mut kinds[JobKind::ALL.iter().position(|&k| k == job.kind).expect("known kind")];
        match &decision.outcome {
            Outcome::Placed { racks, score } => {
                let slot = fleet.racks[racks[0].rack as usize];
                let cluster = &fleet.clusters[slot.cluster as usize];
                let site = &fleet.sites[cluster.site];
                placements.push(PlacedRecord {
                    job: job.id.clone(),
                    site: site.name.clone(),
                    cluster: cluster.name.clone(),
                    racks: racks
                        .iter()
                        .map(|s| RackRecord { rack: fleet.racks[s.rack as usize].index_in_cluster, gpus: s.gpus })
                        .collect(),
                    score: *score,
                });
                kind.placed += 1;
                kind.gpus_placed += u64::from(job.gpus);
                let watts = u128::from(job.gpus) * u128::from(fleet.rack_type_of(racks[0].rack as usize).gpu_watts);
                energy += watts * u128::from(site.pue_milli) * u128::from(site.price_milli_usd_per_mwh);
                carbon += watts * u128::from(site.pue_milli) * u128::from(site.carbon_g_per_kwh);
            }
            Outcome::Unplaced { reason } => {
                unplaced.push(UnplacedRecord { job: job.id.clone(), reason: reason.to_string() });
                kind.unplaced += 1;
            }
        }
    }
    let sites = fleet
        .sites
        .iter()
        .enumerate()
        .map(|(s, site)| {
            let (gpus, used) =
                site.clusters.clone().flat_map(|c| fleet.clusters[c].racks.clone()).fold((0u64, 0u64), |(g, u), r| {
                    let rack = &placement.state.racks[r];
                    (g + u64::from(rack.gpus), u + u64::from(rack.gpus - rack.free_gpus))
                });
            SiteSummary {
                site: site.name.clone(),
                gpus,
                gpus_used: used,
                gpus_free: gpus - used,
                it_mw_drawn: f64::from(site.power_w - placement.state.sites[s].power_free_w) / 1e6,
                it_mw_available: f64::from(site.power_w) / 1e6,
            }
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
            // W·‰·milli-USD/MWh → USD/h: / 1000 (‰) / 1000 (milli) / 1e6 (W per MW).
            energy_usd_per_hour: energy as f64 / 1e12,
            // W·‰·g/kWh → kg/h: / 1000 (‰) / 1000 (W per kW) / 1000 (g per kg).
            carbon_kg_per_hour: carbon as f64 / 1e9,
        },
        placements,
        unplaced,
    }
}

/// The human summary printed by `gpuplace place`.
pub fn summary_text(out: &OutFile, placement: &Placement, wall: std::time::Duration) -> String {
    use std::fmt::Write;
    let s = &out.summary;
    let mut text = String::new();
    let _ = writeln!(text, "placed {} of {} jobs ({} GPUs) on {}", s.placed, s.jobs, s.gpus_placed, s.at);
    let _ = writeln!(text, "\n{:<12} {:>8} {:>9} {:>12}", "kind", "placed", "unplaced", "GPUs placed");
    for k in &s.kinds {
        let _ = writeln!(text, "{:<12} {:>8} {:>9} {:>12}", k.kind.name(), k.placed, k.unplaced, k.gpus_placed);
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
    let _ = write!(text, "wall time: {:.3} s", wall.as_secs_f64());
    text
}
