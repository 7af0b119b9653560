//! Shared helpers of the integration tests: every backend to run a test body on, and seeded
//! random fleets, workloads and policies.

#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]

use std::collections::BTreeMap;

#[cfg(feature = "gpu")]
use gpuplace::gpu::{GpuScorer, adapters};
use gpuplace::kernel::cpu::ScoreOutput;
use gpuplace::kernel::score::{JobGpu, NodeGpu, RackGpu, TERM_COUNT, inv_q16};
use gpuplace::kernel::shape::{job_tables, rack_summary};
use gpuplace::kernel::state::{FleetState, NodeState};
use gpuplace::model::fleet::{ClusterFile, FleetFile, NodeFile, RackTypeFile, SiteFile};
use gpuplace::sim::generate::SplitMix64;
use gpuplace::{Backend, Day, Fleet, Job, JobKind, Workload};

/// Says that part of a test did not run, where a person running `cargo test` sees it: the test
/// harness captures `eprintln!` of passing tests, so this writes to the process's standard error
/// directly. The line starts with `SKIPPED` so that it stands out among the `ok` lines.
pub fn skip_notice(test: &str, what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {what}");
}

/// The placement date used by the random problems.
pub fn at() -> Day {
    Day::parse("2026-06-01").unwrap()
}

/// True when `GPUPLACE_REQUIRE_GPU=1` (set by `.ci/run`): a missing or failing adapter is then a
/// test failure instead of a skip.
pub fn gpu_required() -> bool {
    std::env::var("GPUPLACE_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// One scorer per adapter wgpu finds, with the adapter's description. Without any, the test says
/// it skips its GPU side (or fails, with `GPUPLACE_REQUIRE_GPU=1`). `GPUPLACE_REQUIRE_ADAPTERS`
/// (e.g. `Vulkan,Gl`, set by `.ci/run`) names graphics APIs that must be among them.
#[cfg(feature = "gpu")]
pub fn gpu_scorers(test: &str) -> Vec<(String, GpuScorer)> {
    let found = adapters();
    if let Ok(required) = std::env::var("GPUPLACE_REQUIRE_ADAPTERS") {
        for api in required.split(',').filter(|a| !a.is_empty()) {
            assert!(
                found.iter().any(|a| a.backend.eq_ignore_ascii_case(api)),
                "{test}: GPUPLACE_REQUIRE_ADAPTERS names {api}, but wgpu found only {found:?}"
            );
        }
    }
    let mut scorers = Vec::new();
    for (index, adapter) in found.iter().enumerate() {
        match GpuScorer::open_adapter(index) {
            Ok(scorer) => scorers.push((format!("gpu {adapter}"), scorer)),
            Err(e) if gpu_required() => panic!("{test}: GPUPLACE_REQUIRE_GPU=1 but {adapter} cannot be used: {e}"),
            Err(e) => skip_notice(test, &format!("the GPU side on {adapter}: {e}")),
        }
    }
    if scorers.is_empty() {
        assert!(!gpu_required(), "{test}: GPUPLACE_REQUIRE_GPU=1 but wgpu found no usable adapter");
        skip_notice(test, "the GPU side (wgpu found no adapter; see the README for Mesa's software devices)");
    }
    scorers
}

/// The first GPU scorer, for tests about the GPU backend itself.
#[cfg(feature = "gpu")]
pub fn gpu_or_skip(test: &str) -> Option<GpuScorer> {
    gpu_scorers(test).into_iter().next().map(|(_, scorer)| scorer)
}

/// A scorer with a device of its own and limits derived from the adapter's, or None (after
/// printing why).
#[cfg(feature = "gpu")]
pub fn gpu_with_limits_or_skip(
    test: &str,
    choose: impl FnOnce(gpuplace::wgpu::Limits) -> gpuplace::wgpu::Limits,
) -> Option<GpuScorer> {
    match GpuScorer::with_limits(choose) {
        Ok(gpu) => Some(gpu),
        Err(e) if gpu_required() => panic!("{test}: GPUPLACE_REQUIRE_GPU=1 but the GPU backend is unavailable: {e}"),
        Err(e) => {
            skip_notice(test, &format!("the GPU side: {e}"));
            None
        }
    }
}

/// Every backend a test body runs on: the CPU, then one GPU backend per adapter wgpu finds (the
/// same adapters as [`gpu_scorers`]), each with a name for failure messages.
pub fn backends(test: &str) -> Vec<(String, Backend)> {
    let cpu = std::iter::once(("cpu".to_string(), Backend::cpu()));
    #[cfg(feature = "gpu")]
    let gpus = gpu_scorers(test).into_iter().map(|(name, scorer)| (name, Backend::gpu(scorer)));
    #[cfg(not(feature = "gpu"))]
    let gpus = {
        skip_notice(test, "the GPU side (built without the `gpu` feature)");
        std::iter::empty()
    };
    cpu.chain(gpus).collect()
}

/// Runs `body` once on every backend ([`backends`]), with the backend's name.
pub fn on_every_backend(test: &str, mut body: impl FnMut(&str, Backend)) {
    for (name, backend) in backends(test) {
        body(&name, backend);
    }
}

/// Shape knobs of a random problem.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub max_sites: u64,
    pub max_clusters: u64,
    pub max_racks: u64,
    pub jobs: usize,
    /// Percent of racks that start partly or fully used.
    pub occupancy_percent: u64,
    /// When true every policy weight is zero, so every feasible pair ties at score 0.
    pub all_ties: bool,
    /// When true every site has 0.1 to 1 MW, so that power binds often (drawn as before, then
    /// overridden: seeds give the same problems otherwise).
    pub power_tight: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            max_sites: 4,
            max_clusters: 3,
            max_racks: 12,
            jobs: 60,
            occupancy_percent: 30,
            all_ties: false,
            power_tight: false,
        }
    }
}

