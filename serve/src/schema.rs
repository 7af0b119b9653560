//! The JSON Schema of the service's API bodies and of `gpuplace load --json`, listed by
//! `gpuplace schema` after the library's formats (docs/schemas/, checked by a test).

use gpuplace::engine::explain::Explanation;
use gpuplace::model::jobs::{Job, JobsFile};
use gpuplace::report::Versioned;
use gpuplace::schema::{Format, schema_of};
use schemars::JsonSchema;

use crate::api::{ErrorResponse, EventsResponse, FleetEvent, FleetView, JobView, JobsResponse};
use crate::load::LoadReport;

/// Fleet events as `POST /v1/fleet/events` reads them: one, or an array.
#[derive(JsonSchema)]
#[serde(untagged)]
#[expect(dead_code, reason = "a type for the schema only; nothing is built of it")]
enum EventsInput {
    /// One event.
    One(FleetEvent),
    /// Events applied in order.
    Many(Vec<FleetEvent>),
}

/// A submission as `POST /v1/jobs` reads it: one job, an array of jobs, or a jobs file's object.
#[derive(JsonSchema)]
#[serde(untagged)]
#[expect(dead_code, reason = "a type for the schema only; nothing is built of it")]
#[allow(clippy::large_enum_variant, reason = "never built: its size does not matter")]
enum SubmitInput {
    /// One job.
    One(Job),
    /// Jobs.
    Many(Vec<Job>),
    /// `{"jobs": [...]}`.
    File(JobsFile),
}

/// The service's formats, in a fixed order.
pub fn formats() -> Vec<Format> {
    vec![
        Format::new(
            "api-submit",
            "serve: POST /v1/jobs (read)",
            schema_of::<SubmitInput>("gpuplace service submission"),
        ),
        Format::new(
            "api-job",
            "serve: GET /v1/jobs/{id}, POST /v1/jobs/{id}/finish (answers)",
            schema_of::<JobView>("gpuplace service job"),
        ),
        Format::new(
            "api-jobs",
            "serve: POST /v1/jobs, GET /v1/jobs (answers)",
            schema_of::<JobsResponse>("gpuplace service jobs"),
        ),
        Format::new(
            "api-explain",
            "serve: GET /v1/jobs/{id}/explain (answer)",
            schema_of::<Explanation>("gpuplace service explanation"),
        ),
        Format::new(
            "api-events",
            "serve: POST /v1/fleet/events (read)",
            schema_of::<EventsInput>("gpuplace fleet events"),
        ),
        Format::new(
            "api-events-answer",
            "serve: POST /v1/fleet/events (answer)",
            schema_of::<EventsResponse>("gpuplace fleet events answer"),
        ),
        Format::new("api-fleet", "serve: GET /v1/fleet (answer)", schema_of::<FleetView>("gpuplace service fleet")),
        Format::new("api-error", "serve: every error answer", schema_of::<ErrorResponse>("gpuplace service error")),
        Format::new("load", "load --json (written)", schema_of::<Versioned<LoadReport>>("gpuplace service load")),
    ]
}
