//! The node kernel (`src/kernel/frag.rs`, `shaders/frag.wgsl`) and `inflate`: FGD's fragmentation
//! by hand, the choice of GPUs inside a node, GPU ⇔ CPU parity on every adapter with its negative
//! control, the fragmentation table, the arrival sequence, bad node and pod lists, and the
//! experiment on the real openb trace (skipped when `../shared/traces` is absent).

mod common;

use gpuplace::kernel::frag::{
    FRAG_OFFSET, FRAG_WEIGHT_SUM, GPU_MILLI, NO_NODE, NodeCandidate, NodeGpu, NodeParams, ShapeGpu, accessible,
    best_node, best_node_parallel, commit_pod, fits_node, node_frag, score_node, shape_frag, take_best_fit,
};
use gpuplace::kernel::score::inv_q16;
use gpuplace::sim::generate::SplitMix64;
use gpuplace::sim::inflate::{
    Cluster, InflateConfig, InflatePreset, NodeBackend, PodReq, arrivals, inflate, read_nodes, read_pods,
    typical_shapes,
};

fn shape(cpu: u32, gpus: u32, milli: u32, weight: u32) -> ShapeGpu {
    ShapeGpu { cpu, gpus, milli, models: 0, weight, ..Default::default() }
}

fn node(left: [u32; 8], gpus: u32, cpu_free: u32) -> NodeGpu {
    NodeGpu { left, gpus, cpu_free, mem_free: 1 << 20, model: 1, ready: 1, ..Default::default() }
}

#[test]
fn fragment_of_one_shape_follows_fgd() {
    let left = [1000, 600, 300, 0, 0, 0, 0, 0];
    // A half-GPU pod fits: the GPU with 300 free is its fragment.
    assert_eq!(shape_frag(&left, 8000, 1, &shape(1000, 1, 500, 0)), 300);
    // A whole-GPU pod fits on GPU 0: 600 + 300 are fragment.
    assert_eq!(shape_frag(&left, 8000, 1, &shape(1000, 1, 1000, 0)), 900);
    // Two whole GPUs do not fit: all 1 900 idle milli-GPU are fragment.
    assert_eq!(shape_frag(&left, 8000, 1, &shape(1000, 2, 1000, 0)), 1900);
    // Not enough CPU: all of it.
    assert_eq!(shape_frag(&left, 500, 1, &shape(1000, 1, 500, 0)), 1900);
    // A CPU-only pod cannot use GPUs: all of it.
    assert_eq!(shape_frag(&left, 8000, 1, &shape(1000, 0, 0, 0)), 1900);
    // A model the node does not have: all of it.
    let typed = ShapeGpu { models: 0b10, ..shape(1000, 1, 500, 0) };
    assert_eq!(shape_frag(&left, 8000, 1, &typed), 1900);
    assert!(accessible(0, 4) && accessible(0b110, 4) && !accessible(0b10, 4));
    // The node's fragmentation weighs each shape.
    let shapes = [shape(1000, 1, 500, 40000), shape(1000, 1, 1000, 25536)];
    assert_eq!(node_frag(&left, 8000, 1, &shapes), 40000 * 300 + 25536 * 900);
    // The largest possible stays within FRAG_OFFSET.
    let all = [1000; 8];
    assert_eq!(node_frag(&all, 0, 1, &[shape(1, 1, 1, FRAG_WEIGHT_SUM)]), FRAG_OFFSET);
}

