//! Placement policy: how much each score term weighs, per job kind.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{InputError, Result};
use crate::kernel::limits::MAX_LATENCY_MS;
use crate::kernel::score::{MAX_CANDIDATES, MAX_WEIGHT, TERM_COUNT, Term};
use crate::model::kind::JobKind;

/// One value per score term, indexed by [`Term::index`]: a kind's weights in a policy, or a pair's
/// terms in an explanation. Written as a JSON object keyed by the terms' names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PerTerm(pub [u32; TERM_COUNT]);

impl PerTerm {
    /// The value of `term`.
    pub fn get(&self, term: Term) -> u32 {
        self.0[term.index()]
    }

    /// Sets the value of `term`.
    pub fn set(&mut self, term: Term, value: u32) {
        self.0[term.index()] = value;
    }

    /// Only `term`, at `value`.
    pub fn only(term: Term, value: u32) -> PerTerm {
        let mut values = PerTerm::default();
        values.set(term, value);
        values
    }
}

impl Serialize for PerTerm {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(TERM_COUNT))?;
        for term in Term::ALL {
            map.serialize_entry(term.name(), &self.get(term))?;
        }
        map.end()
    }
}

/// The terms' names, in index order (what an unknown weight's error lists).
static TERM_NAMES: [&str; TERM_COUNT] = {
    let mut names = [""; TERM_COUNT];
    let mut i = 0;
    while i < TERM_COUNT {
        names[i] = Term::ALL[i].name();
        i += 1;
    }
    names
};

/// Terms a policy file may leave out (weight 0): those added after the format was first published,
/// so that older policy files still load. Every other term must be given.
const OPTIONAL_TERMS: [Term; 2] = [Term::Random, Term::Frag];

/// An object with one integer per term name, each optional.
impl schemars::JsonSchema for PerTerm {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PerTerm".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let properties: serde_json::Map<String, serde_json::Value> = Term::ALL
            .iter()
            .map(|term| {
                let range = serde_json::json!({ "type": "integer", "minimum": 0, "maximum": MAX_WEIGHT });
                (term.name().to_string(), range)
            })
            .collect();
        let required: Vec<&str> = Term::ALL.iter().filter(|t| !OPTIONAL_TERMS.contains(t)).map(|t| t.name()).collect();
        schemars::json_schema!({
            "type": "object",
            "description": "One value per score term, by name.",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        })
    }
}

impl<'de> Deserialize<'de> for PerTerm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<PerTerm, D::Error> {
        struct TermMap;
        impl<'de> Visitor<'de> for TermMap {
            type Value = PerTerm;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of weights by term name")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<PerTerm, A::Error> {
                let mut values = PerTerm::default();
                let mut seen = [false; TERM_COUNT];
                while let Some(name) = map.next_key::<String>()? {
                    let term = Term::parse(&name).ok_or_else(|| de::Error::unknown_field(&name, &TERM_NAMES))?;
                    if std::mem::replace(&mut seen[term.index()], true) {
                        return Err(de::Error::custom(format!("duplicate field `{name}`")));
                    }
                    values.set(term, map.next_value()?);
                }
                if let Some(missing) = Term::ALL.into_iter().find(|t| !seen[t.index()] && !OPTIONAL_TERMS.contains(t)) {
                    return Err(de::Error::missing_field(missing.name()));
                }
                Ok(values)
            }
        }
        deserializer.deserialize_map(TermMap)
    }
}

/// A kind's weights, each 0..=1000. See [`Term`] for what each term is.
pub type Weights = PerTerm;

/// A policy: weights per job kind, the latency reference for jobs without a bound, and the length of
/// each job's candidate list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Policy {
    /// The version of the format the file was written in (see [`crate::model::json::FORMAT_VERSION`]);
    /// optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_version: Option<u32>,
    /// Weights for inference jobs.
    pub inference: Weights,
    /// Weights for agentic jobs.
    pub agentic: Weights,
    /// Weights for multimodal jobs.
    pub multimodal: Weights,
    /// Weights for training jobs.
    pub training: Weights,
    /// Optional: steers jobs *without* `max_latency_ms` toward sites near their users, the latency
    /// term reaching 0 at this latency (ms). Absent (the default), a job without a latency bound is
    /// not steered by latency at all: its latency term is 0 on every site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_LATENCY_MS))]
    pub latency_ref_ms: Option<u32>,
    /// Candidates kept per job by the scoring pass (1..=16).
    #[serde(default = "default_candidates")]
    #[schemars(range(min = 1, max = MAX_CANDIDATES))]
    pub candidates: u32,
    /// Seed of the random term (only matters when a `random` weight is non-zero).
    #[serde(default)]
    pub seed: u64,
    /// After the decisions, place jobs left unplaced by moving jobs of the same batch to other
    /// racks, never unplacing any (see the README's placement guarantee). The default policy does;
    /// the baseline presets do not. Default when absent: true.
    #[serde(default = "yes")]
    pub consolidate: bool,
    /// Keep each job within one NVLink domain when the fleet has a rack type whose racks hold all
    /// its pods: such a job is decided first on racks that hold them all, and across whole racks
    /// only when none of those is feasible (as Kueue TAS's preferred level, at the rack). Pods on one
    /// NVLink domain talk over NVLink rather than the network; the price is packing (a 16-GPU job
    /// takes a whole 16-GPU rack that a larger gang may need). Default when absent: false.
    #[serde(default)]
    pub prefer_one_domain: bool,
}

