//! The placement engine: the live capacity ledger, the scoring backend, the reference rule and the
//! batched engine, the words of `explain`, and the [`Scheduler`] in front of them.
//!
//! # The guarantee
//! Jobs are decided one at a time in the order of [`place::decision_order`]: priority descending;
//! within a priority the most constrained job first (its GPUs the largest share of the GPUs that
//! could ever hold it), then the larger, then id ascending. Each job is placed on the best-scoring
//! rack (ties: lowest global rack index) among those feasible given the capacity left by every job
//! decided before it, or left unplaced if none is feasible. So a job is never left unplaced because
//! of capacity taken by a job of lower priority: those are decided after it. (The order within a
//! priority is a heuristic measured against exact optima, not a guarantee.) Where a job's pods go — which racks,
//! which trays (nodes) of them, which GPUs of each tray — is the shape rule of
//! [`crate::kernel::shape`].
//!
//! Then, when the policy says so (the default does), [`consolidate`] places jobs left unplaced by
//! moving jobs of the same batch to other racks, never unplacing one; it runs after the decisions,
//! the same function after the oracle and after the batched engine, so both stay equal.
//!
//! Preemption is a separate pass the caller asks for ([`Scheduler::preempt`]: the service and
//! replay do, after each placement): jobs left unplaced are decided again in the same order, each
//! evicting placed jobs of strictly lower priority when that lets it run, by the rule of
//! [`preempt`]. Afterwards no job waits while evicting every job of lower priority would let it
//! run (pinned jobs, which another system runs, are never evicted and count as higher); a job of
//! equal or higher priority is never evicted.
//!
//! [`place::place_reference`] is that definition written as plainly as possible: for each job,
//! scan every rack ([`Ledger::best_rack`]). [`place::place_batched`] is the production path and
//! gives *exactly* the same decisions: it scores the pending jobs at once against a snapshot (on
//! the CPU or the GPU), keeps each job's best K racks, and then walks the jobs in order, using the
//! candidate lists while they are still valid and re-checking on the host only what changed since
//! the snapshot.
//!
//! # The invariants the batched engine rests on
//! 1. Within a round capacity only shrinks (jobs commit, nothing is released; a tray with fewer
//!    free GPUs, or a shared GPU with fewer free thousandths, holds no more pods of any size), so
//!    a rack infeasible in the snapshot stays infeasible.
//! 2. Of the state that changes, a score reads only the rack's own occupancy: its free GPUs and
//!    its trays counted by free GPUs (and, for a job asking for CPU or memory or sharing GPUs, its
//!    trays' free CPU and memory and its shared GPUs' free thousandths) (site power and whole racks only affect feasibility, which is
//!    re-checked exactly against the current state), so a rack none of whose trays changed keeps
//!    its snapshot score.
//! 3. Every constraint but GPU capacity is the same for all racks of a cluster, so a cluster that
//!    fails one of them can be skipped whole.
//! 4. Racks of a cluster with equal free GPUs and equal counts of trays by free GPUs, whose trays
//!    with free GPUs hold no CPU or memory and which have no shared GPU with room left, are
//!    interchangeable (same feasibility and score for every job), so only the lowest-indexed rack
//!    of each class ([`classes`]) needs scoring; any other rack is a class of its own.
//!
//! Racks whose trays changed ("dirty") are re-scored on the host, one per class; when every
//! listed candidate is gone and the snapshot had more feasible racks than the list holds, the job
//! is decided on the host from scratch, again one rack per class. These invariants are checked,
//! not trusted: in debug builds (every test) each decision of the batched engine is compared with
//! the reference rule on the same state, and a difference stops the run with a panic naming the
//! job. A change of the model that breaks one of them (preemption releases within a round; per-rack
//! attributes; a score that reads which tray is which) fails every test that places a job.

mod backend;
mod classes;
pub mod consolidate;
pub mod explain;
mod ledger;
pub mod place;
pub mod preempt;
pub mod reasons;
mod scheduler;
pub mod view;

pub use backend::{Backend, BackendChoice};
pub use ledger::{Allocation, Ledger, PodSlot};
pub use place::{Placement, Timings};
pub use reasons::{Cause, Reason, RejectCounts};
pub use scheduler::{Compiled, Scheduler};
pub use view::{NamedDecision, NamedOutcome, PlacedOn, PodOn, RackShare};
