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

#[test]
fn the_backend_scores_repeated_jobs_once_with_the_same_result() {
    use gpuplace::Backend;
    use gpuplace::kernel::score::{JobGpu, TERM_RANDOM};
    let (mut weighed, mut shared) = (0, 0);
    for seed in 0..150 {
        let (jobs, state, k) = random_problem(seed);
        // Each job twice, the copy with another seed of the random term: the same job when that
        // term weighs nothing, another one when it weighs.
        let repeated: Vec<JobGpu> = jobs
            .iter()
            .flat_map(|job| {
                let mut copy = *job;
                copy.random_salt ^= 0x9E37_79B9;
                [*job, copy]
            })
            .collect();
        for (job, pair) in jobs.iter().zip(repeated.chunks(2)) {
            if job.weights[TERM_RANDOM as usize] == 0 {
                shared += 1;
            } else if compare(&score_batch(&pair[..1], &state, k), &score_batch(&pair[1..], &state, k)).is_err() {
                // The copy scores differently: scoring it as the job would be caught below.
                weighed += 1;
            }
        }
        let expected = score_batch(&repeated, &state, k);
        let got = Backend::cpu().score(&repeated, &state, k).unwrap();
        compare(&got, &expected).unwrap_or_else(|d| panic!("seed {seed}: {d}"));
    }
    // Both cases occur, so that a rule ignoring the seed when the term weighs would fail above
    // (`weighed` counts the copies that score differently from their job).
    assert!(weighed > 0 && shared > 0, "{weighed} {shared}");
}
