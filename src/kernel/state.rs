//! The tables a scoring pass reads: the fleet in the kernel's record layout, with its capacity at
//! one moment. The engine's ledger keeps one current; a scoring pass reads a snapshot of it.

use std::collections::BTreeMap;

use crate::kernel::limits::{MAX_NODE_CPU_MILLI, MAX_NODE_GPUS, MAX_NODE_MEMORY_MIB};
use crate::kernel::score::{BlockGpu, ClusterGpu, GPU_MILLI, JobGpu, NodeGpu, RackGpu, SiteGpu, check, score};
use crate::kernel::shape::rack_summary;

/// What a node (tray) can do: `ready` takes new pods; `cordoned` keeps its pods but takes no new
/// ones; `failed` has lost its GPUs (it runs no pods and counts as no capacity).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// In service.
    #[default]
    Ready,
    /// No new pods (drained for maintenance, say); the pods on it keep running.
    Cordoned,
    /// Out of service: no GPUs, no pods.
    Failed,
}

impl NodeState {
    /// Its name in files.
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Ready => "ready",
            NodeState::Cordoned => "cordoned",
            NodeState::Failed => "failed",
        }
    }
}

/// The thousandths in use of each GPU of a node that has shared GPUs: 1..=1000 for a shared GPU,
/// 0 for any other. Kept apart from [`NodeCell`] (in [`FleetState::shares`], for the nodes with
/// shared GPUs only), so that a fleet without sharing pays nothing for it.
pub type Shares = [u16; MAX_NODE_GPUS as usize];

/// One node's occupancy: which of its GPUs are in use (bit i: GPU i), which of those are shared,
/// and its state. Three bytes: the ledger holds one per tray.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NodeCell {
    /// GPUs in use, one bit each (at most 8): whole, or shared by pods of a share of a GPU.
    pub used: u8,
    /// Ready, cordoned or failed.
    pub state: NodeState,
    /// The GPUs of `used` that are shared (their thousandths in use are the node's [`Shares`]):
    /// pods of whole GPUs never take them.
    pub shared: u8,
}

impl NodeCell {
    /// A node with the GPUs of mask `used` in use whole, in state `state`.
    pub fn new(used: u8, state: NodeState) -> NodeCell {
        NodeCell { used, state, shared: 0 }
    }

    /// The free thousandths of each of its `node_gpus` GPUs for a pod of a shared GPU, given its
    /// `shares`: 1000 for a free GPU, what is left on a shared one, 0 for one in use whole, and 0
    /// for all when the node is not ready.
    pub fn gpu_free_milli(self, shares: &Shares, node_gpus: u32) -> [u32; MAX_NODE_GPUS as usize] {
        let mut free = [0u32; MAX_NODE_GPUS as usize];
        if self.state == NodeState::Ready {
            for (gpu, slot) in free.iter_mut().enumerate().take(node_gpus as usize) {
                *slot = if self.shared & (1 << gpu) != 0 {
                    GPU_MILLI - u32::from(shares[gpu])
                } else if self.used & (1 << gpu) == 0 {
                    GPU_MILLI
                } else {
                    0
                };
            }
        }
        free
    }

    /// The kernel's record of its shared GPUs' free thousandths ([`NodeGpu::shared_free`]), given
    /// its `shares`: none unless the node is ready.
    pub fn shared_free(self, shares: &Shares) -> [u32; 3] {
        let mut words = [0u32; 3];
        if self.state == NodeState::Ready {
            for gpu in (0..MAX_NODE_GPUS as usize).filter(|g| self.shared & (1 << g) != 0) {
                words[gpu / 3] |= (GPU_MILLI - u32::from(shares[gpu])) << (10 * (gpu % 3));
            }
        }
        words
    }

    /// GPUs a new pod may use on this node of `node_gpus` GPUs: its free GPUs when ready, else 0.
    #[inline]
    pub fn usable_free(self, node_gpus: u32) -> u32 {
        if self.state == NodeState::Ready { node_gpus - self.used.count_ones() } else { 0 }
    }
}