const RACK_SIZES: [u32; 4] = [1, 4, 8, 72];
const JURISDICTIONS: [&str; 3] = ["US", "EU", "UK"];
const PROVIDERS: [&str; 3] = ["IREN", "Nscale", "Azure"];

/// A random valid fleet.
pub fn random_fleet(rng: &mut SplitMix64, shape: Shape) -> Fleet {
    let region_count = rng.between(1, 4) as usize;
    let regions: Vec<String> = (0..region_count).map(|i| format!("r{i}")).collect();
    let mut rack_types = BTreeMap::new();
    let type_count = rng.between(1, 3);
    for t in 0..type_count {
        let gpus = RACK_SIZES[rng.below(4) as usize];
        let mut rack_type = RackTypeFile::new(
            format!("G{t}"),
            gpus,
            rng.between(40, 300) as u32,
            f64::from(gpus) * rng.between(500, 2500) as f64 / 1000.0,
        );
        // Half the types state their trays: 1, 2, 4 or 8 GPUs each, where that divides the rack.
        if rng.percent(50) {
            let node_gpus = [1u32, 2, 4, 8][rng.below(4) as usize];
            if gpus.is_multiple_of(node_gpus) && gpus / node_gpus <= 255 {
                rack_type = rack_type.with_nodes(gpus / node_gpus);
            }
        }
        // Half the types state their trays' CPU and memory (from a hash, not the generator, so that
        // seeds keep giving the problems they gave before): 2 to 24 cores and 16 to 192 GB per GPU,
        // so that pods asking for them sometimes find a tray's GPUs free but not its CPU.
        let h = gpuplace::kernel::score::mix(0xC0DE ^ t as u32 ^ (gpus << 8));
        if h.is_multiple_of(2) {
            let node_gpus = gpus / rack_type.nodes.or_else(|| gpuplace::model::fleet::default_nodes(gpus)).unwrap();
            let cores = f64::from(node_gpus * (2 + (h >> 4) % 23));
            let memory = f64::from(node_gpus * 16 * (1 + (h >> 12) % 12));
            rack_type = rack_type.with_node_resources(cores, memory);
        }
        rack_types.insert(format!("t{t}"), rack_type);
    }
    let sites = (0..rng.between(1, shape.max_sites))
        .map(|s| {
            let clusters = (0..rng.between(1, shape.max_clusters))
                .map(|c| {
                    let rack_type = format!("t{}", rng.below(type_count));
                    let gpus = rack_types[&rack_type].gpus;
                    let racks = rng.between(1, shape.max_racks) as u32;
                    let used_gpus = (rng.percent(60)).then(|| {
                        (0..racks)
                            .map(|_| {
                                if rng.percent(shape.occupancy_percent) {
                                    rng.between(0, u64::from(gpus)) as u32
                                } else {
                                    0
                                }
                            })
                            .collect()
                    });
                    let mut cluster = ClusterFile::new(format!("c{c}"), rack_type, racks);
                    // Half the clusters have topology blocks of 1 to `racks` racks, drawn from a hash
                    // (not the generator) so that seeds keep giving the problems they gave before.
                    let h = gpuplace::kernel::score::mix((s as u32) << 16 ^ (c as u32) << 8 ^ racks);
                    if h.is_multiple_of(2) {
                        cluster = cluster.with_block_racks(1 + (h >> 8) % racks);
                    }
                    if rng.percent(20) {
                        cluster = cluster.with_online(Day(at().0 + rng.between(0, 120) as u32 - 60));
                    }
                    match used_gpus {
                        Some(used) => cluster.with_used_gpus(used),
                        // Trays by hand: some cordoned or failed, some partly in use.
                        None if rng.percent(50) => {
                            let rt = &rack_types[&cluster.rack_type];
                            let nodes = rt.nodes.or_else(|| gpuplace::model::fleet::default_nodes(rt.gpus)).unwrap();
                            let node_gpus = rt.gpus / nodes;
                            let entries = (0..racks)
                                .flat_map(|r| (0..nodes).map(move |n| (r, n)))
                                .filter_map(|(r, n)| {
                                    let state = match rng.below(20) {
                                        0 => NodeState::Failed,
                                        1 => NodeState::Cordoned,
                                        _ => NodeState::Ready,
                                    };
                                    let used = if state != NodeState::Failed && rng.percent(shape.occupancy_percent) {
                                        rng.between(0, u64::from(node_gpus)) as u32
                                    } else {
                                        0
                                    };
                                    // Pods in use hold some of the tray's CPU and memory.
                                    let h = gpuplace::kernel::score::mix(r << 8 ^ n ^ 0x5EED);
                                    let (cores, memory) = match (rt.node_cpu, rt.node_memory_gb) {
                                        (Some(cpu), Some(gb)) if used != 0 => {
                                            (cpu * f64::from(h % 5) / 4.0, (gb * f64::from((h >> 8) % 5) / 4.0).floor())
                                        }
                                        _ => (0.0, 0.0),
                                    };
                                    // A third of the trays with GPUs left share one or two of them.
                                    let s = gpuplace::kernel::score::mix(r << 8 ^ n ^ 0x54A2);
                                    let shared: Vec<u32> =
                                        if state != NodeState::Failed && used < node_gpus && s.is_multiple_of(3) {
                                            let count = (node_gpus - used).min(1 + (s >> 2) % 2);
                                            (0..count).map(|i| 1 + (s >> (4 + 10 * i)) % 1000).collect()
                                        } else {
                                            Vec::new()
                                        };
                                    (state != NodeState::Ready || used != 0 || !shared.is_empty()).then(|| {
                                        NodeFile::new(r, n)
                                            .with_state(state)
                                            .with_used_gpus(used)
                                            .with_resources_used(cores, memory)
                                            .with_shared_gpus(shared)
                                    })
                                })
                                .collect();
                            cluster.with_nodes(entries)
                        }
                        None => cluster,
                    }
                })
                .collect::<Vec<_>>();
            let provider = PROVIDERS[rng.below(3) as usize];
            let jurisdiction = JURISDICTIONS[rng.below(3) as usize];
            // Sometimes tight, so that power binds; always enough for the stated occupancy.
            let power_mw = if rng.percent(30) { rng.between(1, 40) as f64 / 10.0 } else { 100.0 };
            let power_mw = if shape.power_tight { 0.1 + (power_mw * 7.0) % 0.9 } else { power_mw };
            let pue = 1.0 + rng.below(50) as f64 / 100.0;
            let (price, carbon) = (rng.between(10, 250) as f64, rng.between(0, 900) as f64);
            let online = Day(at().0 + rng.between(0, 60) as u32 - 40);
            let mut site = SiteFile::new(format!("site{s}"), provider, "XX", jurisdiction, power_mw, online)
                .with_energy(pue, price, carbon);
            for region in &regions {
                site = site.with_latency_ms(region.clone(), rng.between(1, 200) as u32);
            }
            clusters.into_iter().fold(site, SiteFile::with_cluster)
        })
        .collect::<Vec<_>>();
    let mut file = rack_types
        .into_iter()
        .fold(FleetFile::new(regions), |file, (name, rack_type)| file.with_rack_type(name, rack_type));
    file = sites.into_iter().fold(file, FleetFile::with_site);
    // Drop stated occupancy that the site's power could not feed (the fleet would be rejected).
    loop {
        match Fleet::from_file(file.clone(), "<random>") {
            Ok(fleet) => return fleet,
            Err(e) if e.field.contains("used_gpus") => {
                for site in &mut file.sites {
                    site.power_mw = site.power_mw.max(100.0);
                }
            }
            Err(e) => panic!("random fleet invalid: {e}"),
        }
    }
}

