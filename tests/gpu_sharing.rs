//! Pods that share GPUs (`gpu_milli`): the kernel's feasibility test (`check`, which counts a
//! rack's pods node by node from its free GPUs and its shared GPUs' free thousandths) says yes
//! exactly when the shape rule's placement (`shape::shared_pods_on_gpus`, fed by the ledger's own
//! view of each tray) places every pod, exhaustively over small racks; the ledger's commit and
//! release keep every GPU within its thousandths and give back exactly what they took. Negative
//! controls show that counting whole free GPUs only, or one pod per shared GPU, would be wrong.

mod common;

use common::{plain_job, rack_over};
use gpuplace::kernel::limits::MAX_NODE_MEMORY_MIB;
use gpuplace::kernel::score::{BlockGpu, ClusterGpu, GPU_MILLI, JobGpu, NodeGpu, REJECT_GPUS, RackGpu, SiteGpu, check};
use gpuplace::kernel::shape::{SharedNode, shared_pods_on_gpus};
use gpuplace::kernel::state::{NodeCell, NodeState, Shares};

const NODE_GPUS: u32 = 2;
const NODE_CPU: u32 = 16_000;

/// A rack of `cells`, with the kernel's node table as `FleetState::recount` keeps it.
fn rack_of(cells: &[(NodeCell, Shares)], cpu_free: &[u32]) -> (RackGpu, Vec<NodeGpu>) {
    let table: Vec<NodeGpu> = cells
        .iter()
        .zip(cpu_free)
        .map(|((cell, shares), &cpu)| NodeGpu {
            free_gpus: cell.usable_free(NODE_GPUS),
            free_cpu_milli: cpu,
            free_memory_mib: MAX_NODE_MEMORY_MIB,
            shared_free: cell.shared_free(shares),
        })
        .collect();
    let rack = rack_over(&table, NODE_GPUS, NODE_CPU, MAX_NODE_MEMORY_MIB);
    (rack, table)
}

/// `pods` pods of `milli` thousandths of one GPU, each asking `cpu` milli-cores, as the model
/// compiles them.
fn shared_job(pods: u32, milli: u32, cpu: u32) -> JobGpu {
    let gpus = (pods * milli).div_ceil(GPU_MILLI);
    JobGpu { pod_cpu_milli: cpu, gpu_milli: milli, pods_per_gpu: GPU_MILLI / milli, ..plain_job(gpus, pods, 1) }
}

/// The rule of `shared_pods_on_gpus` read literally, one pod at a time: the GPU with the fewest free
/// thousandths that holds the pod, on a node with its CPU and memory, ties to the lowest node and
/// GPU. (The library places a GPU's pods in a row at once.)
fn one_at_a_time(nodes: &mut [SharedNode], pods: u32, milli: u32, [cpu, memory]: [u32; 2]) -> Option<Vec<(u32, u32)>> {
    let mut placed = Vec::new();
    for _ in 0..pods {
        let candidates = nodes.iter().enumerate().filter(|(_, n)| n.1 >= cpu && n.2 >= memory);
        let gpus = candidates.flat_map(|(i, n)| n.0.iter().enumerate().map(move |(g, &f)| (f, i, g)));
        let (_, n, g) = gpus.filter(|&(f, _, _)| f >= milli).min()?;
        nodes[n].0[g] -= milli;
        nodes[n].1 -= cpu;
        nodes[n].2 -= memory;
        placed.push((n as u32, g as u32));
    }
    Some(placed)
}

/// Each GPU of a tray: free, in use whole, or shared with this many thousandths in use.
const GPU_STATES: [Option<u32>; 6] = [None, Some(0), Some(1), Some(400), Some(700), Some(1000)];

fn cell_of(code: usize, state: NodeState) -> (NodeCell, Shares) {
    let (mut cell, mut shares) = (NodeCell::new(0, state), Shares::default());
    for gpu in 0..NODE_GPUS as usize {
        match GPU_STATES[code / GPU_STATES.len().pow(gpu as u32) % GPU_STATES.len()] {
            None => {}
            Some(0) => cell.used |= 1 << gpu,
            Some(milli) => {
                cell.used |= 1 << gpu;
                cell.shared |= 1 << gpu;
                shares[gpu] = milli as u16;
            }
        }
    }
    (cell, shares)
}

