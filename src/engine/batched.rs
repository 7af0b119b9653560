//! The placement engine: commits jobs in priority order with exact capacity accounting.
//!
//! # The guarantee
//! Jobs are decided one at a time in the order *priority descending, then id ascending*. Each job
//! is placed on the best-scoring rack (ties: lowest global rack index) among those feasible given
//! the capacity left by every job decided before it, or left unplaced if none is feasible. So a job
//! is never left unplaced because of capacity taken by a job of lower priority (or of equal
//! priority and greater id): those are decided after it.
//!
//! [`place_reference`] is that definition written as plainly as possible: for each job, scan every
//! rack. [`place_batched`] is the production path and gives *exactly* the same decisions (tests
//! check this on many random fleets): it scores all pending jobs at once against a snapshot (on the
//! CPU or the GPU), keeps each job's best K racks, and then walks the jobs in order, using the
//! candidate lists while they are still valid and re-checking on the host only what changed since
//! the snapshot:
//!
//! - capacity only shrinks as jobs commit, so a rack infeasible in the snapshot stays infeasible;
//! - a rack whose free GPUs did not change keeps its snapshot score (site power and free racks
//!   only affect feasibility, which is re-checked exactly against the current state);
//! - racks whose free GPUs changed ("dirty") are re-scored on the host; racks of the same cluster
//!   with the same free GPUs are interchangeable, so only the lowest-indexed rack of each such
//!   class is scored;
//! - when every listed candidate is gone and the snapshot had more feasible racks than the list
//!   holds, the job is decided on the host from scratch, again one rack per class.
//!
//! Host work per job is thus bounded by the number of rack classes, not racks, and one scoring
//! pass serves the whole batch. [`RoundLimits`] can end a round early (the remaining jobs are then
//! re-scored against a fresh snapshot); tests use that to exercise many rounds.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::cpu::ScoreOutput;
use crate::fleet::{Fleet, FleetState};
use crate::score::{Candidate, JobGpu, NO_RACK, REJECT_GPUS, REJECT_KINDS, REJECT_POWER, better};

/// GPUs a placed job takes on one rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RackShare {
    /// Global rack index.
    pub rack: u32,
    /// GPUs taken on it.
    pub gpus: u32,
}

/// How one job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Placed on these racks (one for a job of at most one NVLink domain) with this score.
    Placed {
        /// Racks and GPUs taken, anchor rack first, then by rack index.
        racks: Vec<RackShare>,
        /// The anchor rack's score.
        score: u32,
    },
    /// Not placed; the reason in words.
    Unplaced {
        /// Why, for a person (shared: jobs of one shape in one state share one reason).
        reason: Arc<str>,
    },
}

/// A job's decision; `job` indexes the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Index of the job in the workload.
    pub job: usize,
    /// What happened to it.
    pub outcome: Outcome,
}

/// Counters of the batched engine, for the curious and for benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStats {
    /// Scoring passes (each over all jobs still pending).
    pub rounds: u32,
    /// Job × rack pairs scored by the backend.
    pub scored_pairs: u64,
    /// Jobs decided from their candidate list (plus dirty racks).
    pub from_candidates: u64,
    /// Jobs scored against every rack on the host because their list ran out.
    pub host_rescans: u64,
    /// Unplaced reasons worded (the rest came from the cache: same needs, same state).
    pub reasons_worded: u64,
}

/// When the batched engine re-scores the pending jobs against a fresh snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundLimits {
    /// End the round once more than this many racks changed since the snapshot. Host work per job
    /// is bounded by the number of rack *classes* (not racks), so the default never ends a round
    /// for this reason; tests set small values to exercise many rounds.
    pub max_dirty_racks: usize,
    /// Jobs scored per round. Each job is still scored once, but later rounds see a fresher
    /// snapshot: fewer stale candidate lists, more jobs found infeasible outright, and (on the CPU)
    /// more clusters skipped as full. It also bounds the memory of one scoring pass.
    pub max_jobs_per_round: usize,
}

impl Default for RoundLimits {
    fn default() -> Self {
        RoundLimits { max_dirty_racks: usize::MAX, max_jobs_per_round: 65_536 }
    }
}

/// The decision order: priority descending, then id ascending.
pub fn decision_order(jobs: &[crate::jobs::Job]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    // Ids are unique, so no two jobs compare equal and an unstable sort gives the one order.
    order.sort_unstable_by(|&a, &b| jobs[b].priority.cmp(&jobs[a].priority).then_with(|| jobs[a].id.cmp(&jobs[b].id)));
    order
}

