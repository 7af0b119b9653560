//! Consolidation: after the decisions, place jobs that were left unplaced by moving jobs placed in
//! the same batch to other racks, never unplacing any. In the spirit of KAI-Scheduler's
//! consolidation action, where nothing has started yet, so a move costs nothing.
//!
//! Greedy placement in priority order fragments: a high-priority 2-GPU job takes a corner of the
//! rack a later 5-GPU job needed, while another rack had room for the 2 GPUs; or a small job
//! breaks the last whole rack a gang spanning racks needed. The pass, for each job left unplaced
//! (in decision order):
//!
//! 1. If the moves made so far freed a feasible rack, it takes the best one, as placement would.
//! 2. If it spans racks on some cluster's rack type, it tries clusters (topology blocks, for a job
//!    kept to or preferring one; a preferring job then its clusters without the rule) where racks
//!    whose every GPU in use is held by movable jobs (placed by this batch, on that rack alone)
//!    would give it the whole racks it needs: the least used racks are emptied, domains needing the
//!    fewest GPUs moved first, at most [`RACKS_PER_JOB`] of them.
//! 3. Otherwise it tries racks where only GPUs or power are short and where the free GPUs plus
//!    those of movable jobs (placed by this batch, on that rack alone) reach the job's GPUs: fewest
//!    GPUs missing first, then lowest index, at most [`RACKS_PER_JOB`] racks where its pods fit
//!    one rack. On a rack it releases
//!    one movable job (the smallest first; among equals the one decided last) or, when no single
//!    one makes room, the smallest ones until the job fits; commits the job there; and places each
//!    released job again, in decision order, on its best feasible rack. If one of them finds no
//!    rack, everything is put back as it was and the next rack is tried.
//!
//! A job preferring one NVLink domain (a policy's `prefer_one_domain`) is tried at step 3 before
//! step 2, as placement decides it: across whole racks only when no one rack can be made room in.
//!
//! After each job it places, the pass starts again from the first job left unplaced (a move can
//! open room for a job passed over earlier), so room that moves opened goes to the job decided
//! first among those it fits. Every step is deterministic, and the pass does the same on any
//! ledger holding the same decisions, so the reference oracle and the batched engine stay equal.
//!
//! The work is bounded. A job whose needs equal those of a job that found no room since the last
//! success is passed over (the outcome would be the same), and a call visits at most
//! [`MAX_WORK`] racks, counted, not timed, so that the result does not depend on the machine: a
//! million-job batch with most jobs waiting spends a bounded time here, on its highest-priority
//! waiting jobs.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use crate::engine::ledger::{Allocation, Ledger};
pub use crate::engine::place::{Consolidation, Move};
use crate::engine::place::{Decision, Outcome, best_with_relaxing, need_of};
use crate::kernel::score::{BLOCK_ANY, BLOCK_PREFERRED, JobGpu, ONE_DOMAIN_PREFERRED, REJECT_GPUS, REJECT_POWER};
use crate::kernel::shape::{racks_needed, spans_racks};
use crate::kernel::state::NodeState;

/// Racks tried per waiting job.
pub const RACKS_PER_JOB: usize = 4;
/// The work of one call, in racks or jobs visited (a waiting job, the racks holding movable jobs
/// and the clusters when looking for room, the fleet's racks for a best rack): about a second on
/// one core at the most.
pub const MAX_WORK: usize = 100_000_000;

/// The movable allocations: by rack, the positions of the decisions holding one there alone, and
/// the racks holding any, so that looking for room costs what the batch placed, not the fleet.
struct Holders {
    by_rack: Vec<Vec<usize>>,
    occupied: BTreeSet<usize>,
}

impl Holders {
    fn on(&self, rack: usize) -> &[usize] {
        &self.by_rack[rack]
    }

    fn add(&mut self, rack: usize, position: usize) {
        self.by_rack[rack].push(position);
        self.occupied.insert(rack);
    }

    fn remove(&mut self, rack: usize, position: usize) {
        self.by_rack[rack].retain(|&h| h != position);
        if self.by_rack[rack].is_empty() {
            self.occupied.remove(&rack);
        }
    }
}

