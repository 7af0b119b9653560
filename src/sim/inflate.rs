//! `gpuplace inflate`: the FGD paper's workload-inflation experiment (Weng et al., USENIX ATC'23,
//! and its simulator, hkust-adsl/kubernetes-scheduler-simulator) on an Alibaba openb node list and
//! pod list.
//!
//! # The experiment
//! - **Nodes**: each row of the node list is one node (one NVLink domain of its own) with its CPU,
//!   memory, GPUs and GPU model. Rows without GPUs are nodes too (CPU-only pods may use them).
//! - **Arrivals**: every pod of the list once, in an order shuffled by the seed, then pods drawn
//!   from the list with replacement, until the next draw would take the GPU request that has
//!   arrived (`num_gpu × gpu_milli`, summed) past `tune` × the cluster's GPU capacity; that draw is
//!   dropped. When the list alone asks for more, it is cut at the same point. CPU-only pods arrive
//!   in their share and ask for no GPU. The simulator's stop test compares one GPU's milli of the
//!   draw rather than its whole request; here the whole request is compared (the points up to
//!   `tune` are the same either way).
//! - **Placement**: each pod, as it arrives, goes to the best node by the preset's node score
//!   ([`crate::kernel::frag`]), or fails; nothing departs. Nodes are put in an order drawn from the
//!   seed (the simulator names its nodes with a seeded random prefix and breaks ties by name), and
//!   equal scores go to the first node in that order.
//! - **Curve**: after each pod, the GPU capacity allocated (milli-GPU, % of the cluster's) against
//!   the GPU request arrived so far, failed pods included (%, rounded to the nearest whole percent,
//!   halves up). Each whole percent 0..=tune × 100 gets the mean allocation of the pods whose
//!   arrival rounds to it; a percent no pod rounds to takes the mean of its neighbours' pods (the
//!   simulator's analysis script), else the previous point.
//!
//! # Filters (as the simulator's)
//! A pod fits a node when the node has its CPU and memory free and, for a GPU pod, the node's GPU
//! model is one of the pod's `gpu_spec` (`|`-separated; empty: any) and `num_gpu` of its GPUs each
//! have `gpu_milli` free (a GPU-sharing pod: `num_gpu` 1, `gpu_milli` < 1000).
//!
//! # Fragmentation table
//! The typical pods of the list, as FGD builds them: pods grouped by (CPU with 100 milli-cores for
//! none, milli-GPU per GPU, GPUs, `gpu_spec`), most frequent first (equal counts: the larger
//! shape first), kept until they cover 95% of the pods; frequencies scaled to integers that sum to
//! exactly [`FRAG_WEIGHT_SUM`] (largest remainder).

use std::collections::{BTreeMap, HashMap};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::BackendChoice;
use crate::error::{InputError, ScoreError};
use crate::kernel::frag::{
    FRAG_WEIGHT_SUM, GPU_MILLI, MAX_FRAG_SHAPES, MAX_GPU_MODELS, NodeCandidate, NodeGpu, NodeParams, ShapeGpu,
    UNKNOWN_MODEL, best_node_parallel, commit_pod, node_frag,
};
use crate::kernel::limits::MAX_NODE_GPUS;
use crate::kernel::score::{inv_q16, mix};
use crate::model::json::shown;
use crate::sim::generate::SplitMix64;
use crate::sim::import::{ImportReport, number, read_rows};

/// The most nodes a node list may hold.
pub const MAX_INFLATE_NODES: usize = 1_000_000;
/// The most pods a pod list may hold.
pub const MAX_INFLATE_PODS: usize = 10_000_000;
/// The most pods an experiment may place (arrivals expected from the list's mean request).
pub const MAX_ARRIVALS: u64 = 20_000_000;
/// `tune` range, in thousandths: 0.01 ..= 10.
pub const TUNE_PERMILLE: std::ops::RangeInclusive<u32> = 10..=10_000;
/// Mixed into the seed for the node order, so that it is not the arrival order's stream.
const NODE_ORDER_SALT: u64 = 0x6E6F_6465_6F72_6472;
/// The share of pods the typical shapes cover, percent (FGD's `podPopularityThreshold`).
pub const TYPICAL_PERCENT: u64 = 95;

