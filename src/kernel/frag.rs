//! Node-level scoring with GPU sharing and fragmentation: the CPU twin of `shaders/frag.wgsl`.
//!
//! Where [`crate::kernel::score`] scores a job against racks whose trays hold whole GPUs, this
//! kernel scores one pod against every node with the node's full state: free milli-GPU on each of
//! its GPUs (a pod may take a share of one GPU, `gpu_milli` 1–999), free CPU and memory, and its
//! GPU model. It is the kernel of `gpuplace inflate` (the FGD experiment on Alibaba's openb trace).
//!
//! Keep in sync with `shaders/frag.wgsl`: the structs below are the shader's, field for field and in
//! the same order; the constants have the same names and values; [`accessible`] … [`better_node`]
//! read line for line like the shader's functions of the same names and come in the same order
//! (`tests/shader.rs` checks structs, constants and order; `tests/frag.rs` runs both).
//!
//! # Fragmentation (FGD, Weng et al., USENIX ATC'23)
//! The workload's typical pods form a table of shapes (CPU, GPUs, milli-GPU per GPU, allowed
//! models) with integer weights summing to exactly [`FRAG_WEIGHT_SUM`]. For one shape a node's
//! fragment is the idle GPU capacity (milli-GPU) that pods of that shape could not use:
//! - all of it when the shape asks for no GPU, when the node's model is not allowed, when fewer
//!   than the shape's GPUs have its milli-GPU free, or when the node lacks the shape's CPU;
//! - otherwise the idle milli-GPU on the GPUs with less free than the shape's milli-GPU.
//!
//! The node's fragmentation is `Σ weight × fragment` over the table ([`node_frag`]), kept per node
//! by the host. Placing a pod on a node changes it by Δ = after − before; the frag term is
//! `(((before + FRAG_OFFSET) − after) >> FRAG_SHIFT) × FRAG_STEP`, about 500 when nothing changes,
//! higher when the placement lowers fragmentation. Memory is not part of fragmentation, as in FGD.
//!
//! The term counts in steps of 128 milli-GPU of expected fragmentation, not 1: nodes whose Δ
//! differ by less are equals, and equals go to the lowest index (a fixed order). On openb this
//! allocates more than chasing every milli-GPU. FGD at 100% arrived, seeds 42–46, mean allocated
//! (BENCHMARKS.md): steps of 16 milli-GPU 94.53%, 64: 94.69%, 128: 95.11%, 256: 94.96%, 512:
//! 95.03%. The simulator's own score,
//! `int(100 · sigmoid(Δ / 1000))`, is as coarse (about 40 milli-GPU per step near Δ = 0, far more
//! beyond), with the same effect.
//!
//! The small-node term `1000 − node GPUs / the largest node's` prefers the node with fewer GPUs
//! (keeping large nodes for large pods). No preset weighs it: beside frag it allocated 0.08 points
//! more on openb's default pod list (seeds 42–51) but 6.5 points less on a list where a third of the
//! GPU pods name allowed models (`scripts/typed_pod_list.py`), where it spends the scarce models'
//! small nodes on pods that could run anywhere (BENCHMARKS.md).
//!
//! # Choosing GPUs inside a node
//! A pod of one GPU share (`gpus` 1, `milli` < 1000) may go on any GPU with enough free: each is
//! scored and the highest score wins; among equal scores the tightest fit (least free), then the
//! lowest index. Any other pod takes, one GPU at a time, the GPU with the least free that holds its
//! milli-GPU, ties to the lowest index (for whole GPUs: the lowest-indexed free GPUs).
//!
//! # Exactness
//!
//! | value | range | why it fits |
//! |---|---|---|
//! | free milli-GPU per GPU / pod `milli` | 0 ..= 1000 / 1 ..= 1000 | [`GPU_MILLI`] |
//! | GPUs per node / per pod | 0 ..= 8 / 0 ..= 8 | `MAX_NODE_GPUS` |
//! | a node's idle milli-GPU, any fragment | ≤ 8 000 | (8 GPUs of 1000) |
//! | shape weights | Σ = [`FRAG_WEIGHT_SUM`] = 65 536 exactly | built by the host |
//! | node fragmentation `Σ weight × fragment` | ≤ 8 000 · 65 536 = [`FRAG_OFFSET`] = 524 288 000 | (product) |
//! | `before + FRAG_OFFSET − after` | 0 ..= 1 048 576 000 | (sum) |
//! | frag term: that `>> FRAG_SHIFT` (23), `× FRAG_STEP` (8) | 0 ..= 1000 | (1 048 576 000 / 2²³ = 125; × 8) |
//! | `node.gpus · 1000 · inv_gpu_q16` (gpus · 1000 ≤ the largest node) | ≤ 65 536 000 | (as above) |
//! | `cpu_after · inv_cpu_q16`, `gpu_after · inv_gpu_q16` (x ≤ the fleet's largest node) | ≤ 65 536 000 | [`crate::kernel::score::inv_q16`] |
//! | pack term `1000 − (cpu part >> 17) − (gpu part >> 17)` | 0 ..= 1000 | (each part ≤ 500) |
//! | random term | 0 ..= 1000 | as the rack kernel's |
//! | score `Σ weight · term` | ≤ 4 · 1000 · 1000 | (sum) |
//! | GPU models | at most [`MAX_GPU_MODELS`] = 31, one bit each; bit 31: a model no node has | |

