//! `gpuplace bench`.

use std::path::Path;

use gpuplace::sim::bench::BenchConfig;

use crate::commands::print_text;
use crate::output::{Outputs, json_content};
use crate::render::{self, note};

pub fn run(config: &BenchConfig, no_gpu: bool, json: Option<&Path>, markdown: bool) -> anyhow::Result<()> {
    config.validate()?;
    let mut outputs = Outputs::new([]);
    let json_id = json.map(|path| outputs.plan(path)).transpose()?;
    let stdout_taken = outputs.uses_stdout();
    let log = &mut |line: &str| note(&format!("bench: {line}"));
    #[cfg(feature = "gpu")]
    let report = {
        let gpu = if no_gpu {
            None
        } else {
            match gpuplace::gpu::GpuScorer::open() {
                Ok(gpu) => Some(gpu),
                Err(e) => {
                    note(&format!("notice: benchmarking without the GPU backend ({e})"));
                    None
                }
            }
        };
        gpuplace::sim::bench::run(config, gpu, log)?
    };
    #[cfg(not(feature = "gpu"))]
    let report = {
        let _ = no_gpu;
        gpuplace::sim::bench::run(config, log)?
    };
    let text = if markdown { render::bench_markdown(&report) } else { render::bench_table(&report) };
    if let Some(id) = json_id {
        outputs.write(vec![(id, json_content(gpuplace::report::Versioned::new(report)))])?;
    }
    print_text(&text, stdout_taken)
}
