//! The library's front door: a [`Scheduler`] holds a fleet, a policy and a scoring backend, and
//! places workloads.

use std::time::{Duration, Instant};

use crate::cpu::ScoreOutput;
use crate::date::Day;
use crate::error::Result;
use crate::explain::{Explanation, describe_need, explain_candidates};
use crate::fleet::{Fleet, FleetState};
use crate::gpu::{GpuError, GpuScorer};
use crate::jobs::Workload;
use crate::place::{Decision, EngineStats, Outcome, RoundLimits, Scorer, decision_order, place_batched, reject_counts};
use crate::policy::Policy;
use crate::score::{JobGpu, REJECT_NAMES};

/// Which backend to score with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// The GPU when an adapter is found, else the CPU (with a notice).
    #[default]
    Auto,
    /// The CPU on all cores.
    Cpu,
    /// The GPU; an error when there is no adapter.
    Gpu,
}

/// A scoring backend.
pub enum Backend {
    /// [`crate::cpu::score_batch`] on all cores.
    Cpu,
    /// The WGSL kernel.
    Gpu(Box<GpuScorer>),
}

impl Backend {
    /// Opens the chosen backend. `Auto` falls back to the CPU and returns the reason as a notice.
    pub fn open(choice: BackendChoice) -> std::result::Result<(Backend, Option<String>), GpuError> {
        match choice {
            BackendChoice::Cpu => Ok((Backend::Cpu, None)),
            BackendChoice::Gpu => Ok((Backend::Gpu(Box::new(GpuScorer::new()?)), None)),
            BackendChoice::Auto => match GpuScorer::new() {
                Ok(gpu) => Ok((Backend::Gpu(Box::new(gpu)), None)),
                Err(e) => Ok((Backend::Cpu, Some(format!("notice: using the CPU backend ({e})")))),
            },
        }
    }

    /// `cpu (N threads)` or `gpu: adapter (backend, type, driver)`.
    pub fn describe(&self) -> String {
        match self {
            Backend::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
            Backend::Gpu(gpu) => format!("gpu: {}", gpu.adapter()),
        }
    }

    /// Scores a batch on this backend.
    pub fn score(
        &mut self,
        jobs: &[JobGpu],
        state: &FleetState,
        k: usize,
    ) -> std::result::Result<ScoreOutput, GpuError> {
        match self {
            Backend::Cpu => Ok(crate::cpu::score_batch_pruned(jobs, state, k)),
            Backend::Gpu(gpu) => gpu.score_batch(jobs, state, k),
        }
    }
}

/// Scores with the backend, and on a GPU fault switches to the CPU for good, noting why: the engine
/// never sees the fault, and since both backends score identically the result is unchanged.
struct FallbackScorer<'a> {
    backend: &'a mut Backend,
    notices: &'a mut Vec<String>,
    /// Time spent scoring, for `--timings`.
    elapsed: Duration,
}

impl Scorer for FallbackScorer<'_> {
    fn score(&mut self, jobs: &[JobGpu], state: &FleetState, k: usize) -> std::result::Result<ScoreOutput, GpuError> {
        let started = Instant::now();
        let result = match self.backend.score(jobs, state, k) {
            Ok(out) => Ok(out),
            Err(e) => {
                self.notices.push(format!(
                    "notice: GPU backend failed ({e}); continuing on the CPU backend from the last committed job"
                ));
                *self.backend = Backend::Cpu;
                self.backend.score(jobs, state, k)
            }
        };
        self.elapsed += started.elapsed();
        result
    }
}

/// Time spent in each phase of a placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timings {
    /// Validating and compiling the jobs.
    pub compile: Duration,
    /// Scoring passes on the backend (including upload and readback on the GPU).
    pub score: Duration,
    /// Host work: ordering, walking candidate lists, re-checks, commits and reasons.
    pub commit: Duration,
}

/// The result of placing a workload.
#[derive(Debug, Clone)]
pub struct Placement {
    /// One decision per job, in decision order (priority descending, then id).
    pub decisions: Vec<Decision>,
    /// The fleet's capacity after every placement.
    pub state: FleetState,
    /// The placement date used.
    pub at: Day,
    /// Engine counters.
    pub stats: EngineStats,
    /// The backend that finished the run.
    pub backend: String,
    /// Things the user should know (fallbacks).
    pub notices: Vec<String>,
    /// Time per phase.
    pub timings: Timings,
}

impl Placement {
    /// Jobs placed.
    pub fn placed_count(&self) -> usize {
        self.decisions.iter().filter(|d| matches!(d.outcome, Outcome::Placed { .. })).count()
    }
}

/// Places workloads on a fleet under a policy with a backend.
pub struct Scheduler {
    fleet: Fleet,
    policy: Policy,
    backend: Backend,
    limits: RoundLimits,
    notices: Vec<String>,
}

impl Scheduler {
    /// A scheduler with the chosen backend. With [`BackendChoice::Auto`] and no adapter, the CPU is
    /// used and [`Scheduler::notices`] says why.
    pub fn new(fleet: Fleet, policy: Policy, choice: BackendChoice) -> Result<Scheduler> {
        policy.validate("<policy>")?;
        let (backend, notice) = Backend::open(choice)?;
        Ok(Scheduler { fleet, policy, backend, limits: RoundLimits::default(), notices: notice.into_iter().collect() })
    }

    /// A scheduler with a backend already opened (e.g. a [`GpuScorer`] with custom limits).
    pub fn with_backend(fleet: Fleet, policy: Policy, backend: Backend) -> Result<Scheduler> {
        policy.validate("<policy>")?;
        Ok(Scheduler { fleet, policy, backend, limits: RoundLimits::default(), notices: Vec::new() })
    }