#[test]
fn gpus_inside_a_node_go_by_best_fit_or_by_fragmentation() {
    // Best fit: a 400 share goes on the GPU with the least free that holds it (500, index 2).
    let left = [1000, 800, 500, 300, 0, 0, 0, 0];
    let (after, mask) = take_best_fit(&left, 1, 400);
    assert_eq!((after, mask), ([1000, 800, 100, 300, 0, 0, 0, 0], 0b100));
    // Whole GPUs: the lowest-indexed free ones.
    let (after, mask) = take_best_fit(&[1000, 500, 1000, 1000, 0, 0, 0, 0], 2, 1000);
    assert_eq!((after, mask), ([0, 500, 0, 1000, 0, 0, 0, 0], 0b101));

    // By fragmentation: the workload is all 500-milli pods. A 500 share on the GPU with 800 would
    // leave 300 that no pod can use; on the GPU with 1000 it leaves 500, which one can.
    let shapes = [shape(100, 1, 500, FRAG_WEIGHT_SUM)];
    let mut n = node([800, 1000, 0, 0, 0, 0, 0, 0], 2, 64000);
    n.frag = node_frag(&n.left, n.cpu_free, n.model, &shapes);
    let params = NodeParams {
        node_count: 1,
        shape_count: 1,
        pod_cpu: 100,
        pod_gpus: 1,
        pod_milli: 500,
        w_frag: 1000,
        inv_cpu_q16: inv_q16(64000),
        inv_gpu_q16: inv_q16(2000),
        ..Default::default()
    };
    assert_eq!(score_node(&n, 0, &params, &shapes).gpu_mask, 0b10);
    // Best fit alone takes the tighter GPU (800).
    let pack = NodeParams { w_frag: 0, w_pack: 1000, ..params };
    assert_eq!(score_node(&n, 0, &pack, &shapes).gpu_mask, 0b01);
    // Commit applies exactly that and recomputes the node's fragmentation.
    let mut m = n;
    commit_pod(&mut m, &params, 0b10, &shapes);
    assert_eq!(m.left[..2], [800, 500]);
    assert_eq!(m.cpu_free, 64000 - 100);
    assert_eq!(m.frag, node_frag(&m.left, m.cpu_free, m.model, &shapes));
}

#[test]
fn a_pod_fits_only_where_cpu_memory_model_and_gpus_allow() {
    let params = NodeParams { pod_cpu: 4000, pod_mem: 1024, pod_gpus: 2, pod_milli: 1000, ..Default::default() };
    let ok = node([1000, 1000, 0, 0, 0, 0, 0, 0], 2, 4000);
    assert!(fits_node(&ok, &params));
    assert!(!fits_node(&NodeGpu { cpu_free: 3999, ..ok }, &params));
    assert!(!fits_node(&NodeGpu { mem_free: 1023, ..ok }, &params));
    assert!(!fits_node(&NodeGpu { ready: 0, ..ok }, &params));
    assert!(!fits_node(&NodeGpu { left: [1000, 999, 0, 0, 0, 0, 0, 0], ..ok }, &params));
    assert!(!fits_node(&ok, &NodeParams { pod_models: 0b10, ..params }));
    // A CPU-only pod goes on a node without GPUs too.
    let cpu_only = NodeParams { pod_gpus: 0, pod_milli: 0, ..params };
    assert!(fits_node(&NodeGpu { left: [0; 8], gpus: 0, model: 0, ..ok }, &cpu_only));
    // Ties between nodes go to the lowest index.
    let a = NodeCandidate { score: 5, node: 3, gpu_mask: 1, pad: 0 };
    let b = NodeCandidate { score: 5, node: 7, gpu_mask: 1, pad: 0 };
    assert!(gpuplace::kernel::frag::better_node(&a, &b) && !gpuplace::kernel::frag::better_node(&b, &a));
    assert!(gpuplace::kernel::frag::better_node(&a, &NodeCandidate::NONE));
}

