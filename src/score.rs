//! The scoring function: the CPU twin of `shaders/score.wgsl`.
//!
//! Keep in sync with `shaders/score.wgsl`: the structs below are the shader's structs, field for field
//! and in the same order; the constants have the same names and values; [`check`] and [`score`] read
//! line for line like the shader's `check` and `score`. The test `tests/shader.rs` parses the shader
//! with naga and compares struct sizes and constants with this file, and the parity tests run both.
//!
//! # Exactness
//! Every decision is made in `u32` arithmetic. The ranges below are enforced when inputs are
//! validated ([`crate::fleet`], [`crate::jobs`], [`crate::policy`]), and every intermediate is
//! bounded by them, so nothing overflows on either side:
//!
//! | value | range | where enforced |
//! |---|---|---|
//! | rack `gpus` (GPUs per NVLink domain) | 1 ..= 1024 | fleet |
//! | rack `hbm_gb` / job `hbm_gb` | 1 ..= 65 535 / 0 ..= 65 535 | fleet / jobs |
//! | rack `gpu_watts` = ceil(rack W / GPUs) | 1 ..= 65 535 | fleet |
//! | job `gpus` | 1 ..= 65 535 | jobs |
//! | `job.gpus * rack.gpu_watts` | ≤ 65 535² = 4 294 836 225 < 2³² | (product of the two) |
//! | site `power_free_w` | 0 ..= 4 000 000 000 (4 000 MW) | fleet |
//! | cluster racks, so `free_racks` | 0 ..= 1 000 000 | fleet |
//! | `free_racks * rack.gpus` | ≤ 1 024 000 000 | (product) |
//! | latencies, latency limits and `latency_ref_ms` | 0 ..= 60 000 ms (limits ≥ 1) | fleet, jobs, policy |
//! | `inv_*_q16` = floor(1000·2¹⁶ / d) for d ≥ 1 | ≤ 65 536 000 | built here |
//! | `x * inv_*_q16` for 0 ≤ x ≤ d | ≤ d · floor(65 536 000 / d) ≤ 65 536 000 | (x ≤ d by construction) |
//! | every term | 0 ..= 1000 ([`TERM_SCALE`]) | (shift by 16 of the line above) |
//! | every weight | 0 ..= 1000 ([`MAX_WEIGHT`]) | policy |
//! | random term: `((mix(..) >> 16) · 1001) >> 16` | ≤ 65 535 · 1001 < 2³², so ≤ 1000 | (hash is wrapping by design) |
//! | score = Σ of 7 weight·term | ≤ 7 000 000 < 2³² | (sum) |
//! | day numbers | 0 ..= 2 932 896 (9999-12-31) | dates |
//!
//! Division never happens per pair: every divisor (a rack's GPUs, a rack's HBM, a job's latency
//! reference) is replaced by a reciprocal computed once per rack or job, and the *definition* of each
//! term is the product with that reciprocal, so the shader and the CPU compute the same integer.

use bytemuck::{Pod, Zeroable};

/// Terms are fractions expressed in thousandths (permille).
pub const TERM_SCALE: u32 = 1000;
/// The largest weight a policy may give a term.
pub const MAX_WEIGHT: u32 = 1000;
/// Spreads cluster indices apart before hashing the random term's class (the golden ratio in 32 bits).
pub const RANDOM_CLUSTER_STRIDE: u32 = 0x9E37_79B1;
/// Fixed-point shift of the reciprocals: `inv_q16(d) = floor(TERM_SCALE << 16 / d)`.
pub const RECIP_SHIFT: u32 = 16;
/// The largest candidate list per job the kernel keeps (its private arrays have this size).
pub const MAX_CANDIDATES: u32 = 16;
/// Marks an empty candidate slot (no rack).
pub const NO_RACK: u32 = 0xFFFF_FFFF;

