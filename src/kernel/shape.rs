//! The shape rule: where a job's pods may go. This module is its one owner on the CPU side; the
//! shader's functions of the same names are the twins of the ones marked *twin* here.
//!
//! A rack is one NVLink domain of `nodes` nodes (compute trays, or one server), each of
//! `node_gpus` GPUs; a pod runs on one node. A job is `pods` pods of `pod_gpus` GPUs each, or,
//! stated as `gpus` alone (`pod_gpus` = 0, the shorthand), the pods that fill whole nodes of the
//! rack it lands on: one pod when its GPUs fit one node, otherwise `gpus / node_gpus` pods of a
//! whole node each plus one pod of the remainder ([`pod_layout`]).
//!
//! **A job whose pods fit one NVLink domain of the rack's type lands inside one rack, on its
//! usable (ready) nodes; a larger job takes whole racks of one cluster** — every node ready and
//! free — as many as its pods need. The rack a job is scored on is its *anchor*: the rack itself
//! for a job within one domain, and for a larger job the first of its racks, while the cluster has
//! enough whole racks in all. The other racks of a larger job are the lowest-indexed whole racks of
//! the anchor's cluster, filled in order; room left over in its last rack stays free for others.
//!
//! **Inside a rack, pods are placed one at a time, full-size pods first: each on the usable node
//! with the fewest free GPUs that holds it, ties to the lowest node index** ([`pods_on_nodes`]),
//! and on that node on its lowest-numbered free GPUs. Identical pods never block one another under
//! this rule, so the counting test of [`fits`] is exact: the pods fit if and only if the rule
//! places them all.
//!
//! The kernel sees a rack's nodes only as counts: how many usable nodes have 1, 2, …, 8 free GPUs
//! ([`node_counts`]), 8 bits each in two words. Cordoned and failed nodes count as no free GPUs.
//!
//! Everything that depends on this rule (feasibility in the kernel, the CPU scorer's pruning, the
//! engine's commit and its rack classes, the words of `explain`) asks this module.

use crate::kernel::limits::MAX_NODE_GPUS;

/// GPUs a placed job takes on one rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RackShare {
    /// Global rack index.
    pub rack: u32,
    /// GPUs taken on it.
    pub gpus: u32,
}

/// The pods of a job on racks of `node_gpus` GPUs per node: `[full, size, rest]`, that is `full`
/// pods of `size` GPUs and, when `rest` is not 0, one more pod of `rest` GPUs. Explicit pods
/// (`pod_gpus` ≥ 1) are `[pods, pod_gpus, 0]` on every rack. *Twin.*
#[inline(always)]
pub fn pod_layout(job_gpus: u32, pods: u32, pod_gpus: u32, node_gpus: u32) -> [u32; 3] {
    if pod_gpus != 0 {
        [pods, pod_gpus, 0]
    } else if job_gpus <= node_gpus {
        [1, job_gpus, 0]
    } else {
        [job_gpus / node_gpus, node_gpus, job_gpus % node_gpus]
    }
}

/// Pods of a pod shape in all.
#[inline(always)]
pub fn pod_count(pod_shape: [u32; 3]) -> u32 {
    pod_shape[0] + u32::from(pod_shape[2] != 0)
}

/// Pods of the shape one whole rack of `nodes` nodes of `node_gpus` GPUs holds (0 when a pod is
/// larger than a node). A shorthand job's remainder pod is smaller than a full one, so it holds as
/// many of those. *Twin.*
#[inline(always)]
pub fn pods_per_rack(size: u32, node_gpus: u32, nodes: u32) -> u32 {
    nodes * (node_gpus / size)
}

/// Usable nodes with exactly `free` (1..=8) free GPUs, from the packed counts. *Twin.*
#[inline(always)]
pub fn nodes_with_free(counts_lo: u32, counts_hi: u32, free: u32) -> u32 {
    let word = if free <= 4 { counts_lo } else { counts_hi };
    (word >> (8 * ((free - 1) % 4))) & 0xFF
}

/// Pods of `size` GPUs the usable nodes can hold (several per node where they fit). *Twin.*
#[inline(always)]
pub fn pods_fit(counts_lo: u32, counts_hi: u32, size: u32) -> u32 {
    let mut total = 0u32;
    for free in 1..=MAX_NODE_GPUS {
        total += nodes_with_free(counts_lo, counts_hi, free) * (free / size);
    }
    total
}

/// Usable nodes with at least `gpus` (≥ 1) free GPUs. *Twin.*
#[inline(always)]
pub fn nodes_with_at_least(counts_lo: u32, counts_hi: u32, gpus: u32) -> u32 {
    let mut total = 0u32;
    for free in gpus..=MAX_NODE_GPUS {
        total += nodes_with_free(counts_lo, counts_hi, free);
    }
    total
}

