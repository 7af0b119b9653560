//! `gpuplace import`: public traces into job (and fleet) files. Every file written is validated
//! first, and all of a command's files are written or none. What each trace gave is printed only
//! once everything succeeded, so that a failure is one line.

use std::io::Write;

use gpuplace::import::{AzureOptions, AzureTrace, alibaba_nodes, alibaba_pods, azure, read_trace};
use gpuplace::model::fleet::FleetFile;
use gpuplace::{Fleet, InputError, JobKind, Policy, Workload};

use crate::args::ImportCommand;
use crate::commands::paths;
use crate::output::{Content, Outputs, is_csv, jobs_content, print_with};
use crate::render::note;

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

/// Writes the jobs to `--out` (CSV for a `.csv` name, else JSON) or prints them as JSON, with the
/// other files, then the notes.
fn finish(
    outputs: Outputs,
    mut files: Vec<(crate::output::OutputId, Content)>,
    out: Option<(crate::output::OutputId, bool)>,
    workload: Workload,
    notes: Vec<String>,
) -> anyhow::Result<()> {
    match out {
        Some((id, csv)) => {
            files.push((id, jobs_content(workload, csv)));
            outputs.write(files)?;
        }
        None => {
            outputs.write(files)?;
            print_with(|w| workload.write_json(w))?;
        }
    }
    for line in notes {
        note(&line);
    }
    Ok(())
}

pub fn run(command: ImportCommand) -> anyhow::Result<()> {
    match command {
        ImportCommand::Alibaba { pods, nodes, fleet_out, region, out, strict } => {
            let mut outputs = Outputs::new(paths(std::slice::from_ref(&pods)).into_iter().chain(nodes.as_deref()));
            let out_id = out.as_deref().map(|p| outputs.plan(p).map(|id| (id, is_csv(p)))).transpose()?;
            let fleet_id = fleet_out.as_deref().map(|p| outputs.plan(p)).transpose()?;
            let (workload, report) = alibaba_pods(read_trace(&pods)?, &pods.display().to_string(), &region, strict)?;
            let mut notes = vec![format!("{}: {}", pods.display(), report.summary().replace('\n', "\n  "))];
            let fleet = match &nodes {
                Some(nodes) => {
                    let (fleet, report) = alibaba_nodes(read_trace(nodes)?, &nodes.display().to_string(), strict)?;
                    notes.push(format!("{}: {}", nodes.display(), report.summary().replace('\n', "\n  ")));
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
                        serde_json::to_writer_pretty(&mut *w, &fleet)?;
                        w.write_all(b"\n")
                    }),
                ));
            }
            finish(outputs, files, out_id, workload, notes)
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
            out,
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
            let mut outputs = Outputs::new(paths(&traces));
            let out_id = out.as_deref().map(|p| outputs.plan(p).map(|id| (id, is_csv(p)))).transpose()?;
            let names: Vec<String> = traces.iter().map(|t| t.display().to_string()).collect();
            let data = traces.iter().map(read_trace).collect::<gpuplace::Result<Vec<_>>>()?;
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
            finish(outputs, Vec::new(), out_id, workload, notes)
        }
    }
}
