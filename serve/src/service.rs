//! The service's state machine, without threads or sockets: the scheduler (fleet, policy, backend,
//! live ledger), every job the service accepted with its state, and the store. The server
//! ([`crate::server`]) feeds it batches of requests; a batch's changes are applied in memory,
//! waiting jobs are placed in one round, and everything is written to the store in one durable
//! transaction before any request of the batch is answered. A crash loses only unanswered
//! requests, and a restart restores exactly what was answered ([`Service::open`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gpuplace::engine::place::{Outcome, usable_gpus};
use gpuplace::engine::{PlacedOn, Reason};
use gpuplace::kernel::state::NodeState;
use gpuplace::{BackendChoice, Day, Fleet, InputError, JobKind, Policy, Scheduler, Tenants, Workload};
use serde::{Deserialize, Serialize};

use crate::api::{ApiError, FleetEvent, FleetView, JobState, JobView, NodeStateName, NodeView, SiteView};
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
    /// Whether a job that does not fit may evict placed jobs of strictly lower priority
    /// ([`gpuplace::Scheduler::preempt`]): they go back to the queue as `preempted`.
    pub preemption: bool,
    /// Tenants and their quotas (`docs/QUOTAS.md`); None: the state directory's, if it has any.
    /// Given, they replace the stored ones for later decisions (jobs placed keep their places, and
    /// every stored job must name a tenant of them).
    pub tenants: Option<Tenants>,
}

/// What fleet events changed, kept in the store's metadata and applied again at a restart before
/// the jobs' placements are restored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// By global node index: its state, and whether it failed since the fleet file was read (what
    /// the file had in use on it was then dropped).
    pub nodes: BTreeMap<u32, (NodeStateName, bool)>,
    /// By site index: its IT power capacity, W.
    pub power_w: BTreeMap<u32, u32>,
    /// By cluster index: the day it comes online.
    pub online: BTreeMap<u32, Day>,
}

/// The most events one request may carry.
pub const MAX_EVENTS: usize = 10_000;

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
    /// Time spent in rounds.
    pub round_time: Duration,
    /// Jobs evicted by preemption.
    pub preempted: u64,
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
    store: Arc<Store>,
    /// Every job accepted, by submission number. Boxed: growing the vector then moves pointers,
    /// not records of hundreds of bytes (at 131,072 jobs, a doubling would copy about 80 MB while
    /// every request waits).
    #[expect(clippy::vec_box, reason = "a Vec of large records copies them all when it grows")]
    entries: Vec<Box<Entry>>,
    /// Submission numbers by id. A B-tree, not a hash map: a hash map's growth rehashes every id
    /// while the requests of the batch wait (32 ms at 115,000 jobs on the 2-core machine of
    /// BENCHMARKS.md); a B-tree grows a node at a time.
    by_id: BTreeMap<String, usize>,
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
    /// The metadata as stored (with the latest overrides).
    meta: Meta,
    /// What fleet events changed.
    overrides: Overrides,
    /// Each node's state as the fleet file gives it.
    initial_nodes: Vec<NodeState>,
    /// See [`ServiceConfig::preemption`].
    preemption: bool,
    /// What the Kubernetes extender learned from requests: pods by UID, nodes' trays by name.
    kube: KubeCache,
    /// The pods of each gang bound through the extender (submission numbers), by group.
    groups: BTreeMap<String, BTreeSet<usize>>,
}

/// Pods seen by the extender's filter (bind names only the pod), most recent last, and the
/// trays of nodes seen whole (a request that names nodes only finds them here). B-trees, not hash
/// maps: a hash map's growth rehashes every key at once (at a million node names, a stall of the
/// whole server), a B-tree grows a node at a time.
#[derive(Default)]
struct KubeCache {
    pods: BTreeMap<String, crate::kube::PodJob>,
    order: std::collections::VecDeque<String>,
    nodes: BTreeMap<String, Result<crate::kube::Tray, String>>,
}

