//! Causal attention over the KV cache with an online softmax (never a seq x seq matrix).
//!
//! - [`decode`]: one query row at `state.pos`, split over positions (flash-decoding):
//!   two dispatches per layer, a per-chunk pass and a per-head merge, through a
//!   [`DecodeScratch`] that all layers can share.
//! - [`prefill`]: any number of rows (row m at `state.pos + m`), causal flash attention
//!   over tiles of `BQ` rows: one dispatch per layer. On adapters with 16x16 f16
//!   cooperative matrices it runs on them ([`prefill_coop`], family `attention_coop`),
//!   elsewhere in f32 ([`prefill_with`]); [`PrefillPath`] decides.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{storage_buffer, uniform_buffer, Dispatch, Gpu, Grid};
use crate::kernels::attention_coop::{self, CoopSplit};
use crate::tensor::Activation;

/// Largest supported head dimension.
pub const MAX_HEAD_DIM: u32 = 256;
/// Largest number of decode chunks per head (one combine thread each).
pub const MAX_SPLITS: u32 = 256;
/// Dim parts per key in the decode kernel's score step (`DP`): about 8 dims per thread
/// (4 words of the f16 cache), so a tile costs one round of loads whatever the head size.
fn decode_dim_parts(head_dim: u32) -> u32 {
    match head_dim {
        0..=32 => 4,
        33..=64 => 8,
        65..=128 => 16,
        _ => 32,
    }
}

/// Keys per decode tile (`KT` = 256 / `DP`): decode chunks are multiples of it.
pub fn decode_tile_keys(head_dim: u32) -> u32 {
    256 / decode_dim_parts(head_dim)
}
/// Query heads one decode workgroup serves (`HB` in the kernel).
const HEADS_PER_GROUP: u32 = 8;

/// The attention geometry a layer's kernels need.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    /// KV-cache capacity in positions.
    pub ctx: u32,
}

/// Whether the kernels handle this head dimension: vec4 paths need a multiple of 4.
pub fn supports_head_dim(head_dim: u32) -> bool {
    head_dim > 0 && head_dim.is_multiple_of(4) && head_dim <= MAX_HEAD_DIM
}

/// The buffers attention reads and writes.
pub struct AttentionBindings<'a> {
    /// `StepState`: `pos` of batch row 0, `n_rows`.
    pub state: &'a wgpu::Buffer,
    /// (rows, q_stride): query head h at columns h*head_dim.., rotated (the QKV row).
    pub q: &'a Activation,
    /// f16 K, (n_kv_heads, head_dim / 2, ctx) words of dims (i, i + head_dim / 2): see
    /// `model::blocks::KvCacheLayer`.
    pub k_cache: &'a wgpu::Buffer,
    /// f16 V, (n_kv_heads, ctx, head_dim).
    pub v_cache: &'a wgpu::Buffer,
    /// (rows, out_stride): head h at columns h*head_dim..
    pub out: &'a Activation,
}

fn check(shape: &AttnShape, b: &AttentionBindings<'_>) -> Result<()> {
    let s = shape;
    let bad = |what: String| Err(Error::Invalid(format!("attention: {what}")));
    if !supports_head_dim(s.head_dim) {
        return bad(format!(
            "head_dim {} unsupported (a multiple of 4, at most {MAX_HEAD_DIM})",
            s.head_dim
        ));
    }
    if s.n_kv_heads == 0 || !s.n_heads.is_multiple_of(s.n_kv_heads) {
        return bad(format!(
            "{} query heads do not group over {} kv heads",
            s.n_heads, s.n_kv_heads
        ));
    }
    if !b.q.stride.is_multiple_of(4) || !b.out.stride.is_multiple_of(4) {
        return bad("q and out row strides must be multiples of 4".into());
    }
    if b.q.cols < s.n_heads * s.head_dim || b.out.cols < s.n_heads * s.head_dim {
        return bad("q or out is narrower than n_heads * head_dim".into());
    }
    Ok(())
}

