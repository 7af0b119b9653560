//! Words for people: why a job could not be placed, and what its best candidates were.

use serde::Serialize;

use crate::fleet::{Fleet, FleetState, MAX_LATENCY_MS};
use crate::place::{ClassIndex, STATIC_REJECTS};
use crate::score::{JobGpu, REJECT_KINDS, REJECT_NAMES, Terms, terms};

/// Formats watts for people: MW from 1 MW up, kW below.
fn mw(watts: u64) -> String {
    if watts >= 1_000_000 { format!("{:.2} MW", watts as f64 / 1e6) } else { format!("{:.1} kW", watts as f64 / 1e3) }
}

/// What the job asks for, in words: "64 GPUs in one NVLink domain with 200 GB HBM per GPU within
/// 40 ms of eu-west in EU".
pub fn describe_need(fleet: &Fleet, job: &JobGpu) -> String {
    let largest_rack = fleet.rack_types.iter().map(|rt| rt.gpus).max().unwrap_or(0);
    let mut need = if job.gpus <= largest_rack {
        format!("needs {} GPUs in one NVLink domain", job.gpus)
    } else {
        format!("needs {} GPUs across whole free racks of one cluster", job.gpus)
    };
    if job.hbm_gb > 0 {
        need += &format!(" with {} GB HBM per GPU", job.hbm_gb);
    }
    if job.latency_limit_ms < MAX_LATENCY_MS {
        need += &format!(" within {} ms of {}", job.latency_limit_ms, fleet.regions[job.region as usize]);
    }
    let names = |mask: u32, all: &[String]| {
        all.iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, n)| n.as_str())
            .collect::<Vec<_>>()
            .join("/")
    };
    if job.jurisdiction_mask != u32::MAX {
        need += &format!(" in {}", names(job.jurisdiction_mask, &fleet.jurisdictions));
    }
    if job.provider_mask != u32::MAX {
        need += &format!(" from {}", names(job.provider_mask, &fleet.providers));
    }
    need
}

/// Why `job` has no feasible rack in `state`, for a person. Names the closest thing to a fit.
///
/// Works cluster by cluster: every constraint but GPU capacity is the same for all racks of a
/// cluster, and `classes` gives each cluster's free-GPU counts without scanning its racks.
pub(crate) fn unplaced_reason(fleet: &Fleet, state: &FleetState, classes: &ClassIndex, job: &JobGpu) -> String {
    let need = describe_need(fleet, job);
    let mut counts = [0u64; REJECT_KINDS];
    let mut eligible = Vec::new();
    for (c, cluster) in fleet.clusters.iter().enumerate() {
        let reject = state.check(job, cluster.racks.start) & STATIC_REJECTS;
        if reject == 0 {
            eligible.push(c);
        }
        for (bit, count) in counts.iter_mut().enumerate() {
            if reject & (1 << bit) != 0 {
                *count += cluster.racks.len() as u64;
            }
        }
    }
    if eligible.is_empty() {
        let failing: Vec<String> = (0..REJECT_KINDS)
            .filter(|&bit| counts[bit] > 0)
            .map(|bit| format!("{} fail {}", counts[bit], REJECT_NAMES[bit]))
            .collect();
        return format!("{need}; no rack of the fleet qualifies ({} racks: {})", state.racks.len(), failing.join(", "));
    }
    let rack_gpus = |c: usize| fleet.rack_types[fleet.clusters[c].rack_type].gpus;
    let gpus_fit = |c: usize| {
        if job.gpus <= rack_gpus(c) {
            classes.max_free(c).is_some_and(|free| free >= job.gpus)
        } else {
            state.clusters[c].free_racks * rack_gpus(c) >= job.gpus
        }
    };
    // Clusters with the GPUs but not the power: the site's power is what binds.
    if let Some(c) = eligible
        .iter()
        .copied()
        .filter(|&c| gpus_fit(c))
        .max_by_key(|&c| (state.sites[fleet.clusters[c].site].power_free_w, std::cmp::Reverse(c)))
    {
        let site = fleet.clusters[c].site;
        let draw = u64::from(job.gpus) * u64::from(fleet.rack_types[fleet.clusters[c].rack_type].gpu_watts);
        return format!(
            "{need}; GPUs are free but power is not: {} has {} of IT power left, the job draws {}",
            fleet.sites[site].name,
            mw(u64::from(state.sites[site].power_free_w)),
            mw(draw)
        );
    }
    // Otherwise GPUs bind: name the eligible place closest to fitting.
    let within_one_domain: Vec<usize> = eligible.iter().copied().filter(|&c| job.gpus <= rack_gpus(c)).collect();
    if let Some(c) =
        within_one_domain.iter().copied().max_by_key(|&c| (classes.max_free(c).unwrap_or(0), std::cmp::Reverse(c)))
    {
        let site = &fleet.sites[fleet.clusters[c].site].name;
        format!("{need}; closest feasible: {site} has at most {} free in a rack", classes.max_free(c).unwrap_or(0))
    } else {
        let c = eligible
            .iter()
            .copied()
            .max_by_key(|&c| (state.clusters[c].free_racks, std::cmp::Reverse(c)))
            .expect("eligible is not empty");
        let cluster = &fleet.clusters[c];
        format!(
            "{need}; closest feasible: {}/{} has {} fully free racks, the job needs {}",
            fleet.sites[cluster.site].name,
            cluster.name,
            state.clusters[c].free_racks,
            job.gpus.div_ceil(rack_gpus(c))
        )
    }
}

