//! The Kubernetes scheduler-extender protocol: its request and answer bodies, as kube-scheduler
//! writes and reads them, and how a pod and a node map onto gpuplace (docs/KUBERNETES.md).
//!
//! The upstream Go types (`k8s.io/kube-scheduler/extender/v1`) carry no JSON tags, so
//! kube-scheduler writes their field names as they are (`Pod`, `Nodes`, `NodeNames`, `PodName`,
//! …) and reads answers case-insensitively. These types read those names, and the lower-case
//! ones older extenders' copies of the types use, and answer with the upstream names. The Pod and
//! Node objects inside are the core API's (`metadata`, `spec`, …): only the fields gpuplace reads
//! are declared, every other field is ignored, and the nodes of a filter answer are the request's
//! own objects, returned untouched.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::ApiError;

/// The highest score an extender may give a node (upstream `MaxExtenderPriority`).
pub const MAX_EXTENDER_PRIORITY: i64 = 10;
/// The node label naming the gpuplace rack (NVLink domain) of a node: `SITE/CLUSTER/RACK`, the
/// rack's index within its cluster.
pub const RACK_LABEL: &str = "gpuplace.io/rack";
/// The node label naming the node's tray within its rack (0-based).
pub const TRAY_LABEL: &str = "gpuplace.io/tray";
/// NVIDIA's label of a node's NVLink domain (GPU feature discovery): nodes with one value must
/// name one gpuplace rack.
pub const CLIQUE_LABEL: &str = "nvidia.com/gpu.clique";
/// The extended resource of whole GPUs (NVIDIA's device plugin).
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// Pod annotations gpuplace reads (all optional).
pub const KIND_ANNOTATION: &str = "gpuplace.io/kind";
/// The users' region (default: the fleet's first).
pub const REGION_ANNOTATION: &str = "gpuplace.io/region";
/// The latency bound, ms.
pub const LATENCY_ANNOTATION: &str = "gpuplace.io/max-latency-ms";
/// Allowed jurisdictions, comma-separated (data residency).
pub const JURISDICTIONS_ANNOTATION: &str = "gpuplace.io/jurisdictions";
/// HBM needed per GPU, GB.
pub const HBM_ANNOTATION: &str = "gpuplace.io/hbm-gb-per-gpu";
/// The expected run time, hours (default 1: it only weighs energy and carbon in the reports).
pub const DURATION_ANNOTATION: &str = "gpuplace.io/duration-h";
/// The tenant whose quota the pod counts against (`docs/QUOTAS.md`; default: its kind's tenant).
pub const TENANT_ANNOTATION: &str = "gpuplace.io/tenant";
/// The pod's gang (its pod group's name, within the pod's namespace).
pub const POD_GROUP_ANNOTATION: &str = "gpuplace.io/pod-group";
/// The gang's pods, all alike (what the group needs at once).
pub const POD_GROUP_SIZE_ANNOTATION: &str = "gpuplace.io/pod-group-size";

/// `ObjectMeta`: the fields read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ObjectMeta {
    /// Name.
    pub name: String,
    /// Namespace (pods).
    pub namespace: String,
    /// UID.
    pub uid: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

/// A container's `resources`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// Limits by resource name: quantities, as strings (`"4"`, `"500m"`, `"64Gi"`) or numbers.
    pub limits: BTreeMap<String, serde_json::Value>,
    /// Requests.
    pub requests: BTreeMap<String, serde_json::Value>,
}

/// A container: the fields read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Container {
    /// Its resources.
    pub resources: Resources,
}

/// `PodSpec`: the fields read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PodSpec {
    /// Containers (init containers are not read: they run before, not beside, the others).
    pub containers: Vec<Container>,
    /// The priority its PriorityClass gave it.
    pub priority: Option<i32>,
}

/// A Pod: the fields read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Pod {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: PodSpec,
}

