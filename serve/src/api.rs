//! The HTTP API's bodies (docs/API.md shows each with an example). Requests that submit jobs use
//! the job file format of the library; everything else is here.

use gpuplace::JobKind;
use gpuplace::engine::PlacedOn;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Accepted, not placed yet (its `reason` says why).
    Waiting,
    /// Holding its placement.
    Placed,
    /// Evicted by a job of higher priority (`serve --preemption`) and waiting again.
    Preempted,
    /// Finished or cancelled: holds nothing.
    Finished,
    /// Accepted but never placeable: no cluster of the fleet could ever hold it.
    Rejected,
}

impl JobState {
    /// Every state, in the order of the lifecycle.
    pub const ALL: [JobState; 5] =
        [JobState::Waiting, JobState::Placed, JobState::Preempted, JobState::Finished, JobState::Rejected];

    /// Its name in the API.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Placed => "placed",
            JobState::Preempted => "preempted",
            JobState::Finished => "finished",
            JobState::Rejected => "rejected",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobView {
    /// Its id.
    pub id: String,
    /// Its state.
    pub state: JobState,
    /// Its kind.
    pub kind: JobKind,
    /// Its priority.
    pub priority: i32,
    /// GPUs it asks for.
    pub gpus: u32,
    /// Its submission number: the order in which the server accepted jobs, from 0.
    pub submitted: u64,
    /// The scheduling round that placed it (while it is placed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u64>,
    /// Where it runs, while placed: site, cluster, racks, and each pod's tray and GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacedOn>,
    /// Why it waits (the latest round's reason) or was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A list of jobs: the answer to a submission (each job of it, in order) or to a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobsResponse {
    /// The jobs.
    pub jobs: Vec<JobView>,
    /// For a listing, how many jobs are in the state asked (the list may be cut at `limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorResponse {
    /// One line: for a refused job, the source (`request`), the record, the field and what is
    /// wrong, as the command prints for a file.
    pub error: String,
}

/// An error answer: an HTTP status and its one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The line.
    pub message: String,
}

impl ApiError {
    /// An error with this status.
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
}

/// A tray's (node's) state, as fleet events set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeStateName {
    /// In service.
    Ready,
    /// No new pods; those on it keep running.
    Cordoned,
    /// Out of service: the jobs with a pod on it are requeued.
    Failed,
}

impl NodeStateName {
    /// The library's state.
    pub fn state(self) -> gpuplace::kernel::state::NodeState {
        match self {
            NodeStateName::Ready => gpuplace::kernel::state::NodeState::Ready,
            NodeStateName::Cordoned => gpuplace::kernel::state::NodeState::Cordoned,
            NodeStateName::Failed => gpuplace::kernel::state::NodeState::Failed,
        }
    }

    /// The name of a library state.
    pub fn of(state: gpuplace::kernel::state::NodeState) -> NodeStateName {
        match state {
            gpuplace::kernel::state::NodeState::Ready => NodeStateName::Ready,
            gpuplace::kernel::state::NodeState::Cordoned => NodeStateName::Cordoned,
            gpuplace::kernel::state::NodeState::Failed => NodeStateName::Failed,
        }
    }
}

/// A change of the fleet (`POST /v1/fleet/events`: one, or an array applied in order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum FleetEvent {
    /// One tray (node) of a rack becomes ready, cordoned or failed.
    Node {
        /// The cluster's name.
        cluster: String,
        /// The rack's index in its cluster.
        rack: u32,
        /// The node's index in its rack.
        node: u32,
        /// Its new state.
        state: NodeStateName,
    },
    /// Every tray of a rack becomes ready, cordoned or failed.
    Rack {
        /// The cluster's name.
        cluster: String,
        /// The rack's index in its cluster.
        rack: u32,
        /// The new state of its trays.
        state: NodeStateName,
    },
    /// A site's IT power capacity changes; when it falls below what the site draws, jobs there
    /// are requeued, lowest priority first, then the latest submitted first, until it fits.
    SitePower {
        /// The site's name.
        site: String,
        /// Its IT power now, MW.
        power_mw: f64,
    },
    /// A cluster's capacity comes online on `online` (today: now).
    ClusterOnline {
        /// The cluster's name.
        cluster: String,
        /// The day, `YYYY-MM-DD`.
        online: gpuplace::Day,
    },
}

/// The answer to fleet events: the jobs they requeued, as they stand after the batch's round
/// (placed elsewhere, or waiting with the reason).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventsResponse {
    /// Events applied.
    pub applied: u64,
    /// The jobs requeued.
    pub requeued: Vec<JobView>,
}

/// A site as `GET /v1/fleet` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SiteView {
    /// Its name.
    pub name: String,
    /// IT power capacity now, MW.
    pub power_mw: f64,
    /// IT power drawn now, MW.
    pub drawn_mw: f64,
    /// GPUs held (by jobs or the fleet file's own load).
    pub gpus_used: u64,
    /// GPUs free on ready trays.
    pub gpus_free: u64,
}

/// A tray that is not ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeView {
    /// The cluster's name.
    pub cluster: String,
    /// The rack's index in its cluster.
    pub rack: u32,
    /// The node's index in its rack.
    pub node: u32,
    /// Its state.
    pub state: NodeStateName,
}

/// `GET /v1/fleet`: the fleet as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FleetView {
    /// Sites.
    pub sites: Vec<SiteView>,
    /// Trays cordoned or failed (at most 10,000 listed).
    pub nodes_not_ready: Vec<NodeView>,
    /// How many trays are cordoned or failed.
    pub nodes_not_ready_total: u64,
    /// Clusters whose online day was changed by an event, with the day.
    pub clusters_online: Vec<(String, gpuplace::Day)>,
}
