// Node-level scoring with GPU sharing and fragmentation (FGD): one pod against every node.
//
// Twin of src/kernel/frag.rs: the structs, constants and functions below match it name for name,
// field for field and in the same order; the module documentation there states the rule, the
// ranges that keep every value in a u32, and why the terms are what they are. One invocation scores
// one node; each workgroup reduces its nodes to the best (highest score, ties to the lowest index)
// and writes it to best[workgroup]; the host takes the best of those by the same rule.

const TERM_SCALE: u32 = 1000u;
const RECIP_SHIFT: u32 = 16u;
const MAX_NODE_GPUS: u32 = 8u;
const GPU_MILLI: u32 = 1000u;
const FRAG_WEIGHT_SUM: u32 = 65536u;
const FRAG_OFFSET: u32 = 524288000u;
const FRAG_SHIFT: u32 = 23u;
const FRAG_STEP: u32 = 8u;
const MAX_GPU_MODELS: u32 = 31u;
const UNKNOWN_MODEL: u32 = 0x80000000u;
const MAX_FRAG_SHAPES: u32 = 256u;
const NO_NODE: u32 = 0xFFFFFFFFu;

const NODE_TERM_FRAG: u32 = 0u;
const NODE_TERM_PACK: u32 = 1u;
const NODE_TERM_RANDOM: u32 = 2u;
const NODE_TERM_SIZE: u32 = 3u;
const NODE_TERM_COUNT: u32 = 4u;

// Must equal gpuplace::gpu::nodes::NODE_WG_SIZE.
const NODE_WG_SIZE: u32 = 64u;

struct Node {
    left: array<u32, 8>,
    gpus: u32,
    cpu_free: u32,
    mem_free: u32,
    model: u32,
    frag: u32,
    ready: u32,
    pad0: u32,
    pad1: u32,
}

