//! Criterion benches: scoring throughput (scored pairs per second) of the CPU backend on one
//! thread, on all cores, and of the GPU backend, end-to-end placement per backend, and the node
//! kernel of `gpuplace inflate` (nodes scored per second for one pod). Every case
//! first checks that the backends agree on its problem and panics if they do not.
//!
//! `cargo bench` runs them all. GPU cases print why they skip when there is no adapter, and skip
//! the largest sizes on a software adapter (lavapipe), where one sample would take minutes.

use std::hint::black_box;

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gpuplace::engine::place::{decision_order, place_batched};
use gpuplace::engine::{Backend, Ledger};
use gpuplace::gpu::GpuScorer;
use gpuplace::gpu::nodes::GpuNodeScorer;
use gpuplace::kernel::cpu::score_batch;
use gpuplace::kernel::frag::{FRAG_WEIGHT_SUM, NodeGpu, NodeParams, ShapeGpu, best_node, best_node_parallel};
use gpuplace::kernel::score::JobGpu;
use gpuplace::kernel::state::FleetState;
use gpuplace::{Day, Fleet, Policy};

/// Above this many pairs a software adapter is skipped.
const SOFTWARE_ADAPTER_MAX_PAIRS: usize = 50_000_000;

fn at() -> Day {
    Day::parse("2026-11-26").unwrap()
}

fn problem(jobs: usize, racks: usize) -> (Fleet, Vec<JobGpu>, Vec<usize>, FleetState) {
    let fleet = gpuplace::sim::bench::bench_fleet(racks).unwrap();
    let workload = gpuplace::generate::generate(&fleet, jobs, 42, at()).unwrap();
    let compiled = workload.compile(&fleet, &Policy::default(), at()).unwrap();
    let state = fleet.initial_state();
    let order = decision_order(&workload.jobs, &compiled, &fleet, &state);
    (fleet, compiled, order, state)
}

fn gpu() -> Option<GpuScorer> {
    match GpuScorer::open() {
        Ok(gpu) => {
            eprintln!("GPU backend: {}", gpu.adapter());
            Some(gpu)
        }
        Err(e) => {
            eprintln!("GPU cases skipped: {e}");
            None
        }
    }
}

fn software(gpu: &GpuScorer) -> bool {
    gpu.adapter().software
}

fn label(jobs: usize, racks: usize) -> String {
    let short = |n: usize| if n >= 1000 { format!("{}k", n / 1000) } else { n.to_string() };
    format!("{}×{}", short(jobs), short(racks))
}

fn scoring(c: &mut Criterion) {
    let mut gpu = gpu();
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let mut group = c.benchmark_group("score");
    group.sample_size(10);
    for (jobs, racks) in [(1_000, 100), (10_000, 1_000), (100_000, 4_000)] {
        let (_, compiled, _, state) = problem(jobs, racks);
        let pairs = compiled.len() * state.racks.len();
        group.throughput(Throughput::Elements(pairs as u64));
        let name = label(jobs, racks);
        let expected = score_batch(&compiled, &state, 8);
        assert_eq!(one_thread.install(|| score_batch(&compiled, &state, 8)), expected, "cpu-1t disagrees with cpu-all");
        group.bench_function(BenchmarkId::new("cpu-1t", &name), |b| {
            b.iter(|| one_thread.install(|| score_batch(black_box(&compiled), &state, 8)))
        });
        group.bench_function(BenchmarkId::new("cpu-all", &name), |b| {
            b.iter(|| score_batch(black_box(&compiled), &state, 8))
        });
        match gpu.as_mut() {
            Some(gpu) if software(gpu) && pairs > SOFTWARE_ADAPTER_MAX_PAIRS => {
                eprintln!("score/gpu/{name} skipped: software adapter, {pairs} pairs would take minutes per sample");
            }
            Some(gpu) => {
                assert_eq!(
                    gpu.score_batch(&compiled, &state, 8).unwrap(),
                    expected,
                    "GPU disagrees with CPU on {name}"
                );
                group.bench_function(BenchmarkId::new("gpu", &name), |b| {
                    b.iter(|| gpu.score_batch(black_box(&compiled), &state, 8).unwrap())
                });
            }
            None => eprintln!("score/gpu/{name} skipped: no GPU adapter"),
        }
    }
    group.finish();
}

