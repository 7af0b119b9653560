//! `replay --plot FILE.svg`: GPU utilization per site over time, and queueing delay per job kind.

use gpuplace::replay::{JobFate, ReplayReport};
use gpuplace::{JobKind, Workload};
use plotters::prelude::*;

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// The replay's plot as an SVG document, drawn in memory (written like every other output).
pub fn replay_svg(report: &ReplayReport, workload: &Workload) -> anyhow::Result<String> {
    let mut svg = String::new();
    draw(report, workload, &mut svg)?;
    Ok(svg)
}

fn draw(report: &ReplayReport, workload: &Workload, svg: &mut String) -> anyhow::Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing the plot: {e}");
    let root = SVGBackend::with_string(svg, (1100, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(450);
    let hours = |t: u64| t as f64 / 3600.0;
    let end = report.timeline.last().map_or(1.0, |s| hours(s.t_s)).max(1e-3);
    let start = report.timeline.first().map_or(0.0, |s| hours(s.t_s)).min(end);

    let mut chart = ChartBuilder::on(&top)
        .caption("GPU utilization per site", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(start..end, 0.0..100.0)
        .map_err(|e| err(&e))?;
    chart.configure_mesh().x_desc("trace time (h)").y_desc("GPUs in use (%)").draw().map_err(|e| err(&e))?;
    for (site, name) in report.sites.iter().enumerate() {
        let total = report.site_gpus[site].max(1) as f64;
        let color = COLORS[site % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                report.timeline.iter().map(|s| (hours(s.t_s), s.gpus_used[site] as f64 / total * 100.0)),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| err(&e))?;

    // Mean queueing delay of the jobs that started at each interval, per kind.
    let mut series: Vec<Vec<(f64, f64)>> = vec![Vec::new(); JobKind::ALL.len()];
    let mut by_start: std::collections::BTreeMap<(usize, u64), (f64, u64)> = std::collections::BTreeMap::new();
    for (j, fate) in report.fates.iter().enumerate() {
        if let JobFate::Placed { arrived_s, start_s, .. } = fate {
            let kind = workload.jobs[j].kind.index();
            let entry = by_start.entry((kind, *start_s)).or_default();
            entry.0 += (start_s - arrived_s) as f64 / 60.0;
            entry.1 += 1;
        }
    }
    for ((kind, start_s), (sum, count)) in by_start {
        series[kind].push((hours(start_s), sum / count as f64));
    }
    let max_delay = series.iter().flatten().map(|p| p.1).fold(1.0f64, f64::max) * 1.05;
    let mut chart = ChartBuilder::on(&bottom)
        .caption("Queueing delay per job kind (mean of the jobs starting at each interval)", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(start..end, 0.0..max_delay)
        .map_err(|e| err(&e))?;
    chart.configure_mesh().x_desc("trace time (h)").y_desc("delay (min)").draw().map_err(|e| err(&e))?;
    for (kind, points) in series.into_iter().enumerate() {
        let color = COLORS[(kind + 4) % COLORS.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(JobKind::ALL[kind].name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
