//! The ledger: the fleet's live capacity (free GPUs per rack, fully free racks per cluster, IT
//! power per site), changed only by [`Ledger::commit`] and [`Ledger::release`], which are exact
//! inverses. Placement, replay, explain and the [`crate::Scheduler`] all keep their state here.

use std::sync::Arc;

use crate::engine::classes::ClassIndex;
use crate::kernel::limits::MAX_NODE_GPUS;
use crate::kernel::score::{BLOCK_ANY, Candidate, GPU_MILLI, JobGpu, better, job_watts};
use crate::kernel::shape::{
    RackShare, SharedNode, pods_on_nodes_sized, racks_needed, shared_pods_on_gpus, spans_racks,
};
use crate::kernel::state::{FleetState, NodeState};
use crate::model::fleet::Fleet;

/// One pod of a placed job: its rack, its node in the rack, and its GPUs, CPU and memory there.
/// Serializable so that a service can keep what each job holds across restarts
/// ([`crate::Scheduler::restore`] checks it against the ledger before taking it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct PodSlot {
    /// Global rack index.
    pub rack: u32,
    /// Index of the node in its rack.
    pub node: u32,
    /// Its GPUs on the node, one bit each (bit i: GPU i).
    pub gpus: u8,
    /// CPU it holds on the node, milli-cores (0 when its job asks for none).
    pub cpu_milli: u32,
    /// Memory it holds on the node, MiB (likewise).
    pub memory_mib: u32,
    /// For a pod of a shared GPU, the thousandths of its one GPU it holds (1..=999); 0 for a pod of
    /// whole GPUs.
    pub gpu_milli: u32,
}

impl PodSlot {
    /// GPUs it holds.
    pub fn gpu_count(&self) -> u32 {
        self.gpus.count_ones()
    }

    /// Indices of its GPUs on the node, ascending.
    pub fn gpu_indices(&self) -> Vec<u32> {
        (0..8).filter(|i| self.gpus & (1 << i) != 0).collect()
    }
}

/// What a placed job holds: its pods (on each node, the GPUs), GPUs on each of its racks (anchor
/// first, then by index) and IT power at its site. Releasing it gives back exactly this.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Allocation {
    /// Racks and GPUs taken, anchor rack first, then by rack index.
    pub racks: Vec<RackShare>,
    /// Its pods, in placement order (rack by rack, as [`crate::kernel::shape::pods_on_nodes`]
    /// places them).
    pub pods: Vec<PodSlot>,
    /// The site of its racks.
    pub site: u32,
    /// IT power drawn at the site, W.
    pub power_w: u32,
}

impl Allocation {
    /// GPUs held.
    pub fn gpus(&self) -> u32 {
        self.racks.iter().map(|s| s.gpus).sum()
    }

    /// The anchor rack (the one the job was scored on).
    pub fn anchor(&self) -> u32 {
        self.racks[0].rack
    }
}

/// The fleet's live capacity.
#[derive(Debug, Clone)]
pub struct Ledger {
    fleet: Arc<Fleet>,
    state: FleetState,
    /// Every rack by class, kept in step with `state`.
    classes: ClassIndex,
    /// Changes at every commit and release: keys caches of anything computed from the state.
    version: u64,
    /// Each site's IT power capacity now, W (the fleet's, until [`Ledger::set_site_power`]).
    power_capacity_w: Vec<u32>,
}

impl Ledger {
    /// The fleet at the occupancy its file states.
    pub fn new(fleet: Arc<Fleet>) -> Ledger {
        let state = fleet.initial_state();
        Ledger::with_state(fleet, state)
    }

    /// The fleet at the capacity of `state` (a snapshot of a ledger of the same fleet).
    pub fn with_state(fleet: Arc<Fleet>, state: FleetState) -> Ledger {
        assert_eq!(state.racks.len(), fleet.racks.len(), "a state of another fleet");
        let classes = ClassIndex::all(&fleet, &state);
        let power_capacity_w = fleet.sites.iter().map(|s| s.power_w).collect();
        Ledger { fleet, state, classes, version: 0, power_capacity_w }
    }

    /// The fleet.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// The capacity now, in the kernel's layout (what a scoring pass reads).
    pub fn state(&self) -> &FleetState {
        &self.state
    }

