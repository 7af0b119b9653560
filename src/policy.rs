//! Placement policy: how much each score term weighs, per job kind.

use serde::{Deserialize, Serialize};

use crate::error::{InputError, Result};
use crate::jobs::JobKind;
use crate::score::{MAX_CANDIDATES, MAX_WEIGHT};

/// Weights of the six score terms, each 0..=1000. See [`crate::score::Terms`] for what each term is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    /// Best fit: prefer the rack left fullest.
    pub pack: u32,
    /// Spread: prefer the rack left emptiest (kube-scheduler's LeastAllocated).
    pub spread: u32,
    /// Latency headroom to the job's users.
    pub latency: u32,
    /// Cheap energy (price × PUE).
    pub energy: u32,
    /// Clean energy (carbon intensity × PUE).
    pub carbon: u32,
    /// HBM per GPU above the job's need.
    pub hbm: u32,
    /// A seeded random draw per job and rack class (the `random` baseline); 0 when absent.
    #[serde(default)]
    pub random: u32,
}

/// A policy: weights per job kind, the latency reference for jobs without a bound, and the length of
/// each job's candidate list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Weights for inference jobs.
    pub inference: Weights,
    /// Weights for agentic jobs.
    pub agentic: Weights,
    /// Weights for multimodal jobs.
    pub multimodal: Weights,
    /// Weights for training jobs.
    pub training: Weights,
    /// Latency (ms) at which the latency term of a job *without* `max_latency_ms` reaches 0.
    #[serde(default = "default_latency_ref_ms")]
    pub latency_ref_ms: u32,
    /// Candidates kept per job by the scoring pass (1..=16).
    #[serde(default = "default_candidates")]
    pub candidates: u32,
    /// Seed of the random term (only matters when a `random` weight is non-zero).
    #[serde(default)]
    pub seed: u64,
}

/// The built-in policies: the default multi-objective one and the baselines people use today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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
        let only = |f: &dyn Fn(&mut Weights)| {
            let mut w = Weights { pack: 0, spread: 0, latency: 0, energy: 0, carbon: 0, hbm: 0, random: 0 };
            f(&mut w);
            w
        };
        let same =
            |w: Weights| Policy { inference: w, agentic: w, multimodal: w, training: w, seed, ..Policy::default() };
        match self {
            Preset::Default => Policy { seed, ..Policy::default() },
            Preset::FirstFit => same(only(&|_| {})),
            Preset::BestFit => same(only(&|w| w.pack = MAX_WEIGHT)),
            Preset::Spread => same(only(&|w| w.spread = MAX_WEIGHT)),
            Preset::Random => same(only(&|w| w.random = MAX_WEIGHT)),
        }
    }
}

fn default_latency_ref_ms() -> u32 {
    200
}

fn default_candidates() -> u32 {
    8
}

impl Default for Policy {
    /// The built-in policy. Why each kind weighs what it does:
    ///
    /// - **inference**: users wait on every token, so latency headroom dominates (1000); moderate best
    ///   fit (300) keeps racks whole for large jobs; energy (200) and carbon (100) break near-ties.
    /// - **agentic**: chains of calls multiply latency, so latency dominates too (1000); tool-using
    ///   agents hold long contexts, hence some HBM headroom (200).
    /// - **multimodal**: images, audio and video inflate activations and KV caches, so HBM headroom
    ///   leads (1000), then latency (500).
    /// - **training**: runs for days with no user in the loop, so energy cost (1000) and carbon (600)
    ///   lead, and strong best fit (800) packs racks so whole NVLink domains stay free for other gangs;
    ///   latency is irrelevant (0).
    fn default() -> Self {
        Policy {
            inference: Weights { pack: 300, spread: 0, latency: 1000, energy: 200, carbon: 100, hbm: 100, random: 0 },
            agentic: Weights { pack: 300, spread: 0, latency: 1000, energy: 150, carbon: 100, hbm: 200, random: 0 },
            multimodal: Weights { pack: 300, spread: 0, latency: 500, energy: 200, carbon: 100, hbm: 1000, random: 0 },
            training: Weights { pack: 800, spread: 0, latency: 0, energy: 1000, carbon: 600, hbm: 200, random: 0 },
            latency_ref_ms: default_latency_ref_ms(),
            candidates: default_candidates(),
            seed: 0,
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
    pub fn from_path(path: &std::path::Path) -> Result<Policy> {
        let text = crate::error::read_input(path)?;
        Policy::from_json(&text, &path.display().to_string())
    }

    /// Parses and validates policy JSON.
    pub fn from_json(text: &str, source_name: &str) -> Result<Policy> {
        let policy: Policy = crate::error::parse_json(text, source_name)?;
        policy.validate(source_name)?;
        Ok(policy)
    }

    /// Checks every value is in range.
    pub fn validate(&self, source_name: &str) -> std::result::Result<(), InputError> {
        for kind in JobKind::ALL {
            let w = self.weights(kind);
            for (name, value) in [
                ("pack", w.pack),
                ("spread", w.spread),
                ("latency", w.latency),
                ("energy", w.energy),
                ("carbon", w.carbon),
                ("hbm", w.hbm),
                ("random", w.random),
            ] {
                if value > MAX_WEIGHT {
                    return Err(InputError::new(
                        source_name,
                        kind.name(),
                        name,
                        format!("{value} is out of range: weights are 0..={MAX_WEIGHT}"),
                    ));
                }
            }
        }
        if self.latency_ref_ms == 0 || self.latency_ref_ms > crate::fleet::MAX_LATENCY_MS {
            return Err(InputError::new(
                source_name,
                "policy",
                "latency_ref_ms",
                format!("{} is out of range: must be 1..={}", self.latency_ref_ms, crate::fleet::MAX_LATENCY_MS),
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
