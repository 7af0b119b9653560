//! The `--out` document of a placement.

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::Placement;
use crate::engine::place::Outcome;
use crate::engine::reasons::{Cause, Reason};
use crate::engine::view::PlacedOn;
use crate::model::fleet::Fleet;
use crate::model::jobs::Workload;
use crate::model::kind::JobKind;
use crate::report::metrics::{
    EnergyTally, HOUR_S, site_gpus, site_gpus_free, site_gpus_used, site_power_drawn_w, violates_latency,
};

/// The `--out` JSON document. It holds only what the inputs determine (no backend, adapter or
/// timing), so both backends write byte-identical files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct OutFile {
    /// The version of the format ([`crate::model::FORMAT_VERSION`]).
    pub format_version: u32,
    /// Placed jobs in decision order.
    pub placements: Vec<PlacedRecord>,
    /// Unplaced jobs in decision order.
    pub unplaced: Vec<UnplacedRecord>,
    /// Totals.
    pub summary: Summary,
}

/// One placed job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct PlacedRecord {
    /// Job id.
    pub job: String,
    /// Where it runs.
    #[serde(flatten)]
    pub on: PlacedOn,
    /// Placed by consolidation after every job was decided (no rack had room at its turn). Absent
    /// when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub consolidated: bool,
    /// The jobs consolidation moved it to make room for, in the order of the moves (it is then
    /// not on the rack it was decided onto). Absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moved_for: Vec<String>,
}

/// One unplaced job, written `{"job": …, "reason": <the sentence>, "cause": <the code and data>}`.
/// The reason is shared with the placement (jobs of one need in one state share one), so a million
/// unplaced jobs do not copy a million sentences.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "UnplacedFields")]
#[non_exhaustive]
pub struct UnplacedRecord {
    /// Job id.
    pub job: String,
    /// Why: the sentence and the code with its data.
    pub why: Arc<Reason>,
}

/// The fields of an [`UnplacedRecord`] as written.
#[derive(Deserialize, JsonSchema)]
struct UnplacedFields {
    /// Job id.
    job: String,
    /// Why, in words.
    reason: String,
    /// Why, as a code with its data.
    cause: Cause,
}

impl From<UnplacedFields> for UnplacedRecord {
    fn from(fields: UnplacedFields) -> Self {
        UnplacedRecord { job: fields.job, why: Arc::new(Reason { cause: fields.cause, text: fields.reason }) }
    }
}

impl Serialize for UnplacedRecord {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut record = serializer.serialize_struct("UnplacedRecord", 3)?;
        record.serialize_field("job", &self.job)?;
        record.serialize_field("reason", &self.why.text)?;
        record.serialize_field("cause", &self.why.cause)?;
        record.end()
    }
}

impl JsonSchema for UnplacedRecord {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "UnplacedRecord".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = UnplacedFields::json_schema(generator);
        schema.insert("description".into(), "One unplaced job.".into());
        schema
    }
}

/// Totals of a placement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct Summary {
    /// The placement date.
    pub at: String,
    /// Jobs in the workload.
    pub jobs: usize,
    /// Jobs placed.
    pub placed: usize,
    /// Jobs not placed.
    pub unplaced: usize,
    /// Jobs not placed, per cause code ([`Cause::code`]; codes of no job are left out).
    pub unplaced_by_cause: BTreeMap<String, usize>,
    /// GPUs of placed jobs (the sum over its kinds').
    pub gpus_placed: u64,
    /// Per job kind.
    pub kinds: Vec<KindSummary>,
    /// Per site.
    pub sites: Vec<SiteSummary>,
    /// Energy cost of the placed jobs, USD per hour (IT power × PUE × price).
    pub energy_usd_per_hour: f64,
    /// Emissions of the placed jobs, kg CO2 per hour (IT power × PUE × grid intensity).
    pub carbon_kg_per_hour: f64,
    /// Placed jobs further from their users than their latency bound, checked against the fleet's
    /// own numbers (a hard constraint: always 0).
    pub latency_violations: u64,
    /// Jobs placed by consolidation (0 in files from before it).
    #[serde(default)]
    pub consolidated: usize,
    /// Jobs moved by consolidation, a job moved twice counting twice (0 in files from before it).
    #[serde(default)]
    pub moves: usize,
}

/// Totals of one job kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct KindSummary {
    /// The kind.
    pub kind: JobKind,
    /// Jobs placed.
    pub placed: usize,
    /// Jobs unplaced.
    pub unplaced: usize,
    /// GPUs placed: the kind's placed jobs' GPUs and shares of a GPU, summed, to the nearest GPU.
    pub gpus_placed: u64,
}

/// Totals of one site after placement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct SiteSummary {
    /// Site name.
    pub site: String,
    /// GPUs in the site.
    pub gpus: u64,
    /// GPUs in use (initial occupancy plus placed jobs).
    pub gpus_used: u64,
    /// GPUs free on ready trays (a cordoned or failed tray's GPUs are neither free nor in use).
    pub gpus_free: u64,
    /// IT power drawn, MW.
    pub it_mw_drawn: f64,
    /// IT power available, MW.
    pub it_mw_available: f64,
}

