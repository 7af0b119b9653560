//! Jobs: what is to be placed, read from JSON or CSV, validated against a fleet, and compiled into
//! the kernel's [`JobGpu`] records.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::date::Day;
use crate::error::{InputError, Result};
use crate::fleet::{Fleet, MAX_LATENCY_MS};
use crate::policy::Policy;
use crate::score::{JobGpu, inv_q16};

/// The most GPUs one job may ask for.
pub const MAX_JOB_GPUS: u32 = 65_535;

/// What kind of AI work a job is; each kind has its own policy weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Serving a model to users.
    Inference,
    /// Multi-step agents calling models and tools.
    Agentic,
    /// Image, audio or video models.
    Multimodal,
    /// Pre-training or fine-tuning.
    Training,
}

impl JobKind {
    /// Every kind, in report order.
    pub const ALL: [JobKind; 4] = [JobKind::Inference, JobKind::Agentic, JobKind::Multimodal, JobKind::Training];

    /// The kind's name as written in files.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Inference => "inference",
            JobKind::Agentic => "agentic",
            JobKind::Multimodal => "multimodal",
            JobKind::Training => "training",
        }
    }

    /// Parses a kind's name.
    pub fn parse(text: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.name() == text)
    }
}

/// A job, with exactly the file format's field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Unique id.
    pub id: String,
    /// Kind of work.
    pub kind: JobKind,
    /// GPUs, all or nothing; more than one rack's GPUs takes whole free racks of one cluster.
    pub gpus: u32,
    /// HBM needed per GPU, GB.
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
    pub max_latency_ms: Option<u32>,
    /// Allowed jurisdictions (data residency); any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdictions: Option<Vec<String>>,
    /// Allowed providers; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<String>>,
    /// Earliest start date, `YYYY-MM-DD`: the job may use capacity that is online by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// Arrival time in seconds from the start of a trace (`gpuplace replay`); 0 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_s: Option<u64>,
    /// Run time in seconds. Give this or `duration_h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u64>,
}

impl Job {
    /// The run time in seconds: `duration_s`, else `duration_h` × 3600 rounded (validated jobs have
    /// exactly one of them).
    pub fn duration_seconds(&self) -> u64 {
        self.duration_s.unwrap_or_else(|| (self.duration_h.unwrap_or(0.0) * 3600.0).round() as u64)
    }
}

/// A jobs JSON file: `{ "jobs": [ … ] }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsFile {
    /// The jobs.
    pub jobs: Vec<Job>,
}

/// The field names of the CSV format, in the order `generate` writes them.
pub const CSV_FIELDS: [&str; 13] = [
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
];

/// Columns a CSV jobs file must have (indices into [`CSV_FIELDS`]).
const CSV_REQUIRED: [usize; 6] = [0, 1, 2, 3, 4, 6];

