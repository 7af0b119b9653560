//! Importers of public workload traces into gpuplace's job (and fleet) format, with documented,
//! deterministic mappings. Malformed or truncated rows are counted and reported with their line
//! numbers; with `strict` the first one is an error naming the file, the line and the field.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::error::InputError;
use crate::kernel::limits::{
    MAX_CLUSTER_RACKS, MAX_HBM_GB, MAX_JOB_GPUS, MAX_LATENCY_MS, MAX_NODE_CPU_MILLI, MAX_NODE_GPUS, MAX_NODE_MEMORY_MIB,
};
use crate::model::date::Day;
use crate::model::fleet::{ClusterFile, Fleet, FleetFile, RackTypeFile, SiteFile};
use crate::model::jobs::{Job, MAX_DURATION_S, MAX_JOBS, MAX_TRACE_S, Workload};
use crate::model::json::{check_name, shown};
use crate::model::kind::JobKind;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ImportReport {
    /// Data rows read (header excluded).
    pub rows: usize,
    /// Jobs (or racks) produced.
    pub imported: usize,
    /// Rows skipped on purpose, by reason (e.g. pods with 0 GPUs).
    pub skipped: BTreeMap<String, usize>,
    /// Malformed rows: (line, what is wrong).
    pub malformed: Vec<(u64, String)>,
    /// Mapping notes worth knowing (counts of approximations).
    pub notes: Vec<String>,
}

impl ImportReport {
    /// One line per fact, for people.
    pub fn summary(&self) -> String {
        let mut lines = vec![format!("{} rows read, {} imported", self.rows, self.imported)];
        for (why, count) in &self.skipped {
            lines.push(format!("{count} skipped: {why}"));
        }
        if !self.malformed.is_empty() {
            let shown: Vec<String> =
                self.malformed.iter().take(10).map(|(line, what)| format!("line {line}: {what}")).collect();
            let more = self.malformed.len().saturating_sub(10);
            lines.push(format!(
                "{} malformed rows skipped ({}{})",
                self.malformed.len(),
                shown.join("; "),
                if more > 0 { format!("; and {more} more") } else { String::new() }
            ));
        }
        lines.extend(self.notes.iter().cloned());
        lines.join("\n")
    }
}

/// One CSV row, with its fields looked up by column name.
pub(crate) struct Row<'a> {
    record: &'a csv::StringRecord,
    columns: &'a BTreeMap<String, usize>,
}

impl<'a> Row<'a> {
    /// The field of column `name` ("" when absent).
    pub(crate) fn get(&self, name: &str) -> &'a str {
        self.columns.get(name).and_then(|&i| self.record.get(i)).unwrap_or("")
    }
}

/// Reads CSV rows with a header, handing each (line, field lookup) to `row`; malformed rows are
/// recorded (or, with `strict`, returned as an error). `row` returns the field and what is wrong.
/// A row that is not valid UTF-8 is malformed like any other.
pub(crate) fn read_rows(
    data: &[u8],
    source_name: &str,
    required: &[&str],
    strict: bool,
    report: &mut ImportReport,
    mut row: impl FnMut(u64, &Row) -> Result<(), (String, String)>,
) -> Result<(), InputError> {
    let data = data.strip_prefix("\u{FEFF}".as_bytes()).unwrap_or(data);
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(data);
    let headers = reader
        .headers()
        .map_err(|e| InputError::new(source_name, "line 1", "(header)", shown(&e.to_string())))?
        .clone();
    let columns: BTreeMap<String, usize> = headers.iter().enumerate().map(|(i, h)| (h.to_string(), i)).collect();
    for name in required {
        if !columns.contains_key(*name) {
            return Err(InputError::new(source_name, "line 1", *name, "missing column"));
        }
    }
    let mut lines = crate::model::jobs::LineCounter::new(data);
    let mut bytes = csv::ByteRecord::new();
    loop {
        let (line, outcome) = match reader.read_byte_record(&mut bytes) {
            Ok(false) => break,
            Err(e) => (lines.line_at(e.position().map_or(0, |p| p.byte())), Err(("(row)".to_string(), e.to_string()))),
            Ok(true) => {
                let line = lines.line_at(bytes.position().map_or(0, |p| p.byte()));
                match csv::StringRecord::from_byte_record(bytes.clone()) {
                    Err(_) => (line, Err(("(row)".to_string(), "not valid UTF-8".to_string()))),
                    Ok(record) if record.len() != headers.len() => (
                        line,
                        Err(("(row)".to_string(), format!("{} fields, expected {}", record.len(), headers.len()))),
                    ),
                    Ok(record) => (line, row(line, &Row { record: &record, columns: &columns })),
                }
            }
        };
        report.rows += 1;
        if let Err((field, message)) = outcome {
            if strict {
                return Err(InputError::new(source_name, format!("line {line}"), field, message));
            }
            report.malformed.push((line, format!("{field}: {message}")));
        }
    }
    Ok(())
}

