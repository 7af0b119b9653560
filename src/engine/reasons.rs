//! Words for people: what a job needs, and why it could not be placed.

use crate::engine::ledger::Ledger;
use crate::kernel::limits::MAX_LATENCY_MS;
use crate::kernel::score::{JobGpu, REJECT_KINDS, REJECT_NAMES, STATIC_REJECTS};
use crate::kernel::shape::{cluster_has_room, racks_needed, spans_racks};
use crate::model::fleet::Fleet;

/// Formats watts for people: MW from 1 MW up, kW from 0.1 kW, W below. (999,950 W and up would
/// round to "1000.0 kW": they are MW.)
pub(crate) fn power(watts: u64) -> String {
    if watts >= 999_950 {
        format!("{:.2} MW", watts as f64 / 1e6)
    } else if watts >= 100 {
        format!("{:.1} kW", watts as f64 / 1e3)
    } else {
        format!("{watts} W")
    }
}

/// What the job asks for, in words: "needs 64 GPUs in one NVLink domain with 200 GB HBM per GPU
/// within 40 ms of eu-west in EU".
pub fn describe_need(fleet: &Fleet, job: &JobGpu) -> String {
    let largest_rack = fleet.rack_types.iter().map(|rt| rt.gpus).max().unwrap_or(0);
    let mut need = if spans_racks(job.gpus, largest_rack) {
        format!("needs {} GPUs across whole free racks of one cluster", job.gpus)
    } else {
        format!("needs {} GPUs in one NVLink domain", job.gpus)
    };
    if job.hbm_gb > 0 {
        need += &format!(" with {} GB HBM per GPU", job.hbm_gb);
    }
    if job.latency_limit_ms < MAX_LATENCY_MS {
        need += &format!(" within {} ms of {}", job.latency_limit_ms, fleet.regions[job.region as usize]);
    }
    let names = |mask: u32, all: &[String]| {
        let named: Vec<&str> =
            all.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, n)| n.as_str()).collect();
        if named.is_empty() { "none of the fleet's".to_string() } else { named.join("/") }
    };
    if job.jurisdiction_mask != u32::MAX {
        need += &format!(" in {}", names(job.jurisdiction_mask, &fleet.jurisdictions));
    }
    if job.provider_mask != u32::MAX {
        need += &format!(" from {}", names(job.provider_mask, &fleet.providers));
    }
    need
}

/// Why `job` has no feasible rack in the ledger's state, for a person. Names the closest thing to a
/// fit.
///
/// Works cluster by cluster: every constraint but GPU capacity is the same for all racks of a
/// cluster, and the ledger's rack classes give each cluster's free-GPU counts without scanning its
/// racks.
pub(crate) fn unplaced_reason(ledger: &Ledger, job: &JobGpu) -> String {
    let (fleet, state, classes) = (ledger.fleet(), ledger.state(), ledger.classes());
    let need = describe_need(fleet, job);
    let mut counts = [0u64; REJECT_KINDS];
    let mut eligible = Vec::new();
    for (c, cluster) in fleet.clusters.iter().enumerate() {
        let reject = state.check(job, cluster.racks.start) & STATIC_REJECTS;
        if reject == 0 {
            eligible.push(c);
        }
        for (bit, count) in counts.iter_mut().enumerate() {
            if reject & (1 << bit) != 0 {
                *count += cluster.racks.len() as u64;
            }
        }
    }
    if eligible.is_empty() {
        let failing: Vec<String> = (0..REJECT_KINDS)
            .filter(|&bit| counts[bit] > 0)
            .map(|bit| format!("{} fail {}", counts[bit], REJECT_NAMES[bit]))
            .collect();
        return format!("{need}; no rack of the fleet qualifies ({} racks: {})", state.racks.len(), failing.join(", "));
    }
    let rack_gpus = |c: usize| fleet.rack_types[fleet.clusters[c].rack_type].gpus;
    let gpus_fit = |c: usize| {
        cluster_has_room(job.gpus, rack_gpus(c), classes.max_free(c).unwrap_or(0), state.clusters[c].free_racks)
    };
    // Clusters with the GPUs but not the power: the site's power is what binds.
    if let Some(c) = eligible
        .iter()
        .copied()
        .filter(|&c| gpus_fit(c))
        .max_by_key(|&c| (state.sites[fleet.clusters[c].site].power_free_w, std::cmp::Reverse(c)))
    {
        let site = fleet.clusters[c].site;
        let draw = u64::from(job.gpus) * u64::from(fleet.rack_types[fleet.clusters[c].rack_type].gpu_watts);
        return format!(
            "{need}; GPUs are free but power is not: {} has {} of IT power left, the job draws {}",
            fleet.sites[site].name,
            power(u64::from(state.sites[site].power_free_w)),
            power(draw)
        );
    }
    // Otherwise GPUs bind: name the eligible place closest to fitting.
    let within_one_domain: Vec<usize> =
        eligible.iter().copied().filter(|&c| !spans_racks(job.gpus, rack_gpus(c))).collect();
    if let Some(c) =
        within_one_domain.iter().copied().max_by_key(|&c| (classes.max_free(c).unwrap_or(0), std::cmp::Reverse(c)))
    {
        let site = &fleet.sites[fleet.clusters[c].site].name;
        format!("{need}; closest feasible: {site} has at most {} free in a rack", classes.max_free(c).unwrap_or(0))
    } else {
        let c = eligible
            .iter()
            .copied()
            .max_by_key(|&c| (state.clusters[c].free_racks, std::cmp::Reverse(c)))
            .expect("eligible is not empty");
        let cluster = &fleet.clusters[c];
        format!(
            "{need}; closest feasible: {}/{} has {} fully free racks, the job needs {}",
            fleet.sites[cluster.site].name,
            cluster.name,
            state.clusters[c].free_racks,
            racks_needed(job.gpus, rack_gpus(c))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::power;

    #[test]
    fn power_is_worded_in_the_unit_that_fits() {
        assert_eq!(power(0), "0 W");
        assert_eq!(power(99), "99 W");
        assert_eq!(power(100), "0.1 kW");
        assert_eq!(power(1500), "1.5 kW");
        assert_eq!(power(999_949), "999.9 kW");
        assert_eq!(power(999_950), "1.00 MW");
        assert_eq!(power(124_500_000), "124.50 MW");
    }
}