/// True when a job of pod shape `pod_shape` can anchor on a rack of `rack_gpus` GPUs, `free_gpus`
/// free, whose usable nodes are counted by `counts_lo`/`counts_hi`, which holds `per_rack` of its
/// pods when whole, in a cluster with `whole_racks` whole racks. *Twin.*
#[inline(always)]
pub fn fits(
    pod_shape: [u32; 3],
    per_rack: u32,
    free_gpus: u32,
    rack_gpus: u32,
    counts_lo: u32,
    counts_hi: u32,
    whole_racks: u32,
) -> bool {
    let [full, size, rest] = pod_shape;
    let pods = full + u32::from(rest != 0);
    let fits_one_rack = pods_fit(counts_lo, counts_hi, size) >= full
        && (rest == 0 || nodes_with_at_least(counts_lo, counts_hi, rest) > full);
    let fits_many_racks = free_gpus == rack_gpus && whole_racks * per_rack >= pods;
    per_rack != 0 && if pods <= per_rack { fits_one_rack } else { fits_many_racks }
}

/// GPUs the job takes on its anchor rack: all of them for a job within one rack, a whole rack's
/// worth of its pods for one spanning racks; never more than the rack's free GPUs (so that the
/// packing term stays in range for a pair that does not fit). *Twin.*
#[inline(always)]
pub fn gpus_on_anchor(job_gpus: u32, pod_shape: [u32; 3], per_rack: u32, free_gpus: u32) -> u32 {
    let pods = pod_shape[0] + u32::from(pod_shape[2] != 0);
    let on_anchor = if pods <= per_rack { job_gpus } else { per_rack * pod_shape[1] };
    min_u32(on_anchor, free_gpus)
}

#[inline(always)]
fn min_u32(a: u32, b: u32) -> u32 {
    a.min(b)
}

/// True when the job's pods do not fit one empty rack of this type.
pub fn spans_racks(pod_shape: [u32; 3], per_rack: u32) -> bool {
    pod_count(pod_shape) > per_rack
}

/// The whole racks a job spanning racks takes (`per_rack` ≥ 1).
pub fn racks_needed(pod_shape: [u32; 3], per_rack: u32) -> u32 {
    pod_count(pod_shape).div_ceil(per_rack)
}

/// The fewest free GPUs a rack needs to anchor the job: its rack's worth for one spanning racks,
/// else the job's GPUs. A necessary condition only (the nodes must hold the pods too).
pub fn min_anchor_free(job_gpus: u32, pod_shape: [u32; 3], per_rack: u32, rack_gpus: u32) -> u32 {
    if spans_racks(pod_shape, per_rack) { rack_gpus } else { job_gpus }
}

/// True when a cluster may have room for the job, given the most free GPUs of any of its racks and
/// its whole racks: a necessary condition, used to skip clusters (the nodes decide the rest).
pub fn cluster_has_room(job_gpus: u32, pod_shape: [u32; 3], per_rack: u32, max_free: u32, whole_racks: u32) -> bool {
    if per_rack == 0 {
        false
    } else if spans_racks(pod_shape, per_rack) {
        u64::from(whole_racks) * u64::from(per_rack) >= u64::from(pod_count(pod_shape))
    } else {
        max_free >= job_gpus
    }
}

/// The counts the kernel reads of a rack whose usable nodes have `free` free GPUs each (0..=8;
/// unusable nodes count as 0): nodes with 1..=4 free GPUs in the low word, 5..=8 in the high word,
/// 8 bits each (at most 255 nodes per rack).
pub fn node_counts(free: impl IntoIterator<Item = u32>) -> [u32; 2] {
    let mut counts = [0u32; 2];
    for f in free {
        if f != 0 {
            let (word, shift) = (((f - 1) / 4) as usize, 8 * ((f - 1) % 4));
            counts[word] += 1 << shift;
        }
    }
    counts
}

