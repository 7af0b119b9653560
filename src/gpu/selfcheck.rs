//! The self-check's problem: every device scores it before it is used, and must agree with the CPU
//! bit for bit (`GpuScorer::self_check`). An adapter whose compiler mistranslates the
//! kernel (as Mesa's GLSL compiler once did with the candidate insertion) is refused instead of
//! giving placements that differ from the CPU's.
//!
//! The problem is built from the kernel's records directly, with a hash of the record's index for
//! every value, and covers what the kernel does: every constraint failing and passing, jobs of one
//! rack and of many, ties (equal scores on interchangeable racks), the random term, lists longer and
//! shorter than the feasible racks, and several rack tiles' worth of candidates per job.

use crate::kernel::cpu::ScoreOutput;
use crate::kernel::limits::MAX_LATENCY_MS;
use crate::kernel::score::{
    BlockGpu, ClusterGpu, GPU_MILLI, JobGpu, MAX_CANDIDATES, MAX_WEIGHT, NodeGpu, RackGpu, SiteGpu, TERM_COUNT,
    TERM_RANDOM, TERM_SCALE, inv_q16, mix, pack_frag_mix,
};
use crate::kernel::shape::job_tables;
use crate::kernel::state::{FleetState, NodeCell, NodeState, Shares};

const SITES: u32 = 5;
const CLUSTERS: u32 = 12;
const RACKS: u32 = 160;
const JOBS: u32 = 700;
const REGIONS: u32 = 3;

/// A value from a hash of (stream, index), in `0..n`.
fn draw(stream: u32, index: u32, n: u32) -> u32 {
    mix(mix(stream.wrapping_mul(0x9E37_79B1) ^ index)) % n
}

