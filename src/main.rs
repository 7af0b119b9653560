//! The `gpuplace` command: a thin layer over the library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use gpuplace::policy::Preset;
use gpuplace::{BackendChoice, Day, Fleet, Policy, Scheduler, Workload, builtin, generate, report};

#[derive(Parser)]
#[command(name = "gpuplace", version, about = "GPU-accelerated placement of AI jobs onto GB300 NVL72 fleets")]
#[command(after_help = "Examples:
  gpuplace place                              # built-in fleet, 10000 generated jobs
  gpuplace place --jobs jobs.csv --out placements.json
  gpuplace explain --job training-0042
  gpuplace fleet --json > fleet.json
  gpuplace generate --count 1000 --seed 7 --out jobs.json")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Place jobs onto the fleet and print a summary.
    #[command(after_help = "Examples:
  gpuplace place
  gpuplace place --count 100000 --seed 3 --backend cpu
  gpuplace place --fleet fleet.json --jobs jobs.json --policy policy.json --at 2026-12-01 --out out.json")]
    Place {
        #[command(flatten)]
        inputs: Inputs,
        /// Write placements, unplaced jobs and totals to this JSON file.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Print where the time went: generation or parsing, validation, scoring, commit, output.
        #[arg(long)]
        timings: bool,
    },
    /// Replay jobs over time: arrivals, completions, waiting, per-interval batch placement.
    #[command(after_help = "Examples:
  gpuplace replay --count 20000 --span-h 48
  gpuplace import alibaba ../shared/traces/alibaba-gpu-v2023/openb_pod_list_default.csv \\
      --nodes ../shared/traces/alibaba-gpu-v2023/openb_node_list_gpu_node.csv --fleet-out openb-fleet.json --out openb-jobs.json
  gpuplace replay --fleet openb-fleet.json --jobs openb-jobs.json --interval 600 --json replay.json --plot replay.svg")]
    Replay {
        #[command(flatten)]
        inputs: Inputs,
        #[command(flatten)]
        replay: ReplayArgs,
        /// Write every metric as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Draw GPU utilization per site and queueing delay per kind to this SVG file.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
    },
    /// Run every policy preset (default, first-fit, best-fit, spread, random) on the same input.
    #[command(after_help = "Examples:
  gpuplace compare --count 20000
  gpuplace compare --fleet openb-fleet.json --jobs openb-jobs.json --replay --interval 600")]
    Compare {
        #[command(flatten)]
        inputs: Inputs,
        /// Replay over time instead of one batch.
        #[arg(long)]
        replay: bool,
        #[command(flatten)]
        replay_args: ReplayArgs,
        /// Write the rows as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Convert a public workload trace into gpuplace jobs (and, for Alibaba, a fleet).
    #[command(subcommand)]
    Import(ImportCommand),
    /// Run every backend on the same generated problem, check they agree, and time them.
    #[command(after_help = "Examples:
  gpuplace bench
  gpuplace bench --count 1000000 --racks 5000 --repeat 1 --json bench.json
  gpuplace bench --count 10000 --racks 1000 --markdown >> BENCHMARKS.md")]
    Bench {
        /// Jobs.
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        /// Racks (the built-in fleet scaled to this many).
        #[arg(long, default_value_t = 4000)]
        racks: usize,
        /// Workload seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Candidates kept per job (1..=16).
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=16))]
        k: u32,
        /// Timed runs per measurement (the fastest is reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Skip end-to-end placement timing.
        #[arg(long)]
        no_place: bool,
        /// Skip the one-thread CPU measurement.
        #[arg(long)]
        no_single_thread: bool,
        /// Skip the GPU backend even when an adapter is present.
        #[arg(long)]
        no_gpu: bool,
        /// Write the report as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Print the report as a Markdown section (for BENCHMARKS.md) instead of a table.
        #[arg(long)]
        markdown: bool,
    },
    /// Show one job's best candidates with every score term, and why other racks were rejected.
    #[command(after_help = "Examples:
  gpuplace explain --job inference-0001
  gpuplace explain --jobs jobs.json --job train-7 --json")]
    Explain {
        #[command(flatten)]
        inputs: Inputs,
        /// The job's id.
        #[arg(long, value_name = "ID")]
        job: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the fleet: a summary table, or the fleet file with --json.
    #[command(after_help = "Examples:
  gpuplace fleet
  gpuplace fleet --json > fleet.json
  gpuplace fleet --fleet my-fleet.json")]
    Fleet {
        /// Fleet JSON file (default: the built-in fleet).
        #[arg(long, value_name = "FILE")]
        fleet: Option<PathBuf>,
        /// Print the fleet in the format --fleet reads.
        #[arg(long)]
        json: bool,
    },
    /// Generate a deterministic, realistic workload.
    #[command(after_help = "Examples:
  gpuplace generate --count 1000 --seed 7 --out jobs.json
  gpuplace generate --count 50 --out jobs.csv")]
    Generate {
        /// Number of jobs.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Fleet whose regions, jurisdictions and providers to use (default: built-in).
        #[arg(long, value_name = "FILE")]
        fleet: Option<PathBuf>,
        /// Date `not_before` values are drawn after (default: the fleet's as_of, else today).
        #[arg(long, value_name = "YYYY-MM-DD")]
        at: Option<String>,
        /// Output file: CSV if it ends in .csv, else JSON (default: JSON on stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Args)]
struct ReplayArgs {
    /// Scheduling interval, seconds of trace time.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    interval: u64,
    /// Reject a job that waited longer than this many seconds.
    #[arg(long, value_name = "SECONDS")]
    max_wait: Option<u64>,
    /// For generated workloads (no --jobs): spread arrivals evenly over this many hours.
    #[arg(long, default_value_t = 24.0)]
    span_h: f64,
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Alibaba GPU trace v2023 ("openb"): pods → jobs, nodes → a fleet.
    #[command(after_help = "Examples:
  gpuplace import alibaba openb_pod_list_default.csv --nodes openb_node_list_gpu_node.csv --fleet-out fleet.json --out jobs.json")]
    Alibaba {
        /// The pod list CSV.
        pods: PathBuf,
        /// The node list CSV, to build a fleet from.
        #[arg(long, value_name = "FILE")]
        nodes: Option<PathBuf>,
        /// Where to write the fleet built from --nodes.
        #[arg(long, value_name = "FILE", requires = "nodes")]
        fleet_out: Option<PathBuf>,
        /// Region to give every job (the imported fleet's is `openb`).
        #[arg(long, default_value = gpuplace::import::ALIBABA_REGION)]
        region: String,
        /// Jobs output (JSON; default stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Fail on the first malformed row instead of skipping and counting it.
        #[arg(long)]
        strict: bool,
    },
    /// Azure LLM inference trace 2023: requests → serving deployments on GB300 racks.
    #[command(after_help = "Examples:
  gpuplace import azure AzureLLMInferenceTrace_conv.csv --scale 1000 --out conv-jobs.json
  gpuplace import azure AzureLLMInferenceTrace_code.csv --replica-gpus 4 --region eu-west")]
    Azure {
        /// Trace CSV files (TIMESTAMP, ContextTokens, GeneratedTokens); their jobs are concatenated.
        #[arg(required = true)]
        traces: Vec<PathBuf>,
        /// Job kind (default per file: agentic for a file named *code*, else inference).
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
        /// Aggregation window, seconds.
        #[arg(long, default_value_t = 300)]
        window_s: u64,
        /// Prompt tokens one GPU prefills per second (assumption).
        #[arg(long, default_value_t = 10_000.0)]
        prefill_tokens_per_gpu_s: f64,
        /// Tokens one GPU generates per second (assumption).
        #[arg(long, default_value_t = 500.0)]
        decode_tokens_per_gpu_s: f64,
        /// GPUs per model replica.
        #[arg(long, default_value_t = 8)]
        replica_gpus: u32,
        /// Target busy fraction of the GPUs.
        #[arg(long, default_value_t = 0.6)]
        utilization: f64,
        /// Multiply the request volume.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Users' region.
        #[arg(long, default_value = "us-east")]
        region: String,
        /// Latency bound, ms.
        #[arg(long, default_value_t = 100)]
        max_latency_ms: u32,
        /// HBM per GPU the model needs, GB.
        #[arg(long, default_value_t = 200)]
        hbm_gb: u32,
        /// Jobs output (JSON; default stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Fail on the first malformed row instead of skipping and counting it.
        #[arg(long)]
        strict: bool,
    },
}

#[derive(Args)]
struct Inputs {
    /// Fleet JSON file (default: the built-in fleet).
    #[arg(long, value_name = "FILE")]
    fleet: Option<PathBuf>,
    /// Jobs file, JSON or CSV by extension (default: a generated workload).
    #[arg(long, value_name = "FILE")]
    jobs: Option<PathBuf>,
    /// Policy JSON file (default: the built-in policy).
    #[arg(long, value_name = "FILE", conflicts_with = "policy_preset")]
    policy: Option<PathBuf>,
    /// A built-in policy: default, first-fit, best-fit, spread or random.
    #[arg(long, value_name = "NAME", value_parser = preset_parser())]
    policy_preset: Option<String>,
    /// Seed of the random term (the `random` preset).
    #[arg(long, default_value_t = 1)]
    policy_seed: u64,
    /// Jobs to generate when --jobs is not given.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Seed of the generated workload.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Placement date (default: the fleet's as_of, else today).
    #[arg(long, value_name = "YYYY-MM-DD")]
    at: Option<String>,
    /// Scoring backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    backend: BackendArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    /// The GPU when an adapter is found, else the CPU.
    Auto,
    /// The CPU on all cores.
    Cpu,
    /// The GPU (fails when there is no adapter).
    Gpu,
}

fn main() -> ExitCode {
    // Like other Unix filters, end quietly when the reader of our output goes away (`| head`)
    // instead of panicking on the failed write.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line: the library's errors already name the file, record and field, and include
            // their causes; wgpu's multi-line diagnostics are folded onto the line.
            let message = error.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn preset_parser() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(Preset::ALL.map(Preset::name))
}

fn load_fleet(path: &Option<PathBuf>) -> anyhow::Result<Fleet> {
    Ok(match path {
        Some(path) => Fleet::from_path(path)?,
        None => builtin::default_fleet(),
    })
}

fn parse_at(at: &Option<String>) -> anyhow::Result<Option<Day>> {
    at.as_deref()
        .map(|text| Day::parse(text).map_err(|m| gpuplace::InputError::new("command line", "--at", "at", m).into()))
        .transpose()
}

fn backend_choice(arg: BackendArg) -> BackendChoice {
    match arg {
        BackendArg::Auto => BackendChoice::Auto,
        BackendArg::Cpu => BackendChoice::Cpu,
        BackendArg::Gpu => BackendChoice::Gpu,
    }
}

/// Like [`prepare`]; a generated workload gets arrivals spread evenly over `--span-h`.
fn prepare_replay(inputs: &Inputs, args: &ReplayArgs) -> anyhow::Result<(Scheduler, Workload, Option<Day>)> {
    let (scheduler, mut workload, at) = prepare(inputs)?;
    if inputs.jobs.is_none() {
        let span_s = (args.span_h.max(0.0) * 3600.0) as u64;
        let count = workload.jobs.len().max(1) as u64;
        for (i, job) in workload.jobs.iter_mut().enumerate() {
            job.submit_s = Some(i as u64 * span_s / count);
        }
    }
    Ok((scheduler, workload, at))
}

fn replay_config(scheduler: &Scheduler, at: Option<Day>, args: &ReplayArgs) -> gpuplace::replay::ReplayConfig {
    gpuplace::replay::ReplayConfig {
        interval_s: args.interval,
        max_wait_s: args.max_wait,
        start: scheduler.placement_date(at),
    }
}

fn run_import(command: ImportCommand) -> anyhow::Result<()> {
    let read =
        |path: &Path| std::fs::read_to_string(path).map_err(|source| gpuplace::Error::Io { path: path.into(), source });
    let write_jobs = |workload: &Workload, out: &Option<PathBuf>| -> anyhow::Result<()> {
        match out {
            Some(path) => write_atomically(path, |w| w.write_all((workload.to_json() + "\n").as_bytes())),
            None => {
                println!("{}", workload.to_json());
                Ok(())
            }
        }
    };
    match command {
        ImportCommand::Alibaba { pods, nodes, fleet_out, region, out, strict } => {
            let (workload, report) =
                gpuplace::import::alibaba_pods(&read(&pods)?, &pods.display().to_string(), &region, strict)?;
            eprintln!("{}: {}", pods.display(), report.summary().replace('\n', "\n  "));
            if let Some(nodes) = nodes {
                let (fleet, report) =
                    gpuplace::import::alibaba_nodes(&read(&nodes)?, &nodes.display().to_string(), strict)?;
                eprintln!("{}: {}", nodes.display(), report.summary().replace('\n', "\n  "));
                // Validate before writing, so a fleet that gpuplace would refuse is never written.
                let validated = Fleet::from_file(fleet, &nodes.display().to_string())?;
                if let Some(path) = &fleet_out {
                    write_atomically(path, |w| w.write_all((validated.to_json() + "\n").as_bytes()))?;
                }
            }
            write_jobs(&workload, &out)?;
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
            let positive = |value: f64, field: &str| -> anyhow::Result<()> {
                if value.is_finite() && value > 0.0 {
                    Ok(())
                } else {
                    Err(gpuplace::InputError::new(
                        "command line",
                        format!("--{field}"),
                        field,
                        format!("{value} must be more than 0"),
                    )
                    .into())
                }
            };
            positive(prefill_tokens_per_gpu_s, "prefill-tokens-per-gpu-s")?;
            positive(decode_tokens_per_gpu_s, "decode-tokens-per-gpu-s")?;
            positive(utilization, "utilization")?;
            positive(scale, "scale")?;
            positive(f64::from(replica_gpus), "replica-gpus")?;
            positive(window_s as f64, "window-s")?;
            let options = gpuplace::import::AzureOptions {
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
            let mut jobs = Vec::new();
            for trace in &traces {
                let name = trace.display().to_string();
                let kind = match kind.as_deref() {
                    Some(text) => gpuplace::JobKind::parse(text).ok_or_else(|| {
                        gpuplace::InputError::new("command line", "--kind", "kind", format!("unknown kind `{text}`"))
                    })?,
                    None if name.to_lowercase().contains("code") => gpuplace::JobKind::Agentic,
                    None => gpuplace::JobKind::Inference,
                };
                let (workload, report) = gpuplace::import::azure(&read(trace)?, &name, kind, &options, strict)?;
                eprintln!("{name}: {}", report.summary().replace('\n', "\n  "));
                jobs.extend(workload.jobs);
            }
            write_jobs(&Workload::from_jobs(jobs, "<azure>"), &out)?;
        }
    }
    Ok(())
}

fn print_replay(report: &gpuplace::replay::ReplayReport, backend: &str, wall: std::time::Duration) {
    println!("{} intervals of {} s replayed", report.intervals, report.interval_s);
    println!(
        "\n{:<12} {:>8} {:>8} {:>9} {:>10} {:>10} {:>10}",
        "kind", "jobs", "placed", "rejected", "p50 (s)", "p95 (s)", "p99 (s)"
    );
    for k in &report.kinds {
        println!(
            "{:<12} {:>8} {:>8} {:>9} {:>10} {:>10} {:>10}",
            k.kind.name(),
            k.jobs,
            k.placed,
            k.rejected,
            k.delay_p50_s,
            k.delay_p95_s,
            k.delay_p99_s
        );
    }
    let peak = |site: usize| report.timeline.iter().map(|s| s.gpus_used[site]).max().unwrap_or(0);
    let peak_mw = |site: usize| report.timeline.iter().map(|s| s.it_mw[site]).fold(0.0, f64::max);
    println!("\n{:<22} {:>9} {:>14} {:>12}", "site", "GPUs", "peak GPUs used", "peak MW");
    for (i, site) in report.sites.iter().enumerate() {
        println!("{:<22} {:>9} {:>14} {:>12.2}", site, report.site_gpus[i], peak(i), peak_mw(i));
    }
    println!(
        "\nGPUs placed {}; stranded GPUs mean {:.1}, max {}; energy {:.0} USD, {:.0} kg CO2; latency violations {}",
        report.gpus_placed,
        report.stranded_gpus_mean,
        report.stranded_gpus_max,
        report.energy_usd,
        report.carbon_kg,
        report.latency_violations
    );
    println!(
        "scheduling per interval p50 {:.3} ms, p99 {:.3} ms, total {:.3} s; backend: {backend}; wall time {:.3} s",
        report.scheduling_ms_p50,
        report.scheduling_ms_p99,
        report.scheduling_s_total,
        wall.as_secs_f64()
    );
}

/// Loads everything `place` and `explain` need and opens the backend.
fn prepare(inputs: &Inputs) -> anyhow::Result<(Scheduler, Workload, Option<Day>)> {
    let fleet = load_fleet(&inputs.fleet)?;
    let policy = match (&inputs.policy, &inputs.policy_preset) {
        (Some(path), _) => Policy::from_path(path)?,
        (None, Some(name)) => Preset::parse(name).expect("clap checked the name").policy(inputs.policy_seed),
        (None, None) => Policy::default(),
    };
    let at = parse_at(&inputs.at)?;
    let workload = match &inputs.jobs {
        Some(path) => Workload::from_path(path)?,
        None => {
            let base = at.or(fleet.as_of).unwrap_or_else(Day::today);
            generate::generate(&fleet, inputs.count, inputs.seed, base)
        }
    };
    let choice = backend_choice(inputs.backend);
    let scheduler = Scheduler::new(fleet, policy, choice)?;
    for notice in scheduler.notices() {
        eprintln!("{notice}");
    }
    Ok((scheduler, workload, at))
}

/// Writes `value` as pretty JSON (and a final newline) to `path`, atomically.
fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    write_atomically(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value)?;
        w.write_all(b"\n")
    })
}

