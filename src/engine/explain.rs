//! What a job's best candidates were at the moment it was decided, and why other racks were
//! rejected: computed from a placement, without placing again.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::ledger::{Allocation, Ledger};
use crate::engine::place::{Outcome, Placement, decision_order};
use crate::engine::reasons::{Reason, RejectCounts, describe_need};
use crate::engine::view::PlacedOn;
use crate::error::{InputError, Result};
use crate::kernel::cpu::score_job;
use crate::kernel::score::{Candidate, JobGpu, NO_RACK, ONE_DOMAIN_PREFERRED, REJECT_KINDS, terms};
use crate::model::fleet::Fleet;
use crate::model::jobs::Workload;
use crate::model::policy::{PerTerm, Policy};

/// One candidate rack with its score broken down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct ExplainedCandidate {
    /// Site name.
    pub site: String,
    /// Cluster name.
    pub cluster: String,
    /// Rack index within the cluster.
    pub rack: u32,
    /// Global rack index.
    pub global_rack: u32,
    /// Free GPUs in the rack before placement (on ready trays).
    pub free_gpus: u32,
    /// Free GPUs on each tray (node) of the rack before placement, in tray order; 0 for cordoned
    /// and failed trays.
    #[serde(default)]
    pub free_on_trays: Vec<u32>,
    /// Free thousandths left on each shared GPU (one that pods of a shared GPU hold part of) of the
    /// rack's ready trays before placement, in tray and GPU order; empty when it has none.
    #[serde(default)]
    pub shared_free_milli: Vec<u32>,
    /// Total score: the sum over terms of weight × term.
    pub score: u32,
    /// The terms (each 0..=1000).
    pub terms: PerTerm,
    /// The job's weights.
    pub weights: PerTerm,
}

/// A job's situation at the moment it was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct Explanation {
    /// The job's id.
    pub job: String,
    /// What it asks for, in words.
    pub need: String,
    /// Jobs decided before it in its batch (in the decision order: priority, then the more
    /// constrained job, the larger, the smaller id); 0 for a job explained now and alone
    /// ([`explain_now`]).
    pub decided_before: usize,
    /// Best feasible racks, best first.
    pub candidates: Vec<ExplainedCandidate>,
    /// Feasible racks in all.
    pub feasible_racks: u64,
    /// Racks rejected per constraint (a rack failing several counts under each).
    pub rejected: RejectCounts,
    /// What placement decided, in words: `placed on …` or `unplaced: ` and the reason; for a job
    /// explained now ([`explain_now`]), `would be placed now on …` (its anchor rack) or
    /// `cannot be placed now: ` and the reason.
    pub decision: String,
    /// Where placement put it, if it did.
    pub placed_on: Option<PlacedOn>,
    /// Why placement did not place it, if it did not.
    pub reason: Option<Reason>,
}

/// [`describe_need`] of `decided` (the job `given` as placement decided it), saying how the
/// policy's preference for one NVLink domain (`prefer_one_domain`) shaped it: the racks it would
/// span count as rejected for GPUs while the preference holds, and it was dropped when no rack held
/// all its pods.
fn need_as_decided(fleet: &Fleet, given: &JobGpu, decided: &JobGpu) -> String {
    let need = describe_need(fleet, decided);
    match (given.one_domain == ONE_DOMAIN_PREFERRED, decided.one_domain == ONE_DOMAIN_PREFERRED) {
        (true, true) => format!(
            "{need}; the policy keeps it to one NVLink domain while a rack holds all its pods (racks it \
             would span count as rejected for gpus)"
        ),
        (true, false) => format!(
            "{need}; no rack held all its pods, so the policy's preference for one NVLink domain was \
             dropped and whole racks of one cluster allowed"
        ),
        _ => need,
    }
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
                free_on_trays: state.node_free(c.rack as usize),
                shared_free_milli: state.shared_room(c.rack as usize),
                score: c.score,
                terms: PerTerm(terms(job, rack, &state.sites[rack.site as usize], state.latency_of(rack, job.region))),
                weights: PerTerm(job.weights),
            }
        })
        .collect();
    (explained, u64::from(feasible))
}