/// A random valid workload for `fleet`.
pub fn random_workload(rng: &mut SplitMix64, fleet: &Fleet, jobs: usize) -> Workload {
    let largest = fleet.rack_types.iter().map(|t| t.gpus).max().unwrap();
    let jobs = (0..jobs)
        .map(|n| {
            let kind = JobKind::ALL[rng.below(4) as usize];
            let gpus = match rng.below(10) {
                0 => largest * rng.between(1, 3) as u32 + rng.below(u64::from(largest)) as u32,
                1 => largest,
                _ => rng.between(1, u64::from(largest.min(16))) as u32,
            };
            // A fifth of the jobs allow a random non-empty subset (an empty list is refused).
            let subset = |rng: &mut SplitMix64, all: &[String]| {
                rng.percent(20)
                    .then(|| all.iter().filter(|_| rng.percent(50)).cloned().collect::<Vec<_>>())
                    .filter(|list| !list.is_empty())
            };
            // Drawn in the order of the fields, as before the builder existed, so that seeds keep
            // giving the same problems.
            let hbm = rng.between(0, 300) as u32;
            let priority = rng.between(0, 5) as i32;
            let hours = rng.between(1, 100) as f64;
            let region = fleet.regions[rng.below(fleet.regions.len() as u64) as usize].clone();
            let mut job = Job::new(format!("job-{n:04}"), kind, gpus, region)
                .with_hbm_gb_per_gpu(hbm)
                .with_priority(priority)
                .with_duration_h(hours);
            if rng.percent(60) {
                job = job.with_max_latency_ms(rng.between(1, 200) as u32);
            }
            if let Some(list) = subset(rng, &fleet.jurisdictions) {
                job = job.with_jurisdictions(list);
            }
            if let Some(list) = subset(rng, &fleet.providers) {
                job = job.with_providers(list);
            }
            if rng.percent(15) {
                job = job.with_not_before(Day(at().0 + rng.between(0, 90) as u32));
            }
            // A quarter of the jobs state their pods: 1 to 12 pods of 1, 2, 4 or 8 GPUs.
            if rng.percent(25) {
                let pod_gpus = [1u32, 2, 4, 8][rng.below(4) as usize];
                let pods = rng.between(1, 12) as u32;
                job.gpus = pods * pod_gpus;
                job = job.with_pods(pods);
                // Half of them ask for CPU and memory per pod: 1 to 32 cores and 8 to 256 GB per GPU.
                let h = gpuplace::kernel::score::mix(n as u32 ^ 0xC9A0);
                if h.is_multiple_of(2) {
                    let cores = f64::from(pod_gpus * (1 + (h >> 4) % 32));
                    let memory = f64::from(pod_gpus * 8 * (1 + (h >> 12) % 32));
                    job = job.with_pod_resources(cores, memory);
                }
                // Half of the jobs of 1-GPU pods share GPUs: 1 to 999 thousandths of one each.
                let g = gpuplace::kernel::score::mix(n as u32 ^ 0x5A4E);
                if pod_gpus == 1 && g.is_multiple_of(2) {
                    job = job.with_gpu_milli(1 + (g >> 4) % 999);
                }
            }
            // Jobs spanning racks may require or prefer one topology block (from a hash, as above).
            job.block = match gpuplace::kernel::score::mix(n as u32 ^ 0xB10C) % 4 {
                2 => Some(gpuplace::model::jobs::BlockRule::Required),
                3 => Some(gpuplace::model::jobs::BlockRule::Preferred),
                _ => None,
            };
            job
        })
        .collect();
    Workload::from_jobs(jobs, "<random>")
}

