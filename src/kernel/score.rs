//! The scoring function: the CPU twin of `shaders/score.wgsl`.
//!
//! Keep in sync with `shaders/score.wgsl`: the structs below are the shader's structs, field for field
//! and in the same order; the constants have the same names and values; [`check`], [`terms`],
//! [`score`] and [`better`] read line for line like the shader's functions of the same names, and the
//! shader's shape functions (`unpack_shape` … `gpus_on_anchor`) are the twins of
//! [`crate::kernel::shape`]. The test
//! `tests/shader.rs` parses the shader with naga and compares struct sizes, field names, constants
//! and function order with this file; the parity tests run both.
//!
//! # Terms
//! A feasible pair's score is `Σ weights[t] × terms[t]` over the [`Term`]s. Adding a term is its
//! computation in [`terms`] and in the shader's `terms`, plus one entry in [`Term`] (with its
//! `TERM_*` index on both sides) and its default weights in the policy.
//!
//! # Exactness
//! Every decision is made in `u32` arithmetic. The ranges below are enforced when inputs are
//! validated (the limits are in [`crate::kernel::limits`]), and every intermediate is bounded by
//! them, so nothing overflows on either side:
//!
//! | value | range | why it fits |
//! |---|---|---|
//! | rack `gpus` (GPUs per NVLink domain) | 1 ..= 1024 | `MAX_RACK_GPUS` |
//! | rack `node_gpus` / `nodes` (GPUs per node, nodes per rack) | 1 ..= 8 / 1 ..= 255 | `MAX_NODE_GPUS`, `MAX_RACK_NODES` |
//! | rack `summary`: nodes with at least f free GPUs / pods of each size they hold | ≤ 255 (8 bits) / ≤ 255 · 8 = 2 040 (16 bits) | (nodes per rack, GPUs per node) |
//! | job `pods` / `pod_gpus` | 0 ..= 65 535 / 0 ..= 8 (0: the `gpus` shorthand) | `MAX_JOB_GPUS`, `MAX_NODE_GPUS` |
//! | job `gpu_milli` / `pods_per_gpu` = floor(1000 / gpu_milli) | 0 or 1 ..= 999 / 0 or 1 ..= 1000 | `GPU_MILLI` |
//! | pods of a shared GPU one node holds: free GPUs · pods_per_gpu + Σ shared GPUs' free / gpu_milli | ≤ 8 · 1000 + 8 · 999 | (per GPU ≤ 1000) |
//! | pods one whole rack holds (`per_rack`) / its usable nodes hold now | ≤ 255 · 8 · 1000 = 2 040 000 / ≤ 255 · 15 992 < 4 080 000 | (nodes · the line above) |
//! | `min(free_racks, pods) · min(per_rack, pods)` | ≤ 65 535² < 2³² | (each factor capped at the job's pods) |
//! | rack `hbm_gb` / job `hbm_gb` | 1 ..= 65 535 / 0 ..= 65 535 | `MAX_HBM_GB` |
//! | rack `gpu_watts` = ceil(rack W / GPUs) | 1 ..= 65 535 | `MAX_GPU_WATTS` |
//! | job `gpus` | 1 ..= 65 535 | `MAX_JOB_GPUS` |
//! | `job.gpus * rack.gpu_watts` | ≤ 65 535² = 4 294 836 225 < 2³² | (product of the two) |
//! | shared: `gpu_milli · gpu_watts + 999`, then `pods ·` that `/ 1000` | ≤ 999 · 65 535 + 999 / ≤ 65 535 · 65 535 | (each pod ≤ one GPU's watts) |
//! | site `power_free_w` | 0 ..= 4 000 000 000 (4 000 MW) | `MAX_SITE_POWER_W` |
//! | cluster `free_racks` | 0 ..= 1 000 000 | `MAX_CLUSTER_RACKS` |
//! | latencies, latency limits and `latency_ref_ms` | 0 ..= 60 000 ms (limits ≥ 1) | `MAX_LATENCY_MS` |
//! | `inv_*_q16` = floor(1000·2¹⁶ / d) for d ≥ 1 | ≤ 65 536 000 | built by [`inv_q16`] |
//! | `x * inv_*_q16` for 0 ≤ x ≤ d | ≤ d · floor(65 536 000 / d) ≤ 65 536 000 | (x ≤ d by construction) |
//! | every term | 0 ..= 1000 ([`TERM_SCALE`]) | (shift by 16 of the line above) |
//! | every weight | 0 ..= 1000 ([`MAX_WEIGHT`]) | policy |
//! | random term: `((mix(..) >> 16) · 1001) >> 16` | ≤ 65 535 · 1001 < 2³², so ≤ 1000 | (hash is wrapping by design) |
//! | fragmentation: shares of the table of typical pods | each ≤ 1000, Σ ≤ 1000 ([`FRAG_MIX_SUM`]) | [`pack_frag_mix`] |
//! | trays counted by free GPUs, before and after placing a job | Σ f · count ≤ free GPUs ≤ 1024 | (the placed pods only take GPUs) |
//! | expected fragment: Σ share · (free GPUs on trays too small) | ≤ 1000 · 1024 = 1 024 000 | [`frag_expected`] |
//! | `after + shares · gpus − before` | 0 ..= 2 048 000 | (each expectation ≤ shares · gpus) |
//! | `(change / 125) · inv_gpus_q16` | ≤ 16 · gpus · floor(65 536 000 / gpus) ≤ 1 048 576 000 | (change ≤ 2000 · gpus) |
//! | fragmentation term: `1000 − (that >> 16 >> 4)` | 0 ..= 1000 | (16 000 >> 4) |
//! | score = Σ over the [`TERM_COUNT`] = 8 terms of weight·term | ≤ 8 000 000 < 2³² | (sum) |
//! | day numbers | 0 ..= 2 932 896 (9999-12-31) | `MAX_DAY` |
//!
//! Nothing divides per pair but the fragmentation term, which divides by tray sizes and pod counts
//! (exact in integers on both sides) and by the constant [`FRAG_DIVISOR`]; every other divisor (a
//! rack's GPUs, the fleet's largest HBM, a job's latency reference) is replaced by a reciprocal
//! computed once per rack or job, and the *definition* of each term is the product with that
//! reciprocal, so the shader and the CPU compute the same integer. The
//! shape rule's divisions are done ahead: a job's GPUs by a node's once per job, for every node size
//! 1..=8, into its `shapes` table, and a node's free GPUs by every pod size once per change of a
//! rack, into its `summary`.

