//! The HTTP API's bodies (docs/API.md shows each with an example). Requests that submit jobs use
//! the job file format of the library; everything else is here.

use gpuplace::JobKind;
use gpuplace::engine::PlacedOn;
use serde::{Deserialize, Serialize};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Accepted, not placed yet (its `reason` says why).
    Waiting,
    /// Holding its placement.
    Placed,
    /// Evicted by a job of higher priority and waiting again (not produced yet: preemption is
    /// future work).
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The scheduling round that placed, rejected or finished it.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobsResponse {
    /// The jobs.
    pub jobs: Vec<JobView>,
    /// For a listing, how many jobs are in the state asked (the list may be cut at `limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
