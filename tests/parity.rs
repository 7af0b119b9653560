#![cfg(feature = "gpu")]
//! GPU ⇔ CPU parity on every adapter wgpu finds (lavapipe's Vulkan and llvmpipe's GL in CI, with
//! GPUPLACE_REQUIRE_GPU=1): the WGSL kernel and its CPU twin give bit-identical candidate lists and
//! feasible counts on hundreds of seeded random problems of varied shapes, tiled or not; every
//! adapter passes its self-check, which can fail; a device lost mid-run hands over to the CPU with
//! the same result. On a machine with no adapter each test prints why it skips the GPU side.

mod common;

use common::{Shape, at, compare, gpu_scorers, random_fleet, random_problem, random_workload};
use gpuplace::gpu::{GpuScorer, TilePlan, adapters};
use gpuplace::kernel::cpu::score_batch;
use gpuplace::kernel::score::{JobGpu, TERM_ENERGY, TERM_FRAG};
use gpuplace::sim::generate::SplitMix64;
use gpuplace::{Backend, Policy, Scheduler};

/// The binding size of the tiled test: a few racks per tile, and room for the latency table and
/// the largest rack's trays (72 trays of one GPU, 24 bytes each).
const TINY_BINDING: u64 = 2048;

#[test]
fn kernel_matches_cpu_on_600_random_problems() {
    for (name, mut gpu) in gpu_scorers("kernel_matches_cpu_on_600_random_problems") {
        for seed in 0..600 {
            let (jobs, state, k) = random_problem(seed);
            let cpu = score_batch(&jobs, &state, k);
            let out = gpu.score_batch(&jobs, &state, k).unwrap();
            if let Err(difference) = compare(&out, &cpu) {
                panic!("{name}, seed {seed} ({} jobs × {} racks, k={k}): {difference}", jobs.len(), state.racks.len());
            }
        }
    }
}

/// The problems of [`kernel_matches_cpu_on_600_random_problems`] exercise what the kernel decides,
/// or parity on them would be trivial; on the CPU alone, so that it holds on machines without a GPU.
#[test]
fn the_600_random_problems_exercise_every_branch_parity_covers() {
    let mut pairs = 0u64;
    let mut feasible = 0u64;
    let mut frag_decides = 0u32;
    let mut shares_decide = 0u32;
    let mut one_domain_decides = 0u32;
    for seed in 0..600 {
        let (jobs, state, k) = random_problem(seed);
        let cpu = score_batch(&jobs, &state, k);
        // The fragmentation term (the kernel's longest) must matter in these problems.
        let without_frag: Vec<JobGpu> = jobs
            .iter()
            .map(|j| {
                let mut j = *j;
                j.weights[TERM_FRAG as usize] = 0;
                j
            })
            .collect();
        frag_decides += u32::from(compare(&score_batch(&without_frag, &state, k), &cpu).is_err());
        // And the shared GPUs' free thousandths on trays (the node table's last words): zeroed,
        // the feasible racks of pods sharing GPUs change.
        let mut unshared = state.clone();
        unshared.node_table.iter_mut().for_each(|n| n.shared_free = [0; 3]);
        shares_decide += u32::from(score_batch(&jobs, &unshared, k).feasible != cpu.feasible);
        // And the one-NVLink-domain rule: without it, jobs that prefer one domain may span racks.
        let spanning: Vec<JobGpu> = jobs.iter().map(|j| JobGpu { one_domain: 0, ..*j }).collect();
        one_domain_decides += u32::from(score_batch(&spanning, &state, k).feasible != cpu.feasible);
        pairs += (jobs.len() * state.racks.len()) as u64;
        feasible += cpu.feasible.iter().map(|&f| u64::from(f)).sum::<u64>();
    }
    // Both outcomes, or parity would be trivial.
    assert!(feasible > 0 && feasible < pairs, "{feasible} feasible of {pairs} pairs");
    assert!(frag_decides > 100, "the fragmentation term changed {frag_decides} of 600 problems only");
    assert!(shares_decide > 20, "shared GPUs changed {shares_decide} of 600 problems only");
    assert!(one_domain_decides > 20, "the one-domain rule changed {one_domain_decides} of 600 problems only");
}

