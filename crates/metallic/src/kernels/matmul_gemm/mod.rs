//! Tiled GEMM for prefill: `y[m, col + n] = x[m, :] . W[n, :]` for every batch row at
//! once, so each weight tile is read once per tile of rows instead of once per row (the
//! GEMV's cost in prefill). Same epilogues as the GEMV: bias, residual add, SwiGLU.
//!
//! Two paths, chosen by [`GemmConfig`]:
//! - **portable** (`matmul_gemm`): f32 tiles in workgroup memory, a 4x4 register tile per
//!   thread, no subgroup operations. Runs everywhere, lavapipe included.
//! - **cooperative matrix** (`matmul_gemm_coop`): 16x16 f16 tiles with f32 accumulators
//!   on tensor cores, where the adapter reports them (`Gpu::coop_matrix_f16`). x is
//!   rounded to f16 when staged, as are F32 weights and dequantized Q8_0 weights. This
//!   path also takes f16 activations (`Activation::half`): x read as f16, and the SwiGLU
//!   output written as f16, so the prefill plan's GEMM inputs cost half the bytes.
//!
//! The batch row count comes from the step state (`n_rows`), and the grid follows it
//! ([`Grid::RowTilesFor`]), so a plan built once serves any chunk length. On the coop path
//! the tile and split-K are chosen per range of chunk lengths ([`coop_choice`]): the plan
//! holds one dispatch per range and a step launches the one for its length, so a 512-row
//! prompt in a plan built for 2048 gets the 512-row tiles.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{storage_buffer, uniform_buffer, Dispatch, Gpu, Grid};
use crate::kernels::matmul_gemm_coop::{self, CoopTile};
use crate::kernels::matmul_gemv::{check_swiglu_pairs, shape_error, short_name};
use crate::tensor::{Activation, GpuMatrix, WeightFormat};

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct GemmParams {
    pub k: u32,
    pub n: u32,
    pub col: u32,
    pub row_words: u32,
    pub x_stride: u32,
    pub y_stride: u32,
    pub flags: u32,
    pub blocks_per_row: u32,
}

// The epilogue flags are the GEMV's: both kernels apply the same bias / residual / SwiGLU.
pub use crate::kernels::matmul_gemv::{FLAG_ACCUMULATE, FLAG_BIAS, FLAG_SWIGLU};

/// The portable kernel's output tile: batch rows x outputs per workgroup.
pub const PORTABLE_TILE: (u32, u32) = (64, 64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmPath {
    /// Shared-memory tiles in f32, any adapter.
    Portable,
    /// Cooperative matrices (16x16 f16, f32 accumulate): tensor cores.
    Coop,
}

/// Which path the GEMM takes. Build it with [`GemmConfig::from_env`] (or
/// [`GemmConfig::new`]), which checks the adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmConfig {
    pub path: GemmPath,
    /// Split-K ranges on the coop path: None picks per matrix and chunk length
    /// ([`coop_choice`]).
    pub split_k: Option<u32>,
    /// The adapter's SM count ([`Gpu::compute_units`]): with it, 128 x 128 tiles split K
    /// to fill whole waves ([`wave_split_k`]).
    pub compute_units: Option<u32>,
}

impl GemmConfig {
    /// The cooperative-matrix path where the adapter supports it, else the portable one.
    pub fn auto(gpu: &Gpu) -> Self {
        let path = if gpu.coop_matrix_f16 {
            GemmPath::Coop
        } else {
            GemmPath::Portable
        };
        Self {
            path,
            split_k: None,
            compute_units: gpu.compute_units,
        }
    }

    /// A forced path; `Coop` on an adapter without 16x16 f16 cooperative matrices is an
    /// error.
    pub fn new(gpu: &Gpu, path: GemmPath) -> Result<Self> {
        if path == GemmPath::Coop && !gpu.coop_matrix_f16 {
            return Err(Error::Gpu(format!(
                "the cooperative-matrix GEMM needs 16x16 f16 cooperative matrices with an f32 \
                 accumulator, which '{}' does not report (METALLIC_GEMM=auto or portable)",
                gpu.info.name
            )));
        }
        Ok(Self {
            path,
            split_k: None,
            compute_units: gpu.compute_units,
        })
    }

    /// The same path with `split` K ranges on the coop path (1, 2 or 4; None: per matrix).
    pub fn with_split_k(self, split_k: Option<u32>) -> Self {
        Self { split_k, ..self }
    }

