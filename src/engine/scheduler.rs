//! The library's front door: a [`Scheduler`] holds a fleet, a policy, a scoring backend and the
//! fleet's live capacity (a [`Ledger`]), and places jobs on what is left.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::engine::backend::{Backend, BackendChoice};
use crate::engine::consolidate::{Consolidation, consolidate};
use crate::engine::explain::Explanation;
use crate::engine::ledger::{Allocation, Ledger};
use crate::engine::place::{
    Decision, EngineStats, Outcome, Placement, ReasonCache, Reasons, RoundLimits, Timings, best_with_relaxing,
    decision_order, need_of, place_batched_with,
};
use crate::engine::reasons::Reason;
use crate::error::{InputError, Result};
use crate::kernel::score::JobGpu;
use crate::model::date::Day;
use crate::model::fleet::Fleet;
use crate::model::jobs::Workload;
use crate::model::policy::Policy;
use crate::model::tenants::Tenants;

/// A workload validated against a scheduler's fleet and compiled for the scorer at a placement
/// date ([`Scheduler::compile`]); [`Scheduler::place_compiled`] places any subset of it. The
/// records are public so that a caller can move a job's ready day (replay does, as time passes).
#[derive(Debug, Clone)]
pub struct Compiled<'w> {
    /// The workload.
    pub workload: &'w Workload,
    /// One record per job, in workload order.
    pub jobs: Vec<JobGpu>,
    /// The placement date the records were compiled for.
    pub at: Day,
    /// Each job's position in the decision order.
    rank: Vec<u32>,
    /// The fleet the records index (its racks, regions, tags).
    fleet: Arc<Fleet>,
    /// With tenants set: the tenants compiled against, and each job's tenant.
    tenants: Option<(Arc<Tenants>, Vec<u32>)>,
}

/// A placed job: what it holds and its priority (what preemption weighs).
#[derive(Debug, Clone)]
struct Running {
    allocation: Allocation,
    priority: i32,
    /// Never evicted by preemption ([`Scheduler::pin`]).
    pinned: bool,
    /// With tenants set, the tenant it counts against (None: it counts against none, as a job
    /// [`Scheduler::restore`]d without one).
    tenant: Option<u32>,
    /// What it holds, in thousandths of a GPU ([`crate::Job::gpu_milli_held`]).
    milli: u64,
}

/// The tenants set ([`Scheduler::set_tenants`]) and what each holds.
#[derive(Debug, Clone)]
struct Quotas {
    tenants: Arc<Tenants>,
    /// By tenant, what its placed jobs hold, in thousandths of a GPU.
    held: Vec<u64>,
}

impl Quotas {
    /// Whether tenant `t` holds more than its quota.
    fn borrowing(&self, t: u32) -> bool {
        self.held[t as usize] > self.tenants.tenants()[t as usize].quota_milli()
    }

    /// What tenant `t` holds beyond its quota.
    fn borrowed(&self, t: u32) -> u64 {
        self.held[t as usize].saturating_sub(self.tenants.tenants()[t as usize].quota_milli())
    }
}

/// What a decision pass may evict for a job that does not fit.
#[derive(Debug, Clone, Copy)]
struct Evict {
    /// Placed jobs of strictly lower priority (of the job's own tenant, with tenants set).
    priority: bool,
    /// With tenants set, for a job within its tenant's quota: what other tenants borrow.
    reclaim: bool,
}

/// Places workloads on a fleet under a policy with a backend, keeping the fleet's live capacity:
/// each [`Scheduler::place`] places on what earlier placements left, [`Scheduler::release`] gives a
/// job's capacity back, and [`Scheduler::reset`] returns to the fleet file's occupancy.
pub struct Scheduler {
    fleet: Arc<Fleet>,
    policy: Policy,
    backend: Backend,
    ledger: Ledger,
    /// What each placed job holds, and its priority, by id, until it is released.
    running: HashMap<String, Running>,
    /// The placed jobs by priority, then id: a job's candidate victims of lower priority are a
    /// range, not a scan of every placed job (a replay keeps tens of thousands placed, and asks
    /// for the few below a waiting job's priority at every interval). Built by the first search
    /// that needs it and kept from then on: placement alone never pays for it.
    by_priority: Option<std::collections::BTreeSet<(i32, String)>>,
    limits: RoundLimits,
    /// Needs that no eviction can place, kept across preemption passes.
    hopeless: Hopeless,
    /// Tenants and their quotas, when set.
    quotas: Option<Quotas>,
}

/// The needs (at a priority) that would not fit even were every unpinned placed job of lower
/// priority evicted: the capacity free or held by such jobs, C(p), did not hold them. Placing or
/// releasing jobs below p only moves capacity within C(p), and placing jobs at p or above only
/// shrinks it, so an entry stays true until a job at p or above gives capacity back (a release,
/// an eviction) or the fleet may have grown (a fleet event, a consolidation move); each such event
/// is numbered, and an entry is believed only if none came after it. The preemption pass of a
/// replay or a service then costs a lookup for each job that waits hopelessly, instead of a
/// search.
#[derive(Debug, Default)]
struct Hopeless {
    /// Events so far.
    seq: u64,
    /// By priority (pinned jobs: `i32::MAX`), the last event that gave capacity back.
    released: std::collections::BTreeMap<i32, u64>,
    /// The last event that may have added capacity of any kind.
    grew: u64,
    /// Need and priority → the event count when it was found hopeless.
    needs: rustc_hash::FxHashMap<(JobGpu, i32), u64>,
}

impl Hopeless {
    /// The most entries kept (a replay of many distinct needs starts over past it).
    const MAX: usize = 1 << 20;

    fn holds(&self, need: &(JobGpu, i32)) -> bool {
        self.needs
            .get(need)
            .is_some_and(|&at| self.grew <= at && self.released.range(need.1..).all(|(_, &event)| event <= at))
    }

    fn insert(&mut self, need: (JobGpu, i32)) {
        if self.needs.len() >= Self::MAX {
            self.needs.clear();
        }
        self.needs.insert(need, self.seq);
    }

