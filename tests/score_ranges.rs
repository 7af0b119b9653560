//! The documented ranges of `src/kernel/score.rs` are enough: for any values inside them, `check`
//! and `score` never overflow (tests build with overflow checks, so an overflow panics), every term
//! is within 0..=1000 and the score within 0..=8,000,000 (8 terms of at most 1000 × 1000), with
//! any trays, CPU and memory (the node-by-node count included).

use gpuplace::kernel::limits::{
    MAX_CLUSTER_RACKS, MAX_GPU_WATTS, MAX_HBM_GB, MAX_JOB_GPUS, MAX_LATENCY_MS, MAX_NODE_CPU_MILLI, MAX_NODE_GPUS,
    MAX_NODE_MEMORY_MIB, MAX_RACK_GPUS, MAX_RACK_NODES, MAX_SITE_POWER_W,
};
use gpuplace::kernel::score::{
    BlockGpu, ClusterGpu, GPU_MILLI, JobGpu, MAX_WEIGHT, NodeGpu, RackGpu, SiteGpu, TERM_COUNT, TERM_SCALE, check,
    inv_q16, pack_frag_mix, score, terms,
};
use gpuplace::kernel::shape::{job_tables, rack_summary};
use proptest::prelude::*;

prop_compose! {
    fn job()(
        // Small jobs half the time, so that many land inside one rack (the fragmentation term's
        // placement on the rack's trays runs only then).
        gpus in prop_oneof![1..=64u32, 1..=MAX_JOB_GPUS],
        hbm_gb in 0..=MAX_HBM_GB,
        region in 0u32..4,
        latency_limit_ms in 1..=MAX_LATENCY_MS,
        latency_ref_ms in 1..=MAX_LATENCY_MS,
        masks in any::<(u32, u32)>(),
        ready_day in 0u32..3_000_000,
        weights in proptest::array::uniform::<_, TERM_COUNT>(0..=MAX_WEIGHT),
        random_salt in any::<u32>(),
        pods in prop_oneof![1..=64u32, 1..=MAX_JOB_GPUS],
        pod_gpus in 0..=MAX_NODE_GPUS,
        mix_counts in proptest::array::uniform::<_, 9>(0u64..1000),
        resources in (prop_oneof![Just(0u32), 1..=MAX_NODE_CPU_MILLI], prop_oneof![Just(0u32), 1..=MAX_NODE_MEMORY_MIB]),
        // Pods of a shared GPU a third of the time (one GPU per pod), any share.
        gpu_milli in prop_oneof![Just(0u32), Just(0u32), 1..GPU_MILLI],
    ) -> JobGpu {
        let pod_gpus = if gpu_milli != 0 { 1 } else { pod_gpus };
        let gpus = if gpu_milli != 0 { (pods * gpu_milli).div_ceil(GPU_MILLI) } else { gpus };
        let shapes = job_tables(gpus, pods, pod_gpus);
        JobGpu {
            gpus, pods, pod_gpus, shapes, hbm_gb, region, latency_limit_ms, latency_ref_ms,
            inv_latency_ref_q16: inv_q16(latency_ref_ms),
            jurisdiction_mask: masks.0, provider_mask: masks.1, ready_day, random_salt, block_rule: random_salt % 3,
            one_domain: (random_salt >> 2) & 1,
            frag_mix: pack_frag_mix(&mix_counts),
            pod_cpu_milli: resources.0, pod_memory_mib: resources.1,
            gpu_milli, pods_per_gpu: GPU_MILLI.checked_div(gpu_milli).unwrap_or(0), weights,
        }
    }
}

