//! One file per command; what they share (loading the inputs, opening the backend) is here.

mod bench;
mod compare;
mod explain;
mod fleet;
mod generate;
mod import;
mod inflate;
mod place;
mod replay;
mod schema;
mod serve;

use std::path::{Path, PathBuf};

use gpuplace::model::jobs::JobsFormat;
use gpuplace::model::policy::Preset;
use gpuplace::{Day, Fleet, InputError, Policy, Scheduler, Workload, builtin};

use crate::args::{Command, Inputs, OutFormatArg};
use crate::render::note;

/// How a command that did not fail ended.
pub enum Done {
    /// Everything it was asked for.
    Complete,
    /// Some jobs were not placed, and `--fail-on-unplaced` asked that this be exit code 1.
    SomeUnplaced,
}

impl Done {
    /// `SomeUnplaced` when `fail_on_unplaced` and `unplaced` > 0.
    pub fn unplaced(fail_on_unplaced: bool, unplaced: usize) -> Done {
        if fail_on_unplaced && unplaced > 0 { Done::SomeUnplaced } else { Done::Complete }
    }
}

/// Runs one command.
pub fn run(command: Command) -> anyhow::Result<Done> {
    let complete = |result: anyhow::Result<()>| result.map(|()| Done::Complete);
    match command {
        Command::Place { inputs, out, out_format, timings, fail_on_unplaced } => {
            let out = out.as_deref().map(|path| (path, OutFormatArg::choose(out_format, path)));
            place::run(&inputs, out, timings, fail_on_unplaced)
        }
        Command::Explain { inputs, job, json } => complete(explain::run(&inputs, &job, json)),
        Command::Replay { inputs, replay, json, out_format, plot, fail_on_unplaced } => {
            let json = json.as_deref().map(|path| (path, OutFormatArg::choose(out_format, path)));
            replay::run(&inputs, &replay, json, plot.as_deref(), fail_on_unplaced)
        }
        Command::Compare { inputs, replay, replay_args, json } => {
            complete(compare::run(&inputs, replay, &replay_args, json.as_deref()))
        }
        Command::Import(command) => complete(import::run(command)),
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
            complete(bench::run(&config, no_gpu, json.as_deref(), markdown))
        }
        Command::Inflate { nodes, pods, tune, seed, policy_preset, backend, json, plot } => {
            let preset =
                gpuplace::sim::inflate::InflatePreset::from_name(&policy_preset).expect("clap checked the name");
            let config = gpuplace::sim::inflate::InflateConfig { tune_permille: tune, seed, preset };
            complete(inflate::run(&nodes, &pods, config, backend.choice(), json.as_deref(), plot.as_deref()))
        }
        Command::Fleet { fleet, json } => complete(fleet::run(fleet.as_deref(), json)),
        Command::Generate { count, seed, fleet, at, output } => {
            complete(generate::run(count, seed, fleet.as_deref(), at.as_deref(), &output))
        }
        Command::Serve {
            fleet,
            policy,
            policy_preset,
            state,
            listen,
            token_file,
            batch_window_ms,
            backend,
            preemption,
            tenants,
            kube_api,
            kube_token_file,
            kube_sync_s,
        } => complete(serve::run(serve::ServeArgs {
            fleet: fleet.as_deref(),
            policy: policy.as_deref(),
            policy_preset: policy_preset.as_deref(),
            state: &state,
            listen: &listen,
            token_file: token_file.as_deref(),
            batch_window_ms,
            backend,
            preemption,
            tenants: tenants.as_deref(),
            kube_api: kube_api.as_deref(),
            kube_token_file: kube_token_file.as_deref(),
            kube_sync_s,
        })),
        Command::Submit { file, server } => complete(serve::submit(&file, &server)),
        Command::Status { id, explain, state_filter, after, limit, server } => {
            complete(serve::status(id.as_deref(), explain, state_filter.as_deref(), after, limit, &server))
        }
        Command::Finish { id, server } => complete(serve::finish(&id, &server)),
        Command::Load {
            in_system,
            keep_placed,
            requests,
            clients,
            rate,
            varied,
            batch,
            batch_window_ms,
            backend,
            json,
        } => {
            let config = gpuplace_serve::load::LoadConfig {
                in_system: in_system as usize,
                keep_placed: keep_placed as usize,
                requests: requests as usize,
                clients: clients as usize,
                batch: batch as usize,
                window: std::time::Duration::from_millis(batch_window_ms),
                backend: backend.choice(),
                rate: rate.map(|r| r as f64),
                varied,
            };
            complete(serve::load(&config, json.as_deref()))
        }
        Command::Schema { name } => complete(schema::run(name.as_deref())),
        Command::Policy { preset, seed } => {
            let preset = Preset::parse(&preset).expect("clap checked the name");
            complete(crate::output::print(&(preset.policy(seed).to_json() + "\n")))
        }
    }
}