/// Writes to `path` atomically: `write` fills a temporary file beside it, which is renamed over
/// `path` only when everything succeeded, so a failed run never leaves a partial file.
fn write_atomically(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().context("output path has no file name")?.to_string_lossy();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = std::fs::File::create(&temp)
        .and_then(|file| {
            let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
            write(&mut writer)?;
            writer.into_inner().map_err(|e| e.into_error())?.sync_all()
        })
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(source) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(gpuplace::Error::Io { path: path.into(), source }.into());
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Place { inputs, out, timings } => {
            let started = Instant::now();
            let (mut scheduler, workload, at) = prepare(&inputs)?;
            let loaded = started.elapsed();
            let bar = progress_bar(workload.jobs.len() as u64);
            let placement = scheduler.place_with_progress(&workload, at, &mut |done, _| bar.update(done as u64))?;
            bar.finish();
            for notice in &placement.notices[scheduler.notices().len()..] {
                eprintln!("{notice}");
            }
            let output_started = Instant::now();
            let document = report::out_file(scheduler.fleet(), &workload, &placement);
            if let Some(path) = &out {
                write_json(path, &document)?;
            }
            let output = output_started.elapsed();
            println!("{}", report::summary_text(&document, &placement, started.elapsed()));
            if timings {
                let source = if inputs.jobs.is_some() {
                    "load inputs (fleet, policy, jobs)"
                } else {
                    "load fleet and policy, generate jobs"
                };
                let t = &placement.timings;
                println!("\ntimings:");
                for (phase, time) in [
                    (source, loaded),
                    ("validate and compile jobs", t.compile),
                    ("score (backend)", t.score),
                    ("commit (host)", t.commit),
                    ("report and --out", output),
                ] {
                    println!("  {phase:<38} {:>9.3} s", time.as_secs_f64());
                }
            }
        }
        Command::Replay { inputs, replay, json, plot } => {
            let started = Instant::now();
            let (mut scheduler, workload, at) = prepare_replay(&inputs, &replay)?;
            let config = replay_config(&scheduler, at, &replay);
            let bar = progress_bar(workload.jobs.iter().filter_map(|j| j.submit_s).max().unwrap_or(0));
            let (report, notices) = scheduler.replay(&workload, config, &mut |t, _| bar.update(t))?;
            bar.finish();
            for notice in &notices[scheduler.notices().len()..] {
                eprintln!("{notice}");
            }
            if let Some(path) = &json {
                write_json(path, &report)?;
            }
            if let Some(path) = &plot {
                gpuplace::plot::replay_svg(&report, &workload, |j| workload.jobs[j].submit_s.unwrap_or(0), path)?;
            }
            print_replay(&report, &scheduler.backend().describe(), started.elapsed());
        }
        Command::Compare { inputs, replay, replay_args, json } => {
            let (scheduler, workload, at) = prepare_replay(&inputs, &replay_args)?;
            let config = replay.then(|| replay_config(&scheduler, at, &replay_args));
            let at = scheduler.placement_date(at);
            let choice = backend_choice(inputs.backend);
            let rows =
                gpuplace::compare::compare(scheduler.fleet(), &workload, at, config, inputs.policy_seed, &mut || {
                    Ok(gpuplace::Backend::open(choice)?.0)
                })?;
            if let Some(path) = &json {
                write_json(path, &rows)?;
            }
            println!(
                "{} jobs, {}, backend {}\n",
                workload.jobs.len(),
                if replay { "replay" } else { "batch" },
                scheduler.backend().describe()
            );
            print!("{}", gpuplace::compare::markdown(&rows, replay));
        }
        Command::Import(command) => run_import(command)?,
        Command::Bench { count, racks, seed, k, repeat, no_place, no_single_thread, no_gpu, json, markdown } => {
            let config = gpuplace::bench::BenchConfig {
                jobs: count,
                racks,
                seed,
                k: k as usize,
                repeat,
                place: !no_place,
                single_thread: !no_single_thread,
                command: std::env::args().collect::<Vec<_>>().join(" "),
            };
            let gpu = if no_gpu {
                None
            } else {
                match gpuplace::GpuScorer::new() {
                    Ok(gpu) => Some(gpu),
                    Err(e) => {
                        eprintln!("notice: benchmarking without the GPU backend ({e})");
                        None
                    }
                }
            };
            let report = gpuplace::bench::run(&config, gpu, &mut |line| eprintln!("bench: {line}"))?;
            if let Some(path) = &json {
                write_json(path, &report)?;
            }
            if markdown {
                print!("{}", gpuplace::bench::markdown(&report));
            } else {
                print!("{}", gpuplace::bench::table(&report));
            }
        }
        Command::Explain { inputs, job, json } => {
            let (mut scheduler, workload, at) = prepare(&inputs)?;
            let explanation = scheduler.explain(&workload, at, &job)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&explanation)?);
            } else {
                print_explanation(&explanation);
            }
        }
        Command::Fleet { fleet, json } => {
            let fleet = load_fleet(&fleet)?;
            if json {
                println!("{}", fleet.to_json());
            } else {
                print_fleet(&fleet);
            }
        }
        Command::Generate { count, seed, fleet, at, out } => {
            let fleet = load_fleet(&fleet)?;
            let base = parse_at(&at)?.or(fleet.as_of).unwrap_or_else(Day::today);
            let workload = generate::generate(&fleet, count, seed, base);
            match out {
                Some(path) => {
                    let csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
                    let text = if csv { workload.to_csv() } else { workload.to_json() + "\n" };
                    write_atomically(&path, |w| w.write_all(text.as_bytes()))?;
                }
                None => println!("{}", workload.to_json()),
            }
        }
    }
    Ok(())
}

