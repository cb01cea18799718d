//! GEMV for decode (and, one weight pass per batch row, for simple prefill), with the
//! fusions the decode plan uses: an RMSNorm prologue, and bias / residual / SwiGLU /
//! RoPE + KV-append epilogues.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{uniform_buffer, Dispatch, Gpu, Grid};
use crate::kernels::attention::{decode_tile_keys, DecodeScratch};
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
    /// RMSNorm epsilon (with an [`InputNorm`]).
    pub eps: f32,
    /// Leading rows computed in RoPE rotation pairs (the QKV epilogue); 0 = none.
    pub rope_rows: u32,
    pub head_dim: u32,
    pub _pad: u32,
}

pub const FLAG_BIAS: u32 = 1;
pub const FLAG_ACCUMULATE: u32 = 2;
pub const FLAG_SWIGLU: u32 = 4;
pub const FLAG_LAST_ROW: u32 = 8;

/// Storage buffers the QKV + RoPE + KV-append entry points bind (x, y, bias, weights,
/// norm weight, state, K cache, V cache, and Q8_0's scales), besides 2 uniforms.
pub fn qkv_rope_storage_buffers(format: WeightFormat) -> u32 {
    8 + (format == WeightFormat::Q8_0) as u32
}

/// How the Q8_0 GEMV forms its dot products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Q8Dot {
    /// Weights unpacked to f32 against f32 x: exact up to f32 rounding.
    F32,
    /// x quantized per 32-element block to int8 in workgroup memory (llama.cpp's Q8_1
    /// activations), then 4-wide integer dot products: a quarter of the x traffic and
    /// about a fifth of the ALU work per weight byte.
    I8,
}

/// How an F16 GEMV workgroup's subgroups share its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenseTiling {
    /// Each subgroup its own rows (several subgroups per row when there are more
    /// subgroups than rows), over all of K.
    Rows,
    /// Every subgroup all the rows, over its own slice of K, as Q8_0 does: each x vector
    /// loaded serves every row, and a lane loads all its rows' weights before using them.
    /// Rows of a length that is not a multiple of 8 keep `Rows`. The default for every
    /// F16 matrix: on the H100 it made 7B F16 decode 4% faster, and, once the kernels
    /// lost naga's loop guards, 0.5B F16 decode 5% faster too (it had been 1.5% slower
    /// at K = 896 with them).
    AllRows,
}

/// Tuning knobs, passed to WGSL as override constants.
#[derive(Clone, Copy, Debug)]
pub struct GemvConfig {
    /// Output rows per workgroup for F16 / F32 weights: 2, 4, 8 or 16
    /// (`METALLIC_GEMV_COLS_PER_TG`).
    pub cols_per_tg: u32,
    /// The same for Q8_0 (`METALLIC_GEMV_Q8_COLS_PER_TG`): every subgroup reads x once
    /// for all of them, so more rows mean less x traffic per weight byte.
    pub q8_cols_per_tg: u32,
    /// Threads per workgroup in the row tiling (F16 / F32 weights): 64, 128 or 256
    /// (`METALLIC_GEMV_WG_SIZE`).
    pub wg_size: u32,
    /// The same in the all-rows tiling (Q8_0, and F16 where it takes that tiling;
    /// `METALLIC_GEMV_ALL_ROWS_WG_SIZE`): its subgroups each take all the workgroup's
    /// rows over a slice of K, so it prefers fewer of them.
    pub all_rows_wg_size: u32,
    /// 16-byte F16 weight loads each lane issues before using them: 1, 2 or 4
    /// (`METALLIC_GEMV_UNROLL`).
    pub unroll: u32,
    /// `METALLIC_GEMV_Q8_DOT=f32|i8`.
    pub q8_dot: Q8Dot,
    /// `METALLIC_GEMV_F16_TILING=all-rows|rows` (`auto` is the default, all-rows).
    pub f16_tiling: DenseTiling,
    /// Units each lane loads ahead in the all-rows tiling: 1, 2, or 0 for
    /// [`all_rows_unroll_for`]'s choice per matrix (`METALLIC_GEMV_ALL_ROWS_UNROLL`).
    pub all_rows_unroll: u32,
}

