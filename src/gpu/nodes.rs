//! The node kernel on the GPU: `shaders/frag.wgsl`, one pod against every node, reduced on the
//! device to one candidate per workgroup; the host takes the best of those by the same rule
//! ([`better_node`]), so the result equals [`crate::kernel::frag::best_node`] exactly.
//!
//! The nodes stay on the device between pods: the host uploads the table once ([`GpuNodeScorer::load`])
//! and then only the node a placement changed ([`GpuNodeScorer::update_node`]).

use std::sync::Arc;

use super::{Device, shared_device};
use crate::error::ScoreError;
use crate::kernel::frag::{NodeCandidate, NodeGpu, NodeParams, ShapeGpu, best_node, better_node};
use crate::kernel::score::mix;

/// The node kernel's source, compiled into the binary.
pub const FRAG_WGSL: &str = include_str!("../../shaders/frag.wgsl");
/// Must equal `NODE_WG_SIZE` in the shader.
pub const NODE_WG_SIZE: u32 = 64;

struct NodeBuffers {
    params: wgpu::Buffer,
    nodes: wgpu::Buffer,
    best: wgpu::Buffer,
    readback: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    node_count: u32,
}

/// The GPU node scorer: a shared device and pipeline, and the node and shape tables on it.
pub struct GpuNodeScorer {
    context: Arc<Device>,
    buffers: Option<NodeBuffers>,
    passes: u64,
    /// Test hook: destroy the device before the n-th pass (0-based).
    #[cfg(feature = "test-hooks")]
    destroy_before_pass: Option<u64>,
}

impl GpuNodeScorer {
    pub(super) fn on(context: Arc<Device>) -> GpuNodeScorer {
        GpuNodeScorer {
            context,
            buffers: None,
            passes: 0,
            #[cfg(feature = "test-hooks")]
            destroy_before_pass: None,
        }
    }

