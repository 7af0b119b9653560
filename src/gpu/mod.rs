//! The GPU backend: `shaders/score.wgsl` on any wgpu adapter (Vulkan, Metal, DX12, GL).
//!
//! One device per adapter per process: the first [`GpuScorer`] opened on an adapter creates its
//! device and pipeline and checks them against the CPU on a small known problem (an adapter that
//! disagrees is refused with [`ScoreError::SelfCheck`]); later scorers share them. Each scorer owns
//! its buffers, which grow when a larger batch arrives and never shrink. Batches larger than the
//! device allows in one binding or one dispatch are tiled over jobs and over racks; rack tiles
//! after the first continue the candidate lists left by earlier tiles, which is exact (see the
//! shader). Job tiles alternate between two sets of buffers, so that the host uploads the next tile
//! and reads back the last while the device scores the current one; the host copies on all cores.

pub mod nodes;
mod selfcheck;

use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;

use crate::error::ScoreError;
use crate::kernel::cpu::ScoreOutput;
use crate::kernel::score::{
    BlockGpu, Candidate, ClusterGpu, JobGpu, MAX_CANDIDATES, NODE_WORDS, NodeGpu, Params, RackGpu, SiteGpu,
};
use crate::kernel::state::FleetState;

/// The kernel's source, compiled into the binary.
pub const SCORE_WGSL: &str = include_str!("../../shaders/score.wgsl");
/// Must equal `WG_SIZE` in the shader.
pub const WG_SIZE: u32 = 64;
/// Bytes per piece of a memory copy between the host and a mapped buffer, spread over all cores.
const COPY_CHUNK: usize = 1 << 20;
/// The most jobs scored per dispatch regardless of limits, to bound device memory: each of the two
/// slots holds a tile's jobs twice (upload and storage, 144 bytes a job) and its candidates twice
/// (storage and readback, 68 bytes a job at K = 8), 106 MiB in all. On an H200, tiles of 2¹⁷ and
/// 2¹⁹ jobs scored 1M jobs equally fast (BENCHMARKS.md, "Host transfers").
pub const MAX_JOBS_PER_TILE: usize = 1 << 17;

/// An adapter, for summaries, benchmarks and the choice of a backend.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct AdapterSummary {
    /// Adapter name (e.g. `NVIDIA H100 80GB HBM3`, `llvmpipe (LLVM 15.0.7, 256 bits)`).
    pub name: String,
    /// Graphics API backend (Vulkan, Metal, Dx12, Gl).
    pub backend: String,
    /// Device type (DiscreteGpu, IntegratedGpu, Cpu, …).
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// A software device (device type Cpu: lavapipe, llvmpipe, WARP), which runs the kernel on the
    /// CPU's cores far slower than the CPU backend does.
    pub software: bool,
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {}", self.name, self.backend, self.device_type)?;
        if !self.driver.is_empty() {
            write!(f, ", {}", self.driver)?;
        }
        write!(f, ")")
    }
}

fn summarize(info: &wgpu::AdapterInfo) -> AdapterSummary {
    let driver = [info.driver.as_str(), info.driver_info.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    AdapterSummary {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver,
        software: info.device_type == wgpu::DeviceType::Cpu,
    }
}

/// The largest buffer the device lets one binding see, bytes.
fn max_binding(limits: &wgpu::Limits) -> u64 {
    limits.max_storage_buffer_binding_size.min(limits.max_buffer_size)
}

/// Racks one dispatch scores on a software adapter. Mesa's llvmpipe (behind lavapipe and its GL
/// driver) ends a shader's loops after 65,535 iterations of one invocation, silently: a job scored
/// against more racks than that in one dispatch missed the racks after it (measured: 10,919 of
/// 70,000 one-server racks feasible; 575 of 576 GB300 racks for pods of a shared GPU, counted tray
/// by tray). Real GPUs have no such limit. One rack costs an invocation at most about 80 loop
/// iterations (the rack loop, the terms and the score's sums, the insertion into a list of up to 16
/// and the fragmentation term's loops), so 512 racks stay under 41,000 …
pub const SOFTWARE_RACKS_PER_TILE: usize = 512;
/// … and its trays, read one by one for a job asking CPU or memory or sharing GPUs (at most 9
/// iterations each: the tray, and its GPUs for a shared pod), 2,048 trays under 18,500 more.
pub const SOFTWARE_NODES_PER_TILE: u64 = 2048;

/// How big a tile may be on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilePlan {
    /// Jobs per dispatch.
    pub jobs_per_tile: usize,
    /// Racks per dispatch.
    pub racks_per_tile: usize,
    /// Workgroups in one dimension of the dispatch grid.
    pub max_groups_per_dim: u32,
    /// Trays per dispatch when the batch reads them (besides what the binding holds).
    pub nodes_per_tile: u64,
}

