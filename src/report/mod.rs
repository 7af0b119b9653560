//! What a placement amounts to: the metrics shared by every command (energy, carbon, stranded
//! GPUs, GPUs and power per site, latency violations) and the `--out` document. Imports the model
//! and the engine's results.

pub mod metrics;
pub mod out;

pub use out::out_file;
