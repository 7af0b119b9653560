//! Preemption: which placed jobs of strictly lower priority to evict so that a job that does not
//! fit can be placed.
//!
//! # The rule
//! A job `J` of priority `p` that no rack can take now may evict placed jobs of priority strictly
//! below `p`, never one of equal or higher priority. Among the sets of such jobs whose release
//! lets `J` be placed (by the placement rule of [`crate::engine`], on the capacity they leave), the
//! victims are the set that is least by, in order:
//! 1. the fewest jobs;
//! 2. the lowest priorities: the victims' priorities sorted from highest to lowest, compared
//!    element by element (so first the highest priority among them as low as possible);
//! 3. the fewest GPUs held in all;
//! 4. the lowest ids: the victims' ids sorted ascending, compared element by element (a total
//!    order, so the choice is unique).
//!
//! `J` then goes where the placement rule puts it on the capacity left after the eviction.
//!
//! # The search, and its bound
//! Only jobs at a site where `J` could ever run (some rack passes every check but free GPUs and
//! power) are candidates: a job elsewhere frees nothing `J` can use. Fewer still when `J` takes
//! one rack wherever it may go: only racks whose free GPUs plus the candidates' there reach `J`'s,
//! at a site whose free power plus the candidates' there covers `J`'s draw, can take it; the
//! least set holds only jobs on one such rack or, when its site is short of power for `J`, any
//! job at that site (every one there stays a candidate). When `J` spans racks wherever it may go:
//! only racks the candidates' release would leave whole count, in clusters where those and the
//! racks whole now are as many as `J` needs; the candidates are the jobs on them and, at sites
//! short of power, every job there. With no such rack and no site short of power, no set helps. (`tests/preemption.rs` checks each against its brute-force oracle,
//! on fleets where power binds too.) If releasing all candidates
//! does not let `J` fit, no set does and the search ends at once. Otherwise sets are tried by
//! size, 1, 2, …: every set of a size is looked at and the least feasible one by the rule is the
//! answer ([`VictimChoice::exact`]). A set is tried (released, `J` checked, taken back: exact
//! inverses on the ledger) only when it would beat the best of its size so far and, for a job
//! that takes one rack and is short of no site's power, when some rack it may use would have its
//! GPUs free with the set gone (a necessary condition; then only jobs on such racks are
//! candidates). Sets are looked at in the order of the candidates' positions (cheapest first), so
//! the first single victim that makes room is the least, and a set whose last member is above the
//! best set's highest priority ends its prefix.
//!
//! The number of sets grows combinatorially, so one search looks at most [`MAX_SETS`] sets and
//! tries at most [`MAX_TRIALS`]. When either runs out the answer is the least set found so far
//! if one was, else the greedy one Kubernetes' scheduler uses: all candidates released, then each
//! reprieved (taken back), highest priority and most GPUs first, when `J` still fits without it.
//! That set is feasible and minimal under inclusion, but not always least by the rule; the choice
//! says so ([`VictimChoice::exact`] false). A search that finds the first feasible size small (one
//! or two victims, the usual case) ends long before either bound.

use crate::engine::ledger::{Allocation, Ledger};
use crate::engine::place::best_with_relaxing;
use crate::kernel::score::{JobGpu, STATIC_REJECTS, job_watts};
use crate::kernel::shape::spans_racks;

/// A placed job preemption may evict: its id, priority and what it holds.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    /// Its id (the last tie-break of the rule).
    pub id: &'a str,
    /// Its priority.
    pub priority: i32,
    /// What it holds.
    pub allocation: &'a Allocation,
}

/// The most victim sets one search looks at (comparing their keys) before it settles.
pub const MAX_SETS: usize = 8192;

/// The most victim sets one search tries on the ledger before it settles.
pub const MAX_TRIALS: usize = 1024;

/// The victims chosen for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VictimChoice {
    /// Indices into the holders given, ascending.
    pub victims: Vec<usize>,
    /// The least set by the rule (the search finished); false when a bound ran out and the set is
    /// the best found or the greedy one (feasible and minimal under inclusion).
    pub exact: bool,
    /// Sets tried on the ledger.
    pub trials: usize,
}

/// Whether `job` can be placed on `ledger` now (a preferred block relaxed as placement relaxes it).
pub fn fits(ledger: &Ledger, job: &JobGpu) -> bool {
    best_with_relaxing(job, ledger, |job, ledger| ledger.best_rack_by_class(job)).1.is_some()
}