/// `-`, which names standard input (or output).
pub fn is_std(path: &Path) -> bool {
    path == Path::new("-")
}

/// How standard input is named in errors.
pub const STDIN_NAME: &str = "<stdin>";

/// Refuses more than one input read from standard input.
pub fn stdin_once<'a>(paths: impl IntoIterator<Item = &'a Path>) -> anyhow::Result<()> {
    if paths.into_iter().filter(|p| is_std(p)).count() > 1 {
        return Err(InputError::new(
            "command line",
            "-",
            "(input)",
            "standard input can be read once: only one input may be `-`",
        )
        .into());
    }
    Ok(())
}

/// The fleet file (`-`: standard input), or the built-in fleet.
pub fn load_fleet(path: Option<&Path>) -> anyhow::Result<Fleet> {
    Ok(match path {
        Some(path) if is_std(path) => Fleet::from_reader(std::io::stdin().lock(), STDIN_NAME)?,
        Some(path) => Fleet::from_path(path)?,
        None => builtin::default_fleet(),
    })
}

/// `--at`.
pub fn parse_at(at: Option<&str>) -> anyhow::Result<Option<Day>> {
    at.map(|text| Day::parse(text).map_err(|m| InputError::new("command line", "--at", "at", m).into())).transpose()
}

/// The files `inputs` reads (outputs must not name them); not standard input.
pub fn input_paths(inputs: &Inputs) -> Vec<&Path> {
    [&inputs.fleet, &inputs.jobs, &inputs.policy, &inputs.tenants]
        .into_iter()
        .filter_map(|p| p.as_deref())
        .filter(|p| !is_std(p))
        .collect()
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
    stdin_once([&inputs.fleet, &inputs.jobs, &inputs.policy].into_iter().filter_map(|p| p.as_deref()))?;
    let fleet = load_fleet(inputs.fleet.as_deref())?;
    let policy = match (&inputs.policy, &inputs.policy_preset) {
        (Some(path), _) if is_std(path) => Policy::from_reader(std::io::stdin().lock(), STDIN_NAME)?,
        (Some(path), _) => Policy::from_path(path)?,
        (None, Some(name)) => Preset::parse(name).expect("clap checked the name").policy(inputs.policy_seed),
        (None, None) => Policy::default(),
    };
    let at = parse_at(inputs.at.as_deref())?;
    let format = inputs.jobs_format.map(|f| f.format());
    let workload = match &inputs.jobs {
        Some(path) if is_std(path) => Workload::from_reader(std::io::stdin().lock(), STDIN_NAME, format)?,
        Some(path) => Workload::from_path_as(path, format)?,
        None => {
            let base = at.or(fleet.as_of).unwrap_or_else(Day::today);
            gpuplace::generate::generate(&fleet, inputs.count, inputs.seed, base)?
        }
    };
    let tenants = inputs.tenants.as_deref().map(gpuplace::Tenants::from_path).transpose()?;
    if let Some(tenants) = &tenants {
        // Every job must have a tenant: said now, before opening a device, naming the job.
        tenants.tenants_of(&workload)?;
    }
    let mut scheduler = Scheduler::new(fleet, policy, inputs.backend.choice())?;
    scheduler.set_tenants(tenants)?;
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

/// Paths of a list, as `&Path`s (standard input left out).
pub fn paths(list: &[PathBuf]) -> Vec<&Path> {
    list.iter().map(PathBuf::as_path).filter(|p| !is_std(p)).collect()
}

/// The format to write jobs in: as asked, else as the output's name says, else JSON.
pub fn output_format(asked: Option<JobsFormat>, out: Option<&Path>) -> JobsFormat {
    asked.or_else(|| out.and_then(JobsFormat::of_path)).unwrap_or(JobsFormat::Json)
}

/// Prints the command's text to standard output, or to standard error when an output took
/// standard output.
pub fn print_text(text: &str, stdout_taken: bool) -> anyhow::Result<()> {
    if stdout_taken {
        crate::render::note(text.trim_end());
        Ok(())
    } else {
        crate::output::print(text)
    }
}