/// Runs the pass over `decisions` (one batch, in decision order, as placement returned them, whose
/// allocations `ledger` holds), updating the decisions of the jobs it places or moves and the
/// ledger with them.
pub fn consolidate(ledger: &mut Ledger, jobs: &[JobGpu], decisions: &mut [Decision]) -> Consolidation {
    let mut done = Consolidation::default();
    // The decision (position in `decisions`) holding each rack's movable allocations.
    let mut holders = Holders { by_rack: vec![Vec::new(); ledger.state().racks.len()], occupied: BTreeSet::new() };
    for (position, decision) in decisions.iter().enumerate() {
        if let Outcome::Placed { allocation, .. } = &decision.outcome
            && allocation.racks.len() == 1
        {
            holders.add(allocation.anchor() as usize, position);
        }
    }
    if holders.occupied.is_empty() {
        // Nothing can move, so nothing opens: placement already found no rack for the rest.
        return done;
    }
    let mut work = Work { left: MAX_WORK, per_best: ledger.classes().len() };
    // The jobs waiting, in decision order, each with the index of its need.
    let mut needs: FxHashMap<JobGpu, usize> = FxHashMap::default();
    let mut waiting: Vec<(usize, usize)> = decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| matches!(d.outcome, Outcome::Unplaced { .. }))
        .map(|(position, d)| {
            let next = needs.len();
            (position, *needs.entry(need_of(&jobs[d.job])).or_insert(next))
        })
        .collect();
    // Needs that found no room since the last success (then the outcome is the same for them).
    let mut failed = vec![false; needs.len()];
    // Sweeps in decision order; each success starts the next one from the first job, so that room
    // opened by a move goes to the job decided first among those it fits. Every job visited costs
    // one unit of work, so that restarts are bounded too.
    'sweep: loop {
        for i in 0..waiting.len() {
            let (position, need) = waiting[i];
            if !work.take(1) {
                done.exhausted = true;
                return done;
            }
            if failed[need] {
                continue;
            }
            let job = jobs[decisions[position].job];
            // Plain room, opened by earlier moves (never before the first one: placement found none).
            if !done.moves.is_empty() {
                if !work.take(work.per_best) {
                    done.exhausted = true;
                    return done;
                }
                let (decided, best) = best_with_relaxing(&job, ledger, |job, ledger| ledger.best_rack_by_class(job));
                if let Some(best) = best {
                    let allocation = ledger.commit(&decided, best.rack);
                    if allocation.racks.len() == 1 {
                        holders.add(best.rack as usize, position);
                    }
                    decisions[position].outcome = Outcome::Placed { allocation, score: best.score };
                    done.placed.push(decisions[position].job);
                    waiting.remove(i);
                    failed.fill(false);
                    continue 'sweep;
                }
            }
            match make_room(ledger, jobs, decisions, &mut holders, position, &mut done, &mut work) {
                Some(true) => {
                    done.placed.push(decisions[position].job);
                    waiting.remove(i);
                    failed.fill(false);
                    continue 'sweep;
                }
                Some(false) => failed[need] = true,
                None => {
                    done.exhausted = true;
                    return done;
                }
            }
        }
        return done;
    }
}

/// The work left, in racks visited.
struct Work {
    left: usize,
    /// A best rack by class, counted as the fleet's racks (an upper bound; the same on every ledger
    /// of the fleet, so that the oracle and the batched engine stop at the same point).
    per_best: usize,
}

impl Work {
    /// Takes `amount`, or returns false when not that much is left.
    fn take(&mut self, amount: usize) -> bool {
        let enough = self.left >= amount;
        self.left = self.left.saturating_sub(amount);
        enough
    }
}

/// True when the job's pods fit `rack` alone (on its node size), ignoring what is in use.
fn fits_one_rack(job: &JobGpu, ledger: &Ledger, rack: usize) -> bool {
    let rack = &ledger.state().racks[rack];
    let (shape, per_rack) = job.shape_on(rack);
    per_rack != 0 && !spans_racks(shape, per_rack)
}