impl TilePlan {
    /// The largest tiles `limits` allow for `k` candidates per job.
    pub fn for_limits(limits: &wgpu::Limits, k: usize) -> TilePlan {
        let max_binding = max_binding(limits);
        let per_job = (size_of::<JobGpu>() as u64).max((k * size_of::<Candidate>()) as u64);
        let groups = u64::from(limits.max_compute_workgroups_per_dimension);
        let jobs_by_grid = groups * groups * u64::from(WG_SIZE);
        let jobs_per_tile = (max_binding / per_job).min(jobs_by_grid).min(MAX_JOBS_PER_TILE as u64).max(1) as usize;
        let racks_per_tile = (max_binding / size_of::<RackGpu>() as u64).max(1) as usize;
        TilePlan {
            jobs_per_tile,
            racks_per_tile,
            max_groups_per_dim: limits.max_compute_workgroups_per_dimension,
            nodes_per_tile: u64::MAX,
        }
    }

    /// [`TilePlan::for_limits`] on a software adapter: tiles small enough that no invocation
    /// loops more than llvmpipe allows ([`SOFTWARE_RACKS_PER_TILE`]).
    pub fn for_software(self) -> TilePlan {
        TilePlan {
            racks_per_tile: self.racks_per_tile.min(SOFTWARE_RACKS_PER_TILE),
            nodes_per_tile: self.nodes_per_tile.min(SOFTWARE_NODES_PER_TILE),
            ..self
        }
    }
}

/// One dispatch's racks: consecutive racks from global index `offset`, and when the batch reads the
/// node table, their nodes (which are consecutive too, from `first_node`).
struct RackTile<'a> {
    offset: usize,
    racks: &'a [RackGpu],
    first_node: u32,
    nodes: &'a [NodeGpu],
}

/// Splits the racks into tiles of at most `racks_per_tile`, and when `with_nodes`, also small
/// enough that the latency table and the tile's nodes fit one binding.
fn rack_tiles<'a>(
    state: &'a FleetState,
    racks_per_tile: usize,
    with_nodes: bool,
    max_binding: u64,
    nodes_per_tile: u64,
) -> Result<Vec<RackTile<'a>>, ScoreError> {
    let node_room =
        ((max_binding / 4).saturating_sub(state.latency.len() as u64) / u64::from(NODE_WORDS)).min(nodes_per_tile);
    let mut tiles = Vec::new();
    let mut start = 0;
    while start < state.racks.len() {
        let mut end = (start + racks_per_tile).min(state.racks.len());
        let first_node = state.racks[start].first_node;
        if with_nodes {
            let nodes_to = |end: usize| {
                let last = &state.racks[end - 1];
                u64::from(last.first_node + last.nodes - first_node)
            };
            while end > start && nodes_to(end) > node_room {
                end -= 1;
            }
            if end == start {
                return Err(ScoreError::TooLarge(format!(
                    "rack {start}'s nodes with the latency table exceed the device's largest binding ({max_binding} bytes)"
                )));
            }
        }
        let nodes = if with_nodes {
            let last = &state.racks[end - 1];
            &state.node_table[first_node as usize..(last.first_node + last.nodes) as usize]
        } else {
            &[]
        };
        tiles.push(RackTile { offset: start, racks: &state.racks[start..end], first_node, nodes });
        start = end;
    }
    Ok(tiles)
}

/// The outcome of opening an adapter's shared device: kept, so that an adapter that failed is
/// not retried by every scorer.
type Opened = Result<Arc<Device>, ScoreError>;

/// Every adapter wgpu finds (restricted by `WGPU_BACKEND`, e.g. `vulkan` or `gl`), best first:
/// hardware before software, then discrete before integrated before virtual, then Vulkan, Metal
/// and DX12 before GL.
struct Registry {
    adapters: Vec<(wgpu::Adapter, AdapterSummary)>,
    /// The shared device of each adapter, opened (and self-checked) on first use.
    devices: Mutex<Vec<Option<Opened>>>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        descriptor.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
        let instance = wgpu::Instance::new(descriptor);
        let mut adapters: Vec<(wgpu::Adapter, AdapterSummary)> =
            pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
                .into_iter()
                .map(|adapter| {
                    let summary = summarize(&adapter.get_info());
                    (adapter, summary)
                })
                .collect();
        let rank = |adapter: &wgpu::Adapter| {
            let info = adapter.get_info();
            let kind = match info.device_type {
                wgpu::DeviceType::DiscreteGpu => 0,
                wgpu::DeviceType::IntegratedGpu => 1,
                wgpu::DeviceType::VirtualGpu => 2,
                wgpu::DeviceType::Other => 3,
                wgpu::DeviceType::Cpu => 4,
            };
            (kind, info.backend == wgpu::Backend::Gl)
        };
        // A stable sort keeps wgpu's order among equals.
        adapters.sort_by_key(|(adapter, _)| rank(adapter));
        let devices = Mutex::new(vec![None; adapters.len()]);
        Registry { adapters, devices }
    })
}