#[test]
fn kernel_matches_cpu_when_tiled_over_jobs_racks_and_grid() {
    // Limits far below any real adapter's force every tiling path: several job tiles (binding size),
    // several rack tiles merged on the device, and a 2-D dispatch grid (workgroups per dimension).
    let fleet = gpuplace::builtin::default_fleet();
    let workload = gpuplace::generate::generate(&fleet, 1000, 3, at()).unwrap();
    let big_jobs = workload.compile(&fleet, &Policy::default(), at()).unwrap();
    let mut big_state = fleet.initial_state();
    big_state.racks.truncate(333);
    // Sites', clusters' and blocks' tables are bound whole (not tiled): keep the blocks of the racks
    // kept, so that the table fits the tiny binding below.
    let blocks = big_state.racks.iter().map(|r| r.block).max().unwrap() as usize + 1;
    big_state.blocks.truncate(blocks);
    let big_cpu = score_batch(&big_jobs, &big_state, 8);
    for (index, adapter) in adapters().iter().enumerate() {
        let tiny = GpuScorer::on_adapter_with_limits(index, |mut limits| {
            limits.max_storage_buffer_binding_size = TINY_BINDING;
            limits.max_buffer_size = 4 * TINY_BINDING;
            limits.max_compute_workgroups_per_dimension = 2;
            limits
        });
        let mut gpu = tiny.unwrap_or_else(|e| panic!("{adapter}: cannot open with small limits: {e}"));
        let plan = TilePlan::for_limits(gpu.limits(), 8);
        let racks_per_binding = TINY_BINDING as usize / size_of::<gpuplace::kernel::score::RackGpu>();
        assert!(plan.jobs_per_tile <= 16 && plan.racks_per_tile == racks_per_binding, "{plan:?}");
        // Problems whose jobs ask for CPU or memory, or share GPUs, also tile the node table with
        // the racks.
        let mut with_nodes = 0;
        for seed in 0..60 {
            let (jobs, state, k) = random_problem(seed * 7 + 3);
            let cpu = score_batch(&jobs, &state, k);
            let out = gpu.score_batch(&jobs, &state, k).unwrap();
            compare(&out, &cpu).unwrap_or_else(|d| panic!("{adapter}, seed {seed}: {d}"));
            with_nodes +=
                usize::from(jobs.iter().any(JobGpu::needs_node_table) && state.racks.len() > racks_per_binding);
        }
        assert!(with_nodes >= 5, "{with_nodes} problems tiled trays over several rack tiles");
        // A problem larger than one tile in every direction, with tiles that do not divide it.
        compare(&gpu.score_batch(&big_jobs, &big_state, 8).unwrap(), &big_cpu).unwrap();

        // Two workgroups per dimension: 256-job tiles laid out on a 2 × 2 grid, the last one partial.
        let mut grid = GpuScorer::on_adapter_with_limits(index, |mut limits| {
            limits.max_storage_buffer_binding_size = 256 * size_of::<JobGpu>() as u64;
            limits.max_buffer_size = 1 << 20;
            limits.max_compute_workgroups_per_dimension = 2;
            limits
        })
        .unwrap();
        assert_eq!(TilePlan::for_limits(grid.limits(), 8).jobs_per_tile, 256);
        compare(&grid.score_batch(&big_jobs, &big_state, 8).unwrap(), &big_cpu).unwrap();
    }
}

#[test]
fn negative_control_an_altered_score_is_caught() {
    // The comparison must be able to fail: score the CPU side with one weight nudged and expect a
    // reported difference on a problem where that weight matters.
    let fleet = gpuplace::builtin::default_fleet();
    let workload = gpuplace::generate::generate(&fleet, 300, 9, at()).unwrap();
    let jobs = workload.compile(&fleet, &Policy::default(), at()).unwrap();
    let state = fleet.initial_state();
    for (name, mut gpu) in gpu_scorers("negative_control_an_altered_score_is_caught") {
        let out = gpu.score_batch(&jobs, &state, 8).unwrap();
        compare(&out, &score_batch(&jobs, &state, 8)).unwrap();
        let mut altered = jobs.clone();
        altered.iter_mut().for_each(|j| j.weights[TERM_ENERGY as usize] += 1);
        assert!(compare(&out, &score_batch(&altered, &state, 8)).is_err(), "{name}: an altered score went unnoticed");
        // And an altered feasibility (a larger HBM need).
        let altered: Vec<JobGpu> = jobs.iter().map(|j| JobGpu { hbm_gb: 288, ..*j }).collect();
        assert!(compare(&out, &score_batch(&altered, &state, 8)).is_err(), "{name}: altered feasibility unnoticed");
    }
}

#[test]
fn every_adapter_passes_its_self_check_which_can_fail() {
    for (name, mut gpu) in gpu_scorers("every_adapter_passes_its_self_check_which_can_fail") {
        // Opening it ran the self-check; against an altered CPU expectation it must fail.
        gpu.self_check_against_altered_cpu(|_| {}).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (what, alter) in [
            ("a weight", (|j: &mut JobGpu| j.weights[TERM_ENERGY as usize] += 1) as fn(&mut JobGpu)),
            ("a need", |j: &mut JobGpu| j.gpus += 1),
            ("a ready day", |j: &mut JobGpu| j.ready_day -= 3),
        ] {
            let e = gpu.self_check_against_altered_cpu(alter).expect_err(&format!("{name}: altered {what} passed"));
            assert!(e.to_string().contains("failed the self-check"), "{e}");
        }
    }
}

