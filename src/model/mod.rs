//! The domain model: fleets, jobs, policies and dates, read from files and validated into the
//! integer units the kernel uses (every range is enforced here; see `docs/FORMATS.md`), and the
//! built-in fleet. Imports only the kernel (its records, limits and term names) and `error`.

pub mod builtin;
pub mod date;
pub mod fleet;
pub mod jobs;
pub(crate) mod json;
pub mod kind;
pub mod policy;
pub mod tenants;

pub use json::FORMAT_VERSION;
