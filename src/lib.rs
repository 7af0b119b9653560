#![deny(missing_docs)]
//! # gpuplace
//!
//! GPU-accelerated placement of AI jobs (inference, agentic, multimodal, training) onto NVLink
//! domains (GB300 NVL72 racks and the like) across sites that differ in power, price, carbon,
//! jurisdiction and latency.
//!
//! A WGSL compute kernel (`shaders/score.wgsl`, run through wgpu on any Vulkan, Metal, DX12 or GL
//! adapter) scores every job against every rack and keeps each job's best candidates; a CPU twin
//! ([`score`], [`cpu`]) computes bit-identical results and is the reference and the fallback. The
//! placement engine ([`place`]) commits jobs in priority order with exact capacity accounting.
//!
//! ```no_run
//! use gpuplace::{BackendChoice, Policy, Scheduler, builtin, generate, report};
//!
//! let fleet = builtin::default_fleet();
//! let workload = generate::generate(&fleet, 1000, 42, gpuplace::Day::parse("2026-11-26").unwrap());
//! let mut scheduler = Scheduler::new(fleet, Policy::default(), BackendChoice::Auto)?;
//! let placement = scheduler.place(&workload, None)?;
//! let out = report::out_file(scheduler.fleet(), &workload, &placement);
//! println!("placed {} of {}", out.summary.placed, out.summary.jobs);
//! # Ok::<(), gpuplace::Error>(())
//! ```

pub mod bench;
pub mod builtin;
pub mod compare;
pub mod cpu;
pub mod date;
pub mod error;
pub mod explain;
pub mod fleet;
pub mod generate;
pub mod gpu;
pub mod import;
pub mod jobs;
pub mod place;
pub mod plot;
pub mod policy;
pub mod replay;
pub mod report;
pub mod scheduler;
pub mod score;

pub use date::Day;
pub use error::{Error, InputError, Result};
pub use fleet::{Fleet, FleetFile, FleetState};
pub use gpu::{GpuError, GpuScorer};
pub use jobs::{Job, JobKind, Workload};
pub use policy::{Policy, Weights};
pub use scheduler::{Backend, BackendChoice, Placement, Scheduler};
/// The wgpu version gpuplace is built with, for callers that open a [`GpuScorer`] with custom limits.
pub use wgpu;