fn yes() -> bool {
    true
}

/// The built-in policies: the default multi-objective one and the baselines people use today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Preset {
    /// [`Policy::default`]: per-kind weights of latency, energy, carbon, packing and HBM.
    Default,
    /// The first feasible rack in fleet order: every weight 0, so every feasible rack ties and the
    /// lowest index wins.
    FirstFit,
    /// The tightest rack: packing only.
    BestFit,
    /// The emptiest rack (kube-scheduler's LeastAllocated): spread only.
    Spread,
    /// A seeded random rack class: the random term only (ties within a class: lowest index).
    Random,
}

impl Preset {
    /// Every preset, in report order.
    pub const ALL: [Preset; 5] = [Preset::Default, Preset::FirstFit, Preset::BestFit, Preset::Spread, Preset::Random];

    /// The preset's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Default => "default",
            Preset::FirstFit => "first-fit",
            Preset::BestFit => "best-fit",
            Preset::Spread => "spread",
            Preset::Random => "random",
        }
    }

    /// Parses a preset's name.
    pub fn parse(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The policy, with `seed` for the random term.
    pub fn policy(self, seed: u64) -> Policy {
        let same = |w: Weights| Policy {
            inference: w,
            agentic: w,
            multimodal: w,
            training: w,
            seed,
            consolidate: false,
            ..Policy::default()
        };
        match self {
            Preset::Default => Policy { seed, ..Policy::default() },
            Preset::FirstFit => same(PerTerm::default()),
            Preset::BestFit => same(PerTerm::only(Term::Pack, MAX_WEIGHT)),
            Preset::Spread => same(PerTerm::only(Term::Spread, MAX_WEIGHT)),
            Preset::Random => same(PerTerm::only(Term::Random, MAX_WEIGHT)),
        }
    }
}

fn default_candidates() -> u32 {
    8
}

/// Weights from (term, weight) pairs; the terms not named weigh 0.
fn weights(pairs: &[(Term, u32)]) -> Weights {
    let mut w = PerTerm::default();
    for &(term, value) in pairs {
        w.set(term, value);
    }
    w
}

impl Default for Policy {
    /// The built-in policy. Every kind weighs best fit (`pack`) and HBM fit (`hbm`) fully: measured
    /// against exact optima on contended instances (`scripts/quality.py`, BENCHMARKS.md), packing
    /// racks and leaving large-memory racks to the jobs that need them places the most GPUs, and
    /// lowering either cost more than any other change. On top of that, per kind:
    ///
    /// - **inference** and **agentic**: users wait on every token (and agents chain calls), so
    ///   latency headroom below the job's bound counts (500; a job without a bound is not steered
    ///   by latency); energy and carbon break near-ties.
    /// - **multimodal**: latency headroom (500) where the job states a bound.
    /// - **training**: runs for days with no user in the loop, so energy cost (1000) and carbon (600)
    ///   weigh most after fit; latency is irrelevant (0).
    ///
    /// The latency weight was 1000 before the measurement; at 500 the instances placed slightly
    /// more GPUs, and the bound itself is a constraint, never traded away.
    fn default() -> Self {
        use Term::{Carbon, Energy, Hbm, Latency, Pack};
        Policy {
            inference: weights(&[(Pack, 1000), (Latency, 500), (Energy, 200), (Carbon, 100), (Hbm, 1000)]),
            agentic: weights(&[(Pack, 1000), (Latency, 500), (Energy, 150), (Carbon, 100), (Hbm, 1000)]),
            multimodal: weights(&[(Pack, 1000), (Latency, 500), (Energy, 200), (Carbon, 100), (Hbm, 1000)]),
            training: weights(&[(Pack, 1000), (Energy, 1000), (Carbon, 600), (Hbm, 1000)]),
            latency_ref_ms: None,
            candidates: default_candidates(),
            seed: 0,
            consolidate: true,
            prefer_one_domain: false,
            format_version: None,
        }
    }
}

