//! Preemption (`gpuplace::engine::preempt`): the victims are the least set by the rule (checked
//! against a brute-force oracle over every subset on small fleets), never a job of equal or
//! higher priority, and after a pass no job waits while evicting every job of lower priority would
//! let it run (on random fleets, with a negative control: without the pass some job does).

mod common;

use std::collections::HashMap;

use common::{Shape, at, random_fleet, random_policy, random_workload};
use gpuplace::engine::place::{Outcome, Reasons};
use gpuplace::engine::preempt::{Holder, MAX_TRIALS, choose_victims};
use gpuplace::engine::{Allocation, Ledger};
use gpuplace::kernel::score::{BLOCK_ANY, BLOCK_PREFERRED, JobGpu};
use gpuplace::kernel::state::NodeState;
use gpuplace::sim::generate::SplitMix64;
use gpuplace::{BackendChoice, Fleet, Job, JobKind, Scheduler, Workload};

/// Whether `job` fits on `ledger` by the reference rule (every rack scanned; a preferred block
/// relaxed as placement relaxes it): written apart from the library's own check.
fn fits_reference(ledger: &Ledger, job: &JobGpu) -> bool {
    let spans = JobGpu { one_domain: 0, ..*job };
    ledger.best_rack(job).is_some()
        || ledger.best_rack(&spans).is_some()
        || (job.block_rule == BLOCK_PREFERRED && ledger.best_rack(&JobGpu { block_rule: BLOCK_ANY, ..spans }).is_some())
}

/// Whether `job` fits once `set` is released from a copy of `ledger`.
fn fits_without(ledger: &Ledger, job: &JobGpu, set: &[&Allocation]) -> bool {
    let mut ledger = ledger.clone();
    for allocation in set {
        ledger.release(allocation);
    }
    fits_reference(&ledger, job)
}

/// The rule's key of a set of (id, priority, allocation).
type RuleKey = (usize, Vec<i32>, u64, Vec<String>);

fn rule_key(set: &[&(String, i32, Allocation)]) -> RuleKey {
    let mut priorities: Vec<i32> = set.iter().map(|h| h.1).collect();
    priorities.sort_unstable_by(|a, b| b.cmp(a));
    let mut ids: Vec<String> = set.iter().map(|h| h.0.clone()).collect();
    ids.sort_unstable();
    (set.len(), priorities, set.iter().map(|h| u64::from(h.2.gpus())).sum(), ids)
}

/// A scheduler on a small random fleet holding a first batch of jobs (priorities 0 to 5), some of
/// their trays then cordoned (their pods keep running: they stay candidates, but their trays take
/// no new pod), and a second batch of more urgent jobs (priorities 3 to 8); and the cordoned
/// trays.
type Contended = (Fleet, Scheduler, HashMap<String, i32>, Workload, Vec<(u32, u32)>);

fn contended(seed: u64) -> Contended {
    contended_with(seed, false)
}

/// [`contended`], on a fleet whose sites have 0.1 to 1 MW when `power_tight`, so that power binds
/// and evicting a job elsewhere at a site can be what makes room.
fn contended_with(seed: u64, power_tight: bool) -> Contended {
    let mut rng = SplitMix64::new(seed ^ 0x009E_E397);
    let shape =
        Shape { max_sites: 2, max_clusters: 2, max_racks: 4, occupancy_percent: 10, power_tight, ..Shape::default() };
    let fleet = random_fleet(&mut rng, shape);
    let workload = random_workload(&mut rng, &fleet, 50);
    let policy = random_policy(&mut rng, false);
    let mut scheduler = Scheduler::new(fleet.clone(), policy, BackendChoice::Cpu).unwrap();
    let first = Workload::from_jobs(workload.jobs[..30].to_vec(), "<first>");
    scheduler.place(&first, Some(at())).unwrap();
    let mut cordoned = Vec::new();
    let mut held: Vec<(u32, u32)> =
        scheduler.placed().flat_map(|(_, a)| a.pods.iter().map(|p| (p.rack, p.node))).collect();
    held.sort_unstable();
    held.dedup();
    for (rack, node) in held {
        if rng.percent(15) {
            scheduler.set_node_state(rack, node, NodeState::Cordoned).unwrap();
            cordoned.push((rack, node));
        }
    }
    let priorities: HashMap<String, i32> = first.jobs.iter().map(|j| (j.id.clone(), j.priority)).collect();
    let second = workload.jobs[30..].iter().map(|j| j.clone().with_priority(j.priority + 3)).collect();
    (fleet, scheduler, priorities, Workload::from_jobs(second, "<second>"), cordoned)
}

