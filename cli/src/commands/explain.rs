//! `gpuplace explain`: places the workload once, then explains the job from that placement.

use crate::args::Inputs;
use crate::commands::prepare;
use crate::output::print;
use crate::render;

pub fn run(inputs: &Inputs, job: &str, json: bool) -> anyhow::Result<()> {
    if inputs.tenants.is_some() {
        // Quotas decide jobs in phases, not in the decision order the explanation replays.
        return Err(gpuplace::InputError::new(
            "command line",
            "--tenants",
            "tenants",
            "explain does not take tenants yet: it explains the decision order without quotas",
        )
        .into());
    }
    let mut prepared = prepare(inputs)?;
    if !prepared.workload.jobs.iter().any(|j| j.id == job) {
        return Err(gpuplace::InputError::new(
            &prepared.workload.source_name,
            format!("job `{job}`"),
            "id",
            "no job has this id in the workload",
        )
        .into());
    }
    let placement = prepared.scheduler.place(&prepared.workload, prepared.at)?;
    let explanation = prepared.scheduler.explain(&prepared.workload, &placement, job)?;
    if json {
        print(&(serde_json::to_string_pretty(&gpuplace::report::Versioned::new(explanation))? + "\n"))
    } else {
        print(&render::explanation(&explanation))
    }
}