/// Places `full` pods of `size` GPUs and then, when `rest` is not 0, one pod of `rest` GPUs on the
/// nodes of one rack whose usable nodes have `free[i]` free GPUs (0 for unusable nodes): each pod
/// on the node with the fewest free GPUs that holds it, ties to the lowest index (the rule of the
/// module). Returns each pod's node and GPUs in placement order and takes them from `free`, or
/// None, leaving `free` as it was, when they do not all fit.
pub fn pods_on_nodes(free: &mut [u32], full: u32, size: u32, rest: u32) -> Option<Vec<(u32, u32)>> {
    let before = free.to_vec();
    let mut pods = Vec::with_capacity(full as usize + 1);
    for gpus in std::iter::repeat_n(size, full as usize).chain((rest != 0).then_some(rest)) {
        let best = (0..free.len()).filter(|&n| free[n] >= gpus).min_by_key(|&n| (free[n], n));
        let Some(node) = best else {
            free.copy_from_slice(&before);
            return None;
        };
        free[node] -= gpus;
        pods.push((node as u32, gpus));
    }
    Some(pods)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(free: &[u32]) -> [u32; 2] {
        node_counts(free.iter().copied())
    }

    #[test]
    fn layouts() {
        assert_eq!(pod_layout(2, 0, 0, 4), [1, 2, 0], "fits one tray: one pod");
        assert_eq!(pod_layout(8, 0, 0, 4), [2, 4, 0], "two whole trays");
        assert_eq!(pod_layout(150, 0, 0, 4), [37, 4, 2], "37 trays and a pod of 2");
        assert_eq!(pod_layout(16, 0, 0, 8), [2, 8, 0]);
        assert_eq!(pod_layout(12, 6, 2, 4), [6, 2, 0], "explicit pods keep their size");
        assert_eq!(pods_per_rack(4, 4, 18), 18);
        assert_eq!(pods_per_rack(3, 4, 18), 18, "one pod of 3 per tray of 4");
        assert_eq!(pods_per_rack(8, 4, 18), 0, "a pod larger than a tray never fits");
    }

    #[test]
    fn counting_matches_placing() {
        // Exhaustive over small racks: the counting test says yes exactly when the rule places
        // every pod.
        for nodes in 1..=3u32 {
            for state in 0..5u32.pow(nodes) {
                let free: Vec<u32> = (0..nodes).map(|n| state / 5u32.pow(n) % 5).collect();
                let [lo, hi] = counts(&free);
                let total: u32 = free.iter().sum();
                for gpus in 1..=12u32 {
                    for explicit in [None, Some((2u32, 2u32)), Some((3, 1)), Some((1, 3))] {
                        let (pods, pod_gpus) = explicit.unwrap_or((0, 0));
                        let job_gpus = if pod_gpus == 0 { gpus } else { pods * pod_gpus };
                        let pod_shape = pod_layout(job_gpus, pods, pod_gpus, 4);
                        let per_rack = pods_per_rack(pod_shape[1], 4, nodes);
                        if spans_racks(pod_shape, per_rack) || per_rack == 0 {
                            continue;
                        }
                        let says = fits(pod_shape, per_rack, total, 4 * nodes, lo, hi, 0);
                        let mut left = free.clone();
                        let placed = pods_on_nodes(&mut left, pod_shape[0], pod_shape[1], pod_shape[2]);
                        assert_eq!(says, placed.is_some(), "free {free:?}, pod_shape {pod_shape:?}");
                        if let Some(pods) = placed {
                            assert_eq!(pods.iter().map(|p| p.1).sum::<u32>(), job_gpus);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn one_rack_and_many_racks() {
        let whole = counts(&[4; 18]);
        let l8 = pod_layout(8, 0, 0, 4);
        assert!(fits(l8, 18, 72, 72, whole[0], whole[1], 0));
        let scattered = counts(&[2, 2, 2, 2, 0, 0]);
        assert!(!fits(l8, 6, 8, 24, scattered[0], scattered[1], 0), "8 free GPUs on 4 trays hold no 4-GPU pod");
        let l144 = pod_layout(144, 0, 0, 4);
        assert!(fits(l144, 18, 72, 72, whole[0], whole[1], 2));
        let one_less = counts(&[4; 17]);
        assert!(!fits(l144, 18, 68, 72, one_less[0], one_less[1], 9), "a spanning job's anchor must be whole");
        assert!(!fits(pod_layout(145, 0, 0, 4), 18, 72, 72, whole[0], whole[1], 2));
        assert_eq!(racks_needed(pod_layout(145, 0, 0, 4), 18), 3);
        assert_eq!(min_anchor_free(145, pod_layout(145, 0, 0, 4), 18, 72), 72);
        assert_eq!(min_anchor_free(5, pod_layout(5, 0, 0, 4), 18, 72), 5);
        assert_eq!(gpus_on_anchor(150, pod_layout(150, 0, 0, 4), 18, 72), 72);
        assert_eq!(gpus_on_anchor(6, pod_layout(6, 0, 0, 4), 18, 3), 3, "never above the free GPUs");
    }

    #[test]
    fn best_fit_inside_a_rack() {
        let mut free = vec![4, 1, 2, 4, 3];
        assert_eq!(pods_on_nodes(&mut free, 2, 2, 1), Some(vec![(2, 2), (4, 2), (1, 1)]));
        assert_eq!(free, vec![4, 0, 0, 4, 1]);
        assert_eq!(pods_on_nodes(&mut free, 3, 4, 0), None);
        assert_eq!(free, vec![4, 0, 0, 4, 1], "a failed placement takes nothing");
    }
}
