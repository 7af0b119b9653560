//! The CPU backend: scores a batch of jobs against every rack and keeps each job's best candidates,
//! exactly as the kernel in `shaders/score.wgsl` does, on all cores.

use rayon::prelude::*;

use crate::fleet::FleetState;
use crate::score::{Candidate, JobGpu, better, check, insert_candidate, score};

/// What a scoring pass returns for each job: its best `k` candidates (best first, empty slots are
/// [`Candidate::NONE`]) and how many racks were feasible in all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScoreOutput {
    /// Candidates kept per job.
    pub k: usize,
    /// `candidates[job * k .. (job + 1) * k]`, best first.
    pub candidates: Vec<Candidate>,
    /// Feasible racks per job.
    pub feasible: Vec<u32>,
}

impl ScoreOutput {
    /// The candidate list of job `i` of the batch.
    pub fn candidates_of(&self, i: usize) -> &[Candidate] {
        &self.candidates[i * self.k..(i + 1) * self.k]
    }
}

/// Jobs per parallel task: large enough to amortize scheduling, small enough to balance two cores.
const JOBS_PER_TASK: usize = 64;

/// Scores `jobs` against every rack of `state` on all cores (or on the current rayon pool).
pub fn score_batch(jobs: &[JobGpu], state: &FleetState, k: usize) -> ScoreOutput {
    let mut out = ScoreOutput {
        k,
        candidates: vec![Candidate::NONE; jobs.len() * k],
        feasible: vec![0; jobs.len()],
    };
    out.candidates
        .par_chunks_mut(JOBS_PER_TASK * k)
        .zip(out.feasible.par_chunks_mut(JOBS_PER_TASK))
        .zip(jobs.par_chunks(JOBS_PER_TASK))
        .for_each(|((top_chunk, feasible_chunk), job_chunk)| {
            for ((job, top), feasible) in job_chunk
                .iter()
                .zip(top_chunk.chunks_mut(k))
                .zip(feasible_chunk.iter_mut())
            {
                *feasible = score_job(job, state, top);
            }
        });
    out
}

/// Scores one job against every rack: fills `top` (length k, best first) and returns the number of
/// feasible racks. The loop body is the kernel's.
#[inline]
pub fn score_job(job: &JobGpu, state: &FleetState, top: &mut [Candidate]) -> u32 {
    top.fill(Candidate::NONE);
    let mut feasible = 0u32;
    let k = top.len();
    for (index, rack) in state.racks.iter().enumerate() {
        let site = &state.sites[rack.site as usize];
        let cluster = &state.clusters[rack.cluster as usize];
        let latency_ms = state.latency_of(rack, job.region);
        if check(job, rack, site, cluster, latency_ms) == 0 {
            feasible += 1;
            let candidate = Candidate {
                score: score(job, rack, site, latency_ms),
                rack: index as u32,
            };
            if better(candidate, top[k - 1]) {
                insert_candidate(top, candidate);
            }
        }
    }
    feasible
}

/// The CPU backend as a [`crate::place::Scorer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuScorer;

impl crate::place::Scorer for CpuScorer {
    fn score(
        &mut self,
        jobs: &[JobGpu],
        state: &FleetState,
        k: usize,
    ) -> Result<ScoreOutput, crate::gpu::GpuError> {
        Ok(score_batch(jobs, state, k))
    }
}
