//! The fleet: sites → clusters → racks → nodes, where a rack is one NVLink domain and a node is
//! one compute tray (or server) of it, where a pod runs.
//!
//! [`FleetFile`] is the file format (what `--fleet` reads and `gpuplace fleet --json` writes);
//! [`Fleet`] is the validated model with every value converted to the integer units the scorer uses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{InputError, Result};
use crate::kernel::limits::{
    MAX_CLUSTER_RACKS, MAX_DISTINCT_TAGS, MAX_FLEET_NODES, MAX_FLEET_RACKS, MAX_GPU_WATTS, MAX_HBM_GB, MAX_LATENCY_MS,
    MAX_NODE_CPU_MILLI, MAX_NODE_GPUS, MAX_NODE_MEMORY_MIB, MAX_RACK_GPUS, MAX_RACK_NODES, MAX_REGIONS,
    MAX_SITE_POWER_W,
};
use crate::kernel::score::{BlockGpu, ClusterGpu, GPU_MILLI, NodeGpu, RackGpu, SiteGpu, TERM_SCALE, inv_q16};
use crate::kernel::shape::rack_summary;
use crate::kernel::state::{FleetState, NodeCell, NodeState, Shares};
use crate::model::date::Day;
use crate::model::json::{check_format_version, check_name, shown, shown_number, unique_map};

/// The most IT power of one site, MW (so that watts fit in a `u32`).
pub const MAX_SITE_MW: f64 = MAX_SITE_POWER_W as f64 / 1e6;
/// Price at which the energy term reaches 0: 200 USD per MWh of IT energy (price × PUE).
pub const ENERGY_REF_USD_PER_MWH: u64 = 200;
/// Carbon intensity at which the carbon term reaches 0: 800 gCO2 per kWh of IT energy (grid × PUE).
pub const CARBON_REF_G_PER_KWH: u64 = 800;

/// A fleet file: regions, rack types and sites. Field names are the file format's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FleetFile {
    /// The version of the format the file was written in (see [`crate::model::json::FORMAT_VERSION`]);
    /// optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_version: Option<u32>,
    /// The date the fleet's occupancy describes; the default placement date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<Day>,
    /// User regions; every site gives a latency to each.
    pub regions: Vec<String>,
    /// Rack types by name.
    #[serde(deserialize_with = "unique_map")]
    pub rack_types: BTreeMap<String, RackTypeFile>,
    /// Sites.
    pub sites: Vec<SiteFile>,
}

/// A rack type: one NVLink domain's hardware.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RackTypeFile {
    /// GPU model, e.g. `GB300`.
    pub gpu_model: String,
    /// GPUs in the NVLink domain (72 for an NVL72 rack, 8 for an HGX node).
    #[schemars(range(min = 1, max = MAX_RACK_GPUS))]
    pub gpus: u32,
    /// HBM per GPU, GB.
    pub hbm_gb_per_gpu: u32,
    /// IT power of the whole rack at load, kW.
    pub kw: f64,
    /// Nodes (compute trays, or servers) the rack's GPUs are split over, equally; a pod runs on one
    /// node. At most 255 nodes of at most 8 GPUs. When absent: one node for a rack of at most 8
    /// GPUs, else trays of 4 GPUs when 4 divides the rack's GPUs into at most 255 (as in GB200/GB300
    /// NVL72 and NVL36), else nodes of the largest number of GPUs up to 8 that divides them into at
    /// most 255 (a rack size with no such split is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_RACK_NODES))]
    pub nodes: Option<u32>,
    /// CPU cores each node gives pods (its allocatable CPU; 0.001 … 4000, in thousandths). When
    /// absent, 4000 (the limit): in effect not tracked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.001, max = 4000.0))]
    pub node_cpu: Option<f64>,
    /// Memory each node gives pods, GB (GiB: 1 GB = 1024 MiB; 0.001 … 65536). When absent, 65536
    /// (the limit): in effect not tracked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.001, max = 65536.0))]
    pub node_memory_gb: Option<f64>,
}

/// A site: one campus with one power envelope, price, carbon intensity and jurisdiction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SiteFile {
    /// Unique name.
    pub name: String,
    /// Operator (IREN, Nscale, Microsoft Azure, …).
    pub provider: String,
    /// ISO country code.
    pub country: String,
    /// Data-residency jurisdiction (US, EU, UK, NO, …).
    pub jurisdiction: String,
    /// IT power available to racks, MW.
    #[schemars(range(min = 0.0, max = MAX_SITE_MW))]
    pub power_mw: f64,
    /// Power usage effectiveness (facility power / IT power), ≥ 1.
    #[schemars(range(min = 1.0, max = 5.0))]
    pub pue: f64,
    /// Electricity price, USD/MWh.
    #[schemars(range(min = 0.0, max = 10_000.0))]
    pub price_usd_per_mwh: f64,
    /// Grid carbon intensity, gCO2/kWh.
    #[schemars(range(min = 0.0, max = 5_000.0))]
    pub carbon_g_per_kwh: f64,
    /// Date the site's capacity comes online (clusters may override it).
    pub online: Day,
    /// Network latency from the site to each region, ms.
    #[serde(deserialize_with = "unique_map")]
    pub latency_ms: BTreeMap<String, u32>,
    /// Clusters of identical racks.
    pub clusters: Vec<ClusterFile>,
}

/// A cluster: racks of one type at one site, one deployment phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClusterFile {
    /// Name, unique within its site.
    pub name: String,
    /// Key into `rack_types`.
    pub rack_type: String,
    /// Number of racks (NVLink domains).
    #[schemars(range(min = 1, max = MAX_CLUSTER_RACKS))]
    pub racks: u32,
    /// Date this cluster comes online, when later than its site's (phased deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<Day>,
    /// GPUs already in use, one entry per rack. A rack's GPUs in use fill its nodes in order: node
    /// 0's GPUs first, then node 1's, and so on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_gpus: Option<Vec<u32>>,
    /// Nodes that are not ready and free, one entry each (every other node is ready and free, or
    /// filled by `used_gpus`): cordoned or failed trays, and GPUs in use node by node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeFile>>,
    /// Racks per topology block (racks behind one leaf switch, as NVIDIA topograph or Slurm's
    /// topology/block describe them): racks 0 .. n − 1 are block 0, the next n block 1, and so on
    /// (the last block may be smaller). Without it the cluster is one block. A job spanning racks
    /// may require or prefer one block (`block` in the job file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_CLUSTER_RACKS))]
    pub block_racks: Option<u32>,
}