    /// A job of `priority` gave its capacity back.
    fn released(&mut self, priority: i32) {
        self.seq += 1;
        self.released.insert(priority, self.seq);
    }

    /// Capacity of any kind may have come back.
    fn grew(&mut self) {
        self.seq += 1;
        self.grew = self.seq;
    }
}

/// The most times one pass decides its unplaced jobs within quota again after later decisions
/// changed the fleet ([`crate::engine::preempt::PreemptionPass::unsettled`]).
const MAX_SETTLE_PASSES: usize = 8;

/// Keeps `decision` as the final outcome of its job: in place of an earlier one, else appended.
fn record(pass: &mut crate::engine::preempt::PreemptionPass, position: &mut HashMap<usize, usize>, decision: Decision) {
    match position.get(&decision.job) {
        Some(&at) => pass.decisions[at] = decision,
        None => {
            position.insert(decision.job, pass.decisions.len());
            pass.decisions.push(decision);
        }
    }
}

impl Scheduler {
    /// A scheduler with the chosen backend, at the fleet file's occupancy. With
    /// [`BackendChoice::Auto`] and no usable adapter the CPU is used and [`Scheduler::notices`] says
    /// why.
    pub fn new(fleet: Fleet, policy: Policy, choice: BackendChoice) -> Result<Scheduler> {
        // Before a device is opened, which takes long; `with_backend` checks again, cheaply.
        policy.validate("<policy>")?;
        Scheduler::with_backend(fleet, policy, Backend::open(choice)?)
    }

    /// A scheduler with a backend already opened (e.g. a GPU scorer with custom limits).
    pub fn with_backend(fleet: Fleet, policy: Policy, backend: Backend) -> Result<Scheduler> {
        policy.validate("<policy>")?;
        let fleet = Arc::new(fleet);
        let ledger = Ledger::new(Arc::clone(&fleet));
        Ok(Scheduler {
            fleet,
            policy,
            backend,
            ledger,
            running: HashMap::new(),
            by_priority: None,
            limits: RoundLimits::default(),
            hopeless: Hopeless::default(),
            quotas: None,
        })
    }

    /// The fleet.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Places later jobs under `policy` (the live capacity is kept).
    pub fn set_policy(&mut self, policy: Policy) -> Result<()> {
        policy.validate("<policy>")?;
        self.policy = policy;
        Ok(())
    }

    /// The backend in use.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The backend, to reuse (its device) for another fleet.
    pub fn into_backend(self) -> Backend {
        self.backend
    }

    /// Notices from opening the backend, and of GPU failures since.
    pub fn notices(&self) -> &[String] {
        self.backend.notices()
    }

    /// The fleet's live capacity.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Jobs placed and not released.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// What job `id` holds, if it is placed and not released.
    pub fn allocation(&self, id: &str) -> Option<&Allocation> {
        self.running.get(id).map(|r| &r.allocation)
    }

    /// Back to the fleet file's occupancy, with no job placed.
    pub fn reset(&mut self) {
        self.ledger = Ledger::new(Arc::clone(&self.fleet));
        self.running.clear();
        self.by_priority = None;
        if let Some(quotas) = &mut self.quotas {
            quotas.held.fill(0);
        }
        self.hopeless.grew();
    }

    /// Gives back what job `id` holds. An input error if no placed job has this id.
    pub fn release(&mut self, id: &str) -> Result<()> {
        let running = self.unhold(id).ok_or_else(|| {
            InputError::new("<api>", format!("job `{id}`"), "id", "no placed job has this id (or it was released)")
        })?;
        self.ledger.release(&running.allocation);
        self.hopeless.released(if running.pinned { i32::MAX } else { running.priority });
        Ok(())
    }

    /// Takes `allocation` for job `id` of priority `priority` as if it had been placed there (a
    /// service restoring what its jobs held before a restart). An input error, with nothing taken, if a job with this id is
    /// placed or the allocation cannot be applied to the live capacity (another fleet's, damaged,
    /// or overlapping what others hold); see [`Ledger::check_allocation`].
    /// The job counts against no tenant's quota; see [`Scheduler::restore_job`].
    pub fn restore(&mut self, id: &str, allocation: Allocation, priority: i32) -> Result<()> {
        let milli = u64::from(allocation.gpus()) * 1000;
        self.restore_as(id, allocation, priority, None, milli, false)
    }

    /// [`Scheduler::restore`] for `job`: its priority, and with tenants set its tenant's quota
    /// counts what it holds (an input error if it has no tenant there).
    pub fn restore_job(&mut self, job: &crate::model::jobs::Job, allocation: Allocation) -> Result<()> {
        let tenant = self.tenant_for(job)?;
        self.restore_as(&job.id, allocation, job.priority, tenant, job.gpu_milli_held(), false)
    }

    /// With tenants set, `job`'s tenant (an input error if it has none there).
    fn tenant_for(&self, job: &crate::model::jobs::Job) -> Result<Option<u32>> {
        let Some(quotas) = &self.quotas else { return Ok(None) };
        let tenant = quotas.tenants.tenant_of(job).map_err(|m| {
            InputError::new("<api>", format!("job `{}`", crate::model::json::shown(&job.id)), "tenant", m)
        })?;
        Ok(Some(tenant))
    }

    /// [`Scheduler::restore_job`] for a job taking back what it held just before it was released
    /// (an orchestrator's move of a pod that did not go through): its nodes may have been
    /// cordoned since it was placed, as the nodes of running pods may be.
    pub fn take_back_job(&mut self, job: &crate::model::jobs::Job, allocation: Allocation) -> Result<()> {
        let tenant = self.tenant_for(job)?;
        self.restore_as(&job.id, allocation, job.priority, tenant, job.gpu_milli_held(), true)
    }