/// Racks of 1..=8 GPUs per node and as many nodes as the limits allow, each node with any number of
/// free GPUs (0 for cordoned and failed ones too) and any CPU and memory free up to the node's (any
/// up to the limits), with the node table the kernel reads for them.
fn rack() -> impl Strategy<Value = (RackGpu, Vec<NodeGpu>)> {
    (1..=MAX_NODE_GPUS)
        .prop_flat_map(|node_gpus| {
            let most_nodes = MAX_RACK_NODES.min(MAX_RACK_GPUS / node_gpus) as usize;
            // Each node: free GPUs, free CPU and memory, and its other GPUs' free thousandths when
            // shared (0..=999 each).
            let node = (0..=node_gpus, any::<u32>(), any::<u32>(), proptest::array::uniform8(0..GPU_MILLI));
            (Just(node_gpus), proptest::collection::vec(node, 1..=most_nodes))
        })
        .prop_flat_map(|(node_gpus, free)| {
            (
                Just(node_gpus),
                Just(free),
                any::<u32>(),
                1..=MAX_HBM_GB,
                1..=MAX_GPU_WATTS,
                (1..=MAX_NODE_CPU_MILLI, 1..=MAX_NODE_MEMORY_MIB),
            )
        })
        .prop_map(|(node_gpus, free, cluster, hbm_gb, gpu_watts, (node_cpu, node_memory))| {
            let nodes = free.len() as u32;
            let gpus = nodes * node_gpus;
            let table: Vec<NodeGpu> = free
                .iter()
                .map(|&(f, cpu, memory, shared)| {
                    let mut shared_free = [0u32; 3];
                    for (gpu, milli) in shared.iter().enumerate().skip(f as usize).take((node_gpus - f) as usize) {
                        shared_free[gpu / 3] |= milli << (10 * (gpu % 3));
                    }
                    NodeGpu {
                        free_gpus: f,
                        free_cpu_milli: cpu % (node_cpu + 1),
                        free_memory_mib: memory % (node_memory + 1),
                        shared_free,
                    }
                })
                .collect();
            let per_gpu = |field: fn(&NodeGpu) -> u32, most: u32| {
                table.iter().filter(|n| n.free_gpus != 0).map(|n| field(n) / n.free_gpus).min().unwrap_or(most)
            };
            let rack = RackGpu {
                free_gpus: free.iter().map(|n| n.0).sum(),
                gpus,
                hbm_gb,
                gpu_watts,
                site: 0,
                cluster,
                inv_gpus_q16: inv_q16(gpus),
                inv_hbm_q16: inv_q16(hbm_gb),
                node_gpus,
                nodes,
                first_node: 0,
                block: 0,
                summary: rack_summary(free.iter().map(|n| n.0)),
                node_cpu_milli: node_cpu,
                node_memory_mib: node_memory,
                cpu_per_gpu: per_gpu(|n| n.free_cpu_milli, MAX_NODE_CPU_MILLI),
                memory_per_gpu: per_gpu(|n| n.free_memory_mib, MAX_NODE_MEMORY_MIB),
            };
            (rack, table)
        })
}

prop_compose! {
    fn site()(power_free_w in 0u32..=MAX_SITE_POWER_W, bits in (0u32..32, 0u32..32), energy_term in 0..=TERM_SCALE, carbon_term in 0..=TERM_SCALE) -> SiteGpu {
        SiteGpu { power_free_w, jurisdiction_bit: 1 << bits.0, provider_bit: 1 << bits.1, energy_term, carbon_term }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]
    #[test]
    fn no_overflow_and_terms_in_range(
        job in job(),
        (rack, nodes) in rack(),
        site in site(),
        free_racks in 0..=MAX_CLUSTER_RACKS,
        online_day in 0u32..3_000_000,
        latency_ms in 0..=MAX_LATENCY_MS,
    ) {
        let cluster = ClusterGpu { free_racks, online_day };
        let block = BlockGpu { free_racks: free_racks / 2 };
        let _ = check(&job, &rack, &site, &cluster, &block, latency_ms, &nodes);
        for term in terms(&job, &rack, &site, latency_ms) {
            prop_assert!(term <= TERM_SCALE);
        }
        prop_assert!(score(&job, &rack, &site, latency_ms) <= TERM_COUNT as u32 * MAX_WEIGHT * TERM_SCALE);
    }
}