#[test]
fn builtin_fleet_20k_jobs_place_identically() {
    let fleet = gpuplace::builtin::default_fleet();
    let workload = gpuplace::generate::generate(&fleet, 20_000, 42, at()).unwrap();
    let mut cpu = Scheduler::with_backend(fleet.clone(), Policy::default(), Backend::cpu()).unwrap();
    let expected = cpu.place(&workload, Some(at())).unwrap();
    let json =
        |p: &gpuplace::Placement| serde_json::to_string(&gpuplace::report::out_file(&fleet, &workload, p)).unwrap();
    for (name, gpu) in gpu_scorers("builtin_fleet_20k_jobs_place_identically") {
        let mut on_gpu = Scheduler::with_backend(fleet.clone(), Policy::default(), Backend::gpu(gpu)).unwrap();
        let got = on_gpu.place(&workload, Some(at())).unwrap();
        assert!(got.backend.starts_with("gpu"), "{name} fell back: {:?}", got.notices);
        assert_eq!(json(&got), json(&expected), "{name}");
    }
}

#[test]
fn device_loss_mid_run_falls_back_to_cpu_with_the_same_result() {
    let mut rng = SplitMix64::new(77);
    let fleet = random_fleet(&mut rng, Shape { max_racks: 30, ..Shape::default() });
    let workload = random_workload(&mut rng, &fleet, 300);
    let mut cpu = Scheduler::with_backend(fleet.clone(), Policy::default(), Backend::cpu()).unwrap();
    cpu.set_round_limits(2, 65_536);
    let expected = cpu.place(&workload, Some(at())).unwrap();
    for (index, adapter) in adapters().iter().enumerate() {
        // A device of its own: destroying a shared one would fail the other tests' scorers.
        let mut gpu = GpuScorer::on_adapter_with_limits(index, |limits| limits).unwrap();
        // Destroy the device before the third scoring round: two rounds ran on the GPU.
        gpu.destroy_device_before_pass(2);
        let mut on_gpu = Scheduler::with_backend(fleet.clone(), Policy::default(), Backend::gpu(gpu)).unwrap();
        on_gpu.set_round_limits(2, 65_536);
        let got = on_gpu.place(&workload, Some(at())).unwrap();
        assert!(got.stats.rounds > 3, "{adapter}: too few rounds to lose the device mid-run: {:?}", got.stats);
        assert!(
            got.notices.iter().any(|n| n.contains("GPU backend failed") && n.contains("CPU")),
            "{adapter}: {:?}",
            got.notices
        );
        assert!(got.backend.starts_with("cpu"), "{adapter}");
        assert_eq!(got.decisions, expected.decisions, "{adapter}");
        // Without fallback the loss is an error, not a silent switch.
        let mut gpu = GpuScorer::on_adapter_with_limits(index, |limits| limits).unwrap();
        gpu.destroy_device_before_pass(0);
        let mut strict =
            Scheduler::with_backend(fleet.clone(), Policy::default(), Backend::gpu(gpu).without_fallback()).unwrap();
        let before = strict.ledger().state().clone();
        let error = strict.place(&workload, Some(at())).expect_err("a lost device without fallback");
        assert!(matches!(error, gpuplace::Error::Score(_)), "{adapter}: {error}");
        assert_eq!(strict.ledger().state(), &before, "{adapter}: a failed placement changed the ledger");
        // A loss after some rounds committed jobs: they are released again.
        let mut gpu = GpuScorer::on_adapter_with_limits(index, |limits| limits).unwrap();
        gpu.destroy_device_before_pass(2);
        let mut late =
            Scheduler::with_backend(fleet.clone(), Policy::default(), Backend::gpu(gpu).without_fallback()).unwrap();
        late.set_round_limits(2, 65_536);
        assert!(late.place(&workload, Some(at())).is_err(), "{adapter}");
        assert_eq!(late.ledger().state(), &before, "{adapter}: jobs committed before the loss were kept");
        assert_eq!(late.running(), 0);
    }
}

#[test]
fn scorer_is_reused_and_grows_its_buffers() {
    for (name, mut gpu) in gpu_scorers("scorer_is_reused_and_grows_its_buffers") {
        // Small, then large, then small again, through one scorer.
        for seed in [10u64, 2, 10, 1] {
            let (jobs, state, k) = random_problem(seed);
            compare(&gpu.score_batch(&jobs, &state, k).unwrap(), &score_batch(&jobs, &state, k))
                .unwrap_or_else(|d| panic!("{name}: {d}"));
        }
    }
}

