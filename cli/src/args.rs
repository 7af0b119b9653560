//! The command line: every command, flag and example. Parsing only; `commands/` does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gpuplace::model::policy::Preset;

#[derive(Parser)]
#[command(name = "gpuplace", version, about = "GPU-accelerated placement of AI jobs onto GB300 NVL72 fleets")]
#[command(after_help = "Examples:
  gpuplace place                              # built-in fleet, 10000 generated jobs
  gpuplace generate --count 1000 --seed 7 --out jobs.csv
  gpuplace place --jobs jobs.csv --out placements.json
  gpuplace explain --jobs jobs.csv --job training-0003
  gpuplace fleet --json > fleet.json

A file argument of `-` is standard input or output.

Exit codes:
  0  done (jobs left unplaced are reported, not a failure)
  1  done, and some jobs were not placed, with --fail-on-unplaced (place, replay)
  2  bad command line or input: nothing was written
  3  an output could not be written, or the GPU backend asked for could not be used")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Command {
    /// Whether the command may open a GPU adapter (and so load Mesa's drivers).
    pub fn may_open_gpu(&self) -> bool {
        let not_cpu = |inputs: &Inputs| !matches!(inputs.backend, BackendArg::Cpu);
        match self {
            Command::Place { inputs, .. }
            | Command::Replay { inputs, .. }
            | Command::Compare { inputs, .. }
            | Command::Explain { inputs, .. } => not_cpu(inputs),
            Command::Bench { no_gpu, .. } => !no_gpu,
            Command::Serve { backend, .. } | Command::Load { backend, .. } => !matches!(backend, BackendArg::Cpu),
            _ => false,
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Place jobs onto the fleet and print a summary.
    #[command(after_help = "Examples:
  gpuplace place
  gpuplace place --count 100000 --seed 3 --backend cpu --timings
  gpuplace fleet --json > fleet.json
  gpuplace generate --count 5000 --out jobs.json
  gpuplace policy --preset best-fit > policy.json
  gpuplace place --fleet fleet.json --jobs jobs.json --policy policy.json --at 2026-12-01 --out out.jsonl
  gpuplace place --jobs jobs.json --out out.json --fail-on-unplaced || echo \"exit $?: some jobs were not placed\"
  echo '{\"tenants\": [{\"name\": \"prod\", \"quota_gpus\": 20000, \"kinds\": [\"inference\"]}, {\"name\": \"default\", \"quota_gpus\": 5000}]}' > tenants.json
  gpuplace place --count 2000 --tenants tenants.json
  gpuplace generate --count 100 --jobs-format csv | gpuplace place --jobs - --out - > out.json")]
    Place {
        #[command(flatten)]
        inputs: Inputs,
        /// Write placements, unplaced jobs and totals to this file (`-`: standard output, and the
        /// summary goes to standard error): JSON, or JSON Lines when it ends in .jsonl.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The format of --out, whatever its name.
        #[arg(long, value_enum, value_name = "FORMAT", requires = "out")]
        out_format: Option<OutFormatArg>,
        /// Print where the time went: generation or parsing, validation, scoring, commit, output.
        #[arg(long)]
        timings: bool,
        /// Exit with code 1 when some jobs are not placed (after writing everything).
        #[arg(long)]
        fail_on_unplaced: bool,
    },
    /// Replay jobs over time: arrivals, completions, waiting, per-interval batch placement.
    #[command(after_help = "Examples:
  gpuplace replay --count 20000 --span-h 48
  gpuplace replay --count 2000 --max-wait 3600 --json replay.jsonl --plot replay.svg
  gpuplace replay --count 500 --span-h 2 --preemption
  echo '{\"tenants\": [{\"name\": \"prod\", \"quota_gpus\": 20000, \"kinds\": [\"inference\"]}, {\"name\": \"default\", \"quota_gpus\": 5000}]}' > tenants.json
  gpuplace replay --count 2000 --span-h 2 --tenants tenants.json --preemption
  gpuplace import alibaba openb_pod_list_default.csv --nodes openb_node_list_gpu_node.csv \\
      --fleet-out openb-fleet.json --out openb-jobs.json
  gpuplace replay --fleet openb-fleet.json --jobs openb-jobs.json --interval 600 --json replay.json --plot replay.svg

The trace files are the Alibaba GPU trace v2023 (github.com/alibaba/clusterdata,
cluster-trace-gpu-v2023/csv).")]
    Replay {
        #[command(flatten)]
        inputs: Inputs,
        #[command(flatten)]
        replay: ReplayArgs,
        /// Write every metric and each job's fate to this file: JSON, or JSON Lines when it ends in
        /// .jsonl.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// The format of --json, whatever its name.
        #[arg(long, value_enum, value_name = "FORMAT", requires = "json")]
        out_format: Option<OutFormatArg>,
        /// Draw GPU utilization per site and queueing delay per kind to this SVG file.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
        /// Exit with code 1 when some jobs are rejected (after writing everything).
        #[arg(long)]
        fail_on_unplaced: bool,
    },
    /// Run every policy preset (default, first-fit, best-fit, spread, random), and --policy FILE
    /// if given, on the same input.
    #[command(after_help = "Examples:
  gpuplace compare --count 20000
  gpuplace policy --preset spread > mine.json
  gpuplace compare --count 5000 --policy mine.json --replay --interval 600 --json compare.json")]
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
    #[command(
        subcommand,
        after_help = "Examples:
  gpuplace import alibaba openb_pod_list_default.csv --nodes openb_node_list_gpu_node.csv \\
      --fleet-out openb-fleet.json --out openb-jobs.json
  gpuplace import azure AzureLLMInferenceTrace_conv.csv AzureLLMInferenceTrace_code.csv --scale 3000 --out azure-jobs.json

Sources: the Alibaba GPU trace v2023 (github.com/alibaba/clusterdata, cluster-trace-gpu-v2023/csv;
research or study only) and the Azure LLM inference trace 2023 (github.com/Azure/AzurePublicDataset,
data/; CC BY 4.0)."
    )]
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
    /// The FGD paper's workload-inflation experiment on an Alibaba openb node and pod list: pods
    /// arrive one at a time until their GPU requests reach --tune × the cluster's GPUs, each placed
    /// at once or failed; prints the GPU allocation against the arrived workload.
    #[command(after_help = "Examples:
  gpuplace inflate --nodes openb_node_list_gpu_node.csv --pods openb_pod_list_default.csv
  gpuplace inflate --nodes openb_node_list_gpu_node.csv --pods openb_pod_list_default.csv \\
      --policy-preset best-fit --seed 43 --json best-fit.json --plot best-fit.svg

