//! The GPU backend: `shaders/score.wgsl` on any wgpu adapter (Vulkan, Metal, DX12, GL).
//!
//! A [`GpuScorer`] owns the device, the pipeline and the buffers; it is created once and reused for
//! every scoring pass (buffers grow when a larger batch arrives, never shrink, never per call).
//! Batches larger than the device allows in one binding or one dispatch are tiled over jobs and over
//! racks; rack tiles after the first continue the candidate lists left by earlier tiles, which is
//! exact (see the shader).

use std::sync::{Arc, Mutex};

use bytemuck::Zeroable;
use wgpu::util::DeviceExt;

use crate::cpu::ScoreOutput;
use crate::fleet::FleetState;
use crate::score::{Candidate, ClusterGpu, JobGpu, MAX_CANDIDATES, Params, RackGpu, SiteGpu};

/// The kernel's source, compiled into the binary.
pub const SCORE_WGSL: &str = include_str!("../shaders/score.wgsl");
/// Must equal `WG_SIZE` in the shader.
pub const WG_SIZE: u32 = 64;
/// The most jobs scored per dispatch regardless of limits, to bound device memory (64 MiB of jobs
/// and candidates at K = 8).
pub const MAX_JOBS_PER_TILE: usize = 1 << 19;

/// Why the GPU backend cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    /// No adapter was found (no GPU, no driver, or no software device).
    #[error("no GPU adapter available: {0}")]
    NoAdapter(String),
    /// The adapter refused to create a device.
    #[error("could not open a device on {adapter}: {message}")]
    RequestDevice {
        /// The adapter.
        adapter: String,
        /// What wgpu said.
        message: String,
    },
    /// The device was lost (driver reset, removal, or destroyed).
    #[error("device lost: {0}")]
    DeviceLost(String),
    /// The device ran out of memory.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// wgpu reported a validation or internal error.
    #[error("validation error: {0}")]
    Validation(String),
    /// The fleet's tables do not fit in one binding of this device.
    #[error("{0}")]
    TooLarge(String),
}

/// The adapter in use, for summaries and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AdapterSummary {
    /// Adapter name (e.g. `NVIDIA H100 80GB HBM3`, `llvmpipe (LLVM 15.0.7, 256 bits)`).
    pub name: String,
    /// Graphics API backend (Vulkan, Metal, Dx12, Gl).
    pub backend: String,
    /// Device type (DiscreteGpu, IntegratedGpu, Cpu, …).
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
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

/// The largest buffer the device lets one binding see, bytes.
fn max_binding(limits: &wgpu::Limits) -> u64 {
    limits.max_storage_buffer_binding_size.min(limits.max_buffer_size)
}

/// How big a tile may be on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilePlan {
    /// Jobs per dispatch.
    pub jobs_per_tile: usize,
    /// Racks per dispatch.
    pub racks_per_tile: usize,
    /// Workgroups in one dimension of the dispatch grid.
    pub max_groups_per_dim: u32,
}

impl TilePlan {
    /// The largest tiles `limits` allow for `k` candidates per job.
    pub fn for_limits(limits: &wgpu::Limits, k: usize) -> TilePlan {
        let max_binding = max_binding(limits);
        let per_job = (std::mem::size_of::<JobGpu>() as u64).max((k * std::mem::size_of::<Candidate>()) as u64);
        let groups = u64::from(limits.max_compute_workgroups_per_dimension);
        let jobs_by_grid = groups * groups * u64::from(WG_SIZE);
        let jobs_per_tile = (max_binding / per_job).min(jobs_by_grid).min(MAX_JOBS_PER_TILE as u64).max(1) as usize;
        let racks_per_tile = (max_binding / std::mem::size_of::<RackGpu>() as u64).max(1) as usize;
        TilePlan { jobs_per_tile, racks_per_tile, max_groups_per_dim: limits.max_compute_workgroups_per_dimension }
    }
}

