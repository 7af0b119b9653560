//! The kernel's CPU side: the `#[repr(C)]` records and constants shared with `shaders/score.wgsl`,
//! the scoring function's CPU twin, the shape rule, the ranges that keep both exact, the tables a
//! scoring pass reads, and the fast CPU scorer. Imports nothing of the crate outside this module.

pub mod cpu;
pub mod frag;
pub mod limits;
pub mod score;
pub mod shape;
pub mod state;