use bytemuck::{Pod, Zeroable};

use crate::kernel::limits::MAX_NODE_GPUS;
use crate::kernel::shape::{
    fits, gpus_on_anchor, nodes_with_at_least, pods_fit, pods_per_node, pods_per_rack, unpack_shape,
};

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

/// Index of the packing (best-fit) term.
pub const TERM_PACK: u32 = 0;
/// Index of the spread (least-allocated) term.
pub const TERM_SPREAD: u32 = 1;
/// Index of the latency-headroom term.
pub const TERM_LATENCY: u32 = 2;
/// Index of the energy-price term.
pub const TERM_ENERGY: u32 = 3;
/// Index of the carbon term.
pub const TERM_CARBON: u32 = 4;
/// Index of the HBM-fit term.
pub const TERM_HBM: u32 = 5;
/// Index of the seeded random term.
pub const TERM_RANDOM: u32 = 6;
/// Index of the fragmentation term.
pub const TERM_FRAG: u32 = 7;
/// Number of score terms.
pub const TERM_COUNT: usize = 8;

/// Buckets of the fragmentation term's table of typical pods: pods of 1, 2, …, 8 GPUs, and a ninth
/// for jobs larger than 8 GPUs stated by `gpus` alone (whole trays of any rack).
pub const FRAG_BUCKETS: u32 = 9;
/// The table's frequencies are in thousandths and sum to at most this (10 bits each, three to a
/// word of the job's `frag_mix`).
pub const FRAG_MIX_SUM: u32 = 1000;
/// The fragmentation term divides the weighted change (in GPU-thousandths) by this before scaling
/// by the rack's reciprocal: 1/8 GPU resolution, and the product stays in a `u32` (table in the
/// module's documentation).
pub const FRAG_DIVISOR: u32 = 125;

/// A job spanning racks may take whole racks anywhere in the cluster (the anchor's block first).
pub const BLOCK_ANY: u32 = 0;
/// A job spanning racks must take whole racks of one topology block.
pub const BLOCK_REQUIRED: u32 = 1;
/// A job spanning racks takes one block's whole racks when any block has enough, else any.
pub const BLOCK_PREFERRED: u32 = 2;

/// [`JobGpu::one_domain`]: the job's pods fit one NVLink domain of some rack type of the fleet
/// and span racks on another, so it is decided first on racks that hold them all, and only when none
/// is feasible across whole racks (a job on one NVLink domain talks over NVLink, not the network).
pub const ONE_DOMAIN_PREFERRED: u32 = 1;

/// Reject bit: the rack's usable nodes cannot hold the job's pods (see [`crate::kernel::shape`]).
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
/// Human names of the reject bits, in bit order.
pub const REJECT_NAMES: [&str; REJECT_KINDS] =
    ["gpus", "hbm", "jurisdiction", "provider", "latency", "power", "online"];
