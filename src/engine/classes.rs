//! Racks grouped into classes of interchangeable racks: racks of one cluster with the same free
//! GPUs and the same counts of usable nodes by free GPUs, whose trays hold no CPU or memory, give
//! identical `check` and `score` results for every job (same site, same rack type, the same
//! occupancy as the kernel sees it), so only the lowest-indexed rack of each class needs scoring,
//! and ties between them go to that rack anyway. A rack whose trays hold CPU or memory, or have
//! shared GPUs with room left, is a class of its own. The engine's invariants (see [`crate::engine`]) are what make this true.

use std::collections::{BTreeMap, BTreeSet};

use crate::kernel::score::{Candidate, JobGpu, REJECT_GPUS, better};
use crate::kernel::shape::{min_anchor_free, spans_racks};
use crate::kernel::state::FleetState;
use crate::model::fleet::Fleet;

/// A rack's class within its cluster: its free GPUs, then its usable nodes counted by free GPUs
/// (the first two words of the kernel's `summary`: nodes with at least 1..=8 free GPUs, which
/// determine the rest), then what else tells racks apart. Free GPUs first, so that a range of keys
/// is the racks with at least so many free GPUs.
///
/// The last field: a whole rack (every tray ready and free) is keyed by its topology block (for a
/// job kept to one block, whole racks of different blocks are not interchangeable); a rack some of
/// whose trays with free GPUs hold CPU or memory is a class of its own (`RESOURCES_HELD` | its index: trays with
/// equal free GPUs may then differ in what a pod asking for CPU or memory finds); any other rack,
/// whose trays all have their CPU and memory free, 0. A rack with a shared GPU that has room left is
/// `RESOURCES_HELD` too: pods of a share of a GPU may fit there and not on a rack of equal free GPUs.
type ClassKey = (u32, u32, u32, u32);

/// Marks the last field of a rack whose trays hold CPU or memory (rack indices stay below 2³¹).
const RESOURCES_HELD: u32 = 1 << 31;

fn key_of(r: u32, state: &FleetState) -> ClassKey {
    let rack = &state.racks[r as usize];
    let trays = &state.node_table[rack.first_node as usize..(rack.first_node + rack.nodes) as usize];
    // Only trays with free GPUs matter: a tray with none holds no pod, whatever its CPU. Shared
    // GPUs with room left hold pods of a share of a GPU that racks of equal free GPUs may not.
    let held = trays.iter().any(|n| {
        (n.free_gpus != 0 && (n.free_cpu_milli != rack.node_cpu_milli || n.free_memory_mib != rack.node_memory_mib))
            || n.shared_free != [0; 3]
    });
    let last = if rack.free_gpus == rack.gpus {
        rack.block
    } else if held {
        RESOURCES_HELD | r
    } else {
        0
    };
    (rack.free_gpus, rack.summary[0], rack.summary[1], last)
}

