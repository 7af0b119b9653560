//! Jobs: what is to be placed, read from JSON or CSV, validated against a fleet, and compiled into
//! the kernel's [`JobGpu`] records.

use std::collections::HashSet;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{InputError, Result};
use crate::kernel::limits::{MAX_HBM_GB, MAX_JOB_GPUS, MAX_LATENCY_MS, MAX_NODE_GPUS};
use crate::kernel::score::{
    FRAG_BUCKETS, GPU_MILLI, JobGpu, ONE_DOMAIN_PREFERRED, frag_bucket, inv_q16, job_shape, mix, pack_frag_mix,
    pods_on_rack_of,
};
use crate::kernel::shape::{job_tables, spans_racks, unpack_shape};
use crate::model::date::Day;
use crate::model::fleet::{Fleet, MAX_CPU_CORES, MAX_MEMORY_GB, cpu_milli, memory_mib};
use crate::model::json::{Expect, MAX_JOBS_BYTES, check_name, read_input, read_input_from, shown, shown_number};
use crate::model::kind::JobKind;
use crate::model::policy::Policy;

/// The most jobs in one workload (a file, a generated or an imported workload), checked before
/// anything is allocated per job.
pub const MAX_JOBS: usize = 10_000_000;
/// The latest arrival time, seconds from the start of a trace (100 years of 365.25 days): with
/// durations, intervals and waits bounded alike, no sum of times can overflow.
pub const MAX_TRACE_S: u64 = 3_155_760_000;
/// The longest run time, seconds (`duration_s`; `duration_h` up to the same in hours).
pub const MAX_DURATION_S: u64 = 3_600_000_000;

/// A job, with exactly the file format's field names. Build one with [`Job::new`] and the `with_`
/// methods (fields will be added as the model grows, so it cannot be written as a literal outside
/// this crate).
///
/// ```
/// use gpuplace::{Day, Job, JobKind};
///
/// let job = Job::new("llama-serve-7", JobKind::Inference, 8, "eu-west")
///     .with_hbm_gb_per_gpu(140)
///     .with_priority(90)
///     .with_max_latency_ms(40)
///     .with_jurisdictions(["EU"])
///     .with_not_before(Day::parse("2026-12-01").unwrap());
/// assert_eq!(job.duration_seconds(), 3600);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(description = "A job: what is to be placed.")]
#[non_exhaustive]
pub struct Job {
    /// Unique id.
    pub id: String,
    /// Kind of work.
    pub kind: JobKind,
    /// GPUs in all, all or nothing. Without `pods`, the pods that fill whole nodes (trays) of the
    /// rack the job lands on: one pod when the GPUs fit one node, else one pod per node of the
    /// node's GPUs and one more of the remainder. Pods that do not fit one NVLink domain take whole
    /// racks of one cluster.
    #[schemars(range(min = 1, max = MAX_JOB_GPUS))]
    pub gpus: u32,
    /// Pods the GPUs are split into, equally (`gpus / pods` GPUs each, 1 to 8; each pod on one
    /// node). Absent: the `gpus` shorthand above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_JOB_GPUS))]
    pub pods: Option<u32>,
    /// HBM needed per GPU, GB.
    #[schemars(range(max = MAX_HBM_GB))]
    pub hbm_gb_per_gpu: u32,
    /// Higher is placed first.
    pub priority: i32,
    /// Expected run time, hours. Give this or `duration_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_h: Option<f64>,
    /// Region where the job's users are.
    pub region: String,
    /// Latency bound from the site to `region`, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_LATENCY_MS))]
    pub max_latency_ms: Option<u32>,
    /// Allowed jurisdictions (data residency); any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdictions: Option<Vec<String>>,
    /// Allowed providers; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<String>>,
    /// Earliest start date, `YYYY-MM-DD`: the job may use capacity that is online by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Day>,
    /// Arrival time in seconds from the start of a trace (`gpuplace replay`); 0 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = MAX_TRACE_S))]
    pub submit_s: Option<u64>,
    /// Run time in seconds. Give this or `duration_h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_DURATION_S))]
    pub duration_s: Option<u64>,
    /// For a job spanning racks: `required` keeps its racks in one topology block of its cluster
    /// (the fleet's `block_racks`), `preferred` does so when any block has room and else takes
    /// racks anywhere in the cluster. Absent: anywhere in the cluster, the anchor's block first.
    /// A job within one rack is always within one block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<BlockRule>,
    /// CPU cores each pod needs on its node (0.001 … 4000, in thousandths); only with `pods`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.001, max = 4000.0))]
    pub cpu: Option<f64>,
    /// Memory each pod needs on its node, GB (GiB: 1 GB = 1024 MiB; 0.001 … 65536); only with
    /// `pods`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.001, max = 65536.0))]
    pub memory_gb: Option<f64>,
    /// For pods that share GPUs: the thousandths of one GPU each pod needs (1 … 999), its pods one
    /// GPU each (`pods` equal to `gpus`). Each pod draws its share of a GPU's power, and the GPUs
    /// placed of a report count its shares ([`Job::gpu_milli_held`]). Only with `pods`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 999))]
    pub gpu_milli: Option<u32>,
    /// The tenant (team, queue) whose GPU quota the job counts against, when a tenants file is
    /// given (see `docs/QUOTAS.md`); absent: the tenant its kind is assigned to there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// How a job spanning racks treats topology blocks (as Kueue's required and preferred topology).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BlockRule {
    /// All its racks in one block, or not placed.
    Required,
    /// All its racks in one block when any block has room, else anywhere in the cluster.
    Preferred,
}

