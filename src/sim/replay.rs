//! `gpuplace replay`: online placement of a workload over time.
//!
//! Time advances in scheduling intervals of trace time. At each interval the waiting jobs that
//! have waited longer than `max_wait_s` are rejected, the jobs that finished release their GPUs and
//! power, newly arrived jobs join the waiting ones, and the waiting jobs are placed in one batch
//! through the same engine and backend as `place` (priority order, exact capacity). A job is always
//! tried at the first boundary after it arrives; one that found no rack is tried again only once
//! capacity may have grown (a release, or a new day), which gives the same decisions. A job that arrives between two
//! interval boundaries is first considered at the next boundary, so it never starts before it
//! arrives; a job that ends between boundaries releases its resources at the next boundary.
//!
//! Intervals in which nothing can change (no arrival, no completion, no expiry, no cluster coming
//! online) are skipped, so a trace of months replays in seconds. The placement date advances with
//! trace time (trace time 0 is the start date): a cluster is usable from its online date, and a job
//! with `not_before` arrives no earlier than that date (placing a job starts it, so it cannot take
//! capacity that is not online yet). Queueing delays and `--max-wait` count from the arrival.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::place::{Outcome, Reasons};
use crate::engine::reasons::{Cause, Reason};
use crate::engine::view::PlacedOn;
use crate::engine::{Allocation, Compiled, Scheduler};
use crate::error::{InputError, Result};
use crate::model::FORMAT_VERSION;
use crate::model::date::Day;
use crate::model::fleet::Fleet;
use crate::model::jobs::{Job, MAX_TRACE_S, Workload};
use crate::model::kind::JobKind;
use crate::report::metrics::{
    EnergyTally, percentile, site_gpus, site_gpus_used, site_power_drawn_w, stranded_gpus, sum_f64, violates_latency,
};

/// How to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayConfig {
    /// Scheduling interval, seconds of trace time (1 ..= [`MAX_TRACE_S`]).
    pub interval_s: u64,
    /// Reject a job that has waited longer than this, seconds (at most [`MAX_TRACE_S`]); never
    /// when None.
    pub max_wait_s: Option<u64>,
    /// The date at trace time 0.
    pub start: Day,
    /// After each interval's placement, the jobs left waiting may evict running jobs of strictly
    /// lower priority ([`crate::Scheduler::preempt`]). An evicted job waits again (`max_wait_s`
    /// counting from its eviction) and, placed again, runs its whole duration from the start (no
    /// checkpoint is assumed).
    pub preemption: bool,
}

impl ReplayConfig {
    /// Checks the ranges that keep every sum of times far from overflowing (arrivals, run times,
    /// intervals and waits are each at most about 3 × 10⁹ s).
    pub fn validate(&self) -> std::result::Result<(), InputError> {
        if self.interval_s == 0 || self.interval_s > MAX_TRACE_S {
            return Err(InputError::new(
                "command line",
                "--interval",
                "interval",
                format!("{} is out of range: must be 1 to {MAX_TRACE_S} seconds", self.interval_s),
            ));
        }
        if let Some(wait) = self.max_wait_s
            && wait > MAX_TRACE_S
        {
            return Err(InputError::new(
                "command line",
                "--max-wait",
                "max-wait",
                format!("{wait} is out of range: must be at most {MAX_TRACE_S} seconds"),
            ));
        }
        Ok(())
    }
}

/// What became of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobFate {
    /// Arrived at `arrived_s`, ran from `start_s` to `end_s`, holding `allocation`.
    Placed {
        /// When it arrived: its `submit_s`, or the start of its `not_before` day if later.
        arrived_s: u64,
        /// When it started (an interval boundary ≥ its arrival).
        start_s: u64,
        /// When it ended (start + duration).
        end_s: u64,
        /// What it held.
        allocation: Allocation,
        /// The anchor rack's score.
        score: u32,
    },
    /// Rejected at `at_s`, by `rule`, for `reason`.
    Rejected {
        /// When it arrived (as for a placed job).
        arrived_s: u64,
        /// When.
        at_s: u64,
        /// Which rule rejected it.
        rule: Rejection,
        /// What kept it from being placed until then.
        reason: Reason,
    },
}