/// A set of racks by (cluster, class key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClassIndex {
    /// Each member's key (None: not a member).
    member: Vec<Option<ClassKey>>,
    /// `buckets[cluster][key]`: the member racks of the cluster with that key. Sparse: only keys
    /// some rack has.
    buckets: Vec<BTreeMap<ClassKey, BTreeSet<u32>>>,
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
            member: vec![None; fleet.racks.len()],
            buckets: vec![BTreeMap::new(); fleet.clusters.len()],
            rack_gpus: fleet.clusters.iter().map(|c| fleet.rack_types[c.rack_type].gpus).collect(),
            clusters: BTreeSet::new(),
            len: 0,
        }
    }

    /// An index holding every rack of `state`.
    pub(crate) fn all(fleet: &Fleet, state: &FleetState) -> Self {
        let mut index = ClassIndex::new(fleet);
        for r in 0..state.racks.len() {
            index.update(r as u32, state);
        }
        index
    }

    /// Member racks.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// True when `rack` is a member.
    pub(crate) fn contains(&self, rack: u32) -> bool {
        self.member[rack as usize].is_some()
    }

    /// Files `rack` under its class in `state`, adding it if it is not a member.
    pub(crate) fn update(&mut self, rack: u32, state: &FleetState) {
        let (cluster, new_key) = (state.racks[rack as usize].cluster, key_of(rack, state));
        let buckets = &mut self.buckets[cluster as usize];
        match self.member[rack as usize] {
            Some(old) => {
                if old == new_key {
                    return;
                }
                if let Some(bucket) = buckets.get_mut(&old) {
                    bucket.remove(&rack);
                    if bucket.is_empty() {
                        buckets.remove(&old);
                    }
                }
            }
            None => {
                self.len += 1;
                self.clusters.insert(cluster);
            }
        }
        self.member[rack as usize] = Some(new_key);
        buckets.entry(new_key).or_default().insert(rack);
    }

    /// Removes every member.
    pub(crate) fn clear(&mut self) {
        for &cluster in &self.clusters {
            for bucket in self.buckets[cluster as usize].values() {
                for &rack in bucket {
                    self.member[rack as usize] = None;
                }
            }
            self.buckets[cluster as usize].clear();
        }
        self.clusters.clear();
        self.len = 0;
    }

    /// The largest free-GPU count among the cluster's member racks.
    pub(crate) fn max_free(&self, cluster: usize) -> Option<u32> {
        self.buckets[cluster].keys().next_back().map(|key| key.0)
    }

    /// The member racks of `cluster` with `free` free GPUs, by index within each class.
    pub(crate) fn racks_with(&self, cluster: usize, free: u32) -> impl Iterator<Item = u32> + '_ {
        self.buckets[cluster]
            .range((free, 0, 0, 0)..=(free, u32::MAX, u32::MAX, u32::MAX))
            .flat_map(|(_, racks)| racks.iter().copied())
    }

    /// The classes of `cluster`'s member racks: (free GPUs, node counts low, node counts high),
    /// ascending.
    pub(crate) fn keys(&self, cluster: usize) -> impl DoubleEndedIterator<Item = (u32, u32, u32)> + '_ {
        self.buckets[cluster].keys().map(|&(free, lo, hi, _)| (free, lo, hi))
    }

    /// The lowest-indexed member rack of each class of `cluster`: one rack per class of
    /// interchangeable racks, in key order.
    pub(crate) fn representatives(&self, cluster: usize) -> impl Iterator<Item = u32> + '_ {
        self.buckets[cluster].values().filter_map(|racks| racks.first().copied())
    }

    /// The member racks of `cluster` with every node ready and free, in index order (one class per
    /// block, and blocks are runs of consecutive racks, so block by block is index order).
    pub(crate) fn whole_racks(&self, cluster: usize) -> impl Iterator<Item = u32> + '_ {
        self.racks_with(cluster, self.rack_gpus[cluster])
    }

    /// The best feasible member rack for `job` in `state` (ties: lowest index), scoring one rack per
    /// class. A cluster whose first scored class fails anything but GPU capacity is skipped whole:
    /// every other constraint is the same for all its racks.
    pub(crate) fn best(&self, job: &JobGpu, state: &FleetState) -> Option<Candidate> {
        let mut best: Option<Candidate> = None;
        for &cluster in &self.clusters {
            let Some(first) = self.buckets[cluster as usize].values().next().and_then(|b| b.first()) else {
                continue;
            };
            let shape = &state.racks[*first as usize];
            let (layout, per_rack) = job.shape_on(shape);
            let rack_gpus = self.rack_gpus[cluster as usize];
            // Pods of a shared GPU may fit a rack's shared GPUs with none free.
            let min_free = if job.shares_gpus() && !spans_racks(layout, per_rack) {
                0
            } else {
                min_anchor_free(job.gpus, layout, per_rack, rack_gpus)
            };
            for bucket in self.buckets[cluster as usize].range((min_free, 0, 0, 0)..).map(|(_, racks)| racks) {
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
            let key = key_of(r as u32, state);
            let in_bucket = self.buckets[rack.cluster as usize].get(&key).is_some_and(|b| b.contains(&(r as u32)));
            if self.member[r] != Some(key) || !in_bucket {
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
