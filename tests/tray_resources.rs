//! CPU and memory on trays: the kernel's feasibility test (`check`, which counts a rack's pods from
//! its summary when the job's CPU and memory per GPU are within what every usable tray has per free
//! GPU, and tray by tray otherwise) says yes exactly when the shape rule's placement on the trays
//! (`shape::pods_on_nodes_sized`) places every pod, exhaustively over small racks. A negative
//! control shows that the summary alone would be wrong.

mod common;

use common::{plain_job, rack_over};
use gpuplace::kernel::score::{BlockGpu, ClusterGpu, JobGpu, NodeGpu, REJECT_GPUS, RackGpu, SiteGpu, check};
use gpuplace::kernel::shape::{pods_fit, pods_on_nodes_sized};

const NODE_GPUS: u32 = 4;
const NODE_CPU: u32 = 16_000;
const NODE_MEMORY: u32 = 65_536;

fn rack_of(table: &[NodeGpu]) -> RackGpu {
    rack_over(table, NODE_GPUS, NODE_CPU, NODE_MEMORY)
}

fn job_of(pods: u32, pod_gpus: u32, cpu: u32, memory: u32) -> JobGpu {
    JobGpu { pod_cpu_milli: cpu, pod_memory_mib: memory, ..plain_job(pods * pod_gpus, pods, pod_gpus) }
}

#[test]
fn the_kernel_says_yes_exactly_when_the_trays_hold_every_pod() {
    let site = SiteGpu { power_free_w: u32::MAX, jurisdiction_bit: 1, provider_bit: 1, energy_term: 0, carbon_term: 0 };
    let cluster = ClusterGpu { free_racks: 0, online_day: 0 };
    let block = BlockGpu { free_racks: 0 };
    let cpus = [0u32, 3_000, 8_000, 16_000];
    let memories = [0u32, 16_384, 65_536];
    let (mut pairs, mut by_trays, mut yes, mut summary_wrong) = (0u32, 0u32, 0u32, 0u32);
    for nodes in 1..=3usize {
        // Each tray: free GPUs 0..=4, free CPU and memory from the lists (a tray with no GPU in use
        // has all its CPU and memory free, as the ledger keeps it).
        let per_tray = 5 * cpus.len() * memories.len();
        // Every state of one and two trays, every seventh of three (the test runs in a debug build).
        for state in (0..per_tray.pow(nodes as u32)).step_by(if nodes == 3 { 7 } else { 1 }) {
            let table: Vec<NodeGpu> = (0..nodes)
                .map(|n| {
                    let code = state / per_tray.pow(n as u32) % per_tray;
                    let free_gpus = (code % 5) as u32;
                    let (cpu, memory) = (cpus[code / 5 % cpus.len()], memories[code / 5 / cpus.len()]);
                    if free_gpus == NODE_GPUS {
                        NodeGpu {
                            free_gpus,
                            free_cpu_milli: NODE_CPU,
                            free_memory_mib: NODE_MEMORY,
                            shared_free: [0; 3],
                        }
                    } else {
                        NodeGpu { free_gpus, free_cpu_milli: cpu, free_memory_mib: memory, shared_free: [0; 3] }
                    }
                })
                .collect();
            let rack = rack_of(&table);
            for pods in 1..=5u32 {
                for pod_gpus in [1u32, 2, 4] {
                    for (cpu, memory) in [(0, 0), (1_000, 0), (4_000, 0), (0, 20_000), (5_000, 8_192), (16_000, 1)] {
                        let job = job_of(pods, pod_gpus, cpu, memory);
                        if pods * pod_gpus > NODE_GPUS * nodes as u32 {
                            continue;
                        }
                        let says = check(&job, &rack, &site, &cluster, &block, 0, &table) & REJECT_GPUS == 0;
                        let mut trays: Vec<[u32; 3]> =
                            table.iter().map(|n| [n.free_gpus, n.free_cpu_milli, n.free_memory_mib]).collect();
                        let placed = pods_on_nodes_sized(&mut trays, pods, pod_gpus, 0, [cpu, memory]).is_some();
                        assert_eq!(
                            says, placed,
                            "trays {table:?}, {pods} pods of {pod_gpus} GPUs, {cpu} m, {memory} MiB"
                        );
                        pairs += 1;
                        yes += u32::from(says);
                        let held_by_summary =
                            cpu <= pod_gpus * rack.cpu_per_gpu && memory <= pod_gpus * rack.memory_per_gpu;
                        by_trays += u32::from(!held_by_summary);
                        // Negative control: the summary alone (GPUs only) gives another answer here.
                        summary_wrong += u32::from((pods_fit(rack.summary, pod_gpus) >= pods) != placed);
                    }
                }
            }
        }
    }
    assert!(pairs > 100_000, "{pairs}");
    assert!(yes > pairs / 10 && yes < pairs * 9 / 10, "{yes} of {pairs} fit");
    assert!(by_trays > pairs / 10, "counted tray by tray for {by_trays} of {pairs} only");
    assert!(summary_wrong > pairs / 20, "GPUs alone differ on {summary_wrong} of {pairs} only");
}