/// What the movable allocations on `rack` hold there: the GPUs their pods touch (a GPU shared by
/// several counted once), and whether releasing them all would leave the rack with nothing in use
/// (every tray ready, no GPU held by anything else, whole or shared): whole. Read from their pods, not from their GPU
/// counts: pods of a shared GPU count their shares rounded up, not the GPUs they touch.
fn movable_footprint(ledger: &Ledger, decisions: &[Decision], holders: &Holders, rack: usize) -> (u32, bool) {
    let state = ledger.state();
    let r = &state.racks[rack];
    let mut touched = vec![0u8; r.nodes as usize];
    let mut shares: FxHashMap<(u32, u32), u32> = FxHashMap::default();
    for &p in holders.on(rack) {
        for pod in &placed(&decisions[p]).pods {
            touched[pod.node as usize] |= pod.gpus;
            if pod.gpu_milli != 0 {
                *shares.entry((pod.node, pod.gpus.trailing_zeros())).or_default() += pod.gpu_milli;
            }
        }
    }
    let gpus = touched.iter().map(|m| m.count_ones()).sum();
    let clears = touched.iter().enumerate().all(|(n, &mask)| {
        let at = (r.first_node as usize) + n;
        let cell = state.nodes[at];
        let held = state.shares_of(at);
        cell.state == NodeState::Ready
            && mask == cell.used
            && (0..8u32)
                .filter(|g| cell.shared & (1 << g) != 0)
                .all(|g| shares.get(&(n as u32, g)).copied().unwrap_or(0) == u32::from(held[g as usize]))
    });
    (gpus, clears)
}

fn placed(decision: &Decision) -> &Allocation {
    match &decision.outcome {
        Outcome::Placed { allocation, .. } => allocation,
        Outcome::Unplaced { .. } => unreachable!("holders list placed decisions only"),
    }
}

/// Tries to place the job of `decisions[position]` by moving movable jobs: Some(true) when it did,
/// Some(false) when it found no way, None when the work ran out.
fn make_room(
    ledger: &mut Ledger,
    jobs: &[JobGpu],
    decisions: &mut [Decision],
    holders: &mut Holders,
    position: usize,
    done: &mut Consolidation,
    work: &mut Work,
) -> Option<bool> {
    let job = jobs[decisions[position].job];
    if !work.take(holders.occupied.len() + ledger.fleet().clusters.len()) {
        return None;
    }
    // A job preferring one NVLink domain is given one rack first, as placement decides it; any
    // other is given whole racks first (where it spans racks, its pods fit no one rack).
    if job.one_domain == ONE_DOMAIN_PREFERRED {
        if room_in_one_rack(ledger, jobs, decisions, holders, position, done, work)? {
            return Some(true);
        }
        return make_whole_racks(ledger, jobs, decisions, holders, position, done, work);
    }
    if make_whole_racks(ledger, jobs, decisions, holders, position, done, work)? {
        return Some(true);
    }
    room_in_one_rack(ledger, jobs, decisions, holders, position, done, work)
}

/// Step 3 of the pass: racks where only GPUs or power are short and where the free GPUs plus those
/// of movable jobs reach the job's GPUs, tried with [`try_rack`]. Some(true) when it placed the
/// job, None when the work ran out.
fn room_in_one_rack(
    ledger: &mut Ledger,
    jobs: &[JobGpu],
    decisions: &mut [Decision],
    holders: &mut Holders,
    position: usize,
    done: &mut Consolidation,
    work: &mut Work,
) -> Option<bool> {
    let job = jobs[decisions[position].job];
    let state = ledger.state();
    let mut racks: Vec<(u32, usize)> = holders
        .occupied
        .iter()
        .copied()
        .filter(|&r| state.check(&job, r) & !(REJECT_GPUS | REJECT_POWER) == 0 && fits_one_rack(&job, ledger, r))
        .filter_map(|r| {
            let reachable = state.racks[r].free_gpus + movable_footprint(ledger, decisions, holders, r).0;
            (reachable >= job.gpus).then(|| (job.gpus.saturating_sub(state.racks[r].free_gpus), r))
        })
        .collect();
    racks.sort_unstable();
    for &(_, rack) in racks.iter().take(RACKS_PER_JOB) {
        // Each released job is placed again with one best rack by class.
        if !work.take(work.per_best * holders.on(rack).len().max(1)) {
            return None;
        }
        done.tries += 1;
        if try_rack(ledger, jobs, decisions, holders, position, rack, done) {
            return Some(true);
        }
    }
    Some(false)
}