/// A random node problem: nodes of mixed sizes, models, shares, CPU and readiness; a shape table;
/// a pod and weights.
fn random_node_problem(seed: u64) -> (Vec<NodeGpu>, Vec<ShapeGpu>, NodeParams) {
    let mut rng = SplitMix64::new(seed);
    let count = 1 + rng.below(300) as usize;
    let shape_count = 1 + rng.below(40) as usize;
    let mut shapes: Vec<ShapeGpu> = (0..shape_count)
        .map(|_| {
            let gpus = [0u32, 1, 1, 1, 2, 4, 8][rng.below(7) as usize];
            let milli = match gpus {
                0 => 0,
                1 => [1000, 500, 250, 100 + rng.below(900) as u32][rng.below(4) as usize],
                _ => 1000,
            };
            ShapeGpu {
                cpu: 100 + rng.below(32_000) as u32,
                gpus,
                milli,
                models: if rng.percent(20) { 1 << rng.below(3) } else { 0 },
                weight: 0,
                ..Default::default()
            }
        })
        .collect();
    // Weights summing to exactly FRAG_WEIGHT_SUM.
    let mut left_over = FRAG_WEIGHT_SUM;
    for (i, s) in shapes.iter_mut().enumerate() {
        s.weight = if i + 1 == shape_count { left_over } else { rng.below(u64::from(left_over) + 1) as u32 };
        left_over -= s.weight;
    }
    let nodes: Vec<NodeGpu> = (0..count)
        .map(|_| {
            let gpus = [0u32, 1, 2, 4, 8][rng.below(5) as usize];
            let mut left = [0u32; 8];
            for l in left.iter_mut().take(gpus as usize) {
                *l = [1000, 1000, 0, rng.below(1001) as u32][rng.below(4) as usize];
            }
            let model = if gpus == 0 { 0 } else { 1 << rng.below(3) };
            let cpu_free = rng.below(64_001) as u32;
            let mut n = NodeGpu {
                left,
                gpus,
                cpu_free,
                mem_free: rng.below(1 << 19) as u32,
                model,
                ready: u32::from(!rng.percent(5)),
                ..Default::default()
            };
            n.frag = node_frag(&n.left, n.cpu_free, n.model, &shapes);
            n
        })
        .collect();
    let pod_gpus = [0u32, 1, 1, 1, 2, 4, 8][rng.below(7) as usize];
    let pod_milli = match pod_gpus {
        0 => 0,
        1 => [1000, 500, 1 + rng.below(999) as u32][rng.below(3) as usize],
        _ => 1000,
    };
    let weights =
        [[1000, 0, 0, 0], [0, 1000, 0, 0], [0, 0, 1000, 0], [0, 0, 0, 1000], [1000, 0, 0, 40]][rng.below(5) as usize];
    let params = NodeParams {
        node_count: count as u32,
        shape_count: shape_count as u32,
        pod_cpu: rng.below(16_000) as u32,
        pod_mem: rng.below(1 << 17) as u32,
        pod_gpus,
        pod_milli,
        pod_models: if rng.percent(20) { 1 << rng.below(3) } else { 0 },
        pod_seed: rng.next_u64() as u32,
        w_frag: weights[0],
        w_pack: weights[1],
        w_random: weights[2],
        w_size: weights[3],
        inv_cpu_q16: inv_q16(64_000),
        inv_gpu_q16: inv_q16(8_000),
        ..Default::default()
    };
    (nodes, shapes, params)
}

#[test]
fn parallel_cpu_search_equals_the_one_thread_twin() {
    let (mut placed, mut none) = (0, 0);
    for seed in 0..300 {
        let (nodes, shapes, params) = random_node_problem(seed);
        let one = best_node(&nodes, &params, &shapes);
        assert_eq!(best_node_parallel(&nodes, &params, &shapes), one, "seed {seed}");
        if one.node == NO_NODE { none += 1 } else { placed += 1 }
    }
    assert!(placed > 50 && none > 10, "{placed} placed, {none} not: the problems must exercise both");
}