/// A `NodeList`, its nodes kept as they came (a filter answer returns them untouched).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct NodeList {
    /// The nodes.
    #[serde(default)]
    pub items: Vec<serde_json::Value>,
}

/// `ExtenderArgs`: a filter or prioritize request.
#[derive(Debug, Clone, Deserialize)]
pub struct ExtenderArgs {
    /// The pod being scheduled.
    #[serde(rename = "Pod", alias = "pod")]
    pub pod: Option<Pod>,
    /// The candidate nodes, whole (`nodeCacheCapable: false`).
    #[serde(rename = "Nodes", alias = "nodes", default)]
    pub nodes: Option<NodeList>,
    /// The candidate nodes by name (`nodeCacheCapable: true`).
    #[serde(rename = "NodeNames", alias = "nodenames", alias = "nodeNames", default)]
    pub node_names: Option<Vec<String>>,
}

/// `ExtenderFilterResult`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExtenderFilterResult {
    /// The nodes that pass, whole, when the request gave whole nodes.
    #[serde(rename = "Nodes", alias = "nodes", default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeList>,
    /// The nodes that pass, by name, when the request gave names.
    #[serde(rename = "NodeNames", alias = "nodenames", default, skip_serializing_if = "Option::is_none")]
    pub node_names: Option<Vec<String>>,
    /// Nodes that fail now, and why (preemption may help).
    #[serde(rename = "FailedNodes", alias = "failedNodes", default)]
    pub failed_nodes: BTreeMap<String, String>,
    /// Nodes that can never take the pod, and why (not gpuplace trays, or failing a constraint
    /// no eviction changes).
    #[serde(rename = "FailedAndUnresolvableNodes", alias = "failedAndUnresolvableNodes", default)]
    pub failed_and_unresolvable_nodes: BTreeMap<String, String>,
    /// Why the request as a whole failed (empty when it did not).
    #[serde(rename = "Error", alias = "error", default)]
    pub error: String,
}

impl PartialEq for NodeList {
    fn eq(&self, other: &Self) -> bool {
        self.items == other.items
    }
}

/// `HostPriority`: one node's score, 0..=[`MAX_EXTENDER_PRIORITY`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostPriority {
    /// The node.
    #[serde(rename = "Host", alias = "host")]
    pub host: String,
    /// Its score.
    #[serde(rename = "Score", alias = "score")]
    pub score: i64,
}

/// `ExtenderBindingArgs`: bind a pod to a node.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ExtenderBindingArgs {
    /// The pod's name.
    #[serde(rename = "PodName", alias = "podName")]
    pub pod_name: String,
    /// Its namespace.
    #[serde(rename = "PodNamespace", alias = "podNamespace")]
    pub pod_namespace: String,
    /// Its UID.
    #[serde(rename = "PodUID", alias = "podUID")]
    pub pod_uid: String,
    /// The node.
    #[serde(rename = "Node", alias = "node")]
    pub node: String,
}

/// `ExtenderBindingResult`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExtenderBindingResult {
    /// Why the binding failed (empty when it did not).
    #[serde(rename = "Error", alias = "error", default)]
    pub error: String,
}

/// `Victims`: the pods kube-scheduler would evict on one node (`nodeCacheCapable: false`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Victims {
    /// The pods, whole.
    #[serde(rename = "Pods", alias = "pods", default)]
    pub pods: Vec<Pod>,
    /// How many PodDisruptionBudgets evicting them violates.
    #[serde(rename = "NumPDBViolations", alias = "numPDBViolations", default)]
    pub num_pdb_violations: i64,
}

/// `MetaPod`: a pod by UID.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MetaPod {
    /// The pod's UID.
    #[serde(rename = "UID", alias = "uid", default)]
    pub uid: String,
}

