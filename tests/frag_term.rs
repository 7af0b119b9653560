//! The fragmentation term of the rack kernel against a plain recomputation: for every small rack
//! (trays of 4 or 8 GPUs, each with any number of free GPUs) and every job shape, the kernel's term,
//! which sees only the rack's trays counted by free GPUs, equals the term computed tray by tray from
//! the placement the shape rule itself makes (`shape::pods_on_nodes`). A negative control shows that
//! a different rule inside the rack (the tray with the most free GPUs) changes the term.

mod common;

use common::plain_job;
use gpuplace::kernel::score::{
    FRAG_BUCKETS, FRAG_DIVISOR, JobGpu, RECIP_SHIFT, RackGpu, TERM_FRAG, TERM_SCALE, frag_share, frag_term, inv_q16,
    pack_frag_mix, terms,
};
use gpuplace::kernel::shape::{pods_on_nodes, pods_per_rack, rack_summary, unpack_shape};
use gpuplace::sim::generate::SplitMix64;

fn rack_of(free: &[u32], node_gpus: u32) -> RackGpu {
    let gpus = node_gpus * free.len() as u32;
    RackGpu {
        free_gpus: free.iter().sum(),
        gpus,
        hbm_gb: 288,
        gpu_watts: 1000,
        site: 0,
        cluster: 0,
        inv_gpus_q16: inv_q16(gpus),
        inv_hbm_q16: inv_q16(288),
        node_gpus,
        nodes: free.len() as u32,
        first_node: 0,
        block: 0,
        summary: rack_summary(free.iter().copied()),
        node_cpu_milli: 4_000_000,
        node_memory_mib: 67_108_864,
        cpu_per_gpu: 4_000_000,
        memory_per_gpu: 67_108_864,
    }
}

fn job_of(gpus: u32, pods: u32, pod_gpus: u32, frag_mix: [u32; 3]) -> JobGpu {
    let mut weights = [0; gpuplace::kernel::score::TERM_COUNT];
    weights[TERM_FRAG as usize] = 1000;
    JobGpu { frag_mix, weights, ..plain_job(gpus, pods, pod_gpus) }
}

/// The expected fragment written out tray by tray: for each bucket, its share times the free GPUs
/// of the trays with fewer free than the bucket's pod (a pod larger than a tray: a whole tray).
fn fragment(free: &[u32], node_gpus: u32, frag_mix: [u32; 3]) -> u32 {
    (0..FRAG_BUCKETS)
        .map(|bucket| {
            let need = (bucket + 1).min(node_gpus);
            frag_share(frag_mix, bucket) * free.iter().filter(|&&f| f < need).sum::<u32>()
        })
        .sum()
}

/// The term from a placement made tray by tray by `place`, for a job the rack can hold or one
/// spanning racks (its anchor does not change level: whole before, full after); None for a job the
/// rack cannot hold (the kernel's term is then never used: the pair is infeasible).
fn plain_term(free: &[u32], node_gpus: u32, job: &JobGpu, place: impl Fn(&mut [u32], [u32; 3]) -> bool) -> Option<u32> {
    let packed = job.shapes[(node_gpus - 1) as usize];
    let shape = unpack_shape(packed);
    let per_rack = pods_per_rack(packed, free.len() as u32, 0, 0, 0, 0);
    let pods = shape[0] + u32::from(shape[2] != 0);
    let mut after = free.to_vec();
    if shape[1] != 0 && pods <= per_rack && !place(&mut after, shape) {
        return None;
    }
    let shares: u32 = (0..FRAG_BUCKETS).map(|b| frag_share(job.frag_mix, b)).sum();
    let gpus = node_gpus * free.len() as u32;
    let change = fragment(&after, node_gpus, job.frag_mix) + shares * gpus - fragment(free, node_gpus, job.frag_mix);
    Some(TERM_SCALE - ((((change / FRAG_DIVISOR) * inv_q16(gpus)) >> RECIP_SHIFT) >> 4))
}

fn best_fit(free: &mut [u32], [full, size, rest]: [u32; 3]) -> bool {
    pods_on_nodes(free, full, size, rest).is_some()
}

fn worst_fit(free: &mut [u32], [full, size, rest]: [u32; 3]) -> bool {
    for gpus in std::iter::repeat_n(size, full as usize).chain((rest != 0).then_some(rest)) {
        let Some(node) = (0..free.len()).filter(|&n| free[n] >= gpus).max_by_key(|&n| (free[n], usize::MAX - n)) else {
            return false;
        };
        free[node] -= gpus;
    }
    true
}

