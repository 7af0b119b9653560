//! Why a job could not be placed, as a code with data for programs and as words for people; what
//! a job needs, in words.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::ledger::Ledger;
use crate::kernel::limits::MAX_LATENCY_MS;
use crate::kernel::score::{
    JobGpu, NodeGpu, REJECT_GPUS, REJECT_KINDS, REJECT_NAMES, STATIC_REJECTS, job_watts, pods_here, shared_free_milli,
};
use crate::kernel::shape::{
    fits, nodes_with_free, pod_layout, pods_fit, pods_per_node, pods_per_rack, rack_summary, racks_needed, spans_racks,
};
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
    let spans_everywhere = fleet.rack_types.iter().all(|rt| {
        let layout = pod_layout(job.gpus, job.pods, job.pod_gpus, rt.node_gpus);
        // By GPUs (pods of a shared GPU: by their share of each): a pod asking more CPU than a tray
        // has at all is worded by `tray_too_small`.
        let per_node = if job.shares_gpus() {
            rt.node_gpus * job.pods_per_gpu
        } else {
            pods_per_node(job.shapes[(rt.node_gpus - 1) as usize])
        };
        // And the pods a whole rack holds with the trays' CPU and memory, as the kernel counts them:
        // a job they make span racks is worded so (its reason then counts whole racks).
        let by_gpus = pods_per_rack(per_node, rt.nodes, 0, 0, 0, 0);
        let per_rack = pods_per_rack(
            per_node,
            rt.nodes,
            job.pod_cpu_milli,
            job.pod_memory_mib,
            rt.node_cpu_milli,
            rt.node_memory_mib,
        );
        by_gpus == 0 || spans_racks(layout, by_gpus) || (per_rack != 0 && spans_racks(layout, per_rack))
    });
    let plural = if job.pods == 1 { "" } else { "s" };
    // "8 GPUs as 2 pods of 4"; pods of a shared GPU by their share: "4 pods of 250 thousandths of
    // one GPU"; then what each pod asks of its tray.
    let mut gpus = if job.shares_gpus() {
        format!("{} pod{plural} of {} thousandths of one GPU", job.pods, job.gpu_milli)
    } else if job.pod_gpus != 0 {
        format!("{} GPUs as {} pod{plural} of {}", job.gpus, job.pods, job.pod_gpus)
    } else {
        format!("{} GPUs", job.gpus)
    };
    if job.asks_cpu_or_memory() {
        let unit = match (job.shares_gpus(), job.pod_gpus) {
            (true, _) => "",
            (false, 1) => " GPU",
            (false, _) => " GPUs",
        };
        gpus += &format!("{unit}, {} each", pod_resources(job));
    }
    let block = match job.block_rule {
        crate::kernel::score::BLOCK_REQUIRED => " in one topology block",
        crate::kernel::score::BLOCK_PREFERRED => ", in one topology block if any has room",
        _ => "",
    };
    let mut need = if spans_everywhere {
        format!("needs {gpus} across whole free racks of one cluster{block}")
    } else {
        format!("needs {gpus} in one NVLink domain")
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

/// Why a job could not be placed, for programs: a stable `code` and the numbers behind it, like
/// Slurm's pending reasons or a Kubernetes condition's reason. Serialized with the code as a field
/// (`{"code": "power", "site": "nscale-sines", "free_w": 1500, "needed_w": 1945}`). Codes are
/// added as the model grows (trays, health, quotas), so a caller should treat an unknown one as
/// "not placed, for a reason it does not know".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Cause {
    /// No rack of the fleet meets the job's fixed needs (HBM, jurisdiction, provider, latency,
    /// online date), whatever is free: more capacity of the same kind would not help.
    NoRackQualifies {
        /// Racks in the fleet.
        racks: u64,
        /// Racks failing each fixed need (a rack failing several counts under each).
        failing: RejectCounts,
    },
    /// A cluster that meets every fixed need has the GPUs free, but its site has not the IT power
    /// left: the one of those sites with the most power left.
    Power {
        /// The site.
        site: String,
        /// The cluster with the GPUs.
        cluster: String,
        /// IT power the site has left, W.
        free_w: u64,
        /// IT power the job draws there, W.
        needed_w: u64,
    },
    /// GPUs bind for a job of one NVLink domain: no rack that meets the fixed needs has the free
    /// GPUs, on its usable trays, that the job's pods need. The cluster with the most free in one
    /// rack, and how that rack's free GPUs lie on its trays.
    Gpus {
        /// The site.
        site: String,
        /// The cluster.
        cluster: String,
        /// The most GPUs free in one of its racks (on ready trays).
        most_free_in_a_rack: u32,
        /// GPUs the job needs.
        needed: u32,
        /// Ready trays (nodes) of that rack with a free GPU (absent in files from before trays).
        #[serde(default)]
        trays_with_free: u32,
        /// The most GPUs free on one tray of that rack.
        #[serde(default)]
        most_free_on_a_tray: u32,
        /// GPUs of the job's largest pod there (a pod runs on one tray).
        #[serde(default)]
        pod_gpus: u32,
    },
    /// A tray's CPU or memory binds for a job whose pods ask for them: a rack that meets the
    /// fixed needs has trays with the GPUs its pods need, but none of those trays has the CPU (or
    /// memory) one pod asks for left.
    TrayResources {
        /// The site.
        site: String,
        /// The cluster.
        cluster: String,
        /// `cpu` or `memory`.
        resource: String,
        /// What one pod asks for: milli-cores of CPU, or MiB of memory.
        per_pod: u32,
        /// The most any tray of that rack with the pod's GPUs free has left, same unit.
        most_free_on_a_tray: u32,
    },
    /// GPUs bind for a job whose pods share GPUs: no rack that meets the fixed needs holds all its
    /// pods on what is free of its GPUs (whole free GPUs, and what is left on shared ones, with the
    /// pods' CPU and memory on the same trays). The cluster with the rack that holds the most.
    GpuShares {
        /// The site.
        site: String,
        /// The cluster.
        cluster: String,
        /// The job's pods.
        pods: u32,
        /// Thousandths of one GPU each pod asks for.
        gpu_milli: u32,
        /// The most of its pods one rack of that cluster holds now.
        most_pods_in_a_rack: u32,
    },
    /// GPUs bind for a job that spans racks: no cluster that meets the fixed needs has enough
    /// fully free racks. The cluster with the most.
    FreeRacks {
        /// The site.
        site: String,
        /// The cluster.
        cluster: String,
        /// Its fully free racks.
        free_racks: u32,
        /// Fully free racks the job needs.
        needed_racks: u32,
    },
    /// The job's pods are larger than every tray (node) of the racks that meet its fixed needs: a
    /// pod runs on one tray.
    PodTooLarge {
        /// GPUs of one of its pods.
        pod_gpus: u32,
        /// The most GPUs on one tray of those racks.
        tray_gpus: u32,
    },
    /// The job's tenant would hold more than its quota and borrowing limit allow
    /// ([`crate::Scheduler::set_tenants`]), in thousandths of a GPU.
    Quota {
        /// The tenant.
        tenant: String,
        /// What its placed jobs hold now.
        held_milli: u64,
        /// What this job would add.
        job_milli: u64,
        /// Its quota plus its borrowing limit.
        limit_milli: u64,
    },
    /// The placement was asked not to work out why ([`crate::engine::place::Reasons::Skipped`]).
    NotEvaluated,
}