/// Why replay gave up on a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Rejection {
    /// It waited longer than `--max-wait`.
    MaxWait,
    /// Nothing was left to arrive, finish or come online, and it still did not fit.
    NeverPlaceable,
}

/// One job of a replay, for the `jobs` of `replay --json`: what it was and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct ReplayJob {
    /// Job id.
    pub job: String,
    /// Its kind.
    pub kind: JobKind,
    /// GPUs it asked for (for pods that share GPUs, their shares rounded up: [`Job::gpus_held`]).
    pub gpus: u32,
    /// When it arrived, seconds of trace time.
    pub arrived_s: u64,
    /// What became of it.
    pub fate: FateRecord,
}

/// [`JobFate`] with names, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FateRecord {
    /// It ran.
    Placed {
        /// When it started, seconds of trace time.
        start_s: u64,
        /// When it ended.
        end_s: u64,
        /// How long it waited: start − arrival, seconds.
        wait_s: u64,
        /// Where it ran.
        placed_on: PlacedOn,
    },
    /// It never ran.
    Rejected {
        /// When, seconds of trace time.
        at_s: u64,
        /// Which rule rejected it.
        rule: Rejection,
        /// What kept it from being placed until then, in words.
        reason: String,
        /// The same as a code with its data.
        cause: Cause,
    },
}

impl ReplayJob {
    /// The record of `job` (of the replayed fleet) that met `fate`.
    pub fn new(fleet: &Fleet, job: &Job, fate: &JobFate) -> Self {
        let (arrived_s, fate) = match fate {
            JobFate::Placed { arrived_s, start_s, end_s, allocation, score } => (
                *arrived_s,
                FateRecord::Placed {
                    start_s: *start_s,
                    end_s: *end_s,
                    wait_s: start_s - arrived_s,
                    placed_on: PlacedOn::new(fleet, allocation, *score),
                },
            ),
            JobFate::Rejected { arrived_s, at_s, rule, reason } => (
                *arrived_s,
                FateRecord::Rejected {
                    at_s: *at_s,
                    rule: *rule,
                    reason: reason.text.clone(),
                    cause: reason.cause.clone(),
                },
            ),
        };
        ReplayJob { job: job.id.clone(), kind: job.kind, gpus: job.gpus_held(), arrived_s, fate }
    }
}

/// One sample of the fleet, taken after each processed interval's placement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct Sample {
    /// Trace time, seconds.
    pub t_s: u64,
    /// GPUs in use per site (indexed like [`ReplayReport::sites`]).
    pub gpus_used: Vec<u64>,
    /// IT power drawn per site, MW.
    pub it_mw: Vec<f64>,
    /// Free GPUs on partly used ready trays ([`crate::report::metrics::stranded_gpus`]): capacity
    /// only pods smaller than a tray can use.
    pub stranded_gpus: u64,
    /// Jobs waiting after placement.
    pub waiting: usize,
    /// Jobs running after placement.
    pub running: usize,
}

/// Per job kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct KindReplay {
    /// The kind.
    pub kind: JobKind,
    /// Jobs of this kind.
    pub jobs: usize,
    /// Jobs placed.
    pub placed: usize,
    /// Jobs rejected.
    pub rejected: usize,
    /// Queueing delay (start − arrival) of placed jobs, seconds: median, 95th and 99th percentile
    /// (nearest rank); 0 when none was placed.
    pub delay_p50_s: u64,
    /// 95th percentile.
    pub delay_p95_s: u64,
    /// 99th percentile.
    pub delay_p99_s: u64,
}

