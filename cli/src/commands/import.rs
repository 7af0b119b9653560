//! `gpuplace import`: public traces into job (and fleet) files. Every file written is validated
//! first, and all of a command's files are written or none. What each trace gave is printed only
//! once everything succeeded, so that a failure is one line.

use std::io::Write;

use std::path::Path;

use gpuplace::import::{AzureOptions, AzureTrace, alibaba_nodes, alibaba_pods, azure, read_trace, read_trace_from};
use gpuplace::model::fleet::FleetFile;
use gpuplace::model::jobs::JobsFormat;
use gpuplace::{Fleet, InputError, JobKind, Policy, Workload};

use crate::args::ImportCommand;
use crate::commands::{STDIN_NAME, is_std, paths, stdin_once};
use crate::output::{Content, Outputs, jobs_content, print_with, write_jobs};
use crate::render::note;

/// A trace's bytes, from its file or (`-`) standard input.
fn read(path: &Path) -> gpuplace::Result<Vec<u8>> {
    if is_std(path) { read_trace_from(std::io::stdin().lock(), STDIN_NAME) } else { read_trace(path) }
}

/// How a trace is named in errors and notes.
fn name(path: &Path) -> String {
    if is_std(path) { STDIN_NAME.to_string() } else { path.display().to_string() }
}

/// Checks that the jobs load back, against `fleet` when given.
fn check_jobs(workload: &Workload, fleet: Option<&FleetFile>) -> anyhow::Result<()> {
    workload.validate()?;
    if let Some(fleet) = fleet {
        let fleet = Fleet::from_file(fleet.clone(), "<imported fleet>")?;
        let at = fleet.as_of.unwrap_or_else(gpuplace::Day::today);
        workload.compile(&fleet, &Policy::default(), at)?;
    }
    Ok(())
}

/// Writes the jobs to `--out` or prints them, in `format`, with the other files, then the notes.
fn finish(
    outputs: Outputs,
    mut files: Vec<(crate::output::OutputId, Content)>,
    out: Option<crate::output::OutputId>,
    format: JobsFormat,
    workload: Workload,
    notes: Vec<String>,
) -> anyhow::Result<()> {
    match out {
        Some(id) => {
            files.push((id, jobs_content(workload, format)));
            outputs.write(files)?;
        }
        None => {
            outputs.write(files)?;
            print_with(|w| write_jobs(&workload, format, w))?;
        }
    }
    for line in notes {
        note(&line);
    }
    Ok(())
}

pub fn run(command: ImportCommand) -> anyhow::Result<()> {
    match command {
        ImportCommand::Alibaba { pods, nodes, fleet_out, region, output, strict } => {
            stdin_once(std::iter::once(pods.as_path()).chain(nodes.as_deref()))?;
            let mut outputs = Outputs::new(
                paths(std::slice::from_ref(&pods)).into_iter().chain(nodes.as_deref().filter(|p| !is_std(p))),
            );
            let out_id = output.out.as_deref().map(|p| outputs.plan(p)).transpose()?;
            let fleet_id = fleet_out.as_deref().map(|p| outputs.plan(p)).transpose()?;
            let format = output.format();
            let (workload, report) = alibaba_pods(read(&pods)?, &name(&pods), &region, strict)?;
            let mut notes = vec![format!("{}: {}", name(&pods), report.summary().replace('\n', "\n  "))];
            let fleet = match &nodes {
                Some(nodes) => {
                    let (fleet, report) = alibaba_nodes(read(nodes)?, &name(nodes), strict)?;
                    notes.push(format!("{}: {}", name(nodes), report.summary().replace('\n', "\n  ")));
                    Some(fleet)
                }
                None => None,
            };
            check_jobs(&workload, fleet.as_ref())?;
            let mut files: Vec<(_, Content)> = Vec::new();
            if let (Some(id), Some(fleet)) = (fleet_id, fleet) {
                files.push((
                    id,
                    Box::new(move |w: &mut dyn Write| {
                        w.write_all(fleet.to_json().as_bytes())?;
                        w.write_all(b"\n")
                    }),
                ));
            }
            finish(outputs, files, out_id, format, workload, notes)
        }
        ImportCommand::Azure {
            traces,
            kind,
            window_s,
            prefill_tokens_per_gpu_s,
            decode_tokens_per_gpu_s,
            replica_gpus,
            utilization,
            scale,
            region,
            max_latency_ms,
            hbm_gb,
            output,
            strict,
        } => {
            let options = AzureOptions {
                window_s,
                prefill_tokens_per_gpu_s,
                decode_tokens_per_gpu_s,
                replica_gpus,
                utilization,
                scale,
                region,
                max_latency_ms,
                hbm_gb_per_gpu: hbm_gb,
            };
            options.validate("command line")?;
            let kind = kind
                .as_deref()
                .map(|text| {
                    JobKind::parse(text).ok_or_else(|| {
                        InputError::new("command line", "--kind", "kind", format!("unknown kind `{text}`"))
                    })
                })
                .transpose()?;
            stdin_once(traces.iter().map(|t| t.as_path()))?;
            let mut outputs = Outputs::new(paths(&traces));
            let out_id = output.out.as_deref().map(|p| outputs.plan(p)).transpose()?;
            let format = output.format();
            let names: Vec<String> = traces.iter().map(|t| name(t)).collect();
            let data = traces.iter().map(|t| read(t)).collect::<gpuplace::Result<Vec<_>>>()?;
            let inputs: Vec<AzureTrace> = names
                .iter()
                .zip(&data)
                .map(|(name, text)| AzureTrace {
                    text,
                    source_name: name,
                    // The code trace drives agents; the conversation trace, chat.
                    kind: kind.unwrap_or(if name.to_lowercase().contains("code") {
                        JobKind::Agentic
                    } else {
                        JobKind::Inference
                    }),
                })
                .collect();
            let (workload, reports) = azure(&inputs, &options, strict)?;
            let notes = names
                .iter()
                .zip(&reports)
                .map(|(name, report)| format!("{name}: {}", report.summary().replace('\n', "\n  ")))
                .collect();
            check_jobs(&workload, None)?;
            finish(outputs, Vec::new(), out_id, format, workload, notes)
        }
    }
}