/// log2(e) / sqrt(head_dim): the kernels keep scores in base 2 and use exp2.
fn score_scale(head_dim: u32) -> f32 {
    (std::f64::consts::LOG2_E / (head_dim as f64).sqrt()) as f32
}

// ---------------------------------------------------------------------------------
// Decode

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct DecodeParams {
    n_heads: u32,
    n_kv_heads: u32,
    ctx: u32,
    n_splits: u32,
    scale: f32,
    _pad: [u32; 3],
}

/// The default number of decode chunks per head for a cache of `ctx` positions: one
/// per key tile ([`decode_tile_keys`]) of the full cache, at most [`MAX_SPLITS`]. The
/// live chunk length adapts to `pos` in the kernel, so short contexts use a few
/// workgroups of one tile.
pub fn decode_splits(ctx: u32, head_dim: u32) -> u32 {
    ctx.div_ceil(decode_tile_keys(head_dim))
        .clamp(1, MAX_SPLITS)
}

/// Per-chunk partial results of decode attention: acc (n_heads, n_splits, head_dim),
/// then (max, sum) (n_heads, n_splits, 2), f32. Written and read within one layer's
/// two dispatches, so one buffer serves every layer of a plan.
pub struct DecodeScratch {
    pub buf: wgpu::Buffer,
    pub n_heads: u32,
    pub head_dim: u32,
    pub n_splits: u32,
}

impl DecodeScratch {
    /// Scratch for `shape` with [`decode_splits`]`(shape.ctx)` chunks.
    pub fn new(gpu: &Gpu, shape: &AttnShape) -> Result<Self> {
        Self::with_splits(gpu, shape, decode_splits(shape.ctx, shape.head_dim))
    }

    /// Scratch with an explicit chunk count (tests use few, to get long chunks).
    pub fn with_splits(gpu: &Gpu, shape: &AttnShape, n_splits: u32) -> Result<Self> {
        if n_splits == 0 || n_splits > MAX_SPLITS {
            return Err(Error::Invalid(format!(
                "attention: {n_splits} decode splits (1..={MAX_SPLITS})"
            )));
        }
        let bytes = Self::bytes(shape.n_heads, shape.head_dim, n_splits);
        if bytes > gpu.max_binding_bytes {
            return Err(Error::Gpu(format!(
                "attention scratch of {bytes} bytes exceeds the storage binding limit"
            )));
        }
        Ok(Self {
            buf: storage_buffer(gpu, "attention.decode_scratch", bytes),
            n_heads: shape.n_heads,
            head_dim: shape.head_dim,
            n_splits,
        })
    }

    pub fn bytes(n_heads: u32, head_dim: u32, n_splits: u32) -> u64 {
        n_heads as u64 * n_splits as u64 * (head_dim as u64 + 2) * 4
    }
}

/// Decode attention for batch row 0 at `state.pos` (the row count must be 1): two
/// dispatches, `attention_decode` (per chunk) then `attention_combine` (per head). The
/// grids are fixed by `shape.ctx`; chunks past `pos` exit at once.
pub fn decode(
    gpu: &Gpu,
    b: &AttentionBindings<'_>,
    shape: &AttnShape,
    scratch: &DecodeScratch,
) -> Result<Vec<Dispatch>> {
    decode_passes(gpu, b, shape, scratch, true)
}

/// The first of `decode`'s dispatches alone: the per-chunk partials, for a consumer that
/// merges them itself (`matmul_gemv::linear_residual_attn`).
pub fn decode_partial_only(
    gpu: &Gpu,
    b: &AttentionBindings<'_>,
    shape: &AttnShape,
    scratch: &DecodeScratch,
) -> Result<Vec<Dispatch>> {
    decode_passes(gpu, b, shape, scratch, false)
}

