//! `gpuplace generate`.

use std::path::Path;

use gpuplace::{Day, Policy, generate};

use crate::commands::{load_fleet, parse_at};
use crate::output::{Outputs, is_csv, jobs_content, print_with};

pub fn run(
    count: usize,
    seed: u64,
    fleet_path: Option<&Path>,
    at: Option<&str>,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let mut outputs = Outputs::new(fleet_path);
    let out_id = out.map(|path| outputs.plan(path)).transpose()?;
    let fleet = load_fleet(fleet_path)?;
    let base = parse_at(at)?.or(fleet.as_of).unwrap_or_else(Day::today);
    let workload = generate::generate(&fleet, count, seed, base)?;
    // What is written must load back against the fleet it was made for.
    workload.compile(&fleet, &Policy::default(), base)?;
    let csv = out.is_some_and(is_csv);
    match out_id {
        Some(id) => outputs.write(vec![(id, jobs_content(workload, csv))]),
        None => print_with(|w| workload.write_json(w)),
    }
}