/// Reject bit: not enough free GPUs (in the rack, or fully free racks in the cluster for a job larger
/// than one NVLink domain).
pub const REJECT_GPUS: u32 = 1;
/// Reject bit: the rack's HBM per GPU is below the job's need.
pub const REJECT_HBM: u32 = 2;
/// Reject bit: the site's jurisdiction is not in the job's allowed list.
pub const REJECT_JURISDICTION: u32 = 4;
/// Reject bit: the site's provider is not in the job's allowed list.
pub const REJECT_PROVIDER: u32 = 8;
/// Reject bit: the site is further than the job's latency bound from the job's region.
pub const REJECT_LATENCY: u32 = 16;
/// Reject bit: the site lacks the IT power the job would draw.
pub const REJECT_POWER: u32 = 32;
/// Reject bit: the rack's cluster is not online by the job's ready date.
pub const REJECT_ONLINE: u32 = 64;
/// Number of reject bits (constraints), in the order above.
pub const REJECT_KINDS: usize = 7;

/// A job as the kernel reads it. Keep in sync with `struct Job` in `shaders/score.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct JobGpu {
    /// GPUs the job needs (gang: all or nothing).
    pub gpus: u32,
    /// HBM per GPU the job needs, GB.
    pub hbm_gb: u32,
    /// Index of the job's user region in the fleet's region list.
    pub region: u32,
    /// Feasibility bound on latency to the region, ms (60 000 when the job states none).
    pub latency_limit_ms: u32,
    /// Latency at which the latency-headroom term reaches 0, ms (the bound, or the policy's reference).
    pub latency_ref_ms: u32,
    /// floor(1000·2¹⁶ / latency_ref_ms).
    pub inv_latency_ref_q16: u32,
    /// Bit set of allowed jurisdictions (all ones when unrestricted).
    pub jurisdiction_mask: u32,
    /// Bit set of allowed providers (all ones when unrestricted).
    pub provider_mask: u32,
    /// The job may run on capacity online by this day: max(placement date, not_before).
    pub ready_day: u32,
    /// Weight of the packing (best-fit) term.
    pub w_pack: u32,
    /// Weight of the spread (emptiest rack) term.
    pub w_spread: u32,
    /// Weight of the latency-headroom term.
    pub w_latency: u32,
    /// Weight of the energy-price term.
    pub w_energy: u32,
    /// Weight of the carbon term.
    pub w_carbon: u32,
    /// Weight of the HBM-headroom term.
    pub w_hbm: u32,
    /// Weight of the seeded random term (the `random` baseline policy).
    pub w_random: u32,
    /// Per-job seed of the random term.
    pub random_salt: u32,
    /// Explicit padding to 80 bytes.
    pub _pad0: u32,
    /// Explicit padding.
    pub _pad1: u32,
    /// Explicit padding.
    pub _pad2: u32,
}

/// A rack (one NVLink domain) as the kernel reads it. Keep in sync with `struct Rack` in the shader.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct RackGpu {
    /// GPUs not yet in use.
    pub free_gpus: u32,
    /// GPUs in the NVLink domain.
    pub gpus: u32,
    /// HBM per GPU, GB.
    pub hbm_gb: u32,
    /// IT power per GPU, W: ceil(rack W / GPUs).
    pub gpu_watts: u32,
    /// Index of the rack's site.
    pub site: u32,
    /// Global index of the rack's cluster.
    pub cluster: u32,
    /// floor(1000·2¹⁶ / gpus).
    pub inv_gpus_q16: u32,
    /// floor(1000·2¹⁶ / hbm_gb).
    pub inv_hbm_q16: u32,
}

/// A site as the kernel reads it. Keep in sync with `struct Site` in the shader.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct SiteGpu {
    /// IT power not yet drawn, W.
    pub power_free_w: u32,
    /// One bit: the site's jurisdiction.
    pub jurisdiction_bit: u32,
    /// One bit: the site's provider.
    pub provider_bit: u32,
    /// Energy-price term of the site, 0..=1000 (cheaper is higher); computed once per fleet.
    pub energy_term: u32,
    /// Carbon term of the site, 0..=1000 (cleaner is higher); computed once per fleet.
    pub carbon_term: u32,
    /// Explicit padding to 32 bytes.
    pub _pad0: u32,
    /// Explicit padding.
    pub _pad1: u32,
    /// Explicit padding.
    pub _pad2: u32,
}