/// Constraints that do not depend on occupancy: HBM, jurisdiction, provider, latency, online date.
/// They are the same for every rack of a cluster.
pub const STATIC_REJECTS: u32 = !(REJECT_GPUS | REJECT_POWER);

/// A score term. Its value is a `u32` in 0..=[`TERM_SCALE`]; a policy weighs it 0..=[`MAX_WEIGHT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Term {
    /// Fraction of the rack in use after placement: best fit keeps whole NVLink domains free.
    Pack,
    /// Fraction of the rack still free after placement (least-allocated): 1000 − pack.
    Spread,
    /// Latency headroom below the job's bound (or the policy's reference latency).
    Latency,
    /// Cheapness of the site's energy (price × PUE).
    Energy,
    /// Cleanliness of the site's energy (grid carbon × PUE).
    Carbon,
    /// How tightly the rack's HBM per GPU fits the job's need: 1000 less the HBM beyond the need as
    /// a share of the fleet's largest HBM per GPU (1000 when equal).
    Hbm,
    /// A seeded pseudo-random draw per job and rack class (cluster, free GPUs): racks that are
    /// interchangeable draw the same value, so ties still go to the lowest index.
    Random,
    /// Fragmentation in the sense of FGD (Weng et al., USENIX ATC'23), on a rack's trays: how much
    /// the placement changes the free GPUs of the rack that the workload's typical pods could not
    /// use (free GPUs on trays with fewer free than the pod needs), weighted by how often each pod
    /// size occurs; 500 for no change, above when the placement uses up fragments, below when it
    /// makes them ([`frag_term`]).
    Frag,
}

impl Term {
    /// Every term, in index order.
    pub const ALL: [Term; TERM_COUNT] =
        [Term::Pack, Term::Spread, Term::Latency, Term::Energy, Term::Carbon, Term::Hbm, Term::Random, Term::Frag];

    /// Its index in weight and term arrays (the `TERM_*` constant).
    pub const fn index(self) -> usize {
        (match self {
            Term::Pack => TERM_PACK,
            Term::Spread => TERM_SPREAD,
            Term::Latency => TERM_LATENCY,
            Term::Energy => TERM_ENERGY,
            Term::Carbon => TERM_CARBON,
            Term::Hbm => TERM_HBM,
            Term::Random => TERM_RANDOM,
            Term::Frag => TERM_FRAG,
        }) as usize
    }

    /// Its name in policy files and explanations.
    pub const fn name(self) -> &'static str {
        match self {
            Term::Pack => "pack",
            Term::Spread => "spread",
            Term::Latency => "latency",
            Term::Energy => "energy",
            Term::Carbon => "carbon",
            Term::Hbm => "hbm",
            Term::Random => "random",
            Term::Frag => "frag",
        }
    }

    /// The term of a name.
    pub fn parse(name: &str) -> Option<Term> {
        Term::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// A job as the kernel reads it. Keep in sync with `struct Job` in `shaders/score.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct JobGpu {
    /// GPUs the job needs in all (gang: all or nothing).
    pub gpus: u32,
    /// Pods, when stated (else 0).
    pub pods: u32,
    /// GPUs per pod when the pods are stated, 1..=8; 0 for the `gpus` shorthand (pods that fill
    /// whole nodes of the rack: [`crate::kernel::shape::pod_layout`]).
    pub pod_gpus: u32,
    /// The pod shape on nodes of 1..=8 GPUs, packed ([`crate::kernel::shape::job_tables`]).
    pub shapes: [u32; 8],
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
    /// Per-job seed of the random term.
    pub random_salt: u32,
    /// Topology rule of a job spanning racks: [`BLOCK_ANY`], [`BLOCK_REQUIRED`] or
    /// [`BLOCK_PREFERRED`] (scored as required; the engine relaxes it when nothing is feasible).
    pub block_rule: u32,
    /// 1 when the job is first decided on racks that hold all its pods (one NVLink domain), 0 when
    /// it may span racks ([`ONE_DOMAIN_PREFERRED`]: the engine relaxes it when nothing is feasible).
    pub one_domain: u32,
    /// The fragmentation term's table of typical pods: the share in thousandths of pods of 1..=8
    /// GPUs and of larger shorthand jobs ([`FRAG_BUCKETS`]), 10 bits each, three to a word
    /// ([`pack_frag_mix`]); the same for every job of a workload.
    pub frag_mix: [u32; 3],
    /// CPU each pod needs, milli-cores (0: none stated; only explicit pods state it).
    pub pod_cpu_milli: u32,
    /// Memory each pod needs, MiB (0: none stated; only explicit pods state it).
    pub pod_memory_mib: u32,
    /// The share of one GPU each pod needs, thousandths, 1..=999, for pods of one shared GPU; 0
    /// for pods of whole GPUs.
    pub gpu_milli: u32,
    /// floor(1000 / `gpu_milli`): the job's pods one free GPU holds (0 for whole GPUs).
    pub pods_per_gpu: u32,
    /// Weight of each term, indexed by `TERM_*`.
    pub weights: [u32; TERM_COUNT],
}