/// Workgroups below which a Q8_0 GEMV loads two units per lane ahead. On the H100 this
/// took 0.5B Q8_0 decode up 2-3% (its down projection runs 224 workgroups of 2.4 units
/// per lane); F16 (8 weights a unit, so twice the units per lane) lost 0.5-1.5% with it,
/// and 7B 1-2% (its smallest grids have 896 workgroups).
pub const ALL_ROWS_UNROLL_BELOW_GROUPS: u32 = 512;

/// The all-rows lookahead for a matrix of `rows` rows of `format` at `cols` rows per
/// workgroup (one pipeline serves all of a matrix's binding chunks, so the whole matrix
/// decides; only the LM heads are split, and they are far above the limit).
pub fn all_rows_unroll_for(format: WeightFormat, rows: u32, cols: u32) -> u32 {
    if format == WeightFormat::Q8_0 && rows.div_ceil(cols) < ALL_ROWS_UNROLL_BELOW_GROUPS {
        2
    } else {
        1
    }
}

impl Default for GemvConfig {
    fn default() -> Self {
        Self {
            cols_per_tg: 4,
            q8_cols_per_tg: 4,
            // H100, tg128: 256 threads (two subgroups per row) gave +3% (7B) and +6%
            // (0.5B) over 128 for F16 in the row tiling, and -17% for Q8_0 (PERFORMANCE.md,
            // session 3); F16 in the all-rows tiling, 7B: 128 threads 168 tok/s, 256: 162.
            wg_size: 256,
            all_rows_wg_size: 128,
            unroll: 1,
            q8_dot: Q8Dot::F32,
            f16_tiling: DenseTiling::AllRows,
            all_rows_unroll: 0,
        }
    }
}

fn env_choice<T: Copy>(name: &str, choices: &[(&str, T)], default: T) -> Result<T> {
    let Ok(v) = std::env::var(name) else {
        return Ok(default);
    };
    choices
        .iter()
        .find(|(k, _)| *k == v.trim())
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<_> = choices.iter().map(|(k, _)| *k).collect();
            Error::Invalid(format!("{name} must be {}, got '{v}'", names.join(" or ")))
        })
}

const COLS_CHOICES: &[(&str, u32)] = &[("2", 2), ("4", 4), ("8", 8), ("16", 16)];

impl GemvConfig {
    pub fn from_env() -> Result<Self> {
        let d = Self::default();
        Ok(Self {
            cols_per_tg: env_choice("METALLIC_GEMV_COLS_PER_TG", COLS_CHOICES, d.cols_per_tg)?,
            q8_cols_per_tg: env_choice(
                "METALLIC_GEMV_Q8_COLS_PER_TG",
                COLS_CHOICES,
                d.q8_cols_per_tg,
            )?,
            wg_size: env_choice(
                "METALLIC_GEMV_WG_SIZE",
                &[("64", 64), ("128", 128), ("256", 256)],
                d.wg_size,
            )?,
            all_rows_wg_size: env_choice(
                "METALLIC_GEMV_ALL_ROWS_WG_SIZE",
                &[("64", 64), ("128", 128), ("256", 256)],
                d.all_rows_wg_size,
            )?,
            unroll: env_choice(
                "METALLIC_GEMV_UNROLL",
                &[("1", 1), ("2", 2), ("4", 4)],
                d.unroll,
            )?,
            q8_dot: env_choice(
                "METALLIC_GEMV_Q8_DOT",
                &[("f32", Q8Dot::F32), ("i8", Q8Dot::I8)],
                d.q8_dot,
            )?,
            f16_tiling: env_choice(
                "METALLIC_GEMV_F16_TILING",
                &[
                    ("auto", DenseTiling::AllRows),
                    ("rows", DenseTiling::Rows),
                    ("all-rows", DenseTiling::AllRows),
                ],
                d.f16_tiling,
            )?,
            all_rows_unroll: env_choice(
                "METALLIC_GEMV_ALL_ROWS_UNROLL",
                &[("auto", 0), ("1", 1), ("2", 2)],
                d.all_rows_unroll,
            )?,
        })
    }