/// A progress bar on stderr, drawn only when stderr is a terminal and the run has lasted a second.
struct Progress {
    bar: indicatif::ProgressBar,
    started: Instant,
    terminal: bool,
}

impl Progress {
    fn update(&self, done: u64) {
        if self.terminal && self.bar.is_hidden() && self.started.elapsed().as_secs_f64() > 1.0 {
            self.bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        self.bar.set_position(done);
    }

    fn finish(&self) {
        if !self.bar.is_hidden() {
            self.bar.finish_and_clear();
        }
    }
}

fn progress_bar(total: u64) -> Progress {
    use std::io::IsTerminal;
    let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::hidden());
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} jobs decided, {elapsed}") {
        bar.set_style(style);
    }
    Progress { bar, started: Instant::now(), terminal: std::io::stderr().is_terminal() }
}

fn print_fleet(fleet: &Fleet) {
    println!(
        "{:<22} {:<16} {:<4} {:>6} {:>8} {:>8} {:>9}  online",
        "site", "provider", "jur", "racks", "GPUs", "MW", "$/MWh"
    );
    let mut total_racks = 0;
    for site in &fleet.sites {
        let racks: usize = site.clusters.clone().map(|c| fleet.clusters[c].racks.len()).sum();
        let gpus: u64 = site
            .clusters
            .clone()
            .map(|c| {
                fleet.clusters[c].racks.len() as u64 * u64::from(fleet.rack_types[fleet.clusters[c].rack_type].gpus)
            })
            .sum();
        let phases: Vec<String> = site
            .clusters
            .clone()
            .map(|c| {
                format!(
                    "{} {}×{}",
                    fleet.clusters[c].online,
                    fleet.clusters[c].racks.len(),
                    fleet.rack_types[fleet.clusters[c].rack_type].name
                )
            })
            .collect();
        total_racks += racks;
        println!(
            "{:<22} {:<16} {:<4} {:>6} {:>8} {:>8.1} {:>9.1}  {}",
            site.name,
            site.provider,
            site.jurisdiction,
            racks,
            gpus,
            f64::from(site.power_w) / 1e6,
            f64::from(site.price_milli_usd_per_mwh) / 1000.0,
            phases.join(", ")
        );
    }
    println!("{:<22} {:<16} {:<4} {:>6} {:>8}", "total", "", "", total_racks, fleet.total_gpus());
}