/// One node of a cluster whose state or occupancy a fleet file gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NodeFile {
    /// The rack's index in its cluster (0-based).
    pub rack: u32,
    /// The node's index in its rack (0-based).
    pub node: u32,
    /// Ready (the default), cordoned (no new pods; its pods keep running) or failed (no GPUs, no
    /// pods).
    #[serde(default, skip_serializing_if = "is_ready")]
    pub state: NodeState,
    /// GPUs in use on the node: its lowest-numbered GPUs. 0 when absent; must be 0 on a failed
    /// node. A rack with node entries must not also have GPUs in use in `used_gpus`.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(max = MAX_NODE_GPUS))]
    pub used_gpus: u32,
    /// CPU cores in use by the node's pods (thousandths; at most the rack type's `node_cpu`). Only
    /// on a node with GPUs in use: gpuplace places GPU pods, and CPU kept for anything else is
    /// left out of `node_cpu`.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub cpu_used: f64,
    /// Memory in use by the node's pods, GB (GiB), likewise.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub memory_gb_used: f64,
    /// Thousandths in use of each of the node's shared GPUs (each 1 … 1000): the GPUs right after
    /// its `used_gpus` whole ones, one entry each. Pods of whole GPUs never take a shared GPU; pods
    /// of a shared GPU take what is left on it. Empty when absent; must be empty on a failed node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_NODE_GPUS), inner(range(min = 1, max = 1000)))]
    pub gpu_milli_used: Vec<u32>,
}

fn is_zero_f64(value: &f64) -> bool {
    *value == 0.0
}