    /// Test hook: a scorer on a device of its own on adapter `index`, opened with limits derived
    /// from the adapter's by `choose` (tests lower them) and self-checked, which
    /// [`GpuNodeScorer::destroy_device_before_pass`] may destroy without harming other scorers.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn on_own_device(
        index: usize,
        choose: impl FnOnce(wgpu::Limits) -> wgpu::Limits,
    ) -> Result<GpuNodeScorer, ScoreError> {
        let (adapter, summary) = super::registry()
            .adapters
            .get(index)
            .ok_or_else(|| ScoreError::NoAdapter(format!("wgpu found no adapter number {index}")))?;
        Ok(GpuNodeScorer::on(Device::open(adapter, summary, choose)?))
    }

    /// Test hook: destroy the device just before pass `pass` (0-based), to exercise the hand-over
    /// to the CPU on a real device loss.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn destroy_device_before_pass(&mut self, pass: u64) {
        self.destroy_before_pass = Some(pass);
    }

    /// A scorer on the best adapter wgpu finds (see [`super::adapters`]), which may be a software device.
    pub fn open() -> Result<GpuNodeScorer, ScoreError> {
        if super::registry().adapters.is_empty() {
            return Err(ScoreError::NoAdapter(super::no_adapter_reason()));
        }
        GpuNodeScorer::open_adapter(0)
    }

    /// A scorer on adapter `index` of [`super::adapters`], sharing its one device.
    pub fn open_adapter(index: usize) -> Result<GpuNodeScorer, ScoreError> {
        Ok(GpuNodeScorer::on(shared_device(index)?))
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &super::AdapterSummary {
        &self.context.adapter
    }

    /// Puts the node table and the shape table on the device (replacing any earlier ones).
    pub fn load(&mut self, nodes: &[NodeGpu], shapes: &[ShapeGpu]) -> Result<(), ScoreError> {
        let limits = &self.context.limits;
        let max_binding = super::max_binding(limits);
        let node_bytes = (nodes.len().max(1) * size_of::<NodeGpu>()) as u64;
        let groups = (nodes.len() as u32).div_ceil(NODE_WG_SIZE).max(1);
        let shape_bytes = size_of_val(shapes) as u64;
        if node_bytes > max_binding || shape_bytes > max_binding || groups > limits.max_compute_workgroups_per_dimension
        {
            return Err(ScoreError::TooLarge(format!(
                "{} nodes exceed what the device scores in one dispatch ({} bytes per binding, {} workgroups)",
                nodes.len(),
                max_binding,
                limits.max_compute_workgroups_per_dimension
            )));
        }
        let device = &self.context.device;
        let storage = |label: &str, size: u64, extra: wgpu::BufferUsages| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: size.next_multiple_of(16),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | extra,
                mapped_at_creation: false,
            })
        };
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("node params"),
            size: size_of::<NodeParams>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let node_buffer = storage("nodes", node_bytes, wgpu::BufferUsages::empty());
        let shape_buffer =
            storage("shapes", (shapes.len().max(1) * size_of::<ShapeGpu>()) as u64, wgpu::BufferUsages::empty());
        let best_bytes = groups as u64 * size_of::<NodeCandidate>() as u64;
        let best = storage("best", best_bytes, wgpu::BufferUsages::COPY_SRC);
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("node readback"),
            size: best.size(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("frag"),
            layout: &self.context.nodes_layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: node_buffer.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: shape_buffer.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 3, resource: best.as_entire_binding() },
            ],
        });
        if !nodes.is_empty() {
            self.context.queue.write_buffer(&node_buffer, 0, bytemuck::cast_slice(nodes));
        }
        if !shapes.is_empty() {
            self.context.queue.write_buffer(&shape_buffer, 0, bytemuck::cast_slice(shapes));
        }
        self.buffers = Some(NodeBuffers {
            params,
            nodes: node_buffer,
            best,
            readback,
            bind_group,
            node_count: nodes.len() as u32,
        });
        Ok(())
    }

    /// Replaces node `index` on the device (after a placement changed it).
    ///
    /// # Panics
    /// When no table is loaded or `index` is past it (the caller's contract).
    pub fn update_node(&mut self, index: usize, node: &NodeGpu) {
        let buffers = self.buffers.as_ref().expect("update_node before load");
        assert!(index < buffers.node_count as usize, "node {index} is not loaded");
        let offset = (index * size_of::<NodeGpu>()) as u64;
        self.context.queue.write_buffer(&buffers.nodes, offset, bytemuck::bytes_of(node));
    }

    /// The best node for the pod of `params` over the loaded nodes (`params.node_count` of them at
    /// most): the GPU twin of [`best_node`], with an identical result.
    pub fn best(&mut self, params: &NodeParams) -> Result<NodeCandidate, ScoreError> {
        #[cfg(feature = "test-hooks")]
        if self.destroy_before_pass == Some(self.passes) {
            self.context.device.destroy();
        }
        self.passes += 1;
        if let Some(fault) = self.context.fault() {
            return Err(fault);
        }
        let Some(buffers) = self.buffers.as_ref() else {
            return Err(ScoreError::Validation(
                "the node kernel was asked to score before any nodes were loaded".into(),
            ));
        };
        let mut params = *params;
        params.node_count = params.node_count.min(buffers.node_count);
        if params.node_count == 0 {
            return Ok(NodeCandidate::NONE);
        }
        let groups = params.node_count.div_ceil(NODE_WG_SIZE);
        let scope = self.context.device.push_error_scope(wgpu::ErrorFilter::Validation);
        self.context.queue.write_buffer(&buffers.params, 0, bytemuck::bytes_of(&params));
        let mut encoder =
            self.context.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("frag") });
        {
            let mut pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("frag"), timestamp_writes: None });
            pass.set_pipeline(&self.context.nodes_pipeline);
            pass.set_bind_group(0, &buffers.bind_group, &[]);
            pass.dispatch_workgroups(groups, 1, 1);
        }
        let bytes = groups as u64 * size_of::<NodeCandidate>() as u64;
        encoder.copy_buffer_to_buffer(&buffers.best, 0, &buffers.readback, 0, bytes);
        let submission = self.context.queue.submit([encoder.finish()]);

        let slice = buffers.readback.slice(0..bytes);
        let mapped = self.context.map(&slice, wgpu::MapMode::Read, Some(submission));
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(ScoreError::Validation(error.to_string()));
        }
        mapped?;
        let mut best = NodeCandidate::NONE;
        {
            let view = slice.get_mapped_range().map_err(|e| ScoreError::Validation(e.to_string()))?;
            for candidate in bytemuck::cast_slice::<u8, NodeCandidate>(&view) {
                if better_node(candidate, &best) {
                    best = *candidate;
                }
            }
        }
        buffers.readback.unmap();
        Ok(best)
    }

    /// The self-check: on [`self_check_problem`], the device must find for every pod exactly what
    /// the CPU finds with the pod's parameters altered by `alter` (nothing, except in the check's
    /// negative control).
    pub(super) fn self_check(&mut self, alter: fn(&mut NodeParams)) -> Result<(), ScoreError> {
        let (mut nodes, shapes, mut passes) = self_check_problem();
        // A device opened with limits below the problem's (tests do) checks the nodes it can take.
        let limits = &self.context.limits;
        let fit = (super::max_binding(limits) / size_of::<NodeGpu>() as u64)
            .min(u64::from(limits.max_compute_workgroups_per_dimension) * u64::from(NODE_WG_SIZE));
        nodes.truncate(fit as usize);
        passes.iter_mut().for_each(|p| p.node_count = nodes.len() as u32);
        self.load(&nodes, &shapes)?;
        for params in &passes {
            let device = self.best(params)?;
            let mut expected = *params;
            alter(&mut expected);
            let cpu = best_node(&nodes, &expected, &shapes);
            if device != cpu {
                return Err(ScoreError::SelfCheck {
                    adapter: self.adapter().to_string(),
                    message: format!("node kernel: pod {params:?}: device {device:?}, CPU {cpu:?}"),
                });
            }
        }
        self.buffers = None;
        Ok(())
    }

    /// Test hook: the self-check, with the CPU's expectation computed from altered parameters. It
    /// must fail for any alteration that changes a result (its negative control).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn self_check_against_altered_cpu(&mut self, alter: fn(&mut NodeParams)) -> Result<(), ScoreError> {
        self.self_check(alter)
    }
}