impl Cause {
    /// The code alone, as serialized: `power`, `gpus`, ….
    pub fn code(&self) -> &'static str {
        match self {
            Cause::NoRackQualifies { .. } => "no_rack_qualifies",
            Cause::Power { .. } => "power",
            Cause::Gpus { .. } => "gpus",
            Cause::FreeRacks { .. } => "free_racks",
            Cause::PodTooLarge { .. } => "pod_too_large",
            Cause::TrayResources { .. } => "tray_resources",
            Cause::GpuShares { .. } => "gpu_shares",
            Cause::Quota { .. } => "quota",
            Cause::NotEvaluated => "not_evaluated",
        }
    }
}

/// Racks failing each constraint of the kernel, named as in [`REJECT_NAMES`] (a rack failing
/// several counts under each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct RejectCounts {
    /// Not enough free GPUs (in the rack, or fully free racks in the cluster).
    pub gpus: u64,
    /// Less HBM per GPU than the job needs.
    pub hbm: u64,
    /// A jurisdiction the job does not allow.
    pub jurisdiction: u64,
    /// A provider the job does not allow.
    pub provider: u64,
    /// Further from the job's users than its latency bound.
    pub latency: u64,
    /// The site has not the IT power left for the job.
    pub power: u64,
    /// The cluster is not online yet on the placement date.
    pub online: u64,
}