Presets: default and fgd (fragmentation, FGD), best-fit, random.
The trace files are the Alibaba GPU trace v2023 (github.com/alibaba/clusterdata,
cluster-trace-gpu-v2023/csv); any pod list of its format is accepted.")]
    Inflate {
        /// Node list CSV (sn,cpu_milli,memory_mib,gpu,model).
        #[arg(long, value_name = "FILE")]
        nodes: PathBuf,
        /// Pod list CSV (name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,…).
        #[arg(long, value_name = "FILE")]
        pods: PathBuf,
        /// Stop when the arrived GPU request reaches this multiple of the capacity (0.01..=10, at
        /// most three decimals).
        #[arg(long, default_value = "1.3", value_parser = parse_tune)]
        tune: u32,
        /// Seed of the arrival order (and of the random preset).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Node score preset.
        #[arg(long, default_value = "default", value_parser = ["default", "fgd", "best-fit", "random"])]
        policy_preset: String,
        /// Scoring backend.
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendArg,
        /// Write the curve and totals as JSON to this file (`-`: standard output).
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Plot the curve as SVG to this file.
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
    },
    /// Show one job's best candidates with every score term, and why other racks were rejected.
    #[command(after_help = "Examples:
  gpuplace explain --job inference-00001
  gpuplace generate --count 500 --out jobs.json
  gpuplace explain --jobs jobs.json --job training-003 --json")]
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
  gpuplace fleet --json > my-fleet.json
  gpuplace fleet --fleet my-fleet.json")]
    Fleet {
        /// Fleet JSON file, `-` for standard input (default: the built-in fleet).
        #[arg(long, value_name = "FILE")]
        fleet: Option<PathBuf>,
        /// Print the fleet in the format --fleet reads.
        #[arg(long)]
        json: bool,
    },
    /// Run gpuplace as a service: an HTTP/JSON API (docs/API.md) over durable state.
    #[command(after_help = "Examples:
  gpuplace serve --state /var/lib/gpuplace
  gpuplace serve --fleet fleet.json --policy policy.json --state state --listen 127.0.0.1:7070
  gpuplace serve --fleet fleet.json --state state --preemption
  gpuplace serve --fleet fleet.json --state state --tenants tenants.json
  gpuplace serve --state state --kube-api http://127.0.0.1:8001
  gpuplace serve --state state --kube-api http://127.0.0.1:8001 --kube-sync-s 10
  gpuplace submit jobs.json && gpuplace status --state-filter waiting && gpuplace finish job-1")]
    Serve {
        /// Fleet JSON file to start a new state directory with (default: the built-in fleet). A
        /// state directory keeps its fleet: given again, it must be the same.
        #[arg(long, value_name = "FILE")]
        fleet: Option<PathBuf>,
        /// Policy JSON file (default: the state directory's, or the built-in policy). Given
        /// again, it replaces the stored one for later decisions.
        #[arg(long, value_name = "FILE", conflicts_with = "policy_preset")]
        policy: Option<PathBuf>,
        /// A built-in policy: default, first-fit, best-fit, spread or random.
        #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(Preset::ALL.map(Preset::name)))]
        policy_preset: Option<String>,
        /// The state directory (created when absent): the jobs and their placements, durable.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// Address to listen on (port 0: any free port, printed on standard error).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
        listen: String,
        /// File holding a bearer token that every request but /healthz must carry; required to
        /// listen beyond loopback.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// How long to gather requests after the first of a batch, ms (0..=1000). With 0, a batch
        /// is what arrived while the core applied and placed the previous one (it does not wait
        /// for the previous one's commit).
        #[arg(long, value_name = "MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1000))]
        batch_window_ms: u64,
        /// Scoring backend.
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendArg,
        /// Let a job that does not fit evict placed jobs of strictly lower priority (the fewest,
        /// then the lowest priorities, then the fewest GPUs); they wait again as `preempted`.
        #[arg(long)]
        preemption: bool,
        /// Tenants JSON file: GPU quotas, borrowing limits and fair-share weights that placement
        /// keeps (docs/QUOTAS.md); a job within its tenant's quota takes back what others borrow.
        /// Kept in the state directory; given again, it replaces the stored tenants.
        #[arg(long, value_name = "FILE")]
        tenants: Option<PathBuf>,
        /// The Kubernetes API server on which the scheduler extender's bind creates each pod's
        /// Binding (e.g. http://127.0.0.1:8001, a `kubectl proxy` beside the server); see
        /// docs/KUBERNETES.md.
        #[arg(long, value_name = "URL")]
        kube_api: Option<String>,
        /// File holding a bearer token for --kube-api.
        #[arg(long, value_name = "FILE", requires = "kube_api")]
        kube_token_file: Option<PathBuf>,
        /// How often to list the pods on --kube-api and finish the jobs of pods bound through the
        /// extender that ended (deleted, replaced, Succeeded or Failed), seconds; 0: never.
        #[arg(long, value_name = "S", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86_400))]
        kube_sync_s: u64,
    },
    /// Submit jobs (a jobs file, JSON) to a running `gpuplace serve`; prints each job's state.
    #[command(after_help = "Examples:
  gpuplace submit jobs.json
  gpuplace generate --count 100 | gpuplace submit -")]
    Submit {
        /// Jobs JSON file: a job, an array of jobs or {"jobs": [...]}; `-` for standard input.
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a job of a running `gpuplace serve`, or list its jobs.
    #[command(after_help = "Examples:
  gpuplace status job-1
  gpuplace status job-1 --explain
  gpuplace status --state-filter waiting")]
    Status {
        /// The job's id (without it: list jobs).
        id: Option<String>,
        /// List only jobs in this state.
        #[arg(long, value_name = "STATE", value_parser = ["waiting", "placed", "preempted", "finished", "rejected"])]
        state_filter: Option<String>,
        /// With an ID: why the waiting job is not placed now (candidates, rejections, reason).
        #[arg(long, requires = "id", conflicts_with_all = ["state_filter", "after"])]
        explain: bool,
        /// List jobs submitted after this submission number (the `submitted` of the last one shown).
        #[arg(long, value_name = "N")]
        after: Option<u64>,
        /// List at most this many jobs (at most 10,000 a call).
        #[arg(long, value_name = "N", default_value_t = 1000)]
        limit: usize,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Finish (or cancel) a job of a running `gpuplace serve`: it gives back what it holds.
    #[command(after_help = "Examples:
  gpuplace finish job-1
  gpuplace finish job-1 --server http://127.0.0.1:7070 --token-file token")]
    Finish {
        /// The job's id.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Measure the service: start one on loopback over a temporary state directory, fill it with
    /// jobs, then submit and finish jobs from clients; decisions per second and latency.
    #[command(after_help = "Examples:
  gpuplace load --in-system 2000 --requests 500
  gpuplace load --in-system 100000 --requests 2000 --clients 8 --batch 10 --json load.json
  gpuplace load --in-system 2000 --requests 1000 --clients 16 --rate 2000 --varied")]
    Load {
        /// Job records in the server before measuring (one tray each on the built-in fleet).
        #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
        in_system: u64,
        /// Of those, at most this many stay placed (the rest are finished).
        #[arg(long, value_name = "N", default_value_t = 30_000)]
        keep_placed: u64,
        /// Submissions to make while measuring, all clients together.
        #[arg(long, value_name = "N", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        requests: u64,
        /// Clients, each with its own connection (tasks on one thread of the load generator).
        #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024))]
        clients: u64,
        /// Open loop: submissions per second, all clients together, each due at its time and its
        /// latency counted from then (default: closed loop, each client submits again once its
        /// submission and finishes are answered).
        #[arg(long, value_name = "PER_S", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        rate: Option<u64>,
        /// The measured jobs vary: kind, 1, 2 or 4 GPUs, latency bound (24,000 shapes; default:
        /// all one tray of inference, which a round scores once).
        #[arg(long)]
        varied: bool,
        /// Jobs per submission.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        batch: u64,
        /// The server's batch window, ms (0..=1000).
        #[arg(long, value_name = "MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1000))]
        batch_window_ms: u64,
        /// Scoring backend.
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        /// Write the measurement as JSON to this file (`-`: standard output).
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Print a built-in policy as a policy file, to read or to edit and pass to --policy.
    #[command(after_help = "Examples:
  gpuplace policy
  gpuplace policy --preset best-fit > best-fit.json
  gpuplace place --count 2000 --policy best-fit.json")]
    Policy {
        /// The preset: default, first-fit, best-fit, spread or random.
        #[arg(long, value_name = "NAME", default_value = "default", value_parser = clap::builder::PossibleValuesParser::new(Preset::ALL.map(Preset::name)))]
        preset: String,
        /// Seed of the random term (the `random` preset).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Print the JSON Schema of a file format gpuplace reads or writes (without NAME: list them).
    #[command(after_help = "Examples:
  gpuplace schema
  gpuplace schema place > place.schema.json")]
    Schema {
        /// The format: fleet, jobs, policy, place, place-line, explain, replay, replay-line,
        /// compare or bench.
        name: Option<String>,
    },
    /// Generate a deterministic, realistic workload.
    #[command(after_help = "Examples:
  gpuplace generate --count 1000 --seed 7 --out jobs.json
  gpuplace generate --count 50 --out jobs.csv
  gpuplace generate --count 50 --jobs-format csv > jobs.txt")]
    Generate {
        /// Number of jobs.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Fleet whose regions, jurisdictions and providers to use, `-` for standard input (default:
        /// built-in).
        #[arg(long, value_name = "FILE")]
        fleet: Option<PathBuf>,
        /// Date `not_before` values are drawn after (default: the fleet's as_of, else today).
        #[arg(long, value_name = "YYYY-MM-DD")]
        at: Option<String>,
        #[command(flatten)]
        output: JobsOutput,
    },
}

#[derive(Args)]
pub struct ReplayArgs {
    /// Scheduling interval, seconds of trace time.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,
    /// Reject a job that waited longer than this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub max_wait: Option<u64>,
    /// For generated workloads (no --jobs): spread arrivals evenly over this many hours.
    #[arg(long, default_value_t = 24.0)]
    pub span_h: f64,
    /// After each interval's placement, let waiting jobs evict running jobs of strictly lower
    /// priority (the rule of `serve --preemption`); evicted jobs wait again and restart from
    /// scratch.
    #[arg(long)]
    pub preemption: bool,
}

#[derive(Subcommand)]
pub enum ImportCommand {
    /// Alibaba GPU trace v2023 ("openb"): pods → jobs, nodes → a fleet.
    #[command(after_help = "Examples:
  gpuplace import alibaba openb_pod_list_default.csv --nodes openb_node_list_gpu_node.csv \\
      --fleet-out fleet.json --out jobs.json
  gpuplace replay --fleet fleet.json --jobs jobs.json --interval 600

The trace is the Alibaba GPU trace v2023 (github.com/alibaba/clusterdata, cluster-trace-gpu-v2023/csv),
licensed for research or study.")]
    Alibaba {
        /// The pod list CSV (`-`: standard input).
        pods: PathBuf,
        /// The node list CSV, to build a fleet from (written to --fleet-out; `-`: standard input).
        #[arg(long, value_name = "FILE", requires = "fleet_out")]
        nodes: Option<PathBuf>,
        /// Where to write the fleet built from --nodes (`-`: standard output).
        #[arg(long, value_name = "FILE", requires = "nodes")]
        fleet_out: Option<PathBuf>,
        /// Region to give every job (the imported fleet's is `openb`).
        #[arg(long, default_value = gpuplace::import::ALIBABA_REGION)]
        region: String,
        #[command(flatten)]
        output: JobsOutput,
        /// Fail on the first malformed row instead of skipping and counting it.
        #[arg(long)]
        strict: bool,
    },
    /// Azure LLM inference trace 2023: requests → serving deployments on GB300 racks.
    #[command(after_help = "Examples:
  gpuplace import azure AzureLLMInferenceTrace_conv.csv --scale 1000 --out conv-jobs.json
  gpuplace import azure AzureLLMInferenceTrace_code.csv --replica-gpus 4 --region eu-west --out code-jobs.csv
  gpuplace replay --jobs conv-jobs.json --max-wait 900

The traces are the Azure LLM inference trace 2023 (github.com/Azure/AzurePublicDataset, data/),
CC BY 4.0.")]
    Azure {
        /// Trace CSV files (TIMESTAMP, ContextTokens, GeneratedTokens; `-`: standard input), read as
        /// one workload.
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
        #[command(flatten)]
        output: JobsOutput,
        /// Fail on the first malformed row instead of skipping and counting it.
        #[arg(long)]
        strict: bool,
    },
}

#[derive(Args)]
pub struct Inputs {
    /// Fleet JSON file, `-` for standard input (default: the built-in fleet).
    #[arg(long, value_name = "FILE")]
    pub fleet: Option<PathBuf>,
    /// Jobs file, `-` for standard input (default: a generated workload). JSON or CSV by its
    /// extension, else by its content, or as --jobs-format says.
    #[arg(long, value_name = "FILE")]
    pub jobs: Option<PathBuf>,
    /// The format of --jobs, when its name or content should not decide.
    #[arg(long, value_enum, value_name = "FORMAT", requires = "jobs")]
    pub jobs_format: Option<FormatArg>,
    /// Policy JSON file, `-` for standard input (default: the built-in policy).
    #[arg(long, value_name = "FILE", conflicts_with = "policy_preset")]
    pub policy: Option<PathBuf>,
    /// A built-in policy: default, first-fit, best-fit, spread or random.
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(Preset::ALL.map(Preset::name)))]
    pub policy_preset: Option<String>,
    /// Seed of the random term (the `random` preset).
    #[arg(long, default_value_t = 1)]
    pub policy_seed: u64,
    /// Tenants JSON file: each tenant's GPU quota, borrowing limit and fair-share weight, which
    /// placement then keeps (docs/QUOTAS.md). Jobs count against their `tenant`, else the tenant
    /// their kind is given to, else the tenant named `default`.
    #[arg(long, value_name = "FILE")]
    pub tenants: Option<PathBuf>,
    /// Jobs to generate when --jobs is not given.
    #[arg(long, default_value_t = 10_000)]
    pub count: usize,
    /// Seed of the generated workload.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Placement date (default: the fleet's as_of, else today).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub at: Option<String>,
    /// Scoring backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
}

/// Where a command that makes jobs writes them.
#[derive(Args)]
pub struct JobsOutput {
    /// Jobs output (`-`: standard output): CSV if it ends in .csv, else JSON (default: JSON on
    /// stdout).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The format to write, whatever the name.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub jobs_format: Option<FormatArg>,
}

impl JobsOutput {
    /// The format to write: --jobs-format, else the name's extension, else JSON.
    pub fn format(&self) -> gpuplace::model::jobs::JobsFormat {
        crate::commands::output_format(self.jobs_format.map(FormatArg::format), self.out.as_deref())
    }
}

/// A jobs file's format.
#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// An array of jobs, or {"jobs": [...]}.
    Json,
    /// A header line, then a job per line.
    Csv,
}

impl FormatArg {
    /// The library's format.
    pub fn format(self) -> gpuplace::model::jobs::JobsFormat {
        match self {
            FormatArg::Json => gpuplace::model::jobs::JobsFormat::Json,
            FormatArg::Csv => gpuplace::model::jobs::JobsFormat::Csv,
        }
    }
}

/// The format of a document gpuplace writes.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutFormatArg {
    /// One pretty-printed JSON document.
    Json,
    /// JSON Lines: a first line of totals, then one compact line per job.
    Jsonl,
}