/// A number in column `field`: malformed when it does not parse, saying whether it is out of the
/// type's range or not a number at all.
pub(crate) fn number<T: std::str::FromStr>(row: &Row, field: &str) -> Result<T, (String, String)> {
    let text = row.get(field).trim();
    text.parse::<T>().map_err(|_| {
        let message = if text.parse::<i128>().is_ok() || (text.len() > 38 && text.bytes().all(|b| b.is_ascii_digit())) {
            format!("{} is out of range", shown(text))
        } else {
            format!("`{}` is not a valid number", shown(text))
        };
        (field.to_string(), message)
    })
}

/// An optional resource column (`cpu_milli`, `memory_mib`): None when absent, empty or 0, else the
/// value, at most `most`.
fn resource(row: &Row, field: &str, most: u32) -> Result<Option<u32>, (String, String)> {
    if row.get(field).trim().is_empty() {
        return Ok(None);
    }
    let value: u32 = number(row, field)?;
    if value > most {
        return Err((field.to_string(), format!("{value} is out of range: at most {most}")));
    }
    Ok((value != 0).then_some(value))
}

/// Reads a trace file for the importers: at most 4 GiB (an endless or larger input is refused with
/// the limit named), and CSV from its first bytes (a header line within the first MiB).
pub fn read_trace(path: impl AsRef<std::path::Path>) -> crate::error::Result<Vec<u8>> {
    crate::model::json::read_bytes(path.as_ref(), crate::model::json::MAX_JOBS_BYTES, crate::model::json::Expect::Csv)
}

/// [`read_trace`] from a reader (standard input), named `name` in errors.
pub fn read_trace_from(reader: impl std::io::Read, name: &str) -> crate::error::Result<Vec<u8>> {
    crate::model::json::read_bytes_from(
        reader,
        name,
        0,
        crate::model::json::MAX_JOBS_BYTES,
        crate::model::json::Expect::Csv,
    )
}

/// The region the Alibaba importers use, matching [`alibaba_nodes`]' fleet.
pub const ALIBABA_REGION: &str = "openb";

/// The error of a workload an importer would produce that gpuplace could not read back: the
/// importers validate what they write, so this names a mapping that went wrong.
fn validated(workload: Workload) -> Result<Workload, InputError> {
    workload.validate()?;
    Ok(workload)
}