fn is_ready(state: &NodeState) -> bool {
    *state == NodeState::Ready
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

impl NodeFile {
    /// Node `node` of rack `rack` (indices in the cluster and the rack), ready and free.
    pub fn new(rack: u32, node: u32) -> NodeFile {
        NodeFile {
            rack,
            node,
            state: NodeState::Ready,
            used_gpus: 0,
            cpu_used: 0.0,
            memory_gb_used: 0.0,
            gpu_milli_used: Vec::new(),
        }
    }

    /// In state `state`.
    pub fn with_state(mut self, state: NodeState) -> NodeFile {
        self.state = state;
        self
    }

    /// With its `gpus` lowest-numbered GPUs in use.
    pub fn with_used_gpus(mut self, gpus: u32) -> NodeFile {
        self.used_gpus = gpus;
        self
    }

    /// With shared GPUs after its GPUs in use whole, each with the thousandths in `milli` in use.
    pub fn with_shared_gpus(mut self, milli: Vec<u32>) -> NodeFile {
        self.gpu_milli_used = milli;
        self
    }

    /// With `cores` CPU cores and `memory_gb` GB (GiB) in use by its pods.
    pub fn with_resources_used(mut self, cores: f64, memory_gb: f64) -> NodeFile {
        (self.cpu_used, self.memory_gb_used) = (cores, memory_gb);
        self
    }
}

/// The nodes of a rack type of `gpus` GPUs when its file does not say (see [`RackTypeFile::nodes`]).
/// None when no split into at most 255 nodes of at most 8 GPUs exists (a prime above 255, say).
pub fn default_nodes(gpus: u32) -> Option<u32> {
    let splits = |node_gpus: u32| gpus.is_multiple_of(node_gpus) && gpus / node_gpus <= MAX_RACK_NODES;
    if gpus <= MAX_NODE_GPUS {
        Some(1)
    } else if splits(4) {
        Some(gpus / 4)
    } else {
        (1..=MAX_NODE_GPUS).rev().find(|&g| splits(g)).map(|g| gpus / g)
    }
}

impl FleetFile {
    /// A fleet file of these user regions, with no rack type and no site yet.
    pub fn new<S: Into<String>>(regions: impl IntoIterator<Item = S>) -> FleetFile {
        FleetFile {
            format_version: None,
            as_of: None,
            regions: regions.into_iter().map(Into::into).collect(),
            rack_types: BTreeMap::new(),
            sites: Vec::new(),
        }
    }

    /// The date the fleet's occupancy describes (the default placement date).
    pub fn with_as_of(mut self, day: Day) -> FleetFile {
        self.as_of = Some(day);
        self
    }

    /// Adds (or replaces) rack type `name`.
    pub fn with_rack_type(mut self, name: impl Into<String>, rack_type: RackTypeFile) -> FleetFile {
        self.rack_types.insert(name.into(), rack_type);
        self
    }

    /// Adds a site.
    pub fn with_site(mut self, site: SiteFile) -> FleetFile {
        self.sites.push(site);
        self
    }

    /// The file as pretty JSON, with this gpuplace's `format_version`: what `fleet --json` and
    /// `import alibaba --fleet-out` write.
    pub fn to_json(&self) -> String {
        let file = FleetFile { format_version: Some(crate::model::json::FORMAT_VERSION), ..self.clone() };
        serde_json::to_string_pretty(&file).expect("a fleet file always serializes")
    }

    /// Validates it into a [`Fleet`]; `source_name` names it in errors.
    pub fn build(self, source_name: &str) -> std::result::Result<Fleet, InputError> {
        Fleet::from_file(self, source_name)
    }
}

impl RackTypeFile {
    /// A rack type: one NVLink domain of `gpus` GPUs of `gpu_model` with `hbm_gb_per_gpu` each,
    /// drawing `kw` of IT power at load.
    pub fn new(gpu_model: impl Into<String>, gpus: u32, hbm_gb_per_gpu: u32, kw: f64) -> RackTypeFile {
        RackTypeFile {
            gpu_model: gpu_model.into(),
            gpus,
            hbm_gb_per_gpu,
            kw,
            nodes: None,
            node_cpu: None,
            node_memory_gb: None,
        }
    }

    /// Each node giving pods `cores` CPU cores and `memory_gb` GB (GiB) of memory.
    pub fn with_node_resources(mut self, cores: f64, memory_gb: f64) -> RackTypeFile {
        (self.node_cpu, self.node_memory_gb) = (Some(cores), Some(memory_gb));
        self
    }

    /// Its GPUs split over `nodes` nodes (trays) of `gpus / nodes` GPUs each.
    pub fn with_nodes(mut self, nodes: u32) -> RackTypeFile {
        self.nodes = Some(nodes);
        self
    }
}

impl SiteFile {
    /// A site with `power_mw` of IT power, online from `online`, and no cluster yet. The rest at
    /// defaults a caller will usually change: PUE 1.0, energy at 0 USD/MWh and 0 gCO2/kWh (so the
    /// energy and carbon terms are at their best), and no latency to any region (give one per
    /// region with [`SiteFile::with_latency_ms`]).
    pub fn new(
        name: impl Into<String>,
        provider: impl Into<String>,
        country: impl Into<String>,
        jurisdiction: impl Into<String>,
        power_mw: f64,
        online: Day,
    ) -> SiteFile {
        SiteFile {
            name: name.into(),
            provider: provider.into(),
            country: country.into(),
            jurisdiction: jurisdiction.into(),
            power_mw,
            pue: 1.0,
            price_usd_per_mwh: 0.0,
            carbon_g_per_kwh: 0.0,
            online,
            latency_ms: BTreeMap::new(),
            clusters: Vec::new(),
        }
    }

    /// Power usage effectiveness, price (USD/MWh) and grid carbon (gCO2/kWh).
    pub fn with_energy(mut self, pue: f64, price_usd_per_mwh: f64, carbon_g_per_kwh: f64) -> SiteFile {
        (self.pue, self.price_usd_per_mwh, self.carbon_g_per_kwh) = (pue, price_usd_per_mwh, carbon_g_per_kwh);
        self
    }

    /// The latency from the site to `region`, ms.
    pub fn with_latency_ms(mut self, region: impl Into<String>, ms: u32) -> SiteFile {
        self.latency_ms.insert(region.into(), ms);
        self
    }

    /// Adds a cluster.
    pub fn with_cluster(mut self, cluster: ClusterFile) -> SiteFile {
        self.clusters.push(cluster);
        self
    }
}

impl ClusterFile {
    /// `racks` racks of `rack_type`, online with their site, all free.
    pub fn new(name: impl Into<String>, rack_type: impl Into<String>, racks: u32) -> ClusterFile {
        ClusterFile {
            name: name.into(),
            rack_type: rack_type.into(),
            racks,
            online: None,
            used_gpus: None,
            nodes: None,
            block_racks: None,
        }
    }

    /// Topology blocks of `racks` racks each.
    pub fn with_block_racks(mut self, racks: u32) -> ClusterFile {
        self.block_racks = Some(racks);
        self
    }

    /// Online from `day` (when later than the site).
    pub fn with_online(mut self, day: Day) -> ClusterFile {
        self.online = Some(day);
        self
    }

    /// GPUs already in use, one entry per rack.
    pub fn with_used_gpus(mut self, used: Vec<u32>) -> ClusterFile {
        self.used_gpus = Some(used);
        self
    }

    /// `racks` racks, keeping the occupancy and node entries of those that remain.
    pub fn set_racks(&mut self, racks: u32) {
        self.racks = racks;
        if let Some(used) = &mut self.used_gpus {
            used.resize(racks as usize, 0);
        }
        if let Some(nodes) = &mut self.nodes {
            nodes.retain(|node| node.rack < racks);
        }
    }

    /// The state and occupancy of some of its nodes.
    pub fn with_nodes(mut self, nodes: Vec<NodeFile>) -> ClusterFile {
        self.nodes = Some(nodes);
        self
    }
}

/// A validated rack type.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RackType {
    /// Name (the key in the file).
    pub name: String,
    /// GPU model.
    pub gpu_model: String,
    /// GPUs per NVLink domain.
    pub gpus: u32,
    /// HBM per GPU, GB.
    pub hbm_gb: u32,
    /// IT power per GPU, W, rounded up so that power is never under-counted.
    pub gpu_watts: u32,
    /// Nodes (trays) per rack.
    pub nodes: u32,
    /// GPUs per node.
    pub node_gpus: u32,
    /// CPU per node, milli-cores ([`MAX_NODE_CPU_MILLI`] when the file states none: not tracked).
    pub node_cpu_milli: u32,
    /// Memory per node, MiB ([`MAX_NODE_MEMORY_MIB`] when the file states none: not tracked).
    pub node_memory_mib: u32,
}

/// A validated site.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Site {
    /// Unique name.
    pub name: String,
    /// Operator.
    pub provider: String,
    /// Index of the provider in [`Fleet::providers`].
    pub provider_index: usize,
    /// Country code.
    pub country: String,
    /// Jurisdiction.
    pub jurisdiction: String,
    /// Index of the jurisdiction in [`Fleet::jurisdictions`].
    pub jurisdiction_index: usize,
    /// IT power available, W.
    pub power_w: u32,
    /// IT power drawn by the occupancy stated in the fleet file, W.
    pub power_used_w: u32,
    /// PUE in thousandths.
    pub pue_milli: u32,
    /// Electricity price in thousandths of a USD per MWh.
    pub price_milli_usd_per_mwh: u32,
    /// Grid carbon intensity, gCO2/kWh (rounded).
    pub carbon_g_per_kwh: u32,
    /// Date the site comes online.
    pub online: Day,
    /// Latency to each region (indexed like [`Fleet::regions`]), ms.
    pub latency_ms: Vec<u32>,
    /// Energy term (0..=1000): 1000 − min(1000, price × PUE / 200 USD/MWh · 1000).
    pub energy_term: u32,
    /// Carbon term (0..=1000): 1000 − min(1000, carbon × PUE / 800 g/kWh · 1000).
    pub carbon_term: u32,
    /// Global indices of its clusters.
    pub clusters: std::ops::Range<usize>,
}