/// Capacity state plus what is needed to commit and explain: the fleet's topology.
pub(crate) struct Ledger<'a> {
    pub fleet: &'a Fleet,
    pub state: FleetState,
    /// Every rack by class, kept in step with `state`.
    pub classes: ClassIndex,
    /// Commits so far; keys the reason cache (reasons depend only on the job and the state).
    commits: u64,
    reasons: HashMap<(JobGpu, u64), Arc<str>>,
    /// Reasons computed rather than found in the cache.
    pub reasons_worded: u64,
}

impl<'a> Ledger<'a> {
    pub fn new(fleet: &'a Fleet, state: FleetState) -> Self {
        let classes = ClassIndex::all(&state, fleet);
        Ledger { fleet, state, classes, commits: 0, reasons: HashMap::new(), reasons_worded: 0 }
    }

    /// The best feasible rack for `job` in the current state, scanning every rack.
    pub fn best_rack(&self, job: &JobGpu) -> Option<Candidate> {
        let mut best: Option<Candidate> = None;
        for rack in 0..self.state.racks.len() {
            if self.state.check(job, rack) == 0 {
                let candidate = Candidate { score: self.state.score(job, rack), rack: rack as u32 };
                if best.is_none_or(|b| better(candidate, b)) {
                    best = Some(candidate);
                }
            }
        }
        best
    }

    /// Takes the job's GPUs and power, anchored at `anchor` (which must pass `check`).
    pub fn commit(&mut self, job: &JobGpu, anchor: usize) -> Vec<RackShare> {
        self.commits += 1;
        let rack = self.state.racks[anchor];
        let mut shares = Vec::new();
        if job.gpus <= rack.gpus {
            shares.push(RackShare { rack: anchor as u32, gpus: job.gpus });
        } else {
            // Whole free racks of the anchor's cluster: the anchor, then the lowest-indexed others.
            let mut remaining = job.gpus;
            let cluster_racks = self.fleet.clusters[rack.cluster as usize].racks.clone();
            let others =
                cluster_racks.filter(|&r| r != anchor && self.state.racks[r].free_gpus == self.state.racks[r].gpus);
            for r in std::iter::once(anchor).chain(others) {
                let take = remaining.min(self.state.racks[r].gpus);
                shares.push(RackShare { rack: r as u32, gpus: take });
                remaining -= take;
                if remaining == 0 {
                    break;
                }
            }
            debug_assert_eq!(remaining, 0, "check() guaranteed enough free racks");
        }
        for share in &shares {
            let r = &mut self.state.racks[share.rack as usize];
            if r.free_gpus == r.gpus {
                self.state.clusters[r.cluster as usize].free_racks -= 1;
            }
            r.free_gpus -= share.gpus;
            self.classes.update(r.cluster, share.rack, r.free_gpus + share.gpus, r.free_gpus);
        }
        self.state.sites[rack.site as usize].power_free_w -= job.gpus * rack.gpu_watts;
        shares
    }

    /// Why `job` cannot be placed now, in words (cached per job shape and state).
    pub fn reason(&mut self, job: &JobGpu) -> Arc<str> {
        // Reasons depend only on what the job needs, not on how it scores: leave the weights, the
        // latency reference and the per-job random salt out of the key, or no two jobs would share one.
        let need = JobGpu {
            latency_ref_ms: 0,
            inv_latency_ref_q16: 0,
            w_pack: 0,
            w_spread: 0,
            w_latency: 0,
            w_energy: 0,
            w_carbon: 0,
            w_hbm: 0,
            w_random: 0,
            random_salt: 0,
            ..*job
        };
        let key = (need, self.commits);
        if let Some(reason) = self.reasons.get(&key) {
            return Arc::clone(reason);
        }
        self.reasons_worded += 1;
        let reason: Arc<str> = crate::explain::unplaced_reason(self.fleet, &self.state, &self.classes, job).into();
        self.reasons.insert(key, Arc::clone(&reason));
        reason
    }
}

/// The reference oracle: one job at a time, every rack scanned against the capacity left by all
/// jobs before it. Simple and slow; the definition the batched engine must match.
pub fn place_reference(
    fleet: &Fleet,
    jobs: &[JobGpu],
    order: &[usize],
    state: FleetState,
) -> (Vec<Decision>, FleetState) {
    let mut ledger = Ledger::new(fleet, state);
    let mut decisions = Vec::with_capacity(order.len());
    for &j in order {
        let job = &jobs[j];
        let outcome = match ledger.best_rack(job) {
            Some(best) => Outcome::Placed { racks: ledger.commit(job, best.rack as usize), score: best.score },
            None => Outcome::Unplaced { reason: ledger.reason(job) },
        };
        decisions.push(Decision { job: j, outcome });
    }
    (decisions, ledger.state)
}

