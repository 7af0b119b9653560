//! A deterministic generator of realistic AI workloads for a fleet.
//!
//! The same `(count, seed, fleet regions)` always gives the same jobs, on every machine: the random
//! numbers come from SplitMix64, written out here so that no dependency upgrade can change them.
//!
//! The mix (see the README for the table): 50 % inference, 20 % agentic, 15 % multimodal, 15 %
//! training. Inference and agentic jobs are small (1–16 GPUs), latency-bound and high priority;
//! multimodal jobs are mid-sized with large HBM needs; training jobs are large (8 GPUs up to 16
//! NVL72 racks), unbounded in latency, low priority and long. About 25 % of jobs in an EU or UK
//! region demand residency in their jurisdiction, 5 % of jobs name one allowed provider, and 10 %
//! start no earlier than a date within the next year.

use crate::error::InputError;
use crate::model::date::Day;
use crate::model::fleet::Fleet;
use crate::model::jobs::{BlockRule, Job, MAX_JOBS, MAX_TRACE_S, Workload};
use crate::model::kind::JobKind;

/// SplitMix64 (Steele, Lea and Flood 2014): tiny, fast and stable forever.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n ≥ 1), by multiply-shift (bias below 2⁻³² for the n used here).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items`, chosen with the given integer weights.
    pub fn weighted<'a, T>(&mut self, items: &'a [(T, u64)]) -> &'a T {
        let total: u64 = items.iter().map(|(_, w)| w).sum();
        let mut pick = self.below(total);
        for (item, weight) in items {
            if pick < *weight {
                return item;
            }
            pick -= weight;
        }
        &items[items.len() - 1].0
    }
}

/// Generates `count` (at most [`MAX_JOBS`]) jobs for `fleet`, starting from `today` (for
/// `not_before` dates, which stop at 9999-12-31).
pub fn generate(fleet: &Fleet, count: usize, seed: u64, today: Day) -> Result<Workload, InputError> {
    if count > MAX_JOBS {
        return Err(InputError::new(
            "command line",
            "--count",
            "count",
            format!("{count} is out of range: at most {MAX_JOBS} jobs"),
        ));
    }
    let mut rng = SplitMix64::new(seed);
    // Regions weighted by where users are; regions of a custom fleet that the table does not name
    // get weight 10.
    let region_weights: Vec<(usize, u64)> = fleet
        .regions
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let weight = match name.as_str() {
                "us-east" => 30,
                "us-west" => 20,
                "us-central" => 15,
                "eu-west" => 15,
                "uk" => 12,
                "eu-north" => 8,
                _ => 10,
            };
            (i, weight)
        })
        .collect();
    let kinds = [(JobKind::Inference, 50), (JobKind::Agentic, 20), (JobKind::Multimodal, 15), (JobKind::Training, 15)];
    let width = count.max(1).to_string().len();
    let mut jobs = Vec::with_capacity(count);
    for n in 0..count {
        let kind = *rng.weighted(&kinds);
        let region_index = *rng.weighted(&region_weights);
        let region = fleet.regions[region_index].clone();
        let (gpus, hbm, priority, duration_h, max_latency_ms) = match kind {
            JobKind::Inference => (
                *rng.weighted(&[(1u32, 30), (2, 25), (4, 25), (8, 20)]),
                rng.between(40, 200) as u32,
                rng.between(50, 100) as i32,
                rng.between(1, 24) as f64,
                Some(*rng.weighted(&[(50u32, 20), (80, 30), (100, 30), (150, 20)])),
            ),
            JobKind::Agentic => (
                *rng.weighted(&[(1u32, 20), (2, 20), (4, 25), (8, 25), (16, 10)]),
                rng.between(80, 240) as u32,
                rng.between(60, 100) as i32,
                rng.between(1, 12) as f64,
                Some(*rng.weighted(&[(100u32, 40), (150, 40), (200, 20)])),
            ),
            JobKind::Multimodal => (
                *rng.weighted(&[(4u32, 25), (8, 35), (16, 20), (36, 12), (72, 8)]),
                rng.between(150, 288) as u32,
                rng.between(40, 90) as i32,
                rng.between(2, 48) as f64,
                if rng.percent(60) { Some(*rng.weighted(&[(150u32, 50), (250, 50)])) } else { None },
            ),
            JobKind::Training => (
                *rng.weighted(&[
                    (8u32, 15),
                    (16, 15),
                    (32, 15),
                    (64, 15),
                    (72, 10),
                    (144, 10),
                    (288, 10),
                    (576, 6),
                    (1152, 4),
                ]),
                rng.between(160, 288) as u32,
                rng.between(10, 60) as i32,
                rng.between(24, 720) as f64,
                None,
            ),
        };
        let home_jurisdiction = match region.as_str() {
            "eu-west" | "eu-north" => Some("EU"),
            "uk" => Some("UK"),
            _ => None,
        };
        let jurisdictions = home_jurisdiction
            .filter(|j| fleet.jurisdictions.iter().any(|k| k == j))
            .filter(|_| rng.percent(25))
            .map(|j| vec![j.to_string()]);
        let providers = if rng.percent(5) {
            Some(vec![fleet.providers[rng.below(fleet.providers.len() as u64) as usize].clone()])
        } else {
            None
        };
        let not_before = if rng.percent(10) { Some(today.saturating_add(rng.between(1, 365))) } else { None };
        jobs.push(Job {
            cpu: None,
            memory_gb: None,
            gpu_milli: None,
            tenant: None,
            id: format!("{}-{:0width$}", kind.name(), n),
            kind,
            gpus,
            pods: None,
            // Training across racks prefers one topology block (its all-reduce stays under one
            // set of leaf switches); decided without drawing, so the other draws are as before.
            block: (kind == JobKind::Training && gpus > 72).then_some(BlockRule::Preferred),
            hbm_gb_per_gpu: hbm,
            priority,
            duration_h: Some(duration_h),
            region,
            max_latency_ms,
            jurisdictions,
            providers,
            not_before,
            submit_s: None,
            duration_s: None,
        });
    }
    Ok(Workload::from_jobs(jobs, "<generated>"))
}

/// The longest span `spread_arrivals` accepts, hours: [`MAX_TRACE_S`].
pub const MAX_SPAN_H: f64 = MAX_TRACE_S as f64 / 3600.0;

/// Gives the jobs arrival times spread evenly over `span_h` hours (0 ..= [`MAX_SPAN_H`]), in
/// workload order, for replaying a generated workload.
pub fn spread_arrivals(workload: &mut Workload, span_h: f64) -> Result<(), InputError> {
    if !span_h.is_finite() || !(0.0..=MAX_SPAN_H).contains(&span_h) {
        return Err(InputError::new(
            "command line",
            "--span-h",
            "span-h",
            format!("{span_h} is out of range: must be between 0 and {MAX_SPAN_H} hours"),
        ));
    }
    let span_s = (span_h * 3600.0) as u64;
    let count = workload.jobs.len().max(1) as u128;
    for (i, job) in workload.jobs.iter_mut().enumerate() {
        job.submit_s = Some((i as u128 * u128::from(span_s) / count) as u64);
    }
    Ok(())
}