fn decode_passes(
    gpu: &Gpu,
    b: &AttentionBindings<'_>,
    shape: &AttnShape,
    scratch: &DecodeScratch,
    combine: bool,
) -> Result<Vec<Dispatch>> {
    check(shape, b)?;
    if scratch.n_heads != shape.n_heads || scratch.head_dim != shape.head_dim {
        return Err(Error::Invalid(
            "attention: decode scratch was sized for another shape".into(),
        ));
    }
    let constants = [
        ("HEAD_DIM", shape.head_dim as f64),
        ("DP", decode_dim_parts(shape.head_dim) as f64),
    ];
    let params = DecodeParams {
        n_heads: shape.n_heads,
        n_kv_heads: shape.n_kv_heads,
        ctx: shape.ctx,
        n_splits: scratch.n_splits,
        scale: score_scale(shape.head_dim),
        _pad: [0; 3],
    };
    let ubuf = uniform_buffer(gpu, "attention.decode.params", &params);

    let partial = gpu.pipeline("attention", "decode_partial", &constants)?;
    let partial_bg = gpu.bind_group(
        "attention.decode_partial",
        &partial,
        &[
            (1, b.state.as_entire_binding()),
            (2, b.q.buf.as_entire_binding()),
            (3, b.k_cache.as_entire_binding()),
            (4, b.v_cache.as_entire_binding()),
            (6, scratch.buf.as_entire_binding()),
            (0, ubuf.as_entire_binding()),
        ],
    );
    let blocks = (shape.n_heads / shape.n_kv_heads).div_ceil(HEADS_PER_GROUP);
    let mut passes = vec![Dispatch {
        label: "attention_decode".into(),
        pipeline: partial,
        bind_group: partial_bg,
        grid: Grid::Fixed([scratch.n_splits, shape.n_kv_heads * blocks, 1]),
    }];
    if combine {
        let combine = gpu.pipeline("attention", "decode_combine", &constants)?;
        let combine_bg = gpu.bind_group(
            "attention.decode_combine",
            &combine,
            &[
                (1, b.state.as_entire_binding()),
                (5, b.out.buf.as_entire_binding()),
                (6, scratch.buf.as_entire_binding()),
                (0, ubuf.as_entire_binding()),
            ],
        );
        passes.push(Dispatch {
            label: "attention_combine".into(),
            pipeline: combine,
            bind_group: combine_bg,
            grid: Grid::Fixed([shape.n_heads, 1, 1]),
        });
    }
    Ok(passes)
}

// ---------------------------------------------------------------------------------
// Prefill

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct PrefillParams {
    n_heads: u32,
    n_kv_heads: u32,
    q_stride4: u32,
    out_stride4: u32,
    ctx: u32,
    scale: f32,
    _pad: [u32; 2],
}

/// Tile sizes of the prefill kernel (its override constants): `bq` query rows per
/// workgroup (a multiple of 4), `tx` threads per group of 4 rows (workgroup size
/// `bq / 4 * tx`), `bk` keys per tile (`tx`, `2 tx` or `4 tx`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefillTiles {
    pub bq: u32,
    pub bk: u32,
    pub tx: u32,
}

