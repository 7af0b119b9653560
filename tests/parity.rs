//! GPU ⇔ CPU parity: the WGSL kernel and its CPU twin give bit-identical candidate lists and
//! feasible counts on hundreds of seeded random problems of varied shapes, and identical placements.
//! Runs for real wherever wgpu finds an adapter (lavapipe in CI, with GPUPLACE_REQUIRE_GPU=1); on a
//! machine with none, each test prints why it skips the GPU side.

mod common;

use common::{Shape, at, gpu_or_skip, gpu_with_limits_or_skip, random_fleet, random_policy, random_workload};
use gpuplace::cpu::{ScoreOutput, score_batch};
use gpuplace::generate::SplitMix64;
use gpuplace::place::RoundLimits;
use gpuplace::score::JobGpu;
use gpuplace::{Backend, FleetState, GpuScorer, Policy, Scheduler};

/// The parity comparison used by every test here: Ok, or the first difference.
fn compare(gpu: &ScoreOutput, cpu: &ScoreOutput) -> Result<(), String> {
    if gpu.feasible.len() != cpu.feasible.len() || gpu.candidates.len() != cpu.candidates.len() {
        return Err(format!("sizes differ: {} vs {} jobs", gpu.feasible.len(), cpu.feasible.len()));
    }
    for job in 0..cpu.feasible.len() {
        if gpu.feasible[job] != cpu.feasible[job] {
            return Err(format!(
                "job {job}: feasible racks {} (gpu) vs {} (cpu)",
                gpu.feasible[job], cpu.feasible[job]
            ));
        }
        if gpu.candidates_of(job) != cpu.candidates_of(job) {
            return Err(format!(
                "job {job}: candidates {:?} (gpu) vs {:?} (cpu)",
                gpu.candidates_of(job),
                cpu.candidates_of(job)
            ));
        }
    }
    Ok(())
}

/// A random scoring problem: compiled jobs and a fleet state with random occupancy and power.
fn random_problem(seed: u64) -> (Vec<JobGpu>, FleetState, usize) {
    let mut rng = SplitMix64::new(seed);
    let shapes = [
        Shape::default(),
        Shape { max_sites: 1, max_clusters: 1, max_racks: 1, jobs: 7, ..Shape::default() },
        Shape { max_racks: 40, jobs: 130, ..Shape::default() },
        Shape { occupancy_percent: 100, ..Shape::default() },
        Shape { occupancy_percent: 0, ..Shape::default() },
        Shape { all_ties: true, jobs: 65, ..Shape::default() },
    ];
    let shape = shapes[(seed % shapes.len() as u64) as usize];
    let jobs_count = match seed % 50 {
        0 => 0,
        1 => 1,
        _ => shape.jobs + rng.below(70) as usize,
    };
    let fleet = random_fleet(&mut rng, shape);
    let workload = random_workload(&mut rng, &fleet, jobs_count);
    let policy = random_policy(&mut rng, shape.all_ties);
    let jobs = workload.compile(&fleet, &policy, at()).unwrap();
    let mut state = fleet.initial_state();
    // Drain some site power so that power binds for some pairs.
    for site in &mut state.sites {
        if rng.percent(30) {
            site.power_free_w = rng.below(u64::from(site.power_free_w) + 1) as u32;
        }
    }
    (jobs, state, policy.candidates as usize)
}

#[test]
fn kernel_matches_cpu_on_600_random_problems() {
    let Some(mut gpu) = gpu_or_skip("kernel_matches_cpu_on_600_random_problems") else {
        return;
    };
    let mut pairs = 0u64;
    let mut feasible = 0u64;
    for seed in 0..600 {
        let (jobs, state, k) = random_problem(seed);
        let cpu = score_batch(&jobs, &state, k);
        let out = gpu.score_batch(&jobs, &state, k).unwrap();
        if let Err(difference) = compare(&out, &cpu) {
            panic!("seed {seed} ({} jobs × {} racks, k={k}): {difference}", jobs.len(), state.racks.len());
        }
        pairs += (jobs.len() * state.racks.len()) as u64;
        feasible += cpu.feasible.iter().map(|&f| u64::from(f)).sum::<u64>();
    }
    // The problems must exercise both outcomes, or parity would be trivial.
    assert!(feasible > 0 && feasible < pairs, "{feasible} feasible of {pairs} pairs");
}

