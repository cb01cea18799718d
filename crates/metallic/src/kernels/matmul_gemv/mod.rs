//! GEMV for decode (and, one weight pass per batch row, for simple prefill).

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{uniform_buffer, Dispatch, Gpu, Grid};
use crate::tensor::{Activation, GpuMatrix, WeightFormat};

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct GemvParams {
    pub k: u32,
    pub n: u32,
    pub row_offset: u32,
    pub row_words: u32,
    pub x_stride: u32,
    pub y_stride: u32,
    pub flags: u32,
    pub blocks_per_row: u32,
}

pub const FLAG_BIAS: u32 = 1;
pub const FLAG_ACCUMULATE: u32 = 2;
pub const FLAG_SWIGLU: u32 = 4;

/// Tuning knobs, passed to WGSL as override constants.
#[derive(Clone, Copy, Debug)]
pub struct GemvConfig {
    /// Output rows per workgroup: 2, 4 or 8 (`METALLIC_GEMV_COLS_PER_TG`).
    pub cols_per_tg: u32,
    pub wg_size: u32,
}

impl Default for GemvConfig {
    fn default() -> Self {
        Self {
            cols_per_tg: 4,
            wg_size: 128,
        }
    }
}

impl GemvConfig {
    pub fn from_env() -> Result<Self> {
        let mut cfg = Self::default();
        if let Ok(v) = std::env::var("METALLIC_GEMV_COLS_PER_TG") {
            cfg.cols_per_tg = match v.trim() {
                "2" => 2,
                "4" => 4,
                "8" => 8,
                _ => {
                    return Err(Error::Invalid(format!(
                        "METALLIC_GEMV_COLS_PER_TG must be 2, 4 or 8, got '{v}'"
                    )))
                }
            };
        }
        Ok(cfg)
    }

    fn constants(&self) -> [(&'static str, f64); 2] {
        [
            ("COLS_PER_TG", self.cols_per_tg as f64),
            ("WG_SIZE", self.wg_size as f64),
        ]
    }
}

/// y[:, col..] = W x (+ bias[col..]) (+ y): one dispatch per weight chunk, each writing
/// its rows of y. `col` places the output inside a wider row (e.g. K inside QKV).
#[allow(clippy::too_many_arguments)]
pub fn linear(
    gpu: &Gpu,
    cfg: &GemvConfig,
    w: &GpuMatrix,
    x: &Activation,
    (y, col): (&Activation, u32),
    bias: Option<&wgpu::Buffer>,
    accumulate: bool,
    dummy: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    if col + w.rows > y.cols {
        return Err(shape_error(w, x, y));
    }
    let flags =
        if bias.is_some() { FLAG_BIAS } else { 0 } | if accumulate { FLAG_ACCUMULATE } else { 0 };
    dispatches(gpu, cfg, w, x, y, col, bias.unwrap_or(dummy), flags)
}

/// act = silu(gate x) * (up x) from a matrix whose rows interleave gate and up
/// (`GpuMatrix::upload_interleaved`): one GEMV instead of two GEMVs and a SwiGLU.
pub fn linear_swiglu(
    gpu: &Gpu,
    cfg: &GemvConfig,
    w: &GpuMatrix,
    x: &Activation,
    act: &Activation,
    dummy: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    if w.rows != 2 * act.cols
        || w.chunks
            .iter()
            .any(|c| c.first_row % 2 != 0 || c.rows % 2 != 0)
    {
        return Err(shape_error(w, x, act));
    }
    dispatches(gpu, cfg, w, x, act, 0, dummy, FLAG_SWIGLU)
}

fn shape_error(w: &GpuMatrix, x: &Activation, y: &Activation) -> Error {
    Error::Model(format!(
        "'{}' is {}x{}, but is applied to {} inputs giving {} outputs",
        w.name, w.rows, w.k, x.cols, y.cols
    ))
}

#[allow(clippy::too_many_arguments)]
fn dispatches(
    gpu: &Gpu,
    cfg: &GemvConfig,
    w: &GpuMatrix,
    x: &Activation,
    y: &Activation,
    col: u32,
    bias: &wgpu::Buffer,
    flags: u32,
) -> Result<Vec<Dispatch>> {
    if x.cols != w.k {
        return Err(shape_error(w, x, y));
    }
    let entry = match w.format {
        WeightFormat::F16 => "gemv_f16",
        WeightFormat::F32 => "gemv_f32",
        WeightFormat::Q8_0 => "gemv_q8_0",
    };
    let pipeline = gpu.pipeline("matmul_gemv", entry, &cfg.constants())?;
    let mut out = Vec::with_capacity(w.chunks.len());
    for chunk in &w.chunks {
        let params = GemvParams {
            k: w.k,
            n: chunk.rows,
            row_offset: col + chunk.first_row,
            row_words: w.row_words,
            x_stride: x.stride,
            y_stride: y.stride,
            flags,
            blocks_per_row: w.blocks_per_row,
        };
        let ubuf = uniform_buffer(gpu, "gemv.params", &params);
        let mut entries = vec![
            (0, ubuf.as_entire_binding()),
            (1, x.buf.as_entire_binding()),
            (2, y.buf.as_entire_binding()),
            (3, bias.as_entire_binding()),
            (4, chunk.data.as_entire_binding()),
        ];
        if let Some(scales) = &chunk.scales {
            entries.push((5, scales.as_entire_binding()));
        }
        out.push(Dispatch {
            label: format!("gemv_{}:{}", w.format.name(), short_name(&w.name)),
            bind_group: gpu.bind_group(&w.name, &pipeline, &entries),
            pipeline: pipeline.clone(),
            grid: Grid::PerRow(chunk.rows.div_ceil(cfg.cols_per_tg)),
        });
    }
    Ok(out)
}

/// `blk.3.attn_q.weight` -> `attn_q`: per-kernel profiles group layers together.
pub(crate) fn short_name(name: &str) -> &str {
    let name = name.strip_suffix(".weight").unwrap_or(name);
    match name.strip_prefix("blk.") {
        Some(rest) => rest.split_once('.').map_or(rest, |(_, n)| n),
        None => name,
    }
}
