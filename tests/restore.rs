//! Restoring what placed jobs hold (a service after a restart): `Scheduler::restore` takes exactly
//! what placement committed, in any order, and the scheduler then decides as if it had never
//! stopped; an allocation that cannot be applied (damaged, another fleet's, held twice) is refused
//! with nothing taken, never a panic.

mod common;

use common::{Shape, at, random_fleet, random_policy, random_workload};
use gpuplace::engine::place::Outcome;
use gpuplace::engine::{Allocation, Ledger};
use gpuplace::sim::generate::SplitMix64;
use gpuplace::{BackendChoice, Fleet, Scheduler, Workload};

/// A scheduler on `fleet` that placed the first half of `workload`, and what each job holds.
fn placed_half(fleet: &Fleet, policy: gpuplace::Policy, workload: &Workload) -> (Scheduler, Vec<(String, Allocation)>) {
    let mut scheduler = Scheduler::new(fleet.clone(), policy, BackendChoice::Cpu).unwrap();
    let half = Workload::from_jobs(workload.jobs[..workload.jobs.len() / 2].to_vec(), "<half>");
    let placement = scheduler.place(&half, Some(at())).unwrap();
    let held = placement
        .decisions
        .iter()
        .filter_map(|d| match &d.outcome {
            Outcome::Placed { .. } => {
                let id = &half.jobs[d.job].id;
                Some((id.clone(), scheduler.allocation(id).unwrap().clone()))
            }
            _ => None,
        })
        .collect();
    (scheduler, held)
}