#[test]
fn the_kernel_says_yes_exactly_when_the_gpus_hold_every_pod() {
    let site = SiteGpu { power_free_w: u32::MAX, jurisdiction_bit: 1, provider_bit: 1, energy_term: 0, carbon_term: 0 };
    let cluster = ClusterGpu { free_racks: 0, online_day: 0 };
    let block = BlockGpu { free_racks: 0 };
    let per_node = GPU_STATES.len().pow(NODE_GPUS);
    let cpus = [NODE_CPU, 2_500];
    let states = [NodeState::Ready, NodeState::Ready, NodeState::Cordoned];
    let per_tray = per_node * cpus.len() * states.len();
    let (mut pairs, mut yes, mut whole_wrong, mut one_each_wrong) = (0u32, 0u32, 0u32, 0u32);
    for nodes in 1..=2usize {
        for code in 0..per_tray.pow(nodes as u32) {
            let tray = |n: usize| code / per_tray.pow(n as u32) % per_tray;
            let cells: Vec<(NodeCell, Shares)> =
                (0..nodes).map(|n| cell_of(tray(n) % per_node, states[tray(n) / per_node / cpus.len()])).collect();
            // A tray with nothing in use has all its CPU free, as the ledger keeps it.
            let cpu_free: Vec<u32> = (0..nodes)
                .map(|n| if cells[n].0.used == 0 { NODE_CPU } else { cpus[tray(n) / per_node % cpus.len()] })
                .collect();
            let (rack, table) = rack_of(&cells, &cpu_free);
            for pods in 1..=7u32 {
                for milli in [1u32, 250, 300, 500, 600, 999] {
                    for cpu in [0u32, 1_000, 2_000] {
                        let job = shared_job(pods, milli, cpu);
                        let says = check(&job, &rack, &site, &cluster, &block, 0, &table) & REJECT_GPUS == 0;
                        let mut view: Vec<SharedNode> = cells
                            .iter()
                            .zip(&table)
                            .map(|((cell, shares), n)| {
                                (cell.gpu_free_milli(shares, NODE_GPUS), n.free_cpu_milli, n.free_memory_mib)
                            })
                            .collect();
                        let before = view.clone();
                        let placed = shared_pods_on_gpus(&mut view, pods, milli, [cpu, 0]);
                        let mut literal = before.clone();
                        assert_eq!(placed, one_at_a_time(&mut literal, pods, milli, [cpu, 0]), "the rule, pod by pod");
                        assert_eq!(
                            says,
                            placed.is_some(),
                            "trays {cells:?} cpu {cpu_free:?}: {pods} pods of {milli}, {cpu} m"
                        );
                        match &placed {
                            Some(slots) => {
                                // Every GPU within its thousandths, and only free or shared GPUs taken.
                                for &(node, gpu) in slots {
                                    let (cell, _) = cells[node as usize];
                                    assert_eq!(cell.state, NodeState::Ready, "a pod on a tray that is not ready");
                                    let shared = cell.shared & (1 << gpu) != 0;
                                    assert!(shared || cell.used & (1 << gpu) == 0, "a pod on a GPU in use whole");
                                }
                                assert!(
                                    view.iter()
                                        .all(|(gpus, cpu, _)| gpus.iter().all(|&m| m <= GPU_MILLI) && *cpu <= NODE_CPU)
                                );
                                let taken: u32 = before
                                    .iter()
                                    .zip(&view)
                                    .map(|(b, a)| b.0.iter().zip(&a.0).map(|(x, y)| x - y).sum::<u32>())
                                    .sum();
                                assert_eq!(taken, pods * milli, "each pod takes its share once");
                            }
                            None => assert_eq!(view, before, "a failed placement takes nothing"),
                        }
                        pairs += 1;
                        yes += u32::from(says);
                        // Negative controls: whole free GPUs only, and one pod per shared GPU.
                        let whole_only: u32 = table
                            .iter()
                            .map(|n| {
                                let by_cpu = n.free_cpu_milli.checked_div(cpu).unwrap_or(u32::MAX);
                                (n.free_gpus * (GPU_MILLI / milli)).min(by_cpu)
                            })
                            .sum();
                        whole_wrong += u32::from((whole_only >= pods) != says);
                        let one_each: u32 = cells
                            .iter()
                            .zip(&table)
                            .map(|((cell, shares), n)| {
                                let by_cpu = n.free_cpu_milli.checked_div(cpu).unwrap_or(u32::MAX);
                                let room = cell.gpu_free_milli(shares, NODE_GPUS);
                                let shared_with_room = room.iter().filter(|&&m| m >= milli && m < GPU_MILLI).count();
                                (n.free_gpus * (GPU_MILLI / milli) + shared_with_room as u32).min(by_cpu)
                            })
                            .sum();
                        one_each_wrong += u32::from((one_each >= pods) != says);
                    }
                }
            }
        }
    }
    assert!(pairs > 100_000, "{pairs}");
    assert!(yes > pairs / 10 && yes < pairs * 9 / 10, "{yes} of {pairs} fit");
    assert!(whole_wrong > pairs / 50, "whole GPUs alone differ on {whole_wrong} of {pairs} only");
    assert!(one_each_wrong > pairs / 200, "one pod per shared GPU differs on {one_each_wrong} of {pairs} only");
}

#[test]
fn a_shared_gpu_is_filled_before_a_free_one_and_the_fullest_first() {
    // Tray 0: GPU 0 shared with 300 in use (700 left), GPU 1 free. Tray 1: GPU 0 shared with 800
    // in use (200 left), GPU 1 in use whole.
    let mut nodes: Vec<SharedNode> =
        vec![([700, 1000, 0, 0, 0, 0, 0, 0], 10, 10), ([200, 0, 0, 0, 0, 0, 0, 0], 10, 10)];
    let placed = shared_pods_on_gpus(&mut nodes, 4, 200, [0, 0]).unwrap();
    // 200 left on tray 1 first; then tray 0's shared GPU (700, 500, then 300 left: still fewest).
    assert_eq!(placed, vec![(1, 0), (0, 0), (0, 0), (0, 0)]);
    assert_eq!(nodes[0].0[..2], [100, 1000]);
    // CPU binds: a tray without the pod's CPU is passed over, whatever its GPUs.
    let mut nodes: Vec<SharedNode> = vec![([100, 0, 0, 0, 0, 0, 0, 0], 0, 10), ([1000, 0, 0, 0, 0, 0, 0, 0], 5, 10)];
    assert_eq!(shared_pods_on_gpus(&mut nodes, 1, 100, [1, 0]), Some(vec![(1, 0)]));
    assert_eq!(shared_pods_on_gpus(&mut nodes, 5, 100, [1, 0]), None, "4 CPU left for 5 pods");
}