/// For a job that spans racks (on some cluster's rack type): empties the racks of a cluster (or,
/// for a job kept to or preferring one topology block, of a block) whose every GPU in use is held
/// by movable jobs, the least used first, until it has the whole racks the job needs, and places
/// it there (see [`attempt`]). Domains needing the fewest GPUs moved first, at most
/// [`RACKS_PER_JOB`] of them; a job preferring one block is tried across its cluster (without the
/// rule) only when no block would do. Some(true) when it placed the job, None when the work ran
/// out.
fn make_whole_racks(
    ledger: &mut Ledger,
    jobs: &[JobGpu],
    decisions: &mut [Decision],
    holders: &mut Holders,
    position: usize,
    done: &mut Consolidation,
    work: &mut Work,
) -> Option<bool> {
    // Whole racks are for a job spanning racks: one preferring one NVLink domain found none.
    let job = JobGpu { one_domain: 0, ..jobs[decisions[position].job] };
    let tries: Vec<(JobGpu, bool)> = match job.block_rule {
        BLOCK_ANY => vec![(job, false)],
        BLOCK_PREFERRED => vec![(job, true), (JobGpu { block_rule: BLOCK_ANY, ..job }, false)],
        _ => vec![(job, true)],
    };
    for (job, by_block) in tries {
        // (GPUs to move, anchor, victims) per domain where emptying racks could do.
        let mut plans: Vec<(u32, usize, Vec<usize>)> = Vec::new();
        for (c, cluster) in ledger.fleet().clusters.iter().enumerate() {
            let state = ledger.state();
            let first = &state.racks[cluster.racks.start];
            let (shape, per_rack) = job.shape_on(first);
            if per_rack == 0
                || !spans_racks(shape, per_rack)
                || state.check(&job, cluster.racks.start) & !(REJECT_GPUS | REJECT_POWER) != 0
            {
                continue;
            }
            let needed = racks_needed(shape, per_rack) as usize;
            let domains: Vec<(std::ops::Range<usize>, usize)> = if by_block {
                let size = cluster.block_racks as usize;
                (0..cluster.block_count() as usize)
                    .map(|b| {
                        let start = cluster.racks.start + b * size;
                        let range = start..(start + size).min(cluster.racks.end);
                        (range, state.blocks[cluster.first_block as usize + b].free_racks as usize)
                    })
                    .collect()
            } else {
                vec![(cluster.racks.clone(), state.clusters[c].free_racks as usize)]
            };
            for (racks, whole) in domains {
                if whole >= needed {
                    // Whole racks enough already: something else (power) stands in the way.
                    continue;
                }
                // Every whole rack (the lowest index is the anchor), then racks that would be whole
                // once their movable jobs left, the least used first.
                let mut clearable: Vec<(u32, usize)> = holders
                    .occupied
                    .range(racks.clone())
                    .filter_map(|&r| {
                        let used = state.racks[r].gpus - state.racks[r].free_gpus;
                        movable_footprint(ledger, decisions, holders, r).1.then_some((used, r))
                    })
                    .collect();
                if whole + clearable.len() < needed {
                    continue;
                }
                clearable.sort_unstable();
                let cleared = &clearable[..needed - whole];
                let victims: Vec<usize> = cleared.iter().flat_map(|&(_, r)| holders.on(r).iter().copied()).collect();
                let first_whole = ledger.classes().whole_racks(c).map(|r| r as usize).find(|r| racks.contains(r));
                let anchor = first_whole.unwrap_or(cleared[0].1);
                plans.push((cleared.iter().map(|&(used, _)| used).sum(), anchor, victims));
            }
        }
        plans.sort_unstable();
        for (_, anchor, victims) in plans.into_iter().take(RACKS_PER_JOB) {
            if !work.take(work.per_best * victims.len()) {
                return None;
            }
            done.tries += 1;
            if attempt(ledger, &job, jobs, decisions, holders, position, anchor, victims, done) {
                return Some(true);
            }
        }
    }
    Some(false)
}

