//! `gpuplace inflate`: the FGD workload-inflation experiment on an openb node and pod list.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use gpuplace::BackendChoice;
use gpuplace::import::read_trace;
use gpuplace::report::Versioned;
use gpuplace::sim::inflate::{Cluster, InflateConfig, NodeBackend, inflate, read_nodes, read_pods};

use crate::commands::print_text;
use crate::output::{Outputs, write_json};
use crate::progress::Progress;
use crate::render::note;

pub fn run(
    nodes_path: &Path,
    pods_path: &Path,
    config: InflateConfig,
    backend: BackendChoice,
    json: Option<&Path>,
    plot: Option<&Path>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut outputs = Outputs::new([nodes_path, pods_path]);
    let json_id = json.map(|path| outputs.plan(path)).transpose()?;
    let plot_id = plot.map(|path| outputs.plan(path)).transpose()?;
    let stdout_taken = outputs.uses_stdout();
    config.validate()?;
    let (nodes_name, pods_name) = (nodes_path.display().to_string(), pods_path.display().to_string());
    let (nodes, models) = read_nodes(&read_trace(nodes_path)?, &nodes_name)?;
    let (pods, specs) = read_pods(&read_trace(pods_path)?, &pods_name, &models)?;
    let cluster = Cluster { nodes, models, pods, specs };
    let (mut scorer, notices) = NodeBackend::open(backend)?;
    for notice in &notices {
        note(notice);
    }
    let bar = Progress::new(0, "pods");
    let report = inflate(&cluster, config, &mut scorer, (&nodes_name, &pods_name), &mut |done, all| {
        bar.set_length(all);
        bar.update(done)
    })?;
    bar.finish();
    let text = crate::render::inflate(&report, started.elapsed());
    let mut files = Vec::new();
    if let Some(id) = plot_id {
        let svg = crate::plot::inflate_svg(&report)?;
        files.push((id, Box::new(move |w: &mut dyn Write| w.write_all(svg.as_bytes())) as crate::output::Content));
    }
    if let Some(id) = json_id {
        let document = Versioned::new(report);
        files.push((id, Box::new(move |w: &mut dyn Write| write_json(w, &document)) as crate::output::Content));
    }
    outputs.write(files)?;
    print_text(&text, stdout_taken)
}