fn placement(c: &mut Criterion) {
    let mut gpu = gpu().map(|scorer| Backend::gpu(scorer).without_fallback());
    let mut group = c.benchmark_group("place");
    group.sample_size(10);
    let fleet = Arc::new(gpuplace::builtin::default_fleet());
    for jobs in [10_000, 100_000] {
        let workload = gpuplace::generate::generate(&fleet, jobs, 42, at()).unwrap();
        let compiled = workload.compile(&fleet, &Policy::default(), at()).unwrap();
        let order = decision_order(&workload.jobs, &compiled, &fleet, &fleet.initial_state());
        let run = |backend: &mut Backend| {
            let mut ledger = Ledger::new(Arc::clone(&fleet));
            place_batched(&mut ledger, &compiled, &order, backend, 8, &mut |_, _| {}).unwrap().0
        };
        let name = format!("{}k", jobs / 1000);
        let mut cpu = Backend::cpu();
        let expected = run(&mut cpu);
        group.bench_function(BenchmarkId::new("cpu-all", &name), |b| b.iter(|| run(&mut cpu)));
        match gpu.as_mut() {
            Some(gpu)
                if gpu.adapter().is_some_and(|a| a.software)
                    && jobs * fleet.racks.len() > SOFTWARE_ADAPTER_MAX_PAIRS =>
            {
                eprintln!("place/gpu/{name} skipped: software adapter, one sample would take minutes");
            }
            Some(gpu) => {
                assert_eq!(run(gpu), expected, "GPU placement disagrees with CPU on {name}");
                group.bench_function(BenchmarkId::new("gpu", &name), |b| b.iter(|| run(gpu)));
            }
            None => eprintln!("place/gpu/{name} skipped: no GPU adapter"),
        }
    }
    group.finish();
}

/// A node problem: `count` nodes of 1–8 GPUs in use to varied depths (shares and whole GPUs), 35
/// shapes (openb's typical-shape count), and a GPU-sharing pod scored with fragmentation: the
/// costliest case per node (every GPU it could take is scored against every shape).
fn node_problem(count: usize) -> (Vec<NodeGpu>, Vec<ShapeGpu>, NodeParams) {
    let mut rng = gpuplace::sim::generate::SplitMix64::new(5);
    let mut shapes: Vec<ShapeGpu> = (0..35)
        .map(|i| {
            let gpus = [0u32, 1, 1, 1, 2, 4, 8][i % 7];
            let milli = if gpus == 1 {
                [1000, 500, 250, 300][i % 4]
            } else if gpus == 0 {
                0
            } else {
                1000
            };
            ShapeGpu { cpu: 1000 * (1 + i as u32 % 16), gpus, milli, ..Default::default() }
        })
        .collect();
    let share = FRAG_WEIGHT_SUM / 35;
    shapes.iter_mut().for_each(|s| s.weight = share);
    shapes[0].weight += FRAG_WEIGHT_SUM - share * 35;
    let nodes: Vec<NodeGpu> = (0..count)
        .map(|_| {
            let gpus = [1u32, 2, 4, 8, 8][rng.below(5) as usize];
            let mut left = [0u32; 8];
            for l in left.iter_mut().take(gpus as usize) {
                *l = [1000, 1000, 500, 0, 750][rng.below(5) as usize];
            }
            let mut n = NodeGpu {
                left,
                gpus,
                cpu_free: rng.below(96_001) as u32,
                mem_free: 1 << 19,
                model: 1,
                ready: 1,
                ..Default::default()
            };
            n.frag = gpuplace::kernel::frag::node_frag(&n.left, n.cpu_free, n.model, &shapes);
            n
        })
        .collect();
    let params = NodeParams {
        node_count: count as u32,
        shape_count: shapes.len() as u32,
        pod_cpu: 4000,
        pod_mem: 1024,
        pod_gpus: 1,
        pod_milli: 250,
        w_frag: 1000,
        w_size: 40,
        inv_cpu_q16: gpuplace::kernel::score::inv_q16(96_000),
        inv_gpu_q16: gpuplace::kernel::score::inv_q16(8_000),
        ..Default::default()
    };
    (nodes, shapes, params)
}

/// The node kernel (`gpuplace inflate`): one pod against every node, nodes per second.
fn nodes(c: &mut Criterion) {
    let mut gpu = match GpuNodeScorer::open() {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            eprintln!("node GPU cases skipped: {e}");
            None
        }
    };
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let mut group = c.benchmark_group("nodes");
    group.sample_size(10);
    for count in [1_213, 100_000] {
        let (nodes, shapes, params) = node_problem(count);
        group.throughput(Throughput::Elements(count as u64));
        let name = count.to_string();
        let expected = best_node(&nodes, &params, &shapes);
        assert_eq!(best_node_parallel(&nodes, &params, &shapes), expected, "cpu-all disagrees with cpu-1t");
        group.bench_function(BenchmarkId::new("cpu-1t", &name), |b| {
            b.iter(|| one_thread.install(|| best_node(black_box(&nodes), &params, &shapes)))
        });
        group.bench_function(BenchmarkId::new("cpu-all", &name), |b| {
            b.iter(|| best_node_parallel(black_box(&nodes), &params, &shapes))
        });
        if let Some(gpu) = gpu.as_mut() {
            gpu.load(&nodes, &shapes).unwrap();
            assert_eq!(gpu.best(&params).unwrap(), expected, "GPU disagrees with CPU on {name} nodes");
            group.bench_function(BenchmarkId::new("gpu", &name), |b| b.iter(|| gpu.best(black_box(&params)).unwrap()));
        }
    }
    group.finish();
}

criterion_group!(benches, scoring, placement, nodes);
criterion_main!(benches);