#[test]
fn victims_are_the_least_set_by_the_rule() {
    let (mut cases, mut chosen, mut several, mut ties, mut deep_ties) = (0, 0, 0, 0, 0);
    for (seed, power_tight) in (0..150u64).map(|s| (s, false)).chain((0..150u64).map(|s| (s, true))) {
        let (fleet, scheduler, priorities, second, _) = contended_with(seed, power_tight);
        let jobs = second.compile(&fleet, scheduler.policy(), at()).unwrap();
        let held: Vec<(String, i32, Allocation)> = {
            let mut held: Vec<_> =
                scheduler.placed().map(|(id, a)| (id.to_string(), priorities[id], a.clone())).collect();
            held.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            held
        };
        for (j, job) in jobs.iter().enumerate() {
            let priority = second.jobs[j].priority;
            if fits_reference(scheduler.ledger(), job) {
                continue;
            }
            let lower: Vec<&(String, i32, Allocation)> = held.iter().filter(|h| h.1 < priority).collect();
            if lower.len() > 12 {
                continue;
            }
            cases += 1;
            // The oracle: every subset of the lower-priority jobs, the least feasible one by the key.
            let mut best: Option<(RuleKey, u32)> = None;
            let mut feasible_by_size = vec![0u32; lower.len() + 1];
            let mut feasible_keys: Vec<RuleKey> = Vec::new();
            for mask in 1u32..(1 << lower.len()) {
                let set: Vec<&(String, i32, Allocation)> =
                    (0..lower.len()).filter(|i| mask & (1 << i) != 0).map(|i| lower[i]).collect();
                let allocations: Vec<&Allocation> = set.iter().map(|h| &h.2).collect();
                if fits_without(scheduler.ledger(), job, &allocations) {
                    feasible_by_size[set.len()] += 1;
                    let key = rule_key(&set);
                    feasible_keys.push(key.clone());
                    if best.as_ref().is_none_or(|(b, _)| key < *b) {
                        best = Some((key, mask));
                    }
                }
            }
            let holders: Vec<Holder> =
                held.iter().map(|h| Holder { id: &h.0, priority: h.1, allocation: &h.2 }).collect();
            let mut ledger = scheduler.ledger().clone();
            let choice = choose_victims(&mut ledger, job, priority, &holders);
            assert_eq!(
                ledger.state(),
                scheduler.ledger().state(),
                "seed {seed} job {j}: the search changed the ledger"
            );
            let got: Option<Vec<String>> = choice.as_ref().map(|c| {
                assert!(c.exact, "seed {seed} job {j}: a small search ran out of its bounds");
                let mut ids: Vec<String> = c.victims.iter().map(|&h| held[h].0.clone()).collect();
                ids.sort_unstable();
                ids
            });
            assert_eq!(
                got,
                best.as_ref().map(|(k, _)| k.3.clone()),
                "seed {seed} job {j}: victims differ from the oracle"
            );
            if let Some((key, _)) = &best {
                chosen += 1;
                several += usize::from(key.0 >= 2);
                ties += usize::from(feasible_by_size[key.0] >= 2);
                // Sets equal to the best in size and priorities: the GPUs and ids decided.
                let alike = feasible_keys.iter().filter(|k| k.0 == key.0 && k.1 == key.1).count();
                deep_ties += usize::from(alike >= 2);
            }
        }
    }
    // The check has power: many searches, many with an answer, some needing several victims and
    // some where the tie-breaks of the rule (not just the size) chose among feasible sets.
    println!(
        "cases {cases}, with victims {chosen}, several victims {several}, ties on size {ties}, on size and priorities {deep_ties}"
    );
    assert!(cases >= 200 && chosen >= 60 && several >= 10 && ties >= 20 && deep_ties >= 5, "too few telling cases");
}