/// Why [`adapters`] is empty, in words: nothing found, or `WGPU_BACKEND` restricting the search
/// (to an API this machine lacks, or to names wgpu does not know).
pub fn no_adapter_reason() -> String {
    match std::env::var("WGPU_BACKEND") {
        Ok(value) if wgpu::Backends::from_comma_list(&value).is_empty() => format!(
            "WGPU_BACKEND={value} names no graphics API wgpu knows (vulkan, metal, dx12, gl, or a comma-separated list)"
        ),
        Ok(value) => format!("wgpu found no adapter (WGPU_BACKEND={value} restricts the search)"),
        Err(_) => "wgpu found no adapter".into(),
    }
}

/// Every adapter wgpu finds (restricted by `WGPU_BACKEND`), best first: hardware before software,
/// then discrete before integrated before virtual, then Vulkan, Metal and DX12 before GL.
pub fn adapters() -> Vec<AdapterSummary> {
    registry().adapters.iter().map(|(_, summary)| summary.clone()).collect()
}

/// A device with the kernel's pipeline, shared by every scorer on its adapter.
struct Device {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    /// The node kernel (`shaders/frag.wgsl`) and its layout.
    nodes_pipeline: wgpu::ComputePipeline,
    nodes_layout: wgpu::BindGroupLayout,
    limits: wgpu::Limits,
    adapter: AdapterSummary,
    /// The first error wgpu reported outside an error scope, or the device's loss. Sticky: once a
    /// device has faulted, every scorer on it fails over to the CPU.
    fault: Arc<Mutex<Option<ScoreError>>>,
}

impl Device {
    /// Opens a device on `adapter` with limits derived from the adapter's, builds the pipeline and
    /// runs the self-check.
    fn open(
        adapter: &wgpu::Adapter,
        summary: &AdapterSummary,
        choose: impl FnOnce(wgpu::Limits) -> wgpu::Limits,
    ) -> Result<Arc<Device>, ScoreError> {
        let limits = choose(adapter.limits());
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("gpuplace"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| ScoreError::RequestDevice { adapter: summary.to_string(), message: e.to_string() })?;

        let fault: Arc<Mutex<Option<ScoreError>>> = Arc::new(Mutex::new(None));
        let on_error = Arc::clone(&fault);
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            let fault = match &error {
                wgpu::Error::OutOfMemory { .. } => ScoreError::OutOfMemory(error.to_string()),
                _ => ScoreError::Validation(error.to_string()),
            };
            on_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(fault);
        }));
        let on_lost = Arc::clone(&fault);
        device.set_device_lost_callback(move |reason, message| {
            on_lost
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(ScoreError::DeviceLost(format!("{reason:?}: {message}")));
        });

        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let (pipeline, layout) = build_pipeline(&device, "score", SCORE_WGSL, 9, &[6, 7]);
        let (nodes_pipeline, nodes_layout) = build_pipeline(&device, "frag", nodes::FRAG_WGSL, 4, &[3]);
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(ScoreError::Validation(error.to_string()));
        }
        let device = Arc::new(Device {
            device,
            queue,
            pipeline,
            layout,
            nodes_pipeline,
            nodes_layout,
            limits,
            adapter: summary.clone(),
            fault,
        });
        GpuScorer::on(Arc::clone(&device)).self_check(|_| {})?;
        nodes::GpuNodeScorer::on(Arc::clone(&device)).self_check(|_| {})?;
        Ok(device)
    }

    fn fault(&self) -> Option<ScoreError> {
        self.fault.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Maps `slice` for `mode` and waits for it, after `after` (the last submission that used the
    /// buffer; none when no submission did): the device's fault, if it had one meanwhile, or the
    /// mapping's failure, as a [`ScoreError`]. Both kernels' readbacks and the score kernel's uploads.
    fn map(
        &self,
        slice: &wgpu::BufferSlice<'_>,
        mode: wgpu::MapMode,
        after: Option<wgpu::SubmissionIndex>,
    ) -> Result<(), ScoreError> {
        let (sender, receiver) = std::sync::mpsc::channel();
        slice.map_async(mode, move |result| {
            let _ = sender.send(result);
        });
        // Wait for the submission that used the buffer, not for later ones still running.
        let poll = match after {
            Some(submission) => wgpu::PollType::Wait { submission_index: Some(submission), timeout: None },
            None => wgpu::PollType::Poll,
        };
        self.device.poll(poll).map_err(|e| ScoreError::DeviceLost(e.to_string()))?;
        if let Some(fault) = self.fault() {
            return Err(fault);
        }
        let result = match receiver.try_recv() {
            Ok(result) => Ok(result),
            // Not called back yet: wait for everything, then it must have been.
            Err(_) => {
                self.device
                    .poll(wgpu::PollType::wait_indefinitely())
                    .map_err(|e| ScoreError::DeviceLost(e.to_string()))?;
                receiver.recv()
            }
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ScoreError::DeviceLost(format!("mapping a buffer failed: {e}"))),
            Err(_) => Err(ScoreError::DeviceLost("mapping a buffer never completed".into())),
        }
    }
}