#[cfg(feature = "gpu")]
#[test]
fn node_kernel_matches_cpu_on_every_adapter_and_its_check_can_fail() {
    use gpuplace::gpu::nodes::GpuNodeScorer;
    let found = gpuplace::gpu::adapters();
    let mut ran = 0;
    for (index, adapter) in found.iter().enumerate() {
        let mut scorer = match GpuNodeScorer::open_adapter(index) {
            Ok(scorer) => scorer,
            Err(e) if common::gpu_required() => panic!("GPUPLACE_REQUIRE_GPU=1 but {adapter} cannot be used: {e}"),
            Err(e) => {
                eprintln!("skipping the GPU side on {adapter}: {e}");
                continue;
            }
        };
        ran += 1;
        for seed in 0..150 {
            let (nodes, shapes, params) = random_node_problem(seed);
            scorer.load(&nodes, &shapes).unwrap();
            let cpu = best_node(&nodes, &params, &shapes);
            assert_eq!(scorer.best(&params).unwrap(), cpu, "{adapter}, seed {seed}");
        }
        // A node changed on the device alone is scored as changed.
        let (mut nodes, shapes, params) = random_node_problem(7);
        scorer.load(&nodes, &shapes).unwrap();
        let before = scorer.best(&params).unwrap();
        if before.node != NO_NODE {
            nodes[before.node as usize].ready = 0;
            scorer.update_node(before.node as usize, &nodes[before.node as usize]);
            assert_eq!(scorer.best(&params).unwrap(), best_node(&nodes, &params, &shapes));
        }
        // The negative control: the self-check against a CPU with altered weights must fail.
        scorer.self_check_against_altered_cpu(|_| {}).unwrap();
        assert!(scorer.self_check_against_altered_cpu(|p| p.w_pack += 1).is_err(), "{adapter}: altered weight");
        assert!(scorer.self_check_against_altered_cpu(|p| p.pod_cpu += 3000).is_err(), "{adapter}: altered pod");
        // Scoring before any nodes are loaded is an error, not a panic.
        assert!(GpuNodeScorer::open_adapter(index).unwrap().best(&NodeParams::default()).is_err());
    }
    if ran == 0 {
        assert!(!common::gpu_required(), "GPUPLACE_REQUIRE_GPU=1 but no adapter ran");
        eprintln!("skipping the GPU side: no adapter");
    }
}

fn pod(cpu: u32, gpus: u32, milli: u32) -> PodReq {
    PodReq { cpu, mem: 0, gpus, milli, models: 0, spec: 0 }
}

#[test]
fn typical_shapes_cover_95_percent_and_weigh_exactly_65536() {
    // 60 of A, 30 of B, 6 of C, 4 of D: A+B = 90% < 95%, A+B+C = 96% ≥ 95%: three shapes.
    let mut pods = Vec::new();
    pods.extend(std::iter::repeat_n(pod(1000, 1, 1000), 60));
    pods.extend(std::iter::repeat_n(pod(2000, 1, 500), 30));
    pods.extend(std::iter::repeat_n(pod(0, 0, 0), 6));
    pods.extend(std::iter::repeat_n(pod(8000, 8, 1000), 4));
    let shapes = typical_shapes(&pods);
    assert_eq!(shapes.len(), 3);
    assert_eq!(shapes.iter().map(|s| s.weight).sum::<u32>(), FRAG_WEIGHT_SUM);
    assert_eq!((shapes[0].cpu, shapes[0].milli), (1000, 1000));
    // A CPU-only pod asking for no CPU counts as 100 milli-cores, as in FGD.
    assert_eq!((shapes[2].cpu, shapes[2].gpus), (100, 0));
    // 60/96, 30/96, 6/96 of 65 536, rounded to sum exactly.
    let exact = [60.0, 30.0, 6.0].map(|c: f64| c / 96.0 * 65536.0);
    for (s, e) in shapes.iter().zip(exact) {
        assert!((f64::from(s.weight) - e).abs() < 1.0, "{} vs {e}", s.weight);
    }
}