impl OutFormatArg {
    /// `asked`, else JSON Lines for a name ending in `.jsonl`, else JSON.
    pub fn choose(asked: Option<OutFormatArg>, path: &std::path::Path) -> OutFormatArg {
        let by_name = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("jsonl"));
        asked.unwrap_or(if by_name { OutFormatArg::Jsonl } else { OutFormatArg::Json })
    }
}

/// Where a running server is.
#[derive(Args)]
pub struct ServerArgs {
    /// The server's base URL.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    /// File holding the server's bearer token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum BackendArg {
    /// A hardware GPU when one is found and passes its self-check, else the CPU (with a notice).
    Auto,
    /// The CPU on all cores.
    Cpu,
    /// The best GPU adapter, even a software one (fails when there is none or it fails its
    /// self-check).
    Gpu,
}

impl BackendArg {
    /// The library's choice.
    pub fn choice(self) -> gpuplace::BackendChoice {
        match self {
            BackendArg::Auto => gpuplace::BackendChoice::Auto,
            BackendArg::Cpu => gpuplace::BackendChoice::Cpu,
            BackendArg::Gpu => gpuplace::BackendChoice::Gpu,
        }
    }
}

/// `--tune`: a decimal with at most three places, in thousandths (1.3 → 1300), 0.01..=10.
fn parse_tune(text: &str) -> Result<u32, String> {
    let bad = || format!("`{text}` is not a decimal number from 0.01 to 10 with at most three decimals");
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty()
        || fraction.len() > 3
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || whole.len() > 9
    {
        return Err(bad());
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
    let fraction: u64 = format!("{fraction:0<3}").parse().map_err(|_| bad())?;
    let permille = u32::try_from(whole * 1000 + fraction).map_err(|_| bad())?;
    if !gpuplace::sim::inflate::TUNE_PERMILLE.contains(&permille) {
        return Err(bad());
    }
    Ok(permille)
}