/// Racks failing each constraint now (a rack failing several counts in each).
fn rejections(ledger: &Ledger, job: &JobGpu) -> RejectCounts {
    let mut counts = [0u64; REJECT_KINDS];
    for rack in 0..ledger.state().racks.len() {
        let reject = ledger.state().check(job, rack);
        for (bit, count) in counts.iter_mut().enumerate() {
            if reject & (1 << bit) != 0 {
                *count += 1;
            }
        }
    }
    RejectCounts::from_bits(counts)
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
    let foreign = || {
        InputError::new(
            &workload.source_name,
            format!("job `{id}`"),
            "id",
            "the placement was not made of this workload on this fleet",
        )
    };
    if placement.decisions.len() != workload.jobs.len() || placement.before.racks.len() != fleet.racks.len() {
        return Err(foreign().into());
    }
    let compiled = workload.compile(fleet, policy, placement.at)?;
    let order = decision_order(&workload.jobs, &compiled, fleet, &placement.before);
    let rank = order.iter().position(|&j| j == index).expect("every job has a rank");
    let decided = placement.decisions.get(rank).filter(|d| d.job == index).ok_or_else(foreign)?;
    // The state at its turn: what the jobs before it held then. Consolidation ran after every
    // decision, so a job it placed held nothing then, and a job it moved held what it first had.
    let consolidation = &placement.consolidation;
    let consolidated: std::collections::HashSet<usize> = consolidation.placed.iter().copied().collect();
    let mut first_move: std::collections::HashMap<usize, &Allocation> = std::collections::HashMap::new();
    for m in &consolidation.moves {
        first_move.entry(m.job).or_insert(&m.from);
    }
    let mut ledger = Ledger::with_state(std::sync::Arc::clone(fleet), placement.before.clone());
    for decision in &placement.decisions[..rank] {
        if consolidated.contains(&decision.job) {
            continue;
        }
        if let Some(from) = first_move.get(&decision.job) {
            ledger.apply(from);
        } else if let Outcome::Placed { allocation, .. } = &decision.outcome {
            ledger.apply(allocation);
        }
    }
    // A job preferring one block with no room in one was decided without the rule: explain that.
    let (job, _) =
        crate::engine::place::best_with_relaxing(&compiled[index], &ledger, |job, ledger| ledger.best_rack(job));
    let (candidates, feasible_racks) = candidates(&ledger, &job, policy.candidates as usize);
    let (decision, placed_on, reason) = match &decided.outcome {
        Outcome::Placed { allocation, score } => {
            let on = PlacedOn::new(fleet, allocation, *score);
            let anchor = on.racks[0].rack;
            let mut trays: Vec<u32> = on.pods.iter().filter(|p| p.rack == anchor).map(|p| p.node).collect();
            trays.dedup();
            let trays: Vec<String> = trays.iter().map(u32::to_string).collect();
            let more =
                if on.racks.len() > 1 { format!(" and {} more racks", on.racks.len() - 1) } else { String::new() };
            let mut words = format!(
                "placed on {}/{} rack {anchor} (tray{} {}){more} with score {score}",
                on.site,
                on.cluster,
                if trays.len() == 1 { "" } else { "s" },
                trays.join(", ")
            );
            let name = |job: usize| format!("`{}`", workload.jobs[job].id);
            if consolidation.placed.contains(&index) {
                let moved: Vec<String> =
                    consolidation.moves.iter().filter(|m| m.for_job == index).map(|m| name(m.job)).collect();
                words += &if moved.is_empty() {
                    ", by consolidation after every job was decided: no rack had room at its turn, and moves for other jobs opened one".to_string()
                } else {
                    format!(
                        ", by consolidation after every job was decided: no rack had room at its turn; {} moved to make room",
                        moved.join(", ")
                    )
                };
            }
            let reasons: Vec<String> =
                consolidation.moves.iter().filter(|m| m.job == index).map(|m| name(m.for_job)).collect();
            if !reasons.is_empty() {
                words += &format!(
                    ", where consolidation moved it to make room for {}{}",
                    reasons.join(", "),
                    if consolidated.contains(&index) {
                        ""
                    } else {
                        " (at its turn, the best rack was the first candidate below)"
                    }
                );
            }
            (words, Some(on), None)
        }
        Outcome::Unplaced { reason } => (format!("unplaced: {reason}"), None, Some(Reason::clone(reason))),
    };
    Ok(Explanation {
        job: id.to_string(),
        need: need_as_decided(fleet, &compiled[index], &job),
        decided_before: rank,
        candidates,
        feasible_racks,
        rejected: rejections(&ledger, &job),
        decision,
        placed_on,
        reason,
    })
}

/// Job `id` (compiled as `job`) against the live capacity of `ledger` now, as if it were decided
/// now and alone: its best candidates, the feasible racks, the racks rejected per constraint, and
/// where it would go or why it cannot be placed. A service explains a waiting job so. Its scores
/// are those of the job alone (the fragmentation term's typical pods are its own), so they can
/// differ from a round's; which racks are feasible cannot.
pub fn explain_now(ledger: &Ledger, policy: &Policy, job: &JobGpu, id: &str) -> Explanation {
    let fleet = ledger.fleet();
    let given = *job;
    let (job, best) = crate::engine::place::best_with_relaxing(job, ledger, |job, ledger| ledger.best_rack(job));
    let (candidates, feasible_racks) = candidates(ledger, &job, policy.candidates as usize);
    let (decision, reason) = match best {
        Some(best) => {
            let slot = fleet.racks[best.rack as usize];
            let cluster = &fleet.clusters[slot.cluster as usize];
            let words = format!(
                "would be placed now on {}/{} rack {} with score {}",
                fleet.sites[cluster.site].name, cluster.name, slot.index_in_cluster, best.score
            );
            (words, None)
        }
        None => {
            let reason = crate::engine::reasons::unplaced_reason(ledger, &job);
            (format!("cannot be placed now: {reason}"), Some(reason))
        }
    };
    Explanation {
        job: id.to_string(),
        need: need_as_decided(fleet, &given, &job),
        decided_before: 0,
        candidates,
        feasible_racks,
        rejected: rejections(ledger, &job),
        decision,
        placed_on: None,
        reason,
    }
}