struct Shape {
    cpu: u32,
    gpus: u32,
    milli: u32,
    models: u32,
    weight: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

struct NodeParams {
    node_count: u32,
    shape_count: u32,
    pod_cpu: u32,
    pod_mem: u32,
    pod_gpus: u32,
    pod_milli: u32,
    pod_models: u32,
    pod_seed: u32,
    w_frag: u32,
    w_pack: u32,
    w_random: u32,
    inv_cpu_q16: u32,
    inv_gpu_q16: u32,
    w_size: u32,
    pad1: u32,
    pad2: u32,
}

struct NodeCandidate {
    score: u32,
    node: u32,
    gpu_mask: u32,
    pad: u32,
}

struct Taken {
    after: array<u32, 8>,
    mask: u32,
}

@group(0) @binding(0) var<uniform> params: NodeParams;
@group(0) @binding(1) var<storage, read> nodes: array<Node>;
@group(0) @binding(2) var<storage, read> shapes: array<Shape>;
@group(0) @binding(3) var<storage, read_write> best: array<NodeCandidate>;

var<workgroup> reduce: array<NodeCandidate, NODE_WG_SIZE>;

fn mix(x: u32) -> u32 {
    var h = x;
    h ^= h >> 16u;
    h *= 0x7FEB352Du;
    h ^= h >> 15u;
    h *= 0x846CA68Bu;
    h ^= h >> 16u;
    return h;
}

fn accessible(models: u32, model: u32) -> bool {
    return models == 0u || (models & model) != 0u;
}

fn shape_frag(left: array<u32, 8>, cpu_free: u32, model: u32, shape: Shape) -> u32 {
    var free = left;
    var total = 0u;
    var small = 0u;
    var fit = 0u;
    for (var g = 0u; g < MAX_NODE_GPUS; g++) {
        let l = free[g];
        total += l;
        let short = l < shape.milli;
        small += select(0u, l, short);
        fit += select(1u, 0u, short);
    }
    if (shape.milli == 0u || !accessible(shape.models, model) || fit < shape.gpus || cpu_free < shape.cpu) {
        return total;
    }
    return small;
}

fn node_frag(left: array<u32, 8>, cpu_free: u32, model: u32) -> u32 {
    var sum = 0u;
    for (var s = 0u; s < params.shape_count; s++) {
        let shape = shapes[s];
        sum += shape.weight * shape_frag(left, cpu_free, model, shape);
    }
    return sum;
}

fn fits_node(node: Node) -> bool {
    if (node.ready == 0u || node.cpu_free < params.pod_cpu || node.mem_free < params.pod_mem) {
        return false;
    }
    if (params.pod_gpus == 0u) {
        return true;
    }
    if (node.model == 0u || !accessible(params.pod_models, node.model)) {
        return false;
    }
    var free = node.left;
    var fit = 0u;
    for (var g = 0u; g < MAX_NODE_GPUS; g++) {
        fit += select(0u, 1u, free[g] >= params.pod_milli);
    }
    return fit >= params.pod_gpus;
}

fn take_best_fit(left: array<u32, 8>, gpus: u32, milli: u32) -> Taken {
    var after = left;
    var mask = 0u;
    for (var k = 0u; k < gpus; k++) {
        var best_gpu = MAX_NODE_GPUS;
        var best_left = 0xFFFFFFFFu;
        for (var g = 0u; g < MAX_NODE_GPUS; g++) {
            let l = after[g];
            if (((mask >> g) & 1u) == 0u && l >= milli && l < best_left) {
                best_gpu = g;
                best_left = l;
            }
        }
        mask |= 1u << best_gpu;
        after[best_gpu] -= milli;
    }
    return Taken(after, mask);
}

fn node_terms(node: Node, index: u32, after: array<u32, 8>, cpu_after: u32, frag_after: u32) -> array<u32, NODE_TERM_COUNT> {
    let frag = (((node.frag + FRAG_OFFSET) - frag_after) >> FRAG_SHIFT) * FRAG_STEP;
    var free = after;
    var gpu_after = 0u;
    for (var g = 0u; g < MAX_NODE_GPUS; g++) {
        gpu_after += free[g];
    }
    let pack = TERM_SCALE
        - ((cpu_after * params.inv_cpu_q16) >> (RECIP_SHIFT + 1u))
        - ((gpu_after * params.inv_gpu_q16) >> (RECIP_SHIFT + 1u));
    let random = ((mix(params.pod_seed ^ mix(index)) >> 16u) * (TERM_SCALE + 1u)) >> 16u;
    let size = TERM_SCALE - ((node.gpus * GPU_MILLI * params.inv_gpu_q16) >> RECIP_SHIFT);
    return array<u32, NODE_TERM_COUNT>(frag, pack, random, size);
}

fn node_score(terms: array<u32, NODE_TERM_COUNT>) -> u32 {
    return params.w_frag * terms[NODE_TERM_FRAG]
        + params.w_pack * terms[NODE_TERM_PACK]
        + params.w_random * terms[NODE_TERM_RANDOM]
        + params.w_size * terms[NODE_TERM_SIZE];
}

fn score_node(node: Node, index: u32) -> NodeCandidate {
    if (!fits_node(node)) {
        return NodeCandidate(0u, NO_NODE, 0u, 0u);
    }
    let cpu_after = node.cpu_free - params.pod_cpu;
    let with_frag = params.w_frag != 0u;
    if (params.pod_gpus == 1u && params.pod_milli < GPU_MILLI) {
        var best_here = NodeCandidate(0u, NO_NODE, 0u, 0u);
        var best_left = 0u;
        var free = node.left;
        for (var g = 0u; g < MAX_NODE_GPUS; g++) {
            let l = free[g];
            if (l >= params.pod_milli) {
                var after = free;
                after[g] = l - params.pod_milli;
                var frag_after = node.frag;
                if (with_frag) {
                    frag_after = node_frag(after, cpu_after, node.model);
                }
                let s = node_score(node_terms(node, index, after, cpu_after, frag_after));
                if (best_here.node == NO_NODE || s > best_here.score || (s == best_here.score && l < best_left)) {
                    best_here = NodeCandidate(s, index, 1u << g, 0u);
                    best_left = l;
                }
            }
        }
        return best_here;
    }
    let taken = take_best_fit(node.left, params.pod_gpus, params.pod_milli);
    var frag_after = node.frag;
    if (with_frag) {
        frag_after = node_frag(taken.after, cpu_after, node.model);
    }
    let s = node_score(node_terms(node, index, taken.after, cpu_after, frag_after));
    return NodeCandidate(s, index, taken.mask, 0u);
}

fn better_node(a: NodeCandidate, b: NodeCandidate) -> bool {
    return a.node != NO_NODE && (b.node == NO_NODE || a.score > b.score || (a.score == b.score && a.node < b.node));
}

@compute @workgroup_size(NODE_WG_SIZE)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let index = group.x * NODE_WG_SIZE + local;
    var mine = NodeCandidate(0u, NO_NODE, 0u, 0u);
    if (index < params.node_count) {
        mine = score_node(nodes[index], index);
    }
    reduce[local] = mine;
    workgroupBarrier();
    for (var stride = NODE_WG_SIZE / 2u; stride > 0u; stride >>= 1u) {
        if (local < stride) {
            let other = reduce[local + stride];
            if (better_node(other, reduce[local])) {
                reduce[local] = other;
            }
        }
        workgroupBarrier();
    }
    if (local == 0u) {
        best[group.x] = reduce[0];
    }
}