    /// Runs `check` on the capacity as it would be if the placed jobs `ids` gave back what they
    /// hold, then takes it back. What an orchestrator that evicts pods itself asks before it does
    /// (a Kubernetes scheduler's preemption). After, the capacity, the running jobs, the tenants'
    /// counts and what the scheduler learnt of hopeless jobs are as they were: only the ledger
    /// gives back and takes back, in reverse order. An input error, with nothing changed, if an id
    /// is not placed or is named twice.
    pub fn with_released<R>(&mut self, ids: &[&str], check: impl FnOnce(&Scheduler) -> R) -> Result<R> {
        let mut allocations = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let refuse = |message: &str| InputError::new("<api>", format!("job `{id}`"), "id", message);
            if ids[..i].contains(id) {
                return Err(refuse("named twice").into());
            }
            let running = self.running.get(*id).ok_or_else(|| refuse("no placed job has this id"))?;
            allocations.push(running.allocation.clone());
        }
        for allocation in &allocations {
            self.ledger.release(allocation);
        }
        // Taken back even if `check` panics, so that a caller that catches the panic finds the
        // capacity as it was.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(self)));
        for allocation in allocations.iter().rev() {
            self.ledger.take_back(allocation);
        }
        match result {
            Ok(result) => Ok(result),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    fn restore_as(
        &mut self,
        id: &str,
        allocation: Allocation,
        priority: i32,
        tenant: Option<u32>,
        milli: u64,
        cordoned_too: bool,
    ) -> Result<()> {
        let refuse = |message: String| InputError::new("<api>", format!("job `{id}`"), "allocation", message);
        if self.running.contains_key(id) {
            return Err(refuse("a job with this id is already placed".into()).into());
        }
        self.ledger.check_allocation_on(&allocation, cordoned_too).map_err(refuse)?;
        if cordoned_too {
            self.ledger.take_back(&allocation);
        } else {
            self.ledger.apply(&allocation);
        }
        self.hold(id.to_string(), Running { allocation, priority, pinned: false, tenant, milli });
        Ok(())
    }

    /// Records that `id` holds `running`, counting it against its tenant.
    fn hold(&mut self, id: String, running: Running) {
        if let (Some(quotas), Some(t)) = (&mut self.quotas, running.tenant) {
            quotas.held[t as usize] += running.milli;
        }
        if let Some(index) = &mut self.by_priority {
            index.insert((running.priority, id.clone()));
        }
        self.running.insert(id, running);
    }

    /// Forgets what `id` holds (the ledger is the caller's), and its tenant's count of it.
    fn unhold(&mut self, id: &str) -> Option<Running> {
        let running = self.running.remove(id)?;
        if let Some(index) = &mut self.by_priority {
            index.remove(&(running.priority, id.to_string()));
        }
        if let (Some(quotas), Some(t)) = (&mut self.quotas, running.tenant) {
            quotas.held[t as usize] -= running.milli;
        }
        Some(running)
    }

    /// Sets the tenants whose quotas placement then keeps (see `docs/QUOTAS.md`), or none. Only
    /// with no job placed (an input error otherwise): what placed jobs hold is counted as they are
    /// placed or restored.
    pub fn set_tenants(&mut self, tenants: Option<Tenants>) -> Result<()> {
        if !self.running.is_empty() {
            return Err(InputError::new(
                "<tenants>",
                "document",
                "tenants",
                "tenants are set before any job is placed or restored",
            )
            .into());
        }
        self.quotas =
            tenants.map(|tenants| Quotas { held: vec![0; tenants.tenants().len()], tenants: Arc::new(tenants) });
        Ok(())
    }

    /// The tenants set, if any.
    pub fn tenants(&self) -> Option<&Tenants> {
        self.quotas.as_ref().map(|q| &*q.tenants)
    }

    /// With tenants set, what each holds (thousandths of a GPU), in the tenants' order.
    pub fn tenant_held_milli(&self) -> &[u64] {
        self.quotas.as_ref().map_or(&[], |q| &q.held)
    }

    /// Marks placed job `id` as never evicted by preemption (a pod another system runs, which
    /// gpuplace cannot stop). An input error if no placed job has this id.
    pub fn pin(&mut self, id: &str) -> Result<()> {
        let running = self.running.get_mut(id).ok_or_else(|| {
            InputError::new("<api>", format!("job `{id}`"), "id", "no placed job has this id (or it was released)")
        })?;
        running.pinned = true;
        Ok(())
    }

    /// Every placed job and what it holds, in no particular order.
    pub fn placed(&self) -> impl Iterator<Item = (&str, &Allocation)> {
        self.running.iter().map(|(id, r)| (id.as_str(), &r.allocation))
    }

    /// The placed jobs with a pod on node `node` of rack `rack` (global index), by id.
    pub fn jobs_on_node(&self, rack: u32, node: u32) -> Vec<String> {
        let mut ids: Vec<String> = self
            .running
            .iter()
            .filter(|(_, r)| r.allocation.pods.iter().any(|p| p.rack == rack && p.node == node))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The placed jobs at site `site`, by id, with the power each draws.
    pub fn jobs_at_site(&self, site: u32) -> Vec<(String, u32)> {
        let mut jobs: Vec<(String, u32)> = self
            .running
            .iter()
            .filter(|(_, r)| r.allocation.site == site)
            .map(|(id, r)| (id.clone(), r.allocation.power_w))
            .collect();
        jobs.sort_unstable();
        jobs
    }

    /// Sets a node ready, cordoned or failed ([`Ledger::set_node_state`]): release the jobs on a
    /// node before failing it ([`Scheduler::jobs_on_node`]). An input error for a node that does
    /// not exist.
    pub fn set_node_state(&mut self, rack: u32, node: u32, state: crate::kernel::state::NodeState) -> Result<()> {
        if state == crate::kernel::state::NodeState::Failed {
            let holding = self.jobs_on_node(rack, node);
            if let Some(id) = holding.first() {
                let message =
                    format!("job `{id}` (and {} more) holds GPUs on it: release them first", holding.len() - 1);
                return Err(InputError::new("<api>", format!("rack {rack} node {node}"), "state", message).into());
            }
        }
        self.hopeless.grew();
        self.ledger
            .set_node_state(rack, node, state)
            .map_err(|m| InputError::new("<api>", format!("rack {rack}"), "node", m).into())
    }

    /// Sets a site's IT power capacity, W ([`Ledger::set_site_power`]). An input error when the
    /// site does not exist or draws more now.
    pub fn set_site_power(&mut self, site: u32, watts: u32) -> Result<()> {
        self.hopeless.grew();
        self.ledger
            .set_site_power(site, watts)
            .map_err(|m| InputError::new("<api>", format!("site {site}"), "power", m).into())
    }

    /// Sets the day a cluster comes online ([`Ledger::set_cluster_online`]).
    pub fn set_cluster_online(&mut self, cluster: u32, day: Day) -> Result<()> {
        self.hopeless.grew();
        self.ledger
            .set_cluster_online(cluster, day)
            .map_err(|m| InputError::new("<api>", format!("cluster {cluster}"), "online", m).into())
    }

    /// The placement date: `at`, else the fleet's `as_of`, else today.
    pub fn placement_date(&self, at: Option<Day>) -> Day {
        at.or(self.fleet.as_of).unwrap_or_else(Day::today)
    }

    /// Validates `workload` against the fleet and compiles it for placement on `at`.
    pub fn compile<'w>(&self, workload: &'w Workload, at: Day) -> Result<Compiled<'w>> {
        let jobs = workload.compile(&self.fleet, &self.policy, at)?;
        let mut rank = vec![0u32; jobs.len()];
        for (position, &j) in decision_order(&workload.jobs, &jobs, &self.fleet, self.ledger.state()).iter().enumerate()
        {
            rank[j] = position as u32;
        }
        let tenants = match &self.quotas {
            Some(quotas) => Some((Arc::clone(&quotas.tenants), quotas.tenants.tenants_of(workload)?)),
            None => None,
        };
        Ok(Compiled { workload, jobs, at, rank, fleet: Arc::clone(&self.fleet), tenants })
    }