impl BlockRule {
    /// Its name in files.
    pub fn name(self) -> &'static str {
        match self {
            BlockRule::Required => "required",
            BlockRule::Preferred => "preferred",
        }
    }

    /// The kernel's code ([`crate::kernel::score::BLOCK_REQUIRED`], …).
    pub fn code(rule: Option<BlockRule>) -> u32 {
        match rule {
            None => crate::kernel::score::BLOCK_ANY,
            Some(BlockRule::Required) => crate::kernel::score::BLOCK_REQUIRED,
            Some(BlockRule::Preferred) => crate::kernel::score::BLOCK_PREFERRED,
        }
    }
}

impl Job {
    /// A job of `gpus` GPUs of `kind`, whose users are in `region`; everything else at its default:
    /// no HBM need (0), priority 0, one hour, no latency bound, any jurisdiction and provider, no
    /// start date, arriving at trace time 0.
    pub fn new(id: impl Into<String>, kind: JobKind, gpus: u32, region: impl Into<String>) -> Job {
        Job {
            id: id.into(),
            kind,
            gpus,
            pods: None,
            hbm_gb_per_gpu: 0,
            priority: 0,
            duration_h: Some(1.0),
            region: region.into(),
            max_latency_ms: None,
            jurisdictions: None,
            providers: None,
            not_before: None,
            submit_s: None,
            duration_s: None,
            block: None,
            cpu: None,
            memory_gb: None,
            gpu_milli: None,
            tenant: None,
        }
    }

    /// Counting against tenant `name`'s quota.
    pub fn with_tenant(mut self, name: impl Into<String>) -> Job {
        self.tenant = Some(name.into());
        self
    }

    /// Pods of `milli` thousandths of one GPU each: its `gpus` become that many pods of one shared
    /// GPU.
    pub fn with_gpu_milli(mut self, milli: u32) -> Job {
        (self.pods, self.gpu_milli) = (Some(self.gpus), Some(milli));
        self
    }

    /// The GPUs the job holds when placed: its `gpus`, or for pods that share GPUs their shares
    /// rounded up to whole GPUs (how the kernel sizes it: at least one GPU).
    pub fn gpus_held(&self) -> u32 {
        match self.gpu_milli {
            Some(milli) => (self.pods.unwrap_or(0) * milli).div_ceil(GPU_MILLI),
            None => self.gpus,
        }
    }

    /// The thousandths of a GPU the job holds when placed: 1000 per GPU, or its pods' shares
    /// (what the GPUs placed of a report add up).
    pub fn gpu_milli_held(&self) -> u64 {
        match self.gpu_milli {
            Some(milli) => u64::from(self.pods.unwrap_or(0)) * u64::from(milli),
            None => u64::from(self.gpus) * u64::from(GPU_MILLI),
        }
    }

    /// Each pod needing `cores` CPU cores and `memory_gb` GB (GiB) of memory on its node (the job
    /// must state its pods).
    pub fn with_pod_resources(mut self, cores: f64, memory_gb: f64) -> Job {
        (self.cpu, self.memory_gb) = (Some(cores), Some(memory_gb));
        self
    }

    /// Each pod's CPU (milli-cores) and memory (MiB) in the kernel's units; 0 where not stated.
    pub fn pod_resources(&self) -> [u32; 2] {
        [self.cpu.map_or(0, cpu_milli), self.memory_gb.map_or(0, memory_mib)]
    }

    /// Split into `pods` pods of `gpus / pods` GPUs each.
    pub fn with_pods(mut self, pods: u32) -> Job {
        self.pods = Some(pods);
        self
    }

    /// GPUs per pod when the pods are stated (0 for the shorthand).
    pub fn pod_gpus(&self) -> u32 {
        self.pods.map_or(0, |pods| self.gpus / pods.max(1))
    }

    /// HBM needed per GPU, GB.
    pub fn with_hbm_gb_per_gpu(mut self, gb: u32) -> Job {
        self.hbm_gb_per_gpu = gb;
        self
    }