/// Everything a replay measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Scheduling interval, seconds.
    pub interval_s: u64,
    /// Intervals processed (skipped idle ones not counted).
    pub intervals: usize,
    /// Site names.
    pub sites: Vec<String>,
    /// GPUs per site.
    pub site_gpus: Vec<u64>,
    /// Per kind.
    pub kinds: Vec<KindReplay>,
    /// GPUs of placed jobs, summed over jobs (shares of a GPU summed first), to the nearest GPU.
    pub gpus_placed: u64,
    /// Energy of placed jobs over their run time, USD (IT power × PUE × price).
    pub energy_usd: f64,
    /// Emissions of placed jobs over their run time, kg CO2.
    pub carbon_kg: f64,
    /// Placed jobs further from their users than their latency bound (must be 0).
    pub latency_violations: u64,
    /// Evictions, by priority (`--preemption`) or to take back what a tenant borrowed (`--tenants`); a job evicted twice counts twice.
    #[serde(default)]
    pub preemptions: u64,
    /// GPU-hours that evicted jobs had run before their eviction: work lost, to be run again.
    /// Their energy and carbon are in `energy_usd` and `carbon_kg`.
    #[serde(default)]
    pub preempted_gpu_hours: f64,
    /// Mean stranded GPUs over the samples.
    pub stranded_gpus_mean: f64,
    /// Largest stranded GPUs.
    pub stranded_gpus_max: u64,
    /// Scheduling time per processed interval, milliseconds: median.
    pub scheduling_ms_p50: f64,
    /// 99th percentile.
    pub scheduling_ms_p99: f64,
    /// All scheduling time, seconds.
    pub scheduling_s_total: f64,
    /// The fleet over time.
    pub timeline: Vec<Sample>,
    /// Each job's fate, in workload order (written as `jobs` by [`ReplayDocument`]).
    #[serde(skip)]
    #[schemars(skip)]
    pub fates: Vec<JobFate>,
}

/// The first interval boundary at or after `t` (both within the validated ranges, so no overflow).
fn boundary(t: u64, interval: u64) -> u64 {
    t.div_ceil(interval) * interval
}

/// Called after every processed interval with the time, the scheduler (its live capacity) and
/// every job's fate so far (None: not yet arrived, or waiting).
pub type IntervalCheck<'a> = dyn FnMut(u64, &Scheduler, &[Option<JobFate>]) + 'a;

/// Replays `workload` over time on `scheduler`, from its live capacity; every job placed is
/// released again by the end. `progress(t, last_arrival)` reports trace time; `check_after`
/// (tests) is called after every processed interval.
pub fn replay(
    scheduler: &mut Scheduler,
    workload: &Workload,
    config: ReplayConfig,
    progress: &mut dyn FnMut(u64, u64),
    check_after: &mut IntervalCheck,
) -> Result<ReplayReport> {
    replay_with(scheduler, workload, config, progress, check_after, false)
}

/// Test hook: [`replay`] trying every waiting job at every interval, the definition its shortcut
/// (waiting jobs are tried again only once capacity may have grown) must match decision for
/// decision.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub fn replay_retrying_every_job(
    scheduler: &mut Scheduler,
    workload: &Workload,
    config: ReplayConfig,
) -> Result<ReplayReport> {
    replay_with(scheduler, workload, config, &mut |_, _| {}, &mut |_, _, _| {}, true)
}