    /// A number that changes at every commit and release, and at every change of the fleet.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Sets node `node` of rack `rack` (global index) ready, cordoned (no new pods; those on it
    /// stay) or failed (its GPUs are gone: what the fleet file had in use on it is dropped, and it
    /// comes back empty when repaired). No allocation may hold the failed node: the caller releases
    /// the jobs on it first ([`crate::Scheduler::set_node_state`] refuses otherwise). An error when
    /// there is no such node.
    pub fn set_node_state(&mut self, rack: u32, node: u32, state: NodeState) -> Result<(), String> {
        let r = self.state.racks.get(rack as usize).ok_or_else(|| format!("rack {rack} does not exist"))?;
        if node >= r.nodes {
            return Err(format!("rack {rack} has no node {node}"));
        }
        let at = (r.first_node + node) as usize;
        if self.state.nodes[at].state == state {
            return Ok(());
        }
        self.version += 1;
        let (node_cpu, node_memory) = (r.node_cpu_milli, r.node_memory_mib);
        let cell = &mut self.state.nodes[at];
        cell.state = state;
        if state == NodeState::Failed {
            cell.used = 0;
            cell.shared = 0;
            self.state.shares.remove(&(at as u32));
            let free = &mut self.state.node_table[at];
            free.free_cpu_milli = node_cpu;
            free.free_memory_mib = node_memory;
        }
        self.restate_rack(rack as usize);
        Ok(())
    }

    /// Each site's IT power capacity now, W.
    pub fn site_power_capacity_w(&self) -> &[u32] {
        &self.power_capacity_w
    }

    /// IT power drawn at site `site` now (jobs and the fleet file's own load), W.
    pub fn site_power_drawn_w(&self, site: usize) -> u32 {
        self.power_capacity_w[site] - self.state.sites[site].power_free_w
    }

    /// Sets site `site`'s IT power capacity to `watts` (at most `MAX_SITE_POWER_W`). An error,
    /// with nothing changed, when the site draws more than that now: release jobs first.
    pub fn set_site_power(&mut self, site: u32, watts: u32) -> Result<(), String> {
        let s = site as usize;
        if s >= self.state.sites.len() {
            return Err(format!("site {site} does not exist"));
        }
        if watts > crate::kernel::limits::MAX_SITE_POWER_W {
            return Err(format!(
                "{watts} W is over the most a site may have ({} W)",
                crate::kernel::limits::MAX_SITE_POWER_W
            ));
        }
        let drawn = self.site_power_drawn_w(s);
        if watts < drawn {
            return Err(format!("the site draws {drawn} W now, more than {watts} W"));
        }
        self.version += 1;
        self.power_capacity_w[s] = watts;
        self.state.sites[s].power_free_w = watts - drawn;
        Ok(())
    }

    /// Sets the day cluster `cluster`'s capacity comes online (a cluster brought forward or
    /// delayed).
    pub fn set_cluster_online(&mut self, cluster: u32, day: crate::model::date::Day) -> Result<(), String> {
        let c =
            self.state.clusters.get_mut(cluster as usize).ok_or_else(|| format!("cluster {cluster} does not exist"))?;
        c.online_day = day.0;
        self.version += 1;
        Ok(())
    }

    pub(crate) fn classes(&self) -> &ClassIndex {
        &self.classes
    }

    /// The reference rule: the best feasible rack for `job` now, scanning every rack (ties: the
    /// lowest index). Slow and plain; the batched engine must always agree with it.
    pub fn best_rack(&self, job: &JobGpu) -> Option<Candidate> {
        let mut best: Option<Candidate> = None;
        for rack in 0..self.state.racks.len() {
            if self.state.check(job, rack) == 0 {
                let candidate = Candidate { score: self.state.score(job, rack), rack: rack as u32 };
                if best.is_none_or(|b| better(candidate, b)) {
                    best = Some(candidate);
                }
            }
        }
        best
    }

    /// [`Ledger::best_rack`], scoring one rack per class of interchangeable racks (the batched
    /// engine's host path; equal by the invariants in [`crate::engine`]).
    pub fn best_rack_by_class(&self, job: &JobGpu) -> Option<Candidate> {
        self.classes.best(job, &self.state)
    }

