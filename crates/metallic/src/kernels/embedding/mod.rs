//! Token embedding lookup from a (possibly split) GPU matrix.

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::{uniform_buffer, Dispatch, Gpu, Grid};
use crate::tensor::{Activation, GpuMatrix, WeightFormat};

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct EmbedParams {
    pub row_start: u32,
    pub rows: u32,
    pub hidden: u32,
    pub row_words: u32,
    pub out_stride: u32,
    pub blocks_per_row: u32,
    pub _pad: [u32; 2],
}

/// out[m] = table[tokens[m]]: one dispatch per table chunk.
pub fn embed(
    gpu: &Gpu,
    table: &GpuMatrix,
    tokens: &wgpu::Buffer,
    out: &Activation,
) -> Result<Vec<Dispatch>> {
    let entry = match table.format {
        WeightFormat::F16 => "embed_f16",
        WeightFormat::F32 => "embed_f32",
        WeightFormat::Q8_0 => "embed_q8_0",
    };
    let pipeline = gpu.pipeline("embedding", entry, &[])?;
    let mut dispatches = Vec::new();
    for chunk in &table.chunks {
        let params = EmbedParams {
            row_start: chunk.first_row,
            rows: chunk.rows,
            hidden: table.k,
            row_words: table.row_words,
            out_stride: out.stride,
            blocks_per_row: table.blocks_per_row,
            _pad: [0; 2],
        };
        let ubuf = uniform_buffer(gpu, "embed.params", &params);
        let mut entries = vec![
            (0, ubuf.as_entire_binding()),
            (1, tokens.as_entire_binding()),
            (2, chunk.data.as_entire_binding()),
            (3, out.buf.as_entire_binding()),
        ];
        if let Some(scales) = &chunk.scales {
            entries.push((4, scales.as_entire_binding()));
        }
        dispatches.push(Dispatch {
            label: "embedding".into(),
            bind_group: gpu.bind_group("embedding", &pipeline, &entries),
            pipeline: pipeline.clone(),
            grid: Grid::PerRow(1),
        });
    }
    Ok(dispatches)
}