    /// An error for values the kernels are not written for: they run without index
    /// clamps, so more than 16 rows or 256 threads per workgroup would index past their
    /// arrays. `from_env` only yields valid configs; this guards the public fields.
    pub fn validate(&self) -> Result<()> {
        let cols = [2, 4, 8, 16];
        let threads = [32, 64, 128, 256];
        let ok = cols.contains(&self.cols_per_tg)
            && cols.contains(&self.q8_cols_per_tg)
            && threads.contains(&self.wg_size)
            && threads.contains(&self.all_rows_wg_size)
            && [1, 2, 4].contains(&self.unroll)
            && [0, 1, 2].contains(&self.all_rows_unroll);
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "GEMV config out of range (rows per workgroup 2, 4, 8 or 16; threads 32 to 256, a power of two; unroll 1, 2 or 4; all-rows lookahead 0, 1 or 2): {self:?}"
            )))
        }
    }

    /// Output rows per workgroup for weights of `format`.
    pub fn cols_for(&self, format: WeightFormat) -> u32 {
        match format {
            WeightFormat::Q8_0 => self.q8_cols_per_tg,
            _ => self.cols_per_tg,
        }
    }

    /// Whether the GEMV over `w` runs in the all-rows tiling ([`DenseTiling::AllRows`]);
    /// Q8_0 always does, whatever this says.
    fn dense_all_rows(&self, w: &GpuMatrix) -> bool {
        w.format == WeightFormat::F16
            && self.f16_tiling == DenseTiling::AllRows
            && w.k.is_multiple_of(8)
    }

    fn constants(&self, w: &GpuMatrix, norm: bool) -> [(&'static str, f64); 6] {
        let dense_all_rows = self.dense_all_rows(w);
        let all_rows = w.format == WeightFormat::Q8_0 || dense_all_rows;
        let wg_size = if all_rows {
            self.all_rows_wg_size
        } else {
            self.wg_size
        };
        let cols = self.cols_for(w.format);
        // Only the f32-x all-rows loops read it; the other pipelines get 1, so that they
        // do not come in two identical copies.
        let reads_unroll =
            all_rows && !(w.format == WeightFormat::Q8_0 && self.q8_dot == Q8Dot::I8);
        let all_rows_unroll = match self.all_rows_unroll {
            _ if !reads_unroll => 1,
            0 => all_rows_unroll_for(w.format, w.rows, cols),
            u => u,
        };
        [
            ("COLS_PER_TG", cols as f64),
            ("WG_SIZE", wg_size as f64),
            ("UNROLL", self.unroll as f64),
            ("NORM", norm as u32 as f64),
            ("DENSE_ALL_ROWS", dense_all_rows as u32 as f64),
            ("ALL_ROWS_UNROLL", all_rows_unroll as f64),
        ]
    }
}

/// RMSNorm folded into a GEMV's input: every workgroup computes 1 / rms of its own x row
/// (the formula of the `rmsnorm` kernel, in f32) and reads x * weight, so the norm costs
/// no dispatch of its own.
#[derive(Clone, Copy)]
pub struct InputNorm<'a> {
    /// (k) f32, padded to a multiple of 4 floats (as `tensor::upload_vector` does).
    pub weight: &'a wgpu::Buffer,
    pub eps: f32,
}

/// The parts of a GEMV besides y = W x.
#[derive(Clone, Copy, Default)]
pub struct GemvOptions<'a> {
    /// + bias[col..].
    pub bias: Option<&'a wgpu::Buffer>,
    /// y += W x (the residual add).
    pub accumulate: bool,
    pub norm: Option<InputNorm<'a>>,
    /// The step state: read only x row `n_rows - 1` and write y row 0, on a one-row grid
    /// whatever the batch (the LM head).
    pub last_row: Option<&'a wgpu::Buffer>,
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
    let opts = GemvOptions {
        bias,
        accumulate,
        ..Default::default()
    };
    linear_with(gpu, cfg, w, x, (y, col), &opts, dummy)
}