/// `MetaVictims`: the pods to evict on one node, by UID.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MetaVictims {
    /// The pods.
    #[serde(rename = "Pods", alias = "pods", default)]
    pub pods: Vec<MetaPod>,
    /// How many PodDisruptionBudgets evicting them violates.
    #[serde(rename = "NumPDBViolations", alias = "numPDBViolations", default)]
    pub num_pdb_violations: i64,
}

/// `ExtenderPreemptionArgs`: the nodes where kube-scheduler could make room for a pod by
/// evicting pods of lower priority, with those victims; whole pods (`nodeCacheCapable: false`)
/// or UIDs (`true`).
#[derive(Debug, Clone, Deserialize)]
pub struct ExtenderPreemptionArgs {
    /// The pod that does not fit.
    #[serde(rename = "Pod", alias = "pod")]
    pub pod: Option<Pod>,
    /// The victims by node, whole pods.
    #[serde(rename = "NodeNameToVictims", alias = "nodeNameToVictims", default)]
    pub node_name_to_victims: Option<BTreeMap<String, Victims>>,
    /// The victims by node, UIDs.
    #[serde(rename = "NodeNameToMetaVictims", alias = "nodeNameToMetaVictims", default)]
    pub node_name_to_meta_victims: Option<BTreeMap<String, MetaVictims>>,
}

/// `ExtenderPreemptionResult`: the nodes the extender lets kube-scheduler preempt on, with their
/// victims (each node's victims as it was given them, never none).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExtenderPreemptionResult {
    /// The victims by node.
    #[serde(rename = "NodeNameToMetaVictims", alias = "nodeNameToMetaVictims", default)]
    pub node_name_to_meta_victims: BTreeMap<String, MetaVictims>,
}

/// A node of the fleet, as its labels name it: the rack's global index and the tray.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tray {
    /// Global rack index.
    pub rack: u32,
    /// Tray (node) within the rack.
    pub tray: u32,
}

/// The name and labels of one node object of a request.
pub fn node_meta(node: &serde_json::Value) -> Result<ObjectMeta, String> {
    #[derive(Deserialize)]
    struct Node {
        #[serde(default)]
        metadata: ObjectMeta,
    }
    let node: Node = serde_json::from_value(node.clone()).map_err(|e| format!("a node object does not read: {e}"))?;
    if node.metadata.name.is_empty() || node.metadata.name.len() > 253 {
        return Err("a node object has no metadata.name, or one longer than Kubernetes allows".into());
    }
    Ok(node.metadata)
}

/// The tray a node's labels name in `fleet`, or why they name none.
pub fn tray_of(fleet: &gpuplace::Fleet, labels: &BTreeMap<String, String>) -> Result<Tray, String> {
    let rack = labels.get(RACK_LABEL).ok_or_else(|| format!("no `{RACK_LABEL}` label: not a gpuplace tray"))?;
    let tray = labels.get(TRAY_LABEL).ok_or_else(|| format!("no `{TRAY_LABEL}` label"))?;
    let mut parts = rack.split('/');
    let (Some(site), Some(cluster), Some(index), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("label `{RACK_LABEL}`: `{rack}` is not SITE/CLUSTER/RACK"));
    };
    let s = fleet
        .sites
        .iter()
        .position(|x| x.name == site)
        .ok_or_else(|| format!("label `{RACK_LABEL}`: the fleet has no site `{site}`"))?;
    let c = fleet
        .clusters
        .iter()
        .find(|c| c.site == s && c.name == cluster)
        .ok_or_else(|| format!("label `{RACK_LABEL}`: site `{site}` has no cluster `{cluster}`"))?;
    let index: usize = index.parse().map_err(|_| format!("label `{RACK_LABEL}`: `{index}` is not a rack index"))?;
    if index >= c.racks.len() {
        return Err(format!(
            "label `{RACK_LABEL}`: cluster `{cluster}` has {} racks, not {}",
            c.racks.len(),
            index + 1
        ));
    }
    let rack = (c.racks.start + index) as u32;
    let tray: u32 = tray.parse().map_err(|_| format!("label `{TRAY_LABEL}`: `{tray}` is not a tray index"))?;
    let trays = fleet.rack_types[c.rack_type].nodes;
    if tray >= trays {
        return Err(format!("label `{TRAY_LABEL}`: the rack has {trays} trays, not {}", tray + 1));
    }
    Ok(Tray { rack, tray })
}