/// A validated cluster.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Cluster {
    /// Name within its site.
    pub name: String,
    /// Index of its site.
    pub site: usize,
    /// Index of its rack type in [`Fleet::rack_types`].
    pub rack_type: usize,
    /// Date it comes online: the later of its own and its site's.
    pub online: Day,
    /// Global indices of its racks.
    pub racks: std::ops::Range<usize>,
    /// Racks per topology block (all its racks when the file states none).
    pub block_racks: u32,
    /// Global index of its first block; its racks' blocks follow in order.
    pub first_block: u32,
}

impl Cluster {
    /// The global block of its rack `rack` (a global rack index within [`Cluster::racks`]).
    pub fn block_of(&self, rack: usize) -> u32 {
        self.first_block + ((rack - self.racks.start) as u32) / self.block_racks
    }

    /// Its blocks.
    pub fn block_count(&self) -> u32 {
        (self.racks.len() as u32).div_ceil(self.block_racks)
    }
}

/// A validated fleet, with global rack indices: racks are numbered site by site, cluster by cluster,
/// in file order. Ties between equal scores go to the lowest global index.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Fleet {
    /// The file it came from (kept for export).
    pub file: FleetFile,
    /// Default placement date.
    pub as_of: Option<Day>,
    /// Region names.
    pub regions: Vec<String>,
    /// Distinct jurisdictions, in order of first appearance (bit i of a mask is entry i).
    pub jurisdictions: Vec<String>,
    /// Distinct providers, in order of first appearance.
    pub providers: Vec<String>,
    /// Rack types, by name order.
    pub rack_types: Vec<RackType>,
    /// Sites.
    pub sites: Vec<Site>,
    /// Clusters, global.
    pub clusters: Vec<Cluster>,
    /// For each global rack: its cluster and its GPUs in use.
    pub racks: Vec<RackSlot>,
    /// Every node's state and GPUs in use at the start, rack by rack (a rack's nodes are
    /// `first_node ..` of its [`RackSlot`]).
    pub nodes: Vec<NodeCell>,
    /// Every node's CPU (milli-cores) and memory (MiB) in use at the start, indexed like `nodes`
    /// (0 on a node with no GPU in use).
    pub node_resources_used: Vec<[u32; 2]>,
    /// The thousandths in use of the shared GPUs of every node that has some, by node index.
    pub node_shares: std::collections::BTreeMap<u32, Shares>,
}

/// A rack's place and initial occupancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RackSlot {
    /// Global cluster index.
    pub cluster: u32,
    /// Index within the cluster (what `--out` calls `rack`).
    pub index_in_cluster: u32,
    /// GPUs in use at the start.
    pub used_gpus: u32,
    /// Index of its first node in [`Fleet::nodes`].
    pub first_node: u32,
}

/// The most CPU cores and GB (GiB) of memory a node or a pod may state: the kernel's limits.
pub const MAX_CPU_CORES: f64 = MAX_NODE_CPU_MILLI as f64 / 1000.0;
/// See [`MAX_CPU_CORES`].
pub const MAX_MEMORY_GB: f64 = MAX_NODE_MEMORY_MIB as f64 / 1024.0;

/// Cores (validated, ≤ [`MAX_CPU_CORES`]) in the kernel's milli-cores, rounded to the nearest.
pub fn cpu_milli(cores: f64) -> u32 {
    ((cores * 1000.0).round() as u32).min(MAX_NODE_CPU_MILLI)
}

/// GB (GiB; validated, ≤ [`MAX_MEMORY_GB`]) in the kernel's MiB, rounded to the nearest.
pub fn memory_mib(gb: f64) -> u32 {
    ((gb * 1024.0).round() as u32).min(MAX_NODE_MEMORY_MIB)
}

fn number_in(
    source: &str,
    record: &str,
    field: &str,
    value: f64,
    low: f64,
    high: f64,
    unit: &str,
) -> std::result::Result<f64, InputError> {
    if !value.is_finite() || value < low || value > high {
        return Err(InputError::new(
            source,
            record,
            field,
            format!(
                "{} is out of range: must be between {} and {} {unit}",
                shown_number(value),
                shown_number(low),
                shown_number(high)
            ),
        ));
    }
    Ok(value)
}

impl Fleet {
    /// Reads and validates a fleet JSON file.
    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<Fleet> {
        let path = path.as_ref();
        let text = crate::model::json::read_input(
            path,
            crate::model::json::MAX_FLEET_BYTES,
            crate::model::json::Expect::Object,
        )?;
        Fleet::from_json(&text, &path.display().to_string())
    }

    /// Reads and validates fleet JSON from `reader` (standard input, say), named `source_name` in
    /// errors, with the limits of a file.
    pub fn from_reader(reader: impl std::io::Read, source_name: &str) -> Result<Fleet> {
        let text = crate::model::json::read_input_from(
            reader,
            source_name,
            crate::model::json::MAX_FLEET_BYTES,
            crate::model::json::Expect::Object,
        )?;
        Fleet::from_json(&text, source_name)
    }

    /// Parses and validates fleet JSON; `source_name` names it in errors.
    pub fn from_json(text: &str, source_name: &str) -> Result<Fleet> {
        let file: FleetFile = crate::model::json::parse_object(
            text,
            source_name,
            "a fleet: a JSON object with `regions`, `rack_types` and `sites`",
        )?;
        Ok(Fleet::from_file(file, source_name)?)
    }

    /// The fleet file, as `fleet --json` writes it (with this gpuplace's `format_version`).
    pub fn to_json(&self) -> String {
        self.file.to_json()
    }