    /// Priority: higher is placed first.
    pub fn with_priority(mut self, priority: i32) -> Job {
        self.priority = priority;
        self
    }

    /// Run time in hours (replaces a run time in seconds).
    pub fn with_duration_h(mut self, hours: f64) -> Job {
        (self.duration_h, self.duration_s) = (Some(hours), None);
        self
    }

    /// Run time in seconds (replaces a run time in hours).
    pub fn with_duration_s(mut self, seconds: u64) -> Job {
        (self.duration_h, self.duration_s) = (None, Some(seconds));
        self
    }

    /// Latency bound from the site to the job's region, ms.
    pub fn with_max_latency_ms(mut self, ms: u32) -> Job {
        self.max_latency_ms = Some(ms);
        self
    }

    /// The jurisdictions the job may run in.
    pub fn with_jurisdictions<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Job {
        self.jurisdictions = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// The providers the job may run on.
    pub fn with_providers<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Job {
        self.providers = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// The earliest day it may start.
    pub fn with_not_before(mut self, day: Day) -> Job {
        self.not_before = Some(day);
        self
    }

    /// Its arrival time, seconds from the start of a trace (for replay).
    pub fn with_submit_s(mut self, seconds: u64) -> Job {
        self.submit_s = Some(seconds);
        self
    }

    /// The run time in seconds: `duration_s`, else `duration_h` × 3600 rounded (validated jobs have
    /// exactly one of them).
    pub fn duration_seconds(&self) -> u64 {
        self.duration_s.unwrap_or_else(|| (self.duration_h.unwrap_or(0.0) * 3600.0).round() as u64)
    }

    /// The arrival time, seconds (0 when absent).
    pub fn submit_seconds(&self) -> u64 {
        self.submit_s.unwrap_or(0)
    }

    /// Checks every value that does not depend on a fleet; returns the field and what is wrong.
    fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        check_name(&self.id, false).map_err(|m| ("id", m))?;
        if let Some(tenant) = &self.tenant {
            check_name(tenant, false).map_err(|m| ("tenant", m))?;
        }
        if self.gpus == 0 || self.gpus > MAX_JOB_GPUS {
            return Err(("gpus", format!("{} is out of range: must be between 1 and {MAX_JOB_GPUS}", self.gpus)));
        }
        if let Some(pods) = self.pods
            && (pods == 0 || !self.gpus.is_multiple_of(pods) || self.gpus / pods > MAX_NODE_GPUS)
        {
            return Err((
                "pods",
                format!(
                    "{pods} pods do not split the job's {} GPUs: give a number of pods that divides them, \
                     at most {MAX_NODE_GPUS} GPUs each",
                    self.gpus
                ),
            ));
        }
        for (field, value, most, unit) in
            [("cpu", self.cpu, MAX_CPU_CORES, "cores"), ("memory_gb", self.memory_gb, MAX_MEMORY_GB, "GB")]
        {
            let Some(value) = value else { continue };
            if !value.is_finite() || !(0.001..=most).contains(&value) {
                return Err((
                    field,
                    format!("{} is out of range: must be between 0.001 and {most} {unit}", shown_number(value)),
                ));
            }
            if self.pods.is_none() {
                return Err((field, "CPU and memory are asked per pod: give `pods` too".into()));
            }
        }
        if let Some(milli) = self.gpu_milli {
            if milli == 0 || milli >= GPU_MILLI {
                return Err((
                    "gpu_milli",
                    format!(
                        "{milli} is out of range: must be between 1 and {} (a pod of a whole GPU leaves it out)",
                        GPU_MILLI - 1
                    ),
                ));
            }
            if self.pods != Some(self.gpus) {
                return Err(("gpu_milli", "a pod of a shared GPU has one GPU: give `pods` equal to `gpus`".into()));
            }
        }
        if self.hbm_gb_per_gpu > MAX_HBM_GB {
            return Err((
                "hbm_gb_per_gpu",
                format!("{} is out of range: must be at most {MAX_HBM_GB}", self.hbm_gb_per_gpu),
            ));
        }
        let max_hours = MAX_DURATION_S / 3600;
        match (self.duration_h, self.duration_s) {
            (None, None) => return Err(("duration_h", "missing: give duration_h or duration_s".into())),
            (Some(_), Some(_)) => return Err(("duration_s", "give duration_h or duration_s, not both".into())),
            (Some(hours), None) if !hours.is_finite() || hours <= 0.0 || hours > max_hours as f64 => {
                return Err((
                    "duration_h",
                    format!(
                        "{} is out of range: must be more than 0 and at most {max_hours} hours",
                        shown_number(hours)
                    ),
                ));
            }
            (None, Some(seconds)) if seconds == 0 || seconds > MAX_DURATION_S => {
                return Err((
                    "duration_s",
                    format!("{seconds} is out of range: must be between 1 and {MAX_DURATION_S} seconds"),
                ));
            }
            _ => {}
        }
        if let Some(bound) = self.max_latency_ms
            && (bound == 0 || bound > MAX_LATENCY_MS)
        {
            return Err(("max_latency_ms", format!("{bound} is out of range: must be between 1 and {MAX_LATENCY_MS}")));
        }
        check_name(&self.region, true).map_err(|m| ("region", m))?;
        for (field, list) in [("jurisdictions", &self.jurisdictions), ("providers", &self.providers)] {
            if let Some(list) = list {
                if list.is_empty() {
                    return Err((field, "an empty list allows nothing: leave the field out to allow any".into()));
                }
                for name in list {
                    check_name(name, true).map_err(|m| (field, m))?;
                }
            }
        }
        if let Some(day) = self.not_before
            && day > Day::MAX
        {
            return Err(("not_before", format!("day {} is past {}", day.0, Day::MAX)));
        }
        if let Some(submit) = self.submit_s
            && submit > MAX_TRACE_S
        {
            return Err(("submit_s", format!("{submit} is out of range: must be at most {MAX_TRACE_S} seconds")));
        }
        Ok(())
    }
}

/// A jobs JSON file in its object form, `{ "jobs": [ … ] }`; a bare array of jobs is read too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct JobsFile {
    /// The version of the format the file was written in (see [`crate::model::json::FORMAT_VERSION`]);
    /// optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_version: Option<u32>,
    /// The jobs.
    pub jobs: Vec<Job>,
}