/// Alibaba GPU trace v2023 ("openb") pods → jobs.
///
/// Mapping (the trace has no job-type label, no HBM demand and no latency bound):
/// - `name` → `id`; `creation_time` → `submit_s`; `deletion_time − creation_time` → `duration_s`
///   (at least 1 s); `num_gpu` → `gpus`; pods with 0 GPUs are skipped and counted;
/// - a pod of one GPU asking part of it (`gpu_milli` < 1000) shares it: its `gpu_milli` is kept; a
///   pod of several GPUs with `gpu_milli` < 1000 (the trace has none) takes them whole, and is
///   counted in the notes; a GPU pod's `gpu_milli` outside 1 ..= 1000 makes the row malformed;
/// - a pod of at most 8 GPUs is one pod (`pods` 1) asking for its `cpu_milli` and `memory_mib`
///   (as `cpu` cores and `memory_gb`, GB of 1024 MiB) when the list has those columns;
/// - `qos` → kind and priority: LS → inference (100), Burstable → agentic (60), Guaranteed →
///   multimodal (80), BE → training (20); any other class is a malformed row;
/// - `hbm_gb_per_gpu` 0, no latency bound, `region` = `region` (default [`ALIBABA_REGION`]);
/// - `gpu_spec` (allowed GPU models) is not modelled and is counted in the notes.
///
/// A row is malformed (skipped and counted, or with `strict` an error) when a number does not
/// parse or is out of gpuplace's ranges (more than 65,535 GPUs, times past 100 years, a run longer
/// than 3.6 × 10⁹ s), when its name is unusable as a job id, or when the name repeats an earlier
/// pod's.
pub fn alibaba_pods(
    data: impl AsRef<[u8]>,
    source_name: &str,
    region: &str,
    strict: bool,
) -> Result<(Workload, ImportReport), InputError> {
    check_name(region, true).map_err(|m| InputError::new("command line", "--region", "region", m))?;
    let mut report = ImportReport::default();
    let mut jobs = Vec::new();
    let (mut shared, mut with_spec, mut several_partial) = (0usize, 0usize, 0usize);
    let mut zero_gpu = 0usize;
    let mut first_line: HashMap<String, u64> = HashMap::new();
    let required = ["name", "num_gpu", "gpu_milli", "gpu_spec", "qos", "creation_time", "deletion_time"];
    read_rows(data.as_ref(), source_name, &required, strict, &mut report, |line, row| {
        let gpus: u32 = number(row, "num_gpu")?;
        let gpu_milli: u32 = number(row, "gpu_milli")?;
        let cpu_milli = resource(row, "cpu_milli", MAX_NODE_CPU_MILLI)?;
        let memory_mib = resource(row, "memory_mib", MAX_NODE_MEMORY_MIB)?;
        let creation: u64 = number(row, "creation_time")?;
        let deletion: u64 = number(row, "deletion_time")?;
        if gpus > MAX_JOB_GPUS {
            return Err(("num_gpu".into(), format!("{gpus} is out of range: at most {MAX_JOB_GPUS} GPUs per job")));
        }
        if gpus > 0 && !(1..=1000).contains(&gpu_milli) {
            let message = format!("{gpu_milli} is out of range: a GPU pod asks for 1..=1000 thousandths of each GPU");
            return Err(("gpu_milli".into(), message));
        }
        if creation > MAX_TRACE_S {
            return Err(("creation_time".into(), format!("{creation} is past {MAX_TRACE_S} s (100 years)")));
        }
        if deletion < creation {
            return Err(("deletion_time".into(), format!("{deletion} is before creation_time {creation}")));
        }
        if deletion - creation > MAX_DURATION_S {
            return Err(("deletion_time".into(), format!("the pod runs longer than {MAX_DURATION_S} s")));
        }
        let name = row.get("name");
        check_name(name, false).map_err(|m| ("name".to_string(), m))?;
        let (kind, priority) = match row.get("qos") {
            "LS" => (JobKind::Inference, 100),
            "Burstable" => (JobKind::Agentic, 60),
            "Guaranteed" => (JobKind::Multimodal, 80),
            "BE" => (JobKind::Training, 20),
            other => {
                let message = format!("unknown QoS class `{}`: expected LS, Burstable, Guaranteed or BE", shown(other));
                return Err(("qos".into(), message));
            }
        };
        // Every check of the row is above: a malformed row leaves no trace in what follows.
        if let Some(first) = first_line.get(name) {
            return Err(("name".into(), format!("`{}` repeats the pod name of line {first}", shown(name))));
        }
        if gpus > 0 && jobs.len() == MAX_JOBS {
            return Err(("(row)".into(), format!("more than {MAX_JOBS} pods with GPUs, the most gpuplace accepts")));
        }
        first_line.insert(name.to_string(), line);
        if gpus == 0 {
            zero_gpu += 1;
            return Ok(());
        }
        // A pod of one GPU asking less than all of it shares its GPU with others.
        let share = (gpus == 1 && (1..1000).contains(&gpu_milli)).then_some(gpu_milli);
        if share.is_some() {
            shared += 1;
        } else if gpu_milli < 1000 {
            several_partial += 1;
        }
        if !row.get("gpu_spec").is_empty() {
            with_spec += 1;
        }
        // One pod, on one node, with its CPU and memory; a pod of more GPUs than a node can have
        // stays the `gpus` shorthand (no node holds it either way).
        let one_pod = gpus <= MAX_NODE_GPUS;
        jobs.push(Job {
            cpu: cpu_milli.filter(|_| one_pod).map(|m| f64::from(m) / 1000.0),
            memory_gb: memory_mib.filter(|_| one_pod).map(|m| f64::from(m) / 1024.0),
            gpu_milli: share,
            id: name.to_string(),
            kind,
            gpus,
            pods: one_pod.then_some(1),
            block: None,
            hbm_gb_per_gpu: 0,
            priority,
            duration_h: None,
            region: region.to_string(),
            max_latency_ms: None,
            jurisdictions: None,
            providers: None,
            not_before: None,
            submit_s: Some(creation),
            duration_s: Some((deletion - creation).max(1)),
            tenant: None,
        });
        Ok(())
    })?;
    if zero_gpu > 0 {
        report.skipped.insert("pods with 0 GPUs".into(), zero_gpu);
    }
    report.imported = jobs.len();
    report.notes.push(format!("{shared} pods share their GPU (gpu_milli below 1000, kept)"));
    if several_partial != 0 {
        report.notes.push(format!("{several_partial} pods of several GPUs with gpu_milli below 1000 take them whole"));
    }
    report.notes.push(format!("{with_spec} pods name allowed GPU models (gpu_spec), which gpuplace does not model"));
    Ok((validated(Workload::from_jobs(jobs, source_name))?, report))
}