fn replay_with(
    scheduler: &mut Scheduler,
    workload: &Workload,
    config: ReplayConfig,
    progress: &mut dyn FnMut(u64, u64),
    check_after: &mut IntervalCheck,
    retry_all: bool,
) -> Result<ReplayReport> {
    config.validate()?;
    let interval = config.interval_s;
    let mut compiled = scheduler.compile(workload, config.start)?;
    let n = workload.jobs.len();
    // Trace time of the start of a day (0 for days at or before the start date).
    let day_start = |day: u32| u64::from(day.saturating_sub(config.start.0)) * 86_400;
    // A job arrives at its submit time, or at the start of its `not_before` day if later.
    let submit: Vec<u64> = workload
        .jobs
        .iter()
        .zip(&compiled.jobs)
        .map(|(job, record)| job.submit_seconds().max(day_start(record.ready_day)))
        .collect();
    // When clusters come online after the start, in trace time.
    let mut online_times: Vec<u64> = scheduler
        .ledger()
        .state()
        .clusters
        .iter()
        .filter(|c| c.online_day > config.start.0)
        .map(|c| day_start(c.online_day))
        .collect();
    online_times.sort_unstable();
    online_times.dedup();
    let duration: Vec<u64> = workload.jobs.iter().map(|j| j.duration_seconds().max(1)).collect();
    let mut arrivals: Vec<usize> = (0..n).collect();
    arrivals.sort_by_key(|&j| submit[j]);
    let last_arrival = arrivals.last().map_or(0, |&j| submit[j]);

    let mut fates: Vec<Option<JobFate>> = vec![None; n];
    // When each job began to wait: its arrival, or its eviction (what --max-wait counts from).
    let mut waiting_since: Vec<u64> = submit.clone();
    // Preemption: evictions, the GPU-thousandth-seconds evicted jobs had run, and what each such
    // run held and for how long (its energy counts).
    let (mut preemptions, mut preempted_gpu_s, mut lost_runs) = (0u64, 0u128, Vec::new());
    let mut running: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut waiting: Vec<usize> = Vec::new();
    let mut next_arrival = 0usize;
    let mut timeline = Vec::new();
    let mut scheduling = Vec::new();
    let mut t = arrivals.first().map_or(0, |&j| boundary(submit[j], interval));

    // Waiting jobs that found no rack when last tried, and whether capacity may have grown since
    // (a release, or a new day bringing clusters online). Until it has, trying them again cannot
    // place them: commits only take capacity, so each would be decided unplaced at its turn and
    // change nothing. Only the jobs that arrived since are placed then, with the same decisions.
    let mut tried_since = 0usize;
    // Whether jobs left waiting may evict: by priority (`preemption`), or, with tenants set, to
    // take back what other tenants borrow (always: it is what a quota guarantees).
    let evicting = config.preemption || scheduler.tenants().is_some();
    let mut capacity_grew = true;
    let mut last_today = None;

    while next_arrival < n || !waiting.is_empty() || !running.is_empty() {
        // Jobs that waited too long are rejected first. Every waiting job was tried at an earlier
        // interval (a job is always tried once, at the first boundary after it arrives), and since
        // then only commits have happened: its reason, worded against this capacity, is true.
        if let Some(max_wait) = config.max_wait_s {
            let mut position = 0;
            let tried = tried_since;
            let mut expired = Vec::new();
            waiting.retain(|&j| {
                let expires = t - waiting_since[j] > max_wait;
                if expires {
                    expired.push(j);
                    if position < tried {
                        tried_since -= 1;
                    }
                }
                position += 1;
                !expires
            });
            for j in expired {
                let reason = why(scheduler, &compiled, j)?;
                fates[j] = Some(JobFate::Rejected {
                    arrived_s: submit[j],
                    at_s: t,
                    rule: Rejection::MaxWait,
                    reason: Reason { text: format!("waited more than {max_wait} s; {}", reason.text), ..reason },
                });
            }
        }
        // Completions up to now give back their resources.
        while let Some(&Reverse((end, j))) = running.peek() {
            if end > t {
                break;
            }
            running.pop();
            scheduler.release(&workload.jobs[j].id)?;
            capacity_grew = true;
            drop_evicted(&mut running, &fates);
        }
        while next_arrival < n && submit[arrivals[next_arrival]] <= t {
            waiting.push(arrivals[next_arrival]);
            next_arrival += 1;
        }
        let started = Instant::now();
        // The placement date advances with trace time; a job may use what is online today.
        let today = config.start.saturating_add(t / 86_400);
        capacity_grew |= retry_all || last_today != Some(today);
        last_today = Some(today);
        let first = if capacity_grew { 0 } else { tried_since };
        let mut retry_next = false;
        // With evictions, the jobs not tried again take part in the pass: an eviction can free
        // more than the evicting job takes, so they may fit or evict in turn (trying every
        // waiting job would also bring them there, unplaced, in the same order).
        if first < waiting.len() || (evicting && !waiting.is_empty()) {
            let to_place = waiting.split_off(first);
            let not_tried = if evicting { std::mem::take(&mut waiting) } else { Vec::new() };
            for &j in to_place.iter().chain(&not_tried) {
                compiled.jobs[j].ready_day = today.0;
            }
            let (decisions, _, consolidation) =
                scheduler.place_compiled(&compiled, &to_place, Reasons::Skipped, &mut |_, _| {})?;
            // Consolidation keeps the shortcut exact: it ends only when no waiting job fits the
            // final state, even by moving the batch's jobs, and moving a later batch's jobs cannot
            // make room for one either (what it frees is no more than that final state had free).
            // A pass that ran out of work has not checked them all: try every waiting job next time.
            retry_next = consolidation.exhausted;
            let mut decisions = decisions;
            if evicting {
                let mut unplaced: Vec<usize> =
                    decisions.iter().filter(|d| matches!(d.outcome, Outcome::Unplaced { .. })).map(|d| d.job).collect();
                unplaced.extend(&not_tried);
                if !unplaced.is_empty() {
                    // A running job evicted in the pass is decided again there, on today's date.
                    for &Reverse((_, j)) in running.iter() {
                        compiled.jobs[j].ready_day = today.0;
                    }
                    let pass = if config.preemption {
                        scheduler.preempt(&compiled, &unplaced, Reasons::Skipped)?
                    } else {
                        scheduler.reclaim(&compiled, &unplaced, Reasons::Skipped)?
                    };
                    // Every job of the workload is compiled, so each victim is decided again in
                    // the pass (its final outcome is among the pass's decisions).
                    for eviction in &pass.evictions {
                        let v = eviction.job.expect("a running job belongs to the replayed workload");
                        if let Some(JobFate::Placed { start_s, allocation, .. }) = fates[v].take() {
                            preempted_gpu_s += u128::from(t - start_s) * u128::from(workload.jobs[v].gpu_milli_held());
                            lost_runs.push((allocation, t - start_s));
                        }
                        preemptions += 1;
                        waiting_since[v] = t;
                    }
                    // What an eviction frees beyond what the evicting job takes is capacity that
                    // grew: every waiting job is tried again at the next interval.
                    retry_next |= !pass.evictions.is_empty();
                    let again: std::collections::HashSet<usize> = pass.decisions.iter().map(|d| d.job).collect();
                    decisions.retain(|d| !again.contains(&d.job));
                    decisions.extend(pass.decisions);
                    drop_evicted(&mut running, &fates);
                }
            }
            for decision in decisions {
                let j = decision.job;
                match decision.outcome {
                    Outcome::Placed { allocation, score } => {
                        let end = t + duration[j];
                        running.push(Reverse((end, j)));
                        fates[j] =
                            Some(JobFate::Placed { arrived_s: submit[j], start_s: t, end_s: end, allocation, score });
                    }
                    Outcome::Unplaced { .. } => waiting.push(j),
                }
            }
            drop_evicted(&mut running, &fates);
        }
        tried_since = waiting.len();
        capacity_grew = retry_next;
        scheduling.push(started.elapsed());
        let fleet = scheduler.fleet();
        let state = scheduler.ledger().state();
        timeline.push(Sample {
            t_s: t,
            gpus_used: site_gpus_used(fleet, state),
            it_mw: site_power_drawn_w(fleet, state).into_iter().map(|w| w as f64 / 1e6).collect(),
            stranded_gpus: stranded_gpus(state),
            waiting: waiting.len(),
            running: scheduler.running(),
        });
        check_after(t, scheduler, &fates);
        progress(t.min(last_arrival), last_arrival);

        // The next boundary at which something can change.
        let mut next = u64::MAX;
        if next_arrival < n {
            next = next.min(boundary(submit[arrivals[next_arrival]], interval));
        }
        if let Some(&Reverse((end, _))) = running.peek() {
            next = next.min(boundary(end, interval));
        }
        if let Some(max_wait) = config.max_wait_s {
            for &j in &waiting {
                next = next.min(boundary(waiting_since[j] + max_wait + 1, interval));
            }
        }
        if !waiting.is_empty()
            && let Some(&online) = online_times.iter().find(|&&online| online > t)
        {
            // Capacity coming online may let a waiting job run.
            next = next.min(boundary(online, interval));
        }
        if next == u64::MAX {
            // Nothing will ever arrive or finish: the waiting jobs can never be placed.
            for &j in &waiting {
                let reason = why(scheduler, &compiled, j)?;
                fates[j] = Some(JobFate::Rejected {
                    arrived_s: submit[j],
                    at_s: t,
                    rule: Rejection::NeverPlaceable,
                    reason: Reason { text: format!("can never be placed: {}", reason.text), ..reason },
                });
            }
            waiting.clear();
            break;
        }
        t = next.max(t + interval);
    }

    let fates: Vec<JobFate> = fates.into_iter().map(|f| f.expect("every job ends placed or rejected")).collect();
    let mut report = summarize(scheduler, workload, interval, timeline, scheduling, fates, &lost_runs);
    report.preemptions = preemptions;
    report.preempted_gpu_hours = preempted_gpu_s as f64 / 1000.0 / 3600.0;
    Ok(report)
}