/// A policy with random weights, or all zero (every feasible pair ties).
pub fn random_policy(rng: &mut SplitMix64, all_ties: bool) -> gpuplace::Policy {
    let mut weights = || {
        let mut w = || {
            if all_ties { 0 } else { rng.between(0, 1000) as u32 }
        };
        gpuplace::model::policy::PerTerm(std::array::from_fn(|_| w()))
    };
    let (inference, agentic, multimodal, training) = (weights(), weights(), weights(), weights());
    let mut policy = gpuplace::Policy::default();
    (policy.inference, policy.agentic, policy.multimodal, policy.training) = (inference, agentic, multimodal, training);
    policy.latency_ref_ms = rng.percent(50).then(|| rng.between(1, 400) as u32);
    policy.candidates = rng.between(1, 16) as u32;
    policy.seed = rng.next_u64();
    // From the seed, not the generator, so that old seeds keep their problems.
    policy.consolidate = policy.seed % 4 != 0;
    policy.prefer_one_domain = (policy.seed >> 2) % 2 == 0;
    policy
}

/// The parity comparison used by every test here: Ok, or the first difference.
pub fn compare(gpu: &ScoreOutput, cpu: &ScoreOutput) -> Result<(), String> {
    if gpu.feasible.len() != cpu.feasible.len() || gpu.candidates.len() != cpu.candidates.len() {
        return Err(format!("sizes differ: {} vs {} jobs", gpu.feasible.len(), cpu.feasible.len()));
    }
    for job in 0..cpu.feasible.len() {
        if gpu.feasible[job] != cpu.feasible[job] {
            return Err(format!(
                "job {job}: feasible racks {} (gpu) vs {} (cpu)",
                gpu.feasible[job], cpu.feasible[job]
            ));
        }
        if gpu.candidates_of(job) != cpu.candidates_of(job) {
            return Err(format!(
                "job {job}: candidates {:?} (gpu) vs {:?} (cpu)",
                gpu.candidates_of(job),
                cpu.candidates_of(job)
            ));
        }
    }
    Ok(())
}