/// The two formats of a jobs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobsFormat {
    /// An array of jobs, or `{"jobs": [...]}`.
    Json,
    /// A header line naming the fields, then a job per line.
    Csv,
}

impl JobsFile {
    /// The object form of `jobs`, with this gpuplace's format version.
    pub fn new(jobs: Vec<Job>) -> JobsFile {
        JobsFile { format_version: Some(crate::model::json::FORMAT_VERSION), jobs }
    }
}

impl JobsFormat {
    /// The format a file's name says: `.csv` or `.json` (any case); None for anything else.
    pub fn of_path(path: &std::path::Path) -> Option<JobsFormat> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Some(JobsFormat::Csv),
            "json" => Some(JobsFormat::Json),
            _ => None,
        }
    }

    /// The format of a text: JSON when it starts (after white space) with `[` or `{`, else CSV.
    pub fn of_text(text: &str) -> JobsFormat {
        match crate::model::json::first_char(text) {
            Some('[' | '{') => JobsFormat::Json,
            _ => JobsFormat::Csv,
        }
    }

    fn expect(format: Option<JobsFormat>) -> Expect {
        match format {
            Some(JobsFormat::Json) => Expect::ObjectOrArray,
            Some(JobsFormat::Csv) => Expect::Csv,
            None => Expect::Jobs,
        }
    }
}

/// The field names of the CSV format, in the order `generate` writes them.
pub const CSV_FIELDS: [&str; 19] = [
    "id",
    "kind",
    "gpus",
    "hbm_gb_per_gpu",
    "priority",
    "duration_h",
    "region",
    "max_latency_ms",
    "jurisdictions",
    "providers",
    "not_before",
    "submit_s",
    "duration_s",
    "pods",
    "block",
    "cpu",
    "memory_gb",
    "gpu_milli",
    "tenant",
];

/// Columns a CSV jobs file must have (indices into [`CSV_FIELDS`]).
const CSV_REQUIRED: [usize; 6] = [0, 1, 2, 3, 4, 6];

/// Jobs together with where each came from, so that validation errors can name the record.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Workload {
    /// The jobs, in input order.
    pub jobs: Vec<Job>,
    /// For each job of a CSV file, its line number; empty for JSON and jobs built in Rust, which
    /// errors name by position (`record 3`).
    pub lines: Vec<u64>,
    /// The file name (or `<generated>` / `<api>`).
    pub source_name: String,
}

/// Counts lines as a person does, whatever ends them (`\n`, `\r\n` or a lone `\r`), so that the
/// CSV reader's byte offsets become the line numbers an editor shows.
pub(crate) struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        LineCounter { bytes, offset: 0, line: 1 }
    }

    /// The line of byte offset `at` (offsets must not decrease between calls).
    pub(crate) fn line_at(&mut self, at: u64) -> u64 {
        let at = (at as usize).min(self.bytes.len());
        // A line ends at its `\r` or at a `\n` not preceded by `\r`: the CSV reader may place a
        // record after the `\r` of a `\r\n`.
        while self.offset < at {
            match self.bytes[self.offset] {
                b'\r' => self.line += 1,
                b'\n' if self.offset == 0 || self.bytes[self.offset - 1] != b'\r' => self.line += 1,
                _ => {}
            }
            self.offset += 1;
        }
        self.line
    }
}