impl RejectCounts {
    /// From counts in reject-bit order.
    pub fn from_bits(counts: [u64; REJECT_KINDS]) -> Self {
        let [gpus, hbm, jurisdiction, provider, latency, power, online] = counts;
        RejectCounts { gpus, hbm, jurisdiction, provider, latency, power, online }
    }

    /// Counts in reject-bit order, with their names.
    pub fn named(&self) -> [(&'static str, u64); REJECT_KINDS] {
        let counts = [self.gpus, self.hbm, self.jurisdiction, self.provider, self.latency, self.power, self.online];
        std::array::from_fn(|bit| (REJECT_NAMES[bit], counts[bit]))
    }
}

/// Why a job was not placed: the [`Cause`] for programs and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reason {
    /// The code and its data.
    pub cause: Cause,
    /// The sentence: what the job needs, then what binds, e.g. "needs 64 GPUs in one NVLink
    /// domain with 194 GB HBM per GPU; GPUs are free but power is not: nscale-sines has 1.5 kW of
    /// IT power left, the job draws 124.5 kW".
    pub text: String,
}

impl Reason {
    /// The reason of a job whose tenant is at its limit (see [`Cause::Quota`]).
    pub fn quota(tenant: &crate::model::tenants::Tenant, held_milli: u64, job_milli: u64) -> Self {
        let limit_milli = tenant.limit_milli().unwrap_or(u64::MAX);
        let text = format!(
            "tenant `{}` holds {} GPUs of its quota of {} plus borrowing limit of {}; the job would add {}",
            tenant.name,
            gpus_of_milli(held_milli),
            tenant.quota_gpus,
            tenant.borrow_limit_gpus.unwrap_or(0),
            gpus_of_milli(job_milli),
        );
        Reason { cause: Cause::Quota { tenant: tenant.name.clone(), held_milli, job_milli, limit_milli }, text }
    }