    /// Takes the job's GPUs and power, anchored at `anchor`, which must be feasible for it now
    /// (`check` is 0): the racks, nodes and GPUs the shape rule gives ([`crate::kernel::shape`]).
    pub fn commit(&mut self, job: &JobGpu, anchor: u32) -> Allocation {
        debug_assert_eq!(self.state.check(job, anchor as usize), 0, "commit on an infeasible rack");
        let rack = self.state.racks[anchor as usize];
        let ([full, size, rest], per_rack) = job.shape_on(&rack);
        let racks: Vec<u32> = if spans_racks([full, size, rest], per_rack) {
            // The other racks of a job spanning racks: the whole racks of the anchor's block by
            // index, then (unless the job is kept to one block, whose racks then suffice) the
            // cluster's other whole racks by index.
            let needed = racks_needed([full, size, rest], per_rack) as usize;
            let whole = || self.classes.whole_racks(rack.cluster as usize).filter(|&r| r != anchor);
            let state = &self.state;
            let same_block = whole().filter(|&r| state.racks[r as usize].block == rack.block);
            let elsewhere = whole().filter(|&r| state.racks[r as usize].block != rack.block);
            let racks: Vec<u32> = std::iter::once(anchor).chain(same_block).chain(elsewhere).take(needed).collect();
            debug_assert!(
                job.block_rule == BLOCK_ANY || racks.iter().all(|&r| state.racks[r as usize].block == rack.block),
                "a job kept to one block was given racks of another"
            );
            racks
        } else {
            vec![anchor]
        };
        let mut pods = Vec::new();
        let mut shares = Vec::with_capacity(racks.len());
        let (mut full_left, mut rest_left) = (full, rest);
        for &r in &racks {
            let full_here = full_left.min(per_rack);
            let rest_here = if full_here == full_left && full_here < per_rack { rest_left } else { 0 };
            let first = self.state.racks[r as usize].first_node as usize;
            let table = &self.state.node_table[first..first + self.state.racks[r as usize].nodes as usize];
            let need = [job.pod_cpu_milli, job.pod_memory_mib];
            if job.shares_gpus() {
                let node_gpus = self.state.racks[r as usize].node_gpus;
                let cells = &self.state.nodes[first..first + table.len()];
                let mut view: Vec<SharedNode> = cells
                    .iter()
                    .zip(table)
                    .enumerate()
                    .map(|(i, (cell, n))| {
                        let shares = self.state.shares_of(first + i);
                        (cell.gpu_free_milli(&shares, node_gpus), n.free_cpu_milli, n.free_memory_mib)
                    })
                    .collect();
                let placed = shared_pods_on_gpus(&mut view, full_here, job.gpu_milli, need)
                    .expect("the anchor passed `fits`, so the shape rule places every pod");
                // On the rack it holds the GPUs its pods touch.
                let mut touched = placed.clone();
                touched.sort_unstable();
                touched.dedup();
                for &(node, gpu) in &placed {
                    let [cpu_milli, memory_mib] = need;
                    pods.push(PodSlot {
                        rack: r,
                        node,
                        gpus: 1 << gpu,
                        cpu_milli,
                        memory_mib,
                        gpu_milli: job.gpu_milli,
                    });
                }
                shares.push(RackShare { rack: r, gpus: touched.len() as u32 });
                full_left -= full_here;
                continue;
            }
            let mut free: Vec<[u32; 3]> =
                table.iter().map(|n| [n.free_gpus, n.free_cpu_milli, n.free_memory_mib]).collect();
            let placed = pods_on_nodes_sized(&mut free, full_here, size, rest_here, need)
                .expect("the anchor passed `fits`, so the shape rule places every pod");
            (full_left, rest_left) = (full_left - full_here, rest_left - rest_here);
            let mut taken = vec![0u8; free.len()];
            for (node, gpus) in placed {
                // The node's lowest-numbered GPUs that are neither in use nor taken by this job.
                let busy = self.state.nodes[first + node as usize].used | taken[node as usize];
                let mut mask = 0u8;
                for bit in (0..8).filter(|b| busy & (1 << b) == 0).take(gpus as usize) {
                    mask |= 1 << bit;
                }
                taken[node as usize] |= mask;
                // The remainder pod of a shorthand job (smaller than the others) asks for nothing.
                let [cpu_milli, memory_mib] = if gpus == size { need } else { [0, 0] };
                pods.push(PodSlot { rack: r, node, gpus: mask, cpu_milli, memory_mib, gpu_milli: 0 });
            }
            shares.push(RackShare { rack: r, gpus: taken.iter().map(|m| m.count_ones()).sum() });
        }
        assert_eq!((full_left, rest_left), (0, 0), "the anchor passed `fits`, so its cluster has the whole racks");
        let allocation = Allocation { racks: shares, pods, site: rack.site, power_w: job_watts(job, rack.gpu_watts) };
        self.apply(&allocation);
        allocation
    }