/// The rule's order of victim sets (see the module docs): smaller is better.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key<'a> {
    count: usize,
    priorities_desc: Vec<i32>,
    gpus: u64,
    ids_asc: Vec<&'a str>,
}

fn key<'a>(holders: &[Holder<'a>], set: &[usize]) -> Key<'a> {
    let mut priorities_desc: Vec<i32> = set.iter().map(|&h| holders[h].priority).collect();
    priorities_desc.sort_unstable_by(|a, b| b.cmp(a));
    let mut ids_asc: Vec<&str> = set.iter().map(|&h| holders[h].id).collect();
    ids_asc.sort_unstable();
    Key {
        count: set.len(),
        priorities_desc,
        gpus: set.iter().map(|&h| u64::from(holders[h].allocation.gpus())).sum(),
        ids_asc,
    }
}

/// Whether `job` fits once the holders `set` are released; the ledger is as it was afterwards.
fn fits_without(ledger: &mut Ledger, job: &JobGpu, holders: &[Holder], set: &[usize]) -> bool {
    for &h in set {
        ledger.release(holders[h].allocation);
    }
    let fits = fits(ledger, job);
    for &h in set.iter().rev() {
        ledger.take_back(holders[h].allocation);
    }
    fits
}

/// The victims for `job` (of priority `priority`, not placed, and not fitting now) among
/// `holders` (placed jobs, each holding what the ledger has taken for it): the rule of the module
/// docs, or None when no set of holders of lower priority lets it fit. The ledger is left as it
/// was (sets are tried on it and taken back); nothing is evicted here.
pub fn choose_victims(ledger: &mut Ledger, job: &JobGpu, priority: i32, holders: &[Holder]) -> Option<VictimChoice> {
    choose_victims_among(ledger, job, holders, &|h| holders[h].priority < priority, &|_| true)
}