/// A random scoring problem: compiled jobs and a fleet state with random occupancy and power.
pub fn random_problem(seed: u64) -> (Vec<JobGpu>, FleetState, usize) {
    let mut rng = SplitMix64::new(seed);
    let shapes = [
        Shape::default(),
        Shape { max_sites: 1, max_clusters: 1, max_racks: 1, jobs: 7, ..Shape::default() },
        Shape { max_racks: 40, jobs: 130, ..Shape::default() },
        Shape { occupancy_percent: 100, ..Shape::default() },
        Shape { occupancy_percent: 0, ..Shape::default() },
        Shape { all_ties: true, jobs: 65, ..Shape::default() },
    ];
    let shape = shapes[(seed % shapes.len() as u64) as usize];
    let jobs_count = match seed % 50 {
        0 => 0,
        1 => 1,
        _ => shape.jobs + rng.below(70) as usize,
    };
    let fleet = random_fleet(&mut rng, shape);
    let workload = random_workload(&mut rng, &fleet, jobs_count);
    let policy = random_policy(&mut rng, shape.all_ties);
    let jobs = workload.compile(&fleet, &policy, at()).unwrap();
    let mut state = fleet.initial_state();
    // Drain some site power so that power binds for some pairs.
    for site in &mut state.sites {
        if rng.percent(30) {
            site.power_free_w = rng.below(u64::from(site.power_free_w) + 1) as u32;
        }
    }
    (jobs, state, policy.candidates as usize)
}

