#![deny(missing_docs)]
//! # gpuplace
//!
//! GPU-accelerated placement of AI jobs (inference, agentic, multimodal, training) onto NVLink
//! domains (GB300 NVL72 racks and the like) across sites that differ in power, price, carbon,
//! jurisdiction and latency.
//!
//! A WGSL compute kernel (`shaders/score.wgsl`, run through wgpu on any Vulkan, Metal, DX12 or GL
//! adapter; feature `gpu`, on by default) scores every job against every rack and keeps each job's
//! best candidates; a CPU twin ([`kernel::score`], [`kernel::cpu`]) computes bit-identical results
//! and is the reference and the fallback. The engine ([`engine`]) commits jobs in priority order on
//! a live capacity ledger with exact accounting.
//!
//! Modules, each importing only those listed before it (see `ARCHITECTURE.md`): [`error`],
//! [`kernel`], [`model`], `gpu`, [`engine`], [`report`], [`sim`], [`schema`].
//!
//! ```no_run
//! use gpuplace::{BackendChoice, Day, Policy, Scheduler, builtin, generate, report};
//!
//! let fleet = builtin::default_fleet();
//! let workload = generate::generate(&fleet, 1000, 42, Day::parse("2026-11-26").unwrap())?;
//! let mut scheduler = Scheduler::new(fleet, Policy::default(), BackendChoice::Auto)?;
//! let placement = scheduler.place(&workload, None)?;
//! let out = report::out_file(scheduler.fleet(), &workload, &placement);
//! println!("placed {} of {}", out.summary.placed, out.summary.jobs);
//! # Ok::<(), gpuplace::Error>(())
//! ```

pub mod engine;
pub mod error;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod kernel;
pub mod model;
pub mod report;
pub mod schema;
pub mod sim;

pub use engine::{Backend, BackendChoice, Placement, Scheduler};
pub use error::{Error, InputError, Result, ScoreError};
pub use model::date::Day;
pub use model::fleet::Fleet;
pub use model::jobs::{Job, Workload};
pub use model::kind::JobKind;
pub use model::policy::{Policy, Weights};
pub use model::tenants::{Tenant, Tenants};
pub use model::{builtin, date};
pub use sim::{generate, import, replay};
/// The README's Rust snippet, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The wgpu version gpuplace is built with, for callers that open a [`gpu::GpuScorer`] with custom
/// limits.
#[cfg(feature = "gpu")]
pub use wgpu;