/// [`choose_victims`] with the candidates given: the holders `eligible` accepts (by index) may be
/// victims, and a set of them is a victim set only if `admissible` accepts it (indices into
/// `holders`, in no particular order). `admissible` must be closed under subsets (a subset of an
/// admissible set is admissible), as the quota rule of reclaiming borrowed capacity is; the
/// search then stays exact, and a greedy set that is not admissible gives None (the choice is
/// then not known to be the rule's: a bound ran out).
pub fn choose_victims_among(
    ledger: &mut Ledger,
    job: &JobGpu,
    holders: &[Holder],
    eligible: &dyn Fn(usize) -> bool,
    admissible: &dyn Fn(&[usize]) -> bool,
) -> Option<VictimChoice> {
    let state = ledger.state();
    let fleet = ledger.fleet();
    let mut usable_site = vec![false; state.sites.len()];
    let mut usable_cluster = vec![false; fleet.clusters.len()];
    // Whether `job` can only come to fit on a rack whose trays a victim frees: it takes one rack
    // wherever it may go, and no usable site is short of power for it (else releasing any job
    // there could make room); and it takes whole GPUs (the bound below counts them). Every
    // constraint but capacity is the same for all racks of a cluster, so one rack of each says.
    // `single_rack`: it takes one rack of whole GPUs wherever it may go (power aside), so it only
    // comes to fit on a rack where its GPUs would be free; `short`: the usable sites without the
    // power for it now, where releasing any job may be what makes room.
    let mut single_rack = job.gpu_milli == 0;
    // `all_span`: it takes whole racks wherever it may go; with each usable cluster, the racks.
    let mut all_span = job.gpu_milli == 0;
    let mut needed_racks: Vec<(usize, u32)> = Vec::new();
    let mut short = vec![false; state.sites.len()];
    for (c, cluster) in fleet.clusters.iter().enumerate() {
        let Some(r) = cluster.racks.clone().next() else { continue };
        if state.check(job, r) & STATIC_REJECTS != 0 {
            continue;
        }
        usable_cluster[c] = true;
        let rack = &state.racks[r];
        usable_site[rack.site as usize] = true;
        let (shape, per_rack) = job.shape_on(rack);
        single_rack &= !spans_racks(shape, per_rack);
        all_span &= spans_racks(shape, per_rack);
        // No rack of the cluster holds one of its pods: it never fits there.
        let needed = if per_rack == 0 { u32::MAX } else { crate::kernel::shape::racks_needed(shape, per_rack) };
        needed_racks.push((c, needed));
        if job_watts(job, rack.gpu_watts) > state.sites[rack.site as usize].power_free_w {
            short[rack.site as usize] = true;
        }
    }
    let rack_local = single_rack && !short.contains(&true);
    // The racks holders hold GPUs on: whether the job may use each, and its free GPUs now (each
    // trial leaves the ledger as it found it, so these stay true).
    let racks: rustc_hash::FxHashMap<u32, (bool, u32)> = holders
        .iter()
        .flat_map(|h| &h.allocation.racks)
        .map(|s| {
            let rack = &state.racks[s.rack as usize];
            (s.rack, (usable_cluster[rack.cluster as usize], rack.free_gpus))
        })
        .collect();
    let usable_rack = |r: u32| racks[&r].0;
    // A set can only help a rack-local job if, on some usable rack, the GPUs free there and the
    // set's there add up to the job's: a necessary condition, checked before any trial.
    let could_fit = |set: &[usize]| -> bool {
        !rack_local
            || set.iter().flat_map(|&h| &holders[h].allocation.racks).any(|share| {
                usable_rack(share.rack) && {
                    let freed: u32 = set
                        .iter()
                        .flat_map(|&h| &holders[h].allocation.racks)
                        .filter(|s| s.rack == share.rack)
                        .map(|s| s.gpus)
                        .sum();
                    racks[&share.rack].1 + freed >= job.gpus
                }
            })
    };
    // For a single-rack job, the racks where it could come to fit: those it may use whose free
    // GPUs and the GPUs eligible holders have there add up to its own (none: no set helps). It
    // lands on one such rack R, so a least set holds only jobs on R and, when R's site is short
    // of power for it, jobs elsewhere at that site (any other victim would be one too many): only
    // those are candidates, in a full fleet far fewer than all.
    // The same for a job spanning racks wherever it may go: it takes whole racks, so only racks
    // that the eligible holders' release would leave whole count, and only in a cluster where
    // those and the racks whole now are as many as it needs (power aside: at a site short of it,
    // every holder there stays a candidate, below).
    let restricted = single_rack || all_span;
    let promising: rustc_hash::FxHashSet<u32> = if restricted {
        let mut freed: rustc_hash::FxHashMap<u32, u32> = rustc_hash::FxHashMap::default();
        for h in (0..holders.len()).filter(|&h| eligible(h)) {
            for share in holders[h].allocation.racks.iter().filter(|s| usable_rack(s.rack)) {
                *freed.entry(share.rack).or_default() += share.gpus;
            }
        }
        if single_rack {
            // And at its site, the power free and the eligible holders' there cover the job's draw.
            let mut site_watts = vec![0u64; state.sites.len()];
            for h in (0..holders.len()).filter(|&h| eligible(h)) {
                site_watts[holders[h].allocation.site as usize] += u64::from(holders[h].allocation.power_w);
            }
            freed
                .into_iter()
                .filter(|&(rack, gpus)| {
                    let r = &state.racks[rack as usize];
                    let site = r.site as usize;
                    racks[&rack].1 + gpus >= job.gpus
                        && u64::from(state.sites[site].power_free_w) + site_watts[site]
                            >= u64::from(job_watts(job, r.gpu_watts))
                })
                .map(|(rack, _)| rack)
                .collect()
        } else {
            let freeable: Vec<u32> = freed
                .into_iter()
                // At least (not equal): holders sharing a GPU each count it.
                .filter(|&(rack, gpus)| racks[&rack].1 + gpus >= state.racks[rack as usize].gpus)
                .map(|(rack, _)| rack)
                .collect();
            let enough: Vec<usize> = needed_racks
                .iter()
                .filter(|&&(c, needed)| {
                    let freeable_here =
                        freeable.iter().filter(|&&r| state.racks[r as usize].cluster as usize == c).count();
                    (ledger.classes().whole_racks(c).count() + freeable_here) as u64 >= u64::from(needed)
                })
                .map(|&(c, _)| c)
                .collect();
            freeable.into_iter().filter(|&r| enough.contains(&(state.racks[r as usize].cluster as usize))).collect()
        }
    } else {
        rustc_hash::FxHashSet::default()
    };
    // At a site short of power for the job, it may land on a rack that needs no victim there for
    // GPUs (free enough, or whole, already) but power from any job at the site: every holder there
    // stays a candidate, and such a site alone keeps the search going.
    if restricted && promising.is_empty() && !short.contains(&true) {
        return None;
    }
    let short_and_promising = &short;
    // Candidates, cheapest first (lowest priority, fewest GPUs, lowest id): the first set of each
    // size is then the least by priority and the greedy reprieve keeps the dearest.
    let mut pool: Vec<usize> = (0..holders.len())
        .filter(|&h| {
            let allocation = holders[h].allocation;
            eligible(h)
                && usable_site[allocation.site as usize]
                && (!restricted
                    || short_and_promising[allocation.site as usize]
                    || allocation.racks.iter().any(|s| promising.contains(&s.rack)))
        })
        .collect();
    pool.sort_unstable_by(|&a, &b| {
        let (a, b) = (&holders[a], &holders[b]);
        (a.priority, a.allocation.gpus(), a.id).cmp(&(b.priority, b.allocation.gpus(), b.id))
    });
    if pool.is_empty() || !fits_without(ledger, job, holders, &pool) {
        return None;
    }
    let mut trials = 1;
    let mut sets = 0;
    let mut best: Option<(Key, Vec<usize>)> = None;
    'sizes: for size in 1..=pool.len() {
        let mut at: Vec<usize> = (0..size).collect();
        loop {
            sets += 1;
            if sets > MAX_SETS || trials >= MAX_TRIALS {
                break 'sizes;
            }
            // Positions ascend, so the set's highest priority is its last member's: once that is
            // above the best set's highest, no set with this prefix and a later last member is
            // better.
            if let Some((b, _)) = &best
                && holders[pool[at[size - 1]]].priority > b.priorities_desc[0]
            {
                at[size - 1] = pool.len() - 1;
            }
            let set: Vec<usize> = at.iter().map(|&i| pool[i]).collect();
            let candidate = key(holders, &set);
            if best.as_ref().is_none_or(|(b, _)| candidate < *b) && could_fit(&set) && admissible(&set) {
                trials += 1;
                if fits_without(ledger, job, holders, &set) {
                    best = Some((candidate, set));
                    // Single victims come in the order of their keys: the first that makes room is
                    // the least.
                    if size == 1 {
                        break;
                    }
                }
            }
            // The next combination of `size` of the pool's positions, in lexicographic order.
            let Some(i) = (0..size).rev().find(|&i| at[i] < pool.len() - size + i) else { break };
            at[i] += 1;
            for k in i + 1..size {
                at[k] = at[k - 1] + 1;
            }
        }
        if let Some((_, mut set)) = best.take() {
            set.sort_unstable();
            return Some(VictimChoice { victims: set, exact: true, trials });
        }
    }
    if let Some((_, mut set)) = best {
        set.sort_unstable();
        return Some(VictimChoice { victims: set, exact: false, trials });
    }
    // Greedy: release every candidate, then take back each one that `job` can do without,
    // dearest first.
    for &h in &pool {
        ledger.release(holders[h].allocation);
    }
    let mut victims = Vec::new();
    for &h in pool.iter().rev() {
        ledger.take_back(holders[h].allocation);
        trials += 1;
        if !fits(ledger, job) {
            ledger.release(holders[h].allocation);
            victims.push(h);
        }
    }
    for &h in &victims {
        ledger.take_back(holders[h].allocation);
    }
    victims.sort_unstable();
    if !admissible(&victims) {
        return None;
    }
    Some(VictimChoice { victims, exact: false, trials })
}