#[test]
fn arrivals_are_the_shuffled_list_then_draws_up_to_the_target() {
    let pods: Vec<PodReq> = (0..50).map(|i| pod(1000, 1, 100 + 10 * i)).chain([pod(500, 0, 0)]).collect();
    let list_total: u64 = pods.iter().map(PodReq::request).sum();
    let target = list_total * 13 / 10;
    let order = arrivals(&pods, target, 7).unwrap();
    assert_eq!(order, arrivals(&pods, target, 7).unwrap(), "deterministic");
    assert_ne!(order, arrivals(&pods, target, 8).unwrap(), "the seed matters");
    let mut first: Vec<u32> = order[..pods.len()].to_vec();
    first.sort();
    assert_eq!(first, (0..pods.len() as u32).collect::<Vec<_>>(), "every pod once first");
    let total: u64 = order.iter().map(|&i| pods[i as usize].request()).sum();
    assert!(total <= target && total + 600 > target, "stops just short of the target: {total} of {target}");
    // A list with no GPU request is refused, not looped over.
    assert!(arrivals(&[pod(500, 0, 0)], target, 7).is_err());
    assert!(arrivals(&[], target, 7).is_err());
    // A list that asks for more than the target is cut.
    let short = arrivals(&pods, list_total / 2, 7).unwrap();
    assert!(short.len() < pods.len());
    assert!(short.iter().map(|&i| pods[i as usize].request()).sum::<u64>() <= list_total / 2);
}

#[test]
fn bad_node_and_pod_lists_name_file_line_and_field() {
    let nodes = "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,P100\nn1,32000,131072,4,V100M16\n";
    let (parsed, models) = read_nodes(nodes.as_bytes(), "nodes.csv").unwrap();
    assert_eq!((parsed.len(), models.clone()), (2, vec!["P100".to_string(), "V100M16".to_string()]));
    assert_eq!(parsed[1].left, [1000, 1000, 1000, 1000, 0, 0, 0, 0]);
    let node_errors = [
        ("sn,cpu_milli,memory_mib,gpu\nn0,1,1,1\n", "line 1", "model"),
        ("sn,cpu_milli,memory_mib,gpu,model\nn0,1,1,9,P100\n", "line 2", "gpu"),
        ("sn,cpu_milli,memory_mib,gpu,model\nn0,x,1,1,P100\n", "line 2", "cpu_milli"),
        ("sn,cpu_milli,memory_mib,gpu,model\nn0,1,-1,1,P100\n", "line 2", "memory_mib"),
        ("sn,cpu_milli,memory_mib,gpu,model\nn0,1,1,1,\n", "line 2", "model"),
        ("sn,cpu_milli,memory_mib,gpu,model\nn0,1,1,0,\n", "document", "gpu"),
    ];
    for (text, record, field) in node_errors {
        let e = read_nodes(text.as_bytes(), "nodes.csv").unwrap_err();
        assert_eq!(
            (e.source_name.as_str(), e.record.as_str(), e.field.as_str()),
            ("nodes.csv", record, field),
            "{text}"
        );
    }
    let header = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n";
    let pods =
        format!("{header}p0,1000,100,1,500,\np1,2000,0,0,0,\np2,8000,0,2,1000,V100M16|A100\np3,1,1,1,1000,A100\n");
    let (parsed, specs) = read_pods(pods.as_bytes(), "pods.csv", &models).unwrap();
    assert_eq!(parsed.len(), 4);
    assert_eq!((parsed[0].models, parsed[2].models & 0b11), (0, 0b10));
    // A model no node has marks the pod as fitting nowhere.
    assert_eq!(parsed[3].models, gpuplace::kernel::frag::UNKNOWN_MODEL);
    assert_eq!(specs.len(), 3);
    let pod_errors = [
        ("p0,1000,100,1,0,\n", "gpu_milli"),
        ("p0,1000,100,1,1001,\n", "gpu_milli"),
        ("p0,1000,100,2,500,\n", "gpu_milli"),
        ("p0,1000,100,9,1000,\n", "num_gpu"),
        ("p0,1000,100,1,1000\n", "(row)"),
    ];
    for (row, field) in pod_errors {
        let e = read_pods(format!("{header}{row}").as_bytes(), "pods.csv", &models).unwrap_err();
        assert_eq!((e.record.as_str(), e.field.as_str()), ("line 2", field), "{row}");
    }
    let e = read_pods(format!("{header}p0,1,1,0,0,\n").as_bytes(), "pods.csv", &models).unwrap_err();
    assert_eq!(e.field, "num_gpu");
}

