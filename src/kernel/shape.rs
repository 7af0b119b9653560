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
//! The kernel sees a rack's nodes through its summary ([`rack_summary`]): how many usable nodes
//! have at least 1, 2, …, 8 free GPUs, and how many pods of 1, 2, …, 8 GPUs they hold, so that the
//! test of a pair costs a few shifts whatever the rack. Cordoned and failed nodes count as no free
//! GPUs. Only pods asking more CPU or memory than the summary answers for, and pods of a shared
//! GPU (placed by [`shared_pods_on_gpus`]), are counted node by node from the node table. The job's side is a table per node size ([`job_tables`]); nothing divides per pair.
//!
//! Everything that depends on this rule (feasibility in the kernel, the CPU scorer's pruning, the
//! engine's commit and its rack classes, the words of `explain`) asks this module.

use crate::kernel::limits::MAX_NODE_GPUS;

/// GPUs a placed job takes on one rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RackShare {
    /// Global rack index.
    pub rack: u32,
    /// GPUs taken on it.
    pub gpus: u32,
}

/// The pods of a job on racks of `node_gpus` GPUs per node: `[full, size, rest]`, that is `full`
/// pods of `size` GPUs and, when `rest` is not 0, one more pod of `rest` GPUs. Explicit pods
/// (`pod_gpus` ≥ 1) are `[pods, pod_gpus, 0]` on every rack. The host's rule; the kernel reads it
/// from the job's table ([`job_tables`], [`unpack_shape`]).
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

/// The job's shape table, one entry per node size 1..=8 (index `node_gpus - 1`), so that the
/// kernel never divides: each entry packs [`pod_layout`] on nodes of that many GPUs (bits 0–15 the
/// full pods, 16–19 their size, 20–23 the rest pod's size, 24–27 the full pods one node of that
/// size holds: `node_gpus / size`). Explicit pods are at most 65 535 of at most 8 GPUs, a
/// shorthand job's full pods at most 65 535 (its GPUs), so every field fits.
pub fn job_tables(job_gpus: u32, pods: u32, pod_gpus: u32) -> [u32; MAX_NODE_GPUS as usize] {
    let mut shapes = [0u32; MAX_NODE_GPUS as usize];
    for node_gpus in 1..=MAX_NODE_GPUS {
        let [full, size, rest] = pod_layout(job_gpus, pods, pod_gpus, node_gpus);
        // A pod larger than a node fits none: size 0 and no pods per node mark it.
        let (size, per_node) = if size == 0 || size > node_gpus { (0, 0) } else { (size, node_gpus / size) };
        shapes[(node_gpus - 1) as usize] = full.min(0xFFFF) | (size << 16) | (rest << 20) | (per_node << 24);
    }
    shapes
}

/// `[full, size, rest]` from an entry of [`job_tables`]. *Twin.*
#[inline(always)]
pub fn unpack_shape(packed: u32) -> [u32; 3] {
    [packed & 0xFFFF, (packed >> 16) & 0xF, (packed >> 20) & 0xF]
}

/// The host's view of a job on a rack type of `nodes` nodes of `node_gpus` GPUs: its pod shape
/// ([`pod_layout`]) and the pods a whole rack holds (0 when a pod is larger than a node). The same
/// values the kernel reads from the job's table.
pub fn shape_on(job_gpus: u32, pods: u32, pod_gpus: u32, node_gpus: u32, nodes: u32) -> ([u32; 3], u32) {
    let shape = pod_layout(job_gpus, pods, pod_gpus, node_gpus);
    let per_rack = if shape[1] == 0 || shape[1] > node_gpus { 0 } else { nodes * (node_gpus / shape[1]) };
    (shape, per_rack)
}

/// Pods of a pod shape in all.
#[inline(always)]
pub fn pod_count(pod_shape: [u32; 3]) -> u32 {
    pod_shape[0] + u32::from(pod_shape[2] != 0)
}

/// Pods of the job one node holds by GPUs alone, from its table entry for the node's size (0 when a
/// pod is larger than a node). *Twin.*
#[inline(always)]
pub fn pods_per_node(packed: u32) -> u32 {
    (packed >> 24) & 0xF
}

/// Pods of the job one whole rack of `nodes` nodes holds, when one node holds `per_node` of them by
/// GPUs ([`pods_per_node`], or the GPUs' shares for pods of a shared GPU), and fewer when a node's
/// CPU or memory holds fewer of its pods. A shorthand job's remainder pod is smaller than a full
/// one (and asks for no CPU or memory), so a rack holds as many of those. *Twin.*
#[inline(always)]
#[expect(clippy::manual_checked_ops, reason = "reads line for line like the shader's function")]
pub fn pods_per_rack(per_node: u32, nodes: u32, pod_cpu: u32, pod_memory: u32, node_cpu: u32, node_memory: u32) -> u32 {
    let mut held = per_node;
    if pod_cpu != 0 {
        held = min_u32(held, node_cpu / pod_cpu);
    }
    if pod_memory != 0 {
        held = min_u32(held, node_memory / pod_memory);
    }
    nodes * held
}