    /// Why `allocation` cannot be applied to this ledger, or Ok when [`Ledger::apply`] would take
    /// it without panicking: every index in range, its racks at its site and holding exactly its
    /// pods' GPUs, and the capacity there (its pods' GPUs free on ready nodes, or room on a shared
    /// GPU, and the CPU, memory and power). For allocations read back from storage, which may
    /// come from another fleet or be damaged.
    pub fn check_allocation(&self, allocation: &Allocation) -> Result<(), String> {
        self.check_allocation_on(allocation, false)
    }

    /// [`Ledger::check_allocation`]; with `cordoned_too`, its nodes may be cordoned (a job taking
    /// back what it held: a cordon stops new pods, not the ones there).
    pub(crate) fn check_allocation_on(&self, allocation: &Allocation, cordoned_too: bool) -> Result<(), String> {
        let state = &self.state;
        let site = allocation.site as usize;
        if site >= state.sites.len() {
            return Err(format!("site {site} does not exist"));
        }
        if allocation.racks.is_empty() || allocation.pods.is_empty() {
            return Err("it holds no rack or no pod".into());
        }
        let mut rack_gpus: Vec<(u32, u32)> = Vec::with_capacity(allocation.racks.len());
        for share in &allocation.racks {
            let rack =
                state.racks.get(share.rack as usize).ok_or_else(|| format!("rack {} does not exist", share.rack))?;
            if rack.site as usize != site {
                return Err(format!("rack {} is not at site {site}", share.rack));
            }
            if rack_gpus.iter().any(|&(r, _)| r == share.rack) {
                return Err(format!("rack {} is named twice", share.rack));
            }
            rack_gpus.push((share.rack, 0));
        }
        // What the pods take on each node: GPUs whole, thousandths of shared GPUs, CPU, memory.
        let mut taken: Vec<(u32, u8, [u64; MAX_NODE_GPUS as usize], u64, u64)> = Vec::new();
        for pod in &allocation.pods {
            let rack = state.racks.get(pod.rack as usize).ok_or_else(|| format!("rack {} does not exist", pod.rack))?;
            if pod.node >= rack.nodes {
                return Err(format!("rack {} has no node {}", pod.rack, pod.node));
            }
            if pod.gpus == 0 || u32::from(pod.gpus) >> rack.node_gpus != 0 {
                return Err(format!("rack {} node {} has no GPUs {:#b}", pod.rack, pod.node, pod.gpus));
            }
            if pod.gpu_milli >= GPU_MILLI || (pod.gpu_milli != 0 && pod.gpus.count_ones() != 1) {
                return Err(format!(
                    "a pod on rack {} node {} holds a share {} of several GPUs or of more than one",
                    pod.rack, pod.node, pod.gpu_milli
                ));
            }
            let share = rack_gpus
                .iter_mut()
                .find(|(r, _)| *r == pod.rack)
                .ok_or_else(|| format!("a pod is on rack {}, which the allocation does not hold", pod.rack))?;
            if pod.gpu_milli == 0 {
                share.1 += pod.gpu_count();
            }
            let at = rack.first_node + pod.node;
            let entry = match taken.iter().position(|t| t.0 == at) {
                Some(i) => &mut taken[i],
                None => {
                    taken.push((at, 0, [0; MAX_NODE_GPUS as usize], 0, 0));
                    taken.last_mut().expect("just pushed")
                }
            };
            if pod.gpu_milli == 0 {
                if entry.1 & pod.gpus != 0 {
                    return Err(format!("two pods take GPUs {:#b} of rack {} node {}", pod.gpus, pod.rack, pod.node));
                }
                entry.1 |= pod.gpus;
            } else {
                entry.2[pod.gpus.trailing_zeros() as usize] += u64::from(pod.gpu_milli);
            }
            entry.3 += u64::from(pod.cpu_milli);
            entry.4 += u64::from(pod.memory_mib);
        }
        for (share, &(rack, whole)) in allocation.racks.iter().zip(&rack_gpus) {
            // A rack is held for its pods' whole GPUs and for each shared GPU its pods touch.
            let mut touched: Vec<(u32, u8)> = allocation
                .pods
                .iter()
                .filter(|p| p.rack == rack && p.gpu_milli != 0)
                .map(|p| (p.node, p.gpus))
                .collect();
            touched.sort_unstable();
            touched.dedup();
            let gpus = whole + touched.len() as u32;
            if share.gpus != gpus {
                return Err(format!("it holds {} GPUs of rack {rack} but its pods take {gpus}", share.gpus));
            }
        }
        for &(at, whole, milli, cpu, memory) in &taken {
            let node = state.nodes[at as usize];
            let where_ = || format!("node {at}");
            if node.state != NodeState::Ready && !(cordoned_too && node.state == NodeState::Cordoned) {
                return Err(format!("{} is not ready", where_()));
            }
            if node.used & whole != 0 {
                return Err(format!("{} has GPUs {:#b} in use", where_(), node.used & whole));
            }
            let shares = state.shares_of(at as usize);
            for (g, &m) in milli.iter().enumerate() {
                if m == 0 {
                    continue;
                }
                let bit = 1u8 << g;
                let room = if node.shared & bit != 0 {
                    GPU_MILLI - u32::from(shares[g])
                } else if node.used & bit == 0 && whole & bit == 0 {
                    GPU_MILLI
                } else {
                    0
                };
                if m > u64::from(room) {
                    return Err(format!("{} GPU {g} has room for {room} thousandths, not {m}", where_()));
                }
            }
            let free = state.node_table[at as usize];
            if u64::from(free.free_cpu_milli) < cpu || u64::from(free.free_memory_mib) < memory {
                return Err(format!("{} lacks the CPU or memory of the pods", where_()));
            }
        }
        if state.sites[site].power_free_w < allocation.power_w {
            return Err(format!("site {site} lacks the power of the allocation"));
        }
        Ok(())
    }

