//! The CPU scorer's fast path (columns, SIMD, cluster pruning) against its plain twin, which reads
//! like the kernel. CPU only, so it runs in every build, with or without the `gpu` feature.

mod common;

use common::{compare, random_problem};
use gpuplace::kernel::cpu::{ScoreOutput, score_batch, score_batch_pruned, score_job};
use gpuplace::kernel::score::Candidate;

#[test]
fn fast_cpu_path_matches_the_plain_twin() {
    // CPU only, so it runs everywhere: the vectorized column loop of `score_batch` against the plain
    // per-rack loop `score_job` that reads like the kernel.
    for seed in 0..300 {
        let (jobs, state, k) = random_problem(seed);
        let fast = score_batch(&jobs, &state, k);
        let mut plain =
            ScoreOutput { k, candidates: vec![Candidate::NONE; jobs.len() * k], feasible: vec![0; jobs.len()] };
        for (i, job) in jobs.iter().enumerate() {
            plain.feasible[i] = score_job(job, &state, &mut plain.candidates[i * k..(i + 1) * k]);
        }
        compare(&fast, &plain).unwrap_or_else(|d| panic!("seed {seed}: {d}"));
        compare(&score_batch_pruned(&jobs, &state, k), &plain).unwrap_or_else(|d| panic!("seed {seed}, pruned: {d}"));
    }
}