/// Device buffers, grown on demand.
struct Buffers {
    params: wgpu::Buffer,
    jobs: wgpu::Buffer,
    racks: wgpu::Buffer,
    sites: wgpu::Buffer,
    clusters: wgpu::Buffer,
    latency: wgpu::Buffer,
    candidates: wgpu::Buffer,
    feasible: wgpu::Buffer,
    readback: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

/// The GPU scorer: device, queue, pipeline and buffers, created once.
pub struct GpuScorer {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    buffers: Option<Buffers>,
    limits: wgpu::Limits,
    adapter: AdapterSummary,
    /// Errors wgpu reports outside an error scope, and device loss; checked after every pass.
    fault: Arc<Mutex<Option<GpuError>>>,
    /// Test hook: destroy the device before the n-th scoring pass (0-based).
    destroy_before_pass: Option<u64>,
    passes: u64,
}

/// Finds an adapter: the high-performance one wgpu prefers, first among the primary backends
/// (Vulkan, Metal, DX12), then on GL. `WGPU_BACKEND` (e.g. `vulkan`, `gl`) restricts the search.
fn find_adapter() -> Result<wgpu::Adapter, GpuError> {
    let from_env = wgpu::Backends::from_env();
    let attempts = match from_env {
        Some(backends) => vec![backends],
        None => vec![wgpu::Backends::PRIMARY, wgpu::Backends::GL],
    };
    let mut last_error = String::from("no backend tried");
    for backends in attempts {
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        descriptor.backends = backends;
        let instance = wgpu::Instance::new(descriptor);
        match pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        })) {
            Ok(adapter) => return Ok(adapter),
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(GpuError::NoAdapter(last_error))
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
    }
}

impl GpuScorer {
    /// Opens the preferred adapter with the best limits it offers.
    pub fn new() -> Result<GpuScorer, GpuError> {
        GpuScorer::with_limits(|adapter_limits| adapter_limits)
    }