/// Pods the extender remembers between filter and bind (the oldest forgotten first).
const KUBE_PODS_KEPT: usize = 65_536;
/// Node names the extender remembers.
const KUBE_NODES_KEPT: usize = 1_000_000;

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
                let overrides_json = serde_json::to_string(&Overrides::default()).expect("serializes");
                (
                    Meta {
                        fleet_json: fleet.to_json(),
                        policy_json: policy.to_json(),
                        round: 0,
                        overrides_json,
                        tenants_json: config.tenants.as_ref().map(Tenants::to_json),
                    },
                    true,
                    None,
                )
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
                // A policy or tenants given again replace the stored ones for later decisions.
                let mut pending = meta.clone();
                if let Some(policy) = config.policy {
                    pending.policy_json = policy.to_json();
                }
                if let Some(tenants) = &config.tenants {
                    pending.tenants_json = Some(tenants.to_json());
                }
                if pending != meta { (pending.clone(), false, Some(pending)) } else { (meta, false, None) }
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
        let source = format!("{}: meta tenants", path.display());
        let tenants = meta
            .tenants_json
            .as_deref()
            .map(|json| Tenants::from_json(json, &source))
            .transpose()
            .map_err(|e| state_error("meta tenants", format!("does not read back: {e}")))?;
        let overrides: Overrides = serde_json::from_str(&meta.overrides_json)
            .map_err(|e| state_error("meta overrides", format!("does not read back: {e}")))?;
        let initial_nodes = fleet.initial_state().nodes.iter().map(|n| n.state).collect();
        let mut scheduler = Scheduler::new(fleet, policy, config.backend)?;
        scheduler.set_tenants(tenants)?;
        let initial_nodes: Vec<NodeState> = initial_nodes;
        apply_overrides(&mut scheduler, &overrides, &initial_nodes, false)
            .map_err(|m| state_error("meta overrides", m))?;
        if new {
            // Durable before the server answers anything: a restart without --fleet finds it.
            store.write(Some(&meta), meta.round, [])?;
        }
        let mut service = Service {
            scheduler,
            store: Arc::new(store),
            entries: Vec::new(),
            by_id: BTreeMap::new(),
            by_state: Default::default(),
            counts: [[0; 4]; 5],
            dirty: BTreeSet::new(),
            meta_pending,
            round_needed: false,
            last_round_date: None,
            round: meta.round,
            counters: Counters::default(),
            meta,
            overrides,
            initial_nodes,
            preemption: config.preemption,
            kube: KubeCache::default(),
            groups: BTreeMap::new(),
        };
        service.restore()?;
        apply_overrides(&mut service.scheduler, &service.overrides, &service.initial_nodes, true)
            .map_err(|m| state_error("meta overrides", m))?;
        // The first round works out the waiting jobs' reasons; it places nothing that the last
        // round before the restart could not (the capacity is the same), and writes only if so.
        service.round_needed = service.waiting_count() > 0;
        Ok(service)
    }

    fn restore(&mut self) -> Result<(), ServeError> {
        let Service { store, entries, by_id, by_state, counts, scheduler, round, groups, .. } = self;
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
                    scheduler
                        .restore_job(&stored.job, allocation.clone())
                        .map_err(|e| format!("its placement: {e}"))?;
                    if stored.node.is_some() {
                        scheduler.pin(&id).map_err(|e| format!("its placement: {e}"))?;
                    }
                }
                (JobState::Placed, None) => return Err("is placed but holds nothing".into()),
                (_, Some(_)) => return Err(format!("is {} but holds a placement", stored.state.name())),
                (_, None) => {}
            }
            if let (JobState::Placed, Some(group)) = (stored.state, &stored.group) {
                groups.entry(group.clone()).or_default().insert(entries.len());
            }
            by_state[state_index(stored.state)].insert(entries.len());
            counts[state_index(stored.state)][kind_index(stored.job.kind)] += 1;
            *round = (*round).max(stored.round.unwrap_or(0));
            entries.push(Box::new(Entry { stored, waiting_reason: None }));
            Ok(())
        })?;
        // Waiting jobs must still compile (the policy may have changed): else every round would
        // fail. Checked here, naming the first that does not.
        let waiting = self.queued();
        if !waiting.is_empty() {
            let jobs = waiting.iter().map(|&n| self.entries[n].stored.job.clone()).collect();
            let workload = Workload::from_jobs(jobs, "<waiting>");
            let date = self.date();
            if let Err(e) = workload.compile(self.scheduler.fleet(), self.scheduler.policy(), date) {
                return Err(ServeError::State {
                    path: self.store.path().to_path_buf(),
                    record: "jobs".into(),
                    message: format!("a waiting job no longer compiles: {e}"),
                });
            }
            // And have a tenant, when tenants are set (they may have been given anew).
            if let Some(Err(e)) = self.scheduler.tenants().map(|t| t.tenants_of(&workload)) {
                return Err(ServeError::State {
                    path: self.store.path().to_path_buf(),
                    record: "jobs".into(),
                    message: format!("a waiting job has no tenant of the tenants given: {e}"),
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

    /// Jobs waiting (those preempted and waiting again included).
    pub fn waiting_count(&self) -> usize {
        self.by_state[state_index(JobState::Waiting)].len() + self.by_state[state_index(JobState::Preempted)].len()
    }

    /// The numbers of the jobs a round decides: waiting and preempted, in submission order.
    fn queued(&self) -> Vec<usize> {
        let mut numbers: Vec<usize> = self.by_state[state_index(JobState::Waiting)]
            .iter()
            .chain(&self.by_state[state_index(JobState::Preempted)])
            .copied()
            .collect();
        numbers.sort_unstable();
        numbers
    }

    /// Jobs in `state` of `kind`.
    pub fn count(&self, state: JobState, kind: JobKind) -> u64 {
        self.counts[state_index(state)][kind_index(kind)]
    }

    /// The latest round's number.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// The placement date of a round: today, or the fleet's `as_of` while that is later. (A batch
    /// command places on `as_of` so that a file gives the same answer any day; a service lives in
    /// time, and jobs waiting for their `not_before` day or a cluster's online day are placed once
    /// it comes.)
    fn date(&self) -> Day {
        let today = Day::today();
        self.scheduler.fleet().as_of.map_or(today, |as_of| as_of.max(today))
    }

    fn set_state(&mut self, number: usize, state: JobState) {
        let entry = &mut self.entries[number];
        let (old, kind) = (entry.stored.state, kind_index(entry.stored.job.kind));
        if let Some(group) = &entry.stored.group {
            let members = self.groups.entry(group.clone()).or_default();
            if state == JobState::Placed {
                members.insert(number);
            } else {
                members.remove(&number);
                if members.is_empty() {
                    self.groups.remove(group);
                }
            }
        }
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
        // Why each job can never run, if it cannot: no cluster could ever hold it, or it is larger
        // than its tenant's quota plus borrowing limit.
        let mut never: Vec<Option<String>> = compiled
            .iter()
            .map(|record| {
                (usable_gpus(record, self.scheduler.fleet(), self.scheduler.ledger().state()) == 0).then(|| {
                    "no cluster of the fleet could ever hold it (GPU model, HBM, trays, jurisdiction, provider or latency)"
                        .to_string()
                })
            })
            .collect();
        if let Some(tenants) = self.scheduler.tenants() {
            let of = tenants.tenants_of(&workload).map_err(|e| ApiError::new(422, e.to_string()))?;
            for ((job, t), why) in workload.jobs.iter().zip(of).zip(&mut never) {
                let tenant = &tenants.tenants()[t as usize];
                if why.is_none() && tenant.limit_milli().is_some_and(|limit| job.gpu_milli_held() > limit) {
                    *why = Some(format!(
                        "it needs more GPUs than tenant `{}` may hold: its quota of {} plus borrowing limit of {}",
                        tenant.name,
                        tenant.quota_gpus,
                        tenant.borrow_limit_gpus.unwrap_or(0)
                    ));
                }
            }
        }
        let waiting = self.waiting_count() + never.iter().filter(|why| why.is_none()).count();
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
        for (job, never) in workload.jobs.into_iter().zip(never) {
            let number = self.entries.len();
            let stored = if let Some(why) = never {
                StoredJob {
                    job,
                    state: JobState::Rejected,
                    placed: None,
                    round: None,
                    reason: Some(why),
                    group: None,
                    node: None,
                }
            } else {
                self.round_needed = true;
                StoredJob {
                    job,
                    state: JobState::Waiting,
                    placed: None,
                    round: None,
                    reason: None,
                    group: None,
                    node: None,
                }
            };
            self.by_id.insert(stored.job.id.clone(), number);
            self.by_state[state_index(stored.state)].insert(number);
            self.counts[state_index(stored.state)][kind_index(stored.job.kind)] += 1;
            self.entries.push(Box::new(Entry { stored, waiting_reason: None }));
            self.dirty.insert(number);
            numbers.push(number);
        }
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
        let numbers = self.queued();
        let workload =
            Workload::from_jobs(numbers.iter().map(|&n| self.entries[n].stored.job.clone()).collect(), "<waiting>");
        // What `Scheduler::place` does, without copying the fleet's state before and after (a
        // round's largest fixed cost on a large fleet).
        let compiled = self.scheduler.compile(&workload, self.date())?;
        let all: Vec<usize> = (0..workload.jobs.len()).collect();
        let (mut decisions, _, _) =
            self.scheduler.place_compiled(&compiled, &all, gpuplace::engine::place::Reasons::Worded, &mut |_, _| {})?;
        let mut evicted = Vec::new();
        // Evictions by priority when asked for; with tenants, always those that take back what
        // a tenant borrowed for a job within its quota.
        if self.preemption || self.scheduler.tenants().is_some() {
            let unplaced: Vec<usize> =
                decisions.iter().filter(|d| matches!(d.outcome, Outcome::Unplaced { .. })).map(|d| d.job).collect();
            if !unplaced.is_empty() {
                let reasons = gpuplace::engine::place::Reasons::Worded;
                let pass = if self.preemption {
                    self.scheduler.preempt(&compiled, &unplaced, reasons)?
                } else {
                    self.scheduler.reclaim(&compiled, &unplaced, reasons)?
                };
                // The pass's decisions are the final ones of the jobs it decided (the order of
                // `decisions` does not matter below).
                let again: std::collections::HashSet<usize> = pass.decisions.iter().map(|d| d.job).collect();
                decisions.retain(|d| !again.contains(&d.job));
                decisions.extend(pass.decisions);
                evicted = pass.evictions;
            }
        }
        for decision in &decisions {
            let number = numbers[decision.job];
            match &decision.outcome {
                Outcome::Placed { allocation, score } => {
                    self.set_state(number, JobState::Placed);
                    let entry = &mut self.entries[number];
                    entry.stored.placed = Some((allocation.clone(), *score));
                    entry.stored.round = Some(self.round);
                    entry.stored.reason = None;
                    entry.waiting_reason = None;
                    self.counters.placed += 1;
                }
                Outcome::Unplaced { reason } => self.entries[number].waiting_reason = Some(Arc::clone(reason)),
                _ => {}
            }
        }
        // Jobs of earlier rounds evicted: released already; back to the queue as preempted, and
        // another round soon (they may fit elsewhere, or evict jobs of lower priority still).
        for eviction in evicted.into_iter().filter(|e| e.job.is_none()) {
            let number = self.by_id[&eviction.id];
            let by = &workload.jobs[eviction.by];
            self.set_state(number, JobState::Preempted);
            let entry = &mut self.entries[number];
            entry.stored.placed = None;
            entry.stored.round = None;
            entry.stored.reason = Some(if eviction.reclaim {
                format!(
                    "preempted in round {} by job `{}`, within its tenant's quota: this job's tenant held more than its quota",
                    self.round, by.id
                )
            } else {
                format!("preempted in round {} by job `{}` (priority {})", self.round, by.id, by.priority)
            });
            entry.waiting_reason = None;
            self.counters.preempted += 1;
            self.round_needed = true;
        }
        self.counters.rounds += 1;
        self.counters.round_time += started.elapsed();
        Ok(())
    }

    /// Writes every change since the last commit in one durable transaction. After an error the
    /// service must stop: what it holds in memory is ahead of the store.
    pub fn commit(&mut self) -> Result<(), ServeError> {
        match self.take_commit()? {
            Some(batch) => self.store.write_batch(&batch),
            None => Ok(()),
        }
    }

    /// Every change since the last commit, serialized as one batch for [`Store::write_batch`]
    /// (None when nothing changed), and forgotten here: the caller must write it, in the order
    /// batches were taken, before answering any request that saw those changes. The server's
    /// core takes a batch and hands it to its committer thread, so that the next batch is placed
    /// while this one is synced. An error (a record that does not serialize) means the service
    /// must stop.
    pub fn take_commit(&mut self) -> Result<Option<crate::store::Batch>, ServeError> {
        if self.dirty.is_empty() && self.meta_pending.is_none() {
            return Ok(None);
        }
        let entries = &self.entries;
        let batch = self.store.prepare(
            self.meta_pending.as_ref(),
            self.round,
            self.dirty.iter().map(|&n| (n as u64, &entries[n].stored)),
        )?;
        self.dirty.clear();
        self.meta_pending = None;
        Ok(Some(batch))
    }

    /// The store, for a thread that writes the batches of [`Service::take_commit`].
    pub fn store(&self) -> Arc<Store> {
        Arc::clone(&self.store)
    }

    /// Test hook: the store's write after the next `commits` ones fails, as a full disk would
    /// make it (in the server, on its committer thread).
    #[doc(hidden)]
    pub fn fail_after_commits(&mut self, commits: u64) {
        self.store.fail_after_writes(commits);
    }

    /// Gives back what placed job `number` holds and puts it back in the queue, saying why.
    fn requeue(&mut self, number: usize, reason: String) {
        let id = self.entries[number].stored.job.id.clone();
        self.scheduler.release(&id).expect("a placed job is running");
        if self.entries[number].stored.node.is_some() {
            // A pod Kubernetes runs: gpuplace cannot move it; Kubernetes reschedules it.
            self.set_state(number, JobState::Finished);
            let entry = &mut self.entries[number];
            entry.stored.placed = None;
            entry.stored.round = None;
            entry.stored.reason = Some(format!("{reason}; a pod bound through Kubernetes: finished here"));
            self.round_needed |= self.waiting_count() > 0;
            return;
        }
        self.set_state(number, JobState::Waiting);
        let entry = &mut self.entries[number];
        entry.stored.placed = None;
        entry.stored.round = None;
        entry.stored.reason = Some(reason);
        entry.waiting_reason = None;
        self.round_needed = true;
    }

    /// Applies fleet events in order: trays or racks ready, cordoned or failed (the jobs with a
    /// pod on a failed tray are requeued), a site's power (jobs there requeued, lowest priority
    /// then latest submitted first, until it fits), a cluster's online day. All or none: every
    /// event is checked before any is applied (422 for a name or index the fleet lacks, 409 for
    /// power below the fleet file's own load at the site). Returns the requeued jobs' numbers.
    pub fn apply_events(&mut self, events: &[FleetEvent]) -> Result<Vec<usize>, ApiError> {
        if events.is_empty() || events.len() > MAX_EVENTS {
            return Err(ApiError::new(422, format!("request: events: give 1 to {MAX_EVENTS} events")));
        }
        let fleet = self.scheduler.fleet();
        let refuse = |i: usize, field: &str, message: String| {
            ApiError::new(422, InputError::new(REQUEST_SOURCE, format!("event {i}"), field, message).to_string())
        };
        let cluster_of = |i: usize, name: &str| {
            fleet
                .clusters
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| refuse(i, "cluster", format!("unknown cluster `{}`", name.escape_debug())))
        };
        let rack_of = |i: usize, cluster: &str, rack: u32| -> Result<u32, ApiError> {
            let c = &fleet.clusters[cluster_of(i, cluster)?];
            if rack as usize >= c.racks.len() {
                return Err(refuse(i, "rack", format!("cluster `{}` has {} racks", c.name, c.racks.len())));
            }
            Ok((c.racks.start + rack as usize) as u32)
        };
        // Checked in full first.
        let mut resolved = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            resolved.push(match event {
                FleetEvent::Node { cluster, rack, node, state } => {
                    let r = rack_of(i, cluster, *rack)?;
                    let nodes = self.scheduler.ledger().state().racks[r as usize].nodes;
                    if *node >= nodes {
                        return Err(refuse(i, "node", format!("the rack has {nodes} nodes")));
                    }
                    Resolved::Nodes(r, *node..*node + 1, *state)
                }
                FleetEvent::Rack { cluster, rack, state } => {
                    let r = rack_of(i, cluster, *rack)?;
                    Resolved::Nodes(r, 0..self.scheduler.ledger().state().racks[r as usize].nodes, *state)
                }
                FleetEvent::SitePower { site, power_mw } => {
                    let s = fleet
                        .sites
                        .iter()
                        .position(|x| &x.name == site)
                        .ok_or_else(|| refuse(i, "site", format!("unknown site `{}`", site.escape_debug())))?;
                    let max = gpuplace::model::fleet::MAX_SITE_MW;
                    if !power_mw.is_finite() || *power_mw < 0.0 || *power_mw > max {
                        return Err(refuse(i, "power_mw", format!("{power_mw} is out of range: 0 to {max} MW")));
                    }
                    let watts = (power_mw * 1e6).round() as u32;
                    let jobs: u64 = self.scheduler.jobs_at_site(s as u32).iter().map(|(_, w)| u64::from(*w)).sum();
                    let own = u64::from(self.scheduler.ledger().site_power_drawn_w(s)).saturating_sub(jobs);
                    if u64::from(watts) < own {
                        return Err(ApiError::new(
                            409,
                            InputError::new(
                                REQUEST_SOURCE,
                                format!("event {i}"),
                                "power_mw",
                                format!("the fleet file's own load at `{site}` draws {own} W, more than {watts} W"),
                            )
                            .to_string(),
                        ));
                    }
                    Resolved::Power(s as u32, watts)
                }
                FleetEvent::ClusterOnline { cluster, online } => {
                    Resolved::Online(cluster_of(i, cluster)? as u32, *online)
                }
            });
        }
        // Who holds what, indexed once per request (a scan of every placed job per tray would
        // hold up the core). Jobs requeued by an earlier event of the request are skipped.
        let needs_index =
            resolved.iter().any(|e| matches!(e, Resolved::Nodes(_, _, NodeStateName::Failed) | Resolved::Power(..)));
        let mut on_node: HashMap<(u32, u32), Vec<usize>> = HashMap::new();
        let mut at_site: HashMap<u32, Vec<(usize, u32)>> = HashMap::new();
        if needs_index {
            for (id, allocation) in self.scheduler.placed() {
                let number = self.by_id[id];
                at_site.entry(allocation.site).or_default().push((number, allocation.power_w));
                for pod in &allocation.pods {
                    let holders = on_node.entry((pod.rack, pod.node)).or_default();
                    if holders.last() != Some(&number) {
                        holders.push(number);
                    }
                }
            }
        }
        let mut requeued = BTreeSet::new();
        for event in resolved {
            match event {
                Resolved::Nodes(rack, nodes, state) => {
                    let whole_rack = nodes.len() > 1;
                    for node in nodes {
                        let at = self.scheduler.ledger().state().racks[rack as usize].first_node + node;
                        let now = self.scheduler.ledger().state().nodes[at as usize].state;
                        // A rack cordoned leaves its failed trays failed (a `ready` repairs them).
                        if whole_rack && state == NodeStateName::Cordoned && now == NodeState::Failed {
                            continue;
                        }
                        if state == NodeStateName::Failed {
                            let mut holders = on_node.get(&(rack, node)).cloned().unwrap_or_default();
                            holders.sort_unstable();
                            holders.dedup();
                            for number in holders {
                                if self.entries[number].stored.state != JobState::Placed {
                                    continue;
                                }
                                let (cluster, index) = self.rack_name(rack);
                                self.requeue(
                                    number,
                                    format!("requeued: tray {node} of rack {index} of {cluster} failed"),
                                );
                                requeued.insert(number);
                            }
                        }
                        self.scheduler
                            .set_node_state(rack, node, state.state())
                            .expect("the node exists and the jobs on it were requeued");
                        let cleared =
                            state == NodeStateName::Failed || self.overrides.nodes.get(&at).is_some_and(|o| o.1);
                        if !cleared && state.state() == self.initial_nodes[at as usize] {
                            self.overrides.nodes.remove(&at);
                        } else {
                            self.overrides.nodes.insert(at, (state, cleared));
                        }
                    }
                }
                Resolved::Power(site, watts) => {
                    let mut jobs: Vec<(i32, usize, u32)> = at_site
                        .get(&site)
                        .into_iter()
                        .flatten()
                        .filter(|&&(n, _)| self.entries[n].stored.state == JobState::Placed)
                        .map(|&(n, w)| (self.entries[n].stored.job.priority, n, w))
                        .collect();
                    // Lowest priority first, then the latest submitted.
                    jobs.sort_unstable_by_key(|&(priority, n, _)| (priority, std::cmp::Reverse(n)));
                    let mut drawn = self.scheduler.ledger().site_power_drawn_w(site as usize);
                    let name = self.scheduler.fleet().sites[site as usize].name.clone();
                    for (_, number, w) in jobs {
                        if drawn <= watts {
                            break;
                        }
                        self.requeue(number, format!("requeued: the power of {name} fell to {watts} W"));
                        requeued.insert(number);
                        drawn -= w;
                    }
                    self.scheduler
                        .set_site_power(site, watts)
                        .expect("checked: the fleet file's own load fits, and jobs were requeued until the draw fits");
                    self.overrides.power_w.insert(site, watts);
                }
                Resolved::Online(cluster, day) => {
                    self.scheduler.set_cluster_online(cluster, day).expect("the cluster exists");
                    self.overrides.online.insert(cluster, day);
                }
            }
        }
        // Capacity may have grown: waiting jobs are tried again.
        self.round_needed = true;
        self.meta.overrides_json = serde_json::to_string(&self.overrides).expect("serializes");
        self.meta_pending = Some(self.meta.clone());
        Ok(requeued.into_iter().collect())
    }

    /// A global rack's cluster name and index in the cluster.
    fn rack_name(&self, rack: u32) -> (String, u32) {
        let fleet = self.scheduler.fleet();
        let slot = fleet.racks[rack as usize];
        (fleet.clusters[slot.cluster as usize].name.clone(), slot.index_in_cluster)
    }

    /// The fleet as it stands: sites (power, GPUs), trays not ready (the first `limit`), clusters
    /// whose online day an event set.
    pub fn fleet_view(&self, limit: usize) -> FleetView {
        let fleet = self.scheduler.fleet();
        let ledger = self.scheduler.ledger();
        let used = gpuplace::report::metrics::site_gpus_used(fleet, ledger.state());
        let free = gpuplace::report::metrics::site_gpus_free(fleet, ledger.state());
        let sites = fleet
            .sites
            .iter()
            .enumerate()
            .map(|(s, site)| SiteView {
                name: site.name.clone(),
                power_mw: f64::from(ledger.site_power_capacity_w()[s]) / 1e6,
                drawn_mw: f64::from(ledger.site_power_drawn_w(s)) / 1e6,
                gpus_used: used[s],
                gpus_free: free[s],
            })
            .collect();
        let state = ledger.state();
        let mut not_ready = Vec::new();
        let mut total = 0u64;
        for (r, rack) in state.racks.iter().enumerate() {
            for n in 0..rack.nodes {
                let cell = state.nodes[(rack.first_node + n) as usize];
                if cell.state != NodeState::Ready {
                    total += 1;
                    if not_ready.len() < limit {
                        let (cluster, index) = self.rack_name(r as u32);
                        not_ready.push(NodeView {
                            cluster,
                            rack: index,
                            node: n,
                            state: NodeStateName::of(cell.state),
                        });
                    }
                }
            }
        }
        let clusters_online =
            self.overrides.online.iter().map(|(&c, &day)| (fleet.clusters[c as usize].name.clone(), day)).collect();
        FleetView { sites, nodes_not_ready: not_ready, nodes_not_ready_total: total, clusters_online }
    }

    /// Job `id` as it was submitted.
    pub fn submitted_job(&self, id: &str) -> Option<&gpuplace::Job> {
        self.by_id.get(id).map(|&n| &self.entries[n].stored.job)
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
            // A preempted job says who evicted it and, once a round has tried it again, why it
            // still waits.
            reason: match (&entry.waiting_reason, &stored.reason) {
                (Some(now), Some(evicted)) if stored.state == JobState::Preempted => {
                    Some(format!("{evicted}; still waiting: {}", now.text))
                }
                (Some(now), _) => Some(now.text.clone()),
                (None, evicted) => evicted.clone(),
            },
        }
    }

    /// Why waiting job `id` is not placed, against the live capacity now: its best candidates,
    /// the racks rejected per constraint, the reason (the library's `explain_now`). 404 when
    /// unknown, 409 when it does not wait (a placed job's placement is in its view).
    pub fn explain(&self, id: &str) -> Result<gpuplace::engine::explain::Explanation, ApiError> {
        let &number = self
            .by_id
            .get(id)
            .ok_or_else(|| ApiError::new(404, format!("job `{}`: no such job", id.escape_debug())))?;
        let stored = &self.entries[number].stored;
        if !matches!(stored.state, JobState::Waiting | JobState::Preempted) {
            return Err(ApiError::new(
                409,
                format!("job `{}`: it is {}; only a waiting job is explained", id.escape_debug(), stored.state.name()),
            ));
        }
        self.scheduler.explain_now(&stored.job, Some(self.date())).map_err(|e| ApiError::new(500, e.to_string()))
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

/// An event with its names resolved to indices.
enum Resolved {
    Nodes(u32, std::ops::Range<u32>, NodeStateName),
    Power(u32, u32),
    Online(u32, Day),
}

/// Applies what fleet events changed at a restart. Before the placements are restored
/// (`after` false): failures (a tray that failed drops the fleet file's load on it, even when it
/// is ready or cordoned now), repairs, power (placements fit the power now), online days; and
/// every tray that is cordoned now — by an event or by the fleet file — is made ready, because pods
/// placed before a cordon stay on the cordoned tray and a placement is restored only on ready
/// trays. After (`after` true): those trays are cordoned again.
/// A candidate node of an extender request: its name, its tray or why it has none, and the
/// object as sent (whole-node requests).
struct Candidate {
    name: String,
    tray: Result<crate::kube::Tray, String>,
    object: Option<serde_json::Value>,
}

/// The extender's view of one request: the pod's job compiled (None for a pod without GPUs), its
/// gang, and the candidates.
struct KubeRequest {
    job: Option<(gpuplace::kernel::score::JobGpu, gpuplace::Job)>,
    group: Option<(String, u32)>,
    candidates: Vec<Candidate>,
    whole_nodes: bool,
}

/// Whether `tray` can take the pod compiled as `record` on `scheduler`'s capacity: Ok, or why not,
/// and whether no eviction changes that (true: unresolvable). `in_gang_rack`: the tray's rack is
/// one the pod's gang may use; `quota`: why its tenant may not take more now.
fn node_verdict(
    scheduler: &gpuplace::Scheduler,
    record: &gpuplace::kernel::score::JobGpu,
    in_gang_rack: bool,
    quota: Option<&String>,
    tray: crate::kube::Tray,
) -> Result<(), (bool, String)> {
    // Its tenant at its limit: no node now, but one may be once its jobs end.
    if let Some(quota) = quota {
        return Err((false, quota.clone()));
    }
    if !in_gang_rack {
        return Err((false, "its rack is not where the pod's gang is (or fits) now".to_string()));
    }
    let state = scheduler.ledger().state();
    let never = state.check(record, tray.rack as usize) & gpuplace::kernel::score::STATIC_REJECTS != 0;
    scheduler.check_node(record, tray.rack, tray.tray).map_err(|m| (never, m))
}

/// Where a gang's next pod may go.
enum GangRule {
    /// These racks (where its bound pods are).
    Racks(BTreeSet<u32>),
    /// Racks where the whole gang, compiled as one job of its pods, fits (None: it never does).
    Fits(Option<gpuplace::kernel::score::JobGpu>),
}

impl GangRule {
    /// Whether the gang's next pod may go to `rack` on `ledger`'s capacity. A gang not yet bound
    /// goes where placement would put it as one job: with its preferences (one NVLink domain, one
    /// block) while some rack meets them, else relaxed ([`gpuplace::engine::place::as_decided`]),
    /// so that the extender takes what `place` would.
    fn allows(&self, ledger: &gpuplace::engine::Ledger, rack: u32) -> bool {
        match self {
            GangRule::Racks(racks) => racks.contains(&rack),
            GangRule::Fits(None) => false,
            GangRule::Fits(Some(whole)) => {
                let decided = gpuplace::engine::place::as_decided(whole, ledger);
                ledger.state().check(&decided, rack as usize) == 0
            }
        }
    }
}

impl Service {
    /// Reads an extender request: remembers the pod (bind names only its UID) and the trays of
    /// whole nodes, resolves named ones from what it saw, compiles the pod's job.
    fn kube_request(&mut self, args: crate::kube::ExtenderArgs) -> Result<KubeRequest, ApiError> {
        use crate::kube::{CLIQUE_LABEL, node_meta, pod_job, tray_of};
        let pod = args.pod.ok_or_else(|| ApiError::new(400, "request: Pod: missing"))?;
        let fleet = self.scheduler.fleet();
        let pod_job = pod_job(fleet, &pod)?;
        let mut candidates = Vec::new();
        let whole_nodes = args.nodes.is_some();
        if let Some(list) = args.nodes {
            // Nodes of one NVLink domain (NVIDIA's clique label) must name one rack.
            let mut cliques: HashMap<String, u32> = HashMap::new();
            for object in list.items {
                let meta = node_meta(&object).map_err(|m| ApiError::new(400, format!("request: Nodes: {m}")))?;
                let mut tray = tray_of(fleet, &meta.labels);
                if let (Ok(t), Some(clique)) = (&tray, meta.labels.get(CLIQUE_LABEL)) {
                    let rack = *cliques.entry(clique.clone()).or_insert(t.rack);
                    if rack != t.rack {
                        tray = Err(format!(
                            "its NVLink clique `{clique}` is another node's rack too: label the domain's nodes with one rack"
                        ));
                    }
                }
                if self.kube.nodes.len() < KUBE_NODES_KEPT || self.kube.nodes.contains_key(&meta.name) {
                    self.kube.nodes.insert(meta.name.clone(), tray.clone());
                }
                candidates.push(Candidate { name: meta.name, tray, object: Some(object) });
            }
        } else {
            for name in args.node_names.unwrap_or_default() {
                let tray = self.kube.nodes.get(&name).cloned().unwrap_or_else(|| {
                    Err("gpuplace has not seen this node's labels: configure the extender with nodeCacheCapable: false".into())
                });
                candidates.push(Candidate { name, tray, object: None });
            }
        }
        let uid = pod.metadata.uid.clone();
        if !uid.is_empty() && !self.kube.pods.contains_key(&uid) {
            self.kube.order.push_back(uid.clone());
            if self.kube.order.len() > KUBE_PODS_KEPT
                && let Some(old) = self.kube.order.pop_front()
            {
                self.kube.pods.remove(&old);
            }
        }
        let group = pod_job.group.clone();
        let job = match &pod_job.job {
            None => None,
            Some(job) => {
                let source = format!("pod `{}`", job.id.escape_debug());
                let workload = Workload::from_jobs(vec![job.clone()], &source);
                let compiled =
                    self.scheduler.compile(&workload, self.date()).map_err(|e| ApiError::new(422, e.to_string()))?;
                Some((compiled.jobs[0], job.clone()))
            }
        };
        if !uid.is_empty() {
            self.kube.pods.insert(uid, pod_job);
        }
        Ok(KubeRequest { job, group, candidates, whole_nodes })
    }

    /// The racks a gang's next pod may use: those of its pods already bound (the same rack when
    /// the gang fits one NVLink domain, else the same cluster), or, before the first, racks where
    /// all of its pods fit now. None when any rack will do (no gang).
    fn group_racks(&self, job: &gpuplace::Job, group: &Option<(String, u32)>) -> Option<BTreeSet<u32>> {
        let ledger = self.scheduler.ledger();
        match self.gang_rule(job, group)? {
            GangRule::Racks(racks) => Some(racks),
            GangRule::Fits(None) => Some(BTreeSet::new()),
            GangRule::Fits(Some(whole)) => {
                // Relaxed once for all racks, as `GangRule::allows` would for each.
                let decided = gpuplace::engine::place::as_decided(&whole, ledger);
                let state = ledger.state();
                Some((0..state.racks.len() as u32).filter(|&r| state.check(&decided, r as usize) == 0).collect())
            }
        }
    }

    /// Where a gang's next pod may go (see [`Service::group_racks`]); None for a pod of no gang.
    fn gang_rule(&self, job: &gpuplace::Job, group: &Option<(String, u32)>) -> Option<GangRule> {
        let (name, size) = group.as_ref()?;
        let fleet = self.scheduler.fleet();
        let bound: Vec<u32> = self
            .groups
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|&n| self.entries[n].stored.placed.as_ref().map(|(a, _)| a.anchor()))
            .collect();
        let rack_gpus = |r: u32| {
            let cluster = &fleet.clusters[fleet.racks[r as usize].cluster as usize];
            fleet.rack_types[cluster.rack_type].gpus
        };
        if let Some(&first) = bound.first() {
            if u64::from(*size) * u64::from(job.gpus) <= u64::from(rack_gpus(first)) {
                return Some(GangRule::Racks(bound.into_iter().collect()));
            }
            let cluster = fleet.racks[first as usize].cluster;
            let racks = &fleet.clusters[cluster as usize].racks;
            return Some(GangRule::Racks((racks.start as u32..racks.end as u32).collect()));
        }
        // Before the first pod: where the whole gang fits, as one job of its pods.
        let mut whole = job.clone();
        whole.gpus = job.gpus.saturating_mul(*size);
        whole.pods = Some(*size);
        let workload = Workload::from_jobs(vec![whole], "<gang>");
        Some(GangRule::Fits(self.scheduler.compile(&workload, self.date()).ok().map(|compiled| compiled.jobs[0])))
    }

    /// The extender's filter: the candidate nodes that can take the pod now (see
    /// docs/KUBERNETES.md); the others with why, as failed (capacity: preemption may help) or
    /// unresolvable (not a gpuplace tray, or a constraint of the pod no eviction changes).
    pub fn kube_filter(&mut self, args: crate::kube::ExtenderArgs) -> crate::kube::ExtenderFilterResult {
        use crate::kube::{ExtenderFilterResult, NodeList};
        let request = match self.kube_request(args) {
            Ok(request) => request,
            Err(e) => return ExtenderFilterResult { error: e.message, ..ExtenderFilterResult::default() },
        };
        let mut result = ExtenderFilterResult::default();
        let (mut names, mut objects) = (Vec::new(), Vec::new());
        let allowed = request.job.as_ref().and_then(|(_, job)| self.group_racks(job, &request.group));
        let quota = request.job.as_ref().and_then(|(_, job)| self.quota_refusal(job));
        for candidate in request.candidates {
            let verdict = match (&request.job, &candidate.tray) {
                (None, _) => Ok(()),
                (Some(_), Err(why)) => Err((true, why.clone())),
                (Some((record, _)), Ok(tray)) => {
                    let in_gang_rack = allowed.as_ref().is_none_or(|racks| racks.contains(&tray.rack));
                    node_verdict(&self.scheduler, record, in_gang_rack, quota.as_ref(), *tray)
                }
            };
            match verdict {
                Ok(()) => {
                    names.push(candidate.name);
                    objects.extend(candidate.object);
                }
                Err((true, why)) => {
                    result.failed_and_unresolvable_nodes.insert(candidate.name, why);
                }
                Err((false, why)) => {
                    result.failed_nodes.insert(candidate.name, why);
                }
            }
        }
        if request.whole_nodes {
            result.nodes = Some(NodeList { items: objects });
        } else {
            result.node_names = Some(names);
        }
        result
    }

    /// The extender's preempt (docs/KUBERNETES.md): of the nodes where kube-scheduler would make
    /// room for the pod by evicting the victims it names, those gpuplace agrees to, each with its
    /// victims as given. A node is dropped when it is not a gpuplace tray; when a victim has the
    /// pod's priority or higher; or when, with the victims gpuplace placed there given back, the
    /// pod still could not go there (the filter's checks: its rack's constraints, the site's
    /// power, the tray's GPUs, CPU and memory, the gang's rack, the tenant's limit once the
    /// victims of its tenant are gone). Of the others only the least harmful are kept (the rule
    /// of gpuplace's own preemption, after kube-scheduler's first), compared in this order: fewer
    /// PodDisruptionBudgets violated, fewer jobs ended (a victim of a gang ends every placed pod
    /// of its gang), the highest victim priority lower, fewer GPUs given back; kube-scheduler
    /// picks among them.
    /// Nothing changes: what the victims hold is given back in the ledger only while the checks
    /// run ([`gpuplace::Scheduler::with_released`]).
    pub fn kube_preempt(
        &mut self,
        args: crate::kube::ExtenderPreemptionArgs,
    ) -> Result<crate::kube::ExtenderPreemptionResult, ApiError> {
        use crate::kube::{ExtenderArgs, ExtenderPreemptionResult, MetaPod, MetaVictims};
        /// A victim: its UID, its gpuplace job id when the pod came whole, its priority if known.
        struct Victim {
            uid: String,
            id: Option<String>,
            priority: Option<i32>,
        }
        let mut offered: Vec<(String, Vec<Victim>, i64)> = Vec::new();
        if let Some(map) = args.node_name_to_victims {
            for (node, victims) in map {
                let pods = victims.pods.into_iter().map(|pod| {
                    let m = pod.metadata;
                    // As a bound pod's job is named (`pod_job`): no namespace is `default`.
                    let namespace = if m.namespace.is_empty() { "default" } else { m.namespace.as_str() };
                    let id = format!("{namespace}/{}/{}", m.name, m.uid);
                    Victim { uid: m.uid, id: Some(id), priority: pod.spec.priority }
                });
                offered.push((node, pods.collect(), victims.num_pdb_violations));
            }
        } else if let Some(map) = args.node_name_to_meta_victims {
            for (node, victims) in map {
                let pods = victims.pods.into_iter().map(|pod| Victim { uid: pod.uid, id: None, priority: None });
                offered.push((node, pods.collect(), victims.num_pdb_violations));
            }
        }
        let as_given = |victims: &[Victim], pdb: i64| MetaVictims {
            pods: victims.iter().map(|v| MetaPod { uid: v.uid.clone() }).collect(),
            num_pdb_violations: pdb,
        };
        // kube-scheduler refuses a node answered with no victims.
        offered.retain(|(_, victims, _)| !victims.is_empty());
        let names = offered.iter().map(|(node, _, _)| node.clone()).collect();
        let request = self.kube_request(ExtenderArgs { pod: args.pod, nodes: None, node_names: Some(names) })?;
        let Some((record, job)) = request.job.clone() else {
            // A pod without GPUs: gpuplace has no say.
            let all = offered.iter().map(|(node, victims, pdb)| (node.clone(), as_given(victims, *pdb)));
            return Ok(ExtenderPreemptionResult { node_name_to_meta_victims: all.collect() });
        };
        /// PodDisruptionBudgets violated, jobs ended, the highest victim priority, GPUs given back.
        type Harm = (i64, u64, i64, u64);
        let mut kept: Vec<(Harm, String, MetaVictims)> = Vec::new();
        // Where the pod's gang may go, worked out once.
        let gang = self.gang_rule(&job, &request.group);
        // A gang's harm: its placed pods, their highest priority, their GPUs.
        let mut gang_harm: BTreeMap<String, (u64, i64, u64)> = BTreeMap::new();
        for ((node, victims, pdb), candidate) in offered.iter().zip(&request.candidates) {
            let Ok(tray) = candidate.tray else { continue };
            let mut known: Vec<usize> = Vec::new();
            let (mut ended, mut top, mut gpus) = (0u64, i64::MIN, 0u64);
            let mut gangs = BTreeSet::new();
            let mut too_high = false;
            let mut seen = BTreeSet::new();
            // A pod named twice is one victim.
            for victim in victims.iter().filter(|v| seen.insert(v.uid.as_str())) {
                // A victim named by UID only is found through the pods the extender remembers.
                let id = victim.id.clone().or_else(|| {
                    let pod = self.kube.pods.get(&victim.uid)?.job.as_ref()?;
                    Some(format!("{}/{}", pod.id, victim.uid))
                });
                let number = id.and_then(|id| self.by_id.get(&id).copied()).filter(|&n| {
                    let stored = &self.entries[n].stored;
                    stored.state == JobState::Placed && stored.node.as_deref() == Some(node.as_str())
                });
                let priority = number.map(|n| self.entries[n].stored.job.priority).or(victim.priority);
                if priority.is_some_and(|p| p >= job.priority) {
                    too_high = true;
                    break;
                }
                let Some(n) = number else {
                    // Not a pod gpuplace placed: one eviction, no GPUs of gpuplace's.
                    ended += 1;
                    top = top.max(priority.map_or(i64::MIN, i64::from));
                    continue;
                };
                if known.contains(&n) {
                    continue;
                }
                known.push(n);
                let stored = &self.entries[n].stored;
                let (jobs, highest, held) = match &stored.group {
                    Some(group) if gangs.insert(group.clone()) => {
                        // Worked out once per request, however many nodes name the gang.
                        *gang_harm.entry(group.clone()).or_insert_with(|| {
                            let members = self.groups[group]
                                .iter()
                                .map(|&m| &self.entries[m].stored)
                                .filter(|member| member.state == JobState::Placed);
                            members.fold((0, i64::MIN, 0), |(jobs, highest, held), member| {
                                let gpus = member.placed.as_ref().map_or(0, |(a, _)| u64::from(a.gpus()));
                                (jobs + 1, highest.max(i64::from(member.job.priority)), held + gpus)
                            })
                        })
                    }
                    Some(_) => (0, i64::MIN, 0),
                    None => (
                        1,
                        i64::from(stored.job.priority),
                        stored.placed.as_ref().map_or(0, |(a, _)| u64::from(a.gpus())),
                    ),
                };
                ended += jobs;
                top = top.max(highest);
                gpus += held;
            }
            if too_high {
                continue;
            }
            // The filter's checks on the capacity as it would be without the victims gpuplace
            // placed there (the scheduler gives it back and takes it back: nothing else changes).
            let quota = self.quota_refusal_after(&job, &known);
            let ids: Vec<String> = known.iter().map(|&n| self.entries[n].stored.job.id.clone()).collect();
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let verdict = self
                .scheduler
                .with_released(&ids, |scheduler| {
                    let in_gang_rack = gang.as_ref().is_none_or(|rule| rule.allows(scheduler.ledger(), tray.rack));
                    node_verdict(scheduler, &record, in_gang_rack, quota.as_ref(), tray)
                })
                .map_err(|e| ApiError::new(500, e.to_string()))?;
            if verdict.is_ok() {
                kept.push(((*pdb, ended, top, gpus), node.clone(), as_given(victims, *pdb)));
            }
        }
        let least = kept.iter().map(|(harm, _, _)| *harm).min();
        let chosen = kept.into_iter().filter(|(harm, _, _)| Some(*harm) == least).map(|(_, node, v)| (node, v));
        Ok(ExtenderPreemptionResult { node_name_to_meta_victims: chosen.collect() })
    }

    /// The jobs of pods bound through the extender and placed now, by id (`NAMESPACE/NAME/UID`).
    pub fn kube_bound(&self) -> Vec<String> {
        self.by_state[state_index(JobState::Placed)]
            .iter()
            .map(|&n| &self.entries[n].stored)
            .filter(|stored| stored.node.is_some())
            .map(|stored| stored.job.id.clone())
            .collect()
    }

    /// Finishes the jobs `bound` names (ids from [`Service::kube_bound`], taken before `pods` was
    /// listed) whose pods ended: not in `pods` (deleted), in it under another UID (a new pod of
    /// that name), or in phase `Succeeded` or `Failed`. A job no longer placed, or one whose pod
    /// runs, is left as it is. Returns the submission numbers finished, or the first error of a
    /// job that could not be finished (the others are finished all the same).
    pub fn kube_sync(&mut self, bound: &[String], pods: &[crate::client::PodSeen]) -> Result<Vec<usize>, ApiError> {
        let seen: HashMap<(&str, &str), &crate::client::PodSeen> =
            pods.iter().map(|p| ((p.namespace.as_str(), p.name.as_str()), p)).collect();
        let mut finished = Vec::new();
        let mut failure = None;
        for id in bound {
            let Some(&number) = self.by_id.get(id) else { continue };
            let stored = &self.entries[number].stored;
            if stored.state != JobState::Placed || stored.node.is_none() {
                continue;
            }
            let mut parts = id.splitn(3, '/');
            let (Some(namespace), Some(name), Some(uid)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let why = match seen.get(&(namespace, name)) {
                None => "its pod is gone from the Kubernetes API server".to_string(),
                Some(pod) if pod.uid != uid => {
                    "its pod is gone from the Kubernetes API server (a new pod has its name)".to_string()
                }
                Some(pod) if matches!(pod.phase.as_str(), "Succeeded" | "Failed") => {
                    format!("its pod ended ({})", pod.phase)
                }
                Some(_) => continue,
            };
            // One job that cannot be finished does not keep the others placed.
            match self.finish(id) {
                Ok(_) => {
                    self.entries[number].stored.reason = Some(why);
                    finished.push(number);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        failure.map_or(Ok(finished), Err)
    }

    /// Why `job` may not be placed now for its tenant's quota (its tenant would pass its quota
    /// plus borrowing limit), with tenants set; None otherwise.
    fn quota_refusal(&self, job: &gpuplace::Job) -> Option<String> {
        self.quota_refusal_after(job, &[])
    }

    /// [`Service::quota_refusal`] once the placed jobs `evicted` (submission numbers) gave back
    /// what they hold: those of the job's tenant count no more.
    fn quota_refusal_after(&self, job: &gpuplace::Job, evicted: &[usize]) -> Option<String> {
        let tenants = self.scheduler.tenants()?;
        let t = match tenants.tenant_of(job) {
            Ok(t) => t as usize,
            Err(why) => return Some(why),
        };
        let freed: u64 = evicted
            .iter()
            .map(|&n| &self.entries[n].stored.job)
            .filter(|victim| tenants.tenant_of(victim).is_ok_and(|v| v as usize == t))
            .map(gpuplace::Job::gpu_milli_held)
            .sum();
        let held = self.scheduler.tenant_held_milli()[t].saturating_sub(freed);
        let (spec, milli) = (&tenants.tenants()[t], job.gpu_milli_held());
        let over = spec.limit_milli().is_some_and(|limit| held + milli > limit);
        over.then(|| Reason::quota(spec, held, milli).text)
    }

    /// The extender's prioritize: each candidate node's score, 0 to 10: up to 8 for its rack's
    /// score by the policy (the best candidate rack 8, the others in proportion, rounded down),
    /// plus 2 for the candidate trays of a rack with the fewest free GPUs (best fit within the
    /// rack). Nodes that cannot take the pod score 0; a pod without GPUs scores 0 everywhere.
    pub fn kube_prioritize(
        &mut self,
        args: crate::kube::ExtenderArgs,
    ) -> Result<Vec<crate::kube::HostPriority>, ApiError> {
        use crate::kube::{HostPriority, MAX_EXTENDER_PRIORITY};
        let request = self.kube_request(args)?;
        let Some((record, job)) = &request.job else {
            return Ok(request.candidates.into_iter().map(|c| HostPriority { host: c.name, score: 0 }).collect());
        };
        let allowed = self.group_racks(job, &request.group);
        let state = self.scheduler.ledger().state();
        // Each feasible candidate: its rack's score and its tray's free GPUs.
        let feasible: Vec<Option<(u32, u32, u32)>> = request
            .candidates
            .iter()
            .map(|c| {
                let tray = c.tray.as_ref().ok()?;
                if allowed.as_ref().is_some_and(|racks| !racks.contains(&tray.rack)) {
                    return None;
                }
                self.scheduler.check_node(record, tray.rack, tray.tray).ok()?;
                let free =
                    state.node_table[(state.racks[tray.rack as usize].first_node + tray.tray) as usize].free_gpus;
                Some((tray.rack, self.scheduler.rack_score(record, tray.rack), free))
            })
            .collect();
        let best = feasible.iter().flatten().map(|&(_, score, _)| score).max().unwrap_or(0);
        let mut tightest: HashMap<u32, u32> = HashMap::new();
        for &(rack, _, free) in feasible.iter().flatten() {
            let least = tightest.entry(rack).or_insert(free);
            *least = (*least).min(free);
        }
        Ok(request
            .candidates
            .into_iter()
            .zip(feasible)
            .map(|(c, f)| {
                let score = f.map_or(0, |(rack, score, free)| {
                    let rack_part = if best == 0 { 8 } else { u64::from(score) * 8 / u64::from(best) } as i64;
                    rack_part + if tightest[&rack] == free { 2 } else { 0 }
                });
                HostPriority { host: c.name, score: score.min(MAX_EXTENDER_PRIORITY) }
            })
            .collect())
    }

    /// Gives back what the bind of `args` holds (its Binding could not be created): the job is
    /// finished; a later bind of the pod holds again. Nothing when it holds nothing there.
    pub fn kube_unbind(&mut self, args: &crate::kube::ExtenderBindingArgs) -> Result<(), ApiError> {
        // The job's id from the pod seen, or (forgotten since) from the binding's names.
        let id = match self.kube.pods.get(&args.pod_uid) {
            Some(pod) => match &pod.job {
                Some(job) => format!("{}/{}", job.id, args.pod_uid),
                None => return Ok(()),
            },
            None => format!("{}/{}/{}", args.pod_namespace, args.pod_name, args.pod_uid),
        };
        let Some(&number) = self.by_id.get(&id) else { return Ok(()) };
        let stored = &self.entries[number].stored;
        if stored.state == JobState::Placed && stored.node.as_deref() == Some(args.node.as_str()) {
            self.finish(&id)?;
            self.entries[number].stored.reason = Some("its Binding could not be created".into());
        }
        Ok(())
    }

    /// The extender's bind, in gpuplace: the pod (seen by an earlier filter or prioritize) holds
    /// its GPUs on the node from now on, as placed job `NAMESPACE/NAME/UID`, never moved or evicted
    /// by gpuplace; finish it when the pod ends. 404 for a pod not seen, 409 for one bound already,
    /// 422 when the node cannot take it now. Returns the job's submission number, or None for a
    /// pod without GPUs (nothing to hold). The caller then binds the pod in Kubernetes.
    pub fn kube_bind(&mut self, args: &crate::kube::ExtenderBindingArgs) -> Result<Option<usize>, ApiError> {
        // The UID becomes part of the job's id: a UUID, as the API server makes them.
        let uid = &args.pod_uid;
        if uid.is_empty() || uid.len() > 128 || !uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ApiError::new(422, format!("request: PodUID: `{}` is not a UID", uid.escape_debug())));
        }
        let pod = self.kube.pods.get(&args.pod_uid).cloned().ok_or_else(|| {
            ApiError::new(
                404,
                format!(
                    "pod `{}/{}` (UID {}): not seen by filter, prioritize or preempt",
                    args.pod_namespace.escape_debug(),
                    args.pod_name.escape_debug(),
                    args.pod_uid.escape_debug()
                ),
            )
        })?;
        let Some(mut job) = pod.job else { return Ok(None) };
        job.id = format!("{}/{}", job.id, args.pod_uid);
        // Known already: a retry of a bind that holds (it answers as the first did), a bind again
        // after a hold was given back (the same entry holds again), else a conflict.
        // A hold kept on another node (its Binding's outcome was unknown): kube-scheduler binds
        // the pod again, so it is not bound there; the hold moves (given back here, taken below,
        // or restored if the new node cannot take it).
        let mut again = None;
        let mut moved_from: Option<(gpuplace::engine::Allocation, u32, String)> = None;
        if let Some(&number) = self.by_id.get(&job.id) {
            let stored = &self.entries[number].stored;
            match (stored.state, &stored.node) {
                (JobState::Placed, Some(node)) if *node == args.node => return Ok(Some(number)),
                (JobState::Placed, Some(node)) => {
                    let (allocation, score) = stored.placed.clone().expect("a placed job holds");
                    moved_from = Some((allocation, score, node.clone()));
                    again = Some(number);
                }
                (JobState::Finished, Some(_)) => again = Some(number),
                _ => {
                    return Err(ApiError::new(
                        409,
                        format!("job `{}`: the pod is known already", job.id.escape_debug()),
                    ));
                }
            }
        }
        if moved_from.is_some() {
            self.scheduler.release(&job.id).map_err(|e| ApiError::new(500, e.to_string()))?;
        }
        let restore_old = |service: &mut Service| {
            if let Some((allocation, _, _)) = &moved_from {
                let stored = service.entries[again.expect("moved")].stored.job.clone();
                // Its tray may have been cordoned since: a cordon stops new pods, not this hold.
                service.scheduler.take_back_job(&stored, allocation.clone()).expect("its capacity was just given back");
                service.scheduler.pin(&job.id).expect("restored");
            }
        };
        let held = (|| {
            let tray = self
                .kube
                .nodes
                .get(&args.node)
                .cloned()
                .unwrap_or_else(|| Err("gpuplace has not seen this node's labels".into()))
                .map_err(|m| ApiError::new(422, format!("node `{}`: {m}", args.node.escape_debug())))?;
            if let Some(racks) = self.group_racks(&job, &pod.group)
                && !racks.contains(&tray.rack)
            {
                return Err(ApiError::new(
                    422,
                    format!(
                        "node `{}`: its rack is not where the pod's gang is (or fits) now",
                        args.node.escape_debug()
                    ),
                ));
            }
            let workload = Workload::from_jobs(vec![job.clone()], "<pod>");
            let compiled =
                self.scheduler.compile(&workload, self.date()).map_err(|e| ApiError::new(422, e.to_string()))?;
            let allocation = self
                .scheduler
                .place_on_node(&compiled, 0, tray.rack, tray.tray)
                .map_err(|e| ApiError::new(422, e.to_string()))?;
            Ok((allocation, self.scheduler.rack_score(&compiled.jobs[0], tray.rack)))
        })();
        let (allocation, score) = match held {
            Ok(held) => held,
            Err(e) => {
                restore_old(self);
                return Err(e);
            }
        };
        if let Some(number) = again {
            let entry = &mut self.entries[number];
            entry.stored.placed = Some((allocation, score));
            entry.stored.round = Some(self.round);
            entry.stored.reason = None;
            entry.stored.node = Some(args.node.clone());
            self.set_state(number, JobState::Placed);
            return Ok(Some(number));
        }
        let number = self.entries.len();
        let stored = StoredJob {
            job,
            state: JobState::Placed,
            placed: Some((allocation, score)),
            round: Some(self.round),
            reason: None,
            group: pod.group.map(|(name, _)| name),
            node: Some(args.node.clone()),
        };
        self.by_id.insert(stored.job.id.clone(), number);
        self.by_state[state_index(JobState::Placed)].insert(number);
        self.counts[state_index(JobState::Placed)][kind_index(stored.job.kind)] += 1;
        if let Some(group) = &stored.group {
            self.groups.entry(group.clone()).or_default().insert(number);
        }
        self.entries.push(Box::new(Entry { stored, waiting_reason: None }));
        self.dirty.insert(number);
        Ok(Some(number))
    }
}

fn apply_overrides(
    scheduler: &mut Scheduler,
    overrides: &Overrides,
    initial: &[NodeState],
    after: bool,
) -> Result<(), String> {
    let firsts: Vec<u32> = scheduler.ledger().state().racks.iter().map(|r| r.first_node).collect();
    let nodes = scheduler.ledger().state().nodes.len() as u32;
    let locate = |at: u32| -> Result<(u32, u32), String> {
        if at >= nodes {
            return Err(format!("node {at} does not exist"));
        }
        let rack = firsts.partition_point(|&f| f <= at) as u32 - 1;
        Ok((rack, at - firsts[rack as usize]))
    };
    let set = |scheduler: &mut Scheduler, at: u32, state: NodeState| -> Result<(), String> {
        let (rack, node) = locate(at)?;
        scheduler.set_node_state(rack, node, state).map_err(|e| e.to_string())
    };
    // Every tray cordoned now: by an override, or by the fleet file with none.
    let mut cordoned: Vec<u32> =
        overrides.nodes.iter().filter(|(_, (state, _))| *state == NodeStateName::Cordoned).map(|(&at, _)| at).collect();
    cordoned.extend(
        initial
            .iter()
            .enumerate()
            .filter(|&(at, &state)| state == NodeState::Cordoned && !overrides.nodes.contains_key(&(at as u32)))
            .map(|(at, _)| at as u32),
    );
    if after {
        for at in cordoned {
            set(scheduler, at, NodeState::Cordoned)?;
        }
        return Ok(());
    }
    for (&at, &(state, cleared)) in &overrides.nodes {
        if cleared {
            set(scheduler, at, NodeState::Failed)?;
        }
        let now = if state == NodeStateName::Cordoned { NodeState::Ready } else { state.state() };
        set(scheduler, at, now)?;
    }
    for &at in &cordoned {
        set(scheduler, at, NodeState::Ready)?;
    }
    for (&site, &watts) in &overrides.power_w {
        scheduler.set_site_power(site, watts).map_err(|e| e.to_string())?;
    }
    for (&cluster, &day) in &overrides.online {
        scheduler.set_cluster_online(cluster, day).map_err(|e| e.to_string())?;
    }
    Ok(())
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
