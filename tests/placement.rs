//! The placement engine against its definition: on many seeded random fleets and workloads, the
//! batched engine equals the one-job-at-a-time oracle, and an independent replay confirms every
//! decision (capacity, constraints, optimality, the priority guarantee).

mod common;

use common::{Shape, at, random_fleet, random_policy, random_workload};
use gpuplace::cpu::CpuScorer;
use gpuplace::generate::SplitMix64;
use gpuplace::place::{Decision, Outcome, RoundLimits, STATIC_REJECTS, decision_order, place_batched, place_reference};
use gpuplace::score::{Candidate, better, check, score};
use gpuplace::{Fleet, Policy, Workload};

/// Replays `decisions` on a fresh copy of the fleet with its own arithmetic and checks each one:
/// decision order, the chosen rack is the best feasible one (ties: lowest index), unplaced jobs had
/// no feasible rack, gangs all-or-nothing, multi-rack jobs on fully free racks of one cluster, and
/// no rack or site ever over capacity.
pub fn verify(fleet: &Fleet, workload: &Workload, policy: &Policy, decisions: &[Decision]) {
    let jobs = workload.compile(fleet, policy, at()).unwrap();
    let order = decision_order(&workload.jobs);
    assert_eq!(decisions.iter().map(|d| d.job).collect::<Vec<_>>(), order, "jobs decided out of order");
    let mut state = fleet.initial_state();
    for decision in decisions {
        let job = &jobs[decision.job];
        let id = &workload.jobs[decision.job].id;
        let mut best: Option<Candidate> = None;
        for (r, rack) in state.racks.iter().enumerate() {
            let site = &state.sites[rack.site as usize];
            let cluster = &state.clusters[rack.cluster as usize];
            let latency = state.latency[(rack.site * state.region_count + job.region) as usize];
            if check(job, rack, site, cluster, latency) == 0 {
                let candidate = Candidate { score: score(job, rack, site, latency), rack: r as u32 };
                if best.is_none_or(|b| better(candidate, b)) {
                    best = Some(candidate);
                }
            }
        }
        match &decision.outcome {
            Outcome::Unplaced { reason } => {
                assert_eq!(best, None, "{id} left unplaced although a rack was feasible ({reason})");
                assert!(!reason.is_empty());
            }
            Outcome::Placed { racks, score } => {
                let best = best.unwrap_or_else(|| panic!("{id} placed although no rack was feasible"));
                assert_eq!((racks[0].rack, *score), (best.rack, best.score), "{id} not on the best rack");
                let anchor = state.racks[racks[0].rack as usize];
                assert_eq!(racks.iter().map(|s| s.gpus).sum::<u32>(), job.gpus, "{id}: gang not whole");
                if job.gpus <= anchor.gpus {
                    assert_eq!(racks.len(), 1, "{id} split across NVLink domains");
                } else {
                    assert_eq!(racks.len() as u32, job.gpus.div_ceil(anchor.gpus), "{id}: wrong rack count");
                    assert!(racks[1..].windows(2).all(|w| w[0].rack < w[1].rack), "{id}: racks not in index order");
                    for share in racks {
                        let rack = state.racks[share.rack as usize];
                        assert_eq!(rack.cluster, anchor.cluster, "{id} spans clusters");
                        assert_eq!(rack.free_gpus, rack.gpus, "{id} took a rack that was not fully free");
                    }
                }
                for share in racks {
                    let rack = &mut state.racks[share.rack as usize];
                    let site = &state.sites[rack.site as usize];
                    let cluster = &state.clusters[rack.cluster as usize];
                    let latency = state.latency[(rack.site * state.region_count + job.region) as usize];
                    assert_eq!(
                        check(job, rack, site, cluster, latency) & STATIC_REJECTS,
                        0,
                        "{id} breaks a constraint"
                    );
                    assert!(rack.free_gpus >= share.gpus, "{id} overfills rack {}", share.rack);
                    if rack.free_gpus == rack.gpus {
                        state.clusters[rack.cluster as usize].free_racks -= 1;
                    }
                    rack.free_gpus -= share.gpus;
                }
                let draw = job.gpus * anchor.gpu_watts;
                let site = &mut state.sites[anchor.site as usize];
                assert!(site.power_free_w >= draw, "{id} overdraws site power");
                site.power_free_w -= draw;
            }
        }
    }
}