/// A node preset's weights: the node terms (frag, pack, random).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum InflatePreset {
    /// gpuplace's default: fragmentation (FGD's), ties to the first node in the seeded order. The
    /// same weights as `fgd` in this version: a small-node tie-break won 0.08 points on the default
    /// list and lost 6.5 on a model-constrained one (BENCHMARKS.md), so it was dropped.
    Default,
    /// FGD: fragmentation only (GPU choice inside a node by fragmentation, then best fit).
    Fgd,
    /// Best fit: the node left with the least CPU and GPU, half each, as the simulator's BestFit.
    BestFit,
    /// A seeded random feasible node.
    Random,
}

impl InflatePreset {
    /// Every preset, in a fixed order.
    pub const ALL: [InflatePreset; 4] =
        [InflatePreset::Default, InflatePreset::Fgd, InflatePreset::BestFit, InflatePreset::Random];

    /// Its name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            InflatePreset::Default => "default",
            InflatePreset::Fgd => "fgd",
            InflatePreset::BestFit => "best-fit",
            InflatePreset::Random => "random",
        }
    }

    /// The preset called `name`.
    pub fn from_name(name: &str) -> Option<InflatePreset> {
        InflatePreset::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Weights of the node terms: (frag, pack, random, small node).
    pub fn weights(self) -> (u32, u32, u32, u32) {
        match self {
            InflatePreset::Default => (1000, 0, 0, 0),
            InflatePreset::Fgd => (1000, 0, 0, 0),
            InflatePreset::BestFit => (0, 1000, 0, 0),
            InflatePreset::Random => (0, 0, 1000, 0),
        }
    }
}

/// A pod of the list, in the kernel's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodReq {
    /// CPU, milli-cores.
    pub cpu: u32,
    /// Memory, MiB.
    pub mem: u32,
    /// GPUs (0..=8).
    pub gpus: u32,
    /// Milli-GPU per GPU (1..=1000; 0 for a CPU-only pod).
    pub milli: u32,
    /// Allowed models (0: any).
    pub models: u32,
    /// Index of its `gpu_spec` text in [`Cluster::specs`].
    pub spec: u32,
}

impl PodReq {
    /// Its GPU request, milli-GPU.
    pub fn request(&self) -> u64 {
        u64::from(self.gpus) * u64::from(self.milli)
    }
}

/// The cluster and the pod list of one experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// Nodes, empty (all free), in list order.
    pub nodes: Vec<NodeGpu>,
    /// GPU model names; model `i` is bit `1 << i`.
    pub models: Vec<String>,
    /// Pods, in list order.
    pub pods: Vec<PodReq>,
    /// Distinct `gpu_spec` texts of GPU pods ("" first).
    pub specs: Vec<String>,
}

impl Cluster {
    /// GPUs of all nodes.
    pub fn total_gpus(&self) -> u64 {
        self.nodes.iter().map(|n| u64::from(n.gpus)).sum()
    }

    /// GPU capacity, milli-GPU.
    pub fn total_gpu_milli(&self) -> u64 {
        self.total_gpus() * u64::from(GPU_MILLI)
    }
}

