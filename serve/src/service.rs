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
use gpuplace::{BackendChoice, Day, Fleet, InputError, JobKind, Policy, Scheduler, Workload};
use serde::Deserialize;

use crate::api::{ApiError, JobState, JobView};
use crate::error::ServeError;
use crate::store::{Meta, Store, StoredJob};

/// How submitted jobs are named in errors.
pub const REQUEST_SOURCE: &str = "request";
/// The most jobs one submission may carry.
pub const MAX_SUBMISSION_JOBS: usize = 100_000;
/// The most jobs that may wait at once; a submission that would pass it is refused (429). Each
/// round places the whole waiting set, so this also bounds a round's work.
pub const MAX_WAITING: usize = 1_000_000;
/// The most jobs a listing returns (page on with `after`).
pub const MAX_LIST: usize = 10_000;

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

fn state_index(state: JobState) -> usize {
    JobState::ALL.iter().position(|&s| s == state).expect("every state is in ALL")
}

fn kind_index(kind: JobKind) -> usize {
    JobKind::ALL.iter().position(|&k| k == kind).expect("every kind is in ALL")
}

/// The service's state.
pub struct Service {
    scheduler: Scheduler,
    store: Store,
    entries: Vec<Entry>,
    by_id: HashMap<String, usize>,
    /// Submission numbers by state (index: [`JobState::ALL`]).
    by_state: [BTreeSet<usize>; 5],
    /// Jobs by state and kind.
    counts: [[u64; 4]; 5],
    /// Entries changed since the last commit.
    dirty: BTreeSet<usize>,
    /// Metadata to write with the next commit (a policy given again).
    meta_pending: Option<Meta>,
    /// Whether the next round has anything new to decide: jobs arrived or capacity came back.
    round_needed: bool,
    /// The placement date of the latest round: when the date moves on, waiting jobs whose day
    /// came (`not_before`, a cluster online) are tried again.
    last_round_date: Option<Day>,
    round: u64,
    counters: Counters,
    /// Test hook: commits left before the store is made to fail (None: never).
    fail_after_commits: Option<u64>,
}

impl Service {
    /// Opens the state directory and restores what it holds: every job with its state, and the
    /// capacity its placed jobs hold (each checked against the fleet). A new directory starts
    /// empty with `config`'s fleet and policy, written to the store before this returns. A
    /// damaged store, one of another fleet, or a stored placement that does not fit, is a
    /// [`ServeError::State`] and the directory is left as it is.
    pub fn open(config: ServiceConfig) -> Result<Service, ServeError> {
        let (store, meta) = Store::open(&config.state_dir)?;
        let path = store.path().to_path_buf();
        let state_error = |record: &str, message: String| ServeError::State {
            path: path.clone(),
            record: record.to_string(),
            message,
        };
        let (meta, new, meta_pending) = match (meta, config.fleet) {
            (None, None) => {
                return Err(state_error("(file)", "is a new state directory: give the fleet to start it with".into()));
            }
            (None, Some(fleet)) => {
                let policy = config.policy.unwrap_or_default();
                (Meta { fleet_json: fleet.to_json(), policy_json: policy.to_json(), round: 0 }, true, None)
            }
            (Some(meta), given) => {
                if let Some(given) = given
                    && given.to_json() != meta.fleet_json
                {
                    return Err(state_error(
                        "meta fleet",
                        "the state directory was started with another fleet; start a new state directory for this one, or leave out --fleet".into(),
                    ));
                }
                // A policy given again replaces the stored one for later decisions.
                match config.policy {
                    Some(policy) if policy.to_json() != meta.policy_json => {
                        let pending = Meta { policy_json: policy.to_json(), ..meta.clone() };
                        (pending.clone(), false, Some(pending))
                    }
                    _ => (meta, false, None),
                }
            }
        };
        // Always the fleet and policy as stored (read back from their JSON), so that a first run
        // and every restart decide on the very same values.
        let source = format!("{}: meta fleet", path.display());
        let fleet = Fleet::from_json(&meta.fleet_json, &source)
            .map_err(|e| state_error("meta fleet", format!("does not read back: {e}")))?;
        let source = format!("{}: meta policy", path.display());
        let policy = Policy::from_json(&meta.policy_json, &source)
            .map_err(|e| state_error("meta policy", format!("does not read back: {e}")))?;
        let scheduler = Scheduler::new(fleet, policy, config.backend)?;
        if new {
            // Durable before the server answers anything: a restart without --fleet finds it.
            store.write(Some(&meta), meta.round, [])?;
        }
        let mut service = Service {
            scheduler,
            store,
            entries: Vec::new(),
            by_id: HashMap::new(),
            by_state: Default::default(),
            counts: [[0; 4]; 5],
            dirty: BTreeSet::new(),
            meta_pending,
            round_needed: false,
            last_round_date: None,
            round: meta.round,
            counters: Counters::default(),
            fail_after_commits: None,
        };
        service.restore()?;
        // The first round works out the waiting jobs' reasons; it places nothing that the last
        // round before the restart could not (the capacity is the same), and writes only if so.
        service.round_needed = !service.by_state[state_index(JobState::Waiting)].is_empty();
        Ok(service)
    }