    /// Places the jobs `subset` (indices into the workload, in any order, each once) of `compiled`
    /// on the live capacity, deciding them in decision order (see [`crate::engine`] for the
    /// guarantee). Placed jobs hold their capacity until [`Scheduler::release`]d. An input error,
    /// before anything is placed, if one of them is already placed, is named twice or does not
    /// exist, or if `compiled` came from a scheduler of another fleet.
    /// `reasons` says whether each unplaced job's reason is worded; see
    /// [`Scheduler::unplaced_reason`] for wording one later.
    pub fn place_compiled(
        &mut self,
        compiled: &Compiled,
        subset: &[usize],
        reasons: Reasons,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(Vec<Decision>, EngineStats, Consolidation)> {
        self.check_subset(compiled, subset)?;
        if self.quotas.is_some() {
            // Quotas make each decision depend on what the ones before took from each tenant's
            // quota: decided one by one, in the phases of `docs/QUOTAS.md`, without evicting.
            let pass = self.pass(compiled, subset, reasons, Evict { priority: false, reclaim: false });
            progress(subset.len(), subset.len());
            return Ok((pass.decisions, EngineStats::default(), Consolidation::default()));
        }
        let workload = compiled.workload;
        let mut order = subset.to_vec();
        order.sort_unstable_by_key(|&j| compiled.rank[j]);
        let k = self.policy.candidates as usize;
        let limits = RoundLimits { reasons, ..self.limits };
        let (mut decisions, mut stats) =
            place_batched_with(&mut self.ledger, &compiled.jobs, &order, &mut self.backend, k, limits, progress)?;
        let consolidation = if self.policy.consolidate {
            consolidate(&mut self.ledger, &compiled.jobs, &mut decisions)
        } else {
            Consolidation::default()
        };
        stats.consolidated = consolidation.placed.len() as u64;
        stats.moves = consolidation.moves.len() as u64;
        if !consolidation.moves.is_empty() {
            // Moves rearrange what jobs hold: what did not fit before may now.
            self.hopeless.grew();
        }
        for decision in &decisions {
            if let Outcome::Placed { allocation, .. } = &decision.outcome {
                let job = &workload.jobs[decision.job];
                let running = Running {
                    allocation: allocation.clone(),
                    priority: job.priority,
                    pinned: false,
                    tenant: None,
                    milli: job.gpu_milli_held(),
                };
                self.hold(job.id.clone(), running);
            }
        }
        Ok((decisions, stats, consolidation))
    }

    /// An input error, naming the job, if `subset` names a job of `compiled` twice, one it lacks or
    /// one already placed, or if `compiled` came from a scheduler of another fleet.
    fn check_subset(&self, compiled: &Compiled, subset: &[usize]) -> Result<()> {
        let workload = compiled.workload;
        let refuse = |j: usize, message: &str| -> crate::error::Error {
            let record = workload.jobs.get(j).map_or_else(|| format!("record {j}"), |job| format!("job `{}`", job.id));
            InputError::new(&workload.source_name, record, "id", message).into()
        };
        if !Arc::ptr_eq(&compiled.fleet, &self.fleet) {
            return Err(refuse(0, "the workload was compiled by a scheduler of another fleet"));
        }
        let same_tenants = match (&compiled.tenants, &self.quotas) {
            (None, None) => true,
            (Some((compiled, _)), Some(quotas)) => Arc::ptr_eq(compiled, &quotas.tenants),
            _ => false,
        };
        if !same_tenants {
            return Err(refuse(0, "the workload was compiled before the scheduler's tenants were set"));
        }
        let mut seen = vec![false; workload.jobs.len()];
        for &j in subset {
            if j >= seen.len() {
                return Err(refuse(j, "no job has this index in the workload"));
            }
            if std::mem::replace(&mut seen[j], true) {
                return Err(refuse(j, "the job is named twice in the subset to place"));
            }
        }
        if !self.running.is_empty()
            && let Some(&j) = subset.iter().find(|&&j| self.running.contains_key(&workload.jobs[j].id))
        {
            return Err(InputError::new(
                &workload.source_name,
                format!("job `{}`", workload.jobs[j].id),
                "id",
                "a job with this id is already placed; release it first",
            )
            .into());
        }
        Ok(())
    }

    /// The preemption pass: decides the unplaced jobs `subset` of `compiled` again, in decision
    /// order, each placed if a rack is free for it now, else by evicting placed jobs of strictly
    /// lower priority (the rule of [`crate::engine::preempt`]), else left unplaced. A job of
    /// `compiled` that it evicts is decided again later in the same pass (it comes later in the
    /// order); a job placed by an earlier call and evicted is only released: the caller queues it
    /// again. Afterwards no job the pass left unplaced could be placed by evicting every placed job
    /// of lower priority that is not pinned ([`Scheduler::pin`]). Input errors as for
    /// [`Scheduler::place_compiled`].
    ///
    /// With tenants set ([`Scheduler::set_tenants`]) the jobs are decided in the phases of
    /// `docs/QUOTAS.md`: a job within its tenant's quota first takes back what other tenants
    /// borrow ([`Scheduler::reclaim`]), and only then evicts jobs of lower priority, of its own
    /// tenant only.
    pub fn preempt(
        &mut self,
        compiled: &Compiled,
        subset: &[usize],
        reasons: Reasons,
    ) -> Result<crate::engine::preempt::PreemptionPass> {
        self.check_subset(compiled, subset)?;
        let reclaim = self.quotas.is_some();
        Ok(self.pass(compiled, subset, reasons, Evict { priority: true, reclaim }))
    }

    /// The reclaim pass, with tenants set: decides the unplaced jobs `subset` of `compiled` as
    /// [`Scheduler::place_compiled`] does, but a job within its tenant's quota that does not fit
    /// may evict jobs of tenants holding more than their quotas: borrowed capacity is given back
    /// (`docs/QUOTAS.md` states the rule). Nothing is evicted by priority. Without tenants, the
    /// jobs are decided without evicting. Evictions are reported as by [`Scheduler::preempt`].
    pub fn reclaim(
        &mut self,
        compiled: &Compiled,
        subset: &[usize],
        reasons: Reasons,
    ) -> Result<crate::engine::preempt::PreemptionPass> {
        self.check_subset(compiled, subset)?;
        let reclaim = self.quotas.is_some();
        Ok(self.pass(compiled, subset, reasons, Evict { priority: false, reclaim }))
    }

    /// Decides `subset` (checked) one job at a time, evicting as `evict` allows. Without tenants:
    /// in decision order. With tenants, in phases: the jobs within their tenants' quotas in
    /// decision order, then the borrowing ones, a tenant at a time, the tenant borrowing least for
    /// its weight first (fair share), each tenant's in decision order; jobs evicted in the pass
    /// are decided again the same way.
    fn pass(
        &mut self,
        compiled: &Compiled,
        subset: &[usize],
        reasons: Reasons,
        evict: Evict,
    ) -> crate::engine::preempt::PreemptionPass {
        use crate::engine::preempt::PreemptionPass;
        use std::collections::{BTreeSet, HashMap as Map};
        let mut pass = PreemptionPass::default();
        let mut queue: BTreeSet<(u32, usize)> = subset.iter().map(|&j| (compiled.rank[j], j)).collect();
        let tenant_count = self.quotas.as_ref().map_or(0, |q| q.held.len());
        // By tenant, its jobs that would borrow, in decision order.
        let mut borrowing: Vec<BTreeSet<(u32, usize)>> = vec![BTreeSet::new(); tenant_count];
        let mut position: Map<usize, usize> = Map::new();
        let mut index_of: Option<Map<&str, usize>> = None;
        let mut reason_cache =
            if reasons == Reasons::Worded { ReasonCache::default() } else { ReasonCache::skipping() };
        // With tenants: the jobs within quota left unplaced (to decide again when borrowers or
        // evictions changed the fleet after them), whether anything changed since they were last
        // decided, and how often they were.
        let mut unplaced_within: BTreeSet<(u32, usize)> = BTreeSet::new();
        let (mut changed, mut settled) = (false, 0usize);
        loop {
            while let Some((rank, j)) = queue.pop_first() {
                if let (Some(quotas), Some((_, tenants))) = (&self.quotas, &compiled.tenants) {
                    let t = tenants[j];
                    let tenant = &quotas.tenants.tenants()[t as usize];
                    if quotas.held[t as usize] + compiled.workload.jobs[j].gpu_milli_held() > tenant.quota_milli() {
                        borrowing[t as usize].insert((rank, j));
                        continue;
                    }
                }
                let evictions = pass.evictions.len();
                let decision = self.decide(compiled, j, evict, &mut pass, &mut queue, &mut index_of, &mut reason_cache);
                changed |= pass.evictions.len() > evictions;
                if matches!(decision.outcome, Outcome::Unplaced { .. }) {
                    unplaced_within.insert((rank, j));
                } else {
                    unplaced_within.remove(&(rank, j));
                }
                record(&mut pass, &mut position, decision);
            }
            // Borrowers, fair share first: the tenant borrowing least for its weight (ties: the
            // first in the file), its first job in decision order.
            let next = self.quotas.as_ref().and_then(|quotas| {
                (0..tenant_count as u32).filter(|&t| !borrowing[t as usize].is_empty()).min_by(|&a, &b| {
                    let weight = |t: u32| u128::from(quotas.tenants.tenants()[t as usize].weight);
                    (u128::from(quotas.borrowed(a)) * weight(b)).cmp(&(u128::from(quotas.borrowed(b)) * weight(a)))
                })
            });
            let Some(t) = next else {
                // A borrower placed, or an eviction, may have made room for (or made reclaimable
                // what would make room for) a job within quota decided before it: decide those
                // again, a bounded number of times.
                if self.quotas.is_some() && changed && !unplaced_within.is_empty() {
                    if settled == MAX_SETTLE_PASSES {
                        pass.unsettled = true;
                        break;
                    }
                    settled += 1;
                    changed = false;
                    queue.append(&mut unplaced_within);
                    continue;
                }
                break;
            };
            let (rank, j) = borrowing[t as usize].pop_first().expect("a tenant with borrowing jobs");
            let quotas = self.quotas.as_ref().expect("borrowers only with tenants");
            if quotas.held[t as usize] + compiled.workload.jobs[j].gpu_milli_held()
                <= quotas.tenants.tenants()[t as usize].quota_milli()
            {
                // Within quota now (evictions of its tenant's jobs): decided with those.
                queue.insert((rank, j));
                continue;
            }
            let evictions = pass.evictions.len();
            let decision = self.decide(compiled, j, evict, &mut pass, &mut queue, &mut index_of, &mut reason_cache);
            changed |= pass.evictions.len() > evictions || matches!(decision.outcome, Outcome::Placed { .. });
            record(&mut pass, &mut position, decision);
        }
        pass
    }

    /// Decides job `j` of `compiled`: placed where a rack is free for it, else by evicting as
    /// `evict` allows (victims of the workload go back to `queue`), else unplaced.
    #[allow(clippy::too_many_arguments)]
    fn decide<'c>(
        &mut self,
        compiled: &'c Compiled,
        j: usize,
        evict: Evict,
        pass: &mut crate::engine::preempt::PreemptionPass,
        queue: &mut std::collections::BTreeSet<(u32, usize)>,
        index_of: &mut Option<HashMap<&'c str, usize>>,
        reason_cache: &mut ReasonCache,
    ) -> Decision {
        use crate::engine::preempt::{Eviction, Holder, choose_victims_among};
        let workload = compiled.workload;
        let priority = workload.jobs[j].priority;
        let milli = workload.jobs[j].gpu_milli_held();
        let tenant = compiled.tenants.as_ref().map(|(_, tenants)| tenants[j]);
        // Within its tenant's quota (or no tenants), and under its limit.
        let (within, over_limit) = match (&self.quotas, tenant) {
            (Some(quotas), Some(t)) => {
                let spec = &quotas.tenants.tenants()[t as usize];
                let held = quotas.held[t as usize] + milli;
                (held <= spec.quota_milli(), spec.limit_milli().is_some_and(|limit| held > limit))
            }
            _ => (true, false),
        };
        if over_limit {
            let quotas = self.quotas.as_ref().expect("tenants set");
            let t = tenant.expect("tenants compiled") as usize;
            let reason = Reason::quota(&quotas.tenants.tenants()[t], quotas.held[t], milli);
            return Decision { job: j, outcome: Outcome::Unplaced { reason: Arc::new(reason) } };
        }
        let (mut job, mut best) =
            best_with_relaxing(&compiled.jobs[j], &self.ledger, |job, ledger| ledger.best_rack_by_class(job));
        // What may be evicted, in the order tried: with tenants, borrowed capacity first (for a job
        // within quota), then its own tenant's jobs of lower priority; without, lower priority.
        let mut stages: Vec<bool> = Vec::new(); // true: reclaim
        if evict.reclaim && within && self.quotas.is_some() {
            stages.push(true);
        }
        if evict.priority {
            stages.push(false);
        }
        if best.is_none() && !stages.is_empty() {
            let need = (need_of(&compiled.jobs[j]), priority);
            // A job no cluster may take now (its day has not come, its constraints) has no
            // victims: told apart by one rack of each cluster (every constraint but capacity is
            // the same for all racks of a cluster), before gathering the candidates.
            let state = self.ledger.state();
            let usable = self.fleet.clusters.iter().any(|c| {
                !c.racks.is_empty()
                    && state.check(&compiled.jobs[j], c.racks.start) & crate::kernel::score::STATIC_REJECTS == 0
            });
            // The cache of hopeless needs holds for priority preemption without tenants only.
            let cached = self.quotas.is_none();
            if usable && !(cached && self.hopeless.holds(&need)) {
                let mut found: Option<(Vec<String>, bool)> = None;
                for reclaim in stages {
                    // In any order: the rule orders them (a total order), not this list.
                    let ids: Vec<(&String, &Running)> = if reclaim {
                        self.running
                            .iter()
                            .filter(|(_, r)| {
                                !r.pinned
                                    && r.tenant.is_some_and(|u| {
                                        Some(u) != tenant && self.quotas.as_ref().is_some_and(|q| q.borrowing(u))
                                    })
                            })
                            .collect()
                    } else {
                        self.by_priority
                            .get_or_insert_with(|| {
                                self.running.iter().map(|(id, r)| (r.priority, id.clone())).collect()
                            })
                            .range(..(priority, String::new()))
                            .map(|(_, id)| self.running.get_key_value(id).expect("indexed jobs are placed"))
                            .filter(|(_, r)| !r.pinned && (self.quotas.is_none() || r.tenant == tenant))
                            .collect()
                    };
                    let holders: Vec<Holder> = ids
                        .iter()
                        .map(|(id, r)| Holder { id, priority: r.priority, allocation: &r.allocation })
                        .collect();
                    // Reclaiming from a tenant stops once it no longer borrows: its victims, the
                    // largest last, are each taken while it holds more than its quota.
                    let quotas = self.quotas.as_ref();
                    let admissible = |set: &[usize]| -> bool {
                        let Some(quotas) = quotas.filter(|_| reclaim) else { return true };
                        let mut by_tenant: Vec<(u32, u64, u64)> = Vec::new(); // tenant, sum, max
                        for &h in set {
                            let r = ids[h].1;
                            let u = r.tenant.expect("a reclaim candidate has a tenant");
                            match by_tenant.iter_mut().find(|(t, _, _)| *t == u) {
                                Some(entry) => {
                                    entry.1 += r.milli;
                                    entry.2 = entry.2.max(r.milli);
                                }
                                None => by_tenant.push((u, r.milli, r.milli)),
                            }
                        }
                        by_tenant.iter().all(|&(u, sum, max)| {
                            quotas.held[u as usize] - sum + max > quotas.tenants.tenants()[u as usize].quota_milli()
                        })
                    };
                    let choice =
                        choose_victims_among(&mut self.ledger, &compiled.jobs[j], &holders, &|_| true, &admissible);
                    if let Some(choice) = choice {
                        pass.trials += choice.trials as u64;
                        pass.inexact += u64::from(!choice.exact);
                        found = Some((choice.victims.iter().map(|&h| ids[h].0.clone()).collect(), reclaim));
                        break;
                    }
                }
                match found {
                    None => {
                        if cached {
                            self.hopeless.insert(need);
                        }
                    }
                    Some((victims, reclaim)) => {
                        pass.preempting += 1;
                        for id in victims {
                            let running = self.unhold(&id).expect("a victim is placed");
                            self.hopeless.released(running.priority);
                            self.ledger.release(&running.allocation);
                            let index = index_of
                                .get_or_insert_with(|| {
                                    workload.jobs.iter().enumerate().map(|(i, job)| (job.id.as_str(), i)).collect()
                                })
                                .get(id.as_str())
                                .copied();
                            if let Some(v) = index {
                                queue.insert((compiled.rank[v], v));
                            }
                            pass.evictions.push(Eviction {
                                by: j,
                                id,
                                priority: running.priority,
                                allocation: running.allocation,
                                reclaim,
                                job: index,
                            });
                        }
                        (job, best) = best_with_relaxing(&compiled.jobs[j], &self.ledger, |job, ledger| {
                            ledger.best_rack_by_class(job)
                        });
                        assert!(best.is_some(), "the victims' release was tried: the job fits");
                    }
                }
            }
        }
        let outcome = match best {
            Some(best) => {
                let allocation = self.ledger.commit(&job, best.rack);
                let running = Running { allocation: allocation.clone(), priority, pinned: false, tenant, milli };
                self.hold(workload.jobs[j].id.clone(), running);
                Outcome::Placed { allocation, score: best.score }
            }
            None => Outcome::Unplaced { reason: reason_cache.reason(&self.ledger, &job) },
        };
        Decision { job: j, outcome }
    }