/// Jobs together with where each came from, so that validation errors can name the record.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// The jobs, in input order.
    pub jobs: Vec<Job>,
    /// For each job of a CSV file, its line number; empty for JSON and jobs built in Rust, which
    /// errors name by position (`record 3`).
    pub lines: Vec<u64>,
    /// The file name (or `<generated>` / `<api>`).
    pub source_name: String,
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

    /// Reads a jobs file: CSV when its extension is `.csv`, JSON otherwise.
    pub fn from_path(path: &std::path::Path) -> Result<Workload> {
        let text = crate::error::read_input(path)?;
        let name = path.display().to_string();
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
            Workload::from_csv(&text, &name)
        } else {
            Workload::from_json(&text, &name)
        }
    }

    /// Parses jobs JSON.
    pub fn from_json(text: &str, source_name: &str) -> Result<Workload> {
        let file: JobsFile = crate::error::parse_json(text, source_name)?;
        Ok(Workload::from_jobs(file.jobs, source_name))
    }

    /// Parses jobs CSV: a header naming the fields (any order, the optional ones may be left out),
    /// then one job per line; list fields are separated by `|`; an empty cell is an absent value.
    pub fn from_csv(text: &str, source_name: &str) -> Result<Workload> {
        let mut reader = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(text.as_bytes());
        let header_error = |message: String| InputError::new(source_name, "line 1", "(header)", message);
        let headers = reader.headers().map_err(|e| header_error(e.to_string()))?.clone();
        let mut column = [None; CSV_FIELDS.len()];
        for (i, name) in headers.iter().enumerate() {
            let field = CSV_FIELDS
                .iter()
                .position(|f| *f == name)
                .ok_or_else(|| header_error(format!("unknown column `{name}`")))?;
            if column[field].replace(i).is_some() {
                return Err(header_error(format!("column `{name}` appears twice")).into());
            }
        }
        for field in CSV_REQUIRED {
            if column[field].is_none() {
                return Err(header_error(format!("missing required column `{}`", CSV_FIELDS[field])).into());
            }
        }
        let mut jobs = Vec::new();
        let mut lines = Vec::new();
        for row in reader.records() {
            let row = row.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                InputError::new(source_name, format!("line {line}"), "(row)", format!("malformed CSV: {e}"))
            })?;
            let line = row.position().map_or(0, |p| p.line());
            let record = format!("line {line}");
            let cell = |field: usize| column[field].and_then(|i| row.get(i)).unwrap_or("");
            let err = |field: usize, message: String| InputError::new(source_name, &record, CSV_FIELDS[field], message);
            let parse_u32 = |field: usize| -> std::result::Result<u32, InputError> {
                cell(field)
                    .parse::<u32>()
                    .map_err(|_| err(field, format!("`{}` is not a whole number from 0 to {}", cell(field), u32::MAX)))
            };
            let optional = |field: usize| Some(cell(field)).filter(|text| !text.is_empty());
            let parse_u64 = |field: usize| -> std::result::Result<u64, InputError> {
                cell(field).parse::<u64>().map_err(|_| err(field, format!("`{}` is not a whole number", cell(field))))
            };
            let list = |field: usize| {
                optional(field).map(|text| text.split('|').map(|s| s.trim().to_string()).collect::<Vec<_>>())
            };
            let kind_text = cell(1);
            let job = Job {
                id: cell(0).to_string(),
                kind: JobKind::parse(kind_text).ok_or_else(|| {
                    err(1, format!("unknown kind `{kind_text}`: expected inference, agentic, multimodal or training"))
                })?,
                gpus: parse_u32(2)?,
                hbm_gb_per_gpu: parse_u32(3)?,
                priority: cell(4).parse::<i32>().map_err(|_| err(4, format!("`{}` is not a whole number", cell(4))))?,
                duration_h: optional(5)
                    .map(|text| text.parse::<f64>().map_err(|_| err(5, format!("`{text}` is not a number"))))
                    .transpose()?,
                region: cell(6).to_string(),
                max_latency_ms: optional(7).map(|_| parse_u32(7)).transpose()?,
                jurisdictions: list(8),
                providers: list(9),
                not_before: optional(10).map(str::to_string),
                submit_s: optional(11).map(|_| parse_u64(11)).transpose()?,
                duration_s: optional(12).map(|_| parse_u64(12)).transpose()?,
            };
            jobs.push(job);
            lines.push(line);
        }
        Ok(Workload { jobs, lines, source_name: source_name.to_string() })
    }

    /// Writes the jobs as JSON (`{"jobs": [...]}`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&JobsFile { jobs: self.jobs.clone() }).expect("jobs always serialize")
    }

    /// Writes the jobs as CSV with the header [`CSV_FIELDS`].
    pub fn to_csv(&self) -> String {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(CSV_FIELDS).expect("writing to memory");
        for job in &self.jobs {
            let list = |values: &Option<Vec<String>>| values.as_ref().map_or(String::new(), |v| v.join("|"));
            writer
                .write_record([
                    job.id.clone(),
                    job.kind.name().to_string(),
                    job.gpus.to_string(),
                    job.hbm_gb_per_gpu.to_string(),
                    job.priority.to_string(),
                    job.duration_h.map_or(String::new(), |v| v.to_string()),
                    job.region.clone(),
                    job.max_latency_ms.map_or(String::new(), |v| v.to_string()),
                    list(&job.jurisdictions),
                    list(&job.providers),
                    job.not_before.clone().unwrap_or_default(),
                    job.submit_s.map_or(String::new(), |v| v.to_string()),
                    job.duration_s.map_or(String::new(), |v| v.to_string()),
                ])
                .expect("writing to memory");
        }
        String::from_utf8(writer.into_inner().expect("writing to memory")).expect("CSV of UTF-8 strings")
    }

    /// Validates every job against the fleet and compiles it for the scorer. `at` is the placement
    /// date. Errors name the file, the record and the field.
    pub fn compile(&self, fleet: &Fleet, policy: &Policy, at: Day) -> std::result::Result<Vec<JobGpu>, InputError> {
        let src = self.source_name.as_str();
        let mut ids = HashSet::with_capacity(self.jobs.len());
        let mut compiled = Vec::with_capacity(self.jobs.len());
        for (i, job) in self.jobs.iter().enumerate() {
            // Built only on the error path: formatting a name per job would cost more than compiling it.
            let err = |field: &str, message: String| {
                let record = self.record_name(i);
                let record = if job.id.is_empty() { record } else { format!("job `{}` ({record})", job.id) };
                InputError::new(src, record, field, message)
            };
            if job.id.is_empty() {
                return Err(err("id", "must not be empty".into()));
            }
            if !ids.insert(job.id.as_str()) {
                return Err(err("id", format!("duplicate job id `{}`", job.id)));
            }
            if job.gpus == 0 || job.gpus > MAX_JOB_GPUS {
                return Err(err("gpus", format!("{} is out of range: must be between 1 and {MAX_JOB_GPUS}", job.gpus)));
            }
            if job.hbm_gb_per_gpu > crate::fleet::MAX_HBM_GB {
                return Err(err(
                    "hbm_gb_per_gpu",
                    format!("{} is out of range: must be at most {}", job.hbm_gb_per_gpu, crate::fleet::MAX_HBM_GB),
                ));
            }
            match (job.duration_h, job.duration_s) {
                (None, None) => return Err(err("duration_h", "missing: give duration_h or duration_s".into())),
                (Some(_), Some(_)) => {
                    return Err(err("duration_s", "give duration_h or duration_s, not both".into()));
                }
                (Some(hours), None) if !hours.is_finite() || hours <= 0.0 || hours > 1_000_000.0 => {
                    return Err(err(
                        "duration_h",
                        format!("{hours} is out of range: must be more than 0 and at most 1000000 hours"),
                    ));
                }
                (None, Some(seconds)) if seconds == 0 || seconds > 3_600_000_000 => {
                    return Err(err(
                        "duration_s",
                        format!("{seconds} is out of range: must be between 1 and 3600000000 seconds"),
                    ));
                }
                _ => {}
            }
            let region = fleet.region_index(&job.region).ok_or_else(|| {
                err("region", format!("unknown region `{}`: the fleet knows {}", job.region, fleet.regions.join(", ")))
            })?;
            if let Some(bound) = job.max_latency_ms
                && (bound == 0 || bound > MAX_LATENCY_MS)
            {
                return Err(err(
                    "max_latency_ms",
                    format!("{bound} is out of range: must be between 1 and {MAX_LATENCY_MS}"),
                ));
            }
            let jurisdiction_mask = tag_mask(&job.jurisdictions, &fleet.jurisdictions).map_err(|name| {
                err(
                    "jurisdictions",
                    format!("unknown jurisdiction `{name}`: the fleet has {}", fleet.jurisdictions.join(", ")),
                )
            })?;
            let provider_mask = tag_mask(&job.providers, &fleet.providers).map_err(|name| {
                err("providers", format!("unknown provider `{name}`: the fleet has {}", fleet.providers.join(", ")))
            })?;
            let not_before = match &job.not_before {
                Some(text) => Some(Day::parse(text).map_err(|m| err("not_before", m))?),
                None => None,
            };
            let weights = policy.weights(job.kind);
            let latency_ref_ms = job.max_latency_ms.unwrap_or(policy.latency_ref_ms);
            compiled.push(JobGpu {
                gpus: job.gpus,
                hbm_gb: job.hbm_gb_per_gpu,
                region: region as u32,
                latency_limit_ms: job.max_latency_ms.unwrap_or(MAX_LATENCY_MS),
                latency_ref_ms,
                inv_latency_ref_q16: inv_q16(latency_ref_ms),
                jurisdiction_mask,
                provider_mask,
                ready_day: not_before.map_or(at, |d| d.max(at)).0,
                w_pack: weights.pack,
                w_spread: weights.spread,
                w_latency: weights.latency,
                w_energy: weights.energy,
                w_carbon: weights.carbon,
                w_hbm: weights.hbm,
                w_random: weights.random,
                random_salt: random_salt(policy.seed, &job.id),
                _pad0: 0,
                _pad1: 0,
                _pad2: 0,
            });
        }
        Ok(compiled)
    }
}

/// The per-job seed of the random term: FNV-1a of the job id, mixed with the policy's seed, so a
/// job draws the same values whatever else is in the workload.
fn random_salt(seed: u64, id: &str) -> u32 {
    let mut hash: u32 = 0x811C_9DC5;
    for byte in id.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    crate::score::mix(hash ^ crate::score::mix(seed as u32 ^ crate::score::mix((seed >> 32) as u32)))
}

/// The bit set of `names` within `known`; all ones when `names` is absent. Err(name) for an unknown
/// name. An empty list is allowed and matches nothing (the job is then reported unplaceable).
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