impl JobGpu {
    /// The host's view of the job on `rack`: its pod shape ([`crate::kernel::shape::pod_layout`])
    /// and the pods one whole rack holds, with CPU and memory ([`rack_pods`]): the values the
    /// kernel reads. Every host-side use of the shape rule asks this.
    pub fn shape_on(&self, rack: &RackGpu) -> ([u32; 3], u32) {
        let packed = job_shape(self, rack.node_gpus);
        let layout = crate::kernel::shape::pod_layout(self.gpus, self.pods, self.pod_gpus, rack.node_gpus);
        (layout, rack_pods(self, rack, packed))
    }

    /// True when the job asks for CPU or memory per pod.
    pub fn asks_cpu_or_memory(&self) -> bool {
        self.pod_cpu_milli != 0 || self.pod_memory_mib != 0
    }

    /// True when the job's pods share GPUs (`gpu_milli` below 1000).
    pub fn shares_gpus(&self) -> bool {
        self.gpu_milli != 0
    }

    /// True when the kernel may read the node table for this job: it asks for CPU or memory, or
    /// its pods share GPUs ([`pods_here`]).
    pub fn needs_node_table(&self) -> bool {
        self.asks_cpu_or_memory() || self.shares_gpus()
    }
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
    /// floor(1000·2¹⁶ / the fleet's largest HBM per GPU) (the rack's own `hbm_gb` at most).
    pub inv_hbm_q16: u32,
    /// GPUs per node (tray), 1..=8.
    pub node_gpus: u32,
    /// Nodes in the rack, 1..=255.
    pub nodes: u32,
    /// Index of its first node in the state's node table (the host's; the kernel reads the counts).
    pub first_node: u32,
    /// Global index of the rack's topology block (racks behind one leaf switch; a cluster that
    /// states none is one block).
    pub block: u32,
    /// What the kernel knows of the rack's nodes: usable nodes with at least 1..=8 free GPUs, and
    /// the pods of 1..=8 GPUs they hold ([`crate::kernel::shape::rack_summary`]).
    pub summary: [u32; 6],
    /// CPU of each node, milli-cores (the rack type's; [`crate::kernel::limits::MAX_NODE_CPU_MILLI`]
    /// when it states none).
    pub node_cpu_milli: u32,
    /// Memory of each node, MiB (likewise).
    pub node_memory_mib: u32,
    /// The least free CPU per free GPU of the rack's usable nodes with free GPUs:
    /// min floor(free CPU / free GPUs), milli-cores ([`crate::kernel::state::FleetState::recount`]). A pod
    /// asking at most its GPUs times this much CPU (and likewise memory) is held wherever its GPUs
    /// are, so the summary decides; any other is counted node by node.
    pub cpu_per_gpu: u32,
    /// The least free memory per free GPU, likewise, MiB.
    pub memory_per_gpu: u32,
}

/// A node (tray) as the kernel reads it, when a job asks for CPU or memory that the rack's summary
/// cannot answer for, or shares GPUs. Keep in sync with `struct Node` in the shader, which reads it
/// from the `tables` binding after the latency table, [`NODE_WORDS`] words a node.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Pod, Zeroable)]
pub struct NodeGpu {
    /// GPUs a new pod may use: free GPUs of a ready node, 0 for a cordoned or failed one.
    pub free_gpus: u32,
    /// CPU not in use, milli-cores.
    pub free_cpu_milli: u32,
    /// Memory not in use, MiB.
    pub free_memory_mib: u32,
    /// The thousandths of a GPU not in use on each of its shared GPUs, 10 bits a GPU (GPU i in word
    /// i / 3 at bit 10·(i % 3)): 0 for a GPU that is free or whole in use, and for every GPU of a
    /// node that is not ready ([`shared_free_milli`]).
    pub shared_free: [u32; 3],
}

/// Words of one node in the shader's node table.
pub const NODE_WORDS: u32 = 6;
/// A GPU's thousandths: a pod of a shared GPU asks for 1 ..= `GPU_MILLI` − 1 of them.
pub const GPU_MILLI: u32 = 1000;

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

/// A topology block as the kernel reads it. Keep in sync with `struct Block` in the shader.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockGpu {
    /// Racks of the block with every GPU free.
    pub free_racks: u32,
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
    /// Where the node table starts in the `tables` binding, in words (after the latency table).
    pub node_base: u32,
}

