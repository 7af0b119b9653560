//! The ledger: the fleet's live capacity (free GPUs per rack, fully free racks per cluster, IT
//! power per site), changed only by [`Ledger::commit`] and [`Ledger::release`], which are exact
//! inverses. Placement, replay, explain and the [`crate::Scheduler`] all keep their state here.

use std::sync::Arc;

use crate::engine::classes::ClassIndex;
use crate::kernel::score::{Candidate, JobGpu, better};
use crate::kernel::shape::{RackShare, take};
use crate::kernel::state::FleetState;
use crate::model::fleet::Fleet;

/// What a placed job holds: GPUs on each of its racks (anchor first, then by index) and IT power
/// at its site. Releasing it gives back exactly this.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Allocation {
    /// Racks and GPUs taken, anchor rack first, then by rack index.
    pub racks: Vec<RackShare>,
    /// The site of its racks.
    pub site: u32,
    /// IT power drawn at the site, W.
    pub power_w: u32,
}

impl Allocation {
    /// GPUs held.
    pub fn gpus(&self) -> u32 {
        self.racks.iter().map(|s| s.gpus).sum()
    }

    /// The anchor rack (the one the job was scored on).
    pub fn anchor(&self) -> u32 {
        self.racks[0].rack
    }
}

/// The fleet's live capacity.
#[derive(Debug, Clone)]
pub struct Ledger {
    fleet: Arc<Fleet>,
    state: FleetState,
    /// Every rack by class, kept in step with `state`.
    classes: ClassIndex,
    /// Changes at every commit and release: keys caches of anything computed from the state.
    version: u64,
}

impl Ledger {
    /// The fleet at the occupancy its file states.
    pub fn new(fleet: Arc<Fleet>) -> Ledger {
        let state = fleet.initial_state();
        Ledger::with_state(fleet, state)
    }

    /// The fleet at the capacity of `state` (a snapshot of a ledger of the same fleet).
    pub fn with_state(fleet: Arc<Fleet>, state: FleetState) -> Ledger {
        assert_eq!(state.racks.len(), fleet.racks.len(), "a state of another fleet");
        let classes = ClassIndex::all(&fleet, &state);
        Ledger { fleet, state, classes, version: 0 }
    }

    /// The fleet.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// The capacity now, in the kernel's layout (what a scoring pass reads).
    pub fn state(&self) -> &FleetState {
        &self.state
    }

    /// A number that changes at every commit and release.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub(crate) fn classes(&self) -> &ClassIndex {
        &self.classes
    }

    /// The reference rule: the best feasible rack for `job` now, scanning every rack (ties: the
    /// lowest index). Slow and plain; the batched engine must always agree with it.
    pub fn best_rack(&self, job: &JobGpu) -> Option<Candidate> {
        let mut best: Option<Candidate> = None;
        for rack in 0..self.state.racks.len() {
            if self.state.check(job, rack) == 0 {
                let candidate = Candidate { score: self.state.score(job, rack), rack: rack as u32 };
                if best.is_none_or(|b| better(candidate, b)) {
                    best = Some(candidate);
                }
            }
        }
        best
    }

    /// Takes the job's GPUs and power, anchored at `anchor`, which must be feasible for it now
    /// (`check` is 0): the racks the shape rule gives ([`crate::kernel::shape::take`]).
    pub fn commit(&mut self, job: &JobGpu, anchor: u32) -> Allocation {
        debug_assert_eq!(self.state.check(job, anchor as usize), 0, "commit on an infeasible rack");
        let rack = self.state.racks[anchor as usize];
        // The other racks of a job spanning racks: the cluster's fully free racks by index.
        let free_racks = self.classes.racks_with(rack.cluster as usize, rack.gpus);
        let racks = take(job.gpus, anchor, rack.gpus, free_racks);
        let allocation = Allocation { racks, site: rack.site, power_w: job.gpus * rack.gpu_watts };
        self.apply(&allocation);
        allocation
    }

    /// Takes exactly what `allocation` holds (a recorded commit, replayed). Panics if the capacity
    /// is not there: an allocation is applied only to the state it was committed in.
    pub fn apply(&mut self, allocation: &Allocation) {
        self.version += 1;
        for share in &allocation.racks {
            let rack = &mut self.state.racks[share.rack as usize];
            assert!(
                rack.free_gpus >= share.gpus,
                "rack {} has {} free GPUs, not {}",
                share.rack,
                rack.free_gpus,
                share.gpus
            );
            if rack.free_gpus == rack.gpus {
                self.state.clusters[rack.cluster as usize].free_racks -= 1;
            }
            rack.free_gpus -= share.gpus;
            self.classes.update(rack.cluster, share.rack, rack.free_gpus + share.gpus, rack.free_gpus);
        }
        let site = &mut self.state.sites[allocation.site as usize];
        assert!(site.power_free_w >= allocation.power_w, "site {} lacks the power of the allocation", allocation.site);
        site.power_free_w -= allocation.power_w;
    }

    /// Gives back what `allocation` holds: its GPUs on each rack (a rack fully free again counts as
    /// a free rack of its cluster) and its power. The exact inverse of the commit that made it.
    /// Panics if it would give back more than the fleet has: an allocation is released once.
    pub fn release(&mut self, allocation: &Allocation) {
        self.version += 1;
        for share in &allocation.racks {
            let rack = &mut self.state.racks[share.rack as usize];
            assert!(
                rack.gpus - rack.free_gpus >= share.gpus,
                "rack {} has {} GPUs in use, fewer than the {} released",
                share.rack,
                rack.gpus - rack.free_gpus,
                share.gpus
            );
            rack.free_gpus += share.gpus;
            if rack.free_gpus == rack.gpus {
                self.state.clusters[rack.cluster as usize].free_racks += 1;
            }
            self.classes.update(rack.cluster, share.rack, rack.free_gpus - share.gpus, rack.free_gpus);
        }
        let capacity = self.fleet.sites[allocation.site as usize].power_w;
        let site = &mut self.state.sites[allocation.site as usize];
        assert!(
            u64::from(site.power_free_w) + u64::from(allocation.power_w) <= u64::from(capacity),
            "site {} would have more power free than it has",
            allocation.site
        );
        site.power_free_w += allocation.power_w;
    }

    /// Checks the ledger's own bookkeeping: every rack in the class of its free GPUs, every
    /// cluster's count of fully free racks, no rack or site above its capacity.
    pub fn check_consistency(&self) -> Result<(), String> {
        self.classes.matches(&self.state)?;
        for (c, cluster) in self.fleet.clusters.iter().enumerate() {
            let free =
                cluster.racks.clone().filter(|&r| self.state.racks[r].free_gpus == self.state.racks[r].gpus).count();
            if free as u32 != self.state.clusters[c].free_racks {
                return Err(format!("cluster {c} counts {} free racks, has {free}", self.state.clusters[c].free_racks));
            }
        }
        if let Some(r) = self.state.racks.iter().position(|r| r.free_gpus > r.gpus) {
            return Err(format!("rack {r} has more free GPUs than GPUs"));
        }
        for (s, site) in self.fleet.sites.iter().enumerate() {
            if self.state.sites[s].power_free_w > site.power_w {
                return Err(format!("site {s} has more power free than it has"));
            }
        }
        Ok(())
    }
}