/// A fixed problem for the self-check: 150 nodes (three workgroups, the last partial) of mixed
/// sizes, models, sharing and CPU, a table of shapes, and pods of every kind under every weighting.
pub fn self_check_problem() -> (Vec<NodeGpu>, Vec<ShapeGpu>, Vec<NodeParams>) {
    let draw = |i: u32, salt: u32| mix(i.wrapping_mul(0x9E37_79B1) ^ salt);
    let shapes_raw: [(u32, u32, u32, u32); 6] = [
        (4000, 1, 1000, 0),
        (2000, 1, 500, 0),
        (8000, 2, 1000, 0b01),
        (1000, 0, 0, 0),
        (6000, 1, 250, 0b10),
        (32000, 8, 1000, 0),
    ];
    let weights = [30000u32, 20000, 5000, 6000, 4000, 536];
    let shapes: Vec<ShapeGpu> = shapes_raw
        .iter()
        .zip(weights)
        .map(|(&(cpu, gpus, milli, models), weight)| ShapeGpu {
            cpu,
            gpus,
            milli,
            models,
            weight,
            ..Default::default()
        })
        .collect();
    let nodes: Vec<NodeGpu> = (0..150u32)
        .map(|i| {
            let gpus = [0u32, 1, 2, 4, 8][(draw(i, 1) % 5) as usize];
            let mut left = [0u32; 8];
            for (g, l) in left.iter_mut().enumerate().take(gpus as usize) {
                *l = [1000u32, 1000, 500, 250, 0, 750, 1000, 100][(draw(i * 8 + g as u32, 2) % 8) as usize];
            }
            let model = if gpus == 0 { 0 } else { 1 << (draw(i, 3) % 3) };
            let cpu_free = (draw(i, 4) % 64) * 1000;
            let mut node = NodeGpu {
                left,
                gpus,
                cpu_free,
                mem_free: (draw(i, 5) % 256) * 1024,
                model,
                ready: u32::from(draw(i, 6) % 10 != 0),
                ..Default::default()
            };
            node.frag = crate::kernel::frag::node_frag(&node.left, node.cpu_free, node.model, &shapes);
            node
        })
        .collect();
    let (max_cpu, max_gpu) = (64_000, 8_000);
    let pods: [(u32, u32, u32, u32, u32); 6] = [
        (4000, 8192, 1, 1000, 0),
        (2000, 4096, 1, 500, 0),
        (1000, 1024, 1, 250, 0b10),
        (8000, 16384, 2, 1000, 0b01),
        (500, 512, 0, 0, 0),
        (16000, 65536, 8, 1000, 0),
    ];
    let weightings =
        [(1000u32, 0u32, 0u32, 0u32), (0, 1000, 0, 0), (0, 0, 1000, 0), (0, 0, 0, 1000), (700, 200, 100, 1)];
    let mut passes = Vec::new();
    for (p, &(pod_cpu, pod_mem, pod_gpus, pod_milli, pod_models)) in pods.iter().enumerate() {
        for &(w_frag, w_pack, w_random, w_size) in &weightings {
            passes.push(NodeParams {
                node_count: nodes.len() as u32,
                shape_count: shapes.len() as u32,
                pod_cpu,
                pod_mem,
                pod_gpus,
                pod_milli,
                pod_models,
                pod_seed: draw(p as u32, 7),
                w_frag,
                w_pack,
                w_random,
                w_size,
                inv_cpu_q16: crate::kernel::score::inv_q16(max_cpu),
                inv_gpu_q16: crate::kernel::score::inv_q16(max_gpu),
                ..Default::default()
            });
        }
    }
    (nodes, shapes, passes)
}