fn print_explanation(e: &gpuplace::explain::Explanation) {
    println!("job {}: {}", e.job, e.need);
    println!("decided after {} jobs of higher rank; {} racks feasible then", e.decided_before, e.feasible_racks);
    if !e.candidates.is_empty() {
        println!(
            "\n{:<3} {:<22} {:<14} {:>5} {:>5} {:>8}   {:>5} {:>6} {:>7} {:>6} {:>6} {:>5} {:>6}",
            "#",
            "site",
            "cluster",
            "rack",
            "free",
            "score",
            "pack",
            "spread",
            "latency",
            "energy",
            "carbon",
            "hbm",
            "random"
        );
        for (i, c) in e.candidates.iter().enumerate() {
            let t = &c.terms;
            println!(
                "{:<3} {:<22} {:<14} {:>5} {:>5} {:>8}   {:>5} {:>6} {:>7} {:>6} {:>6} {:>5} {:>6}",
                i + 1,
                c.site,
                c.cluster,
                c.rack,
                c.free_gpus,
                c.score,
                t.pack,
                t.spread,
                t.latency,
                t.energy,
                t.carbon,
                t.hbm,
                t.random
            );
        }
        let w = e.candidates[0].weights;
        println!(
            "{:<3} {:<22} {:<14} {:>5} {:>5} {:>8}   {:>5} {:>6} {:>7} {:>6} {:>6} {:>5} {:>6}",
            "", "weights", "", "", "", "", w[0], w[1], w[2], w[3], w[4], w[5], w[6]
        );
    }
    println!("\nracks rejected per failed constraint (a rack may fail several):");
    for (name, count) in &e.rejected {
        println!("  {name:<13} {count}");
    }
    println!("\ndecision: {}", e.decision);
}