impl PrefillTiles {
    /// The default tiles for `head_dim`, the first that fits the device's workgroup
    /// memory; `METALLIC_ATTN_TILES=bq,bk,tx` overrides them (for tuning).
    pub fn for_head_dim(gpu: &Gpu, head_dim: u32) -> Result<Self> {
        if let Ok(v) = std::env::var("METALLIC_ATTN_TILES") {
            let n: Vec<u32> = v.split(',').filter_map(|x| x.trim().parse().ok()).collect();
            let &[bq, bk, tx] = n.as_slice() else {
                return Err(Error::Invalid(format!(
                    "METALLIC_ATTN_TILES={v}: expected bq,bk,tx"
                )));
            };
            let t = Self { bq, bk, tx };
            t.validate(gpu, head_dim)?;
            return Ok(t);
        }
        // Fastest first, as measured on an H100 with the kernel's accumulators in
        // registers (examples/attention_bench, M = 512 / 2048: hd 64: 64,64,16 121 / 1045
        // µs against 171 / 1753 for 32,64,16; hd 128: 48,32,8 509 / 5601 µs against
        // 700 / 8798 for 32,32,8). The first that fits the device's workgroup memory
        // wins: 64,64,16 needs 48 KiB and 48,32,8 46 KiB, so devices with 32 KiB (Apple,
        // lavapipe) take the smaller ones.
        let candidates: &[(u32, u32, u32)] = match head_dim {
            0..=64 => &[
                (64, 64, 16),
                (48, 64, 16),
                (32, 64, 16),
                (32, 32, 8),
                (16, 16, 4),
            ],
            65..=128 => &[
                (48, 32, 8),
                (32, 32, 8),
                (32, 16, 8),
                (16, 16, 8),
                (8, 16, 8),
            ],
            _ => &[(8, 16, 16), (4, 16, 16)],
        };
        candidates
            .iter()
            .map(|&(bq, bk, tx)| Self { bq, bk, tx })
            .find(|t| t.validate(gpu, head_dim).is_ok())
            .ok_or_else(|| {
                Error::Gpu(format!(
                    "attention: no prefill tiling for head_dim {head_dim} fits {} bytes of workgroup memory",
                    gpu.limits.max_compute_workgroup_storage_size
                ))
            })
    }

    /// Workgroup memory the kernel declares: q (bq x hd), one K or V tile (bk x hd)
    /// and the scores (bk x bq), f32.
    pub fn workgroup_bytes(&self, head_dim: u32) -> u64 {
        4 * (head_dim as u64 * (self.bq + self.bk) as u64 + self.bk as u64 * self.bq as u64)
    }

    pub fn validate(&self, gpu: &Gpu, head_dim: u32) -> Result<()> {
        let Self { bq, bk, tx } = *self;
        let bad = |why: &str| {
            Err(Error::Invalid(format!(
                "attention: prefill tiles {self:?} for head_dim {head_dim}: {why}"
            )))
        };
        if bq == 0 || !bq.is_multiple_of(4) || tx == 0 || ![tx, 2 * tx, 4 * tx].contains(&bk) {
            return bad("need bq a multiple of 4 and bk in {tx, 2 tx, 4 tx}");
        }
        if !bk.is_multiple_of(4) {
            return bad("bk must be a multiple of 4");
        }
        // NC <= 4 in the kernel: at most 4 vec4 chunks of dims per thread.
        if 16 * tx < head_dim {
            return bad("tx too small: more than 16 output dims per thread");
        }
        let threads = bq / 4 * tx;
        if threads > gpu.limits.max_compute_invocations_per_workgroup
            || threads > gpu.limits.max_compute_workgroup_size_x
        {
            return bad("workgroup too large");
        }
        if self.workgroup_bytes(head_dim) > gpu.limits.max_compute_workgroup_storage_size as u64 {
            return bad("workgroup memory over the device limit");
        }
        Ok(())
    }
}

/// Which prefill attention kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefillPath {
    /// f32 FMA tiles, any adapter ([`prefill_with`]).
    Tiled,
    /// Q·Kᵀ and P·V on 16x16 f16 cooperative matrices ([`prefill_coop`]).
    Coop,
}

impl PrefillPath {
    /// `Coop` where the cooperative-matrix kernel can run ([`coop_blocker`] finds nothing),
    /// else `Tiled`. `METALLIC_ATTN_PREFILL` = `auto` (default), `coop` or `tiled` forces
    /// one (`coop` where it cannot run is an error); `METALLIC_ATTN_TILES` alone implies
    /// `tiled`.
    pub fn choose(gpu: &Gpu, shape: &AttnShape) -> Result<Self> {
        let forced = std::env::var("METALLIC_ATTN_PREFILL").unwrap_or_default();
        let split = coop_split(shape)?;
        match forced.trim() {
            "" | "auto" if std::env::var_os("METALLIC_ATTN_TILES").is_some() => Ok(Self::Tiled),
            "" | "auto" => Ok(match coop_blocker(gpu, shape, &split) {
                None => Self::Coop,
                Some(_) => Self::Tiled,
            }),
            "tiled" => Ok(Self::Tiled),
            "coop" => match coop_blocker(gpu, shape, &split) {
                None => Ok(Self::Coop),
                Some(why) => Err(Error::Invalid(format!("METALLIC_ATTN_PREFILL=coop: {why}"))),
            },
            v => Err(Error::Invalid(format!(
                "METALLIC_ATTN_PREFILL must be auto, coop or tiled, got '{v}'"
            ))),
        }
    }
}