/// HBM per GPU of the trace's GPU models, GB. G2 and G3 are not public: ASSUMPTION 32 and 80.
fn alibaba_hbm(model: &str) -> Option<u32> {
    Some(match model {
        "P100" | "T4" | "V100M16" => 16,
        "V100M32" => 32,
        "A10" => 24,
        "G2" => 32,
        "G3" => 80,
        _ => return None,
    })
}

/// Alibaba openb node list → a fleet: one site, one cluster per (GPU model, GPUs per node, CPU,
/// memory), each node one NVLink domain whose rack type states the node's `cpu_milli` and
/// `memory_mib` (as `node_cpu` cores and `node_memory_gb`, GB of 1024 MiB) when the list has those
/// columns. Nodes without GPUs are skipped and counted; a node with more than 8 GPUs, more CPU or
/// memory than gpuplace's limits, or an unknown model is malformed. The fleet is validated before
/// it is returned.
///
/// ASSUMPTIONS (the trace gives none of these): 300 W per GPU, PUE 1.3, 80 USD/MWh, 550 gCO2/kWh,
/// IT power = the nodes' total, online 2023-01-01, jurisdiction CN, 1 ms to [`ALIBABA_REGION`].
pub fn alibaba_nodes(
    data: impl AsRef<[u8]>,
    source_name: &str,
    strict: bool,
) -> Result<(FleetFile, ImportReport), InputError> {
    let mut report = ImportReport::default();
    // Nodes by (model, GPUs, CPU, memory): a rack type each.
    let mut groups: BTreeMap<(String, u32, Option<u32>, Option<u32>), u32> = BTreeMap::new();
    let mut no_gpu = 0usize;
    read_rows(data.as_ref(), source_name, &["sn", "gpu", "model"], strict, &mut report, |_, row| {
        let gpus: u32 = number(row, "gpu")?;
        if gpus == 0 {
            no_gpu += 1;
            return Ok(());
        }
        if gpus > MAX_NODE_GPUS {
            return Err(("gpu".into(), format!("{gpus} is out of range: at most {MAX_NODE_GPUS} GPUs per node")));
        }
        let model = row.get("model").to_string();
        if alibaba_hbm(&model).is_none() {
            return Err(("model".into(), format!("unknown GPU model `{}`", shown(&model))));
        }
        let cpu_milli = resource(row, "cpu_milli", MAX_NODE_CPU_MILLI)?;
        let memory_mib = resource(row, "memory_mib", MAX_NODE_MEMORY_MIB)?;
        let nodes = groups.entry((model, gpus, cpu_milli, memory_mib)).or_default();
        if *nodes == MAX_CLUSTER_RACKS {
            return Err(("sn".into(), format!("more than {MAX_CLUSTER_RACKS} nodes of one model and size")));
        }
        *nodes += 1;
        Ok(())
    })?;
    if no_gpu > 0 {
        report.skipped.insert("nodes without GPUs".into(), no_gpu);
    }
    if groups.is_empty() {
        let why = match report.malformed.first() {
            Some((line, what)) => format!(" ({} malformed rows; line {line}: {what})", report.malformed.len()),
            None => String::new(),
        };
        return Err(InputError::new(
            source_name,
            "document",
            "(rows)",
            format!("no node with GPUs to build a fleet from{why}"),
        ));
    }
    let mut rack_types = BTreeMap::new();
    let mut clusters = Vec::new();
    let mut total_kw = 0.0;
    for ((model, gpus, cpu_milli, memory_mib), nodes) in &groups {
        let mut name = format!("{}-{}gpu", model.to_lowercase(), gpus);
        if let Some(cpu) = cpu_milli {
            name += &format!("-{}c", f64::from(*cpu) / 1000.0);
        }
        if let Some(memory) = memory_mib {
            name += &format!("-{}g", f64::from(*memory) / 1024.0);
        }
        let kw = 0.3 * f64::from(*gpus);
        total_kw += kw * f64::from(*nodes);
        rack_types.insert(
            name.clone(),
            RackTypeFile {
                gpu_model: model.clone(),
                gpus: *gpus,
                hbm_gb_per_gpu: alibaba_hbm(model).unwrap_or(16),
                kw,
                // A server is one node: its pods share its GPUs.
                nodes: Some(1),
                node_cpu: cpu_milli.map(|m| f64::from(m) / 1000.0),
                node_memory_gb: memory_mib.map(|m| f64::from(m) / 1024.0),
            },
        );
        clusters.push(ClusterFile {
            name: name.clone(),
            rack_type: name,
            racks: *nodes,
            online: None,
            used_gpus: None,
            nodes: None,
            block_racks: None,
        });
        report.imported += *nodes as usize;
    }
    // The trace's pods were created in 2023; its times are relative, so any fixed date will do.
    let day = Day::parse("2023-01-01").expect("a valid date");
    let fleet = FleetFile {
        format_version: None,
        as_of: Some(day),
        regions: vec![ALIBABA_REGION.into()],
        rack_types,
        sites: vec![SiteFile {
            name: "alibaba-openb".into(),
            provider: "Alibaba".into(),
            country: "CN".into(),
            jurisdiction: "CN".into(),
            power_mw: total_kw.ceil() / 1000.0,
            pue: 1.3,
            price_usd_per_mwh: 80.0,
            carbon_g_per_kwh: 550.0,
            online: day,
            latency_ms: [(ALIBABA_REGION.to_string(), 1)].into_iter().collect(),
            clusters,
        }],
    };
    Fleet::from_file(fleet.clone(), source_name)?;
    Ok((fleet, report))
}