/// Reads an openb node list (`sn,cpu_milli,memory_mib,gpu,model`): every row a node. Any
/// malformed row is an error naming the file, line and field.
pub fn read_nodes(data: &[u8], source_name: &str) -> Result<(Vec<NodeGpu>, Vec<String>), InputError> {
    let mut report = ImportReport::default();
    let mut nodes = Vec::new();
    let mut models: Vec<String> = Vec::new();
    read_rows(data, source_name, &["sn", "cpu_milli", "memory_mib", "gpu", "model"], true, &mut report, |_, row| {
        let cpu: u32 = number(row, "cpu_milli")?;
        let mem: u32 = number(row, "memory_mib")?;
        let gpus: u32 = number(row, "gpu")?;
        if gpus > MAX_NODE_GPUS {
            return Err(("gpu".into(), format!("{gpus} is out of range: at most {MAX_NODE_GPUS} GPUs per node")));
        }
        let model_name = row.get("model").trim();
        let model = match (gpus, model_name.is_empty()) {
            (0, _) => 0,
            (_, true) => return Err(("model".into(), "a node with GPUs needs its GPU model".into())),
            (_, false) => {
                let index = match models.iter().position(|m| m == model_name) {
                    Some(i) => i,
                    None if models.len() == MAX_GPU_MODELS as usize => {
                        return Err((
                            "model".into(),
                            format!(
                                "`{}` would be model {}: at most {MAX_GPU_MODELS}",
                                shown(model_name),
                                models.len() + 1
                            ),
                        ));
                    }
                    None => {
                        models.push(model_name.to_string());
                        models.len() - 1
                    }
                };
                1u32 << index
            }
        };
        if nodes.len() == MAX_INFLATE_NODES {
            return Err(("(row)".into(), format!("more than {MAX_INFLATE_NODES} nodes")));
        }
        let mut left = [0u32; 8];
        left[..gpus as usize].fill(GPU_MILLI);
        nodes.push(NodeGpu { left, gpus, cpu_free: cpu, mem_free: mem, model, ready: 1, ..Default::default() });
        Ok(())
    })?;
    if nodes.iter().all(|n| n.gpus == 0) {
        return Err(InputError::new(source_name, "document", "gpu", "no node has a GPU"));
    }
    Ok((nodes, models))
}

/// Reads an openb pod list (`name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,…`; other
/// columns are ignored) against the node list's `models`. Any malformed row is an error naming the
/// file, line and field.
pub fn read_pods(data: &[u8], source_name: &str, models: &[String]) -> Result<(Vec<PodReq>, Vec<String>), InputError> {
    let mut report = ImportReport::default();
    let mut pods = Vec::new();
    let mut specs: Vec<String> = vec![String::new()];
    let mut spec_index: HashMap<String, u32> = HashMap::from([(String::new(), 0)]);
    let required = ["cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec"];
    read_rows(data, source_name, &required, true, &mut report, |_, row| {
        let cpu: u32 = number(row, "cpu_milli")?;
        let mem: u32 = number(row, "memory_mib")?;
        let gpus: u32 = number(row, "num_gpu")?;
        let milli: u32 = number(row, "gpu_milli")?;
        if gpus > MAX_NODE_GPUS {
            return Err(("num_gpu".into(), format!("{gpus} is out of range: at most {MAX_NODE_GPUS} GPUs per pod")));
        }
        if gpus > 0 && !(1..=GPU_MILLI).contains(&milli) {
            return Err((
                "gpu_milli".into(),
                format!("{milli} is out of range: a GPU pod asks for 1..=1000 of each GPU"),
            ));
        }
        if gpus > 1 && milli < GPU_MILLI {
            return Err((
                "gpu_milli".into(),
                format!("{milli}: a pod of {gpus} GPUs takes whole GPUs (sharing is for one GPU)"),
            ));
        }
        let spec_text = if gpus > 0 { row.get("gpu_spec").trim() } else { "" };
        let mut allowed = 0u32;
        let parts: Vec<&str> = spec_text.split('|').map(str::trim).filter(|p| !p.is_empty()).collect();
        for part in &parts {
            allowed |= match models.iter().position(|m| m == part) {
                Some(i) => 1 << i,
                None => UNKNOWN_MODEL,
            };
        }
        let key = parts.join("|");
        if pods.len() == MAX_INFLATE_PODS {
            return Err(("(row)".into(), format!("more than {MAX_INFLATE_PODS} pods")));
        }
        let next = specs.len() as u32;
        let spec = *spec_index.entry(key.clone()).or_insert_with(|| {
            specs.push(key);
            next
        });
        let milli = if gpus == 0 { 0 } else { milli };
        pods.push(PodReq { cpu, mem, gpus, milli, models: allowed, spec });
        Ok(())
    })?;
    if !pods.iter().any(|p| p.gpus > 0) {
        return Err(InputError::new(source_name, "document", "num_gpu", "no pod asks for a GPU"));
    }
    Ok((pods, specs))
}