use bytemuck::{Pod, Zeroable};

use crate::kernel::limits::MAX_NODE_GPUS;
use crate::kernel::score::{RECIP_SHIFT, TERM_SCALE, mix};

/// One whole GPU in milli-GPU.
pub const GPU_MILLI: u32 = 1000;
/// Shape weights sum to exactly this.
pub const FRAG_WEIGHT_SUM: u32 = 1 << 16;
/// The largest node fragmentation: 8 GPUs × 1000 milli × [`FRAG_WEIGHT_SUM`].
pub const FRAG_OFFSET: u32 = 8 * 1000 * (1 << 16);
/// Shift that maps `before + FRAG_OFFSET − after` (≤ 2 · FRAG_OFFSET) onto 0..=125: one step is
/// 2²³ / 2¹⁶ = 128 milli-GPU of expected fragmentation (see the module documentation for why).
pub const FRAG_SHIFT: u32 = 23;
/// Multiplier that spreads those 0..=125 steps over 0..=1000.
pub const FRAG_STEP: u32 = 8;
/// The most GPU models a fleet may name (bit 31 of a pod's `models` marks a model no node has).
pub const MAX_GPU_MODELS: u32 = 31;
/// Bit of a pod's `models` that no node carries: the pod names only models no node has.
pub const UNKNOWN_MODEL: u32 = 1 << 31;
/// The most shapes in a fragmentation table.
pub const MAX_FRAG_SHAPES: u32 = 256;
/// Marks "no node" in a candidate.
pub const NO_NODE: u32 = 0xFFFF_FFFF;

/// Index of the fragmentation term (FGD).
pub const NODE_TERM_FRAG: u32 = 0;
/// Index of the best-fit term (CPU and GPU left after placement, half each).
pub const NODE_TERM_PACK: u32 = 1;
/// Index of the seeded random term.
pub const NODE_TERM_RANDOM: u32 = 2;
/// Index of the small-node term (fewer GPUs on the node: keeps large nodes for large pods).
pub const NODE_TERM_SIZE: u32 = 3;
/// Number of node terms.
pub const NODE_TERM_COUNT: usize = 4;

/// A node as the kernel reads it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct NodeGpu {
    /// Free milli-GPU of each GPU (0..=1000); GPUs past `gpus` hold 0.
    pub left: [u32; 8],
    /// GPUs on the node (0..=8).
    pub gpus: u32,
    /// Free CPU, milli-cores.
    pub cpu_free: u32,
    /// Free memory, MiB.
    pub mem_free: u32,
    /// The node's GPU model as one bit (0: no GPU model).
    pub model: u32,
    /// The node's fragmentation now ([`node_frag`]), kept by the host.
    pub frag: u32,
    /// 1 when the node takes new pods.
    pub ready: u32,
    /// Padding to 64 bytes.
    pub pad0: u32,
    /// Padding to 64 bytes.
    pub pad1: u32,
}