/// The batched engine on the CPU with K = 8 and the default round limits.
fn place_with_defaults(
    fleet: &Fleet,
    jobs: &[gpuplace::score::JobGpu],
    order: &[usize],
) -> (Vec<Decision>, gpuplace::FleetState, gpuplace::place::EngineStats) {
    place_batched(fleet, jobs, order, fleet.initial_state(), 8, RoundLimits::default(), &mut CpuScorer, &mut |_, _| {})
        .unwrap()
}

fn run_case(seed: u64, shape: Shape) {
    let mut rng = SplitMix64::new(seed);
    let fleet = random_fleet(&mut rng, shape);
    let workload = random_workload(&mut rng, &fleet, shape.jobs);
    let policy = random_policy(&mut rng, shape.all_ties);
    let jobs = workload.compile(&fleet, &policy, at()).unwrap();
    let order = decision_order(&workload.jobs);
    let (reference, reference_state) = place_reference(&fleet, &jobs, &order, fleet.initial_state());
    verify(&fleet, &workload, &policy, &reference);
    for (k, max_dirty_racks, max_jobs_per_round) in [
        (policy.candidates as usize, usize::MAX, 65_536),
        (1, usize::MAX, 5),
        (2, 0, 65_536),
        (16, 3, 1),
        (8, usize::MAX, 17),
    ] {
        let (batched, state, _) = place_batched(
            &fleet,
            &jobs,
            &order,
            fleet.initial_state(),
            k,
            RoundLimits { max_dirty_racks, max_jobs_per_round },
            &mut CpuScorer,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(
            batched, reference,
            "seed {seed}: batched (k={k}, dirty limit {max_dirty_racks}, round {max_jobs_per_round}) differs from the oracle"
        );
        assert_eq!(state, reference_state, "seed {seed}: final capacity differs");
    }
}

#[test]
fn batched_engine_equals_oracle_on_random_problems() {
    for seed in 0..150 {
        run_case(seed, Shape::default());
    }
}

#[test]
fn batched_engine_equals_oracle_when_everything_ties() {
    for seed in 1000..1060 {
        run_case(seed, Shape { all_ties: true, ..Shape::default() });
    }
}

#[test]
fn batched_engine_equals_oracle_under_heavy_contention() {
    // Few racks, many jobs, much occupancy: most jobs end unplaced, candidate lists run dry.
    for seed in 2000..2060 {
        run_case(
            seed,
            Shape { max_sites: 2, max_clusters: 2, max_racks: 4, jobs: 150, occupancy_percent: 70, all_ties: false },
        );
    }
}

#[test]
fn batched_engine_equals_oracle_on_builtin_fleet() {
    let fleet = gpuplace::builtin::default_fleet();
    let workload = gpuplace::generate::generate(&fleet, 6000, 11, at());
    let policy = Policy::default();
    let jobs = workload.compile(&fleet, &policy, at()).unwrap();
    let order = decision_order(&workload.jobs);
    let (reference, _) = place_reference(&fleet, &jobs, &order, fleet.initial_state());
    let (batched, _, stats) = place_with_defaults(&fleet, &jobs, &order);
    assert_eq!(batched, reference);
    assert!(stats.from_candidates > 0, "the candidate lists were never used: {stats:?}");

    verify(&fleet, &workload, &policy, &batched);
    let placed = batched.iter().filter(|d| matches!(d.outcome, Outcome::Placed { .. })).count();
    assert!(placed > 0 && placed < batched.len(), "placed {placed} of {}: not a contended problem", batched.len());
}

#[test]
fn verify_catches_a_wrong_decision() {
    // Negative control for `verify`: swapping two placements' racks must be caught.
    let mut rng = SplitMix64::new(7);
    let fleet = random_fleet(&mut rng, Shape { max_racks: 20, ..Shape::default() });
    let workload = random_workload(&mut rng, &fleet, 80);
    let policy = Policy::default();
    let jobs = workload.compile(&fleet, &policy, at()).unwrap();
    let order = decision_order(&workload.jobs);
    let (mut decisions, _) = place_reference(&fleet, &jobs, &order, fleet.initial_state());
    let placed: Vec<usize> = decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| matches!(d.outcome, Outcome::Placed { .. }))
        .map(|(i, _)| i)
        .collect();
    assert!(placed.len() >= 2);
    let (a, b) = (placed[0], placed[placed.len() - 1]);
    let outcome_a = decisions[a].outcome.clone();
    decisions[a].outcome = decisions[b].outcome.clone();
    decisions[b].outcome = outcome_a;
    let caught = std::panic::catch_unwind(|| verify(&fleet, &workload, &policy, &decisions)).is_err();
    assert!(caught, "verify accepted swapped placements");
}