/// The fragmentation table of a pod list (see the module documentation).
pub fn typical_shapes(pods: &[PodReq]) -> Vec<ShapeGpu> {
    // (cpu, milli, gpus, spec) → (count, models)
    let mut counts: BTreeMap<(u32, u32, u32, u32), (u64, u32)> = BTreeMap::new();
    for pod in pods {
        let entry = counts.entry((pod.cpu.max(100), pod.milli, pod.gpus, pod.spec)).or_insert((0, pod.models));
        entry.0 += 1;
    }
    let mut sorted: Vec<_> = counts.into_iter().collect();
    // Most frequent first; equal counts: the larger shape first (FGD's order).
    sorted.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(b.0.cmp(&a.0)));
    let total = pods.len() as u64;
    let mut kept = Vec::new();
    let mut covered = 0u64;
    for (key, (count, models)) in sorted {
        if covered * 100 >= total * TYPICAL_PERCENT || kept.len() == MAX_FRAG_SHAPES as usize {
            break;
        }
        covered += count;
        kept.push((key, count, models));
    }
    // Largest remainder: floor shares, then one more to the largest remainders (ties: earlier).
    let sum = u64::from(FRAG_WEIGHT_SUM);
    let mut weights: Vec<u64> = kept.iter().map(|(_, c, _)| c * sum / covered).collect();
    let mut order: Vec<usize> = (0..kept.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(kept[i].1 * sum % covered));
    let short = sum - weights.iter().sum::<u64>();
    for &i in order.iter().take(short as usize) {
        weights[i] += 1;
    }
    kept.iter()
        .zip(weights)
        .map(|(((cpu, milli, gpus, _), _, models), weight)| ShapeGpu {
            cpu: *cpu,
            gpus: *gpus,
            milli: *milli,
            models: *models,
            weight: weight as u32,
            ..Default::default()
        })
        .collect()
}

/// The experiment's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InflateConfig {
    /// Arrived GPU request to reach, thousandths of the capacity (1300: 130%).
    pub tune_permille: u32,
    /// Seed of the arrival order and of the random term.
    pub seed: u64,
    /// Node score preset.
    pub preset: InflatePreset,
}

impl InflateConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), InputError> {
        if !TUNE_PERMILLE.contains(&self.tune_permille) {
            return Err(InputError::new(
                "command line",
                "--tune",
                "tune",
                format!("{} is out of range 0.01..=10", f64::from(self.tune_permille) / 1000.0),
            ));
        }
        Ok(())
    }
}

/// One point of the allocation curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CurvePoint {
    /// GPU request arrived, % of the capacity (whole percent).
    pub arrived_pct: u32,
    /// GPU capacity allocated, % (mean over the pods whose arrival rounds to `arrived_pct`).
    pub allocated_pct: f64,
}

