//! What a placement amounts to: the metrics shared by every command (energy, carbon, stranded
//! GPUs, GPUs and power per site, latency violations) and the `--out` document. Imports the model
//! and the engine's results.

pub mod metrics;
pub mod out;

pub use out::out_file;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An output document: `format_version` ([`crate::model::FORMAT_VERSION`]) followed by the fields
/// of `body` in one JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Versioned<T> {
    /// The version of the format.
    pub format_version: u32,
    /// The document's fields.
    #[serde(flatten)]
    pub body: T,
}

impl<T> Versioned<T> {
    /// `body` with this gpuplace's format version.
    pub fn new(body: T) -> Self {
        Versioned { format_version: crate::model::FORMAT_VERSION, body }
    }
}
