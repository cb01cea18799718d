use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// Knobs for device selection. `max_binding_bytes` lets tests force tensor splitting on
/// small models; `METALLIC_MAX_BINDING_BYTES` does the same from the environment.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    pub max_binding_bytes: Option<u64>,
    /// Compile the kernels with wgpu's runtime checks (`Some(true)`) or without; `None`
    /// takes `METALLIC_SHADER_CHECKS` (default off).
    pub shader_checks: Option<bool>,
}

/// One wgpu device plus the caches every kernel family shares.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// The largest storage binding we create. Tensors beyond it are split by rows
    /// (lavapipe allows 128 MiB; NVIDIA 2 GiB+).
    pub max_binding_bytes: u64,
    pub has_timestamps: bool,
    /// Cooperative matrices of 16x16 f16 A/B with an f32 accumulator, at subgroup scope
    /// (tensor cores: NVIDIA reports this configuration). The `matmul_gemm_coop` kernels
    /// need it; without it the GEMM takes its portable path.
    pub coop_matrix_f16: bool,
    /// Streaming multiprocessors (compute units), where known: `METALLIC_GPU_COMPUTE_UNITS`,
    /// else [`known_compute_units`]. wgpu does not report it; the GEMM sizes its split-K to
    /// whole waves of 128 x 128 workgroups with it, and keeps its generic rule without.
    pub compute_units: Option<u32>,
    /// Whether shader modules keep wgpu's runtime checks (`METALLIC_SHADER_CHECKS=on`):
    /// index clamping, a guard counter in every loop and guarded integer division. Off by
    /// default, see [`Gpu::module`].
    pub shader_checks: bool,
    modules: Mutex<HashMap<String, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    scratch: Mutex<Option<wgpu::Buffer>>,
    /// Staging buffers of `upload_rows` (freed by `release_staging` once a model is loaded).
    pub(crate) staging: Mutex<crate::gpu::upload::StagingRing>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct PipelineKey {
    family: String,
    entry: String,
    /// Override constants, sorted, with values as bit patterns so the key is hashable.
    constants: Vec<(String, u64)>,
}

impl Gpu {
    pub fn new(opts: &GpuOptions) -> Result<Self> {
        pollster::block_on(Self::new_async(opts))
    }