/// How Azure LLM inference requests become serving deployments. Every value is an assumption the
/// trace does not give, overridable on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct AzureOptions {
    /// Aggregation window, seconds: each window's requests become one deployment for that window.
    pub window_s: u64,
    /// Prompt (prefill) tokens one GPU processes per second.
    pub prefill_tokens_per_gpu_s: f64,
    /// Generated (decode) tokens one GPU produces per second.
    pub decode_tokens_per_gpu_s: f64,
    /// GPUs per model replica (one gang within an NVLink domain).
    pub replica_gpus: u32,
    /// Target busy fraction of the deployment's GPUs.
    pub utilization: f64,
    /// Multiplies the request volume (the trace is a sample of one service).
    pub scale: f64,
    /// Region of the users.
    pub region: String,
    /// Latency bound of the deployment, ms.
    pub max_latency_ms: u32,
    /// HBM per GPU the model needs, GB.
    pub hbm_gb_per_gpu: u32,
}

impl Default for AzureOptions {
    fn default() -> Self {
        AzureOptions {
            window_s: 300,
            prefill_tokens_per_gpu_s: 10_000.0,
            decode_tokens_per_gpu_s: 500.0,
            replica_gpus: 8,
            utilization: 0.6,
            scale: 1.0,
            region: "us-east".into(),
            max_latency_ms: 100,
            hbm_gb_per_gpu: 200,
        }
    }
}

/// The longest aggregation window, seconds (a year).
pub const MAX_WINDOW_S: u64 = 31_536_000;
/// The most tokens one request may carry; more is a malformed row (no model has such a context).
pub const MAX_TOKENS_PER_REQUEST: u64 = 1_000_000_000;

