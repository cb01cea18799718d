//! Causal attention over the KV cache with an online softmax (never a seq x seq matrix).

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::{uniform_buffer, Dispatch, Gpu, Grid};
use crate::tensor::Activation;

/// One output dim per thread of the 256-wide workgroup at most.
pub const MAX_HEAD_DIM: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct AttnParams {
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub q_stride: u32,
    pub out_stride: u32,
    pub ctx: u32,
    pub scale: f32,
    pub _pad: u32,
}

pub struct AttentionBindings<'a> {
    pub state: &'a wgpu::Buffer,
    pub q: &'a Activation,
    pub k_cache: &'a wgpu::Buffer,
    pub v_cache: &'a wgpu::Buffer,
    pub out: &'a Activation,
}

pub fn attention(
    gpu: &Gpu,
    b: &AttentionBindings<'_>,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    ctx: u32,
) -> Result<Dispatch> {
    let pipeline = gpu.pipeline("attention", "attention", &[])?;
    let params = AttnParams {
        n_heads,
        n_kv_heads,
        head_dim,
        q_stride: b.q.stride,
        out_stride: b.out.stride,
        ctx,
        scale: 1.0 / (head_dim as f32).sqrt(),
        _pad: 0,
    };
    let ubuf = uniform_buffer(gpu, "attention.params", &params);
    let bind_group = gpu.bind_group(
        "attention",
        &pipeline,
        &[
            (0, ubuf.as_entire_binding()),
            (1, b.state.as_entire_binding()),
            (2, b.q.buf.as_entire_binding()),
            (3, b.k_cache.as_entire_binding()),
            (4, b.v_cache.as_entire_binding()),
            (5, b.out.buf.as_entire_binding()),
        ],
    );
    Ok(Dispatch {
        label: "attention".into(),
        pipeline,
        bind_group,
        grid: Grid::PerRow(n_heads),
    })
}