/// Job shapes: the shorthand of 1..=12 GPUs and explicit pods of 1, 2, 3 and 4 GPUs.
fn jobs(frag_mix: [u32; 3]) -> Vec<JobGpu> {
    let mut jobs: Vec<JobGpu> = (1..=12).map(|gpus| job_of(gpus, 0, 0, frag_mix)).collect();
    for (pods, pod_gpus) in [(1, 1), (3, 1), (2, 2), (5, 1), (1, 3), (2, 3), (1, 4), (3, 4), (2, 8)] {
        jobs.push(job_of(pods * pod_gpus, pods, pod_gpus, frag_mix));
    }
    jobs
}

#[test]
fn the_term_is_the_fragment_of_the_placement_the_rule_makes() {
    let mut rng = SplitMix64::new(9);
    let mut pairs = 0u32;
    let mut distinct = std::collections::BTreeSet::new();
    let mut control_differs = 0u32;
    for node_gpus in [4u32, 8] {
        for nodes in 1..=3u32 {
            let levels = node_gpus + 1;
            for state in 0..levels.pow(nodes) {
                let free: Vec<u32> = (0..nodes).map(|n| state / levels.pow(n) % levels).collect();
                let rack = rack_of(&free, node_gpus);
                // A table of typical pods drawn at random for each rack, and one of a single size.
                let counts: [u64; 9] = std::array::from_fn(|_| rng.below(5));
                let single: [u64; 9] = std::array::from_fn(|b| u64::from(b as u64 == state as u64 % 9));
                for frag_mix in [pack_frag_mix(&counts), pack_frag_mix(&single)] {
                    for job in jobs(frag_mix) {
                        let packed = job.shapes[(node_gpus - 1) as usize];
                        let (shape, per_rack) = (unpack_shape(packed), pods_per_rack(packed, nodes, 0, 0, 0, 0));
                        let kernel = frag_term(&job, &rack, shape, per_rack);
                        let Some(plain) = plain_term(&free, node_gpus, &job, best_fit) else { continue };
                        assert_eq!(kernel, plain, "free {free:?} of {node_gpus}, job {shape:?}, mix {frag_mix:?}");
                        assert_eq!(terms(&job, &rack, &bytemuck::Zeroable::zeroed(), 0)[TERM_FRAG as usize], kernel);
                        control_differs += u32::from(plain_term(&free, node_gpus, &job, worst_fit) != Some(plain));
                        distinct.insert(kernel);
                        pairs += 1;
                    }
                }
            }
        }
    }
    assert!(pairs > 10_000, "{pairs} pairs");
    assert!(distinct.len() > 50, "the term takes {} values only", distinct.len());
    // Negative control: another rule inside the rack gives another term for many pairs.
    assert!(control_differs > pairs / 50, "worst fit differs on {control_differs} of {pairs} pairs only");
}

#[test]
fn the_term_prefers_the_tray_a_pod_fills_and_is_neutral_without_a_table() {
    // Two racks of four 4-GPU trays: one with a tray of 2 free, one with only whole trays free.
    let mix = pack_frag_mix(&[0, 0, 0, 1, 0, 0, 0, 0, 0]);
    let job = job_of(2, 0, 0, mix);
    let packed = job.shapes[3];
    let holed = rack_of(&[2, 4, 4, 0], 4);
    let whole = rack_of(&[4, 4, 4, 0], 4);
    let on_holed = frag_term(&job, &holed, unpack_shape(packed), pods_per_rack(packed, 4, 0, 0, 0, 0));
    let on_whole = frag_term(&job, &whole, unpack_shape(packed), pods_per_rack(packed, 4, 0, 0, 0, 0));
    // For typical pods of 4 GPUs, filling the tray of 2 removes a fragment; splitting a whole tray
    // makes one.
    assert!(on_holed > 500 && on_whole < 500, "{on_holed} {on_whole}");
    let neutral = job_of(2, 0, 0, [0; 3]);
    assert_eq!(frag_term(&neutral, &holed, unpack_shape(packed), pods_per_rack(packed, 4, 0, 0, 0, 0)), TERM_SCALE);
    assert_eq!(frag_term(&neutral, &whole, unpack_shape(packed), pods_per_rack(packed, 4, 0, 0, 0, 0)), TERM_SCALE);
}
