//! Criterion benches: scoring throughput (scored pairs per second) of the CPU backend on one
//! thread, on all cores, and of the GPU backend, and end-to-end placement per backend. Every case
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
use gpuplace::kernel::cpu::score_batch;
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

criterion_group!(benches, scoring, placement);
criterion_main!(benches);
