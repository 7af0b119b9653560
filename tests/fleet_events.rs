//! The fleet changing under a live scheduler (what a service does when trays fail, are cordoned or
//! repaired, a site's power changes, or a cluster's online day moves): the ledger stays
//! consistent, no pod lands on a node that is not ready, no site draws more than its power, no job
//! runs in a cluster before it is online, and the batched engine still equals the reference rule.

mod common;

use common::{Shape, at, random_fleet, random_policy, random_workload};
use gpuplace::engine::place::Outcome;
use gpuplace::kernel::state::NodeState;
use gpuplace::sim::generate::SplitMix64;
use gpuplace::{BackendChoice, Day, Scheduler, Workload};

fn part(workload: &Workload, range: std::ops::Range<usize>, name: &str) -> Workload {
    Workload::from_jobs(workload.jobs[range].to_vec(), name)
}

#[test]
fn placements_respect_node_states_power_and_online_days_after_changes() {
    let mut checked = 0;
    for seed in 0..40u64 {
        let mut rng = SplitMix64::new(seed ^ 0xF1EE7);
        let fleet = random_fleet(&mut rng, Shape { occupancy_percent: 10, ..Shape::default() });
        let workload = random_workload(&mut rng, &fleet, 90);
        let policy = random_policy(&mut rng, false);
        let mut scheduler = Scheduler::new(fleet.clone(), policy, BackendChoice::Cpu).unwrap();
        scheduler.place(&part(&workload, 0..30, "<a>"), Some(at())).unwrap();
        // Fail, cordon and repair random nodes; requeue what ran on failed ones.
        let mut not_ready = Vec::new();
        for _ in 0..6 {
            let rack = rng.below(fleet.racks.len() as u64) as u32;
            let nodes = scheduler.ledger().state().racks[rack as usize].nodes;
            let node = rng.below(u64::from(nodes)) as u32;
            let state = [NodeState::Failed, NodeState::Cordoned, NodeState::Ready][rng.below(3) as usize];
            if state == NodeState::Failed {
                for id in scheduler.jobs_on_node(rack, node) {
                    scheduler.release(&id).unwrap();
                }
                assert!(scheduler.jobs_on_node(rack, node).is_empty());
            }
            scheduler.set_node_state(rack, node, state).unwrap();
            not_ready.retain(|&(r, n)| (r, n) != (rack, node));
            if state != NodeState::Ready {
                not_ready.push((rack, node));
            }
        }
        assert!(scheduler.set_node_state(fleet.racks.len() as u32, 0, NodeState::Failed).is_err());
        // Cut a site's power to what it draws, then try to cut below it.
        let site = rng.below(fleet.sites.len() as u64) as u32;
        let drawn = scheduler.ledger().site_power_drawn_w(site as usize);
        let before = scheduler.ledger().state().clone();
        if drawn > 0 {
            assert!(scheduler.set_site_power(site, drawn - 1).is_err(), "seed {seed}: below the draw");
            assert_eq!(scheduler.ledger().state(), &before, "a refused change changed nothing");
        }
        scheduler.set_site_power(site, drawn).unwrap();
        // Move a cluster's online day far ahead.
        let late = rng.below(fleet.clusters.len() as u64) as u32;
        scheduler.set_cluster_online(late, Day(at().0 + 10_000)).unwrap();
        scheduler.ledger().check_consistency().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        // The rest of the workload, checked against the reference rule and the changes.
        let rest = part(&workload, 30..90, "<b>");
        let reference = scheduler.place_reference(&rest, Some(at())).unwrap();
        let placement = scheduler.place(&rest, Some(at())).unwrap();
        assert_eq!(placement.decisions, reference, "seed {seed}: the engine left the reference rule");
        for decision in &placement.decisions {
            if let Outcome::Placed { allocation, .. } = &decision.outcome {
                assert_ne!(allocation.site, site, "seed {seed}: a site with no power left took a job");
                for pod in &allocation.pods {
                    assert!(!not_ready.contains(&(pod.rack, pod.node)), "seed {seed}: a pod on a node not ready");
                    assert_ne!(fleet.racks[pod.rack as usize].cluster, late, "seed {seed}: a cluster not online yet");
                }
                checked += 1;
            }
        }
        scheduler.ledger().check_consistency().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    assert!(checked >= 200, "too few placements checked ({checked})");
}

#[test]
fn a_repaired_node_takes_pods_again() {
    let mut rng = SplitMix64::new(3);
    let fleet = random_fleet(&mut rng, Shape { occupancy_percent: 0, max_racks: 4, ..Shape::default() });
    let mut scheduler = Scheduler::new(fleet.clone(), gpuplace::Policy::default(), BackendChoice::Cpu).unwrap();
    let all_nodes: Vec<(u32, u32)> = (0..fleet.racks.len() as u32)
        .flat_map(|r| (0..scheduler.ledger().state().racks[r as usize].nodes).map(move |n| (r, n)))
        .collect();
    for &(rack, node) in &all_nodes {
        scheduler.set_node_state(rack, node, NodeState::Failed).unwrap();
    }
    let job = gpuplace::Job::new("one", gpuplace::JobKind::Inference, 1, fleet.regions[0].clone()).with_duration_h(1.0);
    let workload = Workload::from_jobs(vec![job], "<one>");
    let placement = scheduler.place(&workload, Some(at())).unwrap();
    assert_eq!(placement.placed_count(), 0, "every node failed");
    let &(rack, node) = all_nodes.last().unwrap();
    scheduler.set_node_state(rack, node, NodeState::Ready).unwrap();
    // Online and powered everywhere, the one ready node takes it (if its site's latency allows).
    let placement = scheduler.place_reference(&workload, Some(at())).unwrap();
    if let Outcome::Placed { allocation, .. } = &placement[0].outcome {
        assert_eq!((allocation.pods[0].rack, allocation.pods[0].node), (rack, node));
    }
}