/// A kernel job record of `pods` pods of `pod_gpus` GPUs (`gpus` in all) that every site, region
/// and date accepts, with no HBM, CPU or memory asked and every weight 0: tests set what they vary
/// with struct update syntax.
pub fn plain_job(gpus: u32, pods: u32, pod_gpus: u32) -> JobGpu {
    JobGpu {
        gpus,
        pods,
        pod_gpus,
        shapes: job_tables(gpus, pods, pod_gpus),
        hbm_gb: 0,
        region: 0,
        latency_limit_ms: 60_000,
        latency_ref_ms: 60_000,
        inv_latency_ref_q16: inv_q16(60_000),
        jurisdiction_mask: u32::MAX,
        provider_mask: u32::MAX,
        ready_day: 0,
        random_salt: 0,
        block_rule: 0,
        one_domain: 0,
        frag_mix: [0; 3],
        pod_cpu_milli: 0,
        pod_memory_mib: 0,
        gpu_milli: 0,
        pods_per_gpu: 0,
        weights: [0; TERM_COUNT],
    }
}

/// A kernel rack record (site, cluster and block 0; 100 GB of HBM per GPU, 1 W a GPU) over the
/// node table `table` of trays of `node_gpus` GPUs with `node_cpu` milli-cores and `node_memory`
/// MiB each: its free GPUs, summary and least CPU and memory per free GPU as `FleetState::recount`
/// keeps them.
pub fn rack_over(table: &[NodeGpu], node_gpus: u32, node_cpu: u32, node_memory: u32) -> RackGpu {
    use gpuplace::kernel::limits::{MAX_NODE_CPU_MILLI, MAX_NODE_MEMORY_MIB};
    let nodes = table.len() as u32;
    let gpus = node_gpus * nodes;
    let per_gpu = |field: fn(&NodeGpu) -> u32, most: u32| {
        table.iter().filter(|n| n.free_gpus != 0).map(|n| field(n) / n.free_gpus).min().unwrap_or(most)
    };
    RackGpu {
        free_gpus: table.iter().map(|n| n.free_gpus).sum(),
        gpus,
        hbm_gb: 100,
        gpu_watts: 1,
        site: 0,
        cluster: 0,
        inv_gpus_q16: inv_q16(gpus),
        inv_hbm_q16: inv_q16(100),
        node_gpus,
        nodes,
        first_node: 0,
        block: 0,
        summary: rack_summary(table.iter().map(|n| n.free_gpus)),
        node_cpu_milli: node_cpu,
        node_memory_mib: node_memory,
        cpu_per_gpu: per_gpu(|n| n.free_cpu_milli, MAX_NODE_CPU_MILLI),
        memory_per_gpu: per_gpu(|n| n.free_memory_mib, MAX_NODE_MEMORY_MIB),
    }
}