    /// The same path sizing split-K for this many SMs (None: the generic rule).
    pub fn with_compute_units(self, compute_units: Option<u32>) -> Self {
        Self {
            compute_units,
            ..self
        }
    }

    /// `METALLIC_GEMM=auto|portable|coop` (default auto) and
    /// `METALLIC_GEMM_COOP_SPLIT_K=auto|1|2|4` (default auto: [`split_k_for`]).
    pub fn from_env(gpu: &Gpu) -> Result<Self> {
        let cfg = match std::env::var("METALLIC_GEMM") {
            Err(_) => Self::auto(gpu),
            Ok(v) => match v.trim() {
                "" | "auto" => Self::auto(gpu),
                "portable" => Self::new(gpu, GemmPath::Portable)?,
                "coop" => Self::new(gpu, GemmPath::Coop)?,
                _ => {
                    return Err(Error::Invalid(format!(
                        "METALLIC_GEMM must be auto, portable or coop, got '{v}'"
                    )))
                }
            },
        };
        let split_k = match std::env::var("METALLIC_GEMM_COOP_SPLIT_K") {
            Err(_) => None,
            Ok(v) => match v.trim() {
                "" | "auto" => None,
                "1" => Some(1),
                "2" => Some(2),
                "4" => Some(4),
                _ => {
                    return Err(Error::Invalid(format!(
                        "METALLIC_GEMM_COOP_SPLIT_K must be auto, 1, 2 or 4, got '{v}'"
                    )))
                }
            },
        };
        Ok(cfg.with_split_k(split_k))
    }

    /// (batch rows, outputs) per workgroup of the largest tile (the coop path picks a
    /// smaller one for small matrices: [`matmul_gemm_coop::CoopTile::for_shape`]).
    pub fn tile(&self) -> (u32, u32) {
        match self.path {
            GemmPath::Portable => PORTABLE_TILE,
            GemmPath::Coop => matmul_gemm_coop::TILE,
        }
    }

    fn pipeline_name(&self, format: WeightFormat) -> (&'static str, String) {
        match self.path {
            GemmPath::Portable => ("matmul_gemm", format!("gemm_{}", format.name())),
            GemmPath::Coop => (
                matmul_gemm_coop::FAMILY,
                format!("gemm_coop_{}", format.name()),
            ),
        }
    }
}

/// y[:, col..] = x W^T (+ bias[col..]) (+ y) for the batch rows `0..state.n_rows`: one
/// dispatch per weight chunk, each writing its columns of y. `col` places the output
/// inside a wider row (e.g. K inside QKV). `state` is the step state (`StepState`).
#[allow(clippy::too_many_arguments)]
pub fn linear(
    gpu: &Gpu,
    cfg: &GemmConfig,
    state: &wgpu::Buffer,
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
    dispatches(
        gpu,
        cfg,
        state,
        w,
        x,
        y,
        col,
        bias.unwrap_or(dummy),
        flags,
        dummy,
    )
}

/// act = silu(x gate^T) * (x up^T) from a matrix whose rows interleave gate and up
/// (`GpuMatrix::upload_interleaved`): one GEMM instead of two GEMMs and a SwiGLU.
pub fn linear_swiglu(
    gpu: &Gpu,
    cfg: &GemmConfig,
    state: &wgpu::Buffer,
    w: &GpuMatrix,
    x: &Activation,
    act: &Activation,
    dummy: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    check_swiglu_pairs(w, x, act)?;
    dispatches(gpu, cfg, state, w, x, act, 0, dummy, FLAG_SWIGLU, dummy)
}

/// f16 activations are for the cooperative-matrix path only (it needs SHADER_F16 anyway),
/// with K and the row strides multiples of 8 (16-byte loads of 8 halves), and an f16
/// output only through the SwiGLU epilogue (the residual add stays in f32).
fn check_halves(
    cfg: &GemmConfig,
    w: &GpuMatrix,
    x: &Activation,
    y: &Activation,
    flags: u32,
) -> Result<()> {
    if !x.half && !y.half {
        return Ok(());
    }
    let why = if cfg.path != GemmPath::Coop {
        "f16 activations need the cooperative-matrix GEMM"
    } else if x.half && !(w.k.is_multiple_of(8) && x.stride.is_multiple_of(8)) {
        "an f16 x needs K and its row stride to be multiples of 8"
    } else if y.half && flags != FLAG_SWIGLU {
        "an f16 output is only written by the SwiGLU epilogue"
    } else {
        return Ok(());
    };
    Err(Error::Invalid(format!("GEMM '{}': {why}", w.name)))
}

