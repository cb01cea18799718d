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

/// Logits per workgroup of the candidate pre-pass, and candidates it keeps per chunk
/// (`CHUNK` and `KEEP` in candidates.wgsl): top-k up to KEEP takes the fast path.
pub const CHUNK: u32 = 1024;
pub const KEEP: u32 = 64;

/// Bytes of the candidate buffer for a vocabulary: (chunks, KEEP) x (key, index).
pub fn candidates_bytes(vocab: u32) -> u64 {
    vocab.div_ceil(CHUNK) as u64 * KEEP as u64 * 8
}

pub struct SampleBindings<'a> {
    /// Uniform holding [`SampleParams`], rewritten at the start of each generation.
    pub params: &'a wgpu::Buffer,
    pub state: &'a wgpu::Buffer,
    pub logits: &'a wgpu::Buffer,
    pub tokens: &'a wgpu::Buffer,
    pub out_tokens: &'a wgpu::Buffer,
    /// (vocab / CHUNK, KEEP) candidates from the pre-pass.
    pub candidates: &'a wgpu::Buffer,
}

/// Two dispatches: the parallel candidate pre-pass, then the single-workgroup sampler.
pub fn sample(gpu: &Gpu, b: &SampleBindings<'_>, vocab: u32) -> Result<Vec<Dispatch>> {
    let prepass = gpu.pipeline("sampling", "chunk_candidates", &[])?;
    let prepass_group = gpu.bind_group(
        "chunk_candidates",
        &prepass,
        &[
            (0, b.params.as_entire_binding()),
            (2, b.logits.as_entire_binding()),
            (5, b.candidates.as_entire_binding()),
        ],
    );
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
            (5, b.candidates.as_entire_binding()),
        ],
    );
    Ok(vec![
        Dispatch {
            label: "sample_candidates".into(),
            pipeline: prepass,
            bind_group: prepass_group,
            grid: Grid::Fixed([vocab.div_ceil(CHUNK), 1, 1]),
        },
        Dispatch {
            label: "sample".into(),
            pipeline,
            bind_group,
            grid: Grid::Fixed([1, 1, 1]),
        },
    ])
}
