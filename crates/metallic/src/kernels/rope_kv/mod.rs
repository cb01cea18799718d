//! RoPE (NEOX pairing) on q and k, with the (f16) KV-cache append fused in.

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::{uniform_buffer, Dispatch, Gpu, Grid};
use crate::tensor::Activation;

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct RopeParams {
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    /// Floats between batch rows of qkv.
    pub stride: u32,
    /// Columns of K and V inside a qkv row (Q starts at 0).
    pub k_offset: u32,
    pub v_offset: u32,
    pub ctx: u32,
    pub _pad: u32,
}

/// Inverse frequencies rounded to f32 as Hugging Face computes them:
/// 1 / theta^(2i / head_dim), i < head_dim / 2.
pub fn inv_freq(theta: f32, head_dim: u32) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| (1.0 / (theta as f64).powf(2.0 * i as f64 / head_dim as f64)) as f32)
        .collect()
}

pub struct RopeKvBindings<'a> {
    pub state: &'a wgpu::Buffer,
    /// (rows, q_dim + 2 kv_dim): Q | K | V per row.
    pub qkv: &'a Activation,
    /// The f16 caches, laid out as `model::blocks::KvCacheLayer` says.
    pub k_cache: &'a wgpu::Buffer,
    pub v_cache: &'a wgpu::Buffer,
    pub inv_freq: &'a wgpu::Buffer,
}

pub fn rope_kv(
    gpu: &Gpu,
    b: &RopeKvBindings<'_>,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    ctx: u32,
) -> Result<Dispatch> {
    let pipeline = gpu.pipeline("rope_kv", "rope_kv", &[])?;
    let params = RopeParams {
        n_heads,
        n_kv_heads,
        head_dim,
        stride: b.qkv.stride,
        k_offset: n_heads * head_dim,
        v_offset: (n_heads + n_kv_heads) * head_dim,
        ctx,
        _pad: 0,
    };
    let ubuf = uniform_buffer(gpu, "rope.params", &params);
    let bind_group = gpu.bind_group(
        "rope_kv",
        &pipeline,
        &[
            (0, ubuf.as_entire_binding()),
            (1, b.state.as_entire_binding()),
            (2, b.qkv.buf.as_entire_binding()),
            (5, b.k_cache.as_entire_binding()),
            (6, b.v_cache.as_entire_binding()),
            (7, b.inv_freq.as_entire_binding()),
        ],
    );
    Ok(Dispatch {
        label: "rope_kv".into(),
        pipeline,
        bind_group,
        grid: Grid::PerRow(n_heads + n_kv_heads),
    })
}