/// `linear` with every option: see [`GemvOptions`].
pub fn linear_with(
    gpu: &Gpu,
    cfg: &GemvConfig,
    w: &GpuMatrix,
    x: &Activation,
    (y, col): (&Activation, u32),
    opts: &GemvOptions<'_>,
    dummy: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    if col + w.rows > y.cols {
        return Err(shape_error(w, x, y));
    }
    let flags = if opts.bias.is_some() { FLAG_BIAS } else { 0 }
        | if opts.accumulate { FLAG_ACCUMULATE } else { 0 }
        | if opts.last_row.is_some() {
            FLAG_LAST_ROW
        } else {
            0
        };
    let g = Gemv {
        w,
        x,
        y,
        col,
        flags,
        bias: opts.bias,
        norm: opts.norm,
        state: opts.last_row,
        rope: None,
        attn: None,
    };
    g.dispatches(gpu, cfg, dummy)
}

/// The decode attention's output as a GEMV input, merged inside the GEMV from the
/// attention's per-chunk partials (`attention::decode_partial_only`), so the attention
/// needs no combine pass. Valid at a step only while at most [`ATTN_MAX_LIVE_CHUNKS`]
/// chunks are live: see [`attn_input_max_keys`].
pub struct AttnInput<'a> {
    /// Where the attention left its partials; its shape gives the heads and chunks.
    pub scratch: &'a DecodeScratch,
    /// The step state: the chunk count follows `pos`.
    pub state: &'a wgpu::Buffer,
}

/// Chunks a GEMV can merge from the partials (`ATTN_MAX_LIVE` in the kernel).
pub const ATTN_MAX_LIVE_CHUNKS: u32 = 4;
/// Query heads a GEMV can merge (`ATTN_MAX_HEADS`).
const ATTN_MAX_HEADS: u32 = 64;

/// The redundant reads a merged attention input may add to one GEMV: every workgroup
/// reads all of x once per live chunk, from L2. The H100 measured the fold at +2% for the
/// 0.5B shape's output projection (224 workgroups x 3.5 KB of x: 0.8 MB per chunk, 4
/// chunks) and -1% for the 7B one at 4 chunks (896 x 14 KB: 12.8 MB per chunk), ±0 at 1.
const ATTN_INPUT_L2_BUDGET: u64 = 4 << 20;

/// How many live chunks a GEMV over `w` may merge from the attention's partials within
/// [`ATTN_INPUT_L2_BUDGET`], at most [`ATTN_MAX_LIVE_CHUNKS`]; 0: none.
pub fn attn_input_live_chunks(cfg: &GemvConfig, w: &GpuMatrix) -> u32 {
    live_chunks_within_budget(w.rows.div_ceil(cfg.cols_for(w.format)), w.k)
}

fn live_chunks_within_budget(workgroups: u32, k: u32) -> u32 {
    let per_chunk = workgroups as u64 * k as u64 * 4;
    (ATTN_INPUT_L2_BUDGET / per_chunk.max(1)).min(ATTN_MAX_LIVE_CHUNKS as u64) as u32
}

/// The most keys (position + 1) at which an [`AttnInput`] from `scratch` merging up to
/// `live` chunks is valid: while chunks are one key tile long, `live` tiles; always when
/// there are no more splits than that.
pub fn attn_input_max_keys(scratch: &DecodeScratch, live: u32) -> u32 {
    max_keys_for(decode_tile_keys(scratch.head_dim), scratch.n_splits, live)
}

fn max_keys_for(tile_keys: u32, n_splits: u32, live: u32) -> u32 {
    if n_splits <= live {
        u32::MAX
    } else {
        live * tile_keys
    }
}

