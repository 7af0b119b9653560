//! The service's state machine, without threads or sockets: the scheduler (fleet, policy, backend,
//! live ledger), every job the service accepted with its state, and the store. The server
//! ([`crate::server`]) feeds it batches of requests; a batch's changes are applied in memory,
//! waiting jobs are placed in one round, and everything is written to the store in one durable
//! transaction before any request of the batch is answered. A crash loses only unanswered
//! requests, and a restart restores exactly what was answered ([`Service::open`]).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gpuplace::engine::place::{Outcome, usable_gpus};
use gpuplace::engine::{PlacedOn, Reason};
use gpuplace::{BackendChoice, Day, Fleet, InputError, Policy, Scheduler, Workload};
use serde::Deserialize;

use crate::api::{ApiError, JobState, JobView};
use crate::error::ServeError;
use crate::store::{Meta, Store, StoredJob};

/// How submitted jobs are named in errors.
pub const REQUEST_SOURCE: &str = "request";
/// The most jobs one submission may carry.
pub const MAX_SUBMISSION_JOBS: usize = 100_000;
/// The most jobs a listing returns.
pub const MAX_LIST: usize = 100_000;

/// What [`Service::open`] starts from.
pub struct ServiceConfig {
    /// The fleet; None: the one the state directory holds (an error for a new one).
    pub fleet: Option<Fleet>,
    /// The policy; None: the state directory's, or the default policy for a new one.
    pub policy: Option<Policy>,
    /// The scoring backend.
    pub backend: BackendChoice,
    /// The state directory.
    pub state_dir: PathBuf,
}

/// One accepted job.
struct Entry {
    stored: StoredJob,
    /// Why it waits, as of the latest round (not stored: the next round works it out again).
    waiting_reason: Option<Arc<Reason>>,
}

/// Counts since the server started, for `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Scheduling rounds run.
    pub rounds: u64,
    /// Jobs decided placed.
    pub placed: u64,
    /// Jobs accepted.
    pub submitted: u64,
    /// Jobs finished or cancelled.
    pub finished: u64,
    /// Time spent in rounds.
    pub round_time: Duration,
}

/// The service's state.
pub struct Service {
    scheduler: Scheduler,
    store: Store,
    entries: Vec<Entry>,
    by_id: HashMap<String, usize>,
    waiting: BTreeSet<usize>,
    /// Entries changed since the last commit.
    dirty: BTreeSet<usize>,
    /// Metadata to write with the next commit (a new store, or a policy given again).
    meta_pending: Option<Meta>,
    /// Whether the next round has anything new to decide: jobs arrived or capacity came back.
    round_needed: bool,
    round: u64,
    counters: Counters,
}

impl Service {
    /// Opens the state directory and restores what it holds: every job with its state, and the
    /// capacity its placed jobs hold (each checked against the fleet). A new directory starts
    /// empty with `config`'s fleet and policy. A damaged store, one of another fleet, or a stored
    /// placement that does not fit, is a [`ServeError::State`] and the directory is left as it
    /// is.
    pub fn open(config: ServiceConfig) -> Result<Service, ServeError> {
        let (store, meta) = Store::open(&config.state_dir)?;
        let path = store.path().to_path_buf();
        let state_error = |record: &str, message: String| ServeError::State {
            path: path.clone(),
            record: record.to_string(),
            message,
        };
        let (fleet, policy, meta_pending) = match (meta, config.fleet) {
            (None, None) => {
                return Err(state_error("(file)", "is a new state directory: give the fleet to start it with".into()));
            }
            (None, Some(fleet)) => {
                let policy = config.policy.unwrap_or_default();
                let meta = Meta { fleet_json: fleet.to_json(), policy_json: policy.to_json() };
                (fleet, policy, Some(meta))
            }
            (Some(meta), given) => {
                let source = format!("{}: meta fleet", path.display());
                let stored = Fleet::from_json(&meta.fleet_json, &source)
                    .map_err(|e| state_error("meta fleet", format!("does not read back: {e}")))?;
                if let Some(given) = given
                    && given.to_json() != meta.fleet_json
                {
                    return Err(state_error(
                        "meta fleet",
                        "the state directory was started with another fleet; start a new state directory for this one, or leave out --fleet".into(),
                    ));
                }
                let source = format!("{}: meta policy", path.display());
                let stored_policy = Policy::from_json(&meta.policy_json, &source)
                    .map_err(|e| state_error("meta policy", format!("does not read back: {e}")))?;
                // A policy given again replaces the stored one for later decisions.
                match config.policy {
                    Some(policy) if policy.to_json() != meta.policy_json => {
                        let pending = Meta { fleet_json: meta.fleet_json, policy_json: policy.to_json() };
                        (stored, policy, Some(pending))
                    }
                    _ => (stored, stored_policy, None),
                }
            }
        };
        let scheduler = Scheduler::new(fleet, policy, config.backend)?;
        let mut service = Service {
            scheduler,
            store,
            entries: Vec::new(),
            by_id: HashMap::new(),
            waiting: BTreeSet::new(),
            dirty: BTreeSet::new(),
            meta_pending,
            round_needed: false,
            round: 0,
            counters: Counters::default(),
        };
        service.restore()?;
        // The first round works out the waiting jobs' reasons; it places nothing that the last
        // round before the restart could not (the capacity is the same), and writes only if so.
        service.round_needed = !service.waiting.is_empty();
        Ok(service)
    }

