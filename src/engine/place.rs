//! Placement: the reference oracle and the batched engine, both committing on a [`Ledger`].

use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::backend::Backend;
use crate::engine::classes::ClassIndex;
use crate::engine::ledger::{Allocation, Ledger};
use crate::engine::reasons::{Reason, unplaced_reason};
use crate::error::ScoreError;
use crate::kernel::score::{
    BLOCK_ANY, BLOCK_PREFERRED, Candidate, JobGpu, MAX_CANDIDATES, NO_RACK, ONE_DOMAIN_PREFERRED, REJECT_ONLINE,
    STATIC_REJECTS, TERM_COUNT, better,
};
use crate::kernel::state::FleetState;
use crate::model::date::Day;
use crate::model::fleet::Fleet;
use crate::model::policy::Policy;

/// How one job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Placed, holding `allocation`, scored `score` on its anchor rack.
    Placed {
        /// What it holds.
        allocation: Allocation,
        /// The anchor rack's score.
        score: u32,
    },
    /// Not placed.
    Unplaced {
        /// Why, as a code with data and in words (shared: jobs of one need in one state share one).
        reason: Arc<Reason>,
    },
}

/// A job's decision; `job` indexes the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Index of the job in the workload.
    pub job: usize,
    /// What happened to it.
    pub outcome: Outcome,
}

/// A job moved to make room.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Move {
    /// The moved job (index into the workload).
    pub job: usize,
    /// What it held before.
    pub from: Allocation,
    /// What it holds now.
    pub to: Allocation,
    /// The job placed thanks to the move (index into the workload).
    pub for_job: usize,
}

/// What a consolidation pass ([`crate::engine::consolidate`]) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Consolidation {
    /// Jobs placed by the pass (indices into the workload), in the order it placed them.
    pub placed: Vec<usize>,
    /// The moves, in the order they were made; a job moved twice appears twice.
    pub moves: Vec<Move>,
    /// Racks tried.
    pub tries: usize,
    /// The pass stopped because its work ran out ([`crate::engine::consolidate::MAX_WORK`]), not
    /// because nothing more could be placed.
    pub exhausted: bool,
}

/// Counters of the batched engine, for the curious and for benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct EngineStats {
    /// Scoring passes (each over the jobs of one round).
    pub rounds: u32,
    /// Job × rack pairs scored by the backend (identical jobs of a round count once).
    pub scored_pairs: u64,
    /// Jobs decided from their candidate list (plus changed racks).
    pub from_candidates: u64,
    /// Jobs decided on the host from scratch because their list ran out.
    pub host_rescans: u64,
    /// Unplaced reasons worded (the rest came from the cache: same needs, same state).
    pub reasons_worded: u64,
    /// Jobs placed by consolidation ([`crate::engine::consolidate`]).
    pub consolidated: u64,
    /// Jobs moved by consolidation (a job moved twice counts twice).
    pub moves: u64,
}

/// Time spent in each phase of a placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Timings {
    /// Validating and compiling the jobs.
    pub compile: Duration,
    /// Scoring passes on the backend (including upload and readback on the GPU).
    pub score: Duration,
    /// Host work: ordering, walking candidate lists, re-checks, commits and reasons.
    pub commit: Duration,
}

/// The result of placing a workload with [`crate::Scheduler::place`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Placement {
    /// One decision per job, in decision order (priority descending, then id).
    pub decisions: Vec<Decision>,
    /// The fleet's capacity before the first decision (what [`crate::Scheduler::explain`] starts from).
    pub before: FleetState,
    /// The fleet's capacity after the last decision.
    pub state: FleetState,
    /// The placement date used.
    pub at: Day,
    /// The policy used.
    pub policy: Policy,
    /// Engine counters.
    pub stats: EngineStats,
    /// What consolidation did after the decisions: jobs placed and jobs moved (empty when the
    /// policy does not consolidate). `decisions` hold the final allocations.
    pub consolidation: Consolidation,
    /// The backend that finished the run.
    pub backend: String,
    /// Things the user should know that happened during this placement (a GPU failing over).
    pub notices: Vec<String>,
    /// Time per phase.
    pub timings: Timings,
}