    async fn new_async(opts: &GpuOptions) -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::PRIMARY,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| {
                Error::Gpu(format!("no GPU adapter found (Vulkan, Metal or DX12): {e}"))
            })?;
        let info = adapter.get_info();
        let available = adapter.features();
        if !available.contains(wgpu::Features::SUBGROUP) {
            return Err(Error::Gpu(format!(
                "adapter '{}' lacks subgroup operations, which Metallic's kernels need",
                info.name
            )));
        }
        let mut wanted = wgpu::Features::SUBGROUP
            | (available & (wgpu::Features::SHADER_F16 | wgpu::Features::TIMESTAMP_QUERY));
        let coop_matrix_f16 = available
            .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16)
            && adapter
                .cooperative_matrix_properties()
                .iter()
                .any(is_coop_f16_16x16);
        if coop_matrix_f16 {
            wanted |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("metallic"),
                required_features: wanted,
                required_limits: limits.clone(),
                experimental_features: if coop_matrix_f16 {
                    // SAFETY: only the cooperative-matrix feature is experimental here, and
                    // only the `matmul_gemm_coop` kernels use it, in the configuration the
                    // adapter reported (16x16x16, f16 inputs, f32 accumulator).
                    unsafe { wgpu::ExperimentalFeatures::enabled() }
                } else {
                    wgpu::ExperimentalFeatures::disabled()
                },
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("cannot open device '{}': {e}", info.name)))?;
        let env_cap = std::env::var("METALLIC_MAX_BINDING_BYTES")
            .ok()
            .and_then(|v| v.parse().ok());
        let mut max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        if let Some(cap) = opts.max_binding_bytes.or(env_cap) {
            max_binding = max_binding.min(cap);
        }
        // Offsets and sizes of split chunks stay 256-byte aligned.
        let max_binding_bytes = max_binding & !255;
        let compute_units = match std::env::var("METALLIC_GPU_COMPUTE_UNITS") {
            Err(_) => known_compute_units(&info.name),
            Ok(v) => match v.trim() {
                "" | "auto" => known_compute_units(&info.name),
                "0" | "unknown" => None,
                n => Some(n.parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(|| {
                    Error::Invalid(format!(
                        "METALLIC_GPU_COMPUTE_UNITS must be auto, unknown (or 0) or a count of \
                         streaming multiprocessors, got '{v}'"
                    ))
                })?),
            },
        };
        let shader_checks = match opts.shader_checks {
            Some(on) => on,
            None => !crate::runtime::env_switch("METALLIC_SHADER_CHECKS", "off", "on")?,
        };
        Ok(Self {
            device,
            queue,
            info,
            limits,
            max_binding_bytes,
            has_timestamps: wanted.contains(wgpu::Features::TIMESTAMP_QUERY),
            coop_matrix_f16,
            compute_units,
            shader_checks,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
            scratch: Mutex::default(),
            staging: Mutex::default(),
        })
    }

    /// Human-readable adapter description for logs and benchmark tables.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {})",
            self.info.name, self.info.backend, self.info.driver_info
        )
    }

    /// A compute pipeline for `family::entry` with the given override constants, cached.
    pub fn pipeline(
        &self,
        family: &str,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let mut sorted: Vec<(String, u64)> = constants
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_bits()))
            .collect();
        sorted.sort();
        let key = PipelineKey {
            family: family.into(),
            entry: entry.into(),
            constants: sorted,
        };
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let module = self.module(family)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&format!("{family}::{entry}")),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("pipeline {family}::{entry}: {e}")));
        }
        let pipeline = Arc::new(pipeline);
        self.pipelines.lock().unwrap().insert(key, pipeline.clone());
        Ok(pipeline)
    }

    fn module(&self, family: &str) -> Result<Arc<wgpu::ShaderModule>> {
        if let Some(m) = self.modules.lock().unwrap().get(family) {
            return Ok(m.clone());
        }
        let source = crate::kernel_lib!(family).map_err(Error::Gpu)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(family),
            source: wgpu::ShaderSource::Wgsl(source),
        };
        let module = if self.shader_checks {
            self.device.create_shader_module(desc)
        } else {
            // Vulkan keeps storage-buffer accesses in bounds itself (robustBufferAccess,
            // and robustBufferAccess2 where present; wgpu enables both), so there only the
            // index clamps on workgroup and private arrays go. On Metal and DX12 naga's
            // bounds checks are the only guard on buffers, so they stay.
            let mut checks = wgpu::ShaderRuntimeChecks::unchecked();
            checks.bounds_checks = self.info.backend != wgpu::Backend::Vulkan;
            // SAFETY: the kernels are this crate's own, validated by naga, and held to what
            // the unchecked form asks: every loop ends (counted loops with non-zero steps,
            // or a `loop` whose exit test is bounded by a count), every integer divisor is
            // a non-zero constant or a shape the host checks, and every index into a
            // workgroup or private array stays inside it for the shapes the host allows
            // (GemvConfig::validate and the attention and GEMM choosers), which the tests
            // check against CPU references with poisoned outputs on lavapipe and the H100.
            // Without the checks naga adds no guard counter to loops (which kept drivers
            // from unrolling them), no index clamps and no division guards.
            unsafe { self.device.create_shader_module_trusted(desc, checks) }
        };
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("kernel family '{family}': {e}")));
        }
        let module = Arc::new(module);
        self.modules
            .lock()
            .unwrap()
            .insert(family.to_string(), module.clone());
        Ok(module)
    }

    /// A bind group for group 0 of `pipeline`, binding `(index, buffer range)` pairs.
    pub fn bind_group(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        entries: &[(u32, wgpu::BindingResource<'_>)],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry<'_>> = entries
            .iter()
            .map(|(binding, resource)| wgpu::BindGroupEntry {
                binding: *binding,
                resource: resource.clone(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// A storage buffer of at least `bytes` that kernels may use for intermediates they
    /// write and read back within one pair of dispatches (the split-K GEMM's partial
    /// sums). One buffer serves every caller: dispatches run in order, and wgpu puts a
    /// barrier between each write and the reads that follow. A larger request replaces
    /// it for later callers (bind groups keep the older one alive).
    pub fn shared_scratch(&self, bytes: u64) -> wgpu::Buffer {
        let mut slot = self.scratch.lock().unwrap();
        match &*slot {
            Some(b) if b.size() >= bytes => b.clone(),
            _ => {
                let b = crate::gpu::storage_buffer(self, "shared_scratch", bytes);
                *slot = Some(b.clone());
                b
            }
        }
    }

    /// Blocks until all submitted work has finished.
    pub fn wait_idle(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("device poll failed: {e}")))
    }
}

/// Streaming multiprocessors of the adapters whose count the GEMM was measured with (wgpu
/// reports no such number): the H100 SXM and NVL and the H200 have 132, the H100 PCIe 114.
/// None for any other adapter.
pub fn known_compute_units(adapter_name: &str) -> Option<u32> {
    if adapter_name.contains("H100") && adapter_name.contains("PCIe") {
        Some(114)
    } else if adapter_name.contains("H100") || adapter_name.contains("H200") {
        Some(132)
    } else {
        None
    }
}

/// The configuration the cooperative-matrix GEMM is written for: M = N = K = 16, f16 A
/// and B, f32 C and result, subgroup scope (the only scope wgpu reports).
fn is_coop_f16_16x16(p: &wgpu::CooperativeMatrixProperties) -> bool {
    (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
        && p.ab_type == wgpu::CooperativeScalarType::F16
        && p.cr_type == wgpu::CooperativeScalarType::F32
}