#[test]
fn extremes_do_not_overflow() {
    let shapes = job_tables(MAX_JOB_GPUS, MAX_JOB_GPUS, 1);
    let job = JobGpu {
        gpus: MAX_JOB_GPUS,
        pods: MAX_JOB_GPUS,
        pod_gpus: 1,
        shapes,
        hbm_gb: 0,
        region: 0,
        latency_limit_ms: MAX_LATENCY_MS,
        latency_ref_ms: MAX_LATENCY_MS,
        inv_latency_ref_q16: inv_q16(MAX_LATENCY_MS),
        jurisdiction_mask: u32::MAX,
        provider_mask: u32::MAX,
        ready_day: 0,
        random_salt: u32::MAX,
        block_rule: 1,
        one_domain: 1,
        frag_mix: pack_frag_mix(&[1, 0, 0, 0, 0, 0, 0, 0, 0]),
        pod_cpu_milli: 1,
        pod_memory_mib: 1,
        gpu_milli: 0,
        pods_per_gpu: 0,
        weights: [MAX_WEIGHT; TERM_COUNT],
    };
    let rack = RackGpu {
        free_gpus: MAX_RACK_GPUS,
        gpus: MAX_RACK_GPUS,
        hbm_gb: MAX_HBM_GB,
        gpu_watts: MAX_GPU_WATTS,
        site: 0,
        cluster: 0,
        inv_gpus_q16: inv_q16(MAX_RACK_GPUS),
        inv_hbm_q16: inv_q16(MAX_HBM_GB),
        // The most GPUs a rack may have, on as few trays as may hold them (at most 255 trays).
        node_gpus: 8,
        nodes: MAX_RACK_GPUS / 8,
        first_node: 0,
        block: 0,
        summary: rack_summary(std::iter::repeat_n(8, (MAX_RACK_GPUS / 8) as usize)),
        node_cpu_milli: MAX_NODE_CPU_MILLI,
        node_memory_mib: MAX_NODE_MEMORY_MIB,
        // Every pod asking for CPU is counted node by node (1 > 8 × 0).
        cpu_per_gpu: 0,
        memory_per_gpu: 0,
    };
    let nodes = vec![
        NodeGpu {
            free_gpus: 8,
            free_cpu_milli: MAX_NODE_CPU_MILLI,
            free_memory_mib: MAX_NODE_MEMORY_MIB,
            shared_free: [0; 3]
        };
        128
    ];
    let site = SiteGpu {
        power_free_w: MAX_SITE_POWER_W,
        jurisdiction_bit: 1,
        provider_bit: 1,
        energy_term: 1000,
        carbon_term: 1000,
    };
    let cluster = ClusterGpu { free_racks: MAX_CLUSTER_RACKS, online_day: 0 };
    assert_eq!(
        check(&job, &rack, &site, &cluster, &BlockGpu { free_racks: MAX_CLUSTER_RACKS }, 0, &nodes)
            & gpuplace::kernel::score::REJECT_POWER,
        gpuplace::kernel::score::REJECT_POWER
    );
    let s = score(&job, &rack, &site, 0);
    assert!(s <= 8_000_000, "{s}");
    // The largest jobs one rack holds, which the fragmentation term places on its trays.
    for (gpus, pods, pod_gpus) in [(MAX_RACK_GPUS, MAX_RACK_GPUS, 1), (MAX_RACK_GPUS, 128, 8), (MAX_RACK_GPUS, 0, 0)] {
        let job = JobGpu { gpus, pods, pod_gpus, shapes: job_tables(gpus, pods, pod_gpus), ..job };
        assert_eq!(check(&job, &rack, &site, &cluster, &BlockGpu { free_racks: 0 }, 0, &nodes) & 1, 0, "fits one rack");
        for term in terms(&job, &rack, &site, 0) {
            assert!(term <= TERM_SCALE);
        }
        assert!(score(&job, &rack, &site, 0) <= 8_000_000);
    }
    // Pods of the smallest share: a thousand to a GPU, every tray's GPUs shared with 999 left (the
    // most pods a tray holds), and as many pods and whole racks as there may be.
    let shared_nodes = vec![
        NodeGpu {
            free_gpus: 0,
            free_cpu_milli: MAX_NODE_CPU_MILLI,
            free_memory_mib: MAX_NODE_MEMORY_MIB,
            shared_free: [999 | 999 << 10 | 999 << 20; 3],
        };
        128
    ];
    for (free_gpus, table) in [(MAX_RACK_GPUS, &nodes), (0, &shared_nodes)] {
        let job = JobGpu {
            gpus: MAX_JOB_GPUS.div_ceil(1000),
            pods: MAX_JOB_GPUS,
            pod_gpus: 1,
            shapes: job_tables(MAX_JOB_GPUS.div_ceil(1000), MAX_JOB_GPUS, 1),
            pod_cpu_milli: 0,
            pod_memory_mib: 0,
            gpu_milli: 1,
            pods_per_gpu: GPU_MILLI,
            ..job
        };
        let rack = RackGpu { free_gpus, summary: rack_summary(std::iter::repeat_n(free_gpus / 128, 128)), ..rack };
        let cluster = ClusterGpu { free_racks: MAX_CLUSTER_RACKS, online_day: 0 };
        let _ = check(&job, &rack, &site, &cluster, &BlockGpu { free_racks: MAX_CLUSTER_RACKS }, 0, table);
        for term in terms(&job, &rack, &site, 0) {
            assert!(term <= TERM_SCALE);
        }
        assert!(score(&job, &rack, &site, 0) <= 8_000_000);
    }
}