/// A rack's summary, what the kernel knows of its nodes: `[at_least_1_4, at_least_5_8, fit_1_2,
/// fit_3_4, fit_5_6, fit_7_8]`. `at_least` holds, 8 bits each, the usable nodes with at least 1, 2,
/// …, 8 free GPUs (lowest byte: 1); `fit` holds, 16 bits each, the pods of 1, 2, …, 8 GPUs the usable
/// nodes can hold, several per node where they fit (low half: the odd size). At most 255 nodes of 8
/// GPUs: at most 255 and 2 040, so every field fits. `free` gives each node's usable free GPUs.
pub fn rack_summary(free: impl IntoIterator<Item = u32>) -> [u32; 6] {
    let mut count = [0u32; MAX_NODE_GPUS as usize + 1];
    for f in free {
        count[f as usize] += 1;
    }
    let mut summary = [0u32; 6];
    for at_least in 1..=MAX_NODE_GPUS {
        let nodes: u32 = count[at_least as usize..].iter().sum();
        summary[((at_least - 1) / 4) as usize] |= nodes << (8 * ((at_least - 1) % 4));
    }
    for size in 1..=MAX_NODE_GPUS {
        let pods: u32 = (1..=MAX_NODE_GPUS).map(|f| count[f as usize] * (f / size)).sum();
        summary[2 + ((size - 1) / 2) as usize] |= pods << (16 * ((size - 1) % 2));
    }
    summary
}

/// Usable nodes with at least `gpus` (1..=8) free GPUs, from the rack's summary. *Twin.*
#[inline(always)]
pub fn nodes_with_at_least(summary: [u32; 6], gpus: u32) -> u32 {
    let word = if gpus <= 4 { summary[0] } else { summary[1] };
    (word >> (8 * ((gpus - 1) & 3))) & 0xFF
}

/// Pods of `size` (1..=8) GPUs the rack's usable nodes hold, from its summary. *Twin.*
#[inline(always)]
pub fn pods_fit(summary: [u32; 6], size: u32) -> u32 {
    // Selects, not an index into the array: the CPU scorer's loop stays vectorized.
    let low = if size <= 2 { summary[2] } else { summary[3] };
    let high = if size <= 6 { summary[4] } else { summary[5] };
    let word = if size <= 4 { low } else { high };
    (word >> (16 * ((size - 1) & 1))) & 0xFFFF
}

/// Usable nodes with exactly `free` (1..=8) free GPUs (the host's, for explanations).
pub fn nodes_with_free(summary: [u32; 6], free: u32) -> u32 {
    let above = if free < MAX_NODE_GPUS { nodes_with_at_least(summary, free + 1) } else { 0 };
    nodes_with_at_least(summary, free) - above
}