// Storage-buffer records are arrays of 4-byte scalars (WGSL aligns them to 4); the uniform `Params`
// is padded to a multiple of 16 bytes. `tests/shader.rs` checks these sizes against naga's pod_shape.
const _: () = assert!(size_of::<JobGpu>() == (14 + 8 + 3 + 4 + TERM_COUNT) * 4);
const _: () = assert!(size_of::<RackGpu>() == 88);
const _: () = assert!(size_of::<NodeGpu>() == NODE_WORDS as usize * 4);
const _: () = assert!(size_of::<BlockGpu>() == 4);
const _: () = assert!(size_of::<SiteGpu>() == 20);
const _: () = assert!(size_of::<ClusterGpu>() == 8);
const _: () = assert!(size_of::<Candidate>() == 8);
const _: () = assert!(size_of::<Params>() == 32);

impl Candidate {
    /// An empty slot.
    pub const NONE: Candidate = Candidate { score: 0, rack: NO_RACK };
}

/// floor(1000·2¹⁶ / divisor), the reciprocal every term uses instead of a division. `divisor` ≥ 1.
pub fn inv_q16(divisor: u32) -> u32 {
    (TERM_SCALE << RECIP_SHIFT) / divisor
}

/// The bucket of a job in the fragmentation term's table (0-based): its pods' GPUs when it states
/// pods, else its GPUs, 9 GPUs and more in the last bucket.
pub fn frag_bucket(job_gpus: u32, pod_gpus: u32) -> u32 {
    let gpus = if pod_gpus != 0 { pod_gpus } else { job_gpus };
    gpus.clamp(1, FRAG_BUCKETS) - 1
}

/// Packs a table of typical pods from counts per bucket: each share is floor(1000 × count / total),
/// so the shares sum to at most [`FRAG_MIX_SUM`]; all zero when the counts are.
pub fn pack_frag_mix(counts: &[u64; FRAG_BUCKETS as usize]) -> [u32; 3] {
    let total: u64 = counts.iter().sum();
    let mut mix = [0u32; 3];
    if total == 0 {
        return mix;
    }
    for (bucket, &n) in counts.iter().enumerate() {
        let share = (u128::from(n) * u128::from(FRAG_MIX_SUM) / u128::from(total)) as u32;
        mix[bucket / 3] |= share << (10 * (bucket % 3));
    }
    mix
}

/// The job's packed pod shape on racks whose nodes have `node_gpus` GPUs (1..=8): its table entry.
/// The shader picks it with selects rather than an index, because llvmpipe (lavapipe, and Mesa's
/// GL) keeps an indexed copy of the job in memory: scoring ran 1.3× faster there (BENCHMARKS.md,
/// "Host transfers"). *Twin.*
#[inline(always)]
pub fn job_shape(job: &JobGpu, node_gpus: u32) -> u32 {
    job.shapes[(node_gpus - 1) as usize]
}

/// Pods of the job one whole rack holds ([`pods_per_rack`] with the job's and the rack's CPU and
/// memory): a node holds pods of whole GPUs by its table entry, pods of a shared GPU by their share
/// of each of its GPUs. *Twin.*
#[inline(always)]
pub fn rack_pods(job: &JobGpu, rack: &RackGpu, packed: u32) -> u32 {
    pods_on_rack_of(job, packed, rack.node_gpus, rack.nodes, rack.node_cpu_milli, rack.node_memory_mib)
}

/// [`rack_pods`] on a rack given by its nodes: `nodes` of `node_gpus` GPUs, `node_cpu_milli` and
/// `node_memory_mib` each (the host also asks it of a rack type, before any rack exists).
#[inline(always)]
pub fn pods_on_rack_of(
    job: &JobGpu,
    packed: u32,
    node_gpus: u32,
    nodes: u32,
    node_cpu_milli: u32,
    node_memory_mib: u32,
) -> u32 {
    let per_node = if job.pods_per_gpu != 0 { node_gpus * job.pods_per_gpu } else { pods_per_node(packed) };
    pods_per_rack(per_node, nodes, job.pod_cpu_milli, job.pod_memory_mib, node_cpu_milli, node_memory_mib)
}

/// The free thousandths of GPU `gpu` (0..=7) of a node, when it is shared ([`NodeGpu::shared_free`]).
/// *Twin.*
#[inline(always)]
pub fn shared_free_milli(shared_free: [u32; 3], gpu: u32) -> u32 {
    (shared_free[(gpu / 3) as usize] >> (10 * (gpu % 3))) & 0x3FF
}