/// The experiment end to end on a small generated cluster: the curve's shape, totals that add up,
/// and the same result on every backend.
#[test]
fn inflate_on_a_small_cluster_is_consistent_on_every_backend() {
    let mut rng = SplitMix64::new(11);
    let nodes: Vec<NodeGpu> = (0..80)
        .map(|_| {
            let gpus = [1u32, 2, 4, 8][rng.below(4) as usize];
            let mut left = [0; 8];
            left[..gpus as usize].fill(GPU_MILLI);
            NodeGpu { left, gpus, cpu_free: 8000 * gpus, mem_free: 1 << 18, model: 1, ready: 1, ..Default::default() }
        })
        .collect();
    let pods: Vec<PodReq> = (0..200)
        .map(|_| match rng.below(10) {
            0 => pod(2000, 0, 0),
            1..=5 => pod(1000 + rng.below(6000) as u32, 1, [1000, 500, 250][rng.below(3) as usize]),
            _ => pod(4000, [1, 2, 4, 8][rng.below(4) as usize], 1000),
        })
        .collect();
    let cluster = Cluster { nodes, models: vec!["X".into()], pods, specs: vec![String::new()] };
    for preset in InflatePreset::ALL {
        let config = InflateConfig { tune_permille: 1300, seed: 5, preset };
        let report = inflate(&cluster, config, &mut NodeBackend::Cpu, ("n", "p"), &mut |_, _| {}).unwrap();
        assert_eq!(report.curve.len(), 131);
        assert_eq!(report.placed_pods + report.failed_gpu_pods + report.failed_cpu_pods, report.arrived_pods);
        assert!(report.allocated_gpu_milli <= report.total_gpu_milli);
        assert!(report.allocated_gpu_milli <= report.arrived_gpu_milli);
        // Allocation only grows as pods arrive (nothing departs), so the curve never falls.
        for w in report.curve.windows(2) {
            assert!(w[1].allocated_pct >= w[0].allocated_pct - 1e-9, "{preset:?} {w:?}");
        }
        assert!(report.curve.last().unwrap().allocated_pct <= 100.0);
        assert!(report.allocated_at(100).unwrap() > 50.0, "{preset:?}");
        #[cfg(feature = "gpu")]
        for (index, adapter) in gpuplace::gpu::adapters().iter().enumerate() {
            let Ok(scorer) = gpuplace::gpu::nodes::GpuNodeScorer::open_adapter(index) else { continue };
            let mut backend = NodeBackend::Gpu(Box::new(scorer));
            let on_gpu = inflate(&cluster, config, &mut backend, ("n", "p"), &mut |_, _| {}).unwrap();
            assert_eq!(on_gpu.curve, report.curve, "{adapter}, {preset:?}");
            assert_eq!(on_gpu.allocated_gpu_milli, report.allocated_gpu_milli, "{adapter}, {preset:?}");
        }
    }
}