/// A cluster as the kernel reads it. Keep in sync with `struct Cluster` in the shader.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct ClusterGpu {
    /// Racks of the cluster with every GPU free.
    pub free_racks: u32,
    /// Day the cluster's capacity comes online.
    pub online_day: u32,
}

/// One entry of a job's candidate list. Keep in sync with `struct Candidate` in the shader.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct Candidate {
    /// The score (higher is better).
    pub score: u32,
    /// Global rack index, or [`NO_RACK`].
    pub rack: u32,
}

/// Parameters of one dispatch. Keep in sync with `struct Params` in the shader.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct Params {
    /// Jobs in this dispatch.
    pub job_count: u32,
    /// First global rack index of this rack tile.
    pub rack_offset: u32,
    /// Racks in this tile.
    pub rack_count: u32,
    /// Regions in the latency table (its row length).
    pub region_count: u32,
    /// Candidates kept per job (1 ..= MAX_CANDIDATES).
    pub k: u32,
    /// 0 for the first rack tile (start from empty lists), 1 to merge into the lists already there.
    pub accumulate: u32,
    /// Workgroups per row of the 2-D dispatch grid (jobs are laid out row by row).
    pub groups_per_row: u32,
    /// Explicit padding to 32 bytes.
    pub _pad: u32,
}

const _: () = assert!(std::mem::size_of::<JobGpu>() == 80);
const _: () = assert!(std::mem::size_of::<RackGpu>() == 32);
const _: () = assert!(std::mem::size_of::<SiteGpu>() == 32);
const _: () = assert!(std::mem::size_of::<ClusterGpu>() == 8);
const _: () = assert!(std::mem::size_of::<Candidate>() == 8);
const _: () = assert!(std::mem::size_of::<Params>() == 32);

impl Candidate {
    /// An empty slot.
    pub const NONE: Candidate = Candidate { score: 0, rack: NO_RACK };
}

/// floor(1000·2¹⁶ / divisor), the reciprocal every term uses instead of a division. `divisor` ≥ 1.
pub fn inv_q16(divisor: u32) -> u32 {
    (TERM_SCALE << RECIP_SHIFT) / divisor
}

/// The feasibility test: 0 when the job can run on the rack now, else the OR of the `REJECT_*` bits
/// of every constraint it fails. Keep in sync with `fn check` in the shader.
#[inline(always)]
pub fn check(job: &JobGpu, rack: &RackGpu, site: &SiteGpu, cluster: &ClusterGpu, latency_ms: u32) -> u32 {
    let mut reject = 0u32;
    // A job of at most one NVLink domain needs that many free GPUs in this rack; a larger one needs
    // this rack fully free and enough fully free racks in its cluster (this rack is their anchor).
    let fits_one_rack = rack.free_gpus >= job.gpus;
    let fits_many_racks = rack.free_gpus == rack.gpus && cluster.free_racks * rack.gpus >= job.gpus;
    let fits = if job.gpus <= rack.gpus { fits_one_rack } else { fits_many_racks };
    if !fits {
        reject |= REJECT_GPUS;
    }
    if rack.hbm_gb < job.hbm_gb {
        reject |= REJECT_HBM;
    }
    if (site.jurisdiction_bit & job.jurisdiction_mask) == 0 {
        reject |= REJECT_JURISDICTION;
    }
    if (site.provider_bit & job.provider_mask) == 0 {
        reject |= REJECT_PROVIDER;
    }
    if latency_ms > job.latency_limit_ms {
        reject |= REJECT_LATENCY;
    }
    if job.gpus * rack.gpu_watts > site.power_free_w {
        reject |= REJECT_POWER;
    }
    if cluster.online_day > job.ready_day {
        reject |= REJECT_ONLINE;
    }
    reject
}

/// The score terms of a feasible pair, each 0..=1000, in the order they are weighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Terms {
    /// Fraction of the rack in use after placement (best fit).
    pub pack: u32,
    /// Fraction of the rack still free after placement (spread): 1000 − pack.
    pub spread: u32,
    /// Latency headroom below the job's bound (or the policy's reference latency).
    pub latency: u32,
    /// Cheapness of the site's energy (price × PUE).
    pub energy: u32,
    /// Cleanliness of the site's energy (grid carbon × PUE).
    pub carbon: u32,
    /// HBM per GPU left over above the job's need.
    pub hbm: u32,
    /// A seeded pseudo-random draw per job and rack class (cluster, free GPUs): racks that are
    /// interchangeable draw the same value, so ties still go to the lowest index.
    pub random: u32,
}

