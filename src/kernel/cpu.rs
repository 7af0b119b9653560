//! The CPU scorer: scores a batch of jobs against every rack and keeps each job's best candidates,
//! exactly as the kernel in `shaders/score.wgsl` does, on all cores.

use rayon::prelude::*;

use crate::kernel::score::{
    BlockGpu, Candidate, ClusterGpu, JobGpu, NO_RACK, REJECT_GPUS, RackGpu, SiteGpu, TERM_FRAG, better, check,
    check_of, frag_score, insert_candidate, score, score_without_frag,
};
use crate::kernel::shape::cluster_has_room;
use crate::kernel::state::FleetState;

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
/// Racks scored per block before the candidate pass; the block's keys stay in L1.
const BLOCK: usize = 512;

/// The fleet state laid out one array per field, with each rack's site and cluster fields and its
/// latency to every region the batch's jobs come from copied beside it, so that the per-pair loop
/// reads only contiguous memory (no gathers) and the compiler can vectorize it. Built once per
/// scoring pass.
#[derive(Debug, Clone, Default)]
struct RackColumns {
    free_gpus: Vec<u32>,
    gpus: Vec<u32>,
    hbm_gb: Vec<u32>,
    gpu_watts: Vec<u32>,
    inv_gpus_q16: Vec<u32>,
    inv_hbm_q16: Vec<u32>,
    node_gpus: Vec<u32>,
    nodes: Vec<u32>,
    summary: [Vec<u32>; 6],
    cluster: Vec<u32>,
    power_free_w: Vec<u32>,
    jurisdiction_bit: Vec<u32>,
    provider_bit: Vec<u32>,
    energy_term: Vec<u32>,
    carbon_term: Vec<u32>,
    free_racks: Vec<u32>,
    block_free_racks: Vec<u32>,
    online_day: Vec<u32>,
    /// `latency[region][rack]`; empty for regions no job of the batch comes from.
    latency: Vec<Vec<u32>>,
    /// Maximal runs of consecutive racks of one cluster, with their largest free-GPU count.
    runs: Vec<ClusterRun>,
}

/// Consecutive racks of one cluster.
#[derive(Debug, Clone, Copy, Default)]
struct ClusterRun {
    start: usize,
    end: usize,
    max_free: u32,
}

impl RackColumns {
    /// Lays out `state` by columns, with latency columns for the regions of `jobs`.
    fn new(state: &FleetState, jobs: &[JobGpu]) -> Self {
        let mut used_regions = vec![false; state.region_count as usize];
        for job in jobs {
            used_regions[job.region as usize] = true;
        }
        let column = |f: &dyn Fn(&RackGpu) -> u32| state.racks.iter().map(f).collect::<Vec<u32>>();
        let site = |r: &RackGpu| &state.sites[r.site as usize];
        let cluster = |r: &RackGpu| &state.clusters[r.cluster as usize];
        RackColumns {
            free_gpus: column(&|r| r.free_gpus),
            gpus: column(&|r| r.gpus),
            hbm_gb: column(&|r| r.hbm_gb),
            gpu_watts: column(&|r| r.gpu_watts),
            inv_gpus_q16: column(&|r| r.inv_gpus_q16),
            inv_hbm_q16: column(&|r| r.inv_hbm_q16),
            node_gpus: column(&|r| r.node_gpus),
            nodes: column(&|r| r.nodes),
            summary: std::array::from_fn(|word| column(&|r| r.summary[word])),
            cluster: column(&|r| r.cluster),
            power_free_w: column(&|r| site(r).power_free_w),
            jurisdiction_bit: column(&|r| site(r).jurisdiction_bit),
            provider_bit: column(&|r| site(r).provider_bit),
            energy_term: column(&|r| site(r).energy_term),
            carbon_term: column(&|r| site(r).carbon_term),
            free_racks: column(&|r| cluster(r).free_racks),
            block_free_racks: column(&|r| state.blocks[r.block as usize].free_racks),
            online_day: column(&|r| cluster(r).online_day),
            latency: (0..state.region_count)
                .map(
                    |region| {
                        if used_regions[region as usize] {
                            column(&|r| state.latency_of(r, region))
                        } else {
                            Vec::new()
                        }
                    },
                )
                .collect(),
            runs: cluster_runs(state),
        }
    }