    /// Takes exactly what `allocation` holds (a recorded commit, replayed). Panics if the capacity
    /// is not there: an allocation is applied only to the state it was committed in.
    pub fn apply(&mut self, allocation: &Allocation) {
        self.apply_on(allocation, false);
    }

    /// Takes back what [`Ledger::release`] just gave back for `allocation` (preemption's trials
    /// of victim sets): [`Ledger::apply`], except that its nodes may be cordoned, as the nodes of
    /// running jobs may be (a cordon stops new pods, not the ones there).
    pub(crate) fn take_back(&mut self, allocation: &Allocation) {
        self.apply_on(allocation, true);
    }

    fn apply_on(&mut self, allocation: &Allocation, cordoned_too: bool) {
        self.version += 1;
        for pod in &allocation.pods {
            let first = self.state.racks[pod.rack as usize].first_node;
            let at = first + pod.node;
            let node = &mut self.state.nodes[at as usize];
            if pod.gpu_milli != 0 {
                // One GPU: free (it becomes shared) or shared with room for the pod's share.
                let g = pod.gpus.trailing_zeros() as usize;
                let shares = self.state.shares.entry(at).or_default();
                let shared = u32::from(shares[g]);
                let room = if node.shared & pod.gpus == 0 {
                    node.used & pod.gpus == 0
                } else {
                    shared + pod.gpu_milli <= GPU_MILLI
                };
                let open = node.state == NodeState::Ready || (cordoned_too && node.state == NodeState::Cordoned);
                assert!(
                    open && pod.gpus.count_ones() == 1 && room,
                    "rack {} node {} cannot take {} thousandths of GPU {g}",
                    pod.rack,
                    pod.node,
                    pod.gpu_milli
                );
                shares[g] = (shared + pod.gpu_milli) as u16;
                node.shared |= pod.gpus;
            } else {
                let open = node.state == NodeState::Ready || (cordoned_too && node.state == NodeState::Cordoned);
                assert!(
                    open && node.used & pod.gpus == 0,
                    "rack {} node {} cannot take GPUs {:#b}",
                    pod.rack,
                    pod.node,
                    pod.gpus
                );
            }
            node.used |= pod.gpus;
            let free = &mut self.state.node_table[(first + pod.node) as usize];
            assert!(
                free.free_cpu_milli >= pod.cpu_milli && free.free_memory_mib >= pod.memory_mib,
                "rack {} node {} lacks the CPU or memory of the pod",
                pod.rack,
                pod.node
            );
            free.free_cpu_milli -= pod.cpu_milli;
            free.free_memory_mib -= pod.memory_mib;
        }
        self.restate(allocation);
        let site = &mut self.state.sites[allocation.site as usize];
        assert!(site.power_free_w >= allocation.power_w, "site {} lacks the power of the allocation", allocation.site);
        site.power_free_w -= allocation.power_w;
    }