impl Placement {
    /// Jobs placed.
    pub fn placed_count(&self) -> usize {
        self.decisions.iter().filter(|d| matches!(d.outcome, Outcome::Placed { .. })).count()
    }
}

/// When the batched engine re-scores the pending jobs against a fresh snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RoundLimits {
    /// End the round once more than this many racks changed since the snapshot. Host work per job
    /// is bounded by the number of rack *classes* (not racks), so the default never ends a round
    /// for this reason; tests set small values to exercise many rounds.
    pub max_dirty_racks: usize,
    /// Jobs scored per round. Each job is still scored once, but later rounds see a fresher
    /// snapshot: fewer stale candidate lists, more jobs found infeasible outright, and (on the CPU)
    /// more clusters skipped as full. It also bounds the memory of one scoring pass.
    pub max_jobs_per_round: usize,
    /// Test hook: ignore the racks that changed since the snapshot, which breaks the engine (the
    /// negative control of its cross-check against the reference rule).
    pub ignore_changed_racks: bool,
    /// Word why each unplaced job could not be placed ([`Reasons::Worded`]), or leave it to the
    /// caller, who may not need it ([`Reasons::Skipped`]).
    pub reasons: Reasons,
}

impl Default for RoundLimits {
    fn default() -> Self {
        RoundLimits {
            max_dirty_racks: usize::MAX,
            max_jobs_per_round: 65_536,
            ignore_changed_racks: false,
            reasons: Reasons::Worded,
        }
    }
}

/// Whether placement words the reason of each job it cannot place (a few microseconds each, the
/// larger part of a replay's time when many jobs wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Reasons {
    /// Every unplaced job gets its reason.
    #[default]
    Worded,
    /// Unplaced jobs get [`Reason::not_evaluated`]; the caller works out the reasons it needs
    /// ([`crate::Scheduler::unplaced_reason`]).
    Skipped,
}

/// The decision order of `jobs` (compiled as `compiled` for `fleet`, whose kernel records `state`
/// holds): priority descending; within a priority, the more constrained job first — the one whose
/// GPUs are the larger share of the GPUs in the fleet that could ever hold it ([`usable_gpus`]) —
/// then the larger job, then id ascending. A flexible job so never takes the only capacity a
/// constrained job of its priority may use before that job is decided, and large gangs find whole
/// racks before small jobs break them up. Measured against exact optima (`scripts/quality.py`),
/// this order beat priority-then-id, fewest usable GPUs first, and largest first; see
/// BENCHMARKS.md.
pub fn decision_order(
    jobs: &[crate::model::jobs::Job],
    compiled: &[JobGpu],
    fleet: &Fleet,
    state: &FleetState,
) -> Vec<usize> {
    let usable = usable_gpus_of_all(compiled, fleet, state);
    // Each job's rank by id: its index when the jobs come in id order (generated workloads and most
    // files do), so that ties, which are common, compare two integers rather than two strings.
    let id_rank: Vec<usize> = if jobs.is_sorted_by(|a, b| a.id < b.id) {
        (0..jobs.len()).collect()
    } else {
        let mut by_id: Vec<usize> = (0..jobs.len()).collect();
        // Unique ids (`Workload::validate`): a total order, the same on any number of cores.
        by_id.par_sort_unstable_by(|&a, &b| jobs[a].id.cmp(&jobs[b].id));
        let mut rank = vec![0; jobs.len()];
        for (r, &j) in by_id.iter().enumerate() {
            rank[j] = r;
        }
        rank
    };
    let keys: Vec<(i32, u64, u32, usize)> =
        (0..jobs.len()).map(|j| (jobs[j].priority, usable[j], compiled[j].gpus, id_rank[j])).collect();
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    // Ids are unique, so no two jobs compare equal and an unstable sort, on all cores, gives the one
    // order.
    order.par_sort_unstable_by(|&a, &b| {
        let (priority_a, usable_a, gpus_a, id_a) = keys[a];
        let (priority_b, usable_b, gpus_b, id_b) = keys[b];
        priority_b
            .cmp(&priority_a)
            // usable_a / gpus_a < usable_b / gpus_b, exactly: below 2^30 × 2^16 each side.
            .then_with(|| (usable_a * u64::from(gpus_b)).cmp(&(usable_b * u64::from(gpus_a))))
            .then_with(|| gpus_b.cmp(&gpus_a))
            .then_with(|| id_a.cmp(&id_b))
    });
    order
}