/// [`ONE_DOMAIN_PREFERRED`] when the job's pods fit one rack (one NVLink domain) of some rack type
/// of the fleet's clusters and span racks on another, else 0 (where it may go, its shape alone
/// decides). From the rack types' nominal nodes, whatever is in use or needed otherwise (HBM,
/// latency …): a job whose only one-domain racks it cannot use is relaxed at once.
fn one_domain_rule(job: &JobGpu, fleet: &Fleet) -> u32 {
    let (mut one, mut spans) = (false, false);
    for cluster in &fleet.clusters {
        let t = &fleet.rack_types[cluster.rack_type];
        let packed = job_shape(job, t.node_gpus);
        let per_rack = pods_on_rack_of(job, packed, t.node_gpus, t.nodes, t.node_cpu_milli, t.node_memory_mib);
        if per_rack == 0 {
            continue;
        }
        if spans_racks(unpack_shape(packed), per_rack) {
            spans = true;
        } else {
            one = true;
        }
        if one && spans {
            return ONE_DOMAIN_PREFERRED;
        }
    }
    0
}

impl Workload {
    /// Wraps jobs built in Rust.
    pub fn from_jobs(jobs: Vec<Job>, source_name: &str) -> Workload {
        Workload { jobs, lines: Vec::new(), source_name: source_name.to_string() }
    }

    /// How errors name job `i`: `line 12` for CSV, `record 3` otherwise.
    pub fn record_name(&self, i: usize) -> String {
        match self.lines.get(i) {
            Some(line) => format!("line {line}"),
            None => format!("record {i}"),
        }
    }

    /// Reads a jobs file: CSV when its name ends in `.csv`, JSON when it ends in `.json`, else
    /// whichever its content is (JSON starts with `[` or `{`).
    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<Workload> {
        Workload::from_path_as(path, None)
    }

    /// Reads a jobs file in `format`, or as [`Workload::from_path`] decides when None.
    pub fn from_path_as(path: impl AsRef<std::path::Path>, format: Option<JobsFormat>) -> Result<Workload> {
        let path = path.as_ref();
        let format = format.or_else(|| JobsFormat::of_path(path));
        let text = read_input(path, MAX_JOBS_BYTES, JobsFormat::expect(format))?;
        Workload::from_text(&text, &path.display().to_string(), format)
    }

    /// Reads jobs from `reader` (standard input, say), named `source_name` in errors, in `format`
    /// or whichever its content is; with the limits of a file.
    pub fn from_reader(reader: impl std::io::Read, source_name: &str, format: Option<JobsFormat>) -> Result<Workload> {
        let text = read_input_from(reader, source_name, MAX_JOBS_BYTES, JobsFormat::expect(format))?;
        Workload::from_text(&text, source_name, format)
    }

    fn from_text(text: &str, source_name: &str, format: Option<JobsFormat>) -> Result<Workload> {
        match format.unwrap_or_else(|| JobsFormat::of_text(text)) {
            JobsFormat::Csv => Workload::from_csv(text, source_name),
            JobsFormat::Json => Workload::from_json(text, source_name),
        }
    }

    /// Parses jobs JSON: an array of jobs, or an object `{"jobs": [...]}`.
    pub fn from_json(text: &str, source_name: &str) -> Result<Workload> {
        let jobs: Vec<Job> = match crate::model::json::first_char(text) {
            Some('[') => crate::model::json::parse_json(text, source_name)?,
            Some('{') => {
                let file = crate::model::json::parse_json::<JobsFile>(text, source_name)?;
                crate::model::json::check_format_version(source_name, file.format_version)?;
                file.jobs
            }
            other => {
                let found = if other.is_none() { "an empty file" } else { "something else" };
                return Err(InputError::new(
                    source_name,
                    "document",
                    "(top level)",
                    format!("expected an array of jobs or an object {{\"jobs\": [...]}}, found {found}"),
                )
                .into());
            }
        };
        let workload = Workload::from_jobs(jobs, source_name);
        workload.check_size()?;
        Ok(workload)
    }

