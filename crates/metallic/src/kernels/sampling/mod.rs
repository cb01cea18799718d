//! Token selection on the GPU: greedy, or temperature / top-k / top-p with a seeded RNG.

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Grid};

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct SampleParams {
    pub vocab: u32,
    pub top_k: u32,
    pub top_p: f32,
    pub temperature: f32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub max_out: u32,
    pub _pad: u32,
}

pub struct SampleBindings<'a> {
    /// Uniform holding [`SampleParams`], rewritten at the start of each generation.
    pub params: &'a wgpu::Buffer,
    pub state: &'a wgpu::Buffer,
    pub logits: &'a wgpu::Buffer,
    pub tokens: &'a wgpu::Buffer,
    pub out_tokens: &'a wgpu::Buffer,
}

pub fn sample(gpu: &Gpu, b: &SampleBindings<'_>) -> Result<Dispatch> {
    let pipeline = gpu.pipeline("sampling", "sample", &[])?;
    let bind_group = gpu.bind_group(
        "sample",
        &pipeline,
        &[
            (0, b.params.as_entire_binding()),
            (1, b.state.as_entire_binding()),
            (2, b.logits.as_entire_binding()),
            (3, b.tokens.as_entire_binding()),
            (4, b.out_tokens.as_entire_binding()),
        ],
    );
    Ok(Dispatch {
        label: "sample".into(),
        pipeline,
        bind_group,
        grid: Grid::Fixed([1, 1, 1]),
    })
}