    fn restore(&mut self) -> Result<(), ServeError> {
        let Service { store, entries, by_id, by_state, counts, scheduler, round, .. } = self;
        let fleet_regions = scheduler.fleet().regions.clone();
        store.load_jobs(|number, stored| {
            if number != entries.len() as u64 {
                return Err(format!("is out of sequence: expected job {}", entries.len()));
            }
            let id = stored.job.id.clone();
            if by_id.insert(id.clone(), entries.len()).is_some() {
                return Err(format!("repeats the id `{}`", id.escape_debug()));
            }
            if !fleet_regions.contains(&stored.job.region) {
                return Err(format!("its region `{}` is not the fleet's", stored.job.region.escape_debug()));
            }
            match (stored.state, &stored.placed) {
                (JobState::Placed, Some((allocation, _))) => {
                    scheduler.restore(&id, allocation.clone()).map_err(|e| format!("its placement: {e}"))?;
                }
                (JobState::Placed, None) => return Err("is placed but holds nothing".into()),
                (_, Some(_)) => return Err(format!("is {} but holds a placement", stored.state.name())),
                (_, None) => {}
            }
            by_state[state_index(stored.state)].insert(entries.len());
            counts[state_index(stored.state)][kind_index(stored.job.kind)] += 1;
            *round = (*round).max(stored.round.unwrap_or(0));
            entries.push(Entry { stored, waiting_reason: None });
            Ok(())
        })?;
        // Waiting jobs must still compile (the policy may have changed): else every round would
        // fail. Checked here, naming the first that does not.
        let waiting: Vec<usize> = self.by_state[state_index(JobState::Waiting)].iter().copied().collect();
        if !waiting.is_empty() {
            let jobs = waiting.iter().map(|&n| self.entries[n].stored.job.clone()).collect();
            let workload = Workload::from_jobs(jobs, "<waiting>");
            let date = self.scheduler.placement_date(None);
            if let Err(e) = workload.compile(self.scheduler.fleet(), self.scheduler.policy(), date) {
                return Err(ServeError::State {
                    path: self.store.path().to_path_buf(),
                    record: "jobs".into(),
                    message: format!("a waiting job no longer compiles: {e}"),
                });
            }
        }
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
        self.by_state[state_index(JobState::Waiting)].len()
    }

    /// Jobs in `state` of `kind`.
    pub fn count(&self, state: JobState, kind: JobKind) -> u64 {
        self.counts[state_index(state)][kind_index(kind)]
    }

    /// The latest round's number.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// The placement date of a round.
    fn date(&self) -> Day {
        self.scheduler.placement_date(None)
    }

    fn set_state(&mut self, number: usize, state: JobState) {
        let entry = &mut self.entries[number];
        let (old, kind) = (entry.stored.state, kind_index(entry.stored.job.kind));
        self.by_state[state_index(old)].remove(&number);
        self.counts[state_index(old)][kind] -= 1;
        entry.stored.state = state;
        self.by_state[state_index(state)].insert(number);
        self.counts[state_index(state)][kind] += 1;
        self.dirty.insert(number);
    }

    /// Parses and accepts the jobs of `body`; see [`parse_jobs`] and [`Service::submit_workload`].
    pub fn submit(&mut self, body: &[u8]) -> Result<Vec<usize>, ApiError> {
        let workload = parse_jobs(body)?;
        self.submit_workload(workload)
    }