impl AzureOptions {
    /// Checks that every option is in range, so that the jobs made load back. Errors name the
    /// option as the command line spells it, in `source_name` (e.g. `command line`).
    pub fn validate(&self, source_name: &str) -> Result<(), InputError> {
        // Named as the command line spells the option.
        let err = |field: &str, message: String| {
            let flag = field.replace('_', "-");
            InputError::new(source_name, format!("--{flag}"), flag, message)
        };
        if self.window_s == 0 || self.window_s > MAX_WINDOW_S {
            return Err(err("window_s", format!("{} is out of range: must be 1 to {MAX_WINDOW_S} s", self.window_s)));
        }
        for (field, value, high) in [
            ("prefill_tokens_per_gpu_s", self.prefill_tokens_per_gpu_s, 1e12),
            ("decode_tokens_per_gpu_s", self.decode_tokens_per_gpu_s, 1e12),
            ("utilization", self.utilization, 1.0),
            ("scale", self.scale, 1e9),
        ] {
            if !value.is_finite() || value <= 0.0 || value > high {
                return Err(err(
                    field,
                    format!(
                        "{} is out of range: must be more than 0 and at most {}",
                        crate::model::json::shown_number(value),
                        crate::model::json::shown_number(high)
                    ),
                ));
            }
        }
        if self.replica_gpus == 0 || self.replica_gpus > MAX_JOB_GPUS {
            return Err(err(
                "replica_gpus",
                format!("{} is out of range: must be 1 to {MAX_JOB_GPUS}", self.replica_gpus),
            ));
        }
        if self.max_latency_ms == 0 || self.max_latency_ms > MAX_LATENCY_MS {
            return Err(err(
                "max_latency_ms",
                format!("{} is out of range: must be 1 to {MAX_LATENCY_MS}", self.max_latency_ms),
            ));
        }
        if self.hbm_gb_per_gpu > MAX_HBM_GB {
            return Err(err("hbm_gb", format!("{} is out of range: at most {MAX_HBM_GB}", self.hbm_gb_per_gpu)));
        }
        check_name(&self.region, true).map_err(|m| err("region", m))?;
        Ok(())
    }
}

/// Seconds since 1970 of `YYYY-MM-DD HH:MM:SS(.fraction)`, to the microsecond.
fn timestamp_us(text: &str) -> Option<u64> {
    let (date, time) = text.trim().split_once(' ')?;
    let day = crate::model::date::Day::parse(date).ok()?;
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut parts = hms.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() || h > 23 || m > 59 || s > 60 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let micros: u64 = format!("{:0<6}", &fraction[..fraction.len().min(6)]).parse().ok()?;
    Some(((u64::from(day.0) * 86_400 + h * 3600 + m * 60 + s) * 1_000_000) + micros)
}

/// One Azure trace file to import.
#[derive(Debug, Clone, Copy)]
pub struct AzureTrace<'a> {
    /// The file's contents (CSV; rows that are not UTF-8 are malformed).
    pub text: &'a [u8],
    /// Its name, for errors and ids.
    pub source_name: &'a str,
    /// [`JobKind::Agentic`] for the code trace, [`JobKind::Inference`] for the conversation trace.
    pub kind: JobKind,
}