/// The GPUs of the fleet that could ever hold `job`: the nominal GPUs of every cluster that meets
/// its fixed needs (HBM, jurisdiction, provider, latency) and whose trays can hold its pods,
/// whatever is in use. Occupancy, power, health and online dates do not count: the measure is fixed
/// for a job, so the order does not change as capacity does or as a replay's days pass.
pub fn usable_gpus(job: &JobGpu, fleet: &Fleet, state: &FleetState) -> u64 {
    fleet
        .clusters
        .iter()
        .filter(|cluster| {
            let first = cluster.racks.start;
            let rack = &state.racks[first];
            let (_, per_rack) = job.shape_on(rack);
            per_rack != 0 && state.check(job, first) & STATIC_REJECTS & !REJECT_ONLINE == 0
        })
        .map(|cluster| cluster.racks.len() as u64 * u64::from(fleet.rack_types[cluster.rack_type].gpus))
        .sum()
}

/// [`usable_gpus`] of every job, computed once per distinct need (jobs of one need share it).
fn usable_gpus_of_all(compiled: &[JobGpu], fleet: &Fleet, state: &FleetState) -> Vec<u64> {
    // Everything `usable_gpus` reads of a job (its ready day does not count: online dates are left out).
    let mut cache: FxHashMap<[u32; 11], u64> = FxHashMap::default();
    compiled
        .iter()
        .map(|job| {
            let need = [
                job.gpus,
                job.pods,
                job.pod_gpus,
                job.hbm_gb,
                job.region,
                job.latency_limit_ms,
                job.jurisdiction_mask,
                job.provider_mask,
                job.pod_cpu_milli,
                job.pod_memory_mib,
                job.gpu_milli,
            ];
            *cache.entry(need).or_insert_with(|| usable_gpus(job, fleet, state))
        })
        .collect()
}

/// What decides whether a job can be placed and why not: the job without what only orders racks
/// (its weights, latency reference and per-job random salt).
pub(crate) fn need_of(job: &JobGpu) -> JobGpu {
    JobGpu {
        latency_ref_ms: 0,
        inv_latency_ref_q16: 0,
        random_salt: 0,
        frag_mix: [0; 3],
        weights: [0; TERM_COUNT],
        ..*job
    }
}

/// Unplaced reasons, worded once per (need, ledger version): jobs of one need in one state share one.
/// Versions only grow, so the cache keeps the current version's reasons only (keeping them all made
/// the map grow with every commit).
#[derive(Default)]
pub(crate) struct ReasonCache {
    version: u64,
    // Fx rather than SipHash: the keys are our own records.
    cache: FxHashMap<JobGpu, Arc<Reason>>,
    worded: u64,
    skipped: Option<Arc<Reason>>,
}

impl ReasonCache {
    /// A cache that works nothing out: every reason is [`Reason::not_evaluated`].
    pub(crate) fn skipping() -> Self {
        ReasonCache { skipped: Some(Arc::new(Reason::not_evaluated())), ..ReasonCache::default() }
    }

    pub(crate) fn reason(&mut self, ledger: &Ledger, job: &JobGpu) -> Arc<Reason> {
        if let Some(skipped) = &self.skipped {
            return Arc::clone(skipped);
        }
        // Reasons depend only on what the job needs, not on how it scores, or no two jobs would
        // share one.
        if ledger.version() != self.version {
            self.cache.clear();
            self.version = ledger.version();
        }
        let key = need_of(job);
        if let Some(reason) = self.cache.get(&key) {
            return Arc::clone(reason);
        }
        self.worded += 1;
        let reason = Arc::new(unplaced_reason(ledger, job));
        self.cache.insert(key, Arc::clone(&reason));
        reason
    }
}