/// `METALLIC_GEMM_COOP_TILE=128x128|64x128|64x64|64x64w|...` forces the coop path's tile (for
/// benchmarks); unset or `auto` picks it per matrix.
fn coop_tile_from_env() -> Result<Option<CoopTile>> {
    match std::env::var("METALLIC_GEMM_COOP_TILE") {
        Err(_) => Ok(None),
        Ok(v) if v.trim().is_empty() || v.trim() == "auto" => Ok(None),
        Ok(v) => CoopTile::parse(&v).map(Some).ok_or_else(|| {
            Error::Invalid(format!(
                "METALLIC_GEMM_COOP_TILE must be auto, 128x128, 64x128, 64x64, 32x128, 32x64, 64x64w or 32x64w (optionally with -pf, -px or -pw and -k32), got '{v}'"
            ))
        }),
    }
}

/// Workgroups that split-K aims for: about two per SM of a large GPU (an H100 has 132),
/// as many as run at once with the 128 x 128 tile.
pub const SPLIT_K_TARGET_WORKGROUPS: u32 = 264;

/// Split-K ranges for a coop GEMM with `tiles` output tiles and inner dimension `k`: the
/// largest of 1, 2 and 4 that keeps the workgroups within [`SPLIT_K_TARGET_WORKGROUPS`]
/// and at least 16 stages of 64 per range. Not for the SwiGLU epilogue (its pairs would
/// need both sums). At M = 512 this splits the down projections (0.5B: 112 tiles of
/// 64 x 64 walking 76 stages; 7B: 112 of 128 x 128 walking 296) and 7B's o in two.
pub fn split_k_for(tiles: u32, k: u32, flags: u32) -> u32 {
    if flags & FLAG_SWIGLU != 0 {
        return 1;
    }
    let stages = k.div_ceil(64);
    let mut split = 1;
    while split < 4 && tiles * split * 2 <= SPLIT_K_TARGET_WORKGROUPS && stages / (split * 2) >= 16
    {
        split *= 2;
    }
    split
}

/// Where the SM count is known ([`Gpu::compute_units`]), the split for 128 x 128 tiles,
/// which run one workgroup per SM: the workgroups go out in waves of `compute_units`, so
/// `tiles` of them take ceil(tiles / units) tile-times, and split in s ranges,
/// ceil(s tiles / units) / s. The smallest split within 10% of the best (the reduce pass
/// costs a little), at least 16 stages of 64 per range, never for SwiGLU. On an H100
/// (132): 7B down at a 630-row chunk (140 tiles, a second wave of 8) splits in four,
/// 1.25 tile-times instead of 2; at 512 rows (112 tiles) it stays whole.
pub fn wave_split_k(tiles: u32, k: u32, flags: u32, compute_units: u32) -> u32 {
    if flags & FLAG_SWIGLU != 0 || compute_units == 0 {
        return 1;
    }
    let stages = k.div_ceil(64);
    let cost = |s: u32| (tiles * s).div_ceil(compute_units) as f64 / s as f64;
    let allowed = [1u32, 2, 4]
        .into_iter()
        .filter(|&s| s == 1 || stages / s >= 16);
    let best = allowed.clone().map(cost).fold(f64::INFINITY, f64::min);
    allowed
        .into_iter()
        .find(|&s| cost(s) <= best * 1.1)
        .unwrap_or(1)
}

/// The coop tile and split-K for a chunk of `rows` rows of a GEMM with `n` outputs and
/// inner dimension `k`. Both are chosen for the chunk's own length, not the plan's
/// largest: a 512-row chunk of a plan built for 2048 would otherwise get the 2048-row
/// tile (0.5B o and down: 28 workgroups of 128 x 128 instead of 112 of 64 x 64).
pub fn coop_choice(
    cfg: &GemmConfig,
    n: u32,
    k: u32,
    rows: u32,
    flags: u32,
    max_workgroup_bytes: u32,
    forced_tile: Option<CoopTile>,
) -> (CoopTile, u32) {
    let tile = forced_tile.unwrap_or_else(|| CoopTile::for_shape(n, rows, max_workgroup_bytes));
    let (cm, cn) = tile.shape();
    let tiles = rows.div_ceil(cm) * n.div_ceil(cn);
    // The wave rule only adds splits: where it ties with fewer ranges than the generic
    // rule (0.5B down at 2048 rows: 112 tiles whole or in two), the generic choice stays.
    // A forced split applies where the epilogue allows it: SwiGLU pairs stay whole.
    let split = match cfg.split_k {
        Some(_) if flags & FLAG_SWIGLU != 0 => 1,
        Some(split) => split,
        None => match cfg.compute_units {
            Some(units) if tile == CoopTile::TALL => {
                split_k_for(tiles, k, flags).max(wave_split_k(tiles, k, flags, units))
            }
            _ => split_k_for(tiles, k, flags),
        },
    };
    (tile, split)
}

