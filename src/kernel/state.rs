//! The tables a scoring pass reads: the fleet in the kernel's record layout, with its capacity at
//! one moment. The engine's ledger keeps one current; a scoring pass reads a snapshot of it.

use crate::kernel::score::{ClusterGpu, JobGpu, RackGpu, SiteGpu, check, score};

/// The fleet as the kernel reads it. Placement changes `racks[].free_gpus`, `sites[].power_free_w`
/// and `clusters[].free_racks`; every other field is fixed by the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetState {
    /// Racks in global order.
    pub racks: Vec<RackGpu>,
    /// Sites.
    pub sites: Vec<SiteGpu>,
    /// Clusters.
    pub clusters: Vec<ClusterGpu>,
    /// Latency table: `latency[site * region_count + region]`, ms.
    pub latency: Vec<u32>,
    /// Regions per row of the latency table.
    pub region_count: u32,
}

impl FleetState {
    /// The latency from a rack's site to a region.
    #[inline(always)]
    pub fn latency_of(&self, rack: &RackGpu, region: u32) -> u32 {
        self.latency[(rack.site * self.region_count + region) as usize]
    }

    /// Reject bits of a job on a rack, in this state.
    #[inline(always)]
    pub fn check(&self, job: &JobGpu, rack_index: usize) -> u32 {
        let rack = &self.racks[rack_index];
        check(
            job,
            rack,
            &self.sites[rack.site as usize],
            &self.clusters[rack.cluster as usize],
            self.latency_of(rack, job.region),
        )
    }

    /// Score of a job on a rack, in this state (meaningful when [`FleetState::check`] is 0).
    #[inline(always)]
    pub fn score(&self, job: &JobGpu, rack_index: usize) -> u32 {
        let rack = &self.racks[rack_index];
        score(job, rack, &self.sites[rack.site as usize], self.latency_of(rack, job.region))
    }
}