/// Drops the entries at the top of `running` whose job no longer runs until that time (evicted,
/// or evicted and placed again with another end), so that its top is always a live end.
fn drop_evicted(running: &mut BinaryHeap<Reverse<(u64, usize)>>, fates: &[Option<JobFate>]) {
    while let Some(&Reverse((end, j))) = running.peek() {
        match &fates[j] {
            Some(JobFate::Placed { end_s, .. }) if *end_s == end => break,
            _ => {
                running.pop();
            }
        }
    }
}

/// Why waiting job `j` is not placed now. Every waiting job was tried at an interval since which
/// only commits happened (see the callers), so a rack is never free for it; were one free, the
/// reason says so rather than inventing a cause.
fn why(scheduler: &Scheduler, compiled: &Compiled, j: usize) -> Result<Reason> {
    Ok(scheduler
        .unplaced_reason(compiled, j)?
        .unwrap_or_else(|| Reason { text: "a rack is free for it now".into(), ..Reason::not_evaluated() }))
}

fn summarize(
    scheduler: &Scheduler,
    workload: &Workload,
    interval: u64,
    timeline: Vec<Sample>,
    scheduling: Vec<Duration>,
    fates: Vec<JobFate>,
    lost_runs: &[(Allocation, u64)],
) -> ReplayReport {
    let fleet = scheduler.fleet();
    let mut delays: Vec<Vec<u64>> = vec![Vec::new(); JobKind::ALL.len()];
    let mut kinds: Vec<KindReplay> = JobKind::ALL
        .iter()
        .map(|&kind| KindReplay {
            kind,
            jobs: 0,
            placed: 0,
            rejected: 0,
            delay_p50_s: 0,
            delay_p95_s: 0,
            delay_p99_s: 0,
        })
        .collect();
    let mut energy = EnergyTally::default();
    let (mut gpus_placed, mut violations) = (0u64, 0u64);
    for (j, fate) in fates.iter().enumerate() {
        let job = &workload.jobs[j];
        let kind = job.kind.index();
        kinds[kind].jobs += 1;
        match fate {
            JobFate::Placed { arrived_s, start_s, end_s, allocation, .. } => {
                kinds[kind].placed += 1;
                delays[kind].push(start_s - arrived_s);
                gpus_placed += job.gpu_milli_held();
                energy.add(fleet, allocation, end_s - start_s);
                violations += u64::from(violates_latency(fleet, job, allocation));
            }
            JobFate::Rejected { .. } => kinds[kind].rejected += 1,
        }
    }
    for (allocation, seconds) in lost_runs {
        energy.add(fleet, allocation, *seconds);
    }
    for (kind, mut d) in kinds.iter_mut().zip(delays) {
        d.sort_unstable();
        kind.delay_p50_s = percentile(&d, 50.0);
        kind.delay_p95_s = percentile(&d, 95.0);
        kind.delay_p99_s = percentile(&d, 99.0);
    }
    let mut sched_ms: Vec<f64> = scheduling.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    sched_ms.sort_by(f64::total_cmp);
    let stranded: Vec<u64> = timeline.iter().map(|s| s.stranded_gpus).collect();
    ReplayReport {
        interval_s: interval,
        intervals: timeline.len(),
        sites: fleet.sites.iter().map(|s| s.name.clone()).collect(),
        site_gpus: site_gpus(fleet),
        kinds,
        gpus_placed: (gpus_placed + 500) / 1000,
        energy_usd: energy.usd(),
        carbon_kg: energy.kg_co2(),
        latency_violations: violations,
        preemptions: 0,
        preempted_gpu_hours: 0.0,
        stranded_gpus_mean: if stranded.is_empty() {
            0.0
        } else {
            stranded.iter().sum::<u64>() as f64 / stranded.len() as f64
        },
        stranded_gpus_max: stranded.iter().copied().max().unwrap_or(0),
        scheduling_ms_p50: percentile(&sched_ms, 50.0),
        scheduling_ms_p99: percentile(&sched_ms, 99.0),
        scheduling_s_total: sum_f64(scheduling.iter().map(Duration::as_secs_f64)),
        timeline,
        fates,
    }
}