/// Full-size pods of `size` GPUs of the job the rack's usable nodes hold now. From the summary when
/// the job's pods have whole GPUs and their CPU and memory per pod are at most its GPUs times the
/// rack's least free CPU and memory per free GPU: then every node that has a pod's GPUs has its CPU
/// and memory too. Otherwise node by node: each holds the fewest of its pods by GPUs (for pods of a
/// shared GPU: their share of each free GPU, and of what is left on each shared one), CPU and
/// memory. *Twin.*
#[inline(always)]
#[expect(clippy::manual_checked_ops, reason = "reads line for line like the shader's function")]
pub fn pods_here(job: &JobGpu, rack: &RackGpu, size: u32, nodes: &[NodeGpu]) -> u32 {
    let by_summary = pods_fit(rack.summary, size.max(1));
    let cpu_held = job.pod_cpu_milli <= size * rack.cpu_per_gpu;
    let memory_held = job.pod_memory_mib <= size * rack.memory_per_gpu;
    if size == 0 || (job.gpu_milli == 0 && cpu_held && memory_held) {
        return by_summary;
    }
    let mut held = 0u32;
    for n in 0..rack.nodes {
        let node = nodes[(rack.first_node + n) as usize];
        let mut pods = node.free_gpus / size;
        if job.gpu_milli != 0 {
            pods = node.free_gpus * job.pods_per_gpu;
            for gpu in 0..rack.node_gpus {
                pods += shared_free_milli(node.shared_free, gpu) / job.gpu_milli;
            }
        }
        if job.pod_cpu_milli != 0 {
            pods = pods.min(node.free_cpu_milli / job.pod_cpu_milli);
        }
        if job.pod_memory_mib != 0 {
            pods = pods.min(node.free_memory_mib / job.pod_memory_mib);
        }
        held += pods;
    }
    held
}

/// IT power the job draws on a rack of `gpu_watts` W per GPU: its GPUs' watts, or for pods of a
/// shared GPU each pod's share of one GPU's watts, rounded up to a watt. *Twin.*
#[inline(always)]
#[expect(clippy::manual_div_ceil, reason = "reads line for line like the shader's function")]
pub fn job_watts(job: &JobGpu, gpu_watts: u32) -> u32 {
    if job.gpu_milli != 0 {
        return job.pods * ((job.gpu_milli * gpu_watts + GPU_MILLI - 1) / GPU_MILLI);
    }
    job.gpus * gpu_watts
}

/// The feasibility test: 0 when the job can run on the rack now, else the OR of the `REJECT_*` bits
/// of every constraint it fails. Keep in sync with `fn check` in the shader.
///
/// `nodes` is the fleet's node table (a rack's nodes are `first_node ..`); it is read only for a
/// job whose pods share GPUs or whose CPU or memory per pod the rack's summary cannot answer for
/// ([`pods_here`]).
#[inline(always)]
pub fn check(
    job: &JobGpu,
    rack: &RackGpu,
    site: &SiteGpu,
    cluster: &ClusterGpu,
    block: &BlockGpu,
    latency_ms: u32,
    nodes: &[NodeGpu],
) -> u32 {
    check_of::<false>(job, rack, site, cluster, block, latency_ms, nodes)
}