    /// Changes when the batched engine starts a new scoring round (tests use small limits to make
    /// many rounds).
    pub fn set_round_limits(&mut self, limits: RoundLimits) {
        self.limits = limits;
    }

    /// The fleet.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The backend in use.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Mutable access to the backend (benchmarks and tests).
    pub fn backend_mut(&mut self) -> &mut Backend {
        &mut self.backend
    }

    /// Notices gathered when opening the backend.
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// The placement date: `at`, else the fleet's `as_of`, else today.
    pub fn placement_date(&self, at: Option<Day>) -> Day {
        at.or(self.fleet.as_of).unwrap_or_else(Day::today)
    }

    /// Validates and compiles a workload for the scorer.
    pub fn compile(&self, workload: &Workload, at: Day) -> Result<Vec<JobGpu>> {
        Ok(workload.compile(&self.fleet, &self.policy, at)?)
    }

    /// Places every job of `workload` (see [`crate::place`] for the guarantee) on the date `at`
    /// (default: the fleet's `as_of`, else today).
    pub fn place(&mut self, workload: &Workload, at: Option<Day>) -> Result<Placement> {
        self.place_with_progress(workload, at, &mut |_, _| {})
    }

    /// [`Scheduler::place`], calling `progress(decided, total)` after each scoring round.
    pub fn place_with_progress(
        &mut self,
        workload: &Workload,
        at: Option<Day>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Placement> {
        let at = self.placement_date(at);
        let started = Instant::now();
        let jobs = self.compile(workload, at)?;
        let order = decision_order(&workload.jobs);
        let compiled = Instant::now();
        let mut notices = self.notices.clone();
        let mut scorer = FallbackScorer { backend: &mut self.backend, notices: &mut notices, elapsed: Duration::ZERO };
        let k = self.policy.candidates as usize;
        let (decisions, state, stats) = place_batched(
            &self.fleet,
            &jobs,
            &order,
            self.fleet.initial_state(),
            k,
            self.limits,
            &mut scorer,
            progress,
        )?;
        let score_time = scorer.elapsed;
        let placed = Instant::now();
        Ok(Placement {
            decisions,
            state,
            at,
            stats,
            backend: self.backend.describe(),
            notices,
            timings: Timings {
                compile: compiled - started,
                score: score_time,
                commit: (placed - compiled).saturating_sub(score_time),
            },
        })
    }

    /// The reference oracle on the same inputs (slow; for tests and for checking a result).
    pub fn place_reference(&self, workload: &Workload, at: Option<Day>) -> Result<Vec<Decision>> {
        let at = self.placement_date(at);
        let jobs = self.compile(workload, at)?;
        let order = decision_order(&workload.jobs);
        Ok(crate::place::place_reference(&self.fleet, &jobs, &order, self.fleet.initial_state()).0)
    }

    /// Explains job `id`: its best candidates and rejections at the moment it is decided, i.e.
    /// after every job before it in decision order has been placed.
    pub fn explain(&mut self, workload: &Workload, at: Option<Day>, id: &str) -> Result<Explanation> {
        let at_day = self.placement_date(at);
        let jobs = self.compile(workload, at_day)?;
        let index = workload.jobs.iter().position(|j| j.id == id).ok_or_else(|| {
            crate::InputError::new(&workload.source_name, format!("job `{id}`"), "id", "no job has this id")
        })?;
        let order = decision_order(&workload.jobs);
        let rank = order.iter().position(|&j| j == index).expect("every job is in the order");
        let before = &order[..rank];
        let mut notices = Vec::new();
        let mut scorer = FallbackScorer { backend: &mut self.backend, notices: &mut notices, elapsed: Duration::ZERO };
        let k = self.policy.candidates as usize;
        let (_, state, _) = place_batched(
            &self.fleet,
            &jobs,
            before,
            self.fleet.initial_state(),
            k,
            self.limits,
            &mut scorer,
            &mut |_, _| {},
        )?;
        let job = &jobs[index];
        let classes = crate::place::ClassIndex::all(&state, &self.fleet);
        let (candidates, feasible_racks) = explain_candidates(&self.fleet, &state, job, k);
        let counts = reject_counts(&state, job);
        let rejected = REJECT_NAMES.iter().zip(counts).map(|(name, count)| (name.to_string(), count)).collect();
        let decision = match candidates.first() {
            Some(best) => {
                format!("placed on {}/{} rack {} with score {}", best.site, best.cluster, best.rack, best.score)
            }
            None => format!("unplaced: {}", crate::explain::unplaced_reason(&self.fleet, &state, &classes, job)),
        };
        Ok(Explanation {
            job: id.to_string(),
            need: describe_need(&self.fleet, job),
            decided_before: rank,
            candidates,
            feasible_racks,
            rejected,
            decision,
        })
    }
}

impl Scheduler {
    /// Replays `workload` over time (see [`crate::replay`]); `progress(t, last_arrival)` reports
    /// trace time.
    pub fn replay(
        &mut self,
        workload: &Workload,
        config: crate::replay::ReplayConfig,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(crate::replay::ReplayReport, Vec<String>)> {
        let jobs = self.compile(workload, config.start)?;
        let mut notices = self.notices.clone();
        let mut scorer = FallbackScorer { backend: &mut self.backend, notices: &mut notices, elapsed: Duration::ZERO };
        let report = crate::replay::replay(
            &self.fleet,
            workload,
            &self.policy,
            &jobs,
            config,
            &mut scorer,
            progress,
            &mut |_, _, _| {},
        )?;
        Ok((report, notices))
    }
}