/// The shared device of adapter `index` of [`adapters`], opened and self-checked on first use.
fn shared_device(index: usize) -> Result<Arc<Device>, ScoreError> {
    let registry = registry();
    let (adapter, summary) = registry
        .adapters
        .get(index)
        .ok_or_else(|| ScoreError::NoAdapter(format!("there is no adapter number {index}")))?;
    let mut devices = registry.devices.lock().unwrap_or_else(|e| e.into_inner());
    let device = devices[index].get_or_insert_with(|| Device::open(adapter, summary, |limits| limits)).clone()?;
    if let Some(fault) = device.fault() {
        return Err(fault);
    }
    Ok(device)
}

/// A compute pipeline for `source`'s `main`, with a layout of `bindings` bindings: 0 a uniform, the
/// others storage, read-only except those in `writable`.
fn build_pipeline(
    device: &wgpu::Device,
    label: &str,
    source: &'static str,
    bindings: u32,
    writable: &[u32],
) -> (wgpu::ComputePipeline, wgpu::BindGroupLayout) {
    let descriptor =
        wgpu::ShaderModuleDescriptor { label: Some(label), source: wgpu::ShaderSource::Wgsl(source.into()) };
    // Without wgpu's forced loop bounding: it adds a 64-bit counter to every loop, and on an H200
    // the score kernel ran 1.5× faster without it (BENCHMARKS.md, "Kernel variants on an H200").
    // Bounds checks stay on.
    // SAFETY: wgpu asks that the shader contain no infinite loop. `source` is one of the two
    // kernels compiled into this crate (SCORE_WGSL, FRAG_WGSL), and every loop in them counts a
    // fresh variable up by one to a uniform or constant bound, or halves one to zero;
    // tests/shader.rs (`every_loop_terminates`) checks that form on both sources.
    let module = unsafe {
        device.create_shader_module_trusted(
            descriptor,
            wgpu::ShaderRuntimeChecks { force_loop_bounding: false, ..wgpu::ShaderRuntimeChecks::checked() },
        )
    };
    let entries: Vec<wgpu::BindGroupLayoutEntry> = (0..bindings)
        .map(|binding| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: if binding == 0 {
                    wgpu::BufferBindingType::Uniform
                } else {
                    wgpu::BufferBindingType::Storage { read_only: !writable.contains(&binding) }
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    let layout =
        device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(label), entries: &entries });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(label),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: Some(&pipeline_layout),
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    (pipeline, layout)
}

/// Device buffers, grown on demand: the fleet's tables, and one or two slots of per-job buffers.
struct Buffers {
    params: wgpu::Buffer,
    racks: wgpu::Buffer,
    sites: wgpu::Buffer,
    clusters: wgpu::Buffer,
    blocks: wgpu::Buffer,
    latency: wgpu::Buffer,
    slots: Vec<Slot>,
}

/// One job tile's buffers. With two slots, the host uploads the next tile and reads back the last
/// while the device scores the current one.
struct Slot {
    /// Mapped and written by the host, then copied to `jobs` on the device: a buffer of our own
    /// rather than `Queue::write_buffer`, whose staging buffer is allocated anew for every write
    /// (with it, 1M jobs scored in 0.12–0.13 s on an H200 against 0.08 s: BENCHMARKS.md).
    upload: wgpu::Buffer,
    jobs: wgpu::Buffer,
    candidates: wgpu::Buffer,
    feasible: wgpu::Buffer,
    readback: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

/// The GPU scorer: a shared device and pipeline, and buffers of its own.
pub struct GpuScorer {
    context: Arc<Device>,
    buffers: Option<Buffers>,
    passes: u64,
    /// Test hook: destroy the device before the n-th scoring pass (0-based).
    #[cfg(feature = "test-hooks")]
    destroy_before_pass: Option<u64>,
}

impl GpuScorer {
    fn on(context: Arc<Device>) -> GpuScorer {
        GpuScorer {
            context,
            buffers: None,
            passes: 0,
            #[cfg(feature = "test-hooks")]
            destroy_before_pass: None,
        }
    }

    /// A scorer on the best adapter wgpu finds (see [`adapters`]), which may be a software device.
    pub fn open() -> Result<GpuScorer, ScoreError> {
        if registry().adapters.is_empty() {
            return Err(ScoreError::NoAdapter(no_adapter_reason()));
        }
        GpuScorer::open_adapter(0)
    }

    /// A scorer on adapter `index` of [`adapters`]. The adapter's device is opened and
    /// self-checked on first use and shared with every later scorer on it.
    pub fn open_adapter(index: usize) -> Result<GpuScorer, ScoreError> {
        Ok(GpuScorer::on(shared_device(index)?))
    }

    /// Test hook: a scorer on a device of its own on the best adapter, opened with limits derived
    /// from the adapter's (tests lower them to force tiling), and self-checked. Every other scorer
    /// shares its adapter's one device.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn with_limits(choose: impl FnOnce(wgpu::Limits) -> wgpu::Limits) -> Result<GpuScorer, ScoreError> {
        GpuScorer::on_adapter_with_limits(0, choose)
    }

