//! Words for people: why a job could not be placed, and what its best candidates were at the moment
//! it was decided.

use serde::Serialize;

use crate::engine::ledger::Ledger;
use crate::engine::place::{Outcome, decision_rank};
use crate::engine::scheduler::Placement;
use crate::error::{InputError, Result};
use crate::kernel::cpu::score_job;
use crate::kernel::limits::MAX_LATENCY_MS;
use crate::kernel::score::{Candidate, JobGpu, NO_RACK, REJECT_KINDS, REJECT_NAMES, STATIC_REJECTS, terms};
use crate::kernel::shape::{cluster_has_room, racks_needed, spans_racks};
use crate::model::fleet::Fleet;
use crate::model::jobs::Workload;
use crate::model::policy::{PerTerm, Policy};

/// Formats watts for people: MW from 1 MW up, kW from 0.1 kW, W below.
pub(crate) fn power(watts: u64) -> String {
    if watts >= 1_000_000 {
        format!("{:.2} MW", watts as f64 / 1e6)
    } else if watts >= 100 {
        format!("{:.1} kW", watts as f64 / 1e3)
    } else {
        format!("{watts} W")
    }
}

/// What the job asks for, in words: "needs 64 GPUs in one NVLink domain with 200 GB HBM per GPU
/// within 40 ms of eu-west in EU".
pub fn describe_need(fleet: &Fleet, job: &JobGpu) -> String {
    let largest_rack = fleet.rack_types.iter().map(|rt| rt.gpus).max().unwrap_or(0);
    let mut need = if spans_racks(job.gpus, largest_rack) {
        format!("needs {} GPUs across whole free racks of one cluster", job.gpus)
    } else {
        format!("needs {} GPUs in one NVLink domain", job.gpus)
    };
    if job.hbm_gb > 0 {
        need += &format!(" with {} GB HBM per GPU", job.hbm_gb);
    }
    if job.latency_limit_ms < MAX_LATENCY_MS {
        need += &format!(" within {} ms of {}", job.latency_limit_ms, fleet.regions[job.region as usize]);
    }
    let names = |mask: u32, all: &[String]| {
        let named: Vec<&str> =
            all.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, n)| n.as_str()).collect();
        if named.is_empty() { "none of the fleet's".to_string() } else { named.join("/") }
    };
    if job.jurisdiction_mask != u32::MAX {
        need += &format!(" in {}", names(job.jurisdiction_mask, &fleet.jurisdictions));
    }
    if job.provider_mask != u32::MAX {
        need += &format!(" from {}", names(job.provider_mask, &fleet.providers));
    }
    need
}

/// Why `job` has no feasible rack in the ledger's state, for a person. Names the closest thing to a
/// fit.
///
/// Works cluster by cluster: every constraint but GPU capacity is the same for all racks of a
/// cluster, and the ledger's rack classes give each cluster's free-GPU counts without scanning its
/// racks.
pub(crate) fn unplaced_reason(ledger: &Ledger, job: &JobGpu) -> String {
    let (fleet, state, classes) = (ledger.fleet(), ledger.state(), ledger.classes());
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
        cluster_has_room(job.gpus, rack_gpus(c), classes.max_free(c).unwrap_or(0), state.clusters[c].free_racks)
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
            power(u64::from(state.sites[site].power_free_w)),
            power(draw)
        );
    }
    // Otherwise GPUs bind: name the eligible place closest to fitting.
    let within_one_domain: Vec<usize> =
        eligible.iter().copied().filter(|&c| !spans_racks(job.gpus, rack_gpus(c))).collect();
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
            racks_needed(job.gpus, rack_gpus(c))
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
    /// Total score: the sum over terms of weight × term.
    pub score: u32,
    /// The terms (each 0..=1000).
    pub terms: PerTerm,
    /// The job's weights.
    pub weights: PerTerm,
}

/// A job's situation at the moment it was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The job's id.
    pub job: String,
    /// What it asks for, in words.
    pub need: String,
    /// Jobs decided before it in its batch (higher priority, or equal priority and smaller id).
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

/// The best `count` feasible racks for `job` in the ledger's state, with their terms, and the
/// number of feasible racks.
fn candidates(ledger: &Ledger, job: &JobGpu, count: usize) -> (Vec<ExplainedCandidate>, u64) {
    let (fleet, state) = (ledger.fleet(), ledger.state());
    let mut top = vec![Candidate::NONE; count.max(1)];
    let feasible = score_job(job, state, &mut top);
    let explained = top
        .iter()
        .filter(|c| c.rack != NO_RACK)
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
                terms: PerTerm(terms(job, rack, &state.sites[rack.site as usize], state.latency_of(rack, job.region))),
                weights: PerTerm(job.weights),
            }
        })
        .collect();
    (explained, u64::from(feasible))
}

/// Racks failing each constraint now (a rack failing several counts in each), by constraint name.
fn rejections(ledger: &Ledger, job: &JobGpu) -> Vec<(String, u64)> {
    let mut counts = [0u64; REJECT_KINDS];
    for rack in 0..ledger.state().racks.len() {
        let reject = ledger.state().check(job, rack);
        for (bit, count) in counts.iter_mut().enumerate() {
            if reject & (1 << bit) != 0 {
                *count += 1;
            }
        }
    }
    REJECT_NAMES.iter().zip(counts).map(|(name, count)| (name.to_string(), count)).collect()
}

/// Explains job `id` of `workload` as `placement` (of that workload) decided it: its best candidates
/// and the racks rejected per constraint at that moment. Nothing is placed again: the state at
/// that moment is `placement.before` with the allocations of the jobs decided earlier applied.
pub fn explain(
    fleet: &std::sync::Arc<Fleet>,
    policy: &Policy,
    workload: &Workload,
    placement: &Placement,
    id: &str,
) -> Result<Explanation> {
    let not_found =
        || InputError::new(&workload.source_name, format!("job `{id}`"), "id", "no job has this id in the workload");
    let index = workload.jobs.iter().position(|j| j.id == id).ok_or_else(not_found)?;
    let rank = decision_rank(&workload.jobs, index);
    let decided = placement.decisions.get(rank).filter(|d| d.job == index).ok_or_else(|| {
        InputError::new(
            &workload.source_name,
            format!("job `{id}`"),
            "id",
            "the placement was not made of this workload",
        )
    })?;
    let job = Workload::from_jobs(vec![workload.jobs[index].clone()], &workload.source_name).compile(
        fleet,
        policy,
        placement.at,
    )?[0];
    let mut ledger = Ledger::with_state(std::sync::Arc::clone(fleet), placement.before.clone());
    for decision in &placement.decisions[..rank] {
        if let Outcome::Placed { allocation, .. } = &decision.outcome {
            ledger.apply(allocation);
        }
    }
    let (candidates, feasible_racks) = candidates(&ledger, &job, policy.candidates as usize);
    let decision = match &decided.outcome {
        Outcome::Placed { allocation, score } => {
            let slot = fleet.racks[allocation.anchor() as usize];
            let cluster = &fleet.clusters[slot.cluster as usize];
            format!(
                "placed on {}/{} rack {} with score {score}",
                fleet.sites[cluster.site].name, cluster.name, slot.index_in_cluster
            )
        }
        Outcome::Unplaced { reason } => format!("unplaced: {reason}"),
    };
    Ok(Explanation {
        job: id.to_string(),
        need: describe_need(fleet, &job),
        decided_before: rank,
        candidates,
        feasible_racks,
        rejected: rejections(&ledger, &job),
        decision,
    })
}