/// [`check`]; with `SUMMARY_ONLY`, for a job that asks for no CPU and no memory per pod and whose
/// pods do not share GPUs (the CPU scorer's vectorized pass, which must not hold the node loop),
/// the same result without it. Wrong for any other job ([`JobGpu::needs_node_table`]): its callers
/// never pass one.
#[inline(always)]
pub(crate) fn check_of<const SUMMARY_ONLY: bool>(
    job: &JobGpu,
    rack: &RackGpu,
    site: &SiteGpu,
    cluster: &ClusterGpu,
    block: &BlockGpu,
    latency_ms: u32,
    nodes: &[NodeGpu],
) -> u32 {
    let mut reject = 0u32;
    let packed = job_shape(job, rack.node_gpus);
    let pod_shape = unpack_shape(packed);
    let per_rack = if SUMMARY_ONLY {
        pods_per_rack(pods_per_node(packed), rack.nodes, 0, 0, 0, 0)
    } else {
        rack_pods(job, rack, packed)
    };
    // A job kept to one block counts that block's whole racks, any other the cluster's; a job kept
    // to one NVLink domain none (it may not span racks).
    let whole_racks = if job.one_domain == ONE_DOMAIN_PREFERRED {
        0
    } else if job.block_rule == BLOCK_ANY {
        cluster.free_racks
    } else {
        block.free_racks
    };
    let here = if SUMMARY_ONLY {
        pods_fit(rack.summary, pod_shape[1].max(1))
    } else {
        pods_here(job, rack, pod_shape[1], nodes)
    };
    if !fits(pod_shape, per_rack, rack.free_gpus, rack.gpus, rack.summary, whole_racks, here) {
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
    // The vectorized pass (no shared GPUs) multiplies inline, as it always did.
    let watts = if SUMMARY_ONLY { job.gpus * rack.gpu_watts } else { job_watts(job, rack.gpu_watts) };
    if watts > site.power_free_w {
        reject |= REJECT_POWER;
    }
    if cluster.online_day > job.ready_day {
        reject |= REJECT_ONLINE;
    }
    reject
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

/// The share (thousandths) of typical pods in bucket `bucket` (0-based: pods of `bucket + 1` GPUs)
/// of a job's table. *Twin.*
#[inline(always)]
pub fn frag_share(frag_mix: [u32; 3], bucket: u32) -> u32 {
    (frag_mix[(bucket / 3) as usize] >> (10 * (bucket % 3))) & 0x3FF
}

/// The expected fragment of a rack whose usable trays of `node_gpus` GPUs number `count[f]` with
/// exactly `f` free: Σ over the table's buckets of share × (free GPUs on trays with fewer free than
/// the bucket's pod needs). A pod larger than a tray counts as a whole tray (what the `gpus`
/// shorthand makes of it). At most [`FRAG_MIX_SUM`] × the rack's free GPUs ≤ 1 024 000. *Twin.*
#[inline(always)]
pub fn frag_expected(count: [u32; 9], frag_mix: [u32; 3], node_gpus: u32) -> u32 {
    // below[e]: free GPUs on trays with fewer than e free, for e = 1..=8.
    let mut below = [0u32; 9];
    for e in 1..9u32 {
        below[e as usize] = below[(e - 1) as usize] + (e - 1) * count[(e - 1) as usize];
    }
    let mut total = 0u32;
    for bucket in 0..FRAG_BUCKETS {
        total += frag_share(frag_mix, bucket) * below[(bucket + 1).min(node_gpus) as usize];
    }
    total
}

/// The fragmentation term of a job on a rack: the change of the rack's expected fragment
/// ([`frag_expected`]) when the job's pods are placed by the shape rule, mapped to 0..=1000: 500 for
/// no change (always so for a job spanning racks, whose anchor is whole before and full after),
/// 1000 when the placement removes a rack's worth of fragment, 0 when it makes one. Needs only the
/// rack's trays counted by free GPUs: the rule puts each pod on the tray with the fewest free GPUs
/// that holds it, which fills one tray before it starts the next of the same count, so the trays
/// change level by level (the host's [`crate::kernel::shape::pods_on_nodes`] places the same pods;
/// `tests/frag_term.rs` compares the two). *Twin.*
#[inline(always)]
pub fn frag_term(job: &JobGpu, rack: &RackGpu, pod_shape: [u32; 3], per_rack: u32) -> u32 {
    let [full, size, rest] = pod_shape;
    let node_gpus = rack.node_gpus;
    let mut count = [0u32; 9];
    for f in 1..9u32 {
        let above = if f < MAX_NODE_GPUS { nodes_with_at_least(rack.summary, f + 1) } else { 0 };
        count[f as usize] = nodes_with_at_least(rack.summary, f) - above;
    }
    let before = frag_expected(count, job.frag_mix, node_gpus);
    let pods = full + u32::from(rest != 0);
    // Pods of a shared GPU leave the trays' free GPUs as they are (so far as this term sees them):
    // no change.
    if size != 0 && pods <= per_rack && job.gpu_milli == 0 {
        // Full-size pods, level by level from the fewest free GPUs that hold one: each tray there
        // takes as many as it holds, the last one what is left.
        let mut left = full;
        for f in size..node_gpus + 1 {
            let per_tray = f / size;
            let trays = count[f as usize].min(left / per_tray);
            count[f as usize] -= trays;
            count[(f % size) as usize] += trays;
            left -= trays * per_tray;
            if left != 0 && count[f as usize] != 0 {
                count[f as usize] -= 1;
                count[(f - left * size) as usize] += 1;
                left = 0;
            }
        }
        // Then the remainder pod, on the tray with the fewest free GPUs that holds it.
        let mut rest_left = rest;
        for f in rest..node_gpus + 1 {
            if rest_left != 0 && count[f as usize] != 0 {
                count[f as usize] -= 1;
                count[(f - rest) as usize] += 1;
                rest_left = 0;
            }
        }
    }
    let after = frag_expected(count, job.frag_mix, node_gpus);
    let mut shares = 0u32;
    for bucket in 0..FRAG_BUCKETS {
        shares += frag_share(job.frag_mix, bucket);
    }
    // after − before + shares × gpus, in 0 ..= 2 × shares × gpus (both expectations lie in
    // 0 ..= shares × free GPUs).
    let change = after + shares * rack.gpus - before;
    TERM_SCALE - ((((change / FRAG_DIVISOR) * rack.inv_gpus_q16) >> RECIP_SHIFT) >> 4)
}

/// The terms of a pair that passed [`check`], each 0..=1000, indexed by `TERM_*`. Keep in sync
/// with `fn terms` in the shader.
#[inline(always)]
pub fn terms(job: &JobGpu, rack: &RackGpu, site: &SiteGpu, latency_ms: u32) -> [u32; TERM_COUNT] {
    terms_of::<false>(job, rack, site, latency_ms)
}

/// [`terms`]; with `FAST`, the fragmentation term is left at 0 and the job is taken to ask for no
/// CPU or memory: the CPU scorer's vectorized pass scores every rack so for such jobs (the term's
/// loops would keep that pass from vectorizing) and adds [`frag_score`] for the feasible racks
/// after it; the sum is the same.
#[inline(always)]
fn terms_of<const FAST: bool>(job: &JobGpu, rack: &RackGpu, site: &SiteGpu, latency_ms: u32) -> [u32; TERM_COUNT] {
    let mut t = [0u32; TERM_COUNT];
    let packed = job_shape(job, rack.node_gpus);
    let pod_shape = unpack_shape(packed);
    let per_rack =
        if FAST { pods_per_rack(pods_per_node(packed), rack.nodes, 0, 0, 0, 0) } else { rack_pods(job, rack, packed) };
    let used_after = rack.gpus - rack.free_gpus + gpus_on_anchor(job.gpus, pod_shape, per_rack, rack.free_gpus);
    t[TERM_PACK as usize] = (used_after * rack.inv_gpus_q16) >> RECIP_SHIFT;
    t[TERM_SPREAD as usize] = TERM_SCALE - t[TERM_PACK as usize];
    let latency_slack = job.latency_ref_ms - job.latency_ref_ms.min(latency_ms);
    t[TERM_LATENCY as usize] = (latency_slack * job.inv_latency_ref_q16) >> RECIP_SHIFT;
    t[TERM_ENERGY as usize] = site.energy_term;
    t[TERM_CARBON as usize] = site.carbon_term;
    // A tight fit: 1000 less the HBM per GPU the rack has beyond the job's need, as a share of the
    // fleet's largest, so that small needs (none included) leave large-memory racks to the jobs
    // that need them.
    let hbm_slack = rack.hbm_gb - job.hbm_gb.min(rack.hbm_gb);
    t[TERM_HBM as usize] = TERM_SCALE - ((hbm_slack * rack.inv_hbm_q16) >> RECIP_SHIFT);
    // The draw is skipped when its weight is 0 (every policy but `random`): a quarter of the work.
    if job.weights[TERM_RANDOM as usize] != 0 {
        let rack_class = rack.cluster.wrapping_mul(RANDOM_CLUSTER_STRIDE).wrapping_add(rack.free_gpus);
        let draw = mix(job.random_salt ^ mix(rack_class));
        t[TERM_RANDOM as usize] = ((draw >> 16) * (TERM_SCALE + 1)) >> 16;
    }
    // Likewise the fragmentation term (a few dozen operations per pair) when not weighed.
    if !FAST && job.weights[TERM_FRAG as usize] != 0 {
        t[TERM_FRAG as usize] = frag_term(job, rack, pod_shape, per_rack);
    }
    t
}

/// The score of a pair that passed [`check`]: the job's weights times the terms. Keep in sync with
/// `fn score` in the shader.
#[inline(always)]
pub fn score(job: &JobGpu, rack: &RackGpu, site: &SiteGpu, latency_ms: u32) -> u32 {
    let t = terms(job, rack, site, latency_ms);
    let mut total = 0u32;
    #[expect(clippy::needless_range_loop, reason = "reads line for line like the shader's loop")]
    for term in 0..TERM_COUNT {
        total += job.weights[term] * t[term];
    }
    total
}

/// [`score`] without the fragmentation term, for a job that asks for no CPU or memory (see
/// [`terms_of`]).
#[inline(always)]
pub fn score_without_frag(job: &JobGpu, rack: &RackGpu, site: &SiteGpu, latency_ms: u32) -> u32 {
    let t = terms_of::<true>(job, rack, site, latency_ms);
    job.weights.iter().zip(t).map(|(w, t)| w * t).sum()
}

/// The fragmentation term's share of [`score`]: its weight times [`frag_term`] (0 when not
/// weighed), so that `score = score_without_frag + frag_score`.
#[inline]
pub fn frag_score(job: &JobGpu, rack: &RackGpu) -> u32 {
    let weight = job.weights[TERM_FRAG as usize];
    if weight == 0 {
        return 0;
    }
    let packed = job_shape(job, rack.node_gpus);
    weight * frag_term(job, rack, unpack_shape(packed), rack_pods(job, rack, packed))
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