/// The `inflate --json` document (without `format_version`, which [`crate::report::Versioned`] adds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct InflateReport {
    /// The node list.
    pub nodes_file: String,
    /// The pod list.
    pub pods_file: String,
    /// The preset.
    pub preset: InflatePreset,
    /// The backend that scored (`cpu`, or the adapter; and the CPU after it, if it failed mid-run).
    pub backend: String,
    /// Seed.
    pub seed: u64,
    /// Arrived GPU request reached, as a multiple of the capacity.
    pub tune: f64,
    /// Nodes.
    pub nodes: usize,
    /// GPUs of all nodes.
    pub total_gpus: u64,
    /// GPU capacity, milli-GPU.
    pub total_gpu_milli: u64,
    /// Pods in the list.
    pub pods_in_list: usize,
    /// Shapes in the fragmentation table.
    pub typical_shapes: usize,
    /// Pods that arrived.
    pub arrived_pods: u64,
    /// Pods placed.
    pub placed_pods: u64,
    /// GPU pods that found no node.
    pub failed_gpu_pods: u64,
    /// CPU-only pods that found no node.
    pub failed_cpu_pods: u64,
    /// GPU request arrived, milli-GPU.
    pub arrived_gpu_milli: u64,
    /// GPU capacity allocated at the end, milli-GPU.
    pub allocated_gpu_milli: u64,
    /// One point per whole percent of arrived request, 0 ..= tune × 100.
    pub curve: Vec<CurvePoint>,
}

impl InflateReport {
    /// The allocation at `pct`% arrived, if the curve reaches it.
    pub fn allocated_at(&self, pct: u32) -> Option<f64> {
        self.curve.iter().find(|p| p.arrived_pct == pct).map(|p| p.allocated_pct)
    }
}

/// The arrival sequence: indices into `pods` (see the module documentation).
pub fn arrivals(pods: &[PodReq], target_milli: u64, seed: u64) -> Result<Vec<u32>, InputError> {
    if !pods.iter().any(|p| p.request() > 0) {
        return Err(InputError::new("pod list", "document", "num_gpu", "no pod asks for a GPU"));
    }
    let mean_request = pods.iter().map(PodReq::request).sum::<u64>() as f64 / pods.len() as f64;
    let expected = target_milli as f64 / mean_request;
    if expected > MAX_ARRIVALS as f64 {
        return Err(InputError::new(
            "command line",
            "--tune",
            "tune",
            format!(
                "reaching {target_milli} milli-GPU takes about {expected:.0} pods of this list, more than {MAX_ARRIVALS}"
            ),
        ));
    }
    let mut rng = SplitMix64::new(seed);
    let mut order: Vec<u32> = (0..pods.len() as u32).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut total = 0u64;
    let mut out = Vec::with_capacity((expected as usize).min(MAX_ARRIVALS as usize) + 16);
    for &i in &order {
        let request = pods[i as usize].request();
        if total + request > target_milli {
            return Ok(out);
        }
        total += request;
        out.push(i);
    }
    loop {
        let i = rng.below(pods.len() as u64) as u32;
        let request = pods[i as usize].request();
        if total + request > target_milli {
            return Ok(out);
        }
        if out.len() as u64 == MAX_ARRIVALS {
            return Err(InputError::new(
                "command line",
                "--tune",
                "tune",
                format!("reaching {target_milli} milli-GPU took more than {MAX_ARRIVALS} pods of this list"),
            ));
        }
        total += request;
        out.push(i);
    }
}

/// Where node scores are computed.
pub enum NodeBackend {
    /// The CPU, on every core.
    Cpu,
    /// A GPU adapter.
    #[cfg(feature = "gpu")]
    Gpu(Box<crate::gpu::nodes::GpuNodeScorer>),
}