    /// Parses jobs CSV: a header naming the fields (any order, the optional ones may be left out),
    /// then one job per line; list fields are separated by `|`; an empty cell is an absent value.
    pub fn from_csv(text: &str, source_name: &str) -> Result<Workload> {
        let text = crate::model::json::without_bom(text);
        let mut reader = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(text.as_bytes());
        let header_error = |message: String| InputError::new(source_name, "line 1", "(header)", message);
        let headers = reader.headers().map_err(|e| header_error(e.to_string()))?.clone();
        let mut column = [None; CSV_FIELDS.len()];
        for (i, name) in headers.iter().enumerate() {
            let field = CSV_FIELDS
                .iter()
                .position(|f| *f == name)
                .ok_or_else(|| header_error(format!("unknown column `{}`", shown(name))))?;
            if column[field].replace(i).is_some() {
                return Err(header_error(format!("column `{}` appears twice", shown(name))).into());
            }
        }
        for field in CSV_REQUIRED {
            if column[field].is_none() {
                return Err(header_error(format!("missing required column `{}`", CSV_FIELDS[field])).into());
            }
        }
        let mut lines_of = LineCounter::new(text.as_bytes());
        let mut jobs = Vec::new();
        let mut lines = Vec::new();
        for row in reader.records() {
            let row = row.map_err(|e| {
                let line = LineCounter::new(text.as_bytes()).line_at(e.position().map_or(0, |p| p.byte()));
                InputError::new(source_name, format!("line {line}"), "(row)", format!("malformed CSV: {e}"))
            })?;
            let line = lines_of.line_at(row.position().map_or(0, |p| p.byte()));
            if jobs.len() == MAX_JOBS {
                return Err(InputError::new(
                    source_name,
                    format!("line {line}"),
                    "(row)",
                    format!("more than {MAX_JOBS} jobs, the most gpuplace accepts in one workload"),
                )
                .into());
            }
            let record = format!("line {line}");
            let cell = |field: usize| column[field].and_then(|i| row.get(i)).unwrap_or("");
            let err = |field: usize, message: String| InputError::new(source_name, &record, CSV_FIELDS[field], message);
            let parse_u32 = |field: usize| -> std::result::Result<u32, InputError> {
                cell(field).parse::<u32>().map_err(|_| {
                    err(field, format!("`{}` is not a whole number from 0 to {}", shown(cell(field)), u32::MAX))
                })
            };
            let optional = |field: usize| Some(cell(field)).filter(|text| !text.is_empty());
            let parse_u64 = |field: usize| -> std::result::Result<u64, InputError> {
                cell(field)
                    .parse::<u64>()
                    .map_err(|_| err(field, format!("`{}` is not a whole number", shown(cell(field)))))
            };
            let list = |field: usize| {
                optional(field).map(|text| text.split('|').map(|s| s.trim().to_string()).collect::<Vec<_>>())
            };
            let kind_text = cell(1);
            let job = Job {
                id: cell(0).to_string(),
                kind: JobKind::parse(kind_text).ok_or_else(|| {
                    err(
                        1,
                        format!(
                            "unknown kind `{}`: expected inference, agentic, multimodal or training",
                            shown(kind_text)
                        ),
                    )
                })?,
                gpus: parse_u32(2)?,
                hbm_gb_per_gpu: parse_u32(3)?,
                priority: cell(4)
                    .parse::<i32>()
                    .map_err(|_| err(4, format!("`{}` is not a whole number", shown(cell(4)))))?,
                duration_h: optional(5)
                    .map(|text| text.parse::<f64>().map_err(|_| err(5, format!("`{}` is not a number", shown(text)))))
                    .transpose()?,
                region: cell(6).to_string(),
                max_latency_ms: optional(7).map(|_| parse_u32(7)).transpose()?,
                jurisdictions: list(8),
                providers: list(9),
                not_before: optional(10).map(|text| Day::parse(text).map_err(|m| err(10, m))).transpose()?,
                submit_s: optional(11).map(|_| parse_u64(11)).transpose()?,
                duration_s: optional(12).map(|_| parse_u64(12)).transpose()?,
                pods: optional(13).map(|_| parse_u32(13)).transpose()?,
                block: optional(14)
                    .map(|text| match text {
                        "required" => Ok(BlockRule::Required),
                        "preferred" => Ok(BlockRule::Preferred),
                        other => Err(err(14, format!("`{}` is not required or preferred", shown(other)))),
                    })
                    .transpose()?,
                cpu: optional(15)
                    .map(|text| text.parse::<f64>().map_err(|_| err(15, format!("`{}` is not a number", shown(text)))))
                    .transpose()?,
                memory_gb: optional(16)
                    .map(|text| text.parse::<f64>().map_err(|_| err(16, format!("`{}` is not a number", shown(text)))))
                    .transpose()?,
                gpu_milli: optional(17).map(|_| parse_u32(17)).transpose()?,
                tenant: optional(18).map(str::to_string),
            };
            jobs.push(job);
            lines.push(line);
        }
        Ok(Workload { jobs, lines, source_name: source_name.to_string() })
    }

    /// The jobs as JSON (`{"jobs": [...]}`), after checking that they load back ([`Workload::validate`]).
    pub fn to_json(&self) -> std::result::Result<String, InputError> {
        self.validate()?;
        let mut out = Vec::new();
        self.write_json(&mut out).expect("writing to memory");
        Ok(String::from_utf8(out).expect("JSON is UTF-8"))
    }