/// The fixed problem.
pub(super) fn problem() -> (Vec<JobGpu>, FleetState) {
    let sizes = [8u32, 72, 4, 72];
    let clusters: Vec<ClusterGpu> =
        (0..CLUSTERS).map(|c| ClusterGpu { free_racks: 0, online_day: 20_000 + draw(1, c, 40) }).collect();
    let sites: Vec<SiteGpu> = (0..SITES)
        .map(|s| SiteGpu {
            // Some sites have power for only a few jobs, so power binds.
            power_free_w: if s % 2 == 0 { 1_000_000_000 } else { draw(2, s, 300_000) },
            jurisdiction_bit: 1 << (s % 3),
            provider_bit: 1 << (s % 2),
            energy_term: draw(3, s, TERM_SCALE + 1),
            carbon_term: draw(4, s, TERM_SCALE + 1),
        })
        .collect();
    let mut nodes: Vec<NodeCell> = Vec::new();
    let mut node_table: Vec<NodeGpu> = Vec::new();
    let mut shares = std::collections::BTreeMap::new();
    let racks: Vec<RackGpu> = (0..RACKS)
        .map(|r| {
            let cluster = r * CLUSTERS / RACKS;
            let gpus = sizes[(cluster % 4) as usize];
            let node_gpus = gpus.min(if gpus > 8 { 4 } else { 8 });
            let hbm = [80u32, 186, 288][(cluster % 3) as usize];
            let first_node = nodes.len() as u32;
            // Nodes of 18 Grace cores and 120 GiB per GPU (GB300's trays), so that some pods ask for
            // more than some trays have left and are counted node by node.
            let (node_cpu, node_memory) = (18_000 * node_gpus, 122_880 * node_gpus);
            // Many racks of a cluster share one occupancy, so scores tie; some trays are cordoned
            // or failed, and some racks have their free GPUs scattered over trays.
            let busy = draw(5, r, 3) == 0;
            for n in 0..gpus / node_gpus {
                let used = if busy { draw(6, r * 64 + n, node_gpus + 1) } else { 0 };
                let state = match draw(23, r * 64 + n, 40) {
                    0 => NodeState::Cordoned,
                    1 => NodeState::Failed,
                    _ => NodeState::Ready,
                };
                let used = if state == NodeState::Failed { 0 } else { used };
                let mut cell = NodeCell::new(((1u32 << used) - 1) as u8, state);
                // On a third of the busy trays, the GPU after those in use is shared, some of them
                // fully.
                if busy && used < node_gpus && state != NodeState::Failed && draw(35, r * 64 + n, 3) == 0 {
                    cell.used |= 1 << used;
                    cell.shared |= 1 << used;
                    let mut milli = Shares::default();
                    milli[used as usize] = (1 + draw(36, r * 64 + n, GPU_MILLI)) as u16;
                    shares.insert(nodes.len() as u32, milli);
                }
                nodes.push(cell);
                // CPU and memory in use only next to GPUs in use, as the ledger keeps them.
                let (cpu, memory) = if used == 0 {
                    (0, 0)
                } else {
                    (draw(28, r * 64 + n, node_cpu + 1), draw(29, r * 64 + n, node_memory + 1))
                };
                node_table.push(NodeGpu {
                    free_gpus: 0,
                    free_cpu_milli: node_cpu - cpu,
                    free_memory_mib: node_memory - memory,
                    shared_free: [0; 3],
                });
            }
            RackGpu {
                free_gpus: 0,
                gpus,
                hbm_gb: hbm,
                gpu_watts: 1000 + 900 * (cluster % 2),
                site: cluster % SITES,
                cluster,
                inv_gpus_q16: inv_q16(gpus),
                inv_hbm_q16: inv_q16(hbm),
                node_gpus,
                nodes: gpus / node_gpus,
                first_node,
                // Blocks of 3 racks (numbered globally), so blocks bind for jobs kept to one.
                block: r / 3,
                summary: [0; 6],
                node_cpu_milli: node_cpu,
                node_memory_mib: node_memory,
                cpu_per_gpu: 0,
                memory_per_gpu: 0,
            }
        })
        .collect();
    let blocks = vec![BlockGpu { free_racks: 0 }; RACKS.div_ceil(3) as usize];
    let mut state = FleetState {
        racks,
        nodes,
        shares,
        node_table,
        sites,
        clusters,
        blocks,
        latency: Vec::new(),
        region_count: REGIONS,
    };
    for r in 0..state.racks.len() {
        state.recount(r);
        if state.is_whole(r) {
            state.clusters[state.racks[r].cluster as usize].free_racks += 1;
            state.blocks[state.racks[r].block as usize].free_racks += 1;
        }
    }
    let latency = (0..SITES * REGIONS).map(|i| draw(7, i, 250)).collect();
    let jobs = (0..JOBS)
        .map(|j| {
            let gpus = match draw(8, j, 10) {
                0 => 72 + draw(9, j, 200),
                1 => 72,
                _ => 1 + draw(10, j, 16),
            };
            let latency_ref_ms = 1 + draw(11, j, 300);
            let mut weights = [0u32; TERM_COUNT];
            // A fifth of the jobs have every weight 0 (every feasible rack ties); the others random
            // weights, the random term included half the time.
            if draw(12, j, 5) != 0 {
                for (t, w) in weights.iter_mut().enumerate() {
                    *w = draw(13 + t as u32, j, MAX_WEIGHT + 1);
                }
                if draw(21, j, 2) == 0 {
                    weights[TERM_RANDOM as usize] = 0;
                }
            }
            // A quarter of the jobs state pods (of 1, 2 or 4 GPUs; 8 never fits a tray of 4).
            let pod_gpus = if draw(24, j, 4) == 0 { [1u32, 2, 4, 8][draw(25, j, 4) as usize] } else { 0 };
            let pods = if pod_gpus == 0 { 0 } else { 1 + draw(26, j, 30) };
            // Half the jobs of 1-GPU pods share GPUs (some of them ten pods to a GPU and more).
            let gpu_milli = if pod_gpus == 1 && draw(37, j, 2) == 0 { 1 + draw(38, j, GPU_MILLI - 1) } else { 0 };
            let gpus = if gpu_milli != 0 {
                (pods * gpu_milli).div_ceil(GPU_MILLI)
            } else if pod_gpus == 0 {
                gpus
            } else {
                pods * pod_gpus
            };
            let shapes = job_tables(gpus, pods, pod_gpus);
            JobGpu {
                gpus,
                pods,
                pod_gpus,
                shapes,
                hbm_gb: draw(14, j, 300),
                region: draw(15, j, REGIONS),
                latency_limit_ms: if draw(16, j, 2) == 0 { MAX_LATENCY_MS } else { 1 + draw(17, j, 250) },
                latency_ref_ms,
                inv_latency_ref_q16: inv_q16(latency_ref_ms),
                jurisdiction_mask: if draw(18, j, 4) == 0 { 1 + draw(19, j, 7) } else { u32::MAX },
                provider_mask: if draw(20, j, 5) == 0 { 1 } else { u32::MAX },
                ready_day: 20_000 + draw(22, j, 40),
                block_rule: draw(27, j, 3),
                one_domain: draw(40, j, 2),
                random_salt: mix(j),
                // A third of the jobs with pods ask for CPU and memory per pod, up to a whole tray's.
                pod_cpu_milli: if pod_gpus != 0 && draw(31, j, 3) == 0 { 1 + draw(32, j, 80_000) } else { 0 },
                pod_memory_mib: if pod_gpus != 0 && draw(33, j, 3) == 0 { 1 + draw(34, j, 500_000) } else { 0 },
                gpu_milli,
                pods_per_gpu: GPU_MILLI.checked_div(gpu_milli).unwrap_or(0),
                frag_mix: pack_frag_mix(&std::array::from_fn(|bucket| u64::from(draw(30 + bucket as u32, 0, 10)))),
                weights,
            }
        })
        .collect();
    state.latency = latency;
    (jobs, state)
}

/// The first difference between the device's and the CPU's results, if any.
pub(super) fn first_difference(device: &ScoreOutput, cpu: &ScoreOutput) -> Option<String> {
    (0..cpu.feasible.len()).find_map(|job| {
        if device.feasible[job] != cpu.feasible[job] || device.candidates_of(job) != cpu.candidates_of(job) {
            Some(format!(
                "job {job}: {} feasible racks and candidates {:?} on the device, {} and {:?} on the CPU",
                device.feasible[job],
                device.candidates_of(job),
                cpu.feasible[job],
                cpu.candidates_of(job)
            ))
        } else {
            None
        }
    })
}

/// The candidate list lengths the check scores with: the longest the kernel keeps, and a short
/// one that fills and overflows.
pub(super) const LIST_LENGTHS: [usize; 2] = [MAX_CANDIDATES as usize, 3];
