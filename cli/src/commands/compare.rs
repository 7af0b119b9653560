//! `gpuplace compare`: every policy preset on one input, through one backend.

use std::path::Path;

use gpuplace::InputError;
use gpuplace::sim::compare::{CompareFile, CompareMode, compare};

use crate::args::{Inputs, ReplayArgs};
use crate::commands::input_paths;
use crate::commands::print_text;
use crate::commands::replay::prepare_replay;
use crate::output::{Outputs, json_content};
use crate::render;

pub fn run(inputs: &Inputs, replay: bool, replay_args: &ReplayArgs, json: Option<&Path>) -> anyhow::Result<()> {
    if inputs.policy_preset.is_some() {
        return Err(InputError::new(
            "command line",
            "--policy-preset",
            "policy-preset",
            "compare runs every preset; give --policy FILE to add a policy of your own",
        )
        .into());
    }
    let mut outputs = Outputs::new(input_paths(inputs));
    let json_id = json.map(|path| outputs.plan(path)).transpose()?;
    let stdout_taken = outputs.uses_stdout();
    let (mut prepared, config) = prepare_replay(inputs, replay_args)?;
    let at = prepared.scheduler.placement_date(prepared.at);
    // A policy file is compared too, first, named after the file (marked, so that a file called
    // `default` is not taken for the preset).
    let custom = inputs.policy.as_ref().map(|path| {
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        (format!("file {name}"), *prepared.scheduler.policy())
    });
    let rows = compare(
        &mut prepared.scheduler,
        &prepared.workload,
        at,
        replay.then_some(config),
        inputs.policy_seed,
        custom.as_ref().map(|(name, policy)| (name.as_str(), *policy)),
    )?;
    let backend = prepared.scheduler.backend().describe();
    let text = format!(
        "{} jobs, {}, backend {backend}\n\n{}",
        prepared.workload.jobs.len(),
        if replay { "replay" } else { "batch" },
        render::compare(&rows, replay)
    );
    if let Some(id) = json_id {
        let mode = if replay { CompareMode::Replay } else { CompareMode::Batch };
        outputs.write(vec![(id, json_content(CompareFile::new(mode, prepared.workload.jobs.len(), backend, rows)))])?;
    }
    print_text(&text, stdout_taken)
}