/// One alternative of a GEMM chunk's dispatch: its tile (None: the portable kernel) and
/// split, for steps of `rows.0..=rows.1` rows.
#[derive(Clone, Copy, PartialEq)]
struct ChunkPlan {
    rows: (u32, u32),
    tile: Option<CoopTile>,
    split: u32,
}

/// Granularity of the chunk lengths the coop plans are chosen for: the smallest tile's
/// rows, so tile counts are constant within each step.
const PLAN_ROW_STEP: u32 = 64;

/// [`coop_choice`] for every chunk length up to `max_rows`, in steps of
/// [`PLAN_ROW_STEP`] rows (each chosen for its longest length); adjacent steps with the
/// same choice are merged by [`merge_equal`].
fn coop_plans(
    cfg: &GemmConfig,
    n: u32,
    k: u32,
    max_rows: u32,
    flags: u32,
    max_workgroup_bytes: u32,
    forced_tile: Option<CoopTile>,
) -> Vec<ChunkPlan> {
    (0..max_rows.div_ceil(PLAN_ROW_STEP).max(1))
        .map(|i| {
            let lo = i * PLAN_ROW_STEP + 1;
            let hi = ((i + 1) * PLAN_ROW_STEP).min(max_rows.max(1));
            let (tile, split) = coop_choice(cfg, n, k, hi, flags, max_workgroup_bytes, forced_tile);
            ChunkPlan {
                rows: (lo, hi),
                tile: Some(tile),
                split,
            }
        })
        .collect()
}