/// Chris Wellons' "lowbias32" integer hash: the random term's mixer. Keep in sync with `fn mix`
/// in the shader.
#[inline(always)]
pub fn mix(x: u32) -> u32 {
    let mut h = x;
    h ^= h >> 16;
    h = h.wrapping_mul(0x7FEB_352D);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846C_A68B);
    h ^= h >> 16;
    h
}

/// The terms of a pair that passed [`check`]. Keep in sync with `fn terms` in the shader.
#[inline(always)]
pub fn terms(job: &JobGpu, rack: &RackGpu, site: &SiteGpu, latency_ms: u32) -> Terms {
    // GPUs of this rack the job takes: all of them for a job spanning racks (its anchor is fully free).
    let placed = job.gpus.min(rack.free_gpus);
    let used_after = rack.gpus - rack.free_gpus + placed;
    let pack = (used_after * rack.inv_gpus_q16) >> RECIP_SHIFT;
    let spread = TERM_SCALE - pack;
    let latency_slack = job.latency_ref_ms - job.latency_ref_ms.min(latency_ms);
    let latency = (latency_slack * job.inv_latency_ref_q16) >> RECIP_SHIFT;
    let energy = site.energy_term;
    let carbon = site.carbon_term;
    let hbm_slack = rack.hbm_gb - job.hbm_gb.min(rack.hbm_gb);
    let hbm = (hbm_slack * rack.inv_hbm_q16) >> RECIP_SHIFT;
    // The draw is skipped when its weight is 0 (every policy but `random`): a quarter of the work.
    let mut random = 0;
    if job.w_random != 0 {
        let draw =
            mix(job.random_salt ^ mix(rack.cluster.wrapping_mul(RANDOM_CLUSTER_STRIDE).wrapping_add(rack.free_gpus)));
        random = ((draw >> 16) * (TERM_SCALE + 1)) >> 16;
    }
    Terms { pack, spread, latency, energy, carbon, hbm, random }
}

/// The score of a pair that passed [`check`]: the job's weights times the terms. Keep in sync with
/// `fn score` in the shader.
#[inline(always)]
pub fn score(job: &JobGpu, rack: &RackGpu, site: &SiteGpu, latency_ms: u32) -> u32 {
    let t = terms(job, rack, site, latency_ms);
    job.w_pack * t.pack
        + job.w_spread * t.spread
        + job.w_latency * t.latency
        + job.w_energy * t.energy
        + job.w_carbon * t.carbon
        + job.w_hbm * t.hbm
        + job.w_random * t.random
}

/// True when candidate `a` ranks before `b`: higher score, then lower rack index. Keep in sync with
/// `fn better` in the shader.
#[inline(always)]
pub fn better(a: Candidate, b: Candidate) -> bool {
    a.score > b.score || (a.score == b.score && a.rack < b.rack)
}

/// Inserts `candidate` into the sorted list `top` (best first, length k) if it ranks within it.
/// Keep in sync with the insertion loop in the shader's `main`.
///
/// The candidate is carried down the list: wherever it ranks before the listed entry, the two swap
/// and the displaced entry is carried on; the last one falls off the end. Every step reads and
/// writes the same slot. The backward-shifting loop used before (`top[slot] = top[slot - 1]`) was
/// miscompiled by Mesa's GLSL compiler (llvmpipe through wgpu's GL backend), which silently dropped
/// list entries.
#[inline(always)]
pub fn insert_candidate(top: &mut [Candidate], candidate: Candidate) {
    let mut carried = candidate;
    for listed in top.iter_mut() {
        if better(carried, *listed) {
            std::mem::swap(&mut carried, listed);
        }
    }
}

/// Human names of the reject bits, in bit order.
pub const REJECT_NAMES: [&str; REJECT_KINDS] =
    ["gpus", "hbm", "jurisdiction", "provider", "latency", "power", "online"];