/// True when a job of pod shape `pod_shape` can anchor on a rack of `rack_gpus` GPUs, `free_gpus`
/// free, of summary `summary`, whose usable nodes hold `pods_here` of its full-size pods now and
/// which holds `per_rack` of its pods when whole, in a cluster with `whole_racks` whole racks.
/// *Twin.*
#[inline(always)]
pub fn fits(
    pod_shape: [u32; 3],
    per_rack: u32,
    free_gpus: u32,
    rack_gpus: u32,
    summary: [u32; 6],
    whole_racks: u32,
    pods_here: u32,
) -> bool {
    let [full, _, rest] = pod_shape;
    let pods = full + u32::from(rest != 0);
    let fits_one_rack = pods_here >= full && (rest == 0 || nodes_with_at_least(summary, rest) > full);
    // whole_racks × per_rack ≥ pods, with each factor capped at pods (≤ 65 535), so the product
    // stays in a u32 when pods share GPUs (a rack then holds up to 2 040 000 of them).
    let fits_many_racks = free_gpus == rack_gpus && min_u32(whole_racks, pods) * min_u32(per_rack, pods) >= pods;
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

/// Places `full` pods of `size` GPUs and then, when `rest` is not 0, one pod of `rest` GPUs on the
/// nodes of one rack whose usable nodes have `free[i]` free GPUs (0 for unusable nodes): each pod
/// on the node with the fewest free GPUs that holds it, ties to the lowest index (the rule of the
/// module). Returns each pod's node and GPUs in placement order and takes them from `free`, or
/// None, leaving `free` as it was, when they do not all fit.
pub fn pods_on_nodes(free: &mut [u32], full: u32, size: u32, rest: u32) -> Option<Vec<(u32, u32)>> {
    let mut nodes: Vec<[u32; 3]> = free.iter().map(|&f| [f, 0, 0]).collect();
    let pods = pods_on_nodes_sized(&mut nodes, full, size, rest, [0, 0])?;
    for (f, node) in free.iter_mut().zip(&nodes) {
        *f = node[0];
    }
    Some(pods)
}

/// [`pods_on_nodes`] with CPU and memory: `nodes[i]` is node i's `[free GPUs, free CPU, free
/// memory]` (free GPUs 0 for an unusable node), and each full-size pod also asks for `need` = `[CPU,
/// memory]` (the remainder pod of a shorthand job asks for none). A node holds a pod when it has
/// its GPUs, CPU and memory; among those, the one with the fewest free GPUs, ties to the lowest
/// index. Identical pods still never block one another (each node holds a number of them of its
/// own), so counting node by node is exact.
pub fn pods_on_nodes_sized(
    nodes: &mut [[u32; 3]],
    full: u32,
    size: u32,
    rest: u32,
    need: [u32; 2],
) -> Option<Vec<(u32, u32)>> {
    let before = nodes.to_vec();
    let mut pods = Vec::with_capacity(full as usize + 1);
    let full_pods = std::iter::repeat_n((size, need), full as usize);
    for (gpus, [cpu, memory]) in full_pods.chain((rest != 0).then_some((rest, [0, 0]))) {
        let holds = |n: &[u32; 3]| n[0] >= gpus && n[1] >= cpu && n[2] >= memory;
        let best = (0..nodes.len()).filter(|&n| holds(&nodes[n])).min_by_key(|&n| (nodes[n][0], n));
        let Some(node) = best else {
            nodes.copy_from_slice(&before);
            return None;
        };
        nodes[node][0] -= gpus;
        nodes[node][1] -= cpu;
        nodes[node][2] -= memory;
        pods.push((node as u32, gpus));
    }
    Some(pods)
}

/// A node as [`shared_pods_on_gpus`] sees it: the free thousandths of each of its GPUs (1000 for a
/// free GPU, what is left on a shared one, 0 for a GPU in use whole and for every GPU of a node that
/// is not ready), its free CPU and its free memory.
pub type SharedNode = ([u32; MAX_NODE_GPUS as usize], u32, u32);

/// Places `pods` pods of `milli` (1..=999) thousandths of one GPU each on the nodes of one rack,
/// each also asking `need` = `[CPU, memory]`: each pod on the GPU with the fewest free thousandths
/// that holds it (so a shared GPU before a free one), on a node with the pod's CPU and memory, ties
/// to the lowest node and then GPU index. Returns each pod's node and GPU in placement order and
/// takes them from `nodes`, or None, leaving `nodes` as they were, when they do not all fit.
///
/// A pod taken from a GPU lowers the pods its node holds (the fewest of its GPUs' shares, its CPU
/// and its memory, each divided by the pod's) by exactly one, so identical pods never block one
/// another and the kernel's count node by node ([`crate::kernel::score::pods_here`]) is exact.
pub fn shared_pods_on_gpus(nodes: &mut [SharedNode], pods: u32, milli: u32, need: [u32; 2]) -> Option<Vec<(u32, u32)>> {
    let before = nodes.to_vec();
    let [cpu, memory] = need;
    let mut placed = Vec::with_capacity(pods as usize);
    while (placed.len() as u32) < pods {
        let mut best: Option<(u32, usize, usize)> = None;
        for (n, (gpus, free_cpu, free_memory)) in nodes.iter().enumerate() {
            if *free_cpu < cpu || *free_memory < memory {
                continue;
            }
            for (g, &free) in gpus.iter().enumerate() {
                if free >= milli && best.is_none_or(|(least, _, _)| free < least) {
                    best = Some((free, n, g));
                }
            }
        }
        let Some((free, n, g)) = best else {
            nodes.copy_from_slice(&before);
            return None;
        };
        // The GPU stays the one with the fewest free thousandths that holds a pod while it holds
        // one and its node has the pod's CPU and memory: the pods it takes in a row, at once.
        let mut run = (free / milli).min(pods - placed.len() as u32);
        run = run.min(nodes[n].1.checked_div(cpu).unwrap_or(u32::MAX));
        run = run.min(nodes[n].2.checked_div(memory).unwrap_or(u32::MAX));
        nodes[n].0[g] -= run * milli;
        nodes[n].1 -= run * cpu;
        nodes[n].2 -= run * memory;
        placed.extend(std::iter::repeat_n((n as u32, g as u32), run as usize));
    }
    Some(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(free: &[u32]) -> [u32; 6] {
        rack_summary(free.iter().copied())
    }

    #[test]
    fn layouts() {
        assert_eq!(pod_layout(2, 0, 0, 4), [1, 2, 0], "fits one tray: one pod");
        assert_eq!(pod_layout(8, 0, 0, 4), [2, 4, 0], "two whole trays");
        assert_eq!(pod_layout(150, 0, 0, 4), [37, 4, 2], "37 trays and a pod of 2");
        assert_eq!(pod_layout(16, 0, 0, 8), [2, 8, 0]);
        assert_eq!(pod_layout(12, 6, 2, 4), [6, 2, 0], "explicit pods keep their size");
        assert_eq!(shape_on(16, 4, 4, 4, 18).1, 18);
        assert_eq!(shape_on(9, 3, 3, 4, 18).1, 18, "one pod of 3 per tray of 4");
        assert_eq!(shape_on(16, 2, 8, 4, 18).1, 0, "a pod larger than a tray never fits");
        for (job_gpus, pods, pod_gpus) in [(16, 4, 4), (9, 3, 3), (16, 2, 8), (150, 0, 0), (3, 0, 0)] {
            let shapes = job_tables(job_gpus, pods, pod_gpus);
            for node_gpus in 1..=8 {
                let i = node_gpus as usize - 1;
                let (shape, per_rack) = shape_on(job_gpus, pods, pod_gpus, node_gpus, 18);
                if per_rack != 0 {
                    assert_eq!(unpack_shape(shapes[i]), shape);
                }
                assert_eq!(
                    pods_per_rack(pods_per_node(shapes[i]), 18, 0, 0, 0, 0),
                    per_rack,
                    "{job_gpus} {pods} {pod_gpus} {node_gpus}"
                );
            }
        }
        // The summary is the counts: nodes with at least f free, pods of each size.
        let summary = counts(&[4, 3, 3, 1, 0, 8]);
        let at_least: Vec<u32> = (1..=8).map(|f| nodes_with_at_least(summary, f)).collect();
        assert_eq!(at_least, [5, 4, 4, 2, 1, 1, 1, 1]);
        let exactly: Vec<u32> = (1..=8).map(|f| nodes_with_free(summary, f)).collect();
        assert_eq!(exactly, [1, 0, 2, 1, 0, 0, 0, 1]);
        let fit: Vec<u32> = (1..=8).map(|size| pods_fit(summary, size)).collect();
        assert_eq!(fit, [19, 8, 5, 3, 1, 1, 1, 1]);
    }

    #[test]
    fn counting_matches_placing() {
        // Exhaustive over small racks: the counting test says yes exactly when the rule places
        // every pod.
        for nodes in 1..=3u32 {
            for state in 0..5u32.pow(nodes) {
                let free: Vec<u32> = (0..nodes).map(|n| state / 5u32.pow(n) % 5).collect();
                let summary = counts(&free);
                let total: u32 = free.iter().sum();
                for gpus in 1..=12u32 {
                    for explicit in [None, Some((2u32, 2u32)), Some((3, 1)), Some((1, 3))] {
                        let (pods, pod_gpus) = explicit.unwrap_or((0, 0));
                        let job_gpus = if pod_gpus == 0 { gpus } else { pods * pod_gpus };
                        let packed = job_tables(job_gpus, pods, pod_gpus)[3];
                        let pod_shape = unpack_shape(packed);
                        assert_eq!(pod_shape, pod_layout(job_gpus, pods, pod_gpus, 4), "the table is the rule");
                        let per_rack = pods_per_rack(pods_per_node(packed), nodes, 0, 0, 0, 0);
                        assert_eq!(per_rack, shape_on(job_gpus, pods, pod_gpus, 4, nodes).1);
                        if spans_racks(pod_shape, per_rack) || per_rack == 0 {
                            continue;
                        }
                        let says = fits(
                            pod_shape,
                            per_rack,
                            total,
                            4 * nodes,
                            summary,
                            0,
                            pods_fit(summary, pod_shape[1].max(1)),
                        );
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
        let fits_job = |gpus: u32, per_rack: u32, free: u32, rack_gpus: u32, summary: [u32; 6], whole: u32| {
            let shape = unpack_shape(job_tables(gpus, 0, 0)[3]);
            fits(shape, per_rack, free, rack_gpus, summary, whole, pods_fit(summary, shape[1].max(1)))
        };
        let whole = counts(&[4; 18]);
        assert!(fits_job(8, 18, 72, 72, whole, 0));
        let scattered = counts(&[2, 2, 2, 2, 0, 0]);
        assert!(!fits_job(8, 6, 8, 24, scattered, 0), "8 free GPUs on 4 trays hold no 4-GPU pod");
        assert!(fits_job(144, 18, 72, 72, whole, 2));
        let one_less = counts(&[4; 17]);
        assert!(!fits_job(144, 18, 68, 72, one_less, 9), "a spanning job's anchor must be whole");
        assert!(!fits_job(145, 18, 72, 72, whole, 2));
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