/// Azure LLM inference trace 2023 → serving deployments, from one or more trace files read as one
/// workload. `options` are validated first ([`AzureOptions::validate`]). Returns the jobs and one
/// report per trace.
///
/// Windows of `window_s` seconds are counted from the first request of all the traces, so that
/// traces of the same period line up. Per trace and window: GPU-seconds needed = prompt tokens /
/// prefill rate + generated tokens / decode rate, times `scale`; busy GPUs = that / window; GPUs =
/// ceil(busy / utilization), rounded up to whole replicas of `replica_gpus`. Each replica becomes
/// one job arriving at the window's start and running for the window, with the id
/// `{code|conv}-w{window}-r{replica}` (`conv2-…` and so on when several traces have one kind).
/// Token counts are summed exactly; a request of more than 10⁹ tokens is a malformed row; more
/// replicas in all than the 10,000,000 jobs gpuplace accepts is an error, before anything is
/// allocated for them.
pub fn azure(
    traces: &[AzureTrace],
    options: &AzureOptions,
    strict: bool,
) -> Result<(Workload, Vec<ImportReport>), InputError> {
    options.validate("command line")?;
    let mut reports = Vec::with_capacity(traces.len());
    let mut requests: Vec<Vec<(u64, u64, u64)>> = Vec::with_capacity(traces.len());
    for trace in traces {
        let mut report = ImportReport::default();
        let mut rows = Vec::new();
        let required = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"];
        read_rows(trace.text, trace.source_name, &required, strict, &mut report, |_, row| {
            let at = timestamp_us(row.get("TIMESTAMP")).ok_or_else(|| {
                ("TIMESTAMP".to_string(), format!("`{}` is not a timestamp", shown(row.get("TIMESTAMP"))))
            })?;
            let context: u64 = number(row, "ContextTokens")?;
            let generated: u64 = number(row, "GeneratedTokens")?;
            for (field, tokens) in [("ContextTokens", context), ("GeneratedTokens", generated)] {
                if tokens > MAX_TOKENS_PER_REQUEST {
                    return Err((
                        field.into(),
                        format!("{tokens} tokens: more than {MAX_TOKENS_PER_REQUEST} in one request"),
                    ));
                }
            }
            rows.push((at, context, generated));
            Ok(())
        })?;
        reports.push(report);
        requests.push(rows);
    }
    let start = requests.iter().flatten().map(|r| r.0).min().unwrap_or(0);
    let window_us = options.window_s * 1_000_000;
    let label = |kind: JobKind| if kind == JobKind::Agentic { "code" } else { "conv" };
    let mut jobs = Vec::new();
    for (t, (trace, rows)) in traces.iter().zip(&requests).enumerate() {
        let mut windows: BTreeMap<u64, (u128, u128)> = BTreeMap::new();
        for (at, context, generated) in rows {
            let w = windows.entry((at - start) / window_us).or_default();
            w.0 += u128::from(*context);
            w.1 += u128::from(*generated);
        }
        let priority = if trace.kind == JobKind::Agentic { 70 } else { 80 };
        // Several traces of one kind are numbered so that their ids stay apart.
        let same_kind: Vec<usize> = (0..traces.len()).filter(|&u| label(traces[u].kind) == label(trace.kind)).collect();
        let name = match same_kind.iter().position(|&u| u == t) {
            Some(n) if same_kind.len() > 1 && n > 0 => format!("{}{}", label(trace.kind), n + 1),
            _ => label(trace.kind).to_string(),
        };
        let first_job = jobs.len();
        for (window, (context, generated)) in &windows {
            let submit_s = window * options.window_s;
            if submit_s > MAX_TRACE_S {
                return Err(InputError::new(
                    trace.source_name,
                    format!("window {window}"),
                    "TIMESTAMP",
                    format!("the traces span more than {MAX_TRACE_S} s (100 years)"),
                ));
            }
            let gpu_seconds = (*context as f64 / options.prefill_tokens_per_gpu_s
                + *generated as f64 / options.decode_tokens_per_gpu_s)
                * options.scale;
            let busy = gpu_seconds / options.window_s as f64;
            let gpus = (busy / options.utilization).ceil().max(1.0);
            let replicas = (gpus / f64::from(options.replica_gpus)).ceil();
            // Checked in floating point before anything is allocated: the count may be astronomical.
            if replicas > (MAX_JOBS - jobs.len()) as f64 {
                return Err(InputError::new(
                    trace.source_name,
                    format!("window {window}"),
                    "(replicas)",
                    format!(
                        "{replicas:.0} replicas here make more than the {MAX_JOBS} jobs gpuplace accepts; lower --scale \
                         or raise --replica-gpus"
                    ),
                ));
            }
            for replica in 0..replicas as u64 {
                jobs.push(Job {
                    cpu: None,
                    memory_gb: None,
                    gpu_milli: None,
                    tenant: None,
                    id: format!("{name}-w{window:05}-r{replica:04}"),
                    kind: trace.kind,
                    gpus: options.replica_gpus,
                    pods: None,
                    block: None,
                    hbm_gb_per_gpu: options.hbm_gb_per_gpu,
                    priority,
                    duration_h: None,
                    region: options.region.clone(),
                    max_latency_ms: Some(options.max_latency_ms),
                    jurisdictions: None,
                    providers: None,
                    not_before: None,
                    submit_s: Some(submit_s),
                    duration_s: Some(options.window_s),
                });
            }
        }
        let report = &mut reports[t];
        report.imported = jobs.len() - first_job;
        report.notes.push(format!(
            "{} requests in {} windows of {} s became {} replicas of {} GPUs",
            rows.len(),
            windows.len(),
            options.window_s,
            report.imported,
            options.replica_gpus
        ));
    }
    let source = if traces.len() == 1 { traces[0].source_name.to_string() } else { "<azure traces>".to_string() };
    Ok((validated(Workload::from_jobs(jobs, &source))?, reports))
}
