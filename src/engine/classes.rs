//! Racks grouped into classes of interchangeable racks: racks of one cluster with the same free
//! GPUs give identical `check` and `score` results for every job (same site, same rack type, same
//! occupancy), so only the lowest-indexed rack of each class needs scoring, and ties between them
//! go to that rack anyway. The engine's invariants (see [`crate::engine`]) are what make this true.

use std::collections::{BTreeMap, BTreeSet};

use crate::kernel::score::{Candidate, JobGpu, REJECT_GPUS, better};
use crate::kernel::shape::min_anchor_free;
use crate::kernel::state::FleetState;
use crate::model::fleet::Fleet;

/// A set of racks by (cluster, free GPUs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClassIndex {
    member: Vec<bool>,
    /// `buckets[cluster][free]`: the member racks of the cluster with that many free GPUs. Sparse:
    /// only counts some rack has (a fleet of many small clusters of large racks would otherwise
    /// cost clusters × rack GPUs empty sets).
    buckets: Vec<BTreeMap<u32, BTreeSet<u32>>>,
    /// GPUs per rack of each cluster.
    rack_gpus: Vec<u32>,
    /// Clusters with at least one member.
    clusters: BTreeSet<u32>,
    len: usize,
}

impl ClassIndex {
    /// An empty index for `fleet`'s racks.
    pub(crate) fn new(fleet: &Fleet) -> Self {
        ClassIndex {
            member: vec![false; fleet.racks.len()],
            buckets: vec![BTreeMap::new(); fleet.clusters.len()],
            rack_gpus: fleet.clusters.iter().map(|c| fleet.rack_types[c.rack_type].gpus).collect(),
            clusters: BTreeSet::new(),
            len: 0,
        }
    }

    /// An index holding every rack of `state`.
    pub(crate) fn all(fleet: &Fleet, state: &FleetState) -> Self {
        let mut index = ClassIndex::new(fleet);
        for (r, rack) in state.racks.iter().enumerate() {
            index.set(rack.cluster, r as u32, None, rack.free_gpus);
        }
        index
    }

    /// Member racks.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// True when `rack` is a member.
    pub(crate) fn contains(&self, rack: u32) -> bool {
        self.member[rack as usize]
    }

    /// Adds `rack` (if `old_free` is None) or moves it from `old_free` to `new_free`.
    fn set(&mut self, cluster: u32, rack: u32, old_free: Option<u32>, new_free: u32) {
        let buckets = &mut self.buckets[cluster as usize];
        if let Some(old) = old_free {
            if let Some(bucket) = buckets.get_mut(&old) {
                bucket.remove(&rack);
                if bucket.is_empty() {
                    buckets.remove(&old);
                }
            }
        } else {
            self.member[rack as usize] = true;
            self.len += 1;
            self.clusters.insert(cluster);
        }
        buckets.entry(new_free).or_default().insert(rack);
    }

    /// Records that a rack moved from `old_free` to `new_free`, adding it if it is not a member.
    pub(crate) fn update(&mut self, cluster: u32, rack: u32, old_free: u32, new_free: u32) {
        let old = self.member[rack as usize].then_some(old_free);
        self.set(cluster, rack, old, new_free);
    }

    /// Removes every member.
    pub(crate) fn clear(&mut self) {
        for &cluster in &self.clusters {
            for bucket in self.buckets[cluster as usize].values() {
                for &rack in bucket {
                    self.member[rack as usize] = false;
                }
            }
            self.buckets[cluster as usize].clear();
        }
        self.clusters.clear();
        self.len = 0;
    }

    /// The largest free-GPU count among the cluster's member racks.
    pub(crate) fn max_free(&self, cluster: usize) -> Option<u32> {
        self.buckets[cluster].keys().next_back().copied()
    }

    /// The member racks of `cluster` with `free` free GPUs.
    pub(crate) fn racks_with(&self, cluster: usize, free: u32) -> impl Iterator<Item = u32> + '_ {
        self.buckets[cluster].get(&free).into_iter().flatten().copied()
    }

    /// The best feasible member rack for `job` in `state` (ties: lowest index), scoring one rack per
    /// class. A cluster whose first scored class fails anything but GPU capacity is skipped whole:
    /// every other constraint is the same for all its racks.
    pub(crate) fn best(&self, job: &JobGpu, state: &FleetState) -> Option<Candidate> {
        let mut best: Option<Candidate> = None;
        for &cluster in &self.clusters {
            let min_free = min_anchor_free(job.gpus, self.rack_gpus[cluster as usize]);
            for bucket in self.buckets[cluster as usize].range(min_free..).map(|(_, racks)| racks) {
                let Some(&rack) = bucket.first() else {
                    continue;
                };
                let reject = state.check(job, rack as usize);
                if reject & !REJECT_GPUS != 0 {
                    break;
                }
                if reject == 0 {
                    let candidate = Candidate { score: state.score(job, rack as usize), rack };
                    if best.is_none_or(|b| better(candidate, b)) {
                        best = Some(candidate);
                    }
                }
            }
        }
        best
    }

    /// Checks that the members are exactly the racks of `state` in the buckets of their free GPUs
    /// (for an index holding every rack).
    pub(crate) fn matches(&self, state: &FleetState) -> Result<(), String> {
        for (r, rack) in state.racks.iter().enumerate() {
            let in_bucket =
                self.buckets[rack.cluster as usize].get(&rack.free_gpus).is_some_and(|b| b.contains(&(r as u32)));
            if !self.member[r] || !in_bucket {
                return Err(format!("rack {r} with {} free GPUs is not in its class", rack.free_gpus));
            }
        }
        if self.buckets.iter().flat_map(BTreeMap::values).any(BTreeSet::is_empty) {
            return Err("an empty class is kept".into());
        }
        let filed: usize = self.buckets.iter().flat_map(BTreeMap::values).map(BTreeSet::len).sum();
        if filed != state.racks.len() || self.len != state.racks.len() {
            return Err(format!("{filed} racks filed in classes, {} racks in the fleet", state.racks.len()));
        }
        Ok(())
    }
}