/// How the coop kernel cuts `shape`'s GQA groups.
fn coop_split(shape: &AttnShape) -> Result<CoopSplit> {
    CoopSplit::for_group(shape.n_heads / shape.n_kv_heads.max(1), shape.n_kv_heads)
}

/// Why the cooperative-matrix prefill cannot run for `shape` on `gpu`, if it cannot.
fn coop_blocker(gpu: &Gpu, shape: &AttnShape, split: &CoopSplit) -> Option<String> {
    let (hd, ctx) = (shape.head_dim, shape.ctx);
    let bytes = split.workgroup_bytes(hd);
    let limit = gpu.limits.max_compute_workgroup_storage_size;
    if !gpu.coop_matrix_f16 {
        Some(format!(
            "'{}' has no 16x16 f16 cooperative matrices",
            gpu.info.name
        ))
    } else if !attention_coop::supports_head_dim(hd) {
        Some(format!("head_dim {hd} is not a multiple of 16 in 32..=128"))
    } else if !ctx.is_multiple_of(4) {
        Some(format!(
            "a cache of {ctx} positions: keys are read as vec4s, so it must hold a multiple of 4 positions"
        ))
    } else if bytes > limit as u64 {
        Some(format!(
            "it needs {bytes} bytes of workgroup memory at head_dim {hd}, the device has {limit}"
        ))
    } else if gpu.limits.max_compute_invocations_per_workgroup < attention_coop::THREADS {
        Some(format!(
            "it needs workgroups of {} threads",
            attention_coop::THREADS
        ))
    } else {
        None
    }
}

/// Causal flash attention for `state.n_rows` rows starting at `state.pos`: one
/// dispatch on the path [`PrefillPath::choose`] picks, grid (n_heads, ceil(rows / rows
/// per workgroup)) for the f32 tiles, (n_kv_heads · parts, ceil(rows / (16 · blocks)))
/// for the coop kernel ([`CoopSplit`]). Also correct for a single row.
pub fn prefill(gpu: &Gpu, b: &AttentionBindings<'_>, shape: &AttnShape) -> Result<Vec<Dispatch>> {
    match PrefillPath::choose(gpu, shape)? {
        PrefillPath::Coop => prefill_coop(gpu, b, shape),
        PrefillPath::Tiled => {
            let tiles = PrefillTiles::for_head_dim(gpu, shape.head_dim)?;
            prefill_with(gpu, b, shape, tiles)
        }
    }
}

/// [`prefill`] on cooperative matrices (`attention_coop`): q and the probabilities
/// rounded to f16 (K and V are f16 already), f32 accumulation and softmax. One workgroup
/// per KV head and block of positions serves every query head of the GQA group, so each
/// K/V tile is staged once per group. Needs `shape.ctx` a multiple of 4 (K is read as
/// vec4s of keys).
pub fn prefill_coop(
    gpu: &Gpu,
    b: &AttentionBindings<'_>,
    shape: &AttnShape,
) -> Result<Vec<Dispatch>> {
    prefill_coop_with(gpu, b, shape, coop_split(shape)?)
}