    fn restore(&mut self) -> Result<(), ServeError> {
        let Service { store, entries, by_id, waiting, scheduler, round, .. } = self;
        store.load_jobs(|number, stored| {
            if number != entries.len() as u64 {
                return Err(format!("is out of sequence: expected job {}", entries.len()));
            }
            let id = stored.job.id.clone();
            if by_id.insert(id.clone(), entries.len()).is_some() {
                return Err(format!("repeats the id `{id}`"));
            }
            match (stored.state, &stored.placed) {
                (JobState::Placed, Some((allocation, _))) => {
                    scheduler.restore(&id, allocation.clone()).map_err(|e| format!("its placement: {e}"))?;
                }
                (JobState::Placed, None) => return Err("is placed but holds nothing".into()),
                (_, Some(_)) => return Err(format!("is {} but holds a placement", stored.state.name())),
                (JobState::Waiting | JobState::Preempted, None) => {
                    waiting.insert(entries.len());
                }
                (JobState::Finished | JobState::Rejected, None) => {}
            }
            *round = (*round).max(stored.round.unwrap_or(0));
            entries.push(Entry { stored, waiting_reason: None });
            Ok(())
        })?;
        Ok(())
    }

    /// The scheduler (its fleet, policy, backend and live capacity).
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Counts since the service opened.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Jobs accepted, in every state.
    pub fn job_count(&self) -> usize {
        self.entries.len()
    }

    /// Jobs waiting.
    pub fn waiting_count(&self) -> usize {
        self.waiting.len()
    }

    /// Jobs in each state, by kind: `(state, kind, count)`.
    pub fn counts(&self) -> HashMap<(JobState, gpuplace::JobKind), u64> {
        let mut counts = HashMap::new();
        for entry in &self.entries {
            *counts.entry((entry.stored.state, entry.stored.job.kind)).or_default() += 1;
        }
        counts
    }

    /// The placement date of a round.
    fn date(&self) -> Day {
        self.scheduler.placement_date(None)
    }