/// y += W attn, with attn merged from the decode attention's partials ([`AttnInput`]):
/// the output projection + residual, with the attention's combine folded in.
pub fn linear_residual_attn(
    gpu: &Gpu,
    cfg: &GemvConfig,
    w: &GpuMatrix,
    attn: &AttnInput<'_>,
    attn_shape: &Activation,
    y: &Activation,
    dummy: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    let sc = attn.scratch;
    if !sc.head_dim.is_multiple_of(4)
        || sc.n_heads * sc.head_dim != w.k
        || sc.n_heads > ATTN_MAX_HEADS
    {
        return Err(Error::Model(format!(
            "'{}' ({} inputs) cannot take the attention output of {} heads of {} merged in its GEMV",
            w.name, w.k, sc.n_heads, sc.head_dim
        )));
    }
    if w.rows > y.cols {
        return Err(shape_error(w, attn_shape, y));
    }
    let g = Gemv {
        w,
        x: attn_shape,
        y,
        col: 0,
        flags: FLAG_ACCUMULATE,
        bias: None,
        norm: None,
        state: Some(attn.state),
        rope: None,
        attn: Some(attn),
    };
    g.dispatches(gpu, cfg, dummy)
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
    linear_swiglu_norm(gpu, cfg, w, x, act, None, dummy)
}

/// `linear_swiglu` with an optional RMSNorm prologue: norm + gate/up + SwiGLU in one.
pub fn linear_swiglu_norm(
    gpu: &Gpu,
    cfg: &GemvConfig,
    w: &GpuMatrix,
    x: &Activation,
    act: &Activation,
    norm: Option<InputNorm<'_>>,
    dummy: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    check_swiglu_pairs(w, x, act)?;
    let g = Gemv {
        w,
        x,
        y: act,
        col: 0,
        flags: FLAG_SWIGLU,
        bias: None,
        norm,
        state: None,
        rope: None,
        attn: None,
    };
    g.dispatches(gpu, cfg, dummy)
}

/// Where the QKV epilogue puts rotated k and v: one layer's KV cache.
pub struct RopeCacheTarget<'a> {
    /// The step state: position `pos` + batch row.
    pub state: &'a wgpu::Buffer,
    /// The f16 caches, laid out as `model::blocks::KvCacheLayer` says.
    pub k_cache: &'a wgpu::Buffer,
    pub v_cache: &'a wgpu::Buffer,
    /// (head_dim / 2): `rope_kv::inv_freq(theta, head_dim)`.
    pub inv_freq: &'a [f32],
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub ctx: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct RopeParams {
    n_heads: u32,
    ctx: u32,
    _pad: [u32; 2],
    inv_freq: [[f32; 4]; 32],
}

/// Why `linear_qkv_rope` cannot take `w` on this device, if it cannot: the matrix must be
/// Q | K | V stacked, split only between heads, and the device must allow the entry
/// point's storage buffers per shader stage.
pub fn qkv_rope_unsupported(
    gpu: &Gpu,
    w: &GpuMatrix,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
) -> Option<String> {
    let need = qkv_rope_storage_buffers(w.format);
    let have = gpu.limits.max_storage_buffers_per_shader_stage;
    // Metal counts storage and uniform buffers (2 here) against one limit.
    let have_all = gpu
        .limits
        .max_buffers_and_acceleration_structures_per_shader_stage;
    if head_dim == 0 || !head_dim.is_multiple_of(2) || head_dim > 256 {
        Some(format!("head_dim {head_dim} is not even and at most 256"))
    } else if w.rows != (n_heads + 2 * n_kv_heads) * head_dim {
        Some(format!(
            "'{}' has {} rows, not Q | K | V of {n_heads} + 2 x {n_kv_heads} heads of {head_dim}",
            w.name, w.rows
        ))
    } else if w
        .chunks
        .iter()
        .any(|c| !c.first_row.is_multiple_of(head_dim))
    {
        Some(format!("'{}' is split inside a head", w.name))
    } else if have < need || have_all < need + 2 {
        Some(format!(
            "the device allows {have} storage buffers ({have_all} buffers) per shader stage, \
             the fused QKV kernel needs {need} ({})",
            need + 2
        ))
    } else {
        None
    }
}