/// A quantity as a whole number (`"4"`, `4`); an error for anything else (`"500m"`, `"1.5"`).
fn whole(value: &serde_json::Value, what: &str) -> Result<u64, String> {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err(format!("{what}: not a quantity")),
    };
    text.parse::<u64>().map_err(|_| format!("{what}: `{text}` is not a whole number"))
}

/// A CPU quantity in cores (`"4"`, `"500m"`, `"1.5"`).
fn cores(value: &serde_json::Value) -> Result<f64, String> {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err("cpu: not a quantity".into()),
    };
    let (number, scale) = match text.strip_suffix('m') {
        Some(milli) => (milli, 1e-3),
        None => (text.as_str(), 1.0),
    };
    let value: f64 = number.parse().map_err(|_| format!("cpu: `{text}` is not a quantity"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("cpu: `{text}` is not a quantity"));
    }
    Ok(value * scale)
}

/// A memory quantity in GiB (`"64Gi"`, `"512Mi"`, `"1G"`, `"68719476736"`).
fn gibibytes(value: &serde_json::Value) -> Result<f64, String> {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err("memory: not a quantity".into()),
    };
    const SUFFIXES: [(&str, f64); 8] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let (number, scale) =
        SUFFIXES.iter().find_map(|(s, f)| text.strip_suffix(s).map(|n| (n, *f))).unwrap_or((text.as_str(), 1.0));
    let value: f64 = number.parse().map_err(|_| format!("memory: `{text}` is not a quantity"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("memory: `{text}` is not a quantity"));
    }
    Ok(value * scale / 1073741824.0)
}

/// What gpuplace makes of a pod: the job of its one pod (None when it asks for no GPU: gpuplace
/// then lets every node pass and scores none), and its gang when it has one.
#[derive(Debug, Clone)]
pub struct PodJob {
    /// The job, as a jobs file would state it (so that it gets the file format's checks):
    /// id `NAMESPACE/NAME`.
    pub job: Option<gpuplace::Job>,
    /// Its gang: `NAMESPACE/GROUP` and the group's pods.
    pub group: Option<(String, u32)>,
}

