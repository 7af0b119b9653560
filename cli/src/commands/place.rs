//! `gpuplace place`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use gpuplace::report::out::write_jsonl;
use gpuplace::report::out_file;

use crate::args::{Inputs, OutFormatArg};
use crate::commands::{Done, input_paths, prepare, print_new_notices, print_text};
use crate::output::{Outputs, write_json};
use crate::progress::Progress;
use crate::render;

pub fn run(
    inputs: &Inputs,
    out: Option<(&Path, OutFormatArg)>,
    timings: bool,
    fail_on_unplaced: bool,
) -> anyhow::Result<Done> {
    let started = Instant::now();
    let mut outputs = Outputs::new(input_paths(inputs));
    let out_id = out.map(|(path, format)| outputs.plan(path).map(|id| (id, format))).transpose()?;
    let stdout_taken = outputs.uses_stdout();
    let mut prepared = prepare(inputs)?;
    let loaded = started.elapsed();
    let bar = Progress::new(prepared.workload.jobs.len() as u64, "jobs decided");
    let placement = prepared
        .scheduler
        .place_with_progress(&prepared.workload, prepared.at, &mut |done, _| bar.update(done as u64))?;
    bar.finish();
    print_new_notices(&placement.notices);
    let output_started = Instant::now();
    let document = Arc::new(out_file(prepared.scheduler.fleet(), &prepared.workload, &placement));
    if let Some((id, format)) = out_id {
        let streamed = Arc::clone(&document);
        outputs.write(vec![(
            id,
            Box::new(move |w: &mut dyn Write| match format {
                OutFormatArg::Json => write_json(w, &*streamed),
                OutFormatArg::Jsonl => write_jsonl(&streamed, w),
            }),
        )])?;
    }
    let output = output_started.elapsed();
    let mut text = render::summary(&document, &placement, started.elapsed());
    if let Some(tenants) = prepared.scheduler.tenants() {
        text.push_str(&render::tenants(tenants, prepared.scheduler.tenant_held_milli()));
    }
    text.push('\n');
    if timings {
        let source = if inputs.jobs.is_some() {
            "load inputs (fleet, policy, jobs)"
        } else {
            "load fleet and policy, generate jobs"
        };
        let t = &placement.timings;
        text.push_str("\ntimings:\n");
        for (phase, time) in [
            (source, loaded),
            ("validate and compile jobs", t.compile),
            ("score (backend)", t.score),
            ("commit (host)", t.commit),
            ("report and --out", output),
        ] {
            text.push_str(&format!("  {phase:<38} {:>9.3} s\n", time.as_secs_f64()));
        }
    }
    print_text(&text, stdout_taken)?;
    Ok(Done::unplaced(fail_on_unplaced, document.summary.unplaced))
}