    /// Accepts `workload`'s jobs as waiting, or rejected when no cluster could ever hold one. All
    /// or none: a job the fleet refuses is 422 (naming the record and field), an id already known
    /// or repeated 409, a queue that would pass [`MAX_WAITING`] 429. Returns their submission
    /// numbers.
    pub fn submit_workload(&mut self, workload: Workload) -> Result<Vec<usize>, ApiError> {
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
        let usable: Vec<u64> = compiled
            .iter()
            .map(|record| usable_gpus(record, self.scheduler.fleet(), self.scheduler.ledger().state()))
            .collect();
        let waiting = self.waiting_count() + usable.iter().filter(|&&u| u > 0).count();
        if waiting > MAX_WAITING {
            return Err(ApiError::new(
                429,
                format!(
                    "request: document: jobs: {} jobs wait already; at most {MAX_WAITING} may wait: submit again as jobs finish",
                    self.waiting_count()
                ),
            ));
        }
        let mut numbers = Vec::with_capacity(workload.jobs.len());
        for (job, usable) in workload.jobs.into_iter().zip(usable) {
            let number = self.entries.len();
            let stored = if usable == 0 {
                StoredJob {
                    job,
                    state: JobState::Rejected,
                    placed: None,
                    round: None,
                    reason: Some("no cluster of the fleet could ever hold it (GPU model, HBM, trays, jurisdiction, provider or latency)".into()),
                }
            } else {
                self.round_needed = true;
                StoredJob { job, state: JobState::Waiting, placed: None, round: None, reason: None }
            };
            self.by_id.insert(stored.job.id.clone(), number);
            self.by_state[state_index(stored.state)].insert(number);
            self.counts[state_index(stored.state)][kind_index(stored.job.kind)] += 1;
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
        let &number = self
            .by_id
            .get(id)
            .ok_or_else(|| ApiError::new(404, format!("job `{}`: no such job", id.escape_debug())))?;
        match self.entries[number].stored.state {
            JobState::Placed => {
                self.scheduler.release(id).map_err(|e| ApiError::new(500, e.to_string()))?;
                self.entries[number].stored.placed = None;
                // Capacity came back: waiting jobs may fit now.
                self.round_needed |= self.waiting_count() > 0;
            }
            JobState::Waiting | JobState::Preempted => {}
            state @ (JobState::Finished | JobState::Rejected) => {
                return Err(ApiError::new(409, format!("job `{}`: it is already {}", id.escape_debug(), state.name())));
            }
        }
        self.set_state(number, JobState::Finished);
        let entry = &mut self.entries[number];
        entry.stored.round = None;
        entry.stored.reason = None;
        entry.waiting_reason = None;
        self.counters.finished += 1;
        Ok(number)
    }

    /// Whether a round has anything new to decide: jobs arrived, capacity came back, or the
    /// placement date moved on while jobs wait.
    pub fn round_needed(&self) -> bool {
        self.round_needed || (self.waiting_count() > 0 && self.last_round_date.is_some_and(|d| d != self.date()))
    }

    /// Places the waiting jobs on the live capacity, in the batch engine's decision order, exactly
    /// as `Scheduler::place` would place them as one workload (in submission order) on this state.
    pub fn run_round(&mut self) -> Result<(), ServeError> {
        self.round_needed = false;
        self.last_round_date = Some(self.date());
        if self.waiting_count() == 0 {
            return Ok(());
        }
        let started = std::time::Instant::now();
        self.round += 1;
        let numbers: Vec<usize> = self.by_state[state_index(JobState::Waiting)].iter().copied().collect();
        let workload =
            Workload::from_jobs(numbers.iter().map(|&n| self.entries[n].stored.job.clone()).collect(), "<waiting>");
        let placement = self.scheduler.place(&workload, None)?;
        for decision in &placement.decisions {
            let number = numbers[decision.job];
            match &decision.outcome {
                Outcome::Placed { allocation, score } => {
                    self.set_state(number, JobState::Placed);
                    let entry = &mut self.entries[number];
                    entry.stored.placed = Some((allocation.clone(), *score));
                    entry.stored.round = Some(self.round);
                    entry.waiting_reason = None;
                    self.counters.placed += 1;
                }
                Outcome::Unplaced { reason } => self.entries[number].waiting_reason = Some(Arc::clone(reason)),
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
        if let Some(left) = self.fail_after_commits.as_mut() {
            if *left == 0 {
                return Err(ServeError::Store {
                    path: self.store.path().to_path_buf(),
                    message: "made to fail (test hook)".into(),
                });
            }
            *left -= 1;
        }
        let entries = &self.entries;
        self.store.write(
            self.meta_pending.as_ref(),
            self.round,
            self.dirty.iter().map(|&n| (n as u64, &entries[n].stored)),
        )?;
        self.dirty.clear();
        self.meta_pending = None;
        Ok(())
    }

    /// Test hook: the commit after the next `commits` ones fails, as a full disk would make it.
    #[doc(hidden)]
    pub fn fail_after_commits(&mut self, commits: u64) {
        self.fail_after_commits = Some(commits);
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
        self.by_id
            .get(id)
            .map(|&n| self.view(n))
            .ok_or_else(|| ApiError::new(404, format!("job `{}`: no such job", id.escape_debug())))
    }

    /// Up to `limit` (at most [`MAX_LIST`]) jobs in `state` (every state when None) with a
    /// submission number above `after`, by submission number, and how many jobs are in `state`.
    pub fn list(&self, state: Option<JobState>, after: Option<u64>, limit: usize) -> (Vec<JobView>, u64) {
        let limit = limit.min(MAX_LIST);
        let from = after.map_or(0, |a| a.saturating_add(1)).min(usize::MAX as u64) as usize;
        match state {
            Some(state) => {
                let set = &self.by_state[state_index(state)];
                (set.range(from..).take(limit).map(|&n| self.view(n)).collect(), set.len() as u64)
            }
            None => {
                let end = from.saturating_add(limit).min(self.entries.len());
                ((from.min(end)..end).map(|n| self.view(n)).collect(), self.entries.len() as u64)
            }
        }
    }
}

/// 409 for job `i` of a submission, worded as the library words a refused record.
fn conflict(workload: &Workload, i: usize, message: String) -> ApiError {
    let record = format!("job `{}` ({})", workload.jobs[i].id.escape_debug(), workload.record_name(i));
    ApiError::new(409, InputError::new(REQUEST_SOURCE, record, "id", message).to_string())
}

/// The jobs of a submission body: one job object, an array, or `{"jobs": [...]}`, in the job file
/// format. 400 when it is not JSON or not jobs (a field missing, of the wrong type or unknown);
/// values are checked later, against the fleet.
pub fn parse_jobs(body: &[u8]) -> Result<Workload, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::new(400, "request: the body is not UTF-8"))?;
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