    fn rack(&self, i: usize) -> RackGpu {
        RackGpu {
            free_gpus: self.free_gpus[i],
            gpus: self.gpus[i],
            hbm_gb: self.hbm_gb[i],
            gpu_watts: self.gpu_watts[i],
            site: 0,
            cluster: self.cluster[i],
            inv_gpus_q16: self.inv_gpus_q16[i],
            inv_hbm_q16: self.inv_hbm_q16[i],
            node_gpus: self.node_gpus[i],
            nodes: self.nodes[i],
            first_node: 0,
            block: 0,
            summary: std::array::from_fn(|word| self.summary[word][i]),
            // Read only for jobs that ask for CPU or memory, which this layout does not score.
            node_cpu_milli: 0,
            node_memory_mib: 0,
            cpu_per_gpu: 0,
            memory_per_gpu: 0,
        }
    }

    fn site(&self, i: usize) -> SiteGpu {
        SiteGpu {
            power_free_w: self.power_free_w[i],
            jurisdiction_bit: self.jurisdiction_bit[i],
            provider_bit: self.provider_bit[i],
            energy_term: self.energy_term[i],
            carbon_term: self.carbon_term[i],
        }
    }

    fn cluster(&self, i: usize) -> ClusterGpu {
        ClusterGpu { free_racks: self.free_racks[i], online_day: self.online_day[i] }
    }

    fn block(&self, i: usize) -> BlockGpu {
        BlockGpu { free_racks: self.block_free_racks[i] }
    }
}

/// Maximal runs of consecutive racks with the same cluster (a fleet's clusters are contiguous, so one
/// run per cluster; a hand-built state may split them, which only makes more runs).
fn cluster_runs(state: &FleetState) -> Vec<ClusterRun> {
    let mut runs: Vec<ClusterRun> = Vec::new();
    for (i, rack) in state.racks.iter().enumerate() {
        match runs.last_mut() {
            Some(run) if state.racks[run.start].cluster == rack.cluster => {
                run.end = i + 1;
                run.max_free = run.max_free.max(rack.free_gpus);
            }
            _ => runs.push(ClusterRun { start: i, end: i + 1, max_free: rack.free_gpus }),
        }
    }
    runs
}

/// Scores `jobs` against every rack of `state` on all cores (or on the current rayon pool): every
/// pair is evaluated, as the kernel does. This is what scoring benchmarks time.
pub fn score_batch(jobs: &[JobGpu], state: &FleetState, k: usize) -> ScoreOutput {
    score_batch_with(jobs, state, k, false)
}

/// Like [`score_batch`], with the same output, but skips whole clusters that cannot host a job:
/// those failing a constraint that is the same for all their racks (HBM, jurisdiction, provider,
/// latency, power, online date) and those without the free GPUs (or fully free racks) it needs.
/// The CPU backend of the placement engine uses this.
pub fn score_batch_pruned(jobs: &[JobGpu], state: &FleetState, k: usize) -> ScoreOutput {
    score_batch_with(jobs, state, k, true)
}

fn score_batch_with(jobs: &[JobGpu], state: &FleetState, k: usize, prune: bool) -> ScoreOutput {
    let columns = RackColumns::new(state, jobs);
    let mut out = ScoreOutput { k, candidates: vec![Candidate::NONE; jobs.len() * k], feasible: vec![0; jobs.len()] };
    let chunk = |((top_chunk, feasible_chunk), job_chunk): ((&mut [Candidate], &mut [u32]), &[JobGpu])| {
        for ((job, top), feasible) in job_chunk.iter().zip(top_chunk.chunks_mut(k)).zip(feasible_chunk.iter_mut()) {
            // A job asking for CPU or memory, or sharing GPUs, may need its racks' nodes
            // counted one by one, which the columns do not hold: it is scored rack by rack.
            *feasible = if job.needs_node_table() {
                if prune { score_job_pruned(job, state, &columns.runs, top) } else { score_job(job, state, top) }
            } else {
                score_job_columns(job, &columns, top, prune)
            };
        }
    };
    if jobs.len() <= JOBS_PER_TASK {
        // One task: run it here. Handing it to the pool and waiting costs more than it scores
        // for the few jobs of a service's round.
        chunk(((&mut out.candidates, &mut out.feasible), jobs));
    } else {
        out.candidates
            .par_chunks_mut(JOBS_PER_TASK * k)
            .zip(out.feasible.par_chunks_mut(JOBS_PER_TASK))
            .zip(jobs.par_chunks(JOBS_PER_TASK))
            .for_each(chunk);
    }
    out
}

