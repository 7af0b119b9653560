//! JSON Schema (draft 2020-12) of every JSON file gpuplace reads or writes, generated from the Rust
//! types that read and write them, so a schema cannot drift from the code. `gpuplace schema NAME`
//! prints one; `docs/schemas/` holds them all, checked against this module by a test.

use schemars::{JsonSchema, Schema, SchemaGenerator};

use crate::engine::explain::Explanation;
use crate::model::fleet::FleetFile;
use crate::model::jobs::{Job, JobsFile};
use crate::model::policy::Policy;
use crate::model::tenants::TenantsFile;
use crate::report::Versioned;
use crate::report::out::{OutFile, OutLine};
use crate::sim::bench::BenchReport;
use crate::sim::compare::CompareFile;
use crate::sim::inflate::InflateReport;
use crate::sim::replay::{ReplayFile, ReplayLine};

/// One file format.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Format {
    /// Its name (`gpuplace schema NAME`, `docs/schemas/NAME.schema.json`).
    pub name: &'static str,
    /// What reads or writes it.
    pub used_by: &'static str,
    /// The schema.
    pub schema: Schema,
}

/// A jobs JSON file as read: an array of jobs, or the object form that gpuplace writes.
#[derive(JsonSchema)]
#[serde(untagged)]
#[expect(dead_code, reason = "a type for the schema only; nothing is built of it")]
enum JobsInput {
    /// The object form, `{"format_version": 1, "jobs": [...]}`.
    Object(JobsFile),
    /// A bare array of jobs.
    Array(Vec<Job>),
}

impl Format {
    /// A format of another package (the service's API bodies), for `gpuplace schema` to list with
    /// these.
    pub fn new(name: &'static str, used_by: &'static str, schema: Schema) -> Format {
        Format { name, used_by, schema }
    }
}

/// The schema of `T`, titled `title`.
pub fn schema_of<T: JsonSchema>(title: &str) -> Schema {
    let mut schema = SchemaGenerator::default().into_root_schema_for::<T>();
    schema.insert("title".into(), title.into());
    schema
}

/// Every format, in a fixed order.
pub fn formats() -> Vec<Format> {
    let format = |name, used_by, schema| Format { name, used_by, schema };
    vec![
        format(
            "fleet",
            "--fleet (read); fleet --json, import alibaba --fleet-out (written)",
            schema_of::<FleetFile>("gpuplace fleet"),
        ),
        format(
            "jobs",
            "--jobs as JSON (read); generate, import --out as JSON (written)",
            schema_of::<JobsInput>("gpuplace jobs"),
        ),
        format("policy", "--policy (read)", schema_of::<Policy>("gpuplace policy")),
        format("tenants", "--tenants (read)", schema_of::<TenantsFile>("gpuplace tenants")),
        format("place", "place --out (written)", schema_of::<OutFile>("gpuplace placement")),
        format(
            "place-line",
            "each line of place --out FILE.jsonl (written)",
            schema_of::<OutLine>("gpuplace placement, one line"),
        ),
        format("explain", "explain --json (written)", schema_of::<Versioned<Explanation>>("gpuplace explanation")),
        format("replay", "replay --json (written)", schema_of::<ReplayFile>("gpuplace replay")),
        format(
            "replay-line",
            "each line of replay --json FILE.jsonl (written)",
            schema_of::<ReplayLine>("gpuplace replay, one line"),
        ),
        format("compare", "compare --json (written)", schema_of::<CompareFile>("gpuplace policy comparison")),
        format("bench", "bench --json (written)", schema_of::<Versioned<BenchReport>>("gpuplace benchmark")),
        format(
            "inflate",
            "inflate --json (written)",
            schema_of::<Versioned<InflateReport>>("gpuplace workload inflation"),
        ),
    ]
}

/// The format named `name`.
pub fn format(name: &str) -> Option<Format> {
    formats().into_iter().find(|f| f.name == name)
}
