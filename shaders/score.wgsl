// gpuplace scoring kernel: scores every job of a tile against every rack of a tile and keeps each
// job's best K candidates, so that only O(jobs × K) is read back.
//
// Keep in sync with its CPU twin: src/kernel/shape.rs (`unpack_shape` … `gpus_on_anchor`: the shape rule)
// and src/kernel/score.rs (everything else). The same structs in the same field order, the same
// constants, and the functions line for line. All arithmetic is u32; the ranges that keep it from
// overflowing are documented in src/kernel/score.rs and enforced on input.

const TERM_SCALE: u32 = 1000u;
const MAX_WEIGHT: u32 = 1000u;
const RANDOM_CLUSTER_STRIDE: u32 = 0x9E3779B1u;
const RECIP_SHIFT: u32 = 16u;
const MAX_CANDIDATES: u32 = 16u;
const NO_RACK: u32 = 0xFFFFFFFFu;
const MAX_NODE_GPUS: u32 = 8u;
const NODE_WORDS: u32 = 6u;
const GPU_MILLI: u32 = 1000u;

const TERM_PACK: u32 = 0u;
const TERM_SPREAD: u32 = 1u;
const TERM_LATENCY: u32 = 2u;
const TERM_ENERGY: u32 = 3u;
const TERM_CARBON: u32 = 4u;
const TERM_HBM: u32 = 5u;
const TERM_RANDOM: u32 = 6u;
const TERM_FRAG: u32 = 7u;
const TERM_COUNT: u32 = 8u;

const FRAG_BUCKETS: u32 = 9u;
const FRAG_MIX_SUM: u32 = 1000u;
const FRAG_DIVISOR: u32 = 125u;

const BLOCK_ANY: u32 = 0u;
const BLOCK_REQUIRED: u32 = 1u;
const BLOCK_PREFERRED: u32 = 2u;

const ONE_DOMAIN_PREFERRED: u32 = 1u;

const REJECT_GPUS: u32 = 1u;
const REJECT_HBM: u32 = 2u;
const REJECT_JURISDICTION: u32 = 4u;
const REJECT_PROVIDER: u32 = 8u;
const REJECT_LATENCY: u32 = 16u;
const REJECT_POWER: u32 = 32u;
const REJECT_ONLINE: u32 = 64u;

// Jobs per workgroup (one invocation per job).
const WG_SIZE: u32 = 64u;

struct Job {
    gpus: u32,
    pods: u32,
    pod_gpus: u32,
    shapes: array<u32, 8>,
    hbm_gb: u32,
    region: u32,
    latency_limit_ms: u32,
    latency_ref_ms: u32,
    inv_latency_ref_q16: u32,
    jurisdiction_mask: u32,
    provider_mask: u32,
    ready_day: u32,
    random_salt: u32,
    block_rule: u32,
    one_domain: u32,
    frag_mix: array<u32, 3>,
    pod_cpu_milli: u32,
    pod_memory_mib: u32,
    gpu_milli: u32,
    pods_per_gpu: u32,
    weights: array<u32, TERM_COUNT>,
}

struct Rack {
    free_gpus: u32,
    gpus: u32,
    hbm_gb: u32,
    gpu_watts: u32,
    site: u32,
    cluster: u32,
    inv_gpus_q16: u32,
    inv_hbm_q16: u32,
    node_gpus: u32,
    nodes: u32,
    first_node: u32,
    block: u32,
    summary: array<u32, 6>,
    node_cpu_milli: u32,
    node_memory_mib: u32,
    cpu_per_gpu: u32,
    memory_per_gpu: u32,
}

// Read from `tables` after the latency table (params.node_base), three words each.
struct Node {
    free_gpus: u32,
    free_cpu_milli: u32,
    free_memory_mib: u32,
    shared_free: array<u32, 3>,
}

struct Site {
    power_free_w: u32,
    jurisdiction_bit: u32,
    provider_bit: u32,
    energy_term: u32,
    carbon_term: u32,
}

struct Cluster {
    free_racks: u32,
    online_day: u32,
}

struct Block {
    free_racks: u32,
}

struct Candidate {
    score: u32,
    rack: u32,
}