/// A GPU lost mid-run hands over to the CPU, and the experiment's result is the same.
#[cfg(feature = "gpu")]
#[test]
fn inflate_survives_a_device_lost_mid_run() {
    use gpuplace::gpu::nodes::GpuNodeScorer;
    let mut rng = SplitMix64::new(3);
    let nodes: Vec<NodeGpu> = (0..40)
        .map(|_| {
            let gpus = [2u32, 4, 8][rng.below(3) as usize];
            let mut left = [0; 8];
            left[..gpus as usize].fill(GPU_MILLI);
            NodeGpu { left, gpus, cpu_free: 8000 * gpus, mem_free: 1 << 18, model: 1, ready: 1, ..Default::default() }
        })
        .collect();
    let pods: Vec<PodReq> = (0..60).map(|i| pod(1000, 1 + (i % 2), if i % 3 == 0 { 500 } else { 1000 })).collect();
    let pods: Vec<PodReq> =
        pods.into_iter().map(|p| if p.gpus > 1 { PodReq { milli: 1000, ..p } } else { p }).collect();
    let cluster = Cluster { nodes, models: vec!["X".into()], pods, specs: vec![String::new()] };
    let config = InflateConfig { tune_permille: 1300, seed: 9, preset: InflatePreset::Default };
    let cpu = inflate(&cluster, config, &mut NodeBackend::Cpu, ("n", "p"), &mut |_, _| {}).unwrap();
    let Some(index) = gpuplace::gpu::adapters().iter().position(|_| true) else {
        assert!(!common::gpu_required(), "GPUPLACE_REQUIRE_GPU=1 but no adapter");
        return;
    };
    let mut scorer = GpuNodeScorer::on_own_device(index, |limits| limits).unwrap();
    scorer.destroy_device_before_pass(20);
    let mut backend = NodeBackend::Gpu(Box::new(scorer));
    let lost = inflate(&cluster, config, &mut backend, ("n", "p"), &mut |_, _| {}).unwrap();
    assert_eq!(lost.curve, cpu.curve);
    assert_eq!(lost.allocated_gpu_milli, cpu.allocated_gpu_milli);
    assert!(lost.backend.contains("then cpu after pod 20"), "{}", lost.backend);
    assert!(matches!(backend, NodeBackend::Cpu));
    // A device too small for the node table hands over before the first pod, with the same result.
    let small = GpuNodeScorer::on_own_device(index, |mut limits| {
        limits.max_storage_buffer_binding_size = 1024;
        limits
    })
    .unwrap();
    let mut backend = NodeBackend::Gpu(Box::new(small));
    let refused = inflate(&cluster, config, &mut backend, ("n", "p"), &mut |_, _| {}).unwrap();
    assert_eq!(refused.curve, cpu.curve);
    assert!(refused.backend.contains("then cpu before pod 0"), "{}", refused.backend);
}

/// The FGD experiment on the real trace reproduces the published baseline: best fit lands near the
/// published 92.86% (seed 42 published: 92.94%), FGD near 95.23% (seed 42: 95.14%), and the
/// default policy at or above FGD's published 95.2% less run-to-run spread.
#[test]
fn openb_inflation_reproduces_the_published_best_fit_and_fgd() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/traces/alibaba-gpu-v2023");
    let (nodes_path, pods_path) = (dir.join("openb_node_list_gpu_node.csv"), dir.join("openb_pod_list_default.csv"));
    if !nodes_path.exists() || !pods_path.exists() {
        eprintln!("skipping: {} is absent", dir.display());
        return;
    }
    let (nodes, models) = read_nodes(&std::fs::read(&nodes_path).unwrap(), "nodes").unwrap();
    let (pods, specs) = read_pods(&std::fs::read(&pods_path).unwrap(), "pods", &models).unwrap();
    assert_eq!((nodes.len(), nodes.iter().map(|n| n.gpus).sum::<u32>(), pods.len()), (1213, 6212, 8152));
    let cluster = Cluster { nodes, models, pods, specs };
    let at_100 = |preset| {
        let config = InflateConfig { tune_permille: 1050, seed: 42, preset };
        let report = inflate(&cluster, config, &mut NodeBackend::Cpu, ("n", "p"), &mut |_, _| {}).unwrap();
        report.allocated_at(100).unwrap()
    };
    let best_fit = at_100(InflatePreset::BestFit);
    assert!((92.3..=93.5).contains(&best_fit), "best fit {best_fit}");
    let default = at_100(InflatePreset::Default);
    assert!(default >= 94.9, "default {default}");
    assert!(default > best_fit + 1.5, "default {default} vs best fit {best_fit}");
}