    /// Accepts the jobs of `body` (one job object, an array of jobs, or `{"jobs": [...]}`, in the
    /// job file format) as waiting, or rejected when no cluster could ever hold one. All or none:
    /// a malformed body is 400, a job the fleet refuses 422 (naming the record and field), an id
    /// already known 409. Returns their submission numbers.
    pub fn submit(&mut self, body: &[u8]) -> Result<Vec<usize>, ApiError> {
        let text = std::str::from_utf8(body).map_err(|_| ApiError::new(400, "request: the body is not UTF-8"))?;
        let workload = parse_jobs(text)?;
        if workload.jobs.is_empty() {
            return Err(ApiError::new(422, "request: document: jobs: no job to submit"));
        }
        if workload.jobs.len() > MAX_SUBMISSION_JOBS {
            return Err(ApiError::new(
                413,
                format!(
                    "request: document: jobs: {} jobs; one submission takes at most {MAX_SUBMISSION_JOBS}",
                    workload.jobs.len()
                ),
            ));
        }
        let mut seen = HashMap::with_capacity(workload.jobs.len());
        for (i, job) in workload.jobs.iter().enumerate() {
            if self.by_id.contains_key(&job.id) {
                return Err(conflict(&workload, i, "a job with this id was already submitted".into()));
            }
            if let Some(first) = seen.insert(job.id.as_str(), i) {
                return Err(conflict(&workload, i, format!("{} has this id too", workload.record_name(first))));
            }
        }
        let at = self.date();
        let compiled = workload
            .compile(self.scheduler.fleet(), self.scheduler.policy(), at)
            .map_err(|e| ApiError::new(422, e.to_string()))?;
        let mut numbers = Vec::with_capacity(workload.jobs.len());
        for (job, record) in workload.jobs.into_iter().zip(&compiled) {
            let number = self.entries.len();
            let usable = usable_gpus(record, self.scheduler.fleet(), self.scheduler.ledger().state());
            let stored = if usable == 0 {
                StoredJob {
                    job,
                    state: JobState::Rejected,
                    placed: None,
                    round: Some(self.round + 1),
                    reason: Some("no cluster of the fleet could ever hold it (GPU model, HBM, trays, jurisdiction, provider or latency)".into()),
                }
            } else {
                self.waiting.insert(number);
                self.round_needed = true;
                StoredJob { job, state: JobState::Waiting, placed: None, round: None, reason: None }
            };
            self.by_id.insert(stored.job.id.clone(), number);
            self.entries.push(Entry { stored, waiting_reason: None });
            self.dirty.insert(number);
            numbers.push(number);
        }
        self.counters.submitted += numbers.len() as u64;
        Ok(numbers)
    }

    /// Finishes job `id`: a placed job gives back what it holds, a waiting one is cancelled. 404
    /// for an unknown id, 409 for a job already finished or rejected.
    pub fn finish(&mut self, id: &str) -> Result<usize, ApiError> {
        let &number = self.by_id.get(id).ok_or_else(|| ApiError::new(404, format!("job `{id}`: no such job")))?;
        let entry = &mut self.entries[number];
        match entry.stored.state {
            JobState::Placed => {
                self.scheduler.release(id).map_err(|e| ApiError::new(500, e.to_string()))?;
                entry.stored.placed = None;
                // Capacity came back: waiting jobs may fit now.
                self.round_needed |= !self.waiting.is_empty();
            }
            JobState::Waiting | JobState::Preempted => {
                self.waiting.remove(&number);
            }
            JobState::Finished | JobState::Rejected => {
                return Err(ApiError::new(409, format!("job `{id}`: it is already {}", entry.stored.state.name())));
            }
        }
        entry.stored.state = JobState::Finished;
        entry.stored.round = Some(self.round);
        entry.stored.reason = None;
        entry.waiting_reason = None;
        self.dirty.insert(number);
        self.counters.finished += 1;
        Ok(number)
    }

    /// Whether a round has anything new to decide.
    pub fn round_needed(&self) -> bool {
        self.round_needed
    }

    /// Places the waiting jobs on the live capacity, in the batch engine's decision order, exactly
    /// as `Scheduler::place` would place them as one workload (in submission order) on this state.
    pub fn run_round(&mut self) -> Result<(), ServeError> {
        self.round_needed = false;
        if self.waiting.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        self.round += 1;
        let numbers: Vec<usize> = self.waiting.iter().copied().collect();
        let workload =
            Workload::from_jobs(numbers.iter().map(|&n| self.entries[n].stored.job.clone()).collect(), "<waiting>");
        let placement = self.scheduler.place(&workload, None)?;
        for decision in &placement.decisions {
            let number = numbers[decision.job];
            let entry = &mut self.entries[number];
            match &decision.outcome {
                Outcome::Placed { allocation, score } => {
                    entry.stored.state = JobState::Placed;
                    entry.stored.placed = Some((allocation.clone(), *score));
                    entry.stored.round = Some(self.round);
                    entry.waiting_reason = None;
                    self.waiting.remove(&number);
                    self.dirty.insert(number);
                    self.counters.placed += 1;
                }
                Outcome::Unplaced { reason } => entry.waiting_reason = Some(Arc::clone(reason)),
                _ => {}
            }
        }
        self.counters.rounds += 1;
        self.counters.round_time += started.elapsed();
        Ok(())
    }

