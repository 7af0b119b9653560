//! `gpuplace generate`.

use std::path::Path;

use gpuplace::{Day, Policy, generate};

use crate::args::JobsOutput;
use crate::commands::{is_std, load_fleet, parse_at};
use crate::output::{Outputs, jobs_content, print_with, write_jobs};

pub fn run(
    count: usize,
    seed: u64,
    fleet_path: Option<&Path>,
    at: Option<&str>,
    output: &JobsOutput,
) -> anyhow::Result<()> {
    let mut outputs = Outputs::new(fleet_path.filter(|p| !is_std(p)));
    let out_id = output.out.as_deref().map(|path| outputs.plan(path)).transpose()?;
    let fleet = load_fleet(fleet_path)?;
    let base = parse_at(at)?.or(fleet.as_of).unwrap_or_else(Day::today);
    let workload = generate::generate(&fleet, count, seed, base)?;
    // What is written must load back against the fleet it was made for.
    workload.compile(&fleet, &Policy::default(), base)?;
    let format = output.format();
    match out_id {
        Some(id) => outputs.write(vec![(id, jobs_content(workload, format))]),
        None => print_with(|w| write_jobs(&workload, format, w)),
    }
}