    /// Why node `node` of rack `rack` (global index) cannot take `job` now — a job of one pod of
    /// whole GPUs, compiled by [`Scheduler::compile`] — or Ok when it can: the rack passes every
    /// constraint of the job but where its free GPUs are (HBM, jurisdiction, provider, latency,
    /// GPU model, online day, site power), and this node is ready with the pod's GPUs, CPU and
    /// memory free. What an orchestrator that picks the node itself (a Kubernetes scheduler
    /// calling gpuplace as its extender) asks of a candidate.
    pub fn check_node(&self, job: &JobGpu, rack: u32, node: u32) -> std::result::Result<(), String> {
        use crate::kernel::score::{REJECT_GPUS, REJECT_NAMES};
        let state = self.ledger.state();
        if job.pods != 1 || job.gpu_milli != 0 {
            return Err("only a job of one pod of whole GPUs is placed on a node named for it".into());
        }
        let Some(r) = state.racks.get(rack as usize) else { return Err(format!("rack {rack} does not exist")) };
        if node >= r.nodes {
            return Err(format!("rack {rack} has no node {node} (it has {})", r.nodes));
        }
        let rejects = state.check(job, rack as usize) & !REJECT_GPUS;
        if rejects != 0 {
            let names: Vec<&str> =
                REJECT_NAMES.iter().enumerate().filter(|(i, _)| rejects & (1 << i) != 0).map(|(_, n)| *n).collect();
            return Err(format!("its rack fails: {}", names.join(", ")));
        }
        let at = (r.first_node + node) as usize;
        let cell = &state.nodes[at];
        if cell.state != crate::kernel::state::NodeState::Ready {
            return Err(format!("the node is {}", cell.state.name()));
        }
        let free = r.node_gpus - (cell.used.count_ones());
        let table = &state.node_table[at];
        if free < job.gpus {
            return Err(format!("the node has {free} free GPUs; the pod needs {}", job.gpus));
        }
        if table.free_cpu_milli < job.pod_cpu_milli || table.free_memory_mib < job.pod_memory_mib {
            return Err("the node lacks the pod's CPU or memory".into());
        }
        Ok(())
    }