/// The `replay --json` document: `format_version`, every metric of the [`ReplayReport`], and
/// `jobs`, each job's [`ReplayJob`] in workload order. Serializing it builds each job's record as it
/// is written, so a replay of millions of jobs never holds them all as records. [`ReplayFile`]
/// reads it back.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ReplayDocument<'a> {
    /// [`FORMAT_VERSION`].
    format_version: u32,
    /// What the replay measured.
    #[serde(flatten)]
    report: &'a ReplayReport,
    /// Each job's record.
    jobs: ReplayJobs<'a>,
}

impl<'a> ReplayDocument<'a> {
    /// The document of `report`, a replay of `workload` on `fleet`.
    pub fn new(fleet: &'a Fleet, workload: &'a Workload, report: &'a ReplayReport) -> Self {
        ReplayDocument { format_version: FORMAT_VERSION, report, jobs: ReplayJobs { fleet, workload, report } }
    }
}

/// The jobs of a [`ReplayDocument`], each record built as it is written.
#[derive(Debug, Clone, Copy)]
struct ReplayJobs<'a> {
    fleet: &'a Fleet,
    workload: &'a Workload,
    report: &'a ReplayReport,
}

impl Serialize for ReplayJobs<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let records = self.workload.jobs.iter().zip(&self.report.fates);
        serializer.collect_seq(records.map(|(job, fate)| ReplayJob::new(self.fleet, job, fate)))
    }
}