/// The decode step's attention input in one dispatch per weight chunk: optional RMSNorm of
/// x, then Q | K | V = W x + bias, NEOX RoPE on the Q and K heads at position
/// `state.pos + batch row`, rotated q into the Q columns of `qkv` (original order), and
/// rotated k and v appended to the cache. The K and V columns of `qkv` are not written.
/// `w` must pass [`qkv_rope_unsupported`] (`GpuMatrix::upload_stacked_grouped` with
/// `head_dim` keeps heads whole).
#[allow(clippy::too_many_arguments)]
pub fn linear_qkv_rope(
    gpu: &Gpu,
    cfg: &GemvConfig,
    w: &GpuMatrix,
    x: &Activation,
    norm: Option<InputNorm<'_>>,
    bias: &wgpu::Buffer,
    qkv: &Activation,
    rope: &RopeCacheTarget<'_>,
    dummy: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    if let Some(why) = qkv_rope_unsupported(gpu, w, rope.n_heads, rope.n_kv_heads, rope.head_dim) {
        return Err(Error::Model(format!(
            "cannot fuse RoPE into the QKV GEMV: {why}"
        )));
    }
    if w.rows > qkv.cols || rope.inv_freq.len() != (rope.head_dim / 2) as usize {
        return Err(shape_error(w, x, qkv));
    }
    let g = Gemv {
        w,
        x,
        y: qkv,
        col: 0,
        flags: FLAG_BIAS,
        bias: Some(bias),
        norm,
        state: Some(rope.state),
        rope: Some(rope),
        attn: None,
    };
    g.dispatches(gpu, cfg, dummy)
}

/// A matrix of interleaved (gate, up) rows must give `act` one output per pair, and its
/// chunks must not split a pair (the epilogue reads both rows of a pair in one workgroup).
/// Shared with the prefill GEMM.
pub(crate) fn check_swiglu_pairs(w: &GpuMatrix, x: &Activation, act: &Activation) -> Result<()> {
    if w.rows != 2 * act.cols
        || w.chunks
            .iter()
            .any(|c| c.first_row % 2 != 0 || c.rows % 2 != 0)
    {
        return Err(shape_error(w, x, act));
    }
    Ok(())
}

pub(crate) fn shape_error(w: &GpuMatrix, x: &Activation, y: &Activation) -> Error {
    Error::Model(format!(
        "'{}' is {}x{}, but is applied to {} inputs giving {} outputs",
        w.name, w.rows, w.k, x.cols, y.cols
    ))
}

/// One GEMV's operands, before they become dispatches.
struct Gemv<'a> {
    w: &'a GpuMatrix,
    x: &'a Activation,
    y: &'a Activation,
    col: u32,
    flags: u32,
    bias: Option<&'a wgpu::Buffer>,
    norm: Option<InputNorm<'a>>,
    state: Option<&'a wgpu::Buffer>,
    rope: Option<&'a RopeCacheTarget<'a>>,
    attn: Option<&'a AttnInput<'a>>,
}

