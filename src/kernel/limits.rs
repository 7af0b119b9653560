//! The ranges the kernel needs to be exact, in the units of its records. The model enforces every
//! one of them when it reads input (see `docs/FORMATS.md`); the table in [`crate::kernel::score`]
//! shows why they keep every intermediate inside a `u32`.

/// The most GPUs in one NVLink domain (rack).
pub const MAX_RACK_GPUS: u32 = 1024;
/// The most HBM per GPU, GB.
pub const MAX_HBM_GB: u32 = 65_535;
/// The most IT power per GPU, W (so that a job's GPUs × W/GPU fits in a `u32`).
pub const MAX_GPU_WATTS: u32 = 65_535;
/// The most IT power of one site, W (4,000 MW).
pub const MAX_SITE_POWER_W: u32 = 4_000_000_000;
/// The most racks in one cluster (so that free racks × rack GPUs fits in a `u32`).
pub const MAX_CLUSTER_RACKS: u32 = 1_000_000;
/// The most racks in a fleet: rack indices stay far below [`crate::kernel::score::NO_RACK`], and a
/// fleet file of a few hundred bytes cannot make gpuplace allocate gigabytes.
pub const MAX_FLEET_RACKS: u32 = 1_000_000;
/// The largest latency, latency bound and latency reference, ms.
pub const MAX_LATENCY_MS: u32 = 60_000;
/// Jurisdictions and providers are bit sets in a `u32`.
pub const MAX_DISTINCT_TAGS: usize = 32;
/// The most GPUs one job may ask for.
pub const MAX_JOB_GPUS: u32 = 65_535;
/// The most regions of a fleet (rows of the latency table; the CPU scorer keeps a column of rack
/// latencies per region).
pub const MAX_REGIONS: usize = 64;
/// The largest day number: 9999-12-31.
pub const MAX_DAY: u32 = 2_932_896;
/// The most GPUs on one node (tray or server): a node's GPUs in use are a bit mask, and a rack's
/// nodes are counted by free GPUs 1..=8 in the kernel's rack record.
pub const MAX_NODE_GPUS: u32 = 8;
/// The most nodes in one rack: the kernel counts a rack's nodes by free GPUs in 8-bit fields.
pub const MAX_RACK_NODES: u32 = 255;
/// The most nodes in a fleet (18 million trays is a million GB300 NVL72 racks); a node costs the
/// ledger 27 bytes (its GPUs in use, shared GPUs and state, and the kernel's record of its free
/// GPUs, CPU, memory and shared GPUs' free thousandths), and 16 more with shared GPUs.
pub const MAX_FLEET_NODES: u32 = 32_000_000;
/// The most CPU of one node, milli-cores (4 000 cores), and of one pod; a rack type that states
/// none has this much per node (CPU not tracked). A pod's GPUs (≤ 8) × a rack's CPU per free GPU
/// (≤ this) stays far inside a `u32`.
pub const MAX_NODE_CPU_MILLI: u32 = 4_000_000;
/// The most memory of one node, MiB (64 TiB), and of one pod; a rack type that states none has
/// this much per node (memory not tracked). 8 × this < 2³².
pub const MAX_NODE_MEMORY_MIB: u32 = 67_108_864;