/// A job evicted by a preemption pass ([`crate::Scheduler::preempt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Eviction {
    /// The job it was evicted for (index into the pass's workload).
    pub by: usize,
    /// The evicted job's id.
    pub id: String,
    /// Its priority.
    pub priority: i32,
    /// What it held.
    pub allocation: Allocation,
    /// Evicted to give back capacity its tenant borrowed, for a job within its tenant's quota
    /// (see `docs/QUOTAS.md`); false for an eviction by priority.
    pub reclaim: bool,
    /// Its index in the pass's workload when it belongs to it (it was then decided again in the
    /// same pass: see [`PreemptionPass::decisions`]); None for a job placed by an earlier call,
    /// which the caller queues again.
    pub job: Option<usize>,
}

/// What a preemption pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PreemptionPass {
    /// The final outcome of every job the pass decided (those it was given, then any job of the
    /// workload it evicted and decided again), each once, in the order first decided.
    pub decisions: Vec<crate::engine::place::Decision>,
    /// The evictions, in the order made.
    pub evictions: Vec<Eviction>,
    /// Jobs placed by evicting others.
    pub preempting: u64,
    /// Victim sets tried on the ledger in all.
    pub trials: u64,
    /// Victim choices that are not the rule's least set because a bound of the search ran out
    /// ([`VictimChoice::exact`]).
    pub inexact: u64,
    /// With tenants: the pass stopped deciding its unplaced jobs within quota again (after
    /// borrowers were placed or jobs evicted) at its bound, with something changed since; the
    /// quota guarantee may then not hold until the next pass.
    pub unsettled: bool,
}