impl Policy {
    /// The weights of a kind.
    pub fn weights(&self, kind: JobKind) -> &Weights {
        match kind {
            JobKind::Inference => &self.inference,
            JobKind::Agentic => &self.agentic,
            JobKind::Multimodal => &self.multimodal,
            JobKind::Training => &self.training,
        }
    }

    /// Reads and validates a policy JSON file.
    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<Policy> {
        let path = path.as_ref();
        let text = crate::model::json::read_input(
            path,
            crate::model::json::MAX_POLICY_BYTES,
            crate::model::json::Expect::Object,
        )?;
        Policy::from_json(&text, &path.display().to_string())
    }

    /// Reads and validates policy JSON from `reader` (standard input, say), named `source_name` in
    /// errors, with the limits of a file.
    pub fn from_reader(reader: impl std::io::Read, source_name: &str) -> Result<Policy> {
        let text = crate::model::json::read_input_from(
            reader,
            source_name,
            crate::model::json::MAX_POLICY_BYTES,
            crate::model::json::Expect::Object,
        )?;
        Policy::from_json(&text, source_name)
    }

    /// Parses and validates policy JSON.
    pub fn from_json(text: &str, source_name: &str) -> Result<Policy> {
        let policy: Policy = crate::model::json::parse_object(
            text,
            source_name,
            "a policy: a JSON object with weights for `inference`, `agentic`, `multimodal` and `training`",
        )?;
        policy.validate(source_name)?;
        // The version belongs to the file, not to the policy: two files of one policy are equal.
        Ok(Policy { format_version: None, ..policy })
    }

    /// The policy as a policy file (with this gpuplace's `format_version`), pretty-printed: what
    /// `gpuplace policy` writes and `--policy` reads.
    pub fn to_json(&self) -> String {
        let file = Policy { format_version: Some(crate::model::json::FORMAT_VERSION), ..*self };
        serde_json::to_string_pretty(&file).expect("a policy always serializes")
    }

    /// Checks every value is in range.
    pub fn validate(&self, source_name: &str) -> std::result::Result<(), InputError> {
        crate::model::json::check_format_version(source_name, self.format_version)?;
        for kind in JobKind::ALL {
            let w = self.weights(kind);
            for term in Term::ALL {
                let value = w.get(term);
                if value > MAX_WEIGHT {
                    return Err(InputError::new(
                        source_name,
                        kind.name(),
                        term.name(),
                        format!("{value} is out of range: weights are 0..={MAX_WEIGHT}"),
                    ));
                }
            }
        }
        if let Some(reference) = self.latency_ref_ms
            && (reference == 0 || reference > MAX_LATENCY_MS)
        {
            return Err(InputError::new(
                source_name,
                "policy",
                "latency_ref_ms",
                format!("{reference} is out of range: must be 1..={MAX_LATENCY_MS}"),
            ));
        }
        if self.candidates == 0 || self.candidates > MAX_CANDIDATES {
            return Err(InputError::new(
                source_name,
                "policy",
                "candidates",
                format!("{} is out of range: must be 1..={MAX_CANDIDATES}", self.candidates),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_read_by_term_name() {
        let json = serde_json::to_string(&Policy::default()).unwrap();
        assert!(json.contains(r#""inference":{"pack":1000,"spread":0,"latency":500"#), "{json}");
        assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), Policy::default());
        let missing_random = json.replace(r#","random":0"#, "");
        assert_eq!(serde_json::from_str::<Policy>(&missing_random).unwrap(), Policy::default());
        let missing_pack = json.replacen(r#""pack":1000,"#, "", 1);
        assert!(
            serde_json::from_str::<Policy>(&missing_pack).unwrap_err().to_string().contains("missing field `pack`")
        );
        let duplicate = json.replacen(r#""pack":1000,"#, r#""pack":1000,"pack":1,"#, 1);
        assert!(serde_json::from_str::<Policy>(&duplicate).unwrap_err().to_string().contains("duplicate field `pack`"));
        let unknown = json.replacen(r#""pack":1000,"#, r#""packing":300,"#, 1);
        assert!(serde_json::from_str::<Policy>(&unknown).unwrap_err().to_string().contains("unknown field `packing`"));
    }
}