impl NodeBackend {
    /// Opens the chosen backend, with notices (why the CPU, when `auto` chose it).
    pub fn open(choice: BackendChoice) -> Result<(NodeBackend, Vec<String>), ScoreError> {
        match choice {
            BackendChoice::Cpu => Ok((NodeBackend::Cpu, Vec::new())),
            #[cfg(feature = "gpu")]
            BackendChoice::Gpu => {
                Ok((NodeBackend::Gpu(Box::new(crate::gpu::nodes::GpuNodeScorer::open()?)), Vec::new()))
            }
            #[cfg(feature = "gpu")]
            _ => {
                let adapters = crate::gpu::adapters();
                let mut refused = Vec::new();
                for (index, adapter) in adapters.iter().enumerate().filter(|(_, a)| !a.software) {
                    match crate::gpu::nodes::GpuNodeScorer::open_adapter(index) {
                        Ok(scorer) => return Ok((NodeBackend::Gpu(Box::new(scorer)), Vec::new())),
                        Err(e) => refused.push(format!("{adapter} ({e})")),
                    }
                }
                let why = if refused.is_empty() {
                    "no hardware GPU adapter (--backend gpu uses a software one)".to_string()
                } else {
                    refused.join("; ")
                };
                Ok((NodeBackend::Cpu, vec![format!("notice: using the CPU backend: {why}")]))
            }
            #[cfg(not(feature = "gpu"))]
            BackendChoice::Gpu => Err(ScoreError::NoAdapter("gpuplace was built without the `gpu` feature".into())),
            #[cfg(not(feature = "gpu"))]
            _ => Ok((NodeBackend::Cpu, vec!["notice: using the CPU backend: built without the `gpu` feature".into()])),
        }
    }

    /// Its name in reports.
    pub fn name(&self) -> String {
        match self {
            NodeBackend::Cpu => "cpu".into(),
            #[cfg(feature = "gpu")]
            NodeBackend::Gpu(scorer) => scorer.adapter().to_string(),
        }
    }
}

