//! Applications of the engine: the workload generator, the trace importers, replay over time,
//! the comparison of policy presets, and the benchmark. Each uses the engine through the
//! [`crate::Scheduler`] or its ledger and backend, and the shared metrics of [`crate::report`].

pub mod bench;
pub mod compare;
pub mod generate;
pub mod import;
pub mod inflate;
pub mod replay;