    /// Writes every change since the last commit in one durable transaction. After an error the
    /// service must stop: what it holds in memory is ahead of the store.
    pub fn commit(&mut self) -> Result<(), ServeError> {
        if self.dirty.is_empty() && self.meta_pending.is_none() {
            return Ok(());
        }
        let entries = &self.entries;
        self.store.write(self.meta_pending.as_ref(), self.dirty.iter().map(|&n| (n as u64, &entries[n].stored)))?;
        self.dirty.clear();
        self.meta_pending = None;
        Ok(())
    }

    /// The job with submission number `number`, as the API shows it.
    pub fn view(&self, number: usize) -> JobView {
        let entry = &self.entries[number];
        let stored = &entry.stored;
        JobView {
            id: stored.job.id.clone(),
            state: stored.state,
            kind: stored.job.kind,
            priority: stored.job.priority,
            gpus: stored.job.gpus,
            submitted: number as u64,
            round: stored.round,
            placement: stored
                .placed
                .as_ref()
                .map(|(allocation, score)| PlacedOn::new(self.scheduler.fleet(), allocation, *score)),
            reason: entry.waiting_reason.as_ref().map(|r| r.text.clone()).or_else(|| stored.reason.clone()),
        }
    }

    /// Job `id`, as the API shows it; 404 when unknown.
    pub fn job(&self, id: &str) -> Result<JobView, ApiError> {
        self.by_id.get(id).map(|&n| self.view(n)).ok_or_else(|| ApiError::new(404, format!("job `{id}`: no such job")))
    }

    /// Up to `limit` jobs in `state` (every state when None), by submission number, and how many
    /// there are.
    pub fn list(&self, state: Option<JobState>, limit: usize) -> (Vec<JobView>, u64) {
        let limit = limit.min(MAX_LIST);
        if state == Some(JobState::Waiting) {
            let views = self.waiting.iter().take(limit).map(|&n| self.view(n)).collect();
            return (views, self.waiting.len() as u64);
        }
        let matching = self.entries.iter().enumerate().filter(|(_, e)| state.is_none_or(|s| e.stored.state == s));
        let total = matching.clone().count() as u64;
        (matching.take(limit).map(|(n, _)| self.view(n)).collect(), total)
    }
}

/// 409 for job `i` of a submission, worded as the library words a refused record.
fn conflict(workload: &Workload, i: usize, message: String) -> ApiError {
    let record = format!("job `{}` ({})", workload.jobs[i].id, workload.record_name(i));
    ApiError::new(409, InputError::new(REQUEST_SOURCE, record, "id", message).to_string())
}

/// The jobs of a submission: one job object, an array, or `{"jobs": [...]}`.
fn parse_jobs(text: &str) -> Result<Workload, ApiError> {
    let refuse = |e: gpuplace::Error| ApiError::new(400, e.to_string());
    let first = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']).chars().next();
    if first != Some('{') {
        return Workload::from_json(text, REQUEST_SOURCE).map_err(refuse);
    }
    // An object: a jobs file when it has a `jobs` key, else one job. Told apart without building
    // the document.
    #[derive(Deserialize)]
    struct Probe {
        jobs: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_str::<Probe>(text) {
        Ok(Probe { jobs: Some(_) }) => Workload::from_json(text, REQUEST_SOURCE).map_err(refuse),
        // One job: read as an array of one, so that it gets the file format's checks.
        Ok(Probe { jobs: None }) => {
            Workload::from_json(&format!("[{}]", text.trim_start_matches('\u{feff}')), REQUEST_SOURCE).map_err(refuse)
        }
        Err(e) => Err(ApiError::new(
            400,
            InputError::new(REQUEST_SOURCE, "document", "(top level)", format!("not JSON: {e}")).to_string(),
        )),
    }
}