/// [`prefill_coop`] with an explicit cut of the GQA groups.
pub fn prefill_coop_with(
    gpu: &Gpu,
    b: &AttentionBindings<'_>,
    shape: &AttnShape,
    split: CoopSplit,
) -> Result<Vec<Dispatch>> {
    check(shape, b)?;
    if split != CoopSplit::with_heads(shape.n_heads / shape.n_kv_heads, split.heads) {
        return Err(Error::Invalid(format!(
            "attention: {split:?} does not cut groups of {} heads",
            shape.n_heads / shape.n_kv_heads
        )));
    }
    if let Some(why) = coop_blocker(gpu, shape, &split) {
        return Err(Error::Invalid(format!(
            "attention: the cooperative-matrix prefill cannot run: {why}"
        )));
    }
    let pipeline = gpu.pipeline(
        attention_coop::FAMILY,
        "prefill_coop",
        &[
            ("HEAD_DIM", shape.head_dim as f64),
            ("HG", split.heads as f64),
            ("PB", split.blocks as f64),
            ("SLOTS", split.slots() as f64),
        ],
    )?;
    let bind_group = prefill_bind_group(gpu, b, shape, &pipeline, "attention.prefill_coop");
    Ok(vec![Dispatch {
        label: "attention_prefill_coop".into(),
        pipeline,
        bind_group,
        grid: Grid::RowTiles {
            x: shape.n_kv_heads * split.parts,
            tile_rows: 16 * split.blocks,
        },
    }])
}

/// The bind group both prefill kernels share (the same bindings and params).
fn prefill_bind_group(
    gpu: &Gpu,
    b: &AttentionBindings<'_>,
    shape: &AttnShape,
    pipeline: &wgpu::ComputePipeline,
    label: &str,
) -> wgpu::BindGroup {
    let params = PrefillParams {
        n_heads: shape.n_heads,
        n_kv_heads: shape.n_kv_heads,
        q_stride4: b.q.stride / 4,
        out_stride4: b.out.stride / 4,
        ctx: shape.ctx,
        scale: score_scale(shape.head_dim),
        _pad: [0; 2],
    };
    let ubuf = uniform_buffer(gpu, &format!("{label}.params"), &params);
    gpu.bind_group(
        label,
        pipeline,
        &[
            (1, b.state.as_entire_binding()),
            (3, b.k_cache.as_entire_binding()),
            (8, ubuf.as_entire_binding()),
            (9, b.q.buf.as_entire_binding()),
            (10, b.v_cache.as_entire_binding()),
            (11, b.out.buf.as_entire_binding()),
        ],
    )
}

/// [`prefill`] with explicit tiles.
pub fn prefill_with(
    gpu: &Gpu,
    b: &AttentionBindings<'_>,
    shape: &AttnShape,
    tiles: PrefillTiles,
) -> Result<Vec<Dispatch>> {
    check(shape, b)?;
    tiles.validate(gpu, shape.head_dim)?;
    let pipeline = gpu.pipeline(
        "attention",
        "prefill",
        &[
            ("HEAD_DIM", shape.head_dim as f64),
            ("BQ", tiles.bq as f64),
            ("BK", tiles.bk as f64),
            ("TX", tiles.tx as f64),
        ],
    )?;
    let bind_group = prefill_bind_group(gpu, b, shape, &pipeline, "attention.prefill");
    Ok(vec![Dispatch {
        label: "attention_prefill".into(),
        pipeline,
        bind_group,
        grid: Grid::RowTiles {
            x: shape.n_heads,
            tile_rows: tiles.bq,
        },
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decode kernel loads a tile's V rows for a thread's slot into 8 registers
    /// before the softmax reductions, so no slot may own more than 8 keys of a tile:
    /// ceil(KT / n_slots) with KT = 256 / DP and n_slots = 256 / head_dim.
    #[test]
    fn decode_slots_take_at_most_eight_keys_of_a_tile() {
        for head_dim in (4..=MAX_HEAD_DIM).filter(|&h| supports_head_dim(h)) {
            let keys = decode_tile_keys(head_dim);
            let slots = 256 / head_dim;
            assert!(
                keys.div_ceil(slots) <= 8,
                "head_dim {head_dim}: {keys} keys over {slots} slots"
            );
        }
    }
}