    /// Opens the preferred adapter with limits derived from the adapter's (tests lower them to force
    /// tiling).
    pub fn with_limits(choose: impl FnOnce(wgpu::Limits) -> wgpu::Limits) -> Result<GpuScorer, GpuError> {
        let adapter = find_adapter()?;
        let summary = summarize(&adapter.get_info());
        let limits = choose(adapter.limits());
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("gpuplace"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| GpuError::RequestDevice { adapter: summary.to_string(), message: e.to_string() })?;

        let fault: Arc<Mutex<Option<GpuError>>> = Arc::new(Mutex::new(None));
        let on_error = Arc::clone(&fault);
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            let fault = match &error {
                wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory(error.to_string()),
                _ => GpuError::Validation(error.to_string()),
            };
            on_error.lock().expect("fault lock").get_or_insert(fault);
        }));
        let on_lost = Arc::clone(&fault);
        device.set_device_lost_callback(move |reason, message| {
            on_lost.lock().expect("fault lock").get_or_insert(GpuError::DeviceLost(format!("{reason:?}: {message}")));
        });

        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("score.wgsl"),
            source: wgpu::ShaderSource::Wgsl(SCORE_WGSL.into()),
        });
        let storage = |binding: u32, read_only: bool| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("score"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
                storage(1, true),
                storage(2, true),
                storage(3, true),
                storage(4, true),
                storage(5, true),
                storage(6, false),
                storage(7, false),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("score"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("score"),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Validation(error.to_string()));
        }
        Ok(GpuScorer {
            device,
            queue,
            pipeline,
            layout,
            buffers: None,
            limits,
            adapter: summary,
            fault,
            destroy_before_pass: None,
            passes: 0,
        })
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// The limits the device was opened with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Test hook: destroy the device just before scoring pass `pass` (0-based), to exercise the
    /// fallback to the CPU backend on a real device loss.
    pub fn destroy_device_before_pass(&mut self, pass: u64) {
        self.destroy_before_pass = Some(pass);
    }

    fn take_fault(&self) -> Option<GpuError> {
        self.fault.lock().expect("fault lock").take()
    }

    /// Makes sure every buffer holds at least the given element counts, recreating the bind group if
    /// any buffer had to grow.
    fn ensure_buffers(&mut self, jobs: usize, racks: usize, sites: usize, clusters: usize, latency: usize, k: usize) {
        let bytes = |count: usize, size: usize| ((count.max(1) * size) as u64).next_multiple_of(16);
        let need = [
            bytes(jobs, size_of::<JobGpu>()),
            bytes(racks, size_of::<RackGpu>()),
            bytes(sites, size_of::<SiteGpu>()),
            bytes(clusters, size_of::<ClusterGpu>()),
            bytes(latency, 4),
            bytes(jobs * k, size_of::<Candidate>()),
            bytes(jobs, 4),
        ];
        if let Some(b) = &self.buffers {
            let have = [
                b.jobs.size(),
                b.racks.size(),
                b.sites.size(),
                b.clusters.size(),
                b.latency.size(),
                b.candidates.size(),
                b.feasible.size(),
            ];
            if have.iter().zip(&need).all(|(h, n)| h >= n) {
                return;
            }
        }
        // Grow to at least twice the old size so that slowly growing batches do not reallocate each time.
        let old = self.buffers.as_ref().map(|b| {
            [
                b.jobs.size(),
                b.racks.size(),
                b.sites.size(),
                b.clusters.size(),
                b.latency.size(),
                b.candidates.size(),
                b.feasible.size(),
            ]
        });
        let max_binding = max_binding(&self.limits);
        let size = |i: usize| match old {
            Some(old) if old[i] >= need[i] => old[i],
            Some(old) => need[i].max(old[i] * 2).min(max_binding.max(need[i]) / 16 * 16).max(need[i]),
            None => need[i],
        };
        let storage = |label: &str, size: u64, extra: wgpu::BufferUsages| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | extra,
                mapped_at_creation: false,
            })
        };
        let params = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: bytemuck::bytes_of(&Params::zeroed()),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        });
        let jobs = storage("jobs", size(0), wgpu::BufferUsages::empty());
        let racks = storage("racks", size(1), wgpu::BufferUsages::empty());
        let sites = storage("sites", size(2), wgpu::BufferUsages::empty());
        let clusters = storage("clusters", size(3), wgpu::BufferUsages::empty());
        let latency = storage("latency", size(4), wgpu::BufferUsages::empty());
        let candidates = storage("candidates", size(5), wgpu::BufferUsages::COPY_SRC);
        let feasible = storage("feasible", size(6), wgpu::BufferUsages::COPY_SRC);
        let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: candidates.size() + feasible.size(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("score"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: jobs.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: racks.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 3, resource: sites.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 4, resource: clusters.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 5, resource: latency.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 6, resource: candidates.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 7, resource: feasible.as_entire_binding() },
            ],
        });
        self.buffers =
            Some(Buffers { params, jobs, racks, sites, clusters, latency, candidates, feasible, readback, bind_group });
    }

    /// Scores `jobs` against `state` on the device, keeping `k` candidates per job: the GPU twin of
    /// [`crate::cpu::score_batch`], with identical output.
    pub fn score_batch(&mut self, jobs: &[JobGpu], state: &FleetState, k: usize) -> Result<ScoreOutput, GpuError> {
        assert!((1..=MAX_CANDIDATES as usize).contains(&k), "k must be 1..={MAX_CANDIDATES}");
        let pass = self.passes;
        self.passes += 1;
        if self.destroy_before_pass == Some(pass) {
            self.device.destroy();
        }
        if let Some(fault) = self.take_fault() {
            return Err(fault);
        }
        let mut out =
            ScoreOutput { k, candidates: vec![Candidate::NONE; jobs.len() * k], feasible: vec![0; jobs.len()] };
        if jobs.is_empty() || state.racks.is_empty() {
            return Ok(out);
        }
        let plan = TilePlan::for_limits(&self.limits, k);
        let max_binding = max_binding(&self.limits);
        for (name, bytes) in [
            ("site", state.sites.len() * 32),
            ("cluster", state.clusters.len() * 8),
            ("latency", state.latency.len() * 4),
        ] {
            if bytes as u64 > max_binding {
                return Err(GpuError::TooLarge(format!(
                    "the fleet's {name} table ({bytes} bytes) exceeds the device's largest binding ({max_binding} bytes)"
                )));
            }
        }
        let jobs_per_tile = plan.jobs_per_tile.min(jobs.len());
        let racks_per_tile = plan.racks_per_tile.min(state.racks.len());
        let scope_oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let scope_validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        self.ensure_buffers(
            jobs_per_tile,
            racks_per_tile,
            state.sites.len(),
            state.clusters.len(),
            state.latency.len(),
            k,
        );
        let result = self.run_tiles(jobs, state, k, plan, jobs_per_tile, racks_per_tile, &mut out);
        let validation = pollster::block_on(scope_validation.pop());
        let oom = pollster::block_on(scope_oom.pop());
        if let Some(fault) = self.take_fault() {
            return Err(fault);
        }
        if let Some(error) = oom {
            return Err(GpuError::OutOfMemory(error.to_string()));
        }
        if let Some(error) = validation {
            return Err(GpuError::Validation(error.to_string()));
        }
        result?;
        Ok(out)
    }

    #[expect(clippy::too_many_arguments, reason = "one private step of score_batch, named for readability")]
    fn run_tiles(
        &self,
        jobs: &[JobGpu],
        state: &FleetState,
        k: usize,
        plan: TilePlan,
        jobs_per_tile: usize,
        racks_per_tile: usize,
        out: &mut ScoreOutput,
    ) -> Result<(), GpuError> {
        let buffers = self.buffers.as_ref().expect("ensure_buffers ran");
        self.queue.write_buffer(&buffers.sites, 0, bytemuck::cast_slice(&state.sites));
        self.queue.write_buffer(&buffers.clusters, 0, bytemuck::cast_slice(&state.clusters));
        self.queue.write_buffer(&buffers.latency, 0, bytemuck::cast_slice(&state.latency));
        let rack_tiles: Vec<(usize, &[RackGpu])> =
            state.racks.chunks(racks_per_tile).enumerate().map(|(i, tile)| (i * racks_per_tile, tile)).collect();
        if rack_tiles.len() == 1 {
            self.queue.write_buffer(&buffers.racks, 0, bytemuck::cast_slice(rack_tiles[0].1));
        }
        for (tile_index, job_tile) in jobs.chunks(jobs_per_tile).enumerate() {
            self.queue.write_buffer(&buffers.jobs, 0, bytemuck::cast_slice(job_tile));
            let groups = (job_tile.len() as u32).div_ceil(WG_SIZE);
            let groups_per_row = groups.min(plan.max_groups_per_dim);
            let rows = groups.div_ceil(groups_per_row);
            for (rack_tile_index, &(rack_offset, rack_tile)) in rack_tiles.iter().enumerate() {
                if rack_tiles.len() > 1 {
                    self.queue.write_buffer(&buffers.racks, 0, bytemuck::cast_slice(rack_tile));
                }
                let params = Params {
                    job_count: job_tile.len() as u32,
                    rack_offset: rack_offset as u32,
                    rack_count: rack_tile.len() as u32,
                    region_count: state.region_count,
                    k: k as u32,
                    accumulate: u32::from(rack_tile_index > 0),
                    groups_per_row,
                    _pad: 0,
                };
                self.queue.write_buffer(&buffers.params, 0, bytemuck::bytes_of(&params));
                let mut encoder =
                    self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("score") });
                {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("score"),
                        timestamp_writes: None,
                    });
                    pass.set_pipeline(&self.pipeline);
                    pass.set_bind_group(0, &buffers.bind_group, &[]);
                    pass.dispatch_workgroups(groups_per_row, rows, 1);
                }
                if rack_tile_index + 1 == rack_tiles.len() {
                    let candidate_bytes = (job_tile.len() * k * size_of::<Candidate>()) as u64;
                    let feasible_bytes = (job_tile.len() * 4) as u64;
                    encoder.copy_buffer_to_buffer(&buffers.candidates, 0, &buffers.readback, 0, candidate_bytes);
                    encoder.copy_buffer_to_buffer(
                        &buffers.feasible,
                        0,
                        &buffers.readback,
                        candidate_bytes,
                        feasible_bytes,
                    );
                }
                self.queue.submit([encoder.finish()]);
            }
            self.read_back(job_tile.len(), k, tile_index * jobs_per_tile, out)?;
        }
        Ok(())
    }

    /// Maps the readback buffer and copies one job tile's results into `out`.
    fn read_back(&self, job_count: usize, k: usize, first_job: usize, out: &mut ScoreOutput) -> Result<(), GpuError> {
        let buffers = self.buffers.as_ref().expect("ensure_buffers ran");
        let candidate_bytes = (job_count * k * size_of::<Candidate>()) as u64;
        let total = candidate_bytes + (job_count * 4) as u64;
        let slice = buffers.readback.slice(0..total);
        let (sender, receiver) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |result| {
            let _ = sender.send(result);
        });
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuError::DeviceLost(e.to_string()))?;
        if let Some(fault) = self.fault.lock().expect("fault lock").clone() {
            return Err(fault);
        }
        match receiver.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(GpuError::DeviceLost(format!("mapping results failed: {e}"))),
            Err(_) => {
                return Err(GpuError::DeviceLost("mapping results never completed".into()));
            }
        }
        {
            let view = slice.get_mapped_range().map_err(|e| GpuError::Validation(e.to_string()))?;
            let (candidate_view, feasible_view) = view.split_at(candidate_bytes as usize);
            out.candidates[first_job * k..(first_job + job_count) * k]
                .copy_from_slice(bytemuck::cast_slice(candidate_view));
            out.feasible[first_job..first_job + job_count].copy_from_slice(bytemuck::cast_slice(feasible_view));
        }
        buffers.readback.unmap();
        Ok(())
    }
}

impl crate::place::Scorer for GpuScorer {
    fn score(&mut self, jobs: &[JobGpu], state: &FleetState, k: usize) -> Result<ScoreOutput, GpuError> {
        self.score_batch(jobs, state, k)
    }
}
