//! `replay --plot FILE.svg`: GPU utilization per site over trace time, and queueing delay per job
//! kind over arrival time, one panel per kind.
//!
//! What the plot must not do, each checked by the tests below: join samples by diagonals (the fleet
//! holds still between the intervals replay processes, so utilization is drawn as steps that hold
//! each value until the next sample), squeeze the arrival window into a corner of the replay's
//! whole span (the delay panels span the arrivals only), put a legend on the data (legends are
//! drawn in a column of their own, right of the charts), reuse the site colours for the kinds, or
//! let an axis label run over the tick labels (values are scaled to a unit that keeps tick labels
//! short, and the label areas are sized for them).

use gpuplace::replay::{JobFate, ReplayReport};
use gpuplace::{JobKind, Workload};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Site colours (Tableau 10).
const SITE_COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Kind colours, in [`JobKind::ALL`] order: dark tones far from every site colour (tested).
const KIND_COLORS: [RGBColor; 4] = [RGBColor(0, 0, 110), RGBColor(110, 0, 80), RGBColor(0, 90, 70), RGBColor(0, 0, 0)];

/// Canvas width, and where the charts end and the legend column begins.
const WIDTH: u32 = 1200;
const LEGEND_X: u32 = 960;
const UTILIZATION_HEIGHT: u32 = 430;
const KIND_HEIGHT: u32 = 190;
/// Time bins of each delay panel.
const DELAY_BINS: usize = 150;

/// A unit of time for an axis: its name and its length in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    pub name: &'static str,
    pub seconds: f64,
}

const UNITS: [Unit; 4] = [
    Unit { name: "s", seconds: 1.0 },
    Unit { name: "min", seconds: 60.0 },
    Unit { name: "h", seconds: 3600.0 },
    Unit { name: "days", seconds: 86_400.0 },
];

/// The largest unit in which `span_s` is at least 4, so that tick labels stay short: 90 s in s,
/// 2 hours in min, 3 days in h, a year in days.
pub fn unit_for(span_s: f64) -> Unit {
    UNITS.iter().rev().copied().find(|u| span_s >= 4.0 * u.seconds).unwrap_or(UNITS[0])
}

/// Each site's utilization (%) as a step line: every sample's value holds until the next sample
/// (replay skips only intervals in which nothing changes), and the last holds to `end_s`.
/// Coordinates are (seconds, percent).
pub fn utilization_steps(report: &ReplayReport, end_s: u64) -> Vec<Vec<(f64, f64)>> {
    (0..report.sites.len())
        .map(|site| {
            let total = report.site_gpus[site].max(1) as f64;
            let mut points = Vec::with_capacity(report.timeline.len() * 2);
            for (i, sample) in report.timeline.iter().enumerate() {
                let value = sample.gpus_used[site] as f64 / total * 100.0;
                let until = report.timeline.get(i + 1).map_or(end_s.max(sample.t_s), |next| next.t_s);
                points.push((sample.t_s as f64, value));
                points.push((until as f64, value));
            }
            points
        })
        .collect()
}

/// One bin of a delay panel: jobs that arrived in [from_s, to_s) and were placed, their mean wait
/// and the 95th percentile (nearest rank), seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DelayBin {
    pub from_s: f64,
    pub to_s: f64,
    pub mean_s: f64,
    pub p95_s: f64,
}