/// The reference oracle: one job at a time, every rack scanned against the capacity left by all
/// jobs before it, committed on `ledger`. Simple and slow; the definition the batched engine must
/// match.
pub fn place_reference(ledger: &mut Ledger, jobs: &[JobGpu], order: &[usize]) -> Vec<Decision> {
    let mut reasons = ReasonCache::default();
    order
        .iter()
        .map(|&j| {
            let (job, best) = best_with_relaxing(&jobs[j], ledger, |job, ledger| ledger.best_rack(job));
            let outcome = match best {
                Some(best) => Outcome::Placed { allocation: ledger.commit(&job, best.rack), score: best.score },
                None => Outcome::Unplaced { reason: reasons.reason(ledger, &job) },
            };
            Decision { job: j, outcome }
        })
        .collect()
}

/// A job that prefers one NVLink domain ([`ONE_DOMAIN_PREFERRED`]) is decided first on racks that
/// hold all its pods; one that prefers one topology block, as if it required one. When no rack is
/// feasible so, it is decided again without the preference: first the domain's, then the block's
/// ([`relaxed`]). Returns the job as decided (the last relaxed one when it was relaxed, which is
/// also the one an unplaced job's reason speaks of) and its best rack by `best`.
pub(crate) fn best_with_relaxing(
    job: &JobGpu,
    ledger: &Ledger,
    best: impl Fn(&JobGpu, &Ledger) -> Option<Candidate>,
) -> (JobGpu, Option<Candidate>) {
    let mut job = *job;
    loop {
        match best(&job, ledger) {
            None => match relaxed(&job) {
                Some(next) => job = next,
                None => return (job, None),
            },
            found => return (job, found),
        }
    }
}

/// `job` as placement decides it on `ledger` now: with its preferences (one NVLink domain, one
/// topology block) while some rack meets them, else without them, as [`place_reference`] relaxes
/// them. For callers that test racks one by one (a scheduler extender's filter).
pub fn as_decided(job: &JobGpu, ledger: &Ledger) -> JobGpu {
    best_with_relaxing(job, ledger, |job, ledger| ledger.best_rack_by_class(job)).0
}

/// The job with its next preference dropped: one NVLink domain first, then one topology block;
/// None when it states none.
pub(crate) fn relaxed(job: &JobGpu) -> Option<JobGpu> {
    if job.one_domain == ONE_DOMAIN_PREFERRED {
        Some(JobGpu { one_domain: 0, ..*job })
    } else if job.block_rule == BLOCK_PREFERRED {
        Some(JobGpu { block_rule: BLOCK_ANY, ..*job })
    } else {
        None
    }
}

/// How often (in decided jobs) the engine reports progress.
const PROGRESS_EVERY: usize = 8192;

/// The production engine: batched scoring plus exact host commits on `ledger` (see
/// [`crate::engine`]). Decides `jobs[order[..]]` in that order with `k` candidates per job and
/// returns exactly what [`place_reference`] would. `progress` is called with (jobs decided so far,
/// jobs in all) after each scoring pass and every few thousand decisions. If the backend fails (a
/// GPU without fallback), the jobs committed by this call are released before the error returns.
///
/// # Panics
/// If `k` is not 1..=16 ([`crate::kernel::score::MAX_CANDIDATES`]), or `order` names a job twice
/// or one outside `jobs`: the caller's contract, which [`crate::Scheduler`] keeps.
pub fn place_batched(
    ledger: &mut Ledger,
    jobs: &[JobGpu],
    order: &[usize],
    backend: &mut Backend,
    k: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<Decision>, EngineStats), ScoreError> {
    place_batched_with(ledger, jobs, order, backend, k, RoundLimits::default(), progress)
}

