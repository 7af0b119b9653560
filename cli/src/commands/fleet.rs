//! `gpuplace fleet`.

use std::path::Path;

use crate::commands::load_fleet;
use crate::output::print;
use crate::render;

pub fn run(fleet: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let fleet = load_fleet(fleet)?;
    if json { print(&(fleet.to_json() + "\n")) } else { print(&render::fleet(&fleet)) }
}