    /// Gives back what `allocation` holds: its GPUs on each node (a rack whole again counts as a
    /// whole rack of its cluster) and its power. The exact inverse of the commit that made it.
    /// Panics if it would give back what is not held: an allocation is released once.
    pub fn release(&mut self, allocation: &Allocation) {
        self.version += 1;
        for pod in &allocation.pods {
            let first = self.state.racks[pod.rack as usize].first_node;
            let at = first + pod.node;
            let node = &mut self.state.nodes[at as usize];
            assert!(
                node.used & pod.gpus == pod.gpus,
                "rack {} node {} does not hold GPUs {:#b}",
                pod.rack,
                pod.node,
                pod.gpus
            );
            if pod.gpu_milli != 0 {
                let g = pod.gpus.trailing_zeros() as usize;
                let shares = self.state.shares.get_mut(&at).filter(|_| node.shared & pod.gpus != 0);
                let shares =
                    shares.unwrap_or_else(|| panic!("rack {} node {} GPU {g} is not shared", pod.rack, pod.node));
                let shared = u32::from(shares[g]);
                assert!(
                    shared >= pod.gpu_milli,
                    "rack {} node {} GPU {g} does not hold the pod's share",
                    pod.rack,
                    pod.node
                );
                shares[g] = (shared - pod.gpu_milli) as u16;
                // The last share given back frees the GPU, and the last shared GPU the node's entry.
                if shares[g] == 0 {
                    node.used &= !pod.gpus;
                    node.shared &= !pod.gpus;
                    if node.shared == 0 {
                        self.state.shares.remove(&at);
                    }
                }
            } else {
                assert!(
                    pod.gpus & node.shared == 0,
                    "rack {} node {}: a pod of whole GPUs on a shared GPU",
                    pod.rack,
                    pod.node
                );
                node.used &= !pod.gpus;
            }
            let rack = &self.state.racks[pod.rack as usize];
            let free = &mut self.state.node_table[(first + pod.node) as usize];
            free.free_cpu_milli += pod.cpu_milli;
            free.free_memory_mib += pod.memory_mib;
            assert!(
                free.free_cpu_milli <= rack.node_cpu_milli && free.free_memory_mib <= rack.node_memory_mib,
                "rack {} node {} would have more CPU or memory free than it has",
                pod.rack,
                pod.node
            );
        }
        self.restate(allocation);
        let capacity = self.power_capacity_w[allocation.site as usize];
        let site = &mut self.state.sites[allocation.site as usize];
        assert!(
            u64::from(site.power_free_w) + u64::from(allocation.power_w) <= u64::from(capacity),
            "site {} would have more power free than it has",
            allocation.site
        );
        site.power_free_w += allocation.power_w;
    }

    /// After the nodes of `allocation`'s racks changed: their counts, classes and their clusters'
    /// whole racks.
    fn restate(&mut self, allocation: &Allocation) {
        for share in &allocation.racks {
            self.restate_rack(share.rack as usize);
        }
    }