#[test]
fn kernel_matches_cpu_when_tiled_over_jobs_racks_and_grid() {
    // Limits far below any real adapter's force every tiling path: several job tiles (binding size),
    // several rack tiles merged on the device, and a 2-D dispatch grid (workgroups per dimension).
    let Some(mut gpu) = gpu_with_limits_or_skip("kernel_matches_cpu_when_tiled", |mut limits| {
        limits.max_storage_buffer_binding_size = 1024;
        limits.max_buffer_size = 4096;
        limits.max_compute_workgroups_per_dimension = 2;
        limits
    }) else {
        return;
    };
    let plan = gpuplace::gpu::TilePlan::for_limits(gpu.limits(), 8);
    assert!(plan.jobs_per_tile <= 16 && plan.racks_per_tile == 32, "{plan:?}");
    for seed in 0..60 {
        let (jobs, state, k) = random_problem(seed * 7 + 3);
        let cpu = score_batch(&jobs, &state, k);
        let out = gpu.score_batch(&jobs, &state, k).unwrap();
        compare(&out, &cpu).unwrap_or_else(|d| panic!("seed {seed}: {d}"));
    }
    // A problem larger than one tile in every direction, with tiles that do not divide it.
    let fleet = gpuplace::builtin::default_fleet();
    let workload = gpuplace::generate::generate(&fleet, 1000, 3, at());
    let jobs = workload.compile(&fleet, &Policy::default(), at()).unwrap();
    let mut state = fleet.initial_state();
    state.racks.truncate(333);
    let cpu = score_batch(&jobs, &state, 8);
    compare(&gpu.score_batch(&jobs, &state, 8).unwrap(), &cpu).unwrap();

    // Two workgroups per dimension: 256-job tiles laid out on a 2 × 2 grid, the last one partial.
    let Some(mut grid) = gpu_with_limits_or_skip("kernel_matches_cpu_when_tiled (grid)", |mut limits| {
        limits.max_storage_buffer_binding_size = 256 * size_of::<JobGpu>() as u64;
        limits.max_buffer_size = 1 << 20;
        limits.max_compute_workgroups_per_dimension = 2;
        limits
    }) else {
        return;
    };
    assert_eq!(gpuplace::gpu::TilePlan::for_limits(grid.limits(), 8).jobs_per_tile, 256);
    compare(&grid.score_batch(&jobs, &state, 8).unwrap(), &cpu).unwrap();
}

#[test]
fn negative_control_an_altered_score_is_caught() {
    // The comparison must be able to fail: score the CPU side with one weight nudged and expect a
    // reported difference on a problem where that weight matters.
    let Some(mut gpu) = gpu_or_skip("negative_control_an_altered_score_is_caught") else {
        return;
    };
    let fleet = gpuplace::builtin::default_fleet();
    let workload = gpuplace::generate::generate(&fleet, 300, 9, at());
    let jobs = workload.compile(&fleet, &Policy::default(), at()).unwrap();
    let state = fleet.initial_state();
    let out = gpu.score_batch(&jobs, &state, 8).unwrap();
    compare(&out, &score_batch(&jobs, &state, 8)).unwrap();
    let altered: Vec<JobGpu> = jobs.iter().map(|j| JobGpu { w_energy: j.w_energy + 1, ..*j }).collect();
    let difference = compare(&out, &score_batch(&altered, &state, 8));
    assert!(difference.is_err(), "an altered score went unnoticed");
    // And an altered feasibility (one more GPU needed) too.
    let altered: Vec<JobGpu> = jobs.iter().map(|j| JobGpu { hbm_gb: 288, ..*j }).collect();
    assert!(compare(&out, &score_batch(&altered, &state, 8)).is_err());
}

#[test]
fn gpu_and_cpu_placements_are_identical() {
    let Some(gpu) = gpu_or_skip("gpu_and_cpu_placements_are_identical") else {
        return;
    };
    let mut gpu_backend = Some(Backend::Gpu(Box::new(gpu)));
    for seed in 0..40 {
        let mut rng = SplitMix64::new(5000 + seed);
        let fleet = random_fleet(&mut rng, Shape { max_racks: 30, jobs: 200, ..Shape::default() });
        let workload = random_workload(&mut rng, &fleet, 200);
        let policy = random_policy(&mut rng, seed % 5 == 0);
        let limits = RoundLimits {
            max_dirty_racks: if seed % 2 == 0 { usize::MAX } else { 4 },
            max_jobs_per_round: if seed % 3 == 0 { 7 } else { 65_536 },
        };
        let mut cpu = Scheduler::with_backend(fleet.clone(), policy, Backend::Cpu).unwrap();
        cpu.set_round_limits(limits);
        let mut on_gpu = Scheduler::with_backend(fleet.clone(), policy, gpu_backend.take().unwrap()).unwrap();
        on_gpu.set_round_limits(limits);
        let expected = cpu.place(&workload, Some(at())).unwrap();
        let got = on_gpu.place(&workload, Some(at())).unwrap();
        assert!(got.backend.starts_with("gpu"), "the GPU run fell back: {:?}", got.notices);
        assert_eq!(got.decisions, expected.decisions, "seed {seed}");
        assert_eq!(got.state, expected.state);
        gpu_backend = Some(std::mem::replace(on_gpu.backend_mut(), Backend::Cpu));
    }
}