/// A typical pod of the workload, with its weight in the fragmentation table.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct ShapeGpu {
    /// CPU, milli-cores (at least 100, as FGD counts a pod without a CPU request).
    pub cpu: u32,
    /// GPUs (0: a CPU-only pod).
    pub gpus: u32,
    /// Milli-GPU on each of its GPUs (0 when `gpus` is 0).
    pub milli: u32,
    /// Allowed models, one bit each (0: any).
    pub models: u32,
    /// Weight (frequency) out of [`FRAG_WEIGHT_SUM`].
    pub weight: u32,
    /// Padding to 32 bytes.
    pub pad0: u32,
    /// Padding to 32 bytes.
    pub pad1: u32,
    /// Padding to 32 bytes.
    pub pad2: u32,
}

/// One scoring pass: the pod, the weights and the fleet's reciprocals.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct NodeParams {
    /// Nodes to score.
    pub node_count: u32,
    /// Shapes in the fragmentation table.
    pub shape_count: u32,
    /// The pod's CPU, milli-cores.
    pub pod_cpu: u32,
    /// The pod's memory, MiB.
    pub pod_mem: u32,
    /// The pod's GPUs (0..=8).
    pub pod_gpus: u32,
    /// The pod's milli-GPU on each GPU (1..=1000; 0 when `pod_gpus` is 0).
    pub pod_milli: u32,
    /// The pod's allowed models (0: any).
    pub pod_models: u32,
    /// The pod's random seed (the run's seed mixed with the pod's arrival index).
    pub pod_seed: u32,
    /// Weight of the frag term.
    pub w_frag: u32,
    /// Weight of the pack term.
    pub w_pack: u32,
    /// Weight of the random term.
    pub w_random: u32,
    /// `inv_q16` of the largest node CPU.
    pub inv_cpu_q16: u32,
    /// `inv_q16` of the largest node milli-GPU.
    pub inv_gpu_q16: u32,
    /// Weight of the small-node term.
    pub w_size: u32,
    /// Padding to 64 bytes.
    pub pad1: u32,
    /// Padding to 64 bytes.
    pub pad2: u32,
}

/// The best node found for a pod: its score, index, and the GPUs the pod takes there (bit mask).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct NodeCandidate {
    /// Score (meaningful when `node` is not [`NO_NODE`]).
    pub score: u32,
    /// Node index, or [`NO_NODE`].
    pub node: u32,
    /// GPUs the pod takes, one bit each.
    pub gpu_mask: u32,
    /// Padding to 16 bytes.
    pub pad: u32,
}

impl NodeCandidate {
    /// No node.
    pub const NONE: NodeCandidate = NodeCandidate { score: 0, node: NO_NODE, gpu_mask: 0, pad: 0 };
}

const _: () = assert!(size_of::<NodeGpu>() == 64);
const _: () = assert!(size_of::<ShapeGpu>() == 32);
const _: () = assert!(size_of::<NodeParams>() == 64);
const _: () = assert!(size_of::<NodeCandidate>() == 16);
const _: () = assert!(FRAG_OFFSET as u64 == MAX_NODE_GPUS as u64 * GPU_MILLI as u64 * FRAG_WEIGHT_SUM as u64);
const _: () = assert!(((2 * FRAG_OFFSET as u64) >> FRAG_SHIFT) * FRAG_STEP as u64 == TERM_SCALE as u64);

/// *Twin.* True when a pod allowing `models` may run on a node of model bit `model`.
#[inline(always)]
pub fn accessible(models: u32, model: u32) -> bool {
    models == 0 || (models & model) != 0
}

/// *Twin.* The fragment of a node (free milli-GPU `left`, free CPU, model) for one shape.
#[inline(always)]
pub fn shape_frag(left: &[u32; 8], cpu_free: u32, model: u32, shape: &ShapeGpu) -> u32 {
    let mut total = 0u32;
    let mut small = 0u32;
    let mut fit = 0u32;
    for &l in left {
        total += l;
        let short = l < shape.milli;
        small += if short { l } else { 0 };
        fit += if short { 0 } else { 1 };
    }
    if shape.milli == 0 || !accessible(shape.models, model) || fit < shape.gpus || cpu_free < shape.cpu {
        return total;
    }
    small
}