/// The pass's guarantee, its rule on priorities, and the ledger's bookkeeping after it.
#[test]
fn no_job_waits_while_lower_priority_jobs_hold_what_would_let_it_run() {
    let (mut violations_without, mut evictions, mut waiting) = (0, 0, 0);
    for (seed, power_tight) in (0..120u64).map(|s| (s, false)).chain((0..60u64).map(|s| (s, true))) {
        let (fleet, mut scheduler, mut priorities, second, cordoned) = contended_with(seed, power_tight);
        let compiled = scheduler.compile(&second, at()).unwrap();
        let all: Vec<usize> = (0..second.jobs.len()).collect();
        let (decisions, _, _) = scheduler.place_compiled(&compiled, &all, Reasons::Worded, &mut |_, _| {}).unwrap();
        for job in &second.jobs {
            priorities.insert(job.id.clone(), job.priority);
        }
        let unplaced: Vec<usize> =
            decisions.iter().filter(|d| matches!(d.outcome, Outcome::Unplaced { .. })).map(|d| d.job).collect();
        let violates = |scheduler: &Scheduler, j: usize| {
            let priority = second.jobs[j].priority;
            let lower: Vec<&Allocation> =
                scheduler.placed().filter(|(id, _)| priorities[*id] < priority).map(|(_, a)| a).collect();
            fits_without(scheduler.ledger(), &compiled.jobs[j], &lower)
        };
        // The negative control: before the pass, some jobs wait that lower-priority ones block.
        violations_without += unplaced.iter().filter(|&&j| violates(&scheduler, j)).count();
        let before: HashMap<String, Allocation> =
            scheduler.placed().map(|(id, a)| (id.to_string(), a.clone())).collect();
        let pass = scheduler.preempt(&compiled, &unplaced, Reasons::Worded).unwrap();
        scheduler.ledger().check_consistency().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        for eviction in &pass.evictions {
            let by = second.jobs[eviction.by].priority;
            assert!(eviction.priority < by, "seed {seed}: `{}` evicted by a job of priority {by}", eviction.id);
            assert_eq!(
                before.get(&eviction.id),
                Some(&eviction.allocation),
                "seed {seed}: `{}` held that",
                eviction.id
            );
            // A job of an earlier batch is only released; one of this batch is decided again
            // (its decision, checked below, says whether it runs).
            if eviction.job.is_none() {
                assert!(scheduler.allocation(&eviction.id).is_none(), "seed {seed}: `{}` still runs", eviction.id);
            }
        }
        evictions += pass.evictions.len();
        let again = pass.evictions.iter().filter_map(|e| e.job).filter(|v| !unplaced.contains(v));
        let again: std::collections::BTreeSet<usize> = again.collect();
        assert_eq!(pass.decisions.len(), unplaced.len() + again.len(), "seed {seed}: one decision per job");
        for decision in &pass.decisions {
            let id = &second.jobs[decision.job].id;
            match &decision.outcome {
                Outcome::Placed { allocation, .. } => {
                    assert_eq!(scheduler.allocation(id), Some(allocation), "seed {seed}: `{id}` runs as decided")
                }
                Outcome::Unplaced { .. } => {
                    waiting += 1;
                    assert!(!violates(&scheduler, decision.job), "seed {seed}: `{id}` waits behind lower priorities");
                }
                _ => unreachable!(),
            }
        }
        // What runs is exactly what the ledger holds: the jobs' allocations, applied to the fleet
        // file's occupancy, give the ledger's capacity.
        let mut ledger = Ledger::new(std::sync::Arc::new(fleet.clone()));
        for (_, allocation) in scheduler.placed() {
            ledger.apply(allocation);
        }
        for &(rack, node) in &cordoned {
            ledger.set_node_state(rack, node, NodeState::Cordoned).unwrap();
        }
        assert_eq!(ledger.state(), scheduler.ledger().state(), "seed {seed}: the ledger lost track");
    }
    println!("blocked before the pass {violations_without}, evictions {evictions}, waiting after {waiting}");
    assert!(violations_without >= 20 && evictions >= 20 && waiting >= 20, "too few telling cases");
}