    /// The score of `job` (compiled by [`Scheduler::compile`]) on rack `rack` now, by the policy
    /// (higher is better; what placement ranks racks by).
    pub fn rack_score(&self, job: &JobGpu, rack: u32) -> u32 {
        self.ledger.state().score(job, rack as usize)
    }

    /// Places job `job` of `compiled` — one pod of whole GPUs — on node `node` of rack `rack`,
    /// which [`Scheduler::check_node`] must accept: its lowest-numbered free GPUs there, held
    /// until [`Scheduler::release`]. An input error, with nothing taken, otherwise.
    pub fn place_on_node(&mut self, compiled: &Compiled, job: usize, rack: u32, node: u32) -> Result<Allocation> {
        self.check_subset(compiled, &[job])?;
        let record = compiled.jobs[job];
        let id = &compiled.workload.jobs[job].id;
        self.check_node(&record, rack, node).map_err(|m| {
            InputError::new("<api>", format!("job `{id}`"), "node", format!("rack {rack} node {node}: {m}"))
        })?;
        let state = self.ledger.state();
        let r = state.racks[rack as usize];
        let busy = state.nodes[(r.first_node + node) as usize].used;
        let mut mask = 0u8;
        for bit in (0..8).filter(|b| busy & (1 << b) == 0).take(record.gpus as usize) {
            mask |= 1 << bit;
        }
        let allocation = Allocation {
            racks: vec![crate::kernel::shape::RackShare { rack, gpus: record.gpus }],
            pods: vec![crate::engine::ledger::PodSlot {
                rack,
                node,
                gpus: mask,
                cpu_milli: record.pod_cpu_milli,
                memory_mib: record.pod_memory_mib,
                gpu_milli: 0,
            }],
            site: r.site,
            power_w: crate::kernel::score::job_watts(&record, r.gpu_watts),
        };
        self.ledger
            .check_allocation(&allocation)
            .map_err(|m| InputError::new("<api>", format!("job `{id}`"), "node", m))?;
        let (tenant, milli) =
            (compiled.tenants.as_ref().map(|(_, t)| t[job]), compiled.workload.jobs[job].gpu_milli_held());
        if let (Some(quotas), Some(t)) = (&self.quotas, tenant) {
            let spec = &quotas.tenants.tenants()[t as usize];
            if spec.limit_milli().is_some_and(|limit| quotas.held[t as usize] + milli > limit) {
                let reason = Reason::quota(spec, quotas.held[t as usize], milli);
                return Err(InputError::new("<api>", format!("job `{id}`"), "tenant", reason.text).into());
            }
        }
        self.ledger.apply(&allocation);
        let priority = compiled.workload.jobs[job].priority;
        let running = Running { allocation: allocation.clone(), priority, pinned: true, tenant, milli };
        self.hold(id.clone(), running);
        Ok(allocation)
    }