/// Releases movable jobs on `rack` until the job fits, commits it there and places the released
/// jobs again; puts everything back and returns false if that fails.
fn try_rack(
    ledger: &mut Ledger,
    jobs: &[JobGpu],
    decisions: &mut [Decision],
    holders: &mut Holders,
    position: usize,
    rack: usize,
    done: &mut Consolidation,
) -> bool {
    let job = jobs[decisions[position].job];
    // Smallest first; among equals the one decided last (the lowest in the order).
    let mut movable = holders.on(rack).to_vec();
    movable.sort_unstable_by_key(|&p| (placed(&decisions[p]).gpus(), std::cmp::Reverse(p)));
    // One job that makes room alone, else the smallest ones together.
    let mut victims: Vec<usize> = Vec::new();
    for &p in &movable {
        ledger.release(placed(&decisions[p]));
        let fits = ledger.state().check(&job, rack) == 0;
        ledger.apply(placed(&decisions[p]));
        if fits {
            victims.push(p);
            break;
        }
    }
    if victims.is_empty() {
        let mut fits = false;
        for &p in &movable {
            victims.push(p);
            ledger.release(placed(&decisions[p]));
            if ledger.state().check(&job, rack) == 0 {
                fits = true;
                break;
            }
        }
        if !fits {
            for &p in victims.iter().rev() {
                ledger.apply(placed(&decisions[p]));
            }
            return false;
        }
        // Keep in place any released job the job fits without (the last released first).
        for k in (0..victims.len()).rev() {
            ledger.apply(placed(&decisions[victims[k]]));
            if ledger.state().check(&job, rack) == 0 {
                victims.remove(k);
            } else {
                ledger.release(placed(&decisions[victims[k]]));
            }
        }
        for &p in victims.iter().rev() {
            ledger.apply(placed(&decisions[p]));
        }
    }
    attempt(ledger, &job, jobs, decisions, holders, position, rack, victims, done)
}

/// Releases `victims` (positions of movable decisions), commits `job` (the job of
/// `decisions[position]`, or it without its preferred block) anchored at `rack` (feasible once they are released) and places the victims again, in
/// decision order, each on its best feasible rack. If one of them finds no rack, puts everything
/// back as it was and returns false.
#[expect(clippy::too_many_arguments, reason = "one step of the pass, on the pass's own state")]
fn attempt(
    ledger: &mut Ledger,
    job: &JobGpu,
    jobs: &[JobGpu],
    decisions: &mut [Decision],
    holders: &mut Holders,
    position: usize,
    rack: usize,
    mut victims: Vec<usize>,
    done: &mut Consolidation,
) -> bool {
    let job = *job;
    for &p in &victims {
        ledger.release(placed(&decisions[p]));
    }
    if ledger.state().check(&job, rack) != 0 {
        for &p in victims.iter().rev() {
            ledger.apply(placed(&decisions[p]));
        }
        return false;
    }
    let score = ledger.state().score(&job, rack);
    let allocation = ledger.commit(&job, rack as u32);
    // The released jobs again, in decision order.
    victims.sort_unstable();
    let mut moved: Vec<(usize, Allocation, u32)> = Vec::new();
    for &p in &victims {
        let (decided, best) =
            best_with_relaxing(&jobs[decisions[p].job], ledger, |job, ledger| ledger.best_rack_by_class(job));
        match best {
            Some(best) => moved.push((p, ledger.commit(&decided, best.rack), best.score)),
            None => {
                for (_, allocation, _) in moved.iter().rev() {
                    ledger.release(allocation);
                }
                ledger.release(&allocation);
                for &v in &victims {
                    ledger.apply(placed(&decisions[v]));
                }
                return false;
            }
        }
    }
    let for_job = decisions[position].job;
    for (p, to, score) in moved {
        if &to == placed(&decisions[p]) {
            // Back where it was: not a move.
            continue;
        }
        let from = placed(&decisions[p]).clone();
        holders.remove(from.anchor() as usize, p);
        if to.racks.len() == 1 {
            holders.add(to.anchor() as usize, p);
        }
        done.moves.push(Move { job: decisions[p].job, from, to: to.clone(), for_job });
        decisions[p].outcome = Outcome::Placed { allocation: to, score };
    }
    if allocation.racks.len() == 1 {
        holders.add(rack, position);
    }
    decisions[position].outcome = Outcome::Placed { allocation, score };
    true
}
