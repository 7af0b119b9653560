//! Words for people: why a job could not be placed, and what its best candidates were.

use serde::Serialize;

use crate::fleet::{Fleet, FleetState, MAX_LATENCY_MS};
use crate::place::{STATIC_REJECTS, reject_counts};
use crate::score::{JobGpu, REJECT_GPUS, REJECT_KINDS, REJECT_NAMES, Terms, terms};

/// Formats watts as megawatts for people.
fn mw(watts: u64) -> String {
    format!("{:.2} MW", watts as f64 / 1e6)
}

/// What the job asks for, in words: "64 GPUs in one NVLink domain with 200 GB HBM per GPU within
/// 40 ms of eu-west in EU".
pub fn describe_need(fleet: &Fleet, job: &JobGpu) -> String {
    let largest_rack = fleet.rack_types.iter().map(|rt| rt.gpus).max().unwrap_or(0);
    let mut need = if job.gpus <= largest_rack {
        format!("needs {} GPUs in one NVLink domain", job.gpus)
    } else {
        format!(
            "needs {} GPUs across whole free racks of one cluster",
            job.gpus
        )
    };
    if job.hbm_gb > 0 {
        need += &format!(" with {} GB HBM per GPU", job.hbm_gb);
    }
    if job.latency_limit_ms < MAX_LATENCY_MS {
        need += &format!(
            " within {} ms of {}",
            job.latency_limit_ms, fleet.regions[job.region as usize]
        );
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
pub fn unplaced_reason(fleet: &Fleet, state: &FleetState, job: &JobGpu) -> String {
    let need = describe_need(fleet, job);
    // Racks that meet every constraint that does not depend on occupancy.
    let eligible: Vec<usize> = (0..state.racks.len())
        .filter(|&r| state.check(job, r) & STATIC_REJECTS == 0)
        .collect();
    if eligible.is_empty() {
        let counts = reject_counts(state, job);
        let failing: Vec<String> = (0..REJECT_KINDS)
            .filter(|&bit| (1u32 << bit) & STATIC_REJECTS != 0 && counts[bit] > 0)
            .map(|bit| format!("{} fail {}", counts[bit], REJECT_NAMES[bit]))
            .collect();
        return format!(
            "{need}; no rack of the fleet qualifies ({} racks: {})",
            state.racks.len(),
            failing.join(", ")
        );
    }
    // Racks with the GPUs but not the power: the site's power is what binds.
    if let Some(&rack) = eligible
        .iter()
        .filter(|&&r| state.check(job, r) & REJECT_GPUS == 0)
        .max_by_key(|&&r| {
            (
                state.sites[state.racks[r].site as usize].power_free_w,
                std::cmp::Reverse(r),
            )
        })
    {
        let site = state.racks[rack].site as usize;
        let draw = u64::from(job.gpus) * u64::from(state.racks[rack].gpu_watts);
        return format!(
            "{need}; GPUs are free but power is not: {} has {} of IT power left, the job draws {}",
            fleet.sites[site].name,
            mw(u64::from(state.sites[site].power_free_w)),
            mw(draw)
        );
    }
    // Otherwise GPUs bind: name the eligible place closest to fitting.
    let one_domain = eligible.iter().any(|&r| job.gpus <= state.racks[r].gpus);
    if one_domain {
        let &rack = eligible
            .iter()
            .filter(|&&r| job.gpus <= state.racks[r].gpus)
            .max_by_key(|&&r| (state.racks[r].free_gpus, std::cmp::Reverse(r)))
            .expect("one_domain");
        let site = &fleet.sites[state.racks[rack].site as usize].name;
        format!(
            "{need}; closest feasible: {site} has at most {} free in a rack",
            state.racks[rack].free_gpus
        )
    } else {
        let &rack = eligible
            .iter()
            .max_by_key(|&&r| {
                (
                    state.clusters[state.racks[r].cluster as usize].free_racks,
                    std::cmp::Reverse(r),
                )
            })
            .expect("eligible is not empty");
        let cluster = &fleet.clusters[state.racks[rack].cluster as usize];
        let needed = job.gpus.div_ceil(state.racks[rack].gpus);
        format!(
            "{need}; closest feasible: {}/{} has {} fully free racks, the job needs {needed}",
            fleet.sites[cluster.site].name,
            cluster.name,
            state.clusters[state.racks[rack].cluster as usize].free_racks
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
    pub weights: [u32; 6],
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
                terms: terms(
                    job,
                    rack,
                    &state.sites[rack.site as usize],
                    state.latency_of(rack, job.region),
                ),
                weights: [
                    job.w_pack,
                    job.w_spread,
                    job.w_latency,
                    job.w_energy,
                    job.w_carbon,
                    job.w_hbm,
                ],
            }
        })
        .collect();
    (explained, u64::from(feasible))
}