    /// The jobs as CSV with the header [`CSV_FIELDS`], after checking that they load back
    /// ([`Workload::validate`]; a `|` inside a list item could not be told from the separator).
    pub fn to_csv(&self) -> std::result::Result<String, InputError> {
        self.validate()?;
        let mut out = Vec::new();
        self.write_csv(&mut out).expect("writing to memory");
        Ok(String::from_utf8(out).expect("CSV of UTF-8 strings"))
    }

    /// Streams the jobs as pretty JSON (`{"format_version": 1, "jobs": [...]}`) and a final newline. Call
    /// [`Workload::validate`] first: this writes whatever the jobs hold.
    pub fn write_json(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            format_version: u32,
            jobs: &'a [Job],
        }
        let file = Borrowed { format_version: crate::model::json::FORMAT_VERSION, jobs: &self.jobs };
        serde_json::to_writer_pretty(&mut *out, &file)?;
        out.write_all(b"\n")
    }

    /// Streams the jobs in `format` ([`Workload::write_json`], [`Workload::write_csv`]). Call
    /// [`Workload::validate`] first.
    pub fn write_as(&self, format: JobsFormat, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        match format {
            JobsFormat::Json => self.write_json(out),
            JobsFormat::Csv => self.write_csv(out),
        }
    }

    /// Streams the jobs as CSV with the header [`CSV_FIELDS`]. Call [`Workload::validate`] first.
    pub fn write_csv(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let mut writer = csv::Writer::from_writer(out);
        writer.write_record(CSV_FIELDS)?;
        let list = |values: &Option<Vec<String>>| values.as_ref().map_or(String::new(), |v| v.join("|"));
        let number = |value: Option<u64>| value.map_or(String::new(), |v| v.to_string());
        for job in &self.jobs {
            writer.write_record([
                job.id.as_str(),
                job.kind.name(),
                &job.gpus.to_string(),
                &job.hbm_gb_per_gpu.to_string(),
                &job.priority.to_string(),
                &job.duration_h.map_or(String::new(), |v| v.to_string()),
                &job.region,
                &number(job.max_latency_ms.map(u64::from)),
                &list(&job.jurisdictions),
                &list(&job.providers),
                &job.not_before.map_or(String::new(), |day| day.to_string()),
                &number(job.submit_s),
                &number(job.duration_s),
                &number(job.pods.map(u64::from)),
                job.block.map_or("", BlockRule::name),
                &job.cpu.map_or(String::new(), |v| v.to_string()),
                &job.memory_gb.map_or(String::new(), |v| v.to_string()),
                &number(job.gpu_milli.map(u64::from)),
                job.tenant.as_deref().unwrap_or(""),
            ])?;
        }
        writer.flush()
    }

    fn check_size(&self) -> std::result::Result<(), InputError> {
        if self.jobs.len() > MAX_JOBS {
            return Err(InputError::new(
                &self.source_name,
                "document",
                "(top level)",
                format!("{} jobs: at most {MAX_JOBS} are accepted in one workload", self.jobs.len()),
            ));
        }
        Ok(())
    }

    /// The name of job `i` in errors: `job `a` (record 3)`, or the bare record when the id is unusable.
    pub(crate) fn error_record(&self, i: usize) -> String {
        let record = self.record_name(i);
        let id = &self.jobs[i].id;
        if check_name(id, false).is_ok() { format!("job `{}` ({record})", shown(id)) } else { record }
    }

    /// Checks every job on its own and that ids are unique: everything that does not depend on a
    /// fleet. Every file gpuplace writes passes this (and [`Workload::compile`] against its fleet).
    pub fn validate(&self) -> std::result::Result<(), InputError> {
        self.check_size()?;
        let mut ids = HashSet::with_capacity(self.jobs.len());
        for (i, job) in self.jobs.iter().enumerate() {
            job.check()
                .map_err(|(field, message)| InputError::new(&self.source_name, self.error_record(i), field, message))?;
            if !ids.insert(job.id.as_str()) {
                return Err(InputError::new(
                    &self.source_name,
                    self.error_record(i),
                    "id",
                    format!("duplicate job id `{}`", shown(&job.id)),
                ));
            }
        }
        Ok(())
    }

    /// Validates every job ([`Workload::validate`]) and against the fleet, and compiles it for the
    /// scorer. `at` is the placement date. Errors name the file, the record and the field.
    pub fn compile(&self, fleet: &Fleet, policy: &Policy, at: Day) -> std::result::Result<Vec<JobGpu>, InputError> {
        self.validate()?;
        // The fragmentation term's typical pods: this workload's, one per job.
        let frag_mix = self.frag_mix();
        // Jobs compile independently, on all cores; the first error in file order is the one reported.
        let compiled: Vec<std::result::Result<JobGpu, InputError>> = self
            .jobs
            .par_iter()
            .enumerate()
            .map(|(i, job)| {
                // Built only on the error path: formatting a name per job would cost more than compiling it.
                let err = |field: &str, message: String| {
                    InputError::new(&self.source_name, self.error_record(i), field, message)
                };
                let region = fleet.region_index(&job.region).ok_or_else(|| {
                    err(
                        "region",
                        format!(
                            "unknown region `{}`: the fleet knows {}",
                            shown(&job.region),
                            fleet.regions.join(", ")
                        ),
                    )
                })?;
                let jurisdiction_mask = tag_mask(&job.jurisdictions, &fleet.jurisdictions).map_err(|name| {
                    err(
                        "jurisdictions",
                        format!(
                            "unknown jurisdiction `{}`: the fleet has {}",
                            shown(&name),
                            fleet.jurisdictions.join(", ")
                        ),
                    )
                })?;
                let provider_mask = tag_mask(&job.providers, &fleet.providers).map_err(|name| {
                    err(
                        "providers",
                        format!("unknown provider `{}`: the fleet has {}", shown(&name), fleet.providers.join(", ")),
                    )
                })?;
                let not_before = job.not_before;
                // A job without a latency bound is steered by latency only when the policy says how.
                let mut weights = policy.weights(job.kind).0;
                let latency_ref_ms = match job.max_latency_ms.or(policy.latency_ref_ms) {
                    Some(reference) => reference,
                    None => {
                        weights[crate::kernel::score::TERM_LATENCY as usize] = 0;
                        MAX_LATENCY_MS
                    }
                };
                let shapes = job_tables(job.gpus, job.pods.unwrap_or(0), job.pod_gpus());
                let gpu_milli = job.gpu_milli.unwrap_or(0);
                let mut compiled = JobGpu {
                    gpus: job.gpus_held(),
                    pods: job.pods.unwrap_or(0),
                    pod_gpus: job.pod_gpus(),
                    shapes,
                    hbm_gb: job.hbm_gb_per_gpu,
                    region: region as u32,
                    latency_limit_ms: job.max_latency_ms.unwrap_or(MAX_LATENCY_MS),
                    latency_ref_ms,
                    inv_latency_ref_q16: inv_q16(latency_ref_ms),
                    jurisdiction_mask,
                    provider_mask,
                    ready_day: not_before.map_or(at, |d| d.max(at)).0,
                    random_salt: random_salt(policy.seed, &job.id),
                    block_rule: BlockRule::code(job.block),
                    frag_mix,
                    pod_cpu_milli: job.pod_resources()[0],
                    pod_memory_mib: job.pod_resources()[1],
                    gpu_milli,
                    pods_per_gpu: GPU_MILLI.checked_div(gpu_milli).unwrap_or(0),
                    one_domain: 0,
                    weights,
                };
                if policy.prefer_one_domain {
                    compiled.one_domain = one_domain_rule(&compiled, fleet);
                }
                Ok(compiled)
            })
            .collect();
        compiled.into_iter().collect()
    }

    /// The table of typical pods the fragmentation term weighs: the share of this workload's jobs
    /// by the GPUs of their pods ([`crate::kernel::score::frag_bucket`]).
    pub fn frag_mix(&self) -> [u32; 3] {
        let mut counts = [0u64; FRAG_BUCKETS as usize];
        for job in &self.jobs {
            counts[frag_bucket(job.gpus, job.pod_gpus()) as usize] += 1;
        }
        pack_frag_mix(&counts)
    }
}