/// Builds the `--out` document.
pub fn out_file(fleet: &Fleet, workload: &Workload, placement: &Placement) -> OutFile {
    let mut placements = Vec::new();
    let mut unplaced = Vec::new();
    let mut kinds: Vec<KindSummary> =
        JobKind::ALL.iter().map(|&kind| KindSummary { kind, placed: 0, unplaced: 0, gpus_placed: 0 }).collect();
    let mut energy = EnergyTally::default();
    let mut latency_violations = 0;
    let mut unplaced_by_code: BTreeMap<&'static str, usize> = BTreeMap::new();
    // What consolidation did, by job, looked up once per placed job.
    let consolidated: std::collections::HashSet<usize> = placement.consolidation.placed.iter().copied().collect();
    let mut moved_for: std::collections::HashMap<usize, Vec<usize>> = std::collections::HashMap::new();
    for m in &placement.consolidation.moves {
        moved_for.entry(m.job).or_default().push(m.for_job);
    }
    for decision in &placement.decisions {
        let job = &workload.jobs[decision.job];
        let kind = &mut kinds[job.kind.index()];
        match &decision.outcome {
            Outcome::Placed { allocation, score } => {
                placements.push(PlacedRecord {
                    job: job.id.clone(),
                    on: PlacedOn::new(fleet, allocation, *score),
                    consolidated: consolidated.contains(&decision.job),
                    moved_for: moved_for
                        .get(&decision.job)
                        .map(|jobs| jobs.iter().map(|&j| workload.jobs[j].id.clone()).collect())
                        .unwrap_or_default(),
                });
                kind.placed += 1;
                // Thousandths here; whole GPUs once every job is counted.
                kind.gpus_placed += job.gpu_milli_held();
                energy.add(fleet, allocation, HOUR_S);
                latency_violations += u64::from(violates_latency(fleet, job, allocation));
            }
            Outcome::Unplaced { reason } => {
                // Counted by code first: no string is allocated per unplaced job.
                *unplaced_by_code.entry(reason.cause.code()).or_insert(0) += 1;
                unplaced.push(UnplacedRecord { job: job.id.clone(), why: Arc::clone(reason) });
                kind.unplaced += 1;
            }
        }
    }
    let (gpus, used, drawn) =
        (site_gpus(fleet), site_gpus_used(fleet, &placement.state), site_power_drawn_w(fleet, &placement.state));
    let free = site_gpus_free(fleet, &placement.state);
    let sites = fleet
        .sites
        .iter()
        .enumerate()
        .map(|(s, site)| SiteSummary {
            site: site.name.clone(),
            gpus: gpus[s],
            gpus_used: used[s],
            gpus_free: free[s],
            it_mw_drawn: drawn[s] as f64 / 1e6,
            it_mw_available: f64::from(site.power_w) / 1e6,
        })
        .collect();
    for kind in &mut kinds {
        kind.gpus_placed = (kind.gpus_placed + 500) / 1000;
    }
    let gpus_placed = kinds.iter().map(|k| k.gpus_placed).sum();
    OutFile {
        format_version: crate::model::FORMAT_VERSION,
        summary: Summary {
            at: placement.at.to_string(),
            jobs: workload.jobs.len(),
            placed: placements.len(),
            unplaced: unplaced.len(),
            unplaced_by_cause: unplaced_by_code.into_iter().map(|(code, n)| (code.to_string(), n)).collect(),
            gpus_placed,
            kinds,
            sites,
            energy_usd_per_hour: energy.usd(),
            carbon_kg_per_hour: energy.kg_co2(),
            latency_violations,
            consolidated: placement.consolidation.placed.len(),
            moves: placement.consolidation.moves.len(),
        },
        placements,
        unplaced,
    }
}

/// A line of the JSON Lines form of the `--out` document ([`write_jsonl`]): the summary first, then
/// one line per placed job, then one per unplaced job, each in decision order. Each line is an
/// object whose `record` field says which it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "record", rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutLine {
    /// The first line.
    Summary {
        /// The version of the format ([`crate::model::FORMAT_VERSION`]).
        format_version: u32,
        /// Totals.
        summary: Summary,
    },
    /// A placed job.
    Placed(PlacedRecord),
    /// An unplaced job.
    Unplaced(UnplacedRecord),
}

/// [`OutLine`] borrowing from an [`OutFile`], for writing.
#[derive(Serialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum OutLineRef<'a> {
    Summary { format_version: u32, summary: &'a Summary },
    Placed(&'a PlacedRecord),
    Unplaced(&'a UnplacedRecord),
}

/// Writes `out` as JSON Lines: one compact [`OutLine`] per line.
pub fn write_jsonl(out: &OutFile, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut line = |record: &OutLineRef| -> std::io::Result<()> {
        serde_json::to_writer(&mut *w, record)?;
        w.write_all(b"\n")
    };
    line(&OutLineRef::Summary { format_version: out.format_version, summary: &out.summary })?;
    for record in &out.placements {
        line(&OutLineRef::Placed(record))?;
    }
    for record in &out.unplaced {
        line(&OutLineRef::Unplaced(record))?;
    }
    Ok(())
}

/// Reads the JSON Lines form back into the document ([`write_jsonl`]'s inverse); `source_name`
/// names it in errors.
pub fn read_jsonl(text: &str, source_name: &str) -> std::result::Result<OutFile, crate::error::InputError> {
    let bad = |line: usize, message: String| {
        crate::error::InputError::new(source_name, format!("line {line}"), "record", message)
    };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l)).filter(|(_, l)| !l.trim().is_empty());
    let parse = |(n, l): (usize, &str)| serde_json::from_str::<OutLine>(l).map_err(|e| bad(n, e.to_string()));
    let (format_version, summary) = match lines.next().map(parse).transpose()? {
        Some(OutLine::Summary { format_version, summary }) => (format_version, summary),
        _ => return Err(bad(1, "the first line must be the summary".into())),
    };
    let (mut placements, mut unplaced) = (Vec::new(), Vec::new());
    for (n, l) in lines {
        match parse((n, l))? {
            OutLine::Placed(record) => placements.push(record),
            OutLine::Unplaced(record) => unplaced.push(record),
            OutLine::Summary { .. } => return Err(bad(n, "a second summary".into())),
        }
    }
    Ok(OutFile { format_version, placements, unplaced, summary })
}
