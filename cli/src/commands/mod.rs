//! One file per command; what they share (loading the inputs, opening the backend) is here.

mod bench;
mod compare;
mod explain;
mod fleet;
mod generate;
mod import;
mod place;
mod replay;

use std::path::{Path, PathBuf};

use gpuplace::model::policy::Preset;
use gpuplace::{Day, Fleet, InputError, Policy, Scheduler, Workload, builtin};

use crate::args::{Command, Inputs};
use crate::render::note;

/// Runs one command.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Place { inputs, out, timings } => place::run(&inputs, out.as_deref(), timings),
        Command::Explain { inputs, job, json } => explain::run(&inputs, &job, json),
        Command::Replay { inputs, replay, json, plot } => {
            replay::run(&inputs, &replay, json.as_deref(), plot.as_deref())
        }
        Command::Compare { inputs, replay, replay_args, json } => {
            compare::run(&inputs, replay, &replay_args, json.as_deref())
        }
        Command::Import(command) => import::run(command),
        Command::Bench { count, racks, seed, k, repeat, no_place, no_single_thread, no_gpu, json, markdown } => {
            let config = gpuplace::sim::bench::BenchConfig {
                jobs: count,
                racks,
                seed,
                k: k as usize,
                repeat,
                place: !no_place,
                single_thread: !no_single_thread,
                command: std::env::args().collect::<Vec<_>>().join(" "),
            };
            bench::run(&config, no_gpu, json.as_deref(), markdown)
        }
        Command::Fleet { fleet, json } => fleet::run(fleet.as_deref(), json),
        Command::Generate { count, seed, fleet, at, out } => {
            generate::run(count, seed, fleet.as_deref(), at.as_deref(), out.as_deref())
        }
    }
}

/// The fleet file, or the built-in fleet.
pub fn load_fleet(path: Option<&Path>) -> anyhow::Result<Fleet> {
    Ok(match path {
        Some(path) => Fleet::from_path(path)?,
        None => builtin::default_fleet(),
    })
}

/// `--at`.
pub fn parse_at(at: Option<&str>) -> anyhow::Result<Option<Day>> {
    at.map(|text| Day::parse(text).map_err(|m| InputError::new("command line", "--at", "at", m).into())).transpose()
}

/// The files `inputs` reads (outputs must not name them).
pub fn input_paths(inputs: &Inputs) -> Vec<&Path> {
    [&inputs.fleet, &inputs.jobs, &inputs.policy].into_iter().filter_map(|p| p.as_deref()).collect()
}

/// What `place`, `explain`, `replay` and `compare` work on.
pub struct Prepared {
    pub scheduler: Scheduler,
    pub workload: Workload,
    pub at: Option<Day>,
}

/// Loads the fleet, the policy and the jobs (or generates them), and opens the backend, printing
/// its notices.
pub fn prepare(inputs: &Inputs) -> anyhow::Result<Prepared> {
    let fleet = load_fleet(inputs.fleet.as_deref())?;
    let policy = match (&inputs.policy, &inputs.policy_preset) {
        (Some(path), _) => Policy::from_path(path)?,
        (None, Some(name)) => Preset::parse(name).expect("clap checked the name").policy(inputs.policy_seed),
        (None, None) => Policy::default(),
    };
    let at = parse_at(inputs.at.as_deref())?;
    let workload = match &inputs.jobs {
        Some(path) => Workload::from_path(path)?,
        None => {
            let base = at.or(fleet.as_of).unwrap_or_else(Day::today);
            gpuplace::generate::generate(&fleet, inputs.count, inputs.seed, base)?
        }
    };
    let scheduler = Scheduler::new(fleet, policy, inputs.backend.choice())?;
    for notice in scheduler.notices() {
        note(notice);
    }
    Ok(Prepared { scheduler, workload, at })
}

/// Prints the notices a run added (a GPU failing over to the CPU).
pub fn print_new_notices(notices: &[String]) {
    for notice in notices {
        note(notice);
    }
}

/// Paths of a list, as `&Path`s.
pub fn paths(list: &[PathBuf]) -> Vec<&Path> {
    list.iter().map(PathBuf::as_path).collect()
}