/// A `replay --json` document read back.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct ReplayFile {
    /// The version of the format ([`FORMAT_VERSION`] when written by this gpuplace).
    pub format_version: u32,
    /// The metrics (its `fates` are empty: the jobs are in `jobs`).
    #[serde(flatten)]
    pub report: ReplayReport,
    /// Each job's record, in workload order.
    pub jobs: Vec<ReplayJob>,
}

/// A line of the JSON Lines form of `replay --json` ([`write_replay_jsonl`]): the report first
/// (without `jobs`), then one line per job in workload order. Each line is an object whose
/// `record` field says which it is.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(tag = "record", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReplayLine {
    /// The first line: `format_version` and every metric.
    Report(crate::report::Versioned<ReplayReport>),
    /// One job.
    Job(ReplayJob),
}

/// Writes a replay as JSON Lines ([`ReplayLine`]), each job's record built as it is written.
pub fn write_replay_jsonl(doc: &ReplayDocument, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    #[derive(Serialize)]
    #[serde(tag = "record", rename_all = "snake_case")]
    enum LineRef<'a> {
        Report {
            format_version: u32,
            #[serde(flatten)]
            report: &'a ReplayReport,
        },
        Job(&'a ReplayJob),
    }
    serde_json::to_writer(&mut *w, &LineRef::Report { format_version: doc.format_version, report: doc.report })?;
    w.write_all(b"\n")?;
    let jobs = &doc.jobs;
    for (job, fate) in jobs.workload.jobs.iter().zip(&jobs.report.fates) {
        serde_json::to_writer(&mut *w, &LineRef::Job(&ReplayJob::new(jobs.fleet, job, fate)))?;
        w.write_all(b"\n")?;
    }
    Ok(())
}