/// One candidate rack with its score broken down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExplainedCandidate {
    /// Site name.
    pub site: String,
    /// Cluster name.
    pub cluster: String,
    /// Rack index within the cluster.
    pub rack: u32,
    /// Global rack index.
    pub global_rack: u32,
    /// Free GPUs in the rack before placement.
    pub free_gpus: u32,
    /// Total score.
    pub score: u32,
    /// The terms (each 0..=1000).
    pub terms: Terms,
    /// The job's weights, in the same order.
    pub weights: [u32; 7],
}

/// A job's situation at the moment it is decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The job's id.
    pub job: String,
    /// What it asks for, in words.
    pub need: String,
    /// Jobs decided before it (higher priority, or equal priority and smaller id).
    pub decided_before: usize,
    /// Best feasible racks, best first.
    pub candidates: Vec<ExplainedCandidate>,
    /// Feasible racks in all.
    pub feasible_racks: u64,
    /// Racks rejected per constraint (a rack failing several counts under each), by constraint name.
    pub rejected: Vec<(String, u64)>,
    /// What placement decided: `placed on …` or the unplaced reason.
    pub decision: String,
}

/// The best `count` feasible racks with their terms, in the given state.
pub fn explain_candidates(
    fleet: &Fleet,
    state: &FleetState,
    job: &JobGpu,
    count: usize,
) -> (Vec<ExplainedCandidate>, u64) {
    let mut top = vec![crate::score::Candidate::NONE; count.max(1)];
    let feasible = crate::cpu::score_job(job, state, &mut top);
    let explained = top
        .iter()
        .filter(|c| c.rack != crate::score::NO_RACK)
        .map(|c| {
            let rack = &state.racks[c.rack as usize];
            let slot = fleet.racks[c.rack as usize];
            let cluster = &fleet.clusters[slot.cluster as usize];
            ExplainedCandidate {
                site: fleet.sites[cluster.site].name.clone(),
                cluster: cluster.name.clone(),
                rack: slot.index_in_cluster,
                global_rack: c.rack,
                free_gpus: rack.free_gpus,
                score: c.score,
                terms: terms(job, rack, &state.sites[rack.site as usize], state.latency_of(rack, job.region)),
                weights: [job.w_pack, job.w_spread, job.w_latency, job.w_energy, job.w_carbon, job.w_hbm, job.w_random],
            }
        })
        .collect();
    (explained, u64::from(feasible))
}