/// The job of `pod` in `fleet` (see docs/KUBERNETES.md for the fields read). A 422 naming the
/// pod and field when a value does not read or validate.
pub fn pod_job(fleet: &gpuplace::Fleet, pod: &Pod) -> Result<PodJob, ApiError> {
    let meta = &pod.metadata;
    let namespace = if meta.namespace.is_empty() { "default" } else { meta.namespace.as_str() };
    let id = format!("{namespace}/{}", meta.name);
    let refuse = |field: &str, message: String| {
        ApiError::new(422, format!("request: pod `{}`: {field}: {message}", id.escape_debug()))
    };
    if meta.name.is_empty() {
        return Err(ApiError::new(422, "request: Pod: metadata.name is missing"));
    }
    // Kubernetes' own limits (names of 253, namespaces of 63): what the extender keeps between
    // requests stays small.
    if meta.name.len() > 253 || namespace.len() > 63 {
        return Err(ApiError::new(422, "request: Pod: metadata.name or namespace longer than Kubernetes allows"));
    }
    if let Some((key, _)) = meta.annotations.iter().find(|(k, v)| k.starts_with("gpuplace.io/") && v.len() > 1024) {
        return Err(refuse(key, "longer than 1024 bytes".into()));
    }
    let (mut gpus, mut cpu, mut memory) = (0u64, 0.0f64, 0.0f64);
    for (i, container) in pod.spec.containers.iter().enumerate() {
        let field = format!("spec.containers[{i}].resources");
        let limits = &container.resources.limits;
        let requests = &container.resources.requests;
        if let Some(q) = limits.get(GPU_RESOURCE).or_else(|| requests.get(GPU_RESOURCE)) {
            gpus = gpus
                .checked_add(whole(q, GPU_RESOURCE).map_err(|m| refuse(&field, m))?)
                .ok_or_else(|| refuse(&field, format!("{GPU_RESOURCE}: too many")))?;
        }
        if let Some(q) = requests.get("cpu").or_else(|| limits.get("cpu")) {
            cpu += cores(q).map_err(|m| refuse(&field, m))?;
        }
        if let Some(q) = requests.get("memory").or_else(|| limits.get("memory")) {
            memory += gibibytes(q).map_err(|m| refuse(&field, m))?;
        }
    }
    let annotations = &meta.annotations;
    let group = match (annotations.get(POD_GROUP_ANNOTATION), annotations.get(POD_GROUP_SIZE_ANNOTATION)) {
        (None, None) => None,
        (Some(name), Some(size)) => {
            let size: u32 = size
                .parse()
                .ok()
                .filter(|n| (1..=100_000).contains(n))
                .ok_or_else(|| refuse(POD_GROUP_SIZE_ANNOTATION, format!("`{size}` is not 1 to 100000")))?;
            Some((format!("{namespace}/{name}"), size))
        }
        (Some(_), None) => return Err(refuse(POD_GROUP_SIZE_ANNOTATION, "is missing (the group's pods)".into())),
        (None, Some(_)) => return Err(refuse(POD_GROUP_ANNOTATION, "is missing (the group's name)".into())),
    };
    if gpus == 0 {
        return Ok(PodJob { job: None, group });
    }
    let mut object = serde_json::json!({
        "id": id,
        "kind": annotations.get(KIND_ANNOTATION).map_or("inference", String::as_str),
        "gpus": gpus,
        "pods": 1,
        "hbm_gb_per_gpu": 0,
        "priority": pod.spec.priority.unwrap_or(0),
        "duration_h": 1.0,
        "region": annotations.get(REGION_ANNOTATION).unwrap_or(&fleet.regions[0]),
    });
    let number = |key: &str| -> Result<Option<u64>, ApiError> {
        annotations
            .get(key)
            .map(|v| v.trim().parse::<u64>().map_err(|_| refuse(key, format!("`{v}` is not a whole number"))))
            .transpose()
    };
    if let Some(ms) = number(LATENCY_ANNOTATION)? {
        object["max_latency_ms"] = ms.into();
    }
    if let Some(gb) = number(HBM_ANNOTATION)? {
        object["hbm_gb_per_gpu"] = gb.into();
    }
    if let Some(hours) = annotations.get(DURATION_ANNOTATION) {
        let hours: f64 =
            hours.trim().parse().map_err(|_| refuse(DURATION_ANNOTATION, format!("`{hours}` is not a number")))?;
        object["duration_h"] = hours.into();
    }
    if let Some(list) = annotations.get(JURISDICTIONS_ANNOTATION) {
        object["jurisdictions"] = list.split(',').map(str::trim).collect::<Vec<_>>().into();
    }
    if let Some(tenant) = annotations.get(TENANT_ANNOTATION) {
        object["tenant"] = tenant.as_str().into();
    }
    if cpu > 0.0 || memory > 0.0 {
        object["cpu"] = cpu.into();
        object["memory_gb"] = memory.into();
    }
    let text = serde_json::Value::Array(vec![object]).to_string();
    let source = format!("pod `{}`", id.escape_debug());
    let workload = gpuplace::Workload::from_json(&text, &source).map_err(|e| ApiError::new(422, e.to_string()))?;
    Ok(PodJob { job: workload.jobs.into_iter().next(), group })
}