#[test]
fn builtin_fleet_20k_jobs_place_identically() {
    let Some(gpu) = gpu_or_skip("builtin_fleet_20k_jobs_place_identically") else {
        return;
    };
    let fleet = gpuplace::builtin::default_fleet();
    let workload = gpuplace::generate::generate(&fleet, 20_000, 42, at());
    let mut cpu = Scheduler::with_backend(fleet.clone(), Policy::default(), Backend::Cpu).unwrap();
    let mut on_gpu = Scheduler::with_backend(fleet.clone(), Policy::default(), Backend::Gpu(Box::new(gpu))).unwrap();
    let expected = cpu.place(&workload, Some(at())).unwrap();
    let got = on_gpu.place(&workload, Some(at())).unwrap();
    let json = |p| serde_json::to_string(&gpuplace::report::out_file(&fleet, &workload, p)).unwrap();
    assert_eq!(json(&got), json(&expected));
}

#[test]
fn device_loss_mid_run_falls_back_to_cpu_with_the_same_result() {
    let Some(mut gpu) = gpu_or_skip("device_loss_mid_run_falls_back_to_cpu") else {
        return;
    };
    // Destroy the device before the third scoring round: two rounds ran on the GPU.
    gpu.destroy_device_before_pass(2);
    let mut rng = SplitMix64::new(77);
    let fleet = random_fleet(&mut rng, Shape { max_racks: 30, ..Shape::default() });
    let workload = random_workload(&mut rng, &fleet, 300);
    let limits = RoundLimits { max_dirty_racks: 2, max_jobs_per_round: 65_536 };
    let mut on_gpu = Scheduler::with_backend(fleet.clone(), Policy::default(), Backend::Gpu(Box::new(gpu))).unwrap();
    on_gpu.set_round_limits(limits);
    let got = on_gpu.place(&workload, Some(at())).unwrap();
    let mut cpu = Scheduler::with_backend(fleet, Policy::default(), Backend::Cpu).unwrap();
    cpu.set_round_limits(limits);
    let expected = cpu.place(&workload, Some(at())).unwrap();
    assert!(got.stats.rounds > 3, "too few rounds to lose the device mid-run: {:?}", got.stats);
    assert!(got.notices.iter().any(|n| n.contains("GPU backend failed") && n.contains("CPU")), "{:?}", got.notices);
    assert!(got.backend.starts_with("cpu"));
    assert_eq!(got.decisions, expected.decisions);
    assert_eq!(got.decisions.len(), workload.jobs.len(), "a job was lost or decided twice");
}

#[test]
fn scorer_is_reused_and_grows_its_buffers() {
    let Some(mut gpu) = gpu_or_skip("scorer_is_reused_and_grows_its_buffers") else {
        return;
    };
    // Small, then large, then small again, through one scorer.
    for seed in [10u64, 2, 10, 1] {
        let (jobs, state, k) = random_problem(seed);
        compare(&gpu.score_batch(&jobs, &state, k).unwrap(), &score_batch(&jobs, &state, k)).unwrap();
    }
    let _: &GpuScorer = &gpu;
}

#[test]
fn fast_cpu_path_matches_the_plain_twin() {
    // CPU only, so it runs everywhere: the vectorized column loop of `score_batch` against the plain
    // per-rack loop `score_job` that reads like the kernel.
    for seed in 0..300 {
        let (jobs, state, k) = random_problem(seed);
        let fast = score_batch(&jobs, &state, k);
        let mut plain = ScoreOutput {
            k,
            candidates: vec![gpuplace::score::Candidate::NONE; jobs.len() * k],
            feasible: vec![0; jobs.len()],
        };
        for (i, job) in jobs.iter().enumerate() {
            plain.feasible[i] = gpuplace::cpu::score_job(job, &state, &mut plain.candidates[i * k..(i + 1) * k]);
        }
        compare(&fast, &plain).unwrap_or_else(|d| panic!("seed {seed}: {d}"));
        let pruned = gpuplace::cpu::score_batch_pruned(&jobs, &state, k);
        compare(&pruned, &plain).unwrap_or_else(|d| panic!("seed {seed}, pruned: {d}"));
    }
}