struct Params {
    job_count: u32,
    rack_offset: u32,
    rack_count: u32,
    region_count: u32,
    k: u32,
    accumulate: u32,
    groups_per_row: u32,
    node_base: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> jobs: array<Job>;
@group(0) @binding(2) var<storage, read> racks: array<Rack>;
@group(0) @binding(3) var<storage, read> sites: array<Site>;
@group(0) @binding(4) var<storage, read> clusters: array<Cluster>;
// The latency table (site × region, ms), then the node table (3 words per node).
@group(0) @binding(5) var<storage, read> tables: array<u32>;
@group(0) @binding(6) var<storage, read_write> candidates: array<Candidate>;
@group(0) @binding(7) var<storage, read_write> feasible_counts: array<u32>;
@group(0) @binding(8) var<storage, read> blocks: array<Block>;

// The shape rule (twin of src/kernel/shape.rs, which says it in words): a job is pods on nodes
// (trays); pods that fit one NVLink domain go inside one rack, on its usable nodes (the rack's
// summary of its nodes decides); a larger job needs this rack whole and enough whole racks in
// its cluster (this rack is their anchor).
// The job's pod shape on this rack's node size, unpacked from its table (the host builds the
// table: src/kernel/shape.rs `job_tables`, and each rack's summary: `rack_summary`), so that
// nothing divides per pair.
fn unpack_shape(packed: u32) -> vec3<u32> {
    return vec3<u32>(packed & 0xFFFFu, (packed >> 16u) & 0xFu, (packed >> 20u) & 0xFu);
}

fn pods_per_node(packed: u32) -> u32 {
    return (packed >> 24u) & 0xFu;
}

fn pods_per_rack(per_node: u32, nodes: u32, pod_cpu: u32, pod_memory: u32, node_cpu: u32, node_memory: u32) -> u32 {
    var held = per_node;
    if (pod_cpu != 0u) {
        held = min(held, node_cpu / pod_cpu);
    }
    if (pod_memory != 0u) {
        held = min(held, node_memory / pod_memory);
    }
    return nodes * held;
}

fn nodes_with_at_least(summary: array<u32, 6>, gpus: u32) -> u32 {
    let word = select(summary[1], summary[0], gpus <= 4u);
    return (word >> (8u * ((gpus - 1u) & 3u))) & 0xFFu;
}

fn pods_fit(summary: array<u32, 6>, size: u32) -> u32 {
    let low = select(summary[3], summary[2], size <= 2u);
    let high = select(summary[5], summary[4], size <= 6u);
    let word = select(high, low, size <= 4u);
    return (word >> (16u * ((size - 1u) & 1u))) & 0xFFFFu;
}

fn fits(pod_shape: vec3<u32>, per_rack: u32, free_gpus: u32, rack_gpus: u32, summary: array<u32, 6>,
        whole_racks: u32, pods_here: u32) -> bool {
    let full = pod_shape.x;
    let size = pod_shape.y;
    let rest = pod_shape.z;
    let pods = full + select(0u, 1u, rest != 0u);
    let fits_one_rack = pods_here >= full && (rest == 0u || nodes_with_at_least(summary, rest) > full);
    // whole_racks × per_rack ≥ pods, each factor capped at pods so that the product stays in a u32.
    let fits_many_racks = free_gpus == rack_gpus && min(whole_racks, pods) * min(per_rack, pods) >= pods;
    return per_rack != 0u && select(fits_many_racks, fits_one_rack, pods <= per_rack);
}

fn gpus_on_anchor(job_gpus: u32, pod_shape: vec3<u32>, per_rack: u32, free_gpus: u32) -> u32 {
    let pods = pod_shape.x + select(0u, 1u, pod_shape.z != 0u);
    let on_anchor = select(per_rack * pod_shape.y, job_gpus, pods <= per_rack);
    return min(on_anchor, free_gpus);
}

// The job's table entry for nodes of `node_gpus` GPUs, by selects: an index into the job's copy makes
// llvmpipe keep the copy in memory (src/kernel/score.rs says how much that cost).
fn job_shape(job: Job, node_gpus: u32) -> u32 {
    let i = node_gpus - 1u;
    let odd = (i & 1u) != 0u;
    let low = select(select(job.shapes[0], job.shapes[1], odd), select(job.shapes[2], job.shapes[3], odd), (i & 2u) != 0u);
    let high = select(select(job.shapes[4], job.shapes[5], odd), select(job.shapes[6], job.shapes[7], odd), (i & 2u) != 0u);
    return select(low, high, (i & 4u) != 0u);
}

// Pods one node holds by GPUs: its table entry, or, for pods of a shared GPU, their share of each.
fn rack_pods(job: Job, rack: Rack, packed: u32) -> u32 {
    let per_node = select(pods_per_node(packed), rack.node_gpus * job.pods_per_gpu, job.pods_per_gpu != 0u);
    return pods_per_rack(per_node, rack.nodes, job.pod_cpu_milli, job.pod_memory_mib, rack.node_cpu_milli,
        rack.node_memory_mib);
}

fn shared_free_milli(shared_free: array<u32, 3>, gpu: u32) -> u32 {
    return (shared_free[gpu / 3u] >> (10u * (gpu % 3u))) & 0x3FFu;
}

// Full-size pods the rack's usable nodes hold now: the summary answers unless the job shares GPUs
// or asks for more CPU or memory per GPU than some usable node has free; then node by node.
fn pods_here(job: Job, rack: Rack, size: u32) -> u32 {
    let by_summary = pods_fit(rack.summary, max(size, 1u));
    let cpu_held = job.pod_cpu_milli <= size * rack.cpu_per_gpu;
    let memory_held = job.pod_memory_mib <= size * rack.memory_per_gpu;
    if (size == 0u || (job.gpu_milli == 0u && cpu_held && memory_held)) {
        return by_summary;
    }
    var held = 0u;
    for (var n = 0u; n < rack.nodes; n++) {
        let at = params.node_base + NODE_WORDS * (rack.first_node + n);
        let node = Node(tables[at], tables[at + 1u], tables[at + 2u],
            array<u32, 3>(tables[at + 3u], tables[at + 4u], tables[at + 5u]));
        var pods = node.free_gpus / size;
        if (job.gpu_milli != 0u) {
            pods = node.free_gpus * job.pods_per_gpu;
            for (var gpu = 0u; gpu < rack.node_gpus; gpu++) {
                pods += shared_free_milli(node.shared_free, gpu) / job.gpu_milli;
            }
        }
        if (job.pod_cpu_milli != 0u) {
            pods = min(pods, node.free_cpu_milli / job.pod_cpu_milli);
        }
        if (job.pod_memory_mib != 0u) {
            pods = min(pods, node.free_memory_mib / job.pod_memory_mib);
        }
        held += pods;
    }
    return held;
}

fn job_watts(job: Job, gpu_watts: u32) -> u32 {
    if (job.gpu_milli != 0u) {
        return job.pods * ((job.gpu_milli * gpu_watts + GPU_MILLI - 1u) / GPU_MILLI);
    }
    return job.gpus * gpu_watts;
}

fn check(job: Job, rack: Rack, site: Site, cluster: Cluster, block: Block, latency_ms: u32) -> u32 {
    var reject = 0u;
    let packed = job_shape(job, rack.node_gpus);
    let pod_shape = unpack_shape(packed);
    let per_rack = rack_pods(job, rack, packed);
    // A job kept to one block counts that block's whole racks, any other the cluster's; a job kept
    // to one NVLink domain none (it may not span racks).
    let whole_racks = select(select(block.free_racks, cluster.free_racks, job.block_rule == BLOCK_ANY), 0u,
                             job.one_domain == ONE_DOMAIN_PREFERRED);
    let here = pods_here(job, rack, pod_shape.y);
    if (!fits(pod_shape, per_rack, rack.free_gpus, rack.gpus, rack.summary, whole_racks, here)) {
        reject |= REJECT_GPUS;
    }
    if (rack.hbm_gb < job.hbm_gb) {
        reject |= REJECT_HBM;
    }
    if ((site.jurisdiction_bit & job.jurisdiction_mask) == 0u) {
        reject |= REJECT_JURISDICTION;
    }
    if ((site.provider_bit & job.provider_mask) == 0u) {
        reject |= REJECT_PROVIDER;
    }
    if (latency_ms > job.latency_limit_ms) {
        reject |= REJECT_LATENCY;
    }
    if (job_watts(job, rack.gpu_watts) > site.power_free_w) {
        reject |= REJECT_POWER;
    }
    if (cluster.online_day > job.ready_day) {
        reject |= REJECT_ONLINE;
    }
    return reject;
}

fn mix(x: u32) -> u32 {
    var h = x;
    h ^= h >> 16u;
    h *= 0x7FEB352Du;
    h ^= h >> 15u;
    h *= 0x846CA68Bu;
    h ^= h >> 16u;
    return h;
}

// The fragmentation term (src/kernel/score.rs says it in words and bounds it).
fn frag_share(frag_mix: array<u32, 3>, bucket: u32) -> u32 {
    return (frag_mix[bucket / 3u] >> (10u * (bucket % 3u))) & 0x3FFu;
}

fn frag_expected(count: array<u32, 9>, frag_mix: array<u32, 3>, node_gpus: u32) -> u32 {
    var below: array<u32, 9>;
    for (var e = 1u; e < 9u; e++) {
        below[e] = below[e - 1u] + (e - 1u) * count[e - 1u];
    }
    var total = 0u;
    for (var bucket = 0u; bucket < FRAG_BUCKETS; bucket++) {
        total += frag_share(frag_mix, bucket) * below[min(bucket + 1u, node_gpus)];
    }
    return total;
}

fn frag_term(job: Job, rack: Rack, pod_shape: vec3<u32>, per_rack: u32) -> u32 {
    let full = pod_shape.x;
    let size = pod_shape.y;
    let rest = pod_shape.z;
    let node_gpus = rack.node_gpus;
    var count: array<u32, 9>;
    for (var f = 1u; f < 9u; f++) {
        var above = 0u;
        if (f < MAX_NODE_GPUS) {
            above = nodes_with_at_least(rack.summary, f + 1u);
        }
        count[f] = nodes_with_at_least(rack.summary, f) - above;
    }
    let before = frag_expected(count, job.frag_mix, node_gpus);
    let pods = full + select(0u, 1u, rest != 0u);
    // Pods of a shared GPU leave the trays' free GPUs as they are (so far as this term sees them).
    if (size != 0u && pods <= per_rack && job.gpu_milli == 0u) {
        var left = full;
        for (var f = size; f < node_gpus + 1u; f++) {
            let per_tray = f / size;
            let trays = min(count[f], left / per_tray);
            count[f] -= trays;
            count[f % size] += trays;
            left -= trays * per_tray;
            if (left != 0u && count[f] != 0u) {
                count[f] -= 1u;
                count[f - left * size] += 1u;
                left = 0u;
            }
        }
        var rest_left = rest;
        for (var f = rest; f < node_gpus + 1u; f++) {
            if (rest_left != 0u && count[f] != 0u) {
                count[f] -= 1u;
                count[f - rest] += 1u;
                rest_left = 0u;
            }
        }
    }
    let after = frag_expected(count, job.frag_mix, node_gpus);
    var shares = 0u;
    for (var bucket = 0u; bucket < FRAG_BUCKETS; bucket++) {
        shares += frag_share(job.frag_mix, bucket);
    }
    let change = after + shares * rack.gpus - before;
    return TERM_SCALE - ((((change / FRAG_DIVISOR) * rack.inv_gpus_q16) >> RECIP_SHIFT) >> 4u);
}

fn terms(job: Job, rack: Rack, site: Site, latency_ms: u32) -> array<u32, TERM_COUNT> {
    var t: array<u32, TERM_COUNT>;
    let packed = job_shape(job, rack.node_gpus);
    let pod_shape = unpack_shape(packed);
    let per_rack = rack_pods(job, rack, packed);
    let used_after = rack.gpus - rack.free_gpus + gpus_on_anchor(job.gpus, pod_shape, per_rack, rack.free_gpus);
    t[TERM_PACK] = (used_after * rack.inv_gpus_q16) >> RECIP_SHIFT;
    t[TERM_SPREAD] = TERM_SCALE - t[TERM_PACK];
    let latency_slack = job.latency_ref_ms - min(job.latency_ref_ms, latency_ms);
    t[TERM_LATENCY] = (latency_slack * job.inv_latency_ref_q16) >> RECIP_SHIFT;
    t[TERM_ENERGY] = site.energy_term;
    t[TERM_CARBON] = site.carbon_term;
    // A tight fit: 1000 less the HBM per GPU the rack has beyond the job's need, as a share of the
    // fleet's largest, so that small needs (none included) leave large-memory racks to the jobs
    // that need them.
    let hbm_slack = rack.hbm_gb - min(job.hbm_gb, rack.hbm_gb);
    t[TERM_HBM] = TERM_SCALE - ((hbm_slack * rack.inv_hbm_q16) >> RECIP_SHIFT);
    // The draw is skipped when its weight is 0 (every policy but `random`): a quarter of the work.
    if (job.weights[TERM_RANDOM] != 0u) {
        let rack_class = rack.cluster * RANDOM_CLUSTER_STRIDE + rack.free_gpus;
        let draw = mix(job.random_salt ^ mix(rack_class));
        t[TERM_RANDOM] = ((draw >> 16u) * (TERM_SCALE + 1u)) >> 16u;
    }
    // Likewise the fragmentation term (a few dozen operations per pair) when not weighed.
    if (job.weights[TERM_FRAG] != 0u) {
        t[TERM_FRAG] = frag_term(job, rack, pod_shape, per_rack);
    }
    return t;
}

fn score(job: Job, rack: Rack, site: Site, latency_ms: u32) -> u32 {
    let t = terms(job, rack, site, latency_ms);
    var total = 0u;
    for (var term = 0u; term < TERM_COUNT; term++) {
        total += job.weights[term] * t[term];
    }
    return total;
}

fn better(a: Candidate, b: Candidate) -> bool {
    return a.score > b.score || (a.score == b.score && a.rack < b.rack);
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let job_index = (group.y * params.groups_per_row + group.x) * WG_SIZE + local;
    if (job_index >= params.job_count) {
        return;
    }
    let job = jobs[job_index];
    let k = params.k;

    var top: array<Candidate, MAX_CANDIDATES>;
    var feasible = 0u;
    for (var slot = 0u; slot < k; slot++) {
        top[slot] = Candidate(0u, NO_RACK);
    }
    // A later rack tile continues the lists the earlier tiles left: insertion in rank order gives the
    // same list whatever order the racks arrive in, so tiling is exact.
    if (params.accumulate != 0u) {
        for (var slot = 0u; slot < k; slot++) {
            top[slot] = candidates[job_index * k + slot];
        }
        feasible = feasible_counts[job_index];
    }

    // Every invocation walks the racks in the same order, so each rack, site and cluster read is
    // the same address across the workgroup (a broadcast). Staging racks in workgroup memory was
    // measured slower on lavapipe (see BENCHMARKS.md).
    // The list's last entry, kept in a register: most pairs compare against it and go no further.
    var worst = top[k - 1u];
    for (var r = 0u; r < params.rack_count; r++) {
        let rack = racks[r];
        let site = sites[rack.site];
        let cluster = clusters[rack.cluster];
        let latency_ms = tables[rack.site * params.region_count + job.region];
        if (check(job, rack, site, cluster, blocks[rack.block], latency_ms) == 0u) {
            feasible += 1u;
            let candidate = Candidate(score(job, rack, site, latency_ms), params.rack_offset + r);
            if (better(candidate, worst)) {
                // insert_candidate in src/kernel/score.rs: carry the candidate down the list (it
                // says why not a backward shift).
                var carried = candidate;
                for (var slot = 0u; slot < k; slot++) {
                    let listed = top[slot];
                    if (better(carried, listed)) {
                        top[slot] = carried;
                        carried = listed;
                    }
                }
                worst = top[k - 1u];
            }
        }
    }

    for (var slot = 0u; slot < k; slot++) {
        candidates[job_index * k + slot] = top[slot];
    }
    feasible_counts[job_index] = feasible;
}