/// The fleet as the kernel reads it. Placement changes `nodes[].used`, with each rack's
/// `free_gpus` and node counts, `sites[].power_free_w`, `clusters[].free_racks` and
/// `blocks[].free_racks` following;
/// every other field is fixed by the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetState {
    /// Racks in global order.
    pub racks: Vec<RackGpu>,
    /// Nodes, rack by rack (a rack's are `first_node .. first_node + nodes`); the host's table,
    /// summarized for the kernel in each rack's `free_gpus` and counts.
    pub nodes: Vec<NodeCell>,
    /// The [`Shares`] of every node with shared GPUs (`nodes[i].shared` not 0), by node index.
    pub shares: BTreeMap<u32, Shares>,
    /// The kernel's record of each node, indexed like `nodes`: its usable free GPUs and shared GPUs'
    /// free thousandths (kept by [`FleetState::recount`]) and its free CPU and memory (kept by the ledger; a node with no
    /// GPU in use has all its CPU and memory free).
    pub node_table: Vec<NodeGpu>,
    /// Sites.
    pub sites: Vec<SiteGpu>,
    /// Clusters.
    pub clusters: Vec<ClusterGpu>,
    /// Topology blocks, cluster by cluster (a rack's is `blocks[rack.block]`).
    pub blocks: Vec<BlockGpu>,
    /// Latency table: `latency[site * region_count + region]`, ms.
    pub latency: Vec<u32>,
    /// Regions per row of the latency table.
    pub region_count: u32,
}

impl FleetState {
    /// The [`Shares`] of node `node` (all 0 for a node without shared GPUs).
    pub fn shares_of(&self, node: usize) -> Shares {
        self.shares.get(&(node as u32)).copied().unwrap_or_default()
    }

    /// The nodes of rack `rack`.
    pub fn nodes_of(&self, rack: usize) -> &[NodeCell] {
        let r = &self.racks[rack];
        &self.nodes[r.first_node as usize..(r.first_node + r.nodes) as usize]
    }

    /// The usable free GPUs of each node of rack `rack`.
    pub fn node_free(&self, rack: usize) -> Vec<u32> {
        let node_gpus = self.racks[rack].node_gpus;
        self.nodes_of(rack).iter().map(|n| n.usable_free(node_gpus)).collect()
    }

    /// The free thousandths left on each shared GPU of rack `rack`'s ready trays, in tray and GPU
    /// order (empty when it has none).
    pub fn shared_room(&self, rack: usize) -> Vec<u32> {
        let first = self.racks[rack].first_node as usize;
        let mut room = Vec::new();
        for (i, cell) in self.nodes_of(rack).iter().enumerate() {
            if cell.shared == 0 || cell.state != NodeState::Ready {
                continue;
            }
            let shares = self.shares_of(first + i);
            for gpu in (0..MAX_NODE_GPUS as usize).filter(|g| cell.shared & (1 << g) != 0) {
                room.push(GPU_MILLI - u32::from(shares[gpu]));
            }
        }
        room
    }

    /// Sets rack `rack`'s free GPUs, summary and CPU and memory per free GPU from its nodes, and
    /// its nodes' usable free GPUs in the kernel's table.
    pub fn recount(&mut self, rack: usize) {
        let free = self.node_free(rack);
        let first = self.racks[rack].first_node as usize;
        let (mut cpu_per_gpu, mut memory_per_gpu) = (MAX_NODE_CPU_MILLI, MAX_NODE_MEMORY_MIB);
        for (i, &f) in free.iter().enumerate() {
            let cell = self.nodes[first + i];
            let shared_free = if cell.shared == 0 { [0; 3] } else { cell.shared_free(&self.shares_of(first + i)) };
            let node = &mut self.node_table[first + i];
            node.free_gpus = f;
            node.shared_free = shared_free;
            if let (Some(cpu), Some(memory)) = (node.free_cpu_milli.checked_div(f), node.free_memory_mib.checked_div(f))
            {
                cpu_per_gpu = cpu_per_gpu.min(cpu);
                memory_per_gpu = memory_per_gpu.min(memory);
            }
        }
        let r = &mut self.racks[rack];
        r.free_gpus = free.iter().sum();
        r.summary = rack_summary(free.iter().copied());
        r.cpu_per_gpu = cpu_per_gpu;
        r.memory_per_gpu = memory_per_gpu;
    }

    /// True when every node of rack `rack` is ready and free (a rack a spanning job may take).
    pub fn is_whole(&self, rack: usize) -> bool {
        let r = &self.racks[rack];
        r.free_gpus == r.gpus
    }

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
            &self.blocks[rack.block as usize],
            self.latency_of(rack, job.region),
            &self.node_table,
        )
    }

    /// Score of a job on a rack, in this state (meaningful when [`FleetState::check`] is 0).
    #[inline(always)]
    pub fn score(&self, job: &JobGpu, rack_index: usize) -> u32 {
        let rack = &self.racks[rack_index];
        score(job, rack, &self.sites[rack.site as usize], self.latency_of(rack, job.region))
    }
}