    /// Validates a fleet file; `source_name` names it in errors.
    pub fn from_file(mut file: FleetFile, source_name: &str) -> std::result::Result<Fleet, InputError> {
        let src = source_name;
        // −0 is 0: kept as written it would come back as `-0.0` from `fleet --json`.
        for rack_type in file.rack_types.values_mut() {
            rack_type.kw += 0.0;
        }
        for site in &mut file.sites {
            for value in [&mut site.power_mw, &mut site.pue, &mut site.price_usd_per_mwh, &mut site.carbon_g_per_kwh] {
                *value += 0.0;
            }
        }
        check_format_version(src, file.format_version)?;
        // The version belongs to the file, not to the fleet: two files of one fleet are equal.
        file.format_version = None;
        // A `Day` built in code (not read from text) may lie past the calendar gpuplace writes.
        let past = |record: &str, field: &str, day: Day| {
            InputError::new(src, record, field, format!("day {} is past {}", day.0, Day::MAX))
        };
        let as_of = file.as_of;
        if let Some(day) = as_of.filter(|&d| d > Day::MAX) {
            return Err(past("document", "as_of", day));
        }
        if file.regions.is_empty() {
            return Err(InputError::new(src, "document", "regions", "the fleet names no region"));
        }
        if file.regions.len() > MAX_REGIONS {
            return Err(InputError::new(
                src,
                "document",
                "regions",
                format!("{} regions: at most {MAX_REGIONS} are supported", file.regions.len()),
            ));
        }
        let mut seen_regions = std::collections::BTreeSet::new();
        for (i, region) in file.regions.iter().enumerate() {
            check_name(region, true).map_err(|m| InputError::new(src, format!("regions[{i}]"), "regions", m))?;
            if !seen_regions.insert(region.as_str()) {
                return Err(InputError::new(
                    src,
                    format!("regions[{i}]"),
                    "regions",
                    format!("region `{}` is repeated", shown(region)),
                ));
            }
        }
        let mut rack_types = Vec::new();
        for (name, rt) in &file.rack_types {
            let record = format!("rack type `{}`", shown(name));
            check_name(name, false).map_err(|m| InputError::new(src, &record, "(name)", m))?;
            check_name(&rt.gpu_model, false).map_err(|m| InputError::new(src, &record, "gpu_model", m))?;
            if rt.gpus == 0 || rt.gpus > MAX_RACK_GPUS {
                return Err(InputError::new(
                    src,
                    &record,
                    "gpus",
                    format!("{} is out of range: must be between 1 and {MAX_RACK_GPUS}", rt.gpus),
                ));
            }
            if rt.hbm_gb_per_gpu == 0 || rt.hbm_gb_per_gpu > MAX_HBM_GB {
                return Err(InputError::new(
                    src,
                    &record,
                    "hbm_gb_per_gpu",
                    format!("{} is out of range: must be between 1 and {MAX_HBM_GB}", rt.hbm_gb_per_gpu),
                ));
            }
            let kw = number_in(
                src,
                &record,
                "kw",
                rt.kw,
                0.001,
                f64::from(MAX_GPU_WATTS) * f64::from(rt.gpus) / 1000.0,
                "kW",
            )?;
            // Watts per GPU, rounded up so that a job's drawn power is never under-counted.
            let rack_watts = (kw * 1000.0).round() as u64;
            let gpu_watts = rack_watts.div_ceil(u64::from(rt.gpus)).max(1) as u32;
            let Some(nodes) = rt.nodes.or_else(|| default_nodes(rt.gpus)) else {
                return Err(InputError::new(
                    src,
                    &record,
                    "gpus",
                    format!(
                        "{} GPUs cannot be split into at most {MAX_RACK_NODES} trays of at most {MAX_NODE_GPUS} GPUs \
                         each, which is how gpuplace models a rack",
                        rt.gpus
                    ),
                ));
            };
            if nodes == 0 || nodes > MAX_RACK_NODES || !rt.gpus.is_multiple_of(nodes) || rt.gpus / nodes > MAX_NODE_GPUS
            {
                return Err(InputError::new(
                    src,
                    &record,
                    "nodes",
                    format!(
                        "{nodes} nodes do not split the rack's {} GPUs: give between 1 and {MAX_RACK_NODES} nodes \
                         that divide them, at most {MAX_NODE_GPUS} GPUs each",
                        rt.gpus
                    ),
                ));
            }
            let node_cpu_milli = match rt.node_cpu {
                Some(cores) => cpu_milli(number_in(src, &record, "node_cpu", cores, 0.001, MAX_CPU_CORES, "cores")?),
                None => MAX_NODE_CPU_MILLI,
            };
            let node_memory_mib = match rt.node_memory_gb {
                Some(gb) => {
                    memory_mib(number_in(src, &record, "node_memory_gb", gb, 0.001, MAX_MEMORY_GB, "GB")?).max(1)
                }
                None => MAX_NODE_MEMORY_MIB,
            };
            rack_types.push(RackType {
                name: name.clone(),
                gpu_model: rt.gpu_model.clone(),
                gpus: rt.gpus,
                hbm_gb: rt.hbm_gb_per_gpu,
                gpu_watts,
                nodes,
                node_gpus: rt.gpus / nodes,
                node_cpu_milli: node_cpu_milli.max(1),
                node_memory_mib,
            });
        }
        if file.sites.is_empty() {
            return Err(InputError::new(src, "document", "sites", "the fleet has no site"));
        }
        // Count the racks before allocating anything per rack: a small file may declare millions.
        let mut total_racks = 0u64;
        let mut total_nodes = 0u64;
        for (site_index, sf) in file.sites.iter().enumerate() {
            for (ci, cf) in sf.clusters.iter().enumerate() {
                total_racks += u64::from(cf.racks);
                if total_racks > u64::from(MAX_FLEET_RACKS) {
                    return Err(InputError::new(
                        src,
                        format!("sites[{site_index}]"),
                        format!("clusters[{ci}].racks"),
                        format!("the fleet's racks exceed {MAX_FLEET_RACKS} here, the most gpuplace accepts"),
                    ));
                }
                let rack_nodes = file
                    .rack_types
                    .get(&cf.rack_type)
                    .map_or(1, |rt| rt.nodes.or_else(|| default_nodes(rt.gpus)).unwrap_or(1).clamp(1, MAX_RACK_NODES));
                total_nodes += u64::from(cf.racks) * u64::from(rack_nodes);
                if total_nodes > u64::from(MAX_FLEET_NODES) {
                    return Err(InputError::new(
                        src,
                        format!("sites[{site_index}]"),
                        format!("clusters[{ci}].racks"),
                        format!("the fleet's nodes exceed {MAX_FLEET_NODES} here, the most gpuplace accepts"),
                    ));
                }
            }
        }
        let mut jurisdictions: Vec<String> = Vec::new();
        let mut providers: Vec<String> = Vec::new();
        let mut sites = Vec::new();
        let mut clusters = Vec::new();
        let mut racks = Vec::with_capacity(total_racks as usize);
        let mut nodes: Vec<NodeCell> = Vec::with_capacity(total_nodes as usize);
        let mut node_resources_used: Vec<[u32; 2]> = Vec::with_capacity(total_nodes as usize);
        let mut node_shares = std::collections::BTreeMap::new();
        let mut site_names = std::collections::BTreeSet::new();
        for (site_index, sf) in file.sites.iter().enumerate() {
            let record = if check_name(&sf.name, false).is_err() {
                format!("sites[{site_index}]")
            } else {
                format!("site `{}`", sf.name)
            };
            check_name(&sf.name, false).map_err(|m| InputError::new(src, &record, "name", m))?;
            if !site_names.insert(sf.name.as_str()) {
                return Err(InputError::new(src, &record, "name", "site names must be unique"));
            }
            // Providers and jurisdictions appear in the `|`-separated lists of CSV jobs files.
            for (field, value, in_list) in [
                ("provider", &sf.provider, true),
                ("jurisdiction", &sf.jurisdiction, true),
                ("country", &sf.country, false),
            ] {
                check_name(value, in_list).map_err(|m| InputError::new(src, &record, field, m))?;
            }
            let jurisdiction_index = tag_index(&mut jurisdictions, &sf.jurisdiction).ok_or_else(|| {
                InputError::new(
                    src,
                    &record,
                    "jurisdiction",
                    format!("more than {MAX_DISTINCT_TAGS} distinct jurisdictions"),
                )
            })?;
            let provider_index = tag_index(&mut providers, &sf.provider).ok_or_else(|| {
                InputError::new(src, &record, "provider", format!("more than {MAX_DISTINCT_TAGS} distinct providers"))
            })?;
            let power_mw = number_in(src, &record, "power_mw", sf.power_mw, 0.0, MAX_SITE_MW, "MW")?;
            let pue = number_in(src, &record, "pue", sf.pue, 1.0, 5.0, "")?;
            let price = number_in(src, &record, "price_usd_per_mwh", sf.price_usd_per_mwh, 0.0, 10_000.0, "USD/MWh")?;
            let carbon = number_in(src, &record, "carbon_g_per_kwh", sf.carbon_g_per_kwh, 0.0, 5_000.0, "gCO2/kWh")?;
            let online = sf.online;
            if online > Day::MAX {
                return Err(past(&record, "online", online));
            }
            let mut latency_ms = Vec::with_capacity(file.regions.len());
            for region in &file.regions {
                let value = *sf.latency_ms.get(region).ok_or_else(|| {
                    InputError::new(
                        src,
                        &record,
                        format!("latency_ms.{region}"),
                        "missing: every site needs a latency to every region",
                    )
                })?;
                if value > MAX_LATENCY_MS {
                    return Err(InputError::new(
                        src,
                        &record,
                        format!("latency_ms.{region}"),
                        format!("{value} is out of range: must be at most {MAX_LATENCY_MS} ms"),
                    ));
                }
                latency_ms.push(value);
            }
            if let Some(unknown) = sf.latency_ms.keys().find(|r| !seen_regions.contains(r.as_str())) {
                return Err(InputError::new(
                    src,
                    &record,
                    format!("latency_ms.{unknown}"),
                    format!("`{}` is not one of the fleet's regions", shown(unknown)),
                ));
            }
            if sf.clusters.is_empty() {
                return Err(InputError::new(src, &record, "clusters", "the site has no cluster"));
            }
            let pue_milli = (pue * 1000.0).round() as u32;
            let price_milli = (price * 1000.0).round() as u32;
            let carbon_g = carbon.round() as u32;
            let power_w = (power_mw * 1_000_000.0).round() as u32;
            let cluster_start = clusters.len();
            let mut power_used_w: u64 = 0;
            let mut cluster_names = std::collections::BTreeSet::new();
            for (ci, cf) in sf.clusters.iter().enumerate() {
                let field = |name: &str| format!("clusters[{ci}].{name}");
                check_name(&cf.name, false).map_err(|m| InputError::new(src, &record, field("name"), m))?;
                if !cluster_names.insert(cf.name.as_str()) {
                    return Err(InputError::new(
                        src,
                        &record,
                        field("name"),
                        "cluster names must be unique within a site",
                    ));
                }
                let rack_type = rack_types.iter().position(|rt| rt.name == cf.rack_type).ok_or_else(|| {
                    InputError::new(
                        src,
                        &record,
                        field("rack_type"),
                        format!("unknown rack type `{}`", shown(&cf.rack_type)),
                    )
                })?;
                if cf.racks == 0 || cf.racks > MAX_CLUSTER_RACKS {
                    return Err(InputError::new(
                        src,
                        &record,
                        field("racks"),
                        format!("{} is out of range: must be between 1 and {MAX_CLUSTER_RACKS}", cf.racks),
                    ));
                }
                if let Some(day) = cf.online.filter(|&d| d > Day::MAX) {
                    return Err(past(&record, &field("online"), day));
                }
                let cluster_online = cf.online.map_or(online, |day| day.max(online));
                if let Some(b) = cf.block_racks.filter(|&b| b == 0 || b > MAX_CLUSTER_RACKS) {
                    return Err(InputError::new(
                        src,
                        &record,
                        field("block_racks"),
                        format!("{b} is out of range: must be between 1 and {MAX_CLUSTER_RACKS}"),
                    ));
                }
                let rt = &rack_types[rack_type];
                let rack_start = racks.len();
                if let Some(used) = &cf.used_gpus {
                    if used.len() != cf.racks as usize {
                        return Err(InputError::new(
                            src,
                            &record,
                            field("used_gpus"),
                            format!("has {} entries for {} racks", used.len(), cf.racks),
                        ));
                    }
                    if let Some((i, u)) = used.iter().enumerate().find(|(_, u)| **u > rt.gpus) {
                        return Err(InputError::new(
                            src,
                            &record,
                            format!("clusters[{ci}].used_gpus[{i}]"),
                            format!("{u} GPUs in use exceeds the rack's {} GPUs", rt.gpus),
                        ));
                    }
                }
                let global_cluster = clusters.len() as u32;
                let cluster_nodes = nodes.len();
                for index in 0..cf.racks {
                    // GPUs in use by rack fill the rack's nodes in order.
                    let mut left = cf.used_gpus.as_ref().map_or(0, |used| used[index as usize]);
                    let first_node = nodes.len() as u32;
                    for _ in 0..rt.nodes {
                        let on_node = left.min(rt.node_gpus);
                        left -= on_node;
                        nodes.push(NodeCell::new(low_bits(on_node), NodeState::Ready));
                        node_resources_used.push([0, 0]);
                    }
                    racks.push(RackSlot { cluster: global_cluster, index_in_cluster: index, used_gpus: 0, first_node });
                }
                let mut given = std::collections::BTreeSet::new();
                for (ni, nf) in cf.nodes.iter().flatten().enumerate() {
                    let node_field = |name: &str| format!("clusters[{ci}].nodes[{ni}].{name}");
                    let fail = |name: &str, message: String| InputError::new(src, &record, node_field(name), message);
                    if nf.rack >= cf.racks {
                        return Err(fail(
                            "rack",
                            format!("{} is out of range: the cluster has {} racks", nf.rack, cf.racks),
                        ));
                    }
                    if nf.node >= rt.nodes {
                        return Err(fail(
                            "node",
                            format!("{} is out of range: its racks have {} nodes", nf.node, rt.nodes),
                        ));
                    }
                    if !given.insert((nf.rack, nf.node)) {
                        return Err(fail("node", format!("rack {} node {} is given twice", nf.rack, nf.node)));
                    }
                    if cf.used_gpus.as_ref().is_some_and(|used| used[nf.rack as usize] != 0) {
                        return Err(fail(
                            "rack",
                            format!(
                                "rack {} has GPUs in use in used_gpus too: give a rack's occupancy in one place",
                                nf.rack
                            ),
                        ));
                    }
                    if nf.used_gpus > rt.node_gpus {
                        return Err(fail(
                            "used_gpus",
                            format!("{} GPUs in use exceeds the node's {} GPUs", nf.used_gpus, rt.node_gpus),
                        ));
                    }
                    if nf.state == NodeState::Failed && nf.used_gpus != 0 {
                        return Err(fail("used_gpus", "a failed node runs no pods: its GPUs in use must be 0".into()));
                    }
                    let shared = nf.gpu_milli_used.len() as u32;
                    if nf.used_gpus + shared > rt.node_gpus {
                        return Err(fail(
                            "gpu_milli_used",
                            format!(
                                "{} GPUs in use and {shared} shared exceed the node's {} GPUs",
                                nf.used_gpus, rt.node_gpus
                            ),
                        ));
                    }
                    if nf.state == NodeState::Failed && shared != 0 {
                        return Err(fail("gpu_milli_used", "a failed node runs no pods: it has no shared GPUs".into()));
                    }
                    if let Some((i, milli)) =
                        nf.gpu_milli_used.iter().enumerate().find(|(_, m)| **m == 0 || **m > GPU_MILLI)
                    {
                        return Err(fail(
                            &format!("gpu_milli_used[{i}]"),
                            format!("{milli} is out of range: must be between 1 and {GPU_MILLI} thousandths of a GPU"),
                        ));
                    }
                    let mut resources = [0u32; 2];
                    for (i, (name, value, most, unit)) in [
                        ("cpu_used", nf.cpu_used, rt.node_cpu_milli, "cores"),
                        ("memory_gb_used", nf.memory_gb_used, rt.node_memory_mib, "GB"),
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        if value == 0.0 {
                            continue;
                        }
                        let scale = if i == 0 { 1000.0 } else { 1024.0 };
                        let limit = if i == 0 { MAX_CPU_CORES } else { MAX_MEMORY_GB };
                        number_in(src, &record, &node_field(name), value, 0.0, limit, unit)?;
                        // Compared in the kernel's units, as rounded: a node may be stated full.
                        let units = if i == 0 { cpu_milli(value) } else { memory_mib(value) };
                        if units > most {
                            return Err(fail(
                                name,
                                format!(
                                    "{} {unit} is more than the node's {} {unit}",
                                    shown_number(value),
                                    shown_number(f64::from(most) / scale)
                                ),
                            ));
                        }
                        if nf.used_gpus == 0 && nf.gpu_milli_used.is_empty() {
                            return Err(fail(
                                name,
                                "only a node with GPUs in use has CPU or memory in use (what other work keeps \
                                 belongs out of the rack type's node_cpu and node_memory_gb)"
                                    .into(),
                            ));
                        }
                        resources[i] = units;
                    }
                    let at = cluster_nodes + (nf.rack * rt.nodes + nf.node) as usize;
                    let mut cell = NodeCell::new(low_bits(nf.used_gpus + shared), nf.state);
                    if shared != 0 {
                        let mut shares = Shares::default();
                        for (gpu, &milli) in nf.gpu_milli_used.iter().enumerate() {
                            shares[nf.used_gpus as usize + gpu] = milli as u16;
                        }
                        cell.shared = low_bits(nf.used_gpus + shared) & !low_bits(nf.used_gpus);
                        node_shares.insert(at as u32, shares);
                    } else {
                        node_shares.remove(&(at as u32));
                    }
                    nodes[at] = cell;
                    node_resources_used[at] = resources;
                }
                for slot in &mut racks[rack_start..] {
                    let first = slot.first_node as usize;
                    let cells = &nodes[first..first + rt.nodes as usize];
                    slot.used_gpus = cells.iter().map(|n| n.used.count_ones()).sum();
                    // GPUs in use whole draw their watts; a shared GPU its thousandths in use of
                    // them, rounded up to a watt (as the pods of a shared GPU do).
                    let whole = cells.iter().map(|n| (n.used & !n.shared).count_ones()).sum::<u32>();
                    let shared_w: u64 = (first..first + rt.nodes as usize)
                        .filter_map(|n| node_shares.get(&(n as u32)))
                        .flatten()
                        .map(|&m| (u64::from(m) * u64::from(rt.gpu_watts)).div_ceil(u64::from(GPU_MILLI)))
                        .sum();
                    power_used_w += u64::from(whole) * u64::from(rt.gpu_watts) + shared_w;
                }
                let first_block = clusters.last().map_or(0, |c: &Cluster| c.first_block + c.block_count());
                clusters.push(Cluster {
                    name: cf.name.clone(),
                    site: site_index,
                    rack_type,
                    online: cluster_online,
                    racks: rack_start..racks.len(),
                    block_racks: cf.block_racks.unwrap_or(cf.racks).min(cf.racks),
                    first_block,
                });
            }
            if power_used_w > u64::from(power_w) {
                return Err(InputError::new(
                    src,
                    &record,
                    "clusters[].used_gpus and clusters[].nodes",
                    format!(
                        "the GPUs in use (whole, and the shares in use of shared ones) draw {power_used_w} W, more \
                         than power_mw gives ({power_w} W)"
                    ),
                ));
            }
            let energy_permille = u64::from(price_milli) * u64::from(pue_milli) / 1000 / ENERGY_REF_USD_PER_MWH;
            let carbon_permille = u64::from(carbon_g) * u64::from(pue_milli) / CARBON_REF_G_PER_KWH;
            sites.push(Site {
                name: sf.name.clone(),
                provider: sf.provider.clone(),
                provider_index,
                country: sf.country.clone(),
                jurisdiction: sf.jurisdiction.clone(),
                jurisdiction_index,
                power_w,
                power_used_w: power_used_w as u32,
                pue_milli,
                price_milli_usd_per_mwh: price_milli,
                carbon_g_per_kwh: carbon_g,
                online,
                latency_ms,
                energy_term: TERM_SCALE - energy_permille.min(u64::from(TERM_SCALE)) as u32,
                carbon_term: TERM_SCALE - carbon_permille.min(u64::from(TERM_SCALE)) as u32,
                clusters: cluster_start..clusters.len(),
            });
        }
        Ok(Fleet {
            as_of,
            regions: file.regions.clone(),
            jurisdictions,
            providers,
            rack_types,
            sites,
            clusters,
            racks,
            nodes,
            node_resources_used,
            node_shares,
            file,
        })
    }

