//! `gpuplace import`: public traces into job (and fleet) files. Every file written is validated
//! first, and all of a command's files are written or none.

use std::io::Write;
use std::path::Path;

use gpuplace::import::{AzureOptions, AzureTrace, alibaba_nodes, alibaba_pods, azure};
use gpuplace::model::fleet::FleetFile;
use gpuplace::{Error, Fleet, InputError, JobKind, Policy, Workload};

use crate::args::ImportCommand;
use crate::commands::paths;
use crate::output::{Outputs, print};
use crate::render::note;

fn read(path: &Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.into(), source })?)
}

/// The jobs as a file's text (JSON), after checking they load back, against `fleet` when given.
fn jobs_text(workload: &Workload, fleet: Option<&FleetFile>) -> anyhow::Result<String> {
    if let Some(fleet) = fleet {
        let fleet = Fleet::from_file(fleet.clone(), "<imported fleet>")?;
        let at = fleet.as_of.unwrap_or_else(gpuplace::Day::today);
        workload.compile(&fleet, &Policy::default(), at)?;
    }
    Ok(workload.to_json()? + "\n")
}

pub fn run(command: ImportCommand) -> anyhow::Result<()> {
    match command {
        ImportCommand::Alibaba { pods, nodes, fleet_out, region, out, strict } => {
            let mut outputs = Outputs::new(paths(std::slice::from_ref(&pods)).into_iter().chain(nodes.as_deref()));
            let out_id = out.as_deref().map(|p| outputs.plan(p)).transpose()?;
            let fleet_id = fleet_out.as_deref().map(|p| outputs.plan(p)).transpose()?;
            let (workload, report) = alibaba_pods(&read(&pods)?, &pods.display().to_string(), &region, strict)?;
            note(&format!("{}: {}", pods.display(), report.summary().replace('\n', "\n  ")));
            let fleet = match &nodes {
                Some(nodes) => {
                    let (fleet, report) = alibaba_nodes(&read(nodes)?, &nodes.display().to_string(), strict)?;
                    note(&format!("{}: {}", nodes.display(), report.summary().replace('\n', "\n  ")));
                    Some(fleet)
                }
                None => None,
            };
            let jobs = jobs_text(&workload, fleet.as_ref())?;
            let mut files: Vec<(_, crate::output::Content)> = Vec::new();
            if let (Some(id), Some(fleet)) = (fleet_id, &fleet) {
                let text = serde_json::to_string_pretty(fleet)? + "\n";
                files.push((id, Box::new(move |w: &mut dyn Write| w.write_all(text.as_bytes()))));
            }
            match out_id {
                Some(id) => {
                    files.push((id, Box::new(move |w: &mut dyn Write| w.write_all(jobs.as_bytes()))));
                    outputs.write(files)?;
                }
                None => {
                    outputs.write(files)?;
                    print(&jobs)?;
                }
            }
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
            let out_id = out.as_deref().map(|p| outputs.plan(p)).transpose()?;
            let names: Vec<String> = traces.iter().map(|t| t.display().to_string()).collect();
            let texts = traces.iter().map(|t| read(t)).collect::<anyhow::Result<Vec<_>>>()?;
            let inputs: Vec<AzureTrace> = names
                .iter()
                .zip(&texts)
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
            for (name, report) in names.iter().zip(&reports) {
                note(&format!("{name}: {}", report.summary().replace('\n', "\n  ")));
            }
            let text = jobs_text(&workload, None)?;
            match out_id {
                Some(id) => {
                    outputs.write(vec![(id, Box::new(move |w: &mut dyn Write| w.write_all(text.as_bytes())))])?
                }
                None => print(&text)?,
            }
        }
    }
    Ok(())
}