/// [`place_batched`] with explicit round limits (tests use small ones to make many rounds).
pub(crate) fn place_batched_with(
    ledger: &mut Ledger,
    jobs: &[JobGpu],
    order: &[usize],
    backend: &mut Backend,
    k: usize,
    limits: RoundLimits,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<Decision>, EngineStats), ScoreError> {
    // In debug builds (every test) each decision is checked against the reference rule on the same
    // state: the batched shortcuts rest on invariants (see the module docs) that a change to the
    // model could break silently.
    let cross_check = cfg!(debug_assertions);
    assert!((1..=MAX_CANDIDATES as usize).contains(&k), "k must be 1..={MAX_CANDIDATES}, not {k}");
    let mut decisions: Vec<Decision> = Vec::with_capacity(order.len());
    let mut stats = EngineStats::default();
    let mut reasons = match limits.reasons {
        Reasons::Worded => ReasonCache::default(),
        Reasons::Skipped => ReasonCache::skipping(),
    };
    // Racks changed since the round's snapshot, by class.
    let mut dirty = ClassIndex::new(ledger.fleet());
    let mut position = 0;
    let mut batch: Vec<JobGpu> = Vec::new();
    while position < order.len() {
        batch.clear();
        let round_end = order.len().min(position.saturating_add(limits.max_jobs_per_round.max(1)));
        batch.extend(order[position..round_end].iter().map(|&j| jobs[j]));
        let scored = match backend.score(&batch, ledger.state(), k) {
            Ok(scored) => scored,
            Err(e) => {
                // Undo this call's commits: a failed placement leaves the ledger as it found it.
                for decision in decisions.iter().rev() {
                    if let Outcome::Placed { allocation, .. } = &decision.outcome {
                        ledger.release(allocation);
                    }
                }
                return Err(e);
            }
        };
        stats.rounds += 1;
        // Identical jobs of a round are scored once (`Backend::score`): count what was scored.
        stats.scored_pairs += backend.last_scored_jobs() as u64 * ledger.state().racks.len() as u64;
        dirty.clear();
        let round_start = position;
        while position < round_end {
            let i = position - round_start;
            let j = order[position];
            let job = &jobs[j];
            let job_as_given = job;
            position += 1;
            let best = if scored.feasible[i] == 0 {
                // Infeasible against the snapshot means infeasible now: capacity only shrinks.
                None
            } else {
                let listed = scored
                    .candidates_of(i)
                    .iter()
                    .take_while(|c| c.rack != NO_RACK)
                    .find(|c| !dirty.contains(c.rack) && ledger.state().check(job, c.rack as usize) == 0)
                    .copied();
                if listed.is_none() && scored.feasible[i] as usize > k {
                    // Clean racks beyond the list may be feasible: decide this job from scratch.
                    stats.host_rescans += 1;
                    ledger.classes().best(job, ledger.state())
                } else {
                    stats.from_candidates += 1;
                    let changed = if limits.ignore_changed_racks { None } else { dirty.best(job, ledger.state()) };
                    match (listed, changed) {
                        (Some(a), Some(b)) => Some(if better(b, a) { b } else { a }),
                        (a, b) => a.or(b),
                    }
                }
            };
            // A job preferring one NVLink domain or one block with nothing feasible so: decided again
            // without the preference, on the host from scratch, as the reference does.
            let (job, best) = match (best, relaxed(job)) {
                (None, Some(next)) => {
                    best_with_relaxing(&next, ledger, |job, ledger| ledger.classes().best(job, ledger.state()))
                }
                (found, _) => (*job, found),
            };
            let job = &job;
            if cross_check {
                let (_, expected) = best_with_relaxing(job_as_given, ledger, |job, ledger| ledger.best_rack(job));
                assert_eq!(
                    best, expected,
                    "the batched engine diverged from the reference rule on job {j} (best feasible rack, \
                     ties to the lowest index): one of its invariants no longer holds"
                );
            }
            let outcome = match best {
                Some(best) => {
                    let allocation = ledger.commit(job, best.rack);
                    for share in &allocation.racks {
                        dirty.update(share.rack, ledger.state());
                    }
                    Outcome::Placed { allocation, score: best.score }
                }
                None => Outcome::Unplaced { reason: reasons.reason(ledger, job) },
            };
            decisions.push(Decision { job: j, outcome });
            if position % PROGRESS_EVERY == 0 {
                progress(position, order.len());
            }
            if dirty.len() > limits.max_dirty_racks {
                break;
            }
        }
        progress(position, order.len());
    }
    stats.reasons_worded = reasons.worded;
    Ok((decisions, stats))
}