/// A set of racks grouped into classes of interchangeable racks: racks of one cluster with the same
/// free GPUs give identical `check` and `score` results for every job (same site, same rack type,
/// same occupancy), so only the lowest-indexed rack of each class needs scoring, and ties between
/// them go to that rack anyway.
pub(crate) struct ClassIndex {
    member: Vec<bool>,
    /// `buckets[cluster][free]`: the member racks of the cluster with that many free GPUs.
    buckets: Vec<Vec<BTreeSet<u32>>>,
    /// Clusters with at least one member.
    clusters: BTreeSet<u32>,
    len: usize,
}

impl ClassIndex {
    fn new(state: &FleetState, fleet: &Fleet) -> Self {
        let buckets = fleet
            .clusters
            .iter()
            .map(|c| vec![BTreeSet::new(); fleet.rack_types[c.rack_type].gpus as usize + 1])
            .collect();
        ClassIndex { member: vec![false; state.racks.len()], buckets, clusters: BTreeSet::new(), len: 0 }
    }

    /// An index holding every rack.
    pub(crate) fn all(state: &FleetState, fleet: &Fleet) -> Self {
        let mut index = ClassIndex::new(state, fleet);
        for (r, rack) in state.racks.iter().enumerate() {
            index.set(rack.cluster, r as u32, None, rack.free_gpus);
        }
        index
    }

    /// Adds `rack` (if `old_free` is None) or moves it from `old_free` to `new_free`.
    fn set(&mut self, cluster: u32, rack: u32, old_free: Option<u32>, new_free: u32) {
        let buckets = &mut self.buckets[cluster as usize];
        if let Some(old) = old_free {
            buckets[old as usize].remove(&rack);
        } else {
            self.member[rack as usize] = true;
            self.len += 1;
            self.clusters.insert(cluster);
        }
        buckets[new_free as usize].insert(rack);
    }

    /// Records that a rack moved from `old_free` to `new_free`, adding it if it is not a member.
    fn update(&mut self, cluster: u32, rack: u32, old_free: u32, new_free: u32) {
        let old = self.member[rack as usize].then_some(old_free);
        self.set(cluster, rack, old, new_free);
    }

    fn clear(&mut self) {
        for &cluster in &self.clusters {
            for bucket in &mut self.buckets[cluster as usize] {
                for &rack in bucket.iter() {
                    self.member[rack as usize] = false;
                }
                bucket.clear();
            }
        }
        self.clusters.clear();
        self.len = 0;
    }

    /// The largest free-GPU count among the cluster's member racks.
    pub(crate) fn max_free(&self, cluster: usize) -> Option<u32> {
        self.buckets[cluster].iter().rposition(|b| !b.is_empty()).map(|f| f as u32)
    }

    /// The best feasible member rack for `job` in `state` (ties: lowest index), scoring one rack per
    /// class. A cluster whose first scored class fails anything but GPU capacity is skipped whole:
    /// every other constraint is the same for all its racks.
    pub(crate) fn best(&self, job: &JobGpu, state: &FleetState) -> Option<Candidate> {
        let mut best: Option<Candidate> = None;
        for &cluster in &self.clusters {
            let buckets = &self.buckets[cluster as usize];
            let rack_gpus = (buckets.len() - 1) as u32;
            // A job within one NVLink domain needs a rack with at least job.gpus free; a larger job
            // anchors on a fully free rack.
            let min_free = if job.gpus <= rack_gpus { job.gpus } else { rack_gpus };
            for bucket in &buckets[min_free as usize..] {
                let Some(&rack) = bucket.first() else {
                    continue;
                };
                let reject = state.check(job, rack as usize);
                if reject & !REJECT_GPUS != 0 {
                    break;
                }
                if reject == 0 {
                    let candidate = Candidate { score: state.score(job, rack as usize), rack };
                    if best.is_none_or(|b| better(candidate, b)) {
                        best = Some(candidate);
                    }
                }
            }
        }
        best
    }
}

/// Something that scores a batch of jobs against a snapshot: the CPU or the GPU backend.
pub trait Scorer {
    /// Scores `jobs` against `state`, keeping `k` candidates per job.
    fn score(&mut self, jobs: &[JobGpu], state: &FleetState, k: usize) -> Result<ScoreOutput, crate::gpu::GpuError>;
}

/// How often (in decided jobs) the engine reports progress.
const PROGRESS_EVERY: usize = 8192;