impl Gemv<'_> {
    fn dispatches(
        &self,
        gpu: &Gpu,
        cfg: &GemvConfig,
        dummy: &wgpu::Buffer,
    ) -> Result<Vec<Dispatch>> {
        let (w, x, y) = (self.w, self.x, self.y);
        if x.cols != w.k {
            return Err(shape_error(w, x, y));
        }
        if let Some(norm) = &self.norm {
            if norm.weight.size() < w.k.next_multiple_of(4) as u64 * 4 {
                return Err(Error::Model(format!(
                    "the norm weight before '{}' holds fewer than {} floats (k padded to 4)",
                    w.name,
                    w.k.next_multiple_of(4)
                )));
            }
        }
        let mut format = w.format.name().to_string();
        if w.format == WeightFormat::Q8_0 && cfg.q8_dot == Q8Dot::I8 {
            format += "_i8";
        }
        let entry = match self.rope {
            Some(_) => format!("gemv_qkv_rope_{format}"),
            None => format!("gemv_{format}"),
        };
        cfg.validate()?;
        let mut constants = cfg.constants(w, self.norm.is_some()).to_vec();
        if let Some(a) = self.attn {
            constants.extend([
                ("ATTN_X", 1.0),
                ("ATTN_HEAD_DIM", a.scratch.head_dim as f64),
                ("ATTN_SPLITS", a.scratch.n_splits as f64),
                ("ATTN_KT", decode_tile_keys(a.scratch.head_dim) as f64),
            ]);
        }
        let pipeline = gpu.pipeline("matmul_gemv", &entry, &constants)?;
        let rope_buf = self.rope.map(|r| {
            let mut inv_freq = [[0f32; 4]; 32];
            for (i, f) in r.inv_freq.iter().enumerate() {
                inv_freq[i / 4][i % 4] = *f;
            }
            let params = RopeParams {
                n_heads: r.n_heads,
                ctx: r.ctx,
                _pad: [0; 2],
                inv_freq,
            };
            uniform_buffer(gpu, "gemv.rope", &params)
        });
        let mut label = format!("gemv_{format}:{}", short_name(&w.name));
        if self.norm.is_some() {
            label += "+norm";
        }
        if self.rope.is_some() {
            label += "+rope_kv";
        }
        if self.attn.is_some() {
            label += "+attn_combine";
        }
        let mut out = Vec::with_capacity(w.chunks.len());
        for chunk in &w.chunks {
            let params = GemvParams {
                k: w.k,
                n: chunk.rows,
                row_offset: self.col + chunk.first_row,
                row_words: w.row_words,
                x_stride: x.stride,
                y_stride: y.stride,
                flags: self.flags,
                blocks_per_row: w.blocks_per_row,
                eps: self.norm.map_or(0.0, |n| n.eps),
                rope_rows: self
                    .rope
                    .map_or(0, |r| (r.n_heads + r.n_kv_heads) * r.head_dim),
                head_dim: self.rope.map_or(0, |r| r.head_dim),
                _pad: 0,
            };
            let ubuf = uniform_buffer(gpu, "gemv.params", &params);
            let mut entries = vec![
                (0, ubuf.as_entire_binding()),
                (
                    1,
                    self.attn
                        .map_or(&x.buf, |a| &a.scratch.buf)
                        .as_entire_binding(),
                ),
                (2, y.buf.as_entire_binding()),
                (3, self.bias.unwrap_or(dummy).as_entire_binding()),
                (4, chunk.data.as_entire_binding()),
                (6, self.norm.map_or(dummy, |n| n.weight).as_entire_binding()),
                (7, self.state.unwrap_or(dummy).as_entire_binding()),
            ];
            if let Some(scales) = &chunk.scales {
                entries.push((5, scales.as_entire_binding()));
            }
            if let (Some(r), Some(rbuf)) = (self.rope, &rope_buf) {
                entries.push((8, r.k_cache.as_entire_binding()));
                entries.push((9, r.v_cache.as_entire_binding()));
                entries.push((10, rbuf.as_entire_binding()));
            }
            let groups = chunk.rows.div_ceil(cfg.cols_for(w.format));
            out.push(Dispatch {
                label: label.clone(),
                bind_group: gpu.bind_group(&w.name, &pipeline, &entries),
                pipeline: pipeline.clone(),
                grid: match self.flags & FLAG_LAST_ROW {
                    0 => Grid::PerRow(groups),
                    _ => Grid::Fixed(Grid::PerRow(groups).size(1)),
                },
            });
        }
        Ok(out)
    }
}

/// `blk.3.attn_q.weight` -> `attn_q`: per-kernel profiles group layers together.
pub(crate) fn short_name(name: &str) -> &str {
    let name = name.strip_suffix(".weight").unwrap_or(name);
    match name.strip_prefix("blk.") {
        Some(rest) => rest.split_once('.').map_or(rest, |(_, n)| n),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_fold_budget() {
        // Output projections with 4 rows per workgroup: Qwen2.5-0.5B (896 x 896) merges 4
        // chunks, 1.5B (1536) and 3B (2048, exactly the budget) 1, 7B (3584) none.
        assert_eq!(live_chunks_within_budget(896 / 4, 896), 4);
        assert_eq!(live_chunks_within_budget(1536 / 4, 1536), 1);
        assert_eq!(live_chunks_within_budget(2048 / 4, 2048), 1);
        assert_eq!(live_chunks_within_budget(3584 / 4, 3584), 0);
        assert_eq!(max_keys_for(32, 19, 4), 128);
        assert_eq!(max_keys_for(32, 3, 4), u32::MAX);
        assert_eq!(max_keys_for(16, 256, 0), 0);
    }
}