/// *Twin.* A node's fragmentation: `Σ weight × fragment` over the shape table.
#[inline]
pub fn node_frag(left: &[u32; 8], cpu_free: u32, model: u32, shapes: &[ShapeGpu]) -> u32 {
    let mut sum = 0u32;
    for shape in shapes {
        sum += shape.weight * shape_frag(left, cpu_free, model, shape);
    }
    sum
}

/// *Twin.* True when the pod of `params` may go on `node`: ready, CPU and memory free, and (for a
/// GPU pod) an allowed model with `pod_gpus` GPUs of `pod_milli` free each.
#[inline(always)]
pub fn fits_node(node: &NodeGpu, params: &NodeParams) -> bool {
    if node.ready == 0 || node.cpu_free < params.pod_cpu || node.mem_free < params.pod_mem {
        return false;
    }
    if params.pod_gpus == 0 {
        return true;
    }
    if node.model == 0 || !accessible(params.pod_models, node.model) {
        return false;
    }
    let mut fit = 0u32;
    for &l in &node.left {
        fit += if l >= params.pod_milli { 1 } else { 0 };
    }
    fit >= params.pod_gpus
}

/// *Twin.* The GPUs the pod takes by best fit (one at a time, the least free that holds
/// `milli`, ties to the lowest index): the free milli-GPU after, and the mask taken.
#[inline(always)]
pub fn take_best_fit(left: &[u32; 8], gpus: u32, milli: u32) -> ([u32; 8], u32) {
    let mut after = *left;
    let mut mask = 0u32;
    for _ in 0..gpus {
        let mut best = MAX_NODE_GPUS;
        let mut best_left = 0xFFFF_FFFFu32;
        for g in 0..MAX_NODE_GPUS {
            let l = after[g as usize];
            if (mask >> g) & 1 == 0 && l >= milli && l < best_left {
                best = g;
                best_left = l;
            }
        }
        mask |= 1 << best;
        after[best as usize] -= milli;
    }
    (after, mask)
}

/// *Twin.* The node terms of placing the pod on node `index`, leaving `after` free milli-GPU,
/// `cpu_after` CPU and fragmentation `frag_after`.
#[inline(always)]
pub fn node_terms(
    node: &NodeGpu,
    index: u32,
    params: &NodeParams,
    after: &[u32; 8],
    cpu_after: u32,
    frag_after: u32,
) -> [u32; NODE_TERM_COUNT] {
    let frag = (((node.frag + FRAG_OFFSET) - frag_after) >> FRAG_SHIFT) * FRAG_STEP;
    let mut gpu_after = 0u32;
    for &l in after {
        gpu_after += l;
    }
    let pack = TERM_SCALE
        - ((cpu_after * params.inv_cpu_q16) >> (RECIP_SHIFT + 1))
        - ((gpu_after * params.inv_gpu_q16) >> (RECIP_SHIFT + 1));
    let random = ((mix(params.pod_seed ^ mix(index)) >> 16) * (TERM_SCALE + 1)) >> 16;
    let size = TERM_SCALE - ((node.gpus * GPU_MILLI * params.inv_gpu_q16) >> RECIP_SHIFT);
    [frag, pack, random, size]
}

/// *Twin.* The score of those terms under the pass's weights.
#[inline(always)]
pub fn node_score(terms: &[u32; NODE_TERM_COUNT], params: &NodeParams) -> u32 {
    params.w_frag * terms[NODE_TERM_FRAG as usize]
        + params.w_pack * terms[NODE_TERM_PACK as usize]
        + params.w_random * terms[NODE_TERM_RANDOM as usize]
        + params.w_size * terms[NODE_TERM_SIZE as usize]
}