    /// Recounts rack `r` after its nodes changed: its free GPUs and summary, whether it is whole
    /// (its cluster's and block's counts), its class.
    fn restate_rack(&mut self, r: usize) {
        {
            let was_whole = self.state.is_whole(r);
            self.state.recount(r);
            let is_whole = self.state.is_whole(r);
            let (c, b) = (self.state.racks[r].cluster as usize, self.state.racks[r].block as usize);
            if was_whole && !is_whole {
                self.state.clusters[c].free_racks -= 1;
                self.state.blocks[b].free_racks -= 1;
            } else if is_whole && !was_whole {
                self.state.clusters[c].free_racks += 1;
                self.state.blocks[b].free_racks += 1;
            }
            self.classes.update(r as u32, &self.state);
        }
    }

    /// Checks the ledger's own bookkeeping: every rack in the class of its free GPUs, every
    /// cluster's count of fully free racks, no rack or site above its capacity.
    pub fn check_consistency(&self) -> Result<(), String> {
        self.classes.matches(&self.state)?;
        for (c, cluster) in self.fleet.clusters.iter().enumerate() {
            let free =
                cluster.racks.clone().filter(|&r| self.state.racks[r].free_gpus == self.state.racks[r].gpus).count();
            if free as u32 != self.state.clusters[c].free_racks {
                return Err(format!("cluster {c} counts {} free racks, has {free}", self.state.clusters[c].free_racks));
            }
            for b in cluster.first_block..cluster.first_block + cluster.block_count() {
                let free =
                    cluster.racks.clone().filter(|&r| self.state.racks[r].block == b && self.state.is_whole(r)).count()
                        as u32;
                if free != self.state.blocks[b as usize].free_racks {
                    return Err(format!(
                        "block {b} counts {} free racks, has {free}",
                        self.state.blocks[b as usize].free_racks
                    ));
                }
            }
        }
        if let Some(r) = self.state.racks.iter().position(|r| r.free_gpus > r.gpus) {
            return Err(format!("rack {r} has more free GPUs than GPUs"));
        }
        let mut recounted = self.state.clone();
        for r in 0..recounted.racks.len() {
            recounted.recount(r);
            if recounted.racks[r] != self.state.racks[r] {
                return Err(format!("rack {r}'s free GPUs or node counts are not those of its nodes"));
            }
        }
        if recounted.node_table != self.state.node_table {
            return Err("the kernel's node table is not that of the nodes".into());
        }
        for (i, node) in self.state.nodes.iter().enumerate() {
            if node.state == NodeState::Failed && node.used != 0 {
                return Err(format!("node {i} has failed but holds GPUs"));
            }
            if node.shared & !node.used != 0 {
                return Err(format!("node {i} has a shared GPU it does not count as in use"));
            }
            let shares = self.state.shares.get(&(i as u32));
            if (node.shared != 0) != shares.is_some() {
                return Err(format!("node {i}'s shared GPUs and its record of their shares differ"));
            }
            for (g, &milli) in shares.into_iter().flatten().enumerate() {
                let shared = node.shared & (1 << g) != 0;
                if shared != (milli != 0) || u32::from(milli) > GPU_MILLI {
                    return Err(format!("node {i} GPU {g}: {milli} thousandths in use on a GPU shared: {shared}"));
                }
            }
        }
        for (r, rack) in self.state.racks.iter().enumerate() {
            for n in rack.first_node..rack.first_node + rack.nodes {
                let (cell, free) = (self.state.nodes[n as usize], self.state.node_table[n as usize]);
                if free.free_cpu_milli > rack.node_cpu_milli || free.free_memory_mib > rack.node_memory_mib {
                    return Err(format!("rack {r} node {n} has more CPU or memory free than it has"));
                }
                let all_free =
                    free.free_cpu_milli == rack.node_cpu_milli && free.free_memory_mib == rack.node_memory_mib;
                if cell.used == 0 && !all_free {
                    return Err(format!("rack {r} node {n} holds CPU or memory but no GPU"));
                }
            }
        }
        for (s, &capacity) in self.power_capacity_w.iter().enumerate() {
            if self.state.sites[s].power_free_w > capacity {
                return Err(format!("site {s} has more power free than it has"));
            }
        }
        Ok(())
    }
}
