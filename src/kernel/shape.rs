//! The shape rule: where a job's GPUs may go. This module is its one owner on the CPU side; the
//! shader's `fits` and `gpus_on_anchor` are the twins of the functions of the same names here.
//!
//! **A job of at most one NVLink domain's GPUs lands inside one rack; a larger job takes
//! ceil(gpus / rack GPUs) fully free racks of one cluster.** The rack a job is scored on is its
//! *anchor*: the rack itself for a job within one domain, and for a larger job the first of its
//! racks, which must be fully free, while the cluster has enough fully free racks in all. The other
//! racks of a larger job are the lowest-indexed fully free racks of the anchor's cluster; GPUs left
//! over in its last rack stay free for others.
//!
//! Everything that depends on this rule (feasibility in the kernel, the CPU scorer's pruning, the
//! engine's commit and its rack classes, the words of `explain`) asks this module.

/// GPUs a placed job takes on one rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RackShare {
    /// Global rack index.
    pub rack: u32,
    /// GPUs taken on it.
    pub gpus: u32,
}

/// True when a job of `job_gpus` GPUs can anchor on a rack of `rack_gpus` GPUs with `free_gpus`
/// free, in a cluster with `free_racks` fully free racks. Keep in sync with `fn fits` in the shader.
#[inline(always)]
pub fn fits(job_gpus: u32, free_gpus: u32, rack_gpus: u32, free_racks: u32) -> bool {
    let fits_one_rack = free_gpus >= job_gpus;
    let fits_many_racks = free_gpus == rack_gpus && free_racks * rack_gpus >= job_gpus;
    if job_gpus <= rack_gpus { fits_one_rack } else { fits_many_racks }
}

/// GPUs the job takes on its anchor rack: all of them for a job spanning racks (its anchor is
/// fully free). Keep in sync with `fn gpus_on_anchor` in the shader.
#[inline(always)]
pub fn gpus_on_anchor(job_gpus: u32, free_gpus: u32) -> u32 {
    job_gpus.min(free_gpus)
}

/// True when the job needs more than one rack of `rack_gpus` GPUs.
pub fn spans_racks(job_gpus: u32, rack_gpus: u32) -> bool {
    job_gpus > rack_gpus
}

/// The racks of `rack_gpus` GPUs the job takes.
pub fn racks_needed(job_gpus: u32, rack_gpus: u32) -> u32 {
    job_gpus.div_ceil(rack_gpus)
}

/// The fewest free GPUs a rack of `rack_gpus` GPUs needs to anchor the job.
pub fn min_anchor_free(job_gpus: u32, rack_gpus: u32) -> u32 {
    if spans_racks(job_gpus, rack_gpus) { rack_gpus } else { job_gpus }
}

/// True when a cluster of racks of `rack_gpus` GPUs has room for the job, given the most free GPUs
/// of any of its racks and its fully free racks. (Whether the rest of the constraints hold is
/// `check`'s business; they are the same for every rack of a cluster.)
pub fn cluster_has_room(job_gpus: u32, rack_gpus: u32, max_free: u32, free_racks: u32) -> bool {
    if spans_racks(job_gpus, rack_gpus) {
        u64::from(free_racks) * u64::from(rack_gpus) >= u64::from(job_gpus)
    } else {
        max_free >= job_gpus
    }
}

/// The racks a job anchored at `anchor` takes, and the GPUs on each: the anchor, then (for a job
/// spanning racks) the lowest-indexed of `other_free_racks`, the cluster's other fully free racks in
/// index order. `anchor` must pass [`fits`], so for a job spanning racks it is fully free.
pub fn take(
    job_gpus: u32,
    anchor: u32,
    rack_gpus: u32,
    other_free_racks: impl IntoIterator<Item = u32>,
) -> Vec<RackShare> {
    if !spans_racks(job_gpus, rack_gpus) {
        return vec![RackShare { rack: anchor, gpus: job_gpus }];
    }
    let mut shares = Vec::with_capacity(racks_needed(job_gpus, rack_gpus) as usize);
    let mut remaining = job_gpus;
    for rack in std::iter::once(anchor).chain(other_free_racks.into_iter().filter(|&r| r != anchor)) {
        let gpus = remaining.min(rack_gpus);
        shares.push(RackShare { rack, gpus });
        remaining -= gpus;
        if remaining == 0 {
            break;
        }
    }
    assert_eq!(remaining, 0, "the anchor passed `fits`, so the cluster has enough fully free racks");
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rack_and_many_racks() {
        assert!(fits(8, 8, 72, 0));
        assert!(!fits(8, 7, 72, 5));
        assert!(fits(144, 72, 72, 2));
        assert!(!fits(144, 71, 72, 9), "a spanning job's anchor must be fully free");
        assert!(!fits(145, 72, 72, 2));
        assert_eq!(racks_needed(145, 72), 3);
        assert_eq!(min_anchor_free(145, 72), 72);
        assert_eq!(min_anchor_free(5, 72), 5);
        assert_eq!(
            take(150, 4, 72, [0, 4, 7, 9]),
            vec![RackShare { rack: 4, gpus: 72 }, RackShare { rack: 0, gpus: 72 }, RackShare { rack: 7, gpus: 6 }]
        );
        assert_eq!(take(3, 9, 8, []), vec![RackShare { rack: 9, gpus: 3 }]);
    }
}