#[test]
fn kernel_matches_cpu_past_llvmpipes_loop_limit() {
    // Mesa's llvmpipe (lavapipe, and its GL driver) silently ends a shader loop after 65,535
    // iterations of one invocation; the GPU scorer keeps software adapters' dispatches under it.
    // Each problem here has one invocation loop more than that without tiling (a loop iteration
    // per rack at least, and per tray for the second), and the one best rack is the last.
    let site = |clusters: &str| {
        format!(
            r#"{{"regions": ["r"], "rack_types": {{
                  "h8": {{"gpu_model": "H100", "gpus": 8, "hbm_gb_per_gpu": 80, "kw": 10, "nodes": 1}},
                  "gb300": {{"gpu_model": "GB300", "gpus": 72, "hbm_gb_per_gpu": 288, "kw": 140, "nodes": 18}}}},
                "sites": [{{"name": "s", "provider": "P", "country": "US", "jurisdiction": "US", "power_mw": 4000,
                  "pue": 1.2, "price_usd_per_mwh": 50, "carbon_g_per_kwh": 300, "online": "2020-01-01",
                  "latency_ms": {{"r": 10}}, "clusters": [{clusters}]}}]}}"#
        )
    };
    let servers = 70_000usize;
    let used: Vec<String> = (0..servers).map(|r| if r + 1 == servers { "4" } else { "0" }.to_string()).collect();
    let wide = gpuplace::Fleet::from_json(
        &site(&format!(r#"{{"name": "a", "rack_type": "h8", "racks": {servers}, "used_gpus": [{}]}}"#, used.join(","))),
        "<wide>",
    )
    .unwrap();
    let trays = gpuplace::Fleet::from_json(
        &site(r#"{"name": "b", "rack_type": "gb300", "racks": 3700, "nodes": [{"rack": 3699, "node": 0, "state": "cordoned"}]}"#),
        "<trays>",
    )
    .unwrap();
    let job = |extra: &str| {
        format!(
            r#"{{"id": "j", "kind": "inference", "duration_h": 1, "region": "r", "hbm_gb_per_gpu": 0, "priority": 1{extra}}}"#
        )
    };
    let problems = [
        (&wide, job(r#", "gpus": 2"#)),
        (&trays, job(r#", "gpus": 1, "pods": 1, "gpu_milli": 100"#)),
        (&trays, job(r#", "gpus": 1, "pods": 1, "cpu": 4000"#)),
    ];
    for (name, mut gpu) in gpu_scorers("kernel_matches_cpu_past_llvmpipes_loop_limit") {
        for (fleet, job) in &problems {
            let workload = gpuplace::Workload::from_json(&format!("[{job}]"), "<job>").unwrap();
            let jobs = workload.compile(fleet, &Policy::default(), at()).unwrap();
            let state = fleet.initial_state();
            let cpu = score_batch(&jobs, &state, 4);
            assert_eq!(cpu.candidates_of(0)[0].rack as usize, state.racks.len() - 1, "the last rack is the best");
            assert_eq!(cpu.feasible[0] as usize, state.racks.len());
            let out = gpu.score_batch(&jobs, &state, 4).unwrap();
            compare(&out, &cpu).unwrap_or_else(|d| panic!("{name}, {job}: {d}"));
        }
    }
}

#[test]
fn one_scorer_matches_the_cpu_as_batches_grow_and_shrink_across_tiles() {
    // A scorer keeps its buffers: one slot while batches fit one job tile, two once a batch needs
    // several (tiles alternate between them), and both afterwards. Batches of one tile, many tiles
    // (odd and even counts, so either slot ends), and one tile again, on the same scorer.
    let fleet = gpuplace::builtin::default_fleet();
    let workload = gpuplace::generate::generate(&fleet, 2000, 17, at()).unwrap();
    let jobs = workload.compile(&fleet, &Policy::default(), at()).unwrap();
    let mut state = fleet.initial_state();
    state.racks.truncate(300);
    let blocks = state.racks.iter().map(|r| r.block).max().unwrap() as usize + 1;
    state.blocks.truncate(blocks);
    for (index, adapter) in adapters().iter().enumerate() {
        let mut gpu = GpuScorer::on_adapter_with_limits(index, |mut limits| {
            // 256 jobs a tile.
            limits.max_storage_buffer_binding_size = 256 * size_of::<JobGpu>() as u64;
            limits
        })
        .unwrap_or_else(|e| panic!("{adapter}: {e}"));
        assert_eq!(TilePlan::for_limits(gpu.limits(), 8).jobs_per_tile, 256, "{adapter}");
        for count in [100, 2000, 1000, 256, 257, 1, 1999] {
            for k in [8, 3] {
                let batch = &jobs[..count];
                let cpu = score_batch(batch, &state, k);
                let out = gpu.score_batch(batch, &state, k).unwrap();
                compare(&out, &cpu).unwrap_or_else(|d| panic!("{adapter}, {count} jobs, k {k}: {d}"));
            }
        }
    }
}