#[test]
fn placement_is_deterministic_across_thread_counts() {
    let fleet = gpuplace::builtin::default_fleet();
    let workload = gpuplace::generate::generate(&fleet, 3000, 5, at());
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut scheduler =
                gpuplace::Scheduler::new(fleet.clone(), Policy::default(), gpuplace::BackendChoice::Cpu).unwrap();
            let placement = scheduler.place(&workload, Some(at())).unwrap();
            serde_json::to_string(&gpuplace::report::out_file(&fleet, &workload, &placement)).unwrap()
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

#[test]
fn generator_is_deterministic_and_seed_sensitive() {
    let fleet = gpuplace::builtin::default_fleet();
    let a = gpuplace::generate::generate(&fleet, 500, 1, at());
    assert_eq!(a, gpuplace::generate::generate(&fleet, 500, 1, at()));
    assert_ne!(a.jobs, gpuplace::generate::generate(&fleet, 500, 2, at()).jobs);
    // Every generated workload is valid for the fleet it was made for.
    a.compile(&fleet, &Policy::default(), at()).unwrap();
    let kinds: std::collections::BTreeSet<_> = a.jobs.iter().map(|j| j.kind).collect();
    assert_eq!(kinds.len(), 4, "all four kinds appear");
}

#[test]
fn jobs_with_the_same_needs_share_one_worded_reason() {
    // Jobs of equal needs in an unchanged state must reuse one worded reason, whatever their kind,
    // weights or random salt; wording each anew once made 1M-job runs 3× slower.
    let fleet = gpuplace::builtin::default_fleet();
    let mut workload = gpuplace::generate::generate(&fleet, 300, 3, at());
    for (i, job) in workload.jobs.iter_mut().enumerate() {
        // No rack has this much HBM: every job is unplaced and nothing is ever committed.
        job.hbm_gb_per_gpu = 60_000;
        job.gpus = if i % 2 == 0 { 8 } else { 16 };
        job.region = "us-east".into();
        job.max_latency_ms = None;
        job.jurisdictions = None;
        job.providers = None;
        job.not_before = None;
    }
    let jobs = workload.compile(&fleet, &gpuplace::policy::Preset::Random.policy(9), at()).unwrap();
    let order = decision_order(&workload.jobs);
    let (decisions, _, stats) = place_with_defaults(&fleet, &jobs, &order);
    assert!(decisions.iter().all(|d| matches!(d.outcome, Outcome::Unplaced { .. })));
    assert_eq!(stats.reasons_worded, 2, "one reason per distinct need");
}