    /// The reason of a placement that did not work reasons out.
    pub fn not_evaluated() -> Self {
        Reason { cause: Cause::NotEvaluated, text: "no feasible rack (reason not evaluated)".into() }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Thousandths of a GPU as GPUs: `12`, `12.5`, `0.125`.
pub(crate) fn gpus_of_milli(milli: u64) -> String {
    let (whole, part) = (milli / 1000, milli % 1000);
    if part == 0 { whole.to_string() } else { format!("{whole}.{part:03}").trim_end_matches('0').to_string() }
}

/// Why `job` has no feasible rack in the ledger's state. Names the closest thing to a fit.
///
/// Works cluster by cluster: every constraint but GPU capacity is the same for all racks of a
/// cluster, and the ledger's rack classes give each cluster's free-GPU counts without scanning its
/// racks.
pub(crate) fn unplaced_reason(ledger: &Ledger, job: &JobGpu) -> Reason {
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
        let racks = state.racks.len() as u64;
        return Reason {
            cause: Cause::NoRackQualifies { racks, failing: RejectCounts::from_bits(counts) },
            text: format!("{need}; no rack of the fleet qualifies ({racks} racks: {})", failing.join(", ")),
        };
    }
    let rack_type = |c: usize| &fleet.rack_types[fleet.clusters[c].rack_type];
    let layout_in = |c: usize| job.shape_on(&state.racks[fleet.clusters[c].racks.start]);
    // The whole racks the job may count on in a cluster: the cluster's, or for a job kept to one
    // topology block, those of its block with the most.
    let whole_racks = |c: usize| {
        let cluster = &fleet.clusters[c];
        if job.block_rule == crate::kernel::score::BLOCK_ANY {
            state.clusters[c].free_racks
        } else {
            (cluster.first_block..cluster.first_block + cluster.block_count())
                .map(|b| state.blocks[b as usize].free_racks)
                .max()
                .unwrap_or(0)
        }
    };
    // Some rack of the cluster holds the job's pods (the shape rule, power aside). By class, which
    // holds for GPUs; a job asking for CPU or memory is checked rack by rack (trays with the same
    // free GPUs may differ in CPU and memory).
    let gpus_only = JobGpu { pod_cpu_milli: 0, pod_memory_mib: 0, ..*job };
    let fits_by_class = |c: usize, job: &JobGpu| {
        let (layout, per_rack) = job.shape_on(&state.racks[fleet.clusters[c].racks.start]);
        let (gpus, whole) = (rack_type(c).gpus, whole_racks(c));
        let rack = &state.racks[fleet.clusters[c].racks.start];
        classes.keys(c).rev().any(|(free, lo, hi)| {
            let summary = summary_of_class(rack, lo, hi);
            fits(layout, per_rack, free, gpus, summary, whole, pods_fit(summary, layout[1].max(1)))
        })
    };
    let gpus_fit = |c: usize| {
        if job.shares_gpus() {
            // Shared GPUs differ rack by rack: one rack per class.
            return classes.representatives(c).any(|r| state.check(job, r as usize) & REJECT_GPUS == 0);
        }
        if job.asks_cpu_or_memory() {
            // The GPUs alone (by class) first: where they do not fit, neither does the job.
            return fits_by_class(c, &gpus_only)
                && fleet.clusters[c].racks.clone().any(|r| state.check(job, r) & REJECT_GPUS == 0);
        }
        fits_by_class(c, job)
    };
    let names = |c: usize| {
        let cluster = &fleet.clusters[c];
        (fleet.sites[cluster.site].name.clone(), cluster.name.clone())
    };
    // Clusters with the GPUs but not the power: the site's power is what binds.
    if let Some(c) = eligible
        .iter()
        .copied()
        .filter(|&c| gpus_fit(c))
        .max_by_key(|&c| (state.sites[fleet.clusters[c].site].power_free_w, std::cmp::Reverse(c)))
    {
        let free_w = u64::from(state.sites[fleet.clusters[c].site].power_free_w);
        let needed_w = u64::from(job_watts(job, fleet.rack_types[fleet.clusters[c].rack_type].gpu_watts));
        let (site, cluster) = names(c);
        let text = format!(
            "{need}; GPUs are free but power is not: {site} has {} of IT power left, the job draws {}",
            power(free_w),
            power(needed_w)
        );
        return Reason { cause: Cause::Power { site, cluster, free_w, needed_w }, text };
    }
    // Pods of a shared GPU: the rack that holds the most of them.
    if job.shares_gpus()
        && let Some(reason) = gpu_shares(ledger, job, &eligible, &need)
    {
        return reason;
    }
    // A tray's CPU or memory binds where some rack has the trays for the pods' GPUs.
    if job.asks_cpu_or_memory()
        && let Some(reason) = tray_resources(ledger, job, &eligible, &need)
    {
        return reason;
    }
    // Otherwise GPUs bind: name the eligible place closest to fitting.
    let within_one_domain: Vec<usize> = eligible
        .iter()
        .copied()
        .filter(|&c| {
            let (layout, per_rack) = layout_in(c);
            per_rack != 0 && !spans_racks(layout, per_rack)
        })
        .collect();
    if let Some(c) =
        within_one_domain.iter().copied().max_by_key(|&c| (classes.max_free(c).unwrap_or(0), std::cmp::Reverse(c)))
    {
        // The rack with the most free GPUs, and among those the one whose trays hold the most.
        let (most_free_in_a_rack, lo, hi) = classes.keys(c).next_back().unwrap_or((0, 0, 0));
        let summary = summary_of_class(&state.racks[fleet.clusters[c].racks.start], lo, hi);
        let on_trays: Vec<u32> = (1..=8).map(|f| nodes_with_free(summary, f)).collect();
        let trays_with_free = on_trays.iter().sum();
        let most_free_on_a_tray = (1..=8u32).rev().find(|&f| on_trays[f as usize - 1] > 0).unwrap_or(0);
        let pod_gpus = layout_in(c).0[1];
        let (site, cluster) = names(c);
        let text = if most_free_in_a_rack >= job.gpus {
            format!(
                "{need}; closest feasible: {site}/{cluster} has a rack with {most_free_in_a_rack} free GPUs, but \
                 on {trays_with_free} trays with at most {most_free_on_a_tray} on one; the job's pods need \
                 {pod_gpus} on one tray"
            )
        } else {
            format!("{need}; closest feasible: {site} has at most {most_free_in_a_rack} free in a rack")
        };
        let cause = Cause::Gpus {
            site,
            cluster,
            most_free_in_a_rack,
            needed: job.gpus,
            trays_with_free,
            most_free_on_a_tray,
            pod_gpus,
        };
        Reason { cause, text }
    } else {
        let Some(c) = eligible
            .iter()
            .copied()
            .filter(|&c| layout_in(c).1 != 0)
            .max_by_key(|&c| (whole_racks(c), std::cmp::Reverse(c)))
        else {
            if job.asks_cpu_or_memory()
                && let Some(reason) = tray_too_small(ledger, job, &eligible, &need)
            {
                return reason;
            }
            let tray_gpus = eligible.iter().map(|&c| rack_type(c).node_gpus).max().unwrap_or(0);
            let pod_gpus = job.pod_gpus;
            let text = format!(
                "{need}; its pods of {pod_gpus} GPUs are larger than any tray of the racks that qualify \
                 (at most {tray_gpus} GPUs on one), and a pod runs on one tray"
            );
            return Reason { cause: Cause::PodTooLarge { pod_gpus, tray_gpus }, text };
        };
        let (layout, per_rack) = layout_in(c);
        let needed_racks = racks_needed(layout, per_rack);
        let free_racks = whole_racks(c);
        let (site, cluster) = names(c);
        let in_one = if job.block_rule == crate::kernel::score::BLOCK_ANY { "" } else { " in one topology block" };
        let text = format!(
            "{need}; closest feasible: {site}/{cluster} has {free_racks} fully free racks{in_one}, the job needs {needed_racks}"
        );
        Reason { cause: Cause::FreeRacks { site, cluster, free_racks, needed_racks }, text }
    }
}

/// For a job whose pods share GPUs and fit one NVLink domain: the eligible cluster with the rack
/// that holds the most of its pods now (one rack per class: racks of a class hold the same).
fn gpu_shares(ledger: &Ledger, job: &JobGpu, eligible: &[usize], need: &str) -> Option<Reason> {
    let (fleet, state, classes) = (ledger.fleet(), ledger.state(), ledger.classes());
    let mut best: Option<(u32, usize)> = None;
    for &c in eligible {
        let first = &state.racks[fleet.clusters[c].racks.start];
        let (layout, per_rack) = job.shape_on(first);
        if per_rack == 0 || spans_racks(layout, per_rack) {
            continue;
        }
        for r in classes.representatives(c) {
            let held = pods_here(job, &state.racks[r as usize], 1, &state.node_table);
            if best.is_none_or(|(most, _)| held > most) {
                best = Some((held, c));
            }
        }
    }
    let (most_pods_in_a_rack, c) = best?;
    let cluster = &fleet.clusters[c];
    let (site, cluster) = (fleet.sites[cluster.site].name.clone(), cluster.name.clone());
    let text = format!(
        "{need}; closest feasible: {site}/{cluster} has a rack whose free GPUs and shares hold {most_pods_in_a_rack} \
         of its {} pods",
        job.pods
    );
    let cause = Cause::GpuShares { site, cluster, pods: job.pods, gpu_milli: job.gpu_milli, most_pods_in_a_rack };
    Some(Reason { cause, text })
}

/// "32 cores and 256 GB": what each pod of `job` asks for.
fn pod_resources(job: &JobGpu) -> String {
    let mut asked = Vec::new();
    if job.pod_cpu_milli != 0 {
        asked.push(format!("{} cores", f64::from(job.pod_cpu_milli) / 1000.0));
    }
    if job.pod_memory_mib != 0 {
        asked.push(format!("{} GB memory", f64::from(job.pod_memory_mib) / 1024.0));
    }
    asked.join(" and ")
}

/// An amount of a tray's `cpu` (milli-cores) or `memory` (MiB) in words: "12.5 cores", "96 GB".
fn tray_amount(resource: &str, v: u32) -> String {
    if resource == "cpu" { format!("{} cores", f64::from(v) / 1000.0) } else { format!("{} GB", f64::from(v) / 1024.0) }
}

/// For a job asking for CPU or memory per pod: the first eligible cluster with a rack whose trays
/// have the pods' GPUs (the job without its CPU and memory would fit there), and which of the two
/// the trays lack.
fn tray_resources(ledger: &Ledger, job: &JobGpu, eligible: &[usize], need: &str) -> Option<Reason> {
    let (fleet, state) = (ledger.fleet(), ledger.state());
    let gpus_only = JobGpu { pod_cpu_milli: 0, pod_memory_mib: 0, ..*job };
    let (c, r) = eligible.iter().find_map(|&c| {
        let (layout, per_rack) = gpus_only.shape_on(&state.racks[fleet.clusters[c].racks.start]);
        if per_rack == 0 || spans_racks(layout, per_rack) {
            return None;
        }
        fleet.clusters[c].racks.clone().find(|&r| state.check(&gpus_only, r) & REJECT_GPUS == 0).map(|r| (c, r))
    })?;
    let size = job.pod_gpus;
    let rack = &state.racks[r];
    let trays = &state.node_table[rack.first_node as usize..(rack.first_node + rack.nodes) as usize];
    // The pods a tray holds by GPUs alone (for pods of a shared GPU, by their share of each).
    let by_gpus = |n: &NodeGpu| {
        if job.shares_gpus() {
            n.free_gpus * job.pods_per_gpu
                + (0..rack.node_gpus).map(|g| shared_free_milli(n.shared_free, g) / job.gpu_milli).sum::<u32>()
        } else {
            n.free_gpus / size
        }
    };
    let with_gpus = || trays.iter().filter(|n| by_gpus(n) != 0);
    let most_cpu = with_gpus().map(|n| n.free_cpu_milli).max().unwrap_or(0);
    let most_memory = with_gpus().map(|n| n.free_memory_mib).max().unwrap_or(0);
    let (resource, per_pod, most) = if job.pod_cpu_milli > most_cpu {
        ("cpu", job.pod_cpu_milli, most_cpu)
    } else if job.pod_memory_mib > most_memory {
        ("memory", job.pod_memory_mib, most_memory)
    } else {
        // Each tray holds one pod or more, but not as many as the job has.
        let cpu_short =
            job.pod_cpu_milli != 0 && with_gpus().any(|n| n.free_cpu_milli / job.pod_cpu_milli < by_gpus(n));
        if cpu_short { ("cpu", job.pod_cpu_milli, most_cpu) } else { ("memory", job.pod_memory_mib, most_memory) }
    };
    let (site, cluster) = (fleet.sites[fleet.clusters[c].site].name.clone(), fleet.clusters[c].name.clone());
    let shown = |v: u32| tray_amount(resource, v);
    let text = if per_pod > most {
        format!(
            "{need}; closest feasible: {site}/{cluster} has trays with the pods' GPUs free, but not their \
             {resource}: a pod asks for {}, a tray with its GPUs free has at most {} left",
            shown(per_pod),
            shown(most)
        )
    } else {
        format!(
            "{need}; closest feasible: {site}/{cluster} has trays with the pods' GPUs free, but not the \
             {resource} for all its pods: a pod asks for {}, those trays have at most {} left each",
            shown(per_pod),
            shown(most)
        )
    };
    Some(Reason {
        cause: Cause::TrayResources { site, cluster, resource: resource.into(), per_pod, most_free_on_a_tray: most },
        text,
    })
}

/// For a job asking for CPU or memory whose pods no tray of the eligible clusters could hold even
/// empty, though their GPUs fit one: the tray's CPU (or memory) in all is what is too small.
fn tray_too_small(ledger: &Ledger, job: &JobGpu, eligible: &[usize], need: &str) -> Option<Reason> {
    let (fleet, state) = (ledger.fleet(), ledger.state());
    let gpus_only = JobGpu { pod_cpu_milli: 0, pod_memory_mib: 0, ..*job };
    let c =
        eligible.iter().copied().find(|&c| gpus_only.shape_on(&state.racks[fleet.clusters[c].racks.start]).1 != 0)?;
    let rt = &fleet.rack_types[fleet.clusters[c].rack_type];
    let (resource, per_pod, most) = if job.pod_cpu_milli > rt.node_cpu_milli {
        ("cpu", job.pod_cpu_milli, rt.node_cpu_milli)
    } else {
        ("memory", job.pod_memory_mib, rt.node_memory_mib)
    };
    let (site, cluster) = (fleet.sites[fleet.clusters[c].site].name.clone(), fleet.clusters[c].name.clone());
    let shown = |v: u32| tray_amount(resource, v);
    let text = format!(
        "{need}; its pods ask for more {resource} than any tray that qualifies has: a pod asks for {}, a tray \
         of {site}/{cluster} has {} in all",
        shown(per_pod),
        shown(most)
    );
    Some(Reason {
        cause: Cause::TrayResources { site, cluster, resource: resource.into(), per_pod, most_free_on_a_tray: most },
        text,
    })
}

/// The summary of a rack of `rack`'s type in the class whose nodes with at least 1..=8 free GPUs
/// are `at_least_lo`, `at_least_hi` (those counts determine the rest).
fn summary_of_class(rack: &crate::kernel::score::RackGpu, at_least_lo: u32, at_least_hi: u32) -> [u32; 6] {
    let summary = [at_least_lo, at_least_hi, 0, 0, 0, 0];
    let mut free = Vec::with_capacity(rack.nodes as usize);
    for f in 1..=8u32 {
        free.extend(std::iter::repeat_n(f, nodes_with_free(summary, f) as usize));
    }
    rack_summary(free)
}

#[cfg(test)]
mod tests {
    use super::{Cause, Reason, RejectCounts, power};
    use crate::kernel::score::REJECT_NAMES;