/// A job of the pass's own workload that a more urgent one evicts is decided again in the same
/// pass and ends where the pass leaves it.
#[test]
fn a_job_of_the_same_pass_evicted_is_decided_again() {
    let mut again = 0;
    for seed in 0..120u64 {
        let (_, mut scheduler, _, second, _) = contended(seed);
        // Both batches in one workload, the first placed alone, then the pass over the second.
        let mut jobs: Vec<Job> = second.jobs.clone();
        jobs.extend(second.jobs.iter().map(|j| {
            let mut low = j.clone().with_priority(0);
            low.id = format!("{}-low", j.id);
            low
        }));
        let workload = Workload::from_jobs(jobs, "<both>");
        let compiled = scheduler.compile(&workload, at()).unwrap();
        let n = second.jobs.len();
        let low_jobs: Vec<usize> = (n..2 * n).collect();
        scheduler.place_compiled(&compiled, &low_jobs, Reasons::Worded, &mut |_, _| {}).unwrap();
        let high: Vec<usize> = (0..n).collect();
        let pass = scheduler.preempt(&compiled, &high, Reasons::Worded).unwrap();
        for eviction in pass.evictions.iter().filter(|e| e.job.is_some()) {
            let v = eviction.job.unwrap();
            assert_eq!(workload.jobs[v].id, eviction.id);
            let decision = pass.decisions.iter().find(|d| d.job == v).expect("decided again");
            match &decision.outcome {
                Outcome::Placed { allocation, .. } => assert_eq!(scheduler.allocation(&eviction.id), Some(allocation)),
                _ => assert!(scheduler.allocation(&eviction.id).is_none()),
            }
            again += 1;
        }
        scheduler.ledger().check_consistency().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    assert!(again >= 10, "too few jobs of the pass evicted: {again}");
}

/// When the search runs out of its bounds (a fleet full of one-GPU jobs, a job needing many of
/// them gone), the victims are still feasible, all of lower priority, and minimal under
/// inclusion, and the choice says it is not the rule's proven least.
#[test]
fn a_bounded_search_still_gives_a_feasible_minimal_set() {
    let mut bounded = 0;
    for seed in 0..40u64 {
        let mut rng = SplitMix64::new(seed ^ 0xB00D);
        let shape = Shape { max_sites: 1, max_clusters: 1, max_racks: 3, occupancy_percent: 0, ..Shape::default() };
        let fleet = random_fleet(&mut rng, shape);
        let largest = fleet.rack_types.iter().map(|t| t.gpus).max().unwrap();
        if largest < 8 {
            continue;
        }
        let total: u32 =
            fleet.racks.iter().map(|r| fleet.rack_types[fleet.clusters[r.cluster as usize].rack_type].gpus).sum();
        let region = fleet.regions[0].clone();
        let fill: Vec<Job> = (0..total)
            .map(|n| {
                Job::new(format!("small-{n:04}"), JobKind::Agentic, 1, region.clone()).with_priority((n % 3) as i32)
            })
            .collect();
        let mut scheduler = Scheduler::new(fleet.clone(), gpuplace::Policy::default(), BackendChoice::Cpu).unwrap();
        let fill = Workload::from_jobs(fill, "<fill>");
        scheduler.place(&fill, Some(at())).unwrap();
        let urgent =
            Workload::from_jobs(vec![Job::new("urgent", JobKind::Training, 8, region).with_priority(9)], "<u>");
        let job = urgent.compile(&fleet, scheduler.policy(), at()).unwrap()[0];
        if fits_reference(scheduler.ledger(), &job) {
            continue;
        }
        let priorities: HashMap<&str, i32> = fill.jobs.iter().map(|j| (j.id.as_str(), j.priority)).collect();
        let held: Vec<(String, Allocation)> = scheduler.placed().map(|(id, a)| (id.to_string(), a.clone())).collect();
        let holders: Vec<Holder> =
            held.iter().map(|(id, a)| Holder { id, priority: priorities[id.as_str()], allocation: a }).collect();
        let mut ledger = scheduler.ledger().clone();
        let Some(choice) = choose_victims(&mut ledger, &job, 9, &holders) else { continue };
        let victims: Vec<&Allocation> = choice.victims.iter().map(|&h| &held[h].1).collect();
        assert!(fits_without(scheduler.ledger(), &job, &victims), "seed {seed}: the victims do not make room");
        for skip in 0..victims.len() {
            let fewer: Vec<&Allocation> =
                victims.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, a)| *a).collect();
            assert!(!fits_without(scheduler.ledger(), &job, &fewer), "seed {seed}: victim {skip} was not needed");
        }
        assert!(choice.trials <= MAX_TRIALS + holders.len() + 1, "seed {seed}: {} trials", choice.trials);
        if !choice.exact {
            bounded += 1;
        }
    }
    assert!(bounded >= 3, "the bounds never ran out: {bounded}");
}