    /// Index of a region by name.
    pub fn region_index(&self, name: &str) -> Option<usize> {
        self.regions.iter().position(|r| r == name)
    }

    /// The scorer's view of the fleet at its initial occupancy.
    pub fn initial_state(&self) -> FleetState {
        let largest_hbm = self.rack_types.iter().map(|rt| rt.hbm_gb).max().unwrap_or(1);
        let racks = self
            .racks
            .iter()
            .enumerate()
            .map(|(index, slot)| {
                let cluster = &self.clusters[slot.cluster as usize];
                let rt = &self.rack_types[cluster.rack_type];
                let first = slot.first_node as usize;
                let free = self.nodes[first..first + rt.nodes as usize].iter().map(|n| n.usable_free(rt.node_gpus));
                let summary = rack_summary(free.clone());
                RackGpu {
                    free_gpus: free.sum(),
                    gpus: rt.gpus,
                    hbm_gb: rt.hbm_gb,
                    gpu_watts: rt.gpu_watts,
                    site: cluster.site as u32,
                    cluster: slot.cluster,
                    inv_gpus_q16: inv_q16(rt.gpus),
                    inv_hbm_q16: inv_q16(largest_hbm),
                    node_gpus: rt.node_gpus,
                    nodes: rt.nodes,
                    first_node: slot.first_node,
                    block: cluster.block_of(index),
                    summary,
                    node_cpu_milli: rt.node_cpu_milli,
                    node_memory_mib: rt.node_memory_mib,
                    // Set by `recount` below, from the node table.
                    cpu_per_gpu: 0,
                    memory_per_gpu: 0,
                }
            })
            .collect::<Vec<_>>();
        let sites = self
            .sites
            .iter()
            .map(|site| SiteGpu {
                power_free_w: site.power_w - site.power_used_w,
                jurisdiction_bit: 1 << site.jurisdiction_index,
                provider_bit: 1 << site.provider_index,
                energy_term: site.energy_term,
                carbon_term: site.carbon_term,
            })
            .collect();
        let clusters = self
            .clusters
            .iter()
            .map(|cluster| ClusterGpu {
                free_racks: cluster.racks.clone().filter(|&r| racks[r].free_gpus == racks[r].gpus).count() as u32,
                online_day: cluster.online.0,
            })
            .collect();
        let block_count = self.clusters.last().map_or(0, |c| c.first_block + c.block_count());
        let mut blocks = vec![BlockGpu { free_racks: 0 }; block_count as usize];
        for rack in racks.iter().filter(|r| r.free_gpus == r.gpus) {
            blocks[rack.block as usize].free_racks += 1;
        }
        let latency = self.sites.iter().flat_map(|site| site.latency_ms.iter().copied()).collect();
        let mut node_table = Vec::with_capacity(self.nodes.len());
        for slot in &self.racks {
            let rt = &self.rack_types[self.clusters[slot.cluster as usize].rack_type];
            for n in 0..rt.nodes {
                let [cpu_used, memory_used] = self.node_resources_used[(slot.first_node + n) as usize];
                node_table.push(NodeGpu {
                    free_gpus: 0,
                    free_cpu_milli: rt.node_cpu_milli - cpu_used,
                    free_memory_mib: rt.node_memory_mib - memory_used,
                    // Set by `recount` below, from the nodes.
                    shared_free: [0; 3],
                });
            }
        }
        let mut state = FleetState {
            racks,
            nodes: self.nodes.clone(),
            shares: self.node_shares.clone(),
            node_table,
            sites,
            clusters,
            blocks,
            latency,
            region_count: self.regions.len() as u32,
        };
        for r in 0..state.racks.len() {
            state.recount(r);
        }
        state
    }
}

/// Index of `tag` in `tags`, appending it if new; None past [`MAX_DISTINCT_TAGS`].
fn tag_index(tags: &mut Vec<String>, tag: &str) -> Option<usize> {
    if let Some(i) = tags.iter().position(|t| t == tag) {
        return Some(i);
    }
    if tags.len() == MAX_DISTINCT_TAGS {
        return None;
    }
    tags.push(tag.to_string());
    Some(tags.len() - 1)
}

/// A node's GPUs in use as a bit mask: its `gpus` lowest-numbered GPUs.
fn low_bits(gpus: u32) -> u8 {
    ((1u32 << gpus) - 1) as u8
}