    #[test]
    fn reject_counts_are_named_like_the_kernels_bits() {
        let counts = RejectCounts::from_bits([1, 2, 3, 4, 5, 6, 7]);
        let json = serde_json::to_value(counts).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        let mut names = REJECT_NAMES.to_vec();
        names.sort_unstable();
        assert_eq!(keys, names, "serde_json sorts keys");
        for (bit, (name, count)) in counts.named().into_iter().enumerate() {
            assert_eq!((name, count), (REJECT_NAMES[bit], bit as u64 + 1));
            assert_eq!(json[name], count);
        }
    }

    #[test]
    fn causes_serialize_with_their_code_and_read_back() {
        let reason = Reason {
            cause: Cause::Power { site: "s".into(), cluster: "c".into(), free_w: 1500, needed_w: 1945 },
            text: "t".into(),
        };
        let json = serde_json::to_string(&reason).unwrap();
        assert_eq!(
            json,
            r#"{"cause":{"code":"power","site":"s","cluster":"c","free_w":1500,"needed_w":1945},"text":"t"}"#
        );
        assert_eq!(serde_json::from_str::<Reason>(&json).unwrap(), reason);
        assert_eq!(reason.cause.code(), "power");
        assert_eq!(serde_json::to_value(Cause::NotEvaluated).unwrap()["code"], Cause::NotEvaluated.code());
    }

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