/// Merges adjacent plans with the same tile and split; the last one extends to any
/// length (a plan never gets longer chunks than it was built for, and one row takes the
/// decode plan, but the GEMM alone may be called with any count).
fn merge_equal(plans: Vec<ChunkPlan>) -> Vec<ChunkPlan> {
    let mut out: Vec<ChunkPlan> = Vec::new();
    for p in plans {
        match out.last_mut() {
            Some(last) if (last.tile, last.split) == (p.tile, p.split) => last.rows.1 = p.rows.1,
            _ => out.push(p),
        }
    }
    if let Some(first) = out.first_mut() {
        first.rows.0 = 0;
    }
    if let Some(last) = out.last_mut() {
        last.rows.1 = u32::MAX;
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn dispatches(
    gpu: &Gpu,
    cfg: &GemmConfig,
    state: &wgpu::Buffer,
    w: &GpuMatrix,
    x: &Activation,
    y: &Activation,
    col: u32,
    bias: &wgpu::Buffer,
    flags: u32,
    dummy: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    if x.cols != w.k {
        return Err(shape_error(w, x, y));
    }
    check_halves(cfg, w, x, y, flags)?;
    let (family, entry) = cfg.pipeline_name(w.format);
    let forced = coop_tile_from_env()?;
    let rw_dummy = storage_buffer(gpu, "gemm.rw_dummy", 16);
    let part_dummy = storage_buffer(gpu, "gemm.part_dummy", 16);
    if let Some(split) = cfg.split_k {
        if ![1, 2, 4].contains(&split) {
            return Err(Error::Invalid(format!(
                "GEMM '{}': split-K of {split} (1, 2 or 4)",
                w.name
            )));
        }
    }
    let mut out = Vec::with_capacity(w.chunks.len());
    for chunk in &w.chunks {
        // Bytes of split-K's partial sums, (split, rows, n) f32.
        let part_bytes = |split: u32| split as u64 * x.rows as u64 * chunk.rows as u64 * 4;
        let plans = match cfg.path {
            GemmPath::Portable => vec![ChunkPlan {
                rows: (0, u32::MAX),
                tile: None,
                split: 1,
            }],
            GemmPath::Coop => {
                let limit = gpu.limits.max_compute_workgroup_storage_size;
                let mut plans = coop_plans(cfg, chunk.rows, w.k, x.rows, flags, limit, forced);
                // The partial sums must fit one binding: otherwise auto does not split,
                // and a forced split is an error.
                for plan in &mut plans {
                    if plan.split > 1 && part_bytes(plan.split) > gpu.max_binding_bytes {
                        if cfg.split_k.is_some() {
                            return Err(Error::Invalid(format!(
                                "GEMM '{}': split-K's {} bytes of partial sums exceed the storage binding limit; lower --batch-size or METALLIC_GEMM_COOP_SPLIT_K",
                                w.name,
                                part_bytes(plan.split)
                            )));
                        }
                        plan.split = 1;
                    }
                }
                merge_equal(plans)
            }
        };
        let params = GemmParams {
            k: w.k,
            n: chunk.rows,
            col: col + chunk.first_row,
            row_words: w.row_words,
            x_stride: x.stride,
            y_stride: y.stride,
            flags,
            blocks_per_row: w.blocks_per_row,
        };
        let ubuf = uniform_buffer(gpu, "gemm.params", &params);
        // Every entry point declares the scales binding; dense weights bind a stand-in.
        let scales = chunk.scales.as_ref().unwrap_or(dummy);
        // f32 and f16 activations have bindings of their own (the coop kernel declares
        // both); the unused one gets a stand-in, a writable one for y: a buffer may not
        // be bound read-only and read-write in one dispatch.
        let (x32, x16) = if x.half {
            (dummy, &x.buf)
        } else {
            (&x.buf, dummy)
        };
        let (y32, y16) = if y.half {
            (&rw_dummy, &y.buf)
        } else {
            (&y.buf, &rw_dummy)
        };
        let label = format!("gemm_{}:{}", w.format.name(), short_name(&w.name));
        for plan in plans {
            let (pipeline, (tile_rows, tile_n), constants) = match plan.tile {
                None => (gpu.pipeline(family, &entry, &[])?, cfg.tile(), Vec::new()),
                Some(tile) => {
                    let mut constants = tile.constants().to_vec();
                    constants.push(("X_F16", x.half as u32 as f64));
                    constants.push(("Y_F16", y.half as u32 as f64));
                    constants.push(("SPLIT_K", plan.split as f64));
                    (
                        gpu.pipeline(family, &entry, &constants)?,
                        tile.shape(),
                        constants,
                    )
                }
            };
            let mut entries = vec![
                (0, ubuf.as_entire_binding()),
                (1, state.as_entire_binding()),
                (2, x32.as_entire_binding()),
                (3, y32.as_entire_binding()),
                (4, bias.as_entire_binding()),
                (5, chunk.data.as_entire_binding()),
                (6, scales.as_entire_binding()),
            ];
            // Split-K's partial sums, in the scratch every GEMM shares.
            let part = match plan.split {
                1 => part_dummy.clone(),
                split => gpu.shared_scratch(part_bytes(split)),
            };
            if cfg.path == GemmPath::Coop {
                entries.push((7, x16.as_entire_binding()));
                entries.push((8, y16.as_entire_binding()));
                entries.push((9, part.as_entire_binding()));
            }
            let x_tiles = chunk.rows.div_ceil(tile_n);
            out.push(Dispatch {
                label: label.clone(),
                bind_group: gpu.bind_group(&w.name, &pipeline, &entries),
                pipeline: pipeline.clone(),
                grid: Grid::RowTilesFor {
                    x: x_tiles,
                    tile_rows,
                    z: plan.split,
                    rows: plan.rows,
                },
            });
            if plan.split > 1 {
                // The reduce pass: sums the ranges and applies the bias / residual epilogue.
                let reduce = gpu.pipeline(family, "gemm_splitk_reduce", &constants)?;
                let entries = [
                    (0, ubuf.as_entire_binding()),
                    (1, state.as_entire_binding()),
                    (3, y32.as_entire_binding()),
                    (4, bias.as_entire_binding()),
                    (9, part.as_entire_binding()),
                ];
                let x = chunk.rows.div_ceil(256);
                out.push(Dispatch {
                    label: format!("gemm_splitk_reduce:{}", short_name(&w.name)),
                    bind_group: gpu.bind_group(&w.name, &reduce, &entries),
                    pipeline: reduce,
                    grid: Grid::PerRowFor { x, rows: plan.rows },
                });
            }
        }
    }
    Ok(out)
}
