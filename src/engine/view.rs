//! Decisions named for people and programs: the job, and the site, cluster and racks it holds,
//! instead of indices into the workload and the fleet.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::ledger::Allocation;
use crate::engine::place::{Outcome, Placement};
use crate::engine::reasons::Reason;
use crate::model::fleet::Fleet;
use crate::model::jobs::{Job, Workload};

/// Where a placed job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct PlacedOn {
    /// Site name.
    pub site: String,
    /// Cluster name.
    pub cluster: String,
    /// Racks (index within the cluster, in allocation order: the anchor first) and GPUs taken on
    /// each.
    pub racks: Vec<RackShare>,
    /// Its pods, in placement order: each one's rack (index within the cluster), node (tray) in
    /// the rack, and GPUs on the node. Absent in files of gpuplace before trays.
    #[serde(default)]
    pub pods: Vec<PodOn>,
    /// Score of the anchor rack.
    pub score: u32,
}

/// Where one pod runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodOn {
    /// Index of the rack within its cluster.
    pub rack: u32,
    /// Index of the node (tray) within the rack.
    pub node: u32,
    /// Indices of its GPUs on the node, ascending.
    pub gpus: Vec<u32>,
    /// CPU it holds on the node, milli-cores (absent when its job asks for none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cpu_milli: u32,
    /// Memory it holds on the node, MiB (absent when its job asks for none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub memory_mib: u32,
    /// For a pod of a shared GPU, the thousandths of its one GPU (`gpus`) it holds (absent for a
    /// pod of whole GPUs).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gpu_milli: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

impl PlacedOn {
    /// Names `allocation` (of `fleet`), scored `score`.
    pub fn new(fleet: &Fleet, allocation: &Allocation, score: u32) -> Self {
        let slot = fleet.racks[allocation.anchor() as usize];
        let cluster = &fleet.clusters[slot.cluster as usize];
        PlacedOn {
            site: fleet.sites[cluster.site].name.clone(),
            cluster: cluster.name.clone(),
            racks: allocation
                .racks
                .iter()
                .map(|s| RackShare { rack: fleet.racks[s.rack as usize].index_in_cluster, gpus: s.gpus })
                .collect(),
            pods: allocation
                .pods
                .iter()
                .map(|p| PodOn {
                    rack: fleet.racks[p.rack as usize].index_in_cluster,
                    node: p.node,
                    gpus: p.gpu_indices(),
                    cpu_milli: p.cpu_milli,
                    memory_mib: p.memory_mib,
                    gpu_milli: p.gpu_milli,
                })
                .collect(),
            score,
        }
    }
}

/// GPUs taken on one rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RackShare {
    /// Index of the rack within its cluster.
    pub rack: u32,
    /// GPUs taken.
    pub gpus: u32,
}

/// A decision with its job and places named.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NamedDecision<'a> {
    /// The job.
    pub job: &'a Job,
    /// Where it runs, or why it does not.
    pub outcome: NamedOutcome<'a>,
}

/// [`Outcome`] with names.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NamedOutcome<'a> {
    /// Placed there.
    Placed(PlacedOn),
    /// Not placed, for this reason.
    Unplaced(&'a Reason),
}

impl Placement {
    /// The decisions in decision order, naming the job (of `workload`, the workload placed) and
    /// the site, cluster and racks (of `fleet`, the scheduler's fleet).
    pub fn named<'a>(&'a self, fleet: &'a Fleet, workload: &'a Workload) -> impl Iterator<Item = NamedDecision<'a>> {
        self.decisions.iter().map(move |decision| NamedDecision {
            job: &workload.jobs[decision.job],
            outcome: match &decision.outcome {
                Outcome::Placed { allocation, score } => NamedOutcome::Placed(PlacedOn::new(fleet, allocation, *score)),
                Outcome::Unplaced { reason } => NamedOutcome::Unplaced(reason),
            },
        })
    }
}