    /// Places every job of `workload` on the live capacity on the date `at` (default: the fleet's
    /// `as_of`, else today). See [`crate::engine`] for the guarantee.
    pub fn place(&mut self, workload: &Workload, at: Option<Day>) -> Result<Placement> {
        self.place_with_progress(workload, at, &mut |_, _| {})
    }

    /// [`Scheduler::place`], calling `progress(decided, total)` as jobs are decided.
    pub fn place_with_progress(
        &mut self,
        workload: &Workload,
        at: Option<Day>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Placement> {
        let at = self.placement_date(at);
        let started = Instant::now();
        let compiled = self.compile(workload, at)?;
        let compiled_at = Instant::now();
        let notices_before = self.backend.notices().len();
        let scoring_before = self.backend.scoring_time();
        let before = self.ledger.state().clone();
        let all: Vec<usize> = (0..workload.jobs.len()).collect();
        let (decisions, stats, consolidation) = self.place_compiled(&compiled, &all, Reasons::Worded, progress)?;
        let score = self.backend.scoring_time() - scoring_before;
        let placed_at = Instant::now();
        Ok(Placement {
            decisions,
            before,
            state: self.ledger.state().clone(),
            at,
            policy: self.policy,
            stats,
            consolidation,
            backend: self.backend.describe(),
            notices: self.backend.notices()[notices_before..].to_vec(),
            timings: Timings {
                compile: compiled_at - started,
                score,
                commit: (placed_at - compiled_at).saturating_sub(score),
            },
        })
    }

    /// Why job `job` of `compiled` cannot be placed on the live capacity now (as placement words
    /// it; see [`crate::engine::reasons`]; with tenants, first whether its tenant is at its
    /// limit), or None when a rack is free for it. An input error if
    /// `compiled` came from a scheduler of another fleet or has no job `job`.
    pub fn unplaced_reason(&self, compiled: &Compiled, job: usize) -> Result<Option<Reason>> {
        let refuse =
            |message: &str| InputError::new(&compiled.workload.source_name, format!("record {job}"), "id", message);
        if !Arc::ptr_eq(&compiled.fleet, &self.fleet) {
            return Err(refuse("the workload was compiled by a scheduler of another fleet").into());
        }
        let record = compiled.jobs.get(job).ok_or_else(|| refuse("no job has this index in the workload"))?;
        // Its tenant at its limit comes first: no rack would be given it.
        if let (Some(quotas), Some((tenants, of))) = (&self.quotas, &compiled.tenants)
            && Arc::ptr_eq(tenants, &quotas.tenants)
        {
            let t = of[job] as usize;
            let spec = &quotas.tenants.tenants()[t];
            let milli = compiled.workload.jobs[job].gpu_milli_held();
            if spec.limit_milli().is_some_and(|limit| quotas.held[t] + milli > limit) {
                return Ok(Some(Reason::quota(spec, quotas.held[t], milli)));
            }
        }
        let (record, best) =
            crate::engine::place::best_with_relaxing(record, &self.ledger, |job, ledger| ledger.best_rack(job));
        if best.is_some() {
            return Ok(None);
        }
        Ok(Some(crate::engine::reasons::unplaced_reason(&self.ledger, &record)))
    }

    /// The reference oracle on the same inputs, from the live capacity, without changing it (slow;
    /// for tests and for checking a result).
    pub fn place_reference(&self, workload: &Workload, at: Option<Day>) -> Result<Vec<Decision>> {
        let compiled = self.compile(workload, self.placement_date(at))?;
        let mut order: Vec<usize> = (0..workload.jobs.len()).collect();
        order.sort_unstable_by_key(|&j| compiled.rank[j]);
        let mut ledger = self.ledger.clone();
        let mut decisions = crate::engine::place::place_reference(&mut ledger, &compiled.jobs, &order);
        if self.policy.consolidate {
            consolidate(&mut ledger, &compiled.jobs, &mut decisions);
        }
        Ok(decisions)
    }

    /// Explains job `id` of `workload` as `placement` (made by [`Scheduler::place`] on that
    /// workload) decided it: its best candidates and rejections at that moment. Nothing is placed
    /// again; see [`crate::engine::explain::explain`].
    pub fn explain(&self, workload: &Workload, placement: &Placement, id: &str) -> Result<Explanation> {
        crate::engine::explain::explain(&self.fleet, &placement.policy, workload, placement, id)
    }

    /// Explains `job` against the live capacity now, as if it were decided now and alone (see
    /// [`crate::engine::explain::explain_now`]); nothing is placed. An input error if the job does
    /// not validate against the fleet.
    pub fn explain_now(&self, job: &crate::model::jobs::Job, at: Option<Day>) -> Result<Explanation> {
        let workload = Workload::from_jobs(vec![job.clone()], "<explain>");
        let compiled = workload.compile(&self.fleet, &self.policy, self.placement_date(at))?;
        Ok(crate::engine::explain::explain_now(&self.ledger, &self.policy, &compiled[0], &job.id))
    }

    /// Test hook: scoring rounds of at most `max_jobs_per_round` jobs, ending early once more than
    /// `max_dirty_racks` racks changed, to exercise many rounds on small problems.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn set_round_limits(&mut self, max_dirty_racks: usize, max_jobs_per_round: usize) {
        self.limits.max_dirty_racks = max_dirty_racks;
        self.limits.max_jobs_per_round = max_jobs_per_round;
    }

    /// Test hook: make the batched engine ignore racks changed since its snapshot. It then decides
    /// wrongly under contention, and its cross-check against the reference rule (debug builds)
    /// must stop it.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn break_engine(&mut self) {
        self.limits.ignore_changed_racks = true;
    }
}