/// The per-job seed of the random term: FNV-1a of the job id, mixed with the policy's seed, so a
/// job draws the same values whatever else is in the workload.
fn random_salt(seed: u64, id: &str) -> u32 {
    let mut hash: u32 = 0x811C_9DC5;
    for byte in id.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    mix(hash ^ mix(seed as u32 ^ mix((seed >> 32) as u32)))
}

/// The bit set of `names` within `known`; all ones when `names` is absent. Err(name) for an unknown
/// name. (An empty list is refused by validation.)
fn tag_mask(names: &Option<Vec<String>>, known: &[String]) -> std::result::Result<u32, String> {
    let Some(names) = names else {
        return Ok(u32::MAX);
    };
    let mut mask = 0u32;
    for name in names {
        let index = known.iter().position(|k| k == name).ok_or_else(|| name.clone())?;
        mask |= 1 << index;
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_are_counted_whatever_ends_them() {
        for newline in ["\n", "\r\n", "\r"] {
            let text = [
                "id,kind,gpus,hbm_gb_per_gpu,priority,duration_h,region",
                "a,inference,8,1,1,1,r",
                "b,inference,x,1,1,1,r",
                "",
            ]
            .join(newline);
            let err = Workload::from_csv(&text, "t.csv").unwrap_err();
            assert!(err.to_string().contains("line 3: field `gpus`"), "{newline:?}: {err}");
        }
    }
}