/// A scheduler on one site of 12.5 kW: rack `r1` of 8 GPUs of 80 GB, rack `r2` of 8 GPUs of
/// 40 GB, 1.25 kW per GPU.
fn one_short_site() -> Scheduler {
    use gpuplace::model::fleet::{ClusterFile, FleetFile, RackTypeFile, SiteFile};
    let fleet = FleetFile::new(["us"])
        .with_as_of(at())
        .with_rack_type("big", RackTypeFile::new("H100", 8, 80, 10.0))
        .with_rack_type("small", RackTypeFile::new("L40", 8, 40, 10.0))
        .with_site(
            SiteFile::new("lab", "own", "US", "US", 0.0125, gpuplace::Day(0))
                .with_latency_ms("us", 5)
                .with_cluster(ClusterFile::new("r1", "big", 1))
                .with_cluster(ClusterFile::new("r2", "small", 1)),
        )
        .build("<one site>")
        .unwrap();
    Scheduler::new(fleet, gpuplace::Policy::default(), BackendChoice::Cpu).unwrap()
}

/// A training job of `gpus` GPUs needing `hbm` GB each, at `priority`.
fn job(id: &str, gpus: u32, hbm: u32, priority: i32) -> Job {
    Job::new(id, JobKind::Training, gpus, "us").with_hbm_gb_per_gpu(hbm).with_priority(priority)
}

/// A job short of its site's power may need a victim on a rack it cannot use itself: the one
/// whose power it takes. One site of 12.5 kW: rack `r1` (80 GB GPUs) holds `a` (4 GPUs), rack
/// `r2` (40 GB GPUs) holds `b` (6 GPUs); `j` needs 8 GPUs of 80 GB (10 kW). Evicting `a` frees
/// `r1` but only 5 kW; `b`, on a rack `j` cannot use, must go too.
#[test]
fn a_victim_elsewhere_at_the_site_can_be_what_gives_the_power() {
    let mut scheduler = one_short_site();
    let first = Workload::from_jobs(vec![job("a", 4, 80, 0), job("b", 6, 0, 0)], "<first>");
    let placement = scheduler.place(&first, Some(at())).unwrap();
    assert_eq!(placement.placed_count(), 2);
    assert_eq!(scheduler.allocation("b").unwrap().racks[0].rack, 1, "b is on r2");
    let second = Workload::from_jobs(vec![job("j", 8, 80, 5)], "<second>");
    let compiled = scheduler.compile(&second, at()).unwrap();
    let pass = scheduler.preempt(&compiled, &[0], Reasons::Worded).unwrap();
    let mut evicted: Vec<&str> = pass.evictions.iter().map(|e| e.id.as_str()).collect();
    evicted.sort_unstable();
    assert_eq!(evicted, ["a", "b"]);
    assert!(scheduler.allocation("j").is_some());
}

/// A job short only of power: its rack has the GPUs free, and the only victim that helps is on a
/// rack it cannot use (review finding: the pruned search lost it).
#[test]
fn a_job_short_only_of_power_finds_its_victim_elsewhere_at_the_site() {
    let mut scheduler = one_short_site();
    scheduler.place(&Workload::from_jobs(vec![job("a", 4, 80, 10)], "<a>"), Some(at())).unwrap();
    scheduler.place(&Workload::from_jobs(vec![job("b", 6, 0, 0)], "<b>"), Some(at())).unwrap();
    assert_eq!(scheduler.allocation("b").unwrap().racks[0].rack, 1, "b is on r2");
    let second = Workload::from_jobs(vec![job("j", 4, 80, 5)], "<second>");
    let compiled = scheduler.compile(&second, at()).unwrap();
    let pass = scheduler.preempt(&compiled, &[0], Reasons::Worded).unwrap();
    assert_eq!(pass.evictions.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["b"]);
    assert!(scheduler.allocation("j").is_some());
}