#[test]
fn restored_allocations_give_the_same_ledger_and_the_same_later_decisions() {
    let mut restored_jobs = 0;
    for seed in 0..60u64 {
        let mut rng = SplitMix64::new(seed ^ 0x5E5708E);
        let fleet = random_fleet(&mut rng, Shape { occupancy_percent: 20, ..Shape::default() });
        let workload = random_workload(&mut rng, &fleet, 60);
        let policy = random_policy(&mut rng, false);
        let (mut original, mut held) = placed_half(&fleet, policy, &workload);
        // Through JSON, as a service stores them, and in a random order.
        for i in (1..held.len()).rev() {
            held.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut restored = Scheduler::new(fleet.clone(), policy, BackendChoice::Cpu).unwrap();
        for (id, allocation) in &held {
            let text = serde_json::to_string(allocation).unwrap();
            let back: Allocation = serde_json::from_str(&text).unwrap();
            assert_eq!(&back, allocation, "seed {seed}: an allocation changed through JSON");
            restored.restore(id, back, 0).unwrap_or_else(|e| panic!("seed {seed}: job {id}: {e}"));
        }
        restored_jobs += held.len();
        assert_eq!(restored.ledger().state(), original.ledger().state(), "seed {seed}: the restored capacity differs");
        restored.ledger().check_consistency().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(restored.running(), original.running());
        let rest = Workload::from_jobs(workload.jobs[workload.jobs.len() / 2..].to_vec(), "<rest>");
        let a = original.place(&rest, Some(at())).unwrap();
        let b = restored.place(&rest, Some(at())).unwrap();
        assert_eq!(a.decisions, b.decisions, "seed {seed}: decisions after the restore differ");
        // Every restored job can be released, exactly once.
        for (id, _) in &held {
            restored.release(id).unwrap();
            assert!(restored.release(id).is_err());
        }
    }
    assert!(restored_jobs > 300, "too few placed jobs ({restored_jobs}) for the test to mean anything");
}

#[test]
fn an_allocation_that_cannot_be_applied_is_refused_with_nothing_taken() {
    let mut refused = 0;
    for seed in 0..40u64 {
        let mut rng = SplitMix64::new(seed ^ 0xBAD5);
        let fleet = random_fleet(&mut rng, Shape { occupancy_percent: 20, ..Shape::default() });
        let workload = random_workload(&mut rng, &fleet, 40);
        let policy = random_policy(&mut rng, false);
        let (mut scheduler, held) = placed_half(&fleet, policy, &workload);
        let Some((id, allocation)) = held.first().cloned() else { continue };
        let before = scheduler.ledger().state().clone();
        // Held twice: under its own id and under another.
        assert!(scheduler.restore(&id, allocation.clone(), 0).is_err(), "seed {seed}: the same id restored twice");
        assert!(scheduler.restore("another", allocation.clone(), 0).is_err(), "seed {seed}: its capacity taken twice");
        // Damaged in each field.
        let racks = fleet.racks.len() as u32;
        let mut damaged: Vec<Allocation> = Vec::new();
        let mut a = allocation.clone();
        a.site = fleet.sites.len() as u32;
        damaged.push(a);
        let mut a = allocation.clone();
        a.racks[0].rack = racks;
        damaged.push(a);
        let mut a = allocation.clone();
        a.pods[0].node = u32::MAX;
        damaged.push(a);
        let mut a = allocation.clone();
        a.pods[0].rack = racks + 7;
        damaged.push(a);
        let mut a = allocation.clone();
        a.racks[0].gpus += 1;
        damaged.push(a);
        let mut a = allocation.clone();
        a.pods.clear();
        damaged.push(a);
        let mut a = allocation.clone();
        a.power_w = u32::MAX;
        damaged.push(a);
        let mut a = allocation.clone();
        a.pods[0].gpu_milli = 1000;
        damaged.push(a);
        let mut a = allocation.clone();
        a.pods[0].cpu_milli = u32::MAX;
        damaged.push(a);
        // Released, the undamaged one applies again: the refusals above are the damage, not
        // the check refusing everything (the negative control).
        scheduler.release(&id).unwrap();
        let released = scheduler.ledger().state().clone();
        for (n, bad) in damaged.into_iter().enumerate() {
            assert!(scheduler.restore("damaged", bad, 0).is_err(), "seed {seed}: damage {n} was taken");
            assert_eq!(scheduler.ledger().state(), &released, "seed {seed}: damage {n} changed the capacity");
            refused += 1;
        }
        scheduler.restore(&id, allocation, 0).unwrap();
        assert_eq!(scheduler.ledger().state(), &before);
    }
    assert!(refused > 100, "too few cases ({refused})");
}

#[test]
fn a_ledger_checks_an_allocation_against_the_capacity_left() {
    let mut rng = SplitMix64::new(11);
    let fleet = random_fleet(&mut rng, Shape { occupancy_percent: 0, ..Shape::default() });
    let workload = random_workload(&mut rng, &fleet, 80);
    let policy = random_policy(&mut rng, false);
    let (scheduler, held) = placed_half(&fleet, policy, &workload);
    assert!(!held.is_empty());
    // On the empty fleet each one alone applies; on the ledger that holds them, none does.
    let empty = Ledger::new(std::sync::Arc::new(fleet.clone()));
    for (id, allocation) in &held {
        empty.check_allocation(allocation).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(scheduler.ledger().check_allocation(allocation).is_err(), "{id}: held, yet it applies again");
    }
}

/// `Scheduler::with_released` shows the capacity as it would be without the named jobs (their
/// GPUs free, as releasing them would leave it) and leaves everything as it was after: the same
/// ledger, the same running jobs, and the same later decisions. Ids not placed or named twice are
/// refused with nothing changed.
#[test]
fn a_trial_release_shows_the_capacity_without_the_jobs_and_changes_nothing() {
    let mut trials = 0;
    for seed in 0..40u64 {
        let mut rng = SplitMix64::new(seed ^ 0x7A1A1);
        let fleet = random_fleet(&mut rng, Shape { occupancy_percent: 20, ..Shape::default() });
        let workload = random_workload(&mut rng, &fleet, 60);
        let policy = random_policy(&mut rng, false);
        let (mut scheduler, held) = placed_half(&fleet, policy, &workload);
        let (mut twin, _) = placed_half(&fleet, policy, &workload);
        if held.len() < 2 {
            continue;
        }
        let before = scheduler.ledger().state().clone();
        let chosen: Vec<&str> = held.iter().filter(|_| rng.below(3) == 0).map(|(id, _)| id.as_str()).collect();
        // What releasing them for good leaves: the trial must see exactly that.
        let mut released = Scheduler::new(fleet.clone(), policy, BackendChoice::Cpu).unwrap();
        for (id, allocation) in &held {
            if !chosen.contains(&id.as_str()) {
                released.restore(id, allocation.clone(), 0).unwrap();
            }
        }
        let seen = scheduler.with_released(&chosen, |s| s.ledger().state().clone()).unwrap();
        assert_eq!(&seen, released.ledger().state(), "seed {seed}: the trial's capacity differs");
        if !chosen.is_empty() {
            assert_ne!(seen, before, "seed {seed}: the trial released nothing");
        }
        assert_eq!(scheduler.ledger().state(), &before, "seed {seed}: the capacity changed");
        scheduler.ledger().check_consistency().unwrap();
        assert_eq!(scheduler.running(), held.len());
        // Refused with nothing changed.
        let twice = [held[0].0.as_str(), held[0].0.as_str()];
        assert!(scheduler.with_released(&twice, |_| ()).is_err());
        assert!(scheduler.with_released(&[held[0].0.as_str(), "nobody"], |_| ()).is_err());
        assert_eq!(scheduler.ledger().state(), &before);
        // A check that panics leaves the capacity as it was too.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = scheduler.with_released(&chosen, |_| panic!("a check that fails"));
        }));
        assert!(caught.is_err());
        assert_eq!(scheduler.ledger().state(), &before, "seed {seed}: a panicking check left the capacity changed");
        // The same later decisions as a scheduler that never tried.
        let rest = Workload::from_jobs(workload.jobs[workload.jobs.len() / 2..].to_vec(), "<rest>");
        let a = scheduler.place(&rest, Some(at())).unwrap();
        let b = twin.place(&rest, Some(at())).unwrap();
        assert_eq!(a.decisions, b.decisions, "seed {seed}: decisions after the trial differ");
        trials += 1;
    }
    assert!(trials > 20, "only {trials} instances had jobs to release");
}