/// *Twin.* The pod scored on node `index`: [`NodeCandidate::NONE`] when it does not fit, else the
/// best choice of GPUs there (see the module's rule) with its score.
pub fn score_node(node: &NodeGpu, index: u32, params: &NodeParams, shapes: &[ShapeGpu]) -> NodeCandidate {
    // The shader reads `shape_count` shapes; so does its twin.
    let shapes = &shapes[..params.shape_count as usize];
    if !fits_node(node, params) {
        return NodeCandidate::NONE;
    }
    let cpu_after = node.cpu_free - params.pod_cpu;
    let with_frag = params.w_frag != 0;
    if params.pod_gpus == 1 && params.pod_milli < GPU_MILLI {
        let mut best = NodeCandidate::NONE;
        let mut best_left = 0u32;
        for g in 0..MAX_NODE_GPUS {
            let l = node.left[g as usize];
            if l >= params.pod_milli {
                let mut after = node.left;
                after[g as usize] = l - params.pod_milli;
                let frag_after = if with_frag { node_frag(&after, cpu_after, node.model, shapes) } else { node.frag };
                let s = node_score(&node_terms(node, index, params, &after, cpu_after, frag_after), params);
                if best.node == NO_NODE || s > best.score || (s == best.score && l < best_left) {
                    best = NodeCandidate { score: s, node: index, gpu_mask: 1 << g, pad: 0 };
                    best_left = l;
                }
            }
        }
        return best;
    }
    let (after, mask) = take_best_fit(&node.left, params.pod_gpus, params.pod_milli);
    let frag_after = if with_frag { node_frag(&after, cpu_after, node.model, shapes) } else { node.frag };
    let s = node_score(&node_terms(node, index, params, &after, cpu_after, frag_after), params);
    NodeCandidate { score: s, node: index, gpu_mask: mask, pad: 0 }
}

/// *Twin.* True when candidate `a` beats `b`: a node beats none, a higher score wins, ties go to the
/// lower node index.
#[inline(always)]
pub fn better_node(a: &NodeCandidate, b: &NodeCandidate) -> bool {
    a.node != NO_NODE && (b.node == NO_NODE || a.score > b.score || (a.score == b.score && a.node < b.node))
}

/// The best node for the pod of `params` over `nodes` on the CPU (one thread), by [`better_node`].
///
/// # Panics
/// When `params.shape_count` exceeds `shapes.len()` (the caller's contract, as on the device).
pub fn best_node(nodes: &[NodeGpu], params: &NodeParams, shapes: &[ShapeGpu]) -> NodeCandidate {
    let mut best = NodeCandidate::NONE;
    for (i, node) in nodes.iter().enumerate().take(params.node_count as usize) {
        let c = score_node(node, i as u32, params, shapes);
        if better_node(&c, &best) {
            best = c;
        }
    }
    best
}

/// [`best_node`] on every core: nodes in chunks, each chunk's best, then the best of those (the
/// same node, since [`better_node`] is a total order on distinct nodes).
pub fn best_node_parallel(nodes: &[NodeGpu], params: &NodeParams, shapes: &[ShapeGpu]) -> NodeCandidate {
    use rayon::prelude::*;
    const CHUNK: usize = 64;
    let count = (params.node_count as usize).min(nodes.len());
    nodes[..count]
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(c, chunk)| {
            let mut best = NodeCandidate::NONE;
            for (i, node) in chunk.iter().enumerate() {
                let cand = score_node(node, (c * CHUNK + i) as u32, params, shapes);
                if better_node(&cand, &best) {
                    best = cand;
                }
            }
            best
        })
        .reduce(|| NodeCandidate::NONE, |a, b| if better_node(&b, &a) { b } else { a })
}

/// Applies a placement to a node: the pod's GPUs (`gpu_mask`, `milli` each), CPU and memory, and
/// the node's fragmentation recomputed.
pub fn commit_pod(node: &mut NodeGpu, params: &NodeParams, gpu_mask: u32, shapes: &[ShapeGpu]) {
    let shapes = &shapes[..params.shape_count as usize];
    for g in 0..MAX_NODE_GPUS {
        if (gpu_mask >> g) & 1 == 1 {
            node.left[g as usize] -= params.pod_milli;
        }
    }
    node.cpu_free -= params.pod_cpu;
    node.mem_free -= params.pod_mem;
    node.frag = node_frag(&node.left, node.cpu_free, node.model, shapes);
}
