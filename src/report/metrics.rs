//! Metrics of a placement, computed here once and shared by `place` (its summary and `--out`),
//! `replay` and `compare`.

use crate::engine::Allocation;
use crate::kernel::shape::nodes_with_free;
use crate::kernel::state::FleetState;
use crate::model::fleet::Fleet;
use crate::model::jobs::Job;

/// Energy cost and emissions of placed jobs, summed exactly in integers: W × PUE‰ × milli-USD/MWh
/// × s and W × PUE‰ × g/kWh × s. Converted to USD and kg only when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EnergyTally {
    cost: u128,
    carbon: u128,
}

/// Seconds in an hour: a rate per hour is the tally of one hour of running.
pub const HOUR_S: u64 = 3600;

impl EnergyTally {
    /// Adds what `allocation` costs and emits running for `seconds`.
    pub fn add(&mut self, fleet: &Fleet, allocation: &Allocation, seconds: u64) {
        let site = &fleet.sites[allocation.site as usize];
        let watt_seconds_pue = u128::from(allocation.power_w) * u128::from(site.pue_milli) * u128::from(seconds);
        self.cost += watt_seconds_pue * u128::from(site.price_milli_usd_per_mwh);
        self.carbon += watt_seconds_pue * u128::from(site.carbon_g_per_kwh);
    }

    /// The cost, USD: ‰ (1000) × milli-USD (1000) × W per MW (10⁶) × s per h (3600).
    pub fn usd(&self) -> f64 {
        ratio(self.cost, 3_600_000_000_000_000)
    }

    /// The emissions, kg CO2: ‰ (1000) × W per kW (1000) × s per h (3600) × g per kg (1000).
    pub fn kg_co2(&self) -> f64 {
        ratio(self.carbon, 3_600_000_000_000)
    }
}

/// `n / d` as the nearest float: in lowest terms both are usually exact in an `f64`, and then one
/// division rounds correctly, whatever units the tally was kept in.
fn ratio(n: u128, d: u128) -> f64 {
    let (mut a, mut b) = (n, d);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    let g = a.max(1);
    (n / g) as f64 / (d / g) as f64
}

/// Free GPUs on partly used ready trays: capacity that only pods smaller than a tray can use (a
/// tray's free GPUs next to running pods). Whole free trays, and the GPUs of cordoned and failed
/// trays, do not count.
pub fn stranded_gpus(state: &FleetState) -> u64 {
    // From each rack's summary (usable trays counted by free GPUs), not tray by tray: replay
    // samples this at every interval.
    let mut stranded = 0u64;
    for rack in &state.racks {
        for free in 1..rack.node_gpus {
            stranded += u64::from(free * nodes_with_free(rack.summary, free));
        }
    }
    stranded
}

/// GPUs of each site.
pub fn site_gpus(fleet: &Fleet) -> Vec<u64> {
    fleet
        .sites
        .iter()
        .map(|site| {
            site.clusters
                .clone()
                .map(|c| {
                    fleet.clusters[c].racks.len() as u64 * u64::from(fleet.rack_types[fleet.clusters[c].rack_type].gpus)
                })
                .sum()
        })
        .collect()
}

/// GPUs in use at each site in `state` (running pods, on every tray).
pub fn site_gpus_used(fleet: &Fleet, state: &FleetState) -> Vec<u64> {
    let mut used = vec![0u64; fleet.sites.len()];
    for (r, rack) in state.racks.iter().enumerate() {
        used[rack.site as usize] += state.nodes_of(r).iter().map(|n| u64::from(n.used.count_ones())).sum::<u64>();
    }
    used
}

/// GPUs a new pod could use at each site in `state`: free GPUs of ready trays (a cordoned or failed
/// tray's GPUs are neither free nor in use).
pub fn site_gpus_free(fleet: &Fleet, state: &FleetState) -> Vec<u64> {
    let mut free = vec![0u64; fleet.sites.len()];
    for rack in &state.racks {
        free[rack.site as usize] += u64::from(rack.free_gpus);
    }
    free
}

/// IT power drawn at each site in `state`, W, against the fleet file's power (a ledger whose
/// site power was changed knows its own draw: `Ledger::site_power_drawn_w`).
pub fn site_power_drawn_w(fleet: &Fleet, state: &FleetState) -> Vec<u64> {
    fleet
        .sites
        .iter()
        .zip(&state.sites)
        .map(|(site, s)| u64::from(site.power_w.saturating_sub(s.power_free_w)))
        .collect()
}

/// True when a placed job sits further from its users than its latency bound, checked against the
/// fleet's own numbers rather than the scorer's (a hard constraint: this must never be true).
pub fn violates_latency(fleet: &Fleet, job: &Job, allocation: &Allocation) -> bool {
    let site = &fleet.sites[allocation.site as usize];
    match (job.max_latency_ms, fleet.region_index(&job.region)) {
        (Some(bound), Some(region)) => site.latency_ms[region] > bound,
        _ => false,
    }
}

/// A percentile by nearest rank of sorted values (0 when there are none).
pub fn percentile<T: Copy + Default>(sorted: &[T], percent: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The sum of `values`, starting from +0.0 (`Iterator::sum` of no floats is −0.0, which prints
/// as `-0.000`).
pub fn sum_f64(values: impl IntoIterator<Item = f64>) -> f64 {
    values.into_iter().fold(0.0, |a, b| a + b)
}