/// Per kind, the waits of the placed jobs that arrived within `window` (seconds), binned by arrival
/// time (bins without a placed job are left out, so nothing is drawn across them).
pub fn delay_bins(report: &ReplayReport, workload: &Workload, window: (u64, u64)) -> Vec<Vec<DelayBin>> {
    let (first, last) = window;
    let width = ((last - first) as f64 / DELAY_BINS as f64).max(1.0);
    let mut waits = vec![vec![Vec::new(); DELAY_BINS]; JobKind::ALL.len()];
    for (j, fate) in report.fates.iter().enumerate() {
        if let JobFate::Placed { arrived_s, start_s, .. } = fate
            && (first..=last).contains(arrived_s)
        {
            let bin = (((arrived_s - first) as f64 / width) as usize).min(DELAY_BINS - 1);
            waits[workload.jobs[j].kind.index()][bin].push(start_s - arrived_s);
        }
    }
    waits
        .into_iter()
        .map(|bins| {
            bins.into_iter()
                .enumerate()
                .filter(|(_, w)| !w.is_empty())
                .map(|(b, mut w)| {
                    w.sort_unstable();
                    let rank = (w.len() * 95).div_ceil(100).max(1) - 1;
                    DelayBin {
                        from_s: first as f64 + b as f64 * width,
                        to_s: first as f64 + (b + 1) as f64 * width,
                        mean_s: w.iter().sum::<u64>() as f64 / w.len() as f64,
                        p95_s: w[rank] as f64,
                    }
                })
                .collect()
        })
        .collect()
}

/// The arrival times the delay panels span, and how many arrivals fall outside. All arrivals,
/// unless the shortest interval holding 80 % of them is less than a third as long (a burst, and
/// some jobs whose `not_before` lies months later): then that interval, so that the burst is not
/// squeezed into a corner, and the caption says how many arrivals are not shown.
pub fn arrival_window(report: &ReplayReport) -> ((u64, u64), usize) {
    let mut arrivals: Vec<u64> = report
        .fates
        .iter()
        .filter_map(|fate| match fate {
            JobFate::Placed { arrived_s, .. } | JobFate::Rejected { arrived_s, .. } => Some(*arrived_s),
            _ => None,
        })
        .collect();
    arrivals.sort_unstable();
    let (Some(&first), Some(&last)) = (arrivals.first(), arrivals.last()) else { return ((0, 0), 0) };
    let keep = (arrivals.len() * 4).div_ceil(5);
    let (start, span) = (0..=arrivals.len() - keep)
        .map(|i| (i, arrivals[i + keep - 1] - arrivals[i]))
        .min_by_key(|&(i, span)| (span, i))
        .expect("at least one window");
    if 3 * span < last - first {
        let window = (arrivals[start], arrivals[start + keep - 1]);
        let outside = arrivals.iter().filter(|&&t| t < window.0 || t > window.1).count();
        (window, outside)
    } else {
        ((first, last), 0)
    }
}

/// A range that is never empty: `[from, to]`, widened to `[from, from + 1 unit]` when it is.
fn nonempty(from: f64, to: f64, unit: f64) -> std::ops::Range<f64> {
    if to > from { from..to } else { from..from + unit }
}

/// The tick label of `value` on an axis spanning `span` units: whole numbers from a span of 10 up,
/// else one decimal (plotters puts ticks at halves on short spans; whole numbers would repeat).
fn tick(value: f64, span: f64) -> String {
    if span >= 10.0 { format!("{value:.0}") } else { format!("{value:.1}") }
}

/// A round upper bound for a y axis that shows `max`: 1, 2 or 5 times a power of ten.
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * power).find(|&v| v >= max).unwrap_or(10.0 * power)
}

