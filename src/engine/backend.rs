//! The scoring backend: the CPU, or the GPU with the CPU as its fallback. The engine scores through
//! this one type and sees only [`ScoreError`], never a GPU type.

use crate::error::ScoreError;
#[cfg(feature = "gpu")]
use crate::gpu::{AdapterSummary, GpuScorer};
use crate::kernel::cpu::{ScoreOutput, score_batch_pruned};
use crate::kernel::score::JobGpu;
use crate::kernel::state::FleetState;

/// Which backend to score with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BackendChoice {
    /// The GPU when a hardware adapter is found and passes its self-check, else the CPU (with a
    /// notice saying why). A software adapter (lavapipe, llvmpipe, WARP) is not used: it runs the
    /// kernel on the CPU's cores about 50× slower than the CPU backend.
    #[default]
    Auto,
    /// The CPU on all cores.
    Cpu,
    /// The best adapter found, software or not; an error when there is none or it fails its
    /// self-check.
    Gpu,
}

enum Kind {
    Cpu,
    #[cfg(feature = "gpu")]
    Gpu(Box<GpuScorer>),
}

/// The largest batch in which identical jobs are looked for (hashing every job of a batch of a
/// million would cost a tenth of a second on one core, for batches that rarely repeat a job).
pub const DISTINCT_JOBS_UP_TO: usize = 4096;

/// The distinct jobs of `jobs` and, for each job, the index of its equal among them; None when
/// the batch is too large to look, or every job is distinct. The random term's seed is ignored
/// when that term weighs nothing (it is then never read).
fn distinct_jobs(jobs: &[JobGpu]) -> Option<(Vec<JobGpu>, Vec<usize>)> {
    if jobs.len() < 2 || jobs.len() > DISTINCT_JOBS_UP_TO {
        return None;
    }
    let key = |job: &JobGpu| {
        let mut key = *job;
        if key.weights[crate::kernel::score::TERM_RANDOM as usize] == 0 {
            key.random_salt = 0;
        }
        key
    };
    let mut seen: rustc_hash::FxHashMap<JobGpu, usize> =
        rustc_hash::FxHashMap::with_capacity_and_hasher(jobs.len(), Default::default());
    let mut distinct = Vec::new();
    let of: Vec<usize> = jobs
        .iter()
        .map(|job| {
            *seen.entry(key(job)).or_insert_with(|| {
                distinct.push(*job);
                distinct.len() - 1
            })
        })
        .collect();
    (distinct.len() < jobs.len()).then_some((distinct, of))
}

/// A scoring backend. Both kinds return identical results; a GPU that fails mid-run (device lost,
/// out of memory) hands over to the CPU for good, with a notice, unless fallback was turned off.
pub struct Backend {
    kind: Kind,
    fallback: bool,
    notices: Vec<String>,
    /// Time spent in [`Backend::score`], for `--timings`.
    elapsed: std::time::Duration,
    /// The distinct jobs the last [`Backend::score`] scored.
    last_scored: usize,
}

impl Backend {
    /// The CPU backend.
    pub fn cpu() -> Backend {
        Backend {
            kind: Kind::Cpu,
            fallback: true,
            notices: Vec::new(),
            elapsed: std::time::Duration::ZERO,
            last_scored: 0,
        }
    }

    /// The GPU backend on `scorer`, falling back to the CPU if the device fails.
    #[cfg(feature = "gpu")]
    pub fn gpu(scorer: GpuScorer) -> Backend {
        Backend {
            kind: Kind::Gpu(Box::new(scorer)),
            fallback: true,
            notices: Vec::new(),
            elapsed: std::time::Duration::ZERO,
            last_scored: 0,
        }
    }

    /// Opens the chosen backend. With [`BackendChoice::Auto`] the reason for using the CPU, if it
    /// is used, is in [`Backend::notices`].
    pub fn open(choice: BackendChoice) -> Result<Backend, ScoreError> {
        match choice {
            BackendChoice::Cpu => Ok(Backend::cpu()),
            BackendChoice::Gpu => Backend::open_gpu(),
            BackendChoice::Auto => Ok(Backend::open_auto()),
        }
    }

    #[cfg(feature = "gpu")]
    fn open_gpu() -> Result<Backend, ScoreError> {
        Ok(Backend::gpu(GpuScorer::open()?))
    }

    #[cfg(not(feature = "gpu"))]
    fn open_gpu() -> Result<Backend, ScoreError> {
        Err(ScoreError::NoAdapter("gpuplace was built without the `gpu` feature".into()))
    }