    /// Test hook: like `with_limits`, on adapter `index` of [`adapters`].
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn on_adapter_with_limits(
        index: usize,
        choose: impl FnOnce(wgpu::Limits) -> wgpu::Limits,
    ) -> Result<GpuScorer, ScoreError> {
        let (adapter, summary) = registry()
            .adapters
            .get(index)
            .ok_or_else(|| ScoreError::NoAdapter(format!("wgpu found no adapter number {index}")))?;
        Ok(GpuScorer::on(Device::open(adapter, summary, choose)?))
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.context.adapter
    }

    /// The limits the device was opened with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.context.limits
    }

    /// Test hook: destroy the device just before scoring pass `pass` (0-based), to exercise the
    /// fallback to the CPU on a real device loss. Use it on a scorer with a device of its own
    /// ([`GpuScorer::with_limits`]): a shared device is lost for every scorer on it.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn destroy_device_before_pass(&mut self, pass: u64) {
        self.destroy_before_pass = Some(pass);
    }

    /// The self-check (see `selfcheck.rs`): the device must score a fixed problem exactly as the
    /// CPU scores it with the jobs altered by `alter` (nothing, except in the check's negative
    /// control).
    fn self_check(&mut self, alter: fn(&mut JobGpu)) -> Result<(), ScoreError> {
        let (jobs, state) = selfcheck::problem();
        let mut expected_jobs = jobs.clone();
        expected_jobs.iter_mut().for_each(alter);
        for k in selfcheck::LIST_LENGTHS {
            let device = self.score_batch(&jobs, &state, k)?;
            let cpu = crate::kernel::cpu::score_batch(&expected_jobs, &state, k);
            if let Some(difference) = selfcheck::first_difference(&device, &cpu) {
                return Err(ScoreError::SelfCheck { adapter: self.adapter().to_string(), message: difference });
            }
        }
        Ok(())
    }

    /// Test hook: the self-check, with the CPU's expectation computed from jobs altered by
    /// `alter`. It must fail for any alteration that changes a result (its negative control).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn self_check_against_altered_cpu(&mut self, alter: fn(&mut JobGpu)) -> Result<(), ScoreError> {
        self.self_check(alter)
    }

    /// Makes sure every buffer holds at least the given element counts and that there are at least
    /// `slots` job slots, recreating the bind groups if any buffer had to grow.
    #[expect(clippy::too_many_arguments, reason = "one count per buffer, named")]
    fn ensure_buffers(
        &mut self,
        jobs: usize,
        racks: usize,
        sites: usize,
        clusters: usize,
        blocks: usize,
        latency: usize,
        k: usize,
        slots: usize,
    ) {
        let bytes = |count: usize, size: usize| ((count.max(1) * size) as u64).next_multiple_of(16);
        let need = [
            bytes(jobs, size_of::<JobGpu>()),
            bytes(racks, size_of::<RackGpu>()),
            bytes(sites, size_of::<SiteGpu>()),
            bytes(clusters, size_of::<ClusterGpu>()),
            bytes(blocks, size_of::<BlockGpu>()),
            bytes(latency, 4),
            bytes(jobs * k, size_of::<Candidate>()),
            bytes(jobs, 4),
        ];
        let old = self.buffers.as_ref().map(|b| {
            let slot = &b.slots[0];
            [
                slot.jobs.size(),
                b.racks.size(),
                b.sites.size(),
                b.clusters.size(),
                b.blocks.size(),
                b.latency.size(),
                slot.candidates.size(),
                slot.feasible.size(),
            ]
        });
        let slots = slots.max(self.buffers.as_ref().map_or(1, |b| b.slots.len()));
        if old.is_some_and(|have| have.iter().zip(&need).all(|(h, n)| h >= n))
            && self.buffers.as_ref().is_some_and(|b| b.slots.len() >= slots)
        {
            return;
        }
        // Grow to at least twice the old size so that slowly growing batches do not reallocate each time.
        let max_binding = max_binding(&self.context.limits);
        let size = |i: usize| match old {
            Some(old) if old[i] >= need[i] => old[i],
            Some(old) => need[i].max(old[i] * 2).min(max_binding.max(need[i]) / 16 * 16).max(need[i]),
            None => need[i],
        };
        let storage = |label: &str, size: u64, extra: wgpu::BufferUsages| {
            self.context.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | extra,
                mapped_at_creation: false,
            })
        };
        // Written before every dispatch; created unmapped, which a lost device also allows.
        let params = self.context.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: size_of::<Params>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let racks = storage("racks", size(1), wgpu::BufferUsages::empty());
        let sites = storage("sites", size(2), wgpu::BufferUsages::empty());
        let clusters = storage("clusters", size(3), wgpu::BufferUsages::empty());
        let blocks = storage("blocks", size(4), wgpu::BufferUsages::empty());
        let latency = storage("latency", size(5), wgpu::BufferUsages::empty());
        let slots = (0..slots)
            .map(|_| {
                let jobs = storage("jobs", size(0), wgpu::BufferUsages::empty());
                let upload = self.context.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("upload"),
                    size: jobs.size(),
                    usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                let candidates = storage("candidates", size(6), wgpu::BufferUsages::COPY_SRC);
                let feasible = storage("feasible", size(7), wgpu::BufferUsages::COPY_SRC);
                let readback = self.context.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("readback"),
                    size: candidates.size() + feasible.size(),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                let bind_group = self.context.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("score"),
                    layout: &self.context.layout,
                    entries: &[
                        wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() },
                        wgpu::BindGroupEntry { binding: 1, resource: jobs.as_entire_binding() },
                        wgpu::BindGroupEntry { binding: 2, resource: racks.as_entire_binding() },
                        wgpu::BindGroupEntry { binding: 3, resource: sites.as_entire_binding() },
                        wgpu::BindGroupEntry { binding: 4, resource: clusters.as_entire_binding() },
                        wgpu::BindGroupEntry { binding: 5, resource: latency.as_entire_binding() },
                        wgpu::BindGroupEntry { binding: 6, resource: candidates.as_entire_binding() },
                        wgpu::BindGroupEntry { binding: 7, resource: feasible.as_entire_binding() },
                        wgpu::BindGroupEntry { binding: 8, resource: blocks.as_entire_binding() },
                    ],
                });
                Slot { upload, jobs, candidates, feasible, readback, bind_group }
            })
            .collect();
        self.buffers = Some(Buffers { params, racks, sites, clusters, blocks, latency, slots });
    }

    /// Scores `jobs` against `state` on the device, keeping `k` candidates per job: the GPU twin of
    /// [`crate::kernel::cpu::score_batch`], with identical output.
    pub fn score_batch(&mut self, jobs: &[JobGpu], state: &FleetState, k: usize) -> Result<ScoreOutput, ScoreError> {
        assert!((1..=MAX_CANDIDATES as usize).contains(&k), "k must be 1..={MAX_CANDIDATES}");
        #[cfg(feature = "test-hooks")]
        if self.destroy_before_pass == Some(self.passes) {
            self.context.device.destroy();
        }
        self.passes += 1;
        if let Some(fault) = self.context.fault() {
            return Err(fault);
        }
        if jobs.is_empty() || state.racks.is_empty() {
            return Ok(ScoreOutput {
                k,
                candidates: vec![Candidate::NONE; jobs.len() * k],
                feasible: vec![0; jobs.len()],
            });
        }
        // Filled tile by tile as the results come back (each page is written once).
        let mut out =
            ScoreOutput { k, candidates: Vec::with_capacity(jobs.len() * k), feasible: Vec::with_capacity(jobs.len()) };
        let mut plan = TilePlan::for_limits(&self.context.limits, k);
        if self.context.adapter.software {
            plan = plan.for_software();
        }
        let max_binding = max_binding(&self.context.limits);
        // The `tables` binding holds the latency table and, when a job of the batch asks for CPU
        // or memory or shares GPUs (no other job reads them), the nodes of the rack tile being
        // scored: one binding keeps the kernel within 8 storage buffers.
        let with_nodes = jobs.iter().any(JobGpu::needs_node_table);
        for (name, bytes) in [
            ("site", state.sites.len() * size_of::<SiteGpu>()),
            ("cluster", state.clusters.len() * 8),
            ("block", state.blocks.len() * 4),
            ("latency", state.latency.len() * 4),
        ] {
            if bytes as u64 > max_binding {
                return Err(ScoreError::TooLarge(format!(
                    "the fleet's {name} table ({bytes} bytes) exceeds the device's largest binding ({max_binding} bytes)"
                )));
            }
        }
        let rack_tiles = rack_tiles(state, plan.racks_per_tile, with_nodes, max_binding, plan.nodes_per_tile)?;
        let tables_words =
            rack_tiles.iter().map(|t| state.latency.len() + NODE_WORDS as usize * t.nodes.len()).max().unwrap_or(0);
        let jobs_per_tile = plan.jobs_per_tile.min(jobs.len());
        let racks_per_tile = rack_tiles.iter().map(|t| t.racks.len()).max().unwrap_or(1);
        let scope_oom = self.context.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let scope_validation = self.context.device.push_error_scope(wgpu::ErrorFilter::Validation);
        self.ensure_buffers(
            jobs_per_tile,
            racks_per_tile,
            state.sites.len(),
            state.clusters.len(),
            state.blocks.len(),
            tables_words,
            k,
            // Two slots when the batch has more than one job tile, so that transfers overlap scoring.
            if jobs.len() > jobs_per_tile { 2 } else { 1 },
        );
        let result = self.run_tiles(jobs, state, &rack_tiles, k, plan, jobs_per_tile, &mut out);
        let validation = pollster::block_on(scope_validation.pop());
        let oom = pollster::block_on(scope_oom.pop());
        if let Some(fault) = self.context.fault() {
            return Err(fault);
        }
        if let Some(error) = oom {
            return Err(ScoreError::OutOfMemory(error.to_string()));
        }
        if let Some(error) = validation {
            return Err(ScoreError::Validation(error.to_string()));
        }
        result?;
        Ok(out)
    }

    #[expect(clippy::too_many_arguments, reason = "one private step of score_batch, named for readability")]
    fn run_tiles(
        &self,
        jobs: &[JobGpu],
        state: &FleetState,
        rack_tiles: &[RackTile<'_>],
        k: usize,
        plan: TilePlan,
        jobs_per_tile: usize,
        out: &mut ScoreOutput,
    ) -> Result<(), ScoreError> {
        let buffers = self.buffers.as_ref().expect("ensure_buffers ran");
        self.context.queue.write_buffer(&buffers.sites, 0, bytemuck::cast_slice(&state.sites));
        self.context.queue.write_buffer(&buffers.clusters, 0, bytemuck::cast_slice(&state.clusters));
        self.context.queue.write_buffer(&buffers.blocks, 0, bytemuck::cast_slice(&state.blocks));
        self.context.queue.write_buffer(&buffers.latency, 0, bytemuck::cast_slice(&state.latency));
        let write_tile = |tile: &RackTile<'_>| {
            self.context.queue.write_buffer(&buffers.racks, 0, bytemuck::cast_slice(tile.racks));
            if !tile.nodes.is_empty() {
                let at = (state.latency.len() * 4) as u64;
                self.context.queue.write_buffer(&buffers.latency, at, bytemuck::cast_slice(tile.nodes));
            }
        };
        if rack_tiles.len() == 1 {
            write_tile(&rack_tiles[0]);
        }
        // The job tile whose results are still on the device: its slot, size, first job and submission.
        let mut in_flight: Option<(usize, usize, usize, wgpu::SubmissionIndex)> = None;
        let slots = buffers.slots.len();
        // The last submission that used each slot.
        let mut slot_submissions: Vec<Option<wgpu::SubmissionIndex>> = vec![None; slots];
        for (tile_index, job_tile) in jobs.chunks(jobs_per_tile).enumerate() {
            let slot_index = tile_index % slots;
            let slot = &buffers.slots[slot_index];
            // One slot only when the batch is one tile (`score_batch` asks for two otherwise).
            debug_assert!(slots > 1 || in_flight.is_none(), "a slot reused before its tile was read back");
            let job_bytes: &[u8] = bytemuck::cast_slice(job_tile);
            // The slot's upload buffer was last copied from two tiles ago (or never).
            let upload = slot.upload.slice(0..job_bytes.len() as u64);
            self.context.map(&upload, wgpu::MapMode::Write, slot_submissions[slot_index].clone())?;
            // Copied on all cores, a disjoint view each: on an H200's host one core's copy of a
            // tile took about as long as the kernel (BENCHMARKS.md, "Host transfers").
            let copied = job_bytes.par_chunks(COPY_CHUNK).enumerate().try_for_each(|(i, from)| {
                let at = (i * COPY_CHUNK) as u64;
                let mut to = slot
                    .upload
                    .slice(at..at + from.len() as u64)
                    .get_mapped_range_mut()
                    .map_err(|e| ScoreError::Validation(e.to_string()))?;
                to.copy_from_slice(from);
                Ok::<(), ScoreError>(())
            });
            // Unmapped whatever happened, so that the next batch can map it again.
            slot.upload.unmap();
            copied?;
            let groups = (job_tile.len() as u32).div_ceil(WG_SIZE);
            let groups_per_row = groups.min(plan.max_groups_per_dim);
            let rows = groups.div_ceil(groups_per_row);
            let mut submission = None;
            for (rack_tile_index, tile) in rack_tiles.iter().enumerate() {
                if rack_tiles.len() > 1 {
                    write_tile(tile);
                }
                let params = Params {
                    job_count: job_tile.len() as u32,
                    rack_offset: tile.offset as u32,
                    rack_count: tile.racks.len() as u32,
                    region_count: state.region_count,
                    k: k as u32,
                    accumulate: u32::from(rack_tile_index > 0),
                    groups_per_row,
                    // The tile's first node sits right after the latency table: the kernel addresses
                    // node i at node_base + NODE_WORDS·i, wrapping (u32 arithmetic wraps in WGSL).
                    node_base: (state.latency.len() as u32).wrapping_sub(NODE_WORDS.wrapping_mul(tile.first_node)),
                };
                // Queue writes and submissions run in order, so each dispatch sees its own params
                // and rack tile even while an earlier one is still running.
                self.context.queue.write_buffer(&buffers.params, 0, bytemuck::bytes_of(&params));
                let mut encoder = self
                    .context
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("score") });
                if rack_tile_index == 0 {
                    encoder.copy_buffer_to_buffer(&slot.upload, 0, &slot.jobs, 0, job_bytes.len() as u64);
                }
                {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("score"),
                        timestamp_writes: None,
                    });
                    pass.set_pipeline(&self.context.pipeline);
                    pass.set_bind_group(0, &slot.bind_group, &[]);
                    pass.dispatch_workgroups(groups_per_row, rows, 1);
                }
                if rack_tile_index + 1 == rack_tiles.len() {
                    let candidate_bytes = (job_tile.len() * k * size_of::<Candidate>()) as u64;
                    let feasible_bytes = (job_tile.len() * 4) as u64;
                    encoder.copy_buffer_to_buffer(&slot.candidates, 0, &slot.readback, 0, candidate_bytes);
                    encoder.copy_buffer_to_buffer(&slot.feasible, 0, &slot.readback, candidate_bytes, feasible_bytes);
                }
                submission = Some(self.context.queue.submit([encoder.finish()]));
            }
            // Read the previous tile back while the device scores this one (its slot is the other).
            if let Some((slot, count, first, submission)) = in_flight.take() {
                self.read_back(slot, count, k, first, submission, out)?;
            }
            let submission = submission.expect("at least one rack tile");
            slot_submissions[slot_index] = Some(submission.clone());
            in_flight = Some((slot_index, job_tile.len(), tile_index * jobs_per_tile, submission));
        }
        if let Some((slot, count, first, submission)) = in_flight {
            self.read_back(slot, count, k, first, submission, out)?;
        }
        Ok(())
    }

    /// Waits for `submission`, maps slot `slot`'s readback buffer and copies one job tile's results
    /// into `out`.
    fn read_back(
        &self,
        slot: usize,
        job_count: usize,
        k: usize,
        first_job: usize,
        submission: wgpu::SubmissionIndex,
        out: &mut ScoreOutput,
    ) -> Result<(), ScoreError> {
        let buffers = self.buffers.as_ref().expect("ensure_buffers ran");
        let readback = &buffers.slots[slot].readback;
        let candidate_bytes = (job_count * k * size_of::<Candidate>()) as u64;
        let total = candidate_bytes + (job_count * 4) as u64;
        let slice = readback.slice(0..total);
        self.context.map(&slice, wgpu::MapMode::Read, Some(submission))?;
        {
            let view = slice.get_mapped_range().map_err(|e| ScoreError::Validation(e.to_string()))?;
            let (candidate_view, feasible_view) = view.split_at(candidate_bytes as usize);
            // Tiles are read back in order: each one extends the output.
            debug_assert_eq!((out.candidates.len(), out.feasible.len()), (first_job * k, first_job));
            // On all cores, like the upload.
            let candidates: &[Candidate] = bytemuck::cast_slice(candidate_view);
            let feasible: &[u32] = bytemuck::cast_slice(feasible_view);
            out.candidates.par_extend(candidates.par_iter().copied());
            out.feasible.par_extend(feasible.par_iter().copied());
        }
        readback.unmap();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rack_tiles_cover_every_rack_and_hold_their_nodes_within_a_binding() {
        // The self-check's fleet: racks of 1 to 18 trays.
        let (_, mut state) = selfcheck::problem();
        state.latency = vec![7; 40];
        let latency_bytes = (state.latency.len() * 4) as u64;
        let node_bytes = u64::from(NODE_WORDS) * 4;
        for max_binding in [latency_bytes + node_bytes * 18, latency_bytes + node_bytes * 100, 1 << 20] {
            for racks_per_tile in [1, 7, 5000] {
                let tiles = rack_tiles(&state, racks_per_tile, true, max_binding, u64::MAX).unwrap();
                let mut next = 0;
                for tile in &tiles {
                    assert_eq!(tile.offset, next, "tiles are consecutive");
                    assert!(!tile.racks.is_empty() && tile.racks.len() <= racks_per_tile);
                    assert!(
                        latency_bytes + node_bytes * tile.nodes.len() as u64 <= max_binding,
                        "the tile fits a binding"
                    );
                    // Node i of rack r sits where the kernel looks: node_base + NODE_WORDS·(first_node + i).
                    let node_base = (state.latency.len() as u32).wrapping_sub(NODE_WORDS.wrapping_mul(tile.first_node));
                    for rack in tile.racks {
                        for n in 0..rack.nodes {
                            let word = node_base.wrapping_add(NODE_WORDS * (rack.first_node + n)) as usize
                                - state.latency.len();
                            assert_eq!(
                                tile.nodes[word / NODE_WORDS as usize],
                                state.node_table[(rack.first_node + n) as usize]
                            );
                        }
                    }
                    next += tile.racks.len();
                }
                assert_eq!(next, state.racks.len(), "every rack in a tile");
            }
        }
        // A binding too small for one rack's trays is an error, not an endless loop.
        assert!(rack_tiles(&state, 10, true, latency_bytes + node_bytes, u64::MAX).is_err());
        // Without CPU or memory asked, tiles carry no nodes.
        assert!(rack_tiles(&state, 10, false, 1 << 20, u64::MAX).unwrap().iter().all(|t| t.nodes.is_empty()));
        // A cap on trays per tile holds too.
        let capped = rack_tiles(&state, 5000, true, 1 << 20, 40).unwrap();
        assert!(capped.len() > 1 && capped.iter().all(|t| t.nodes.len() <= 40));
    }
}