/// Runs the experiment. `progress` is called with (pods done, pods in all) now and then.
pub fn inflate(
    cluster: &Cluster,
    config: InflateConfig,
    backend: &mut NodeBackend,
    names: (&str, &str),
    progress: &mut dyn FnMut(u64, u64),
) -> Result<InflateReport, crate::error::Error> {
    config.validate()?;
    let capacity = cluster.total_gpu_milli();
    if capacity == 0 {
        return Err(InputError::new(names.0, "document", "gpu", "no node has a GPU").into());
    }
    let target = capacity * u64::from(config.tune_permille) / 1000;
    let order = arrivals(&cluster.pods, target, config.seed)?;
    let shapes = typical_shapes(&cluster.pods);
    // The simulator renames its nodes with a seeded random prefix, so its ties go to a random but
    // fixed order; here the same: a seeded permutation, and ties to the lowest index in it.
    let mut nodes = cluster.nodes.clone();
    let mut shuffle = SplitMix64::new(config.seed ^ NODE_ORDER_SALT);
    for i in (1..nodes.len()).rev() {
        nodes.swap(i, shuffle.below(i as u64 + 1) as usize);
    }
    for node in &mut nodes {
        node.frag = node_frag(&node.left, node.cpu_free, node.model, &shapes);
    }
    let max_cpu = nodes.iter().map(|n| n.cpu_free).max().unwrap_or(1).max(1);
    let max_gpu = nodes.iter().map(|n| n.gpus * GPU_MILLI).max().unwrap_or(1).max(1);
    let (w_frag, w_pack, w_random, w_size) = config.preset.weights();
    let base = NodeParams {
        node_count: nodes.len() as u32,
        shape_count: shapes.len() as u32,
        w_frag,
        w_pack,
        w_random,
        w_size,
        inv_cpu_q16: inv_q16(max_cpu),
        inv_gpu_q16: inv_q16(max_gpu),
        ..Default::default()
    };
    #[cfg_attr(not(feature = "gpu"), expect(unused_mut, reason = "only the GPU can fail and change it"))]
    let mut backend_name = backend.name();
    // A device that cannot take the tables hands over to the CPU, as one failing mid-run does.
    #[cfg(feature = "gpu")]
    if let NodeBackend::Gpu(scorer) = backend
        && let Err(e) = scorer.load(&nodes, &shapes)
    {
        backend_name = format!("{backend_name}, then cpu before pod 0 ({e})");
        *backend = NodeBackend::Cpu;
    }
    let max_pct = config.tune_permille / 10;
    // Per whole percent: (Σ allocated milli, pods).
    let mut buckets: Vec<(u128, u64)> = vec![(0, 0); max_pct as usize + 2];
    let (mut arrived, mut allocated) = (0u64, 0u64);
    let (mut placed, mut failed_gpu, mut failed_cpu) = (0u64, 0u64, 0u64);
    let seed32 = (config.seed ^ (config.seed >> 32)) as u32;
    for (n, &i) in order.iter().enumerate() {
        let pod = cluster.pods[i as usize];
        arrived += pod.request();
        let params = NodeParams {
            pod_cpu: pod.cpu,
            pod_mem: pod.mem,
            pod_gpus: pod.gpus,
            pod_milli: pod.milli,
            pod_models: pod.models,
            pod_seed: mix(seed32 ^ mix(n as u32)),
            ..base
        };
        let best: NodeCandidate = match backend {
            NodeBackend::Cpu => best_node_parallel(&nodes, &params, &shapes),
            #[cfg(feature = "gpu")]
            NodeBackend::Gpu(scorer) => match scorer.best(&params) {
                Ok(best) => best,
                // A GPU that fails mid-run hands over to the CPU, which has every node's state and
                // gives the same answer.
                Err(e) => {
                    backend_name = format!("{backend_name}, then cpu after pod {n} ({e})");
                    *backend = NodeBackend::Cpu;
                    best_node_parallel(&nodes, &params, &shapes)
                }
            },
        };
        if best.node == crate::kernel::frag::NO_NODE {
            if pod.gpus > 0 {
                failed_gpu += 1;
            } else {
                failed_cpu += 1;
            }
        } else {
            let node = &mut nodes[best.node as usize];
            commit_pod(node, &params, best.gpu_mask, &shapes);
            #[cfg(feature = "gpu")]
            if let NodeBackend::Gpu(scorer) = backend {
                scorer.update_node(best.node as usize, node);
            }
            placed += 1;
            allocated += pod.request();
        }
        // Nearest whole percent, halves up.
        let pct = ((u128::from(arrived) * 200 + u128::from(capacity)) / (2 * u128::from(capacity))) as usize;
        if let Some(bucket) = buckets.get_mut(pct) {
            bucket.0 += u128::from(allocated);
            bucket.1 += 1;
        }
        if n % 1024 == 0 {
            progress(n as u64, order.len() as u64);
        }
    }
    progress(order.len() as u64, order.len() as u64);
    let percent = |sum: u128, count: u64| sum as f64 / count as f64 * 100.0 / capacity as f64;
    let mut curve = Vec::with_capacity(max_pct as usize + 1);
    let mut previous = 0.0;
    for x in 0..=max_pct as usize {
        let (sum, count) = if buckets[x].1 > 0 {
            buckets[x]
        } else {
            let around = &buckets[x.saturating_sub(1)..=(x + 1)];
            around.iter().fold((0u128, 0u64), |a, b| (a.0 + b.0, a.1 + b.1))
        };
        let value = if count > 0 { percent(sum, count) } else { previous };
        previous = value;
        curve.push(CurvePoint { arrived_pct: x as u32, allocated_pct: (value * 10_000.0).round() / 10_000.0 });
    }
    Ok(InflateReport {
        nodes_file: names.0.to_string(),
        pods_file: names.1.to_string(),
        preset: config.preset,
        backend: backend_name,
        seed: config.seed,
        tune: f64::from(config.tune_permille) / 1000.0,
        nodes: nodes.len(),
        total_gpus: cluster.total_gpus(),
        total_gpu_milli: capacity,
        pods_in_list: cluster.pods.len(),
        typical_shapes: shapes.len(),
        arrived_pods: order.len() as u64,
        placed_pods: placed,
        failed_gpu_pods: failed_gpu,
        failed_cpu_pods: failed_cpu,
        arrived_gpu_milli: arrived,
        allocated_gpu_milli: allocated,
        curve,
    })
}