    #[cfg(feature = "gpu")]
    fn open_auto() -> Backend {
        let with_notice = |notice: String| {
            let mut backend = Backend::cpu();
            backend.notices.push(format!("notice: using the CPU backend: {notice}"));
            backend
        };
        let adapters = crate::gpu::adapters();
        let Some(best) = adapters.first() else {
            return with_notice(crate::gpu::no_adapter_reason());
        };
        if best.software {
            return with_notice(format!(
                "no hardware GPU adapter; the best one, {best}, is a software device that runs the kernel on the \
                 CPU about 50× slower than the CPU backend (--backend gpu uses it anyway)"
            ));
        }
        // The first hardware adapter that opens and passes its self-check; the reasons of those
        // that did not.
        let mut refused = Vec::new();
        for (index, adapter) in adapters.iter().enumerate().filter(|(_, a)| !a.software) {
            match GpuScorer::open_adapter(index) {
                Ok(scorer) => {
                    let mut backend = Backend::gpu(scorer);
                    backend.notices.extend(refused.into_iter().map(|why| format!("notice: not using {why}")));
                    return backend;
                }
                Err(e) => refused.push(format!("{adapter} ({e})")),
            }
        }
        with_notice(refused.join("; "))
    }

    #[cfg(not(feature = "gpu"))]
    fn open_auto() -> Backend {
        let mut backend = Backend::cpu();
        backend.notices.push("notice: using the CPU backend: gpuplace was built without the `gpu` feature".into());
        backend
    }

    /// The same backend, but a GPU failure is returned as an error instead of handing over to the
    /// CPU (benchmarks must not time the CPU under the GPU's name).
    pub fn without_fallback(mut self) -> Backend {
        self.fallback = false;
        self
    }

    /// True while scoring on a GPU.
    pub fn is_gpu(&self) -> bool {
        !matches!(self.kind, Kind::Cpu)
    }

    /// The adapter, while scoring on a GPU.
    #[cfg(feature = "gpu")]
    pub fn adapter(&self) -> Option<&AdapterSummary> {
        match &self.kind {
            Kind::Gpu(gpu) => Some(gpu.adapter()),
            Kind::Cpu => None,
        }
    }

    /// `cpu (N threads)` or `gpu: adapter (backend, type, driver)`.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
            #[cfg(feature = "gpu")]
            Kind::Gpu(gpu) => format!("gpu: {}", gpu.adapter()),
        }
    }

    /// Things the user should know: why the CPU is used, or that the GPU failed mid-run.
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// How many jobs the last [`Backend::score`] scored: its batch's distinct jobs.
    pub fn last_scored_jobs(&self) -> usize {
        self.last_scored
    }

    /// Time spent scoring so far.
    pub fn scoring_time(&self) -> std::time::Duration {
        self.elapsed
    }

    /// Scores `jobs` against `state`, keeping `k` (1..=16) candidates per job. On the CPU, clusters
    /// that cannot host a job are skipped, with the same result as scoring every rack.
    ///
    /// In a batch of at most [`DISTINCT_JOBS_UP_TO`] jobs, identical jobs (the replicas of one
    /// pod, common in a service's rounds) are scored once: a job's candidates depend only on the
    /// job's record and the state, so the output is the same as scoring each.
    pub fn score(&mut self, jobs: &[JobGpu], state: &FleetState, k: usize) -> Result<ScoreOutput, ScoreError> {
        let started = std::time::Instant::now();
        let distinct = distinct_jobs(jobs);
        self.last_scored = distinct.as_ref().map_or(jobs.len(), |(distinct, _)| distinct.len());
        let result = match distinct {
            Some((distinct, of)) => self.score_now(&distinct, state, k).map(|out| {
                let mut all = ScoreOutput { k, candidates: Vec::with_capacity(jobs.len() * k), feasible: Vec::new() };
                for &d in &of {
                    all.candidates.extend_from_slice(out.candidates_of(d));
                    all.feasible.push(out.feasible[d]);
                }
                all
            }),
            None => self.score_now(jobs, state, k),
        };
        self.elapsed += started.elapsed();
        result
    }

    fn score_now(&mut self, jobs: &[JobGpu], state: &FleetState, k: usize) -> Result<ScoreOutput, ScoreError> {
        match &mut self.kind {
            Kind::Cpu => Ok(score_batch_pruned(jobs, state, k)),
            #[cfg(feature = "gpu")]
            Kind::Gpu(gpu) => match gpu.score_batch(jobs, state, k) {
                Ok(out) => Ok(out),
                Err(e) if self.fallback => {
                    // Both backends score identically, so the placement goes on unchanged.
                    self.notices.push(format!(
                        "notice: GPU backend failed ({e}); continuing on the CPU backend from the last committed job"
                    ));
                    self.kind = Kind::Cpu;
                    Ok(score_batch_pruned(jobs, state, k))
                }
                Err(e) => Err(e),
            },
        }
    }
}
