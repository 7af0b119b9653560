//! `gpuplace replay`.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use gpuplace::generate::spread_arrivals;
use gpuplace::replay::{ReplayConfig, ReplayDocument, replay, write_replay_jsonl};

use crate::args::{Inputs, OutFormatArg, ReplayArgs};
use crate::commands::{Done, Prepared, input_paths, prepare, print_new_notices, print_text};
use crate::output::{Outputs, write_json};
use crate::progress::Progress;
use crate::render;

/// Like [`prepare`]; a generated workload gets arrivals spread evenly over `--span-h`.
pub fn prepare_replay(inputs: &Inputs, args: &ReplayArgs) -> anyhow::Result<(Prepared, ReplayConfig)> {
    let mut prepared = prepare(inputs)?;
    if inputs.jobs.is_none() {
        spread_arrivals(&mut prepared.workload, args.span_h)?;
    }
    let config = ReplayConfig {
        interval_s: args.interval,
        max_wait_s: args.max_wait,
        start: prepared.scheduler.placement_date(prepared.at),
        preemption: args.preemption,
    };
    config.validate()?;
    Ok((prepared, config))
}

pub fn run(
    inputs: &Inputs,
    args: &ReplayArgs,
    json: Option<(&Path, OutFormatArg)>,
    plot: Option<&Path>,
    fail_on_unplaced: bool,
) -> anyhow::Result<Done> {
    let started = Instant::now();
    let mut outputs = Outputs::new(input_paths(inputs));
    let json_id = json.map(|(path, format)| outputs.plan(path).map(|id| (id, format))).transpose()?;
    let plot_id = plot.map(|path| outputs.plan(path)).transpose()?;
    let stdout_taken = outputs.uses_stdout();
    let (mut prepared, config) = prepare_replay(inputs, args)?;
    let notices_before = prepared.scheduler.notices().len();
    let bar = Progress::new(prepared.workload.jobs.iter().map(|j| j.submit_seconds()).max().unwrap_or(0), "s of trace");
    let report =
        replay(&mut prepared.scheduler, &prepared.workload, config, &mut |t, _| bar.update(t), &mut |_, _, _| {})?;
    bar.finish();
    print_new_notices(&prepared.scheduler.notices()[notices_before..]);
    let mut files = Vec::new();
    if let Some(id) = plot_id {
        let svg = crate::plot::replay_svg(&report, &prepared.workload)?;
        files.push((id, Box::new(move |w: &mut dyn Write| w.write_all(svg.as_bytes())) as crate::output::Content));
    }
    let text = render::replay(&report, &prepared.scheduler.backend().describe(), started.elapsed());
    let rejected = report.kinds.iter().map(|k| k.rejected).sum();
    if let Some((id, format)) = json_id {
        let (fleet, workload) = (prepared.scheduler.fleet().clone(), prepared.workload);
        files.push((
            id,
            Box::new(move |w: &mut dyn Write| {
                let document = ReplayDocument::new(&fleet, &workload, &report);
                match format {
                    OutFormatArg::Json => write_json(w, &document),
                    OutFormatArg::Jsonl => write_replay_jsonl(&document, w),
                }
            }),
        ));
    }
    outputs.write(files)?;
    print_text(&text, stdout_taken)?;
    Ok(Done::unplaced(fail_on_unplaced, rejected))
}