/// Scores one job against the racks laid out by columns (all of them, or with `prune` only the
/// clusters that can host it): fills `top` (length k, best first) and returns the number of
/// feasible racks. Same result as [`score_job`], faster.
fn score_job_columns(job: &JobGpu, columns: &RackColumns, top: &mut [Candidate], prune: bool) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { score_job_columns_avx2(job, columns, top, prune) };
    }
    score_job_columns_portable(job, columns, top, prune)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn score_job_columns_avx2(job: &JobGpu, columns: &RackColumns, top: &mut [Candidate], prune: bool) -> u32 {
    score_job_columns_portable(job, columns, top, prune)
}

#[inline(always)]
fn score_job_columns_portable(job: &JobGpu, c: &RackColumns, top: &mut [Candidate], prune: bool) -> u32 {
    top.fill(Candidate::NONE);
    let mut keys = [0u32; BLOCK];
    let mut feasible = 0;
    for run in &c.runs {
        let first = run.start;
        if !prune {
            feasible += score_range(job, c, run.start..run.end, top, &mut keys);
            continue;
        }
        // Every constraint but GPU capacity is the same for all racks of a cluster.
        let latency = c.latency[job.region as usize][first];
        if check_of::<true>(job, &c.rack(first), &c.site(first), &c.cluster(first), &c.block(first), latency, &[])
            & !REJECT_GPUS
            != 0
        {
            continue;
        }
        let (layout, per_rack) = job.shape_on(&c.rack(first));
        if cluster_has_room(job.gpus, layout, per_rack, run.max_free, c.free_racks[first]) {
            feasible += score_range(job, c, run.start..run.end, top, &mut keys);
        }
    }
    feasible
}

/// Scores `job` against the racks in `racks` (ascending, all of one cluster), continuing the list
/// in `top`; returns the feasible racks among them. Compiled once per instruction set it is inlined
/// into. The racks' node size and count are read once, from the first: they are the cluster's rack
/// type's, so the job's shape-table entry is the same for the whole range and the loop vectorizes.
///
/// Pass 1 (vectorized) computes a key per rack of a block: 0 when infeasible, else score + 1.
/// Pass 2 inserts the keys that beat the list's last entry. Racks arrive in increasing index, so a
/// later rack never wins a tie against a listed one: "beats the last entry" is just a larger score
/// (or any feasible rack while the list has room), exactly the kernel's `better`.
#[inline(always)]
fn score_range(
    job: &JobGpu,
    c: &RackColumns,
    racks: std::ops::Range<usize>,
    top: &mut [Candidate],
    keys: &mut [u32; BLOCK],
) -> u32 {
    let k = top.len();
    let latency = &c.latency[job.region as usize];
    let mut feasible = 0u32;
    for block_start in racks.clone().step_by(BLOCK) {
        let len = BLOCK.min(racks.end - block_start);
        let range = block_start..block_start + len;
        let (free_gpus, gpus, hbm_gb, gpu_watts) = (
            &c.free_gpus[range.clone()],
            &c.gpus[range.clone()],
            &c.hbm_gb[range.clone()],
            &c.gpu_watts[range.clone()],
        );
        let (inv_gpus_q16, inv_hbm_q16, cluster_index) =
            (&c.inv_gpus_q16[range.clone()], &c.inv_hbm_q16[range.clone()], &c.cluster[range.clone()]);
        // One cluster: one rack type.
        let (node_gpus, nodes) = (c.node_gpus[racks.start], c.nodes[racks.start]);
        let summary: [&[u32]; 6] = std::array::from_fn(|word| &c.summary[word][range.clone()]);
        let (power_free_w, jurisdiction_bit, provider_bit) =
            (&c.power_free_w[range.clone()], &c.jurisdiction_bit[range.clone()], &c.provider_bit[range.clone()]);
        let (energy_term, carbon_term) = (&c.energy_term[range.clone()], &c.carbon_term[range.clone()]);
        let (free_racks, block_free_racks, online_day, latency) = (
            &c.free_racks[range.clone()],
            &c.block_free_racks[range.clone()],
            &c.online_day[range.clone()],
            &latency[range],
        );
        let mut block_feasible = 0u32;
        for i in 0..len {
            // Views of one rack for the shared `check` and `score`; the compiler keeps them in vector
            // registers, one lane per rack.
            let rack = RackGpu {
                free_gpus: free_gpus[i],
                gpus: gpus[i],
                hbm_gb: hbm_gb[i],
                gpu_watts: gpu_watts[i],
                site: 0,
                cluster: cluster_index[i],
                inv_gpus_q16: inv_gpus_q16[i],
                inv_hbm_q16: inv_hbm_q16[i],
                node_gpus,
                nodes,
                first_node: 0,
                block: 0,
                summary: std::array::from_fn(|word| summary[word][i]),
                node_cpu_milli: 0,
                node_memory_mib: 0,
                cpu_per_gpu: 0,
                memory_per_gpu: 0,
            };
            let site = SiteGpu {
                power_free_w: power_free_w[i],
                jurisdiction_bit: jurisdiction_bit[i],
                provider_bit: provider_bit[i],
                energy_term: energy_term[i],
                carbon_term: carbon_term[i],
            };
            let cluster = ClusterGpu { free_racks: free_racks[i], online_day: online_day[i] };
            let block = BlockGpu { free_racks: block_free_racks[i] };
            let ok = check_of::<true>(job, &rack, &site, &cluster, &block, latency[i], &[]) == 0;
            let key = score_without_frag(job, &rack, &site, latency[i]) + 1;
            keys[i] = if ok { key } else { 0 };
            block_feasible += u32::from(ok);
        }
        feasible += block_feasible;
        if block_feasible == 0 {
            continue;
        }
        // The fragmentation term, for the feasible racks only, outside the vectorized loop.
        if job.weights[TERM_FRAG as usize] != 0 {
            for (i, key) in keys[..len].iter_mut().enumerate() {
                if *key != 0 {
                    *key += frag_score(job, &c.rack(block_start + i));
                }
            }
        }
        let mut threshold = if top[k - 1].rack == NO_RACK { 0 } else { top[k - 1].score + 1 };
        for (i, &key) in keys[..len].iter().enumerate() {
            if key > threshold {
                insert_candidate(top, Candidate { score: key - 1, rack: (block_start + i) as u32 });
                if top[k - 1].rack != NO_RACK {
                    threshold = top[k - 1].score + 1;
                }
            }
        }
    }
    feasible
}