/// The replay's plot as an SVG document, drawn in memory (written like every other output).
pub fn replay_svg(report: &ReplayReport, workload: &Workload) -> anyhow::Result<String> {
    let mut svg = String::new();
    draw(report, workload, &mut svg).map_err(|e| anyhow::anyhow!("drawing the plot: {e}"))?;
    Ok(svg)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(report: &ReplayReport, workload: &Workload, svg: &mut String) -> DrawResult {
    let height = UTILIZATION_HEIGHT + KIND_HEIGHT * JobKind::ALL.len() as u32;
    let root = SVGBackend::with_string(svg, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (charts, legend) = root.split_horizontally(LEGEND_X);
    let (top, bottom) = charts.split_vertically(UTILIZATION_HEIGHT);
    let (legend_top, legend_bottom) = legend.split_vertically(UTILIZATION_HEIGHT);
    draw_utilization(report, &top, &legend_top)?;
    draw_delays(report, workload, &bottom, &legend_bottom)?;
    root.present()?;
    Ok(())
}

fn draw_utilization(
    report: &ReplayReport,
    area: &DrawingArea<SVGBackend, Shift>,
    legend: &DrawingArea<SVGBackend, Shift>,
) -> DrawResult {
    let start_s = report.timeline.first().map_or(0, |s| s.t_s);
    let end_s = report.timeline.last().map_or(0, |s| s.t_s);
    let unit = unit_for((end_s - start_s) as f64);
    let steps = utilization_steps(report, end_s);
    let peak = steps.iter().flatten().map(|p| p.1).fold(0.0f64, f64::max);
    let y_max = nice_ceiling(peak * 1.05).min(100.0);
    let x = nonempty(start_s as f64 / unit.seconds, end_s as f64 / unit.seconds, 1.0);
    let x_span = x.end - x.start;
    let mut chart = ChartBuilder::on(area)
        .caption("GPU utilization per site", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc(format!("trace time ({})", unit.name))
        .y_desc("GPUs in use (%)")
        .x_label_formatter(&|v| tick(*v, x_span))
        .y_label_formatter(&|v| tick(*v, y_max))
        .draw()?;
    for (site, points) in steps.into_iter().enumerate() {
        let color = SITE_COLORS[site % SITE_COLORS.len()];
        let scaled = points.into_iter().map(|(t, v)| (t / unit.seconds, v));
        chart.draw_series(LineSeries::new(scaled, color.stroke_width(2)))?;
    }
    // The legend, in its own column: one line per site.
    legend.draw(&Text::new("sites", (10, 40), ("sans-serif", 16).into_font().style(FontStyle::Bold)))?;
    for (site, name) in report.sites.iter().enumerate() {
        let color = SITE_COLORS[site % SITE_COLORS.len()];
        let y = 64 + 20 * site as i32;
        legend.draw(&PathElement::new(vec![(10, y), (34, y)], color.stroke_width(3)))?;
        legend.draw(&Text::new(name.clone(), (40, y - 7), ("sans-serif", 14)))?;
    }
    Ok(())
}

fn draw_delays(
    report: &ReplayReport,
    workload: &Workload,
    area: &DrawingArea<SVGBackend, Shift>,
    legend: &DrawingArea<SVGBackend, Shift>,
) -> DrawResult {
    let (window, outside) = arrival_window(report);
    let x_unit = unit_for((window.1 - window.0) as f64);
    let bins = delay_bins(report, workload, window);
    let panels = area.split_evenly((JobKind::ALL.len(), 1));
    let notes = legend.split_evenly((JobKind::ALL.len(), 1));
    for (k, kind) in JobKind::ALL.iter().enumerate() {
        let color = KIND_COLORS[k];
        let peak = bins[k].iter().map(|b| b.p95_s.max(b.mean_s)).fold(0.0f64, f64::max);
        let y_unit = unit_for(peak);
        let y_max = nice_ceiling(peak / y_unit.seconds * 1.05);
        let x = nonempty(window.0 as f64 / x_unit.seconds, window.1 as f64 / x_unit.seconds, 1.0);
        let x_span = x.end - x.start;
        let caption = match (k, outside) {
            (0, 0) => format!("Queueing delay per job kind, by arrival time: {}", kind.name()),
            (0, n) => format!(
                "Queueing delay per job kind, by arrival time (80 % of arrivals; {n} others not shown): {}",
                kind.name()
            ),
            _ => kind.name().to_string(),
        };
        let mut chart = ChartBuilder::on(&panels[k])
            .caption(caption, ("sans-serif", 17))
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(70)
            .build_cartesian_2d(x, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc(format!("arrival time ({})", x_unit.name))
            .y_desc(format!("wait ({})", y_unit.name))
            .x_label_formatter(&|v| tick(*v, x_span))
            .y_label_formatter(&|v| tick(*v, y_max))
            .y_labels(5)
            .draw()?;
        let scale = |b: &DelayBin, y: f64| ((b.from_s / x_unit.seconds, y), (b.to_s / x_unit.seconds, y));
        // The 95th-percentile wait of each bin as a pale bar, the mean as a dark step over the bin.
        chart.draw_series(bins[k].iter().map(|b| {
            let (from, to) = scale(b, b.p95_s / y_unit.seconds);
            Rectangle::new([(from.0, 0.0), to], color.mix(0.18).filled())
        }))?;
        chart.draw_series(bins[k].iter().map(|b| {
            let (from, to) = scale(b, b.mean_s / y_unit.seconds);
            PathElement::new(vec![from, to], color.stroke_width(2))
        }))?;
        let kind_report = &report.kinds[k];
        let lines = [
            kind.name().to_string(),
            format!("{} placed, {} rejected", kind_report.placed, kind_report.rejected),
            format!("p95 wait {} s", kind_report.delay_p95_s),
            "line: mean, bar: 95th percentile".to_string(),
        ];
        for (i, line) in lines.iter().enumerate() {
            let style = if i == 0 {
                ("sans-serif", 15).into_font().style(FontStyle::Bold).color(&color)
            } else {
                ("sans-serif", 13).into_font().color(&BLACK)
            };
            notes[k].draw(&Text::new(line.clone(), (10, 30 + 18 * i as i32), style))?;
        }
    }
    Ok(())
}

/// Published allocation at 100% arrived on openb_pod_list_default, mean of 10 seeds
/// (hkust-adsl/kubernetes-scheduler-simulator, experiments/analysis/expected_results).
pub const PUBLISHED_AT_100: [(&str, f64); 6] = [
    ("FGD", 95.23),
    ("BestFit", 92.86),
    ("GpuPacking", 91.78),
    ("GpuClustering", 91.65),
    ("DotProd", 90.62),
    ("Random", 86.30),
];

/// `inflate --plot FILE.svg`: GPU capacity allocated against the arrived workload, with the
/// diagonal (everything that arrived was placed) and the published values at 100% as marks.
pub fn inflate_svg(report: &gpuplace::sim::inflate::InflateReport) -> anyhow::Result<String> {
    let mut svg = String::new();
    draw_inflate(report, &mut svg).map_err(|e| anyhow::anyhow!("drawing the plot: {e}"))?;
    Ok(svg)
}

fn draw_inflate(report: &gpuplace::sim::inflate::InflateReport, svg: &mut String) -> DrawResult {
    let root = SVGBackend::with_string(svg, (WIDTH, 860)).into_drawing_area();
    root.fill(&WHITE)?;
    let (area, legend) = root.split_horizontally(LEGEND_X);
    let (whole, zoom) = area.split_vertically(430);
    let x_max = report.curve.last().map_or(100, |p| p.arrived_pct).max(1) as f64;
    // The whole curve, then the part where the policies differ (85–100% allocated).
    let title = format!("GPU allocation under workload inflation ({}, seed {})", report.preset.name(), report.seed);
    draw_inflate_panel(report, &whole, &title, (0.0, x_max), (0.0, 100.0))?;
    let zoom_x = (85.0f64.min(x_max - 1.0).max(0.0), x_max);
    draw_inflate_panel(report, &zoom, "the same, from 85% arrived", zoom_x, (85.0, 100.0))?;
    legend.draw(&Text::new("this run", (10, 40), ("sans-serif", 16).into_font().style(FontStyle::Bold)))?;
    legend.draw(&PathElement::new(vec![(10, 64), (34, 64)], SITE_COLORS[0].stroke_width(3)))?;
    let at_100 = report.allocated_at(100).map_or("-".into(), |v| format!("{v:.2}% at 100%"));
    legend.draw(&Text::new(format!("{} {at_100}", report.preset.name()), (40, 57), ("sans-serif", 14)))?;
    legend.draw(&Text::new("published at 100%", (10, 100), ("sans-serif", 16).into_font().style(FontStyle::Bold)))?;
    legend.draw(&Text::new("(mean of 10 seeds)", (10, 118), ("sans-serif", 13)))?;
    for (i, (name, value)) in PUBLISHED_AT_100.iter().enumerate() {
        let color = SITE_COLORS[(i + 1) % SITE_COLORS.len()];
        let y = 144 + 20 * i as i32;
        legend.draw(&Cross::new((22, y), 5, color.stroke_width(2)))?;
        legend.draw(&Text::new(format!("{name} {value:.2}"), (40, y - 7), ("sans-serif", 14)))?;
    }
    root.present()?;
    Ok(())
}

fn draw_inflate_panel(
    report: &gpuplace::sim::inflate::InflateReport,
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    x: (f64, f64),
    y: (f64, f64),
) -> DrawResult {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)?;
    chart
        .configure_mesh()
        .x_desc("GPU request arrived (% of capacity)")
        .y_desc("GPU capacity allocated (%)")
        .x_label_formatter(&|v| tick(*v, x.1 - x.0))
        .y_label_formatter(&|v| tick(*v, y.1 - y.0))
        .draw()?;
    // The diagonal: everything that arrived was placed.
    let grey = RGBColor(170, 170, 170);
    let diagonal = [(x.0, x.0), (x.1.min(100.0), x.1.min(100.0))];
    chart.draw_series(LineSeries::new(diagonal, grey.stroke_width(1)))?;
    // Points outside the panel are left out, not pinned to its edge.
    let curve = report
        .curve
        .iter()
        .filter(|p| f64::from(p.arrived_pct) >= x.0 && (y.0..=y.1).contains(&p.allocated_pct))
        .map(|p| (f64::from(p.arrived_pct), p.allocated_pct));
    chart.draw_series(LineSeries::new(curve, SITE_COLORS[0].stroke_width(2)))?;
    if x.1 >= 100.0 {
        for (i, (_, value)) in PUBLISHED_AT_100.iter().enumerate() {
            let color = SITE_COLORS[(i + 1) % SITE_COLORS.len()];
            chart.draw_series(std::iter::once(Cross::new((100.0, *value), 5, color.stroke_width(2))))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpuplace::replay::{ReplayConfig, replay};
    use gpuplace::{BackendChoice, Day, Policy, Scheduler, builtin, generate};

    /// A small replay whose arrivals span two hours while its jobs run for days, and whose fleet
    /// sits idle between bursts.
    fn small_replay() -> (ReplayReport, Workload) {
        let fleet = builtin::default_fleet();
        let at = Day::parse("2026-11-26").unwrap();
        let mut workload = generate::generate(&fleet, 400, 5, at).unwrap();
        generate::spread_arrivals(&mut workload, 2.0).unwrap();
        let mut scheduler = Scheduler::new(fleet, Policy::default(), BackendChoice::Cpu).unwrap();
        let config = ReplayConfig { interval_s: 600, max_wait_s: None, start: at, preemption: false };
        let report = replay(&mut scheduler, &workload, config, &mut |_, _| {}, &mut |_, _, _| {}).unwrap();
        (report, workload)
    }

    #[test]
    fn utilization_is_drawn_in_steps_never_diagonals() {
        let (report, _) = small_replay();
        let end = report.timeline.last().unwrap().t_s;
        let steps = utilization_steps(&report, end);
        assert_eq!(steps.len(), report.sites.len());
        for points in &steps {
            assert!(points.len() >= 4);
            for pair in points.windows(2) {
                let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
                assert!(x0 <= x1, "time goes back: {pair:?}");
                assert!(x0 == x1 || y0 == y1, "a diagonal: {pair:?}");
            }
            assert_eq!(points.last().unwrap().0, end as f64);
        }
        // Between two samples far apart the value holds: the step that leaves a sample ends at the next.
        let gap = report.timeline.windows(2).max_by_key(|w| w[1].t_s - w[0].t_s).unwrap();
        assert!(gap[1].t_s - gap[0].t_s > 3600, "no idle stretch to hold across");
    }

    #[test]
    fn delay_panels_span_the_arrivals_not_the_whole_replay() {
        let (report, workload) = small_replay();
        // The generator gives a tenth of the jobs a `not_before` up to a year away: the panels span
        // the two-hour burst, and say how many arrivals they leave out.
        let (window, outside) = arrival_window(&report);
        assert!(window.1 <= 2 * 3600 && window.1 > 3600, "{window:?}");
        assert!(outside > 0 && outside <= 80, "{outside} of 400 left out");
        let end = report.timeline.last().unwrap().t_s;
        assert!(end > 10 * window.1, "the replay should run far past the arrivals: {end} vs {window:?}");
        let bins = delay_bins(&report, &workload, window);
        assert!(bins.iter().flatten().count() > 10);
        for bin in bins.iter().flatten() {
            assert!(bin.from_s >= window.0 as f64 && bin.to_s <= window.1 as f64 + 1e-6, "{bin:?}");
            assert!(bin.mean_s >= 0.0 && bin.p95_s >= 0.0, "{bin:?}");
        }
        // Without such a tail, every arrival is shown.
        let mut even = report.clone();
        even.fates.retain(|f| matches!(f, JobFate::Placed { arrived_s, .. } if *arrived_s <= 2 * 3600));
        assert_eq!(arrival_window(&even).1, 0);
    }

    #[test]
    fn units_keep_tick_labels_short() {
        assert_eq!(unit_for(90.0).name, "s");
        assert_eq!(unit_for(2.0 * 3600.0).name, "min");
        assert_eq!(unit_for(3.0 * 86_400.0).name, "h");
        assert_eq!(unit_for(365.0 * 86_400.0).name, "days");
        assert_eq!(unit_for(0.0).name, "s");
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(13.0), 20.0);
        assert_eq!(nice_ceiling(480.0), 500.0);
    }

    /// The legend text is drawn right of the charts, never over them, and kind colours are not site
    /// colours.
    #[test]
    fn legends_sit_beside_the_data_in_colours_of_their_own() {
        let (report, workload) = small_replay();
        let svg = replay_svg(&report, &workload).unwrap();
        for name in &report.sites {
            let at = svg.find(&format!("\n{name}\n</text>")).unwrap_or_else(|| panic!("{name} not in the legend"));
            let tag = &svg[svg[..at].rfind("<text").unwrap()..at];
            let x: f64 = tag.split("x=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
            assert!(x >= f64::from(LEGEND_X), "{name} at x = {x}, on the charts");
        }
        // Every kind colour is far from every site colour (Euclidean distance in RGB), and the kinds
        // from one another.
        let distance = |a: RGBColor, b: RGBColor| {
            let d = |x: u8, y: u8| (f64::from(x) - f64::from(y)).powi(2);
            (d(a.0, b.0) + d(a.1, b.1) + d(a.2, b.2)).sqrt()
        };
        for kind in KIND_COLORS {
            for site in SITE_COLORS {
                assert!(distance(kind, site) > 80.0, "{kind:?} is close to {site:?}");
            }
            for other in KIND_COLORS.into_iter().filter(|&o| o != kind) {
                assert!(distance(kind, other) > 80.0, "{kind:?} is close to {other:?}");
            }
        }
        assert_eq!(tick(2.5, 4.0), "2.5");
        assert_eq!(tick(40.0, 150.0), "40");
        assert!(svg.contains("GPU utilization per site") && svg.contains("Queueing delay per job kind"));
    }
}