/// The production engine: batched scoring plus exact host commits (see the module docs).
/// `progress` is called with (jobs decided so far, jobs in all) after each scoring pass and every
/// few thousand decisions.
#[expect(clippy::too_many_arguments, reason = "the engine's inputs are independent; a struct would only rename them")]
pub fn place_batched(
    fleet: &Fleet,
    jobs: &[JobGpu],
    order: &[usize],
    state: FleetState,
    k: usize,
    limits: RoundLimits,
    scorer: &mut dyn Scorer,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<Decision>, FleetState, EngineStats), crate::gpu::GpuError> {
    let mut ledger = Ledger::new(fleet, state);
    let mut decisions = Vec::with_capacity(order.len());
    let mut stats = EngineStats::default();
    // Racks changed since the round's snapshot, and every rack (for re-scans), by class.
    let mut dirty = ClassIndex::new(&ledger.state, fleet);
    let mut position = 0;
    let mut batch: Vec<JobGpu> = Vec::new();
    while position < order.len() {
        batch.clear();
        let round_end = order.len().min(position.saturating_add(limits.max_jobs_per_round.max(1)));
        batch.extend(order[position..round_end].iter().map(|&j| jobs[j]));
        let scored = scorer.score(&batch, &ledger.state, k)?;
        stats.rounds += 1;
        stats.scored_pairs += batch.len() as u64 * ledger.state.racks.len() as u64;
        dirty.clear();
        let round_start = position;
        while position < round_end {
            let i = position - round_start;
            let j = order[position];
            let job = &jobs[j];
            position += 1;
            let best = if scored.feasible[i] == 0 {
                // Infeasible against the snapshot means infeasible now: capacity only shrinks.
                None
            } else {
                let listed = scored
                    .candidates_of(i)
                    .iter()
                    .take_while(|c| c.rack != NO_RACK)
                    .find(|c| !dirty.member[c.rack as usize] && ledger.state.check(job, c.rack as usize) == 0)
                    .copied();
                if listed.is_none() && scored.feasible[i] as usize > k {
                    // Clean racks beyond the list may be feasible: decide this job from scratch.
                    stats.host_rescans += 1;
                    ledger.classes.best(job, &ledger.state)
                } else {
                    stats.from_candidates += 1;
                    match (listed, dirty.best(job, &ledger.state)) {
                        (Some(a), Some(b)) => Some(if better(b, a) { b } else { a }),
                        (a, b) => a.or(b),
                    }
                }
            };
            let outcome = match best {
                Some(best) => {
                    let shares = ledger.commit(job, best.rack as usize);
                    for share in &shares {
                        let rack = &ledger.state.racks[share.rack as usize];
                        let old_free = rack.free_gpus + share.gpus;
                        dirty.update(rack.cluster, share.rack, old_free, rack.free_gpus);
                    }
                    Outcome::Placed { racks: shares, score: best.score }
                }
                None => Outcome::Unplaced { reason: ledger.reason(job) },
            };
            decisions.push(Decision { job: j, outcome });
            if position % PROGRESS_EVERY == 0 {
                progress(position, order.len());
            }
            if dirty.len > limits.max_dirty_racks {
                break;
            }
        }
        progress(position, order.len());
    }
    stats.reasons_worded = ledger.reasons_worded;
    Ok((decisions, ledger.state, stats))
}

/// Counts, over all racks, how many fail each constraint (a rack failing several counts in each).
pub fn reject_counts(state: &FleetState, job: &JobGpu) -> [u64; REJECT_KINDS] {
    let mut counts = [0u64; REJECT_KINDS];
    for rack in 0..state.racks.len() {
        let reject = state.check(job, rack);
        for (bit, count) in counts.iter_mut().enumerate() {
            if reject & (1 << bit) != 0 {
                *count += 1;
            }
        }
    }
    counts
}

/// Constraints that do not depend on occupancy: HBM, jurisdiction, provider, latency, online date.
pub const STATIC_REJECTS: u32 = !(REJECT_GPUS | REJECT_POWER);

/// Gives back what a placed job took: its GPUs on each rack (a rack fully free again counts as a
/// free rack of its cluster) and its power at the site. The inverse of a commit.
pub fn release(state: &mut FleetState, job_gpus: u32, shares: &[RackShare]) {
    let anchor = state.racks[shares[0].rack as usize];
    for share in shares {
        let rack = &mut state.racks[share.rack as usize];
        rack.free_gpus += share.gpus;
        debug_assert!(rack.free_gpus <= rack.gpus, "released more GPUs than the rack has");
        if rack.free_gpus == rack.gpus {
            state.clusters[rack.cluster as usize].free_racks += 1;
        }
    }
    state.sites[anchor.site as usize].power_free_w += job_gpus * anchor.gpu_watts;
}