/// [`score_job`], skipping whole clusters that cannot host the job, as the pruned columns path
/// does: the result is the same (a skipped rack is infeasible).
fn score_job_pruned(job: &JobGpu, state: &FleetState, runs: &[ClusterRun], top: &mut [Candidate]) -> u32 {
    top.fill(Candidate::NONE);
    let mut feasible = 0u32;
    let k = top.len();
    for run in runs {
        let first = &state.racks[run.start];
        if state.check(job, run.start) & !REJECT_GPUS != 0 {
            continue;
        }
        let (layout, per_rack) = job.shape_on(first);
        // Pods of a shared GPU may fit a cluster's shared GPUs with none free.
        let max_free = if job.shares_gpus() { u32::MAX } else { run.max_free };
        if !cluster_has_room(job.gpus, layout, per_rack, max_free, state.clusters[first.cluster as usize].free_racks) {
            continue;
        }
        for index in run.start..run.end {
            if state.check(job, index) == 0 {
                feasible += 1;
                let candidate = Candidate { score: state.score(job, index), rack: index as u32 };
                if better(candidate, top[k - 1]) {
                    insert_candidate(top, candidate);
                }
            }
        }
    }
    feasible
}

/// Scores one job against every rack: fills `top` (length k, best first) and returns the number of
/// feasible racks. The plain twin of the kernel's loop, used to explain and to check the fast path.
#[inline]
pub fn score_job(job: &JobGpu, state: &FleetState, top: &mut [Candidate]) -> u32 {
    top.fill(Candidate::NONE);
    let mut feasible = 0u32;
    let k = top.len();
    for (index, rack) in state.racks.iter().enumerate() {
        let site = &state.sites[rack.site as usize];
        let cluster = &state.clusters[rack.cluster as usize];
        let block = &state.blocks[rack.block as usize];
        let latency_ms = state.latency_of(rack, job.region);
        if check(job, rack, site, cluster, block, latency_ms, &state.node_table) == 0 {
            feasible += 1;
            let candidate = Candidate { score: score(job, rack, site, latency_ms), rack: index as u32 };
            if better(candidate, top[k - 1]) {
                insert_candidate(top, candidate);
            }
        }
    }
    feasible
}
