//! The decode plan's fused GEMVs against independent f64 CPU references:
//! * the RMSNorm prologue (`InputNorm`) with bias / residual, with SwiGLU, and reading the
//!   batch's last row (the LM head), and against the separate rmsnorm kernel;
//! * the QKV GEMV with RoPE and the KV-cache append (`linear_qkv_rope`), at positions 0 to
//!   30000, F16 / F32 / Q8_0, GQA and MHA, split bindings and every tuning config.
//!
//! Outputs and caches are poisoned first: a slot the kernel should not write must keep the
//! poison, one it should write must not.

mod common;

use common::*;
use metallic::gguf::{dequant, GgmlType, GgufFile, GgufWriter};
use metallic::gpu::{storage_buffer, Gpu};
use metallic::kernels::matmul_gemv::{
    linear, linear_qkv_rope, linear_swiglu_norm, linear_with, qkv_rope_unsupported, DenseTiling,
    GemvConfig, GemvOptions, InputNorm, Q8Dot, RopeCacheTarget,
};
use metallic::kernels::rmsnorm::rmsnorm;
use metallic::kernels::rope_kv::{self, rope_kv, RopeKvBindings};
use metallic::synthetic::Rng;
use metallic::tensor::{Activation, GpuMatrix};

/// Weights are exact (the references use the dequantized values), so only f32 summation
/// order separates GPU and reference.
const TOL: f64 = 1e-4;

/// With int8 activations a reciprocal an ulp off on the GPU can round one quantized x
/// the other way (one step of max|x| / 127 in one term).
fn tol_for(ty: GgmlType, cfg: &GemvConfig) -> f64 {
    if quantizes_x(ty, cfg) {
        1e-3
    } else {
        TOL
    }
}

fn quantize(ty: GgmlType, data: &[f32]) -> Vec<u8> {
    match ty {
        GgmlType::F32 => dequant::f32_to_bytes(data),
        GgmlType::F16 => dequant::f32_to_f16_bytes(data),
        GgmlType::Q8_0 => dequant::quantize_q8_0(data),
        t => panic!("no fixture for {t:?}"),
    }
}

/// (rows, k) matrices of type `ty` written as one GGUF; returns the file and each one's
/// dequantized values (what the kernel sees).
fn gguf(ty: GgmlType, mats: &[(&str, usize, usize)], rng: &mut Rng) -> (GgufFile, Vec<Vec<f32>>) {
    let mut w = GgufWriter::new();
    for &(name, rows, k) in mats {
        let data = rand_vec(rng, rows * k, 1.0);
        w.add_tensor(name, ty, &[k as u64, rows as u64], quantize(ty, &data));
    }
    let file = GgufFile::from_bytes(w.to_bytes()).expect("gguf");
    let deq = mats
        .iter()
        .map(|&(name, rows, k)| {
            let info = file.require_tensor(name).unwrap();
            dequant::to_f32(ty, file.tensor_data(info), rows * k).unwrap()
        })
        .collect();
    (file, deq)
}

/// A norm weight near 1, as the engine uploads it: padded with zeros to 4 floats.
fn norm_weight(gpu: &Gpu, rng: &mut Rng, k: usize) -> (wgpu::Buffer, Vec<f32>) {
    let g: Vec<f32> = rand_vec(rng, k, 0.3).iter().map(|v| v + 1.0).collect();
    let mut padded = g.clone();
    padded.resize(k.next_multiple_of(4), 0.0);
    (f32_buffer(gpu, "norm", &padded), g)
}

/// `rows` rows of x, of different magnitudes (a row mixed up with another shows), written
/// into `act` with junk in the padding (a norm that sums the padding shows).
fn x_rows(gpu: &Gpu, rng: &mut Rng, act: &Activation, rows: usize) -> Vec<f32> {
    let k = act.cols as usize;
    let xs: Vec<f32> = (0..rows)
        .flat_map(|r| rand_vec(rng, k, 0.5 + r as f32))
        .collect();
    write_rows(gpu, act, &xs, 3.0);
    xs
}

/// rmsnorm(x) * g as a GEMV over `ty` with `cfg` sees it: with int8 activations, x * g
/// (in f32, as the kernel forms it) is quantized and the 1 / rms factor applied after.
fn norm_ref_for(ty: GgmlType, cfg: &GemvConfig, x: &[f32], g: &[f32], eps: f32) -> Vec<f64> {
    if !quantizes_x(ty, cfg) {
        return norm_ref(x, g, eps);
    }
    let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (ms + eps as f64).sqrt();
    let xg: Vec<f32> = x.iter().zip(g).map(|(&v, &g)| v * g).collect();
    q8_activations(&xg).iter().map(|v| v * inv).collect()
}

/// rmsnorm(x) * g in f64.
fn norm_ref(x: &[f32], g: &[f32], eps: f32) -> Vec<f64> {
    let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (ms + eps as f64).sqrt();
    x.iter()
        .zip(g)
        .map(|(&v, &g)| v as f64 * inv * g as f64)
        .collect()
}

fn dot(w_row: &[f32], x: &[f64]) -> f64 {
    w_row.iter().zip(x).map(|(&a, &b)| a as f64 * b).sum()
}

// ---------------------------------------------------------------------------------
// RMSNorm prologue

#[test]
fn norm_prologue_with_bias_and_residual() {
    let gpu = gpu(None);
    let mut rng = Rng::new(51);
    let eps = 1e-6;
    let configs = [
        GemvConfig::default(),
        // Fewer subgroups than rows (8-wide subgroups on lavapipe): the loop path.
        GemvConfig {
            cols_per_tg: 8,
            q8_cols_per_tg: 8,
            wg_size: 32,
            all_rows_wg_size: 32,
            ..Default::default()
        },
        GemvConfig {
            cols_per_tg: 2,
            q8_cols_per_tg: 2,
            wg_size: 256,
            all_rows_wg_size: 256,
            ..Default::default()
        },
        // Q8_0 with int8 activations; F16 with loads unrolled.
        GemvConfig {
            q8_dot: Q8Dot::I8,
            unroll: 2,
            ..Default::default()
        },
        GemvConfig {
            cols_per_tg: 8,
            q8_cols_per_tg: 8,
            wg_size: 32,
            all_rows_wg_size: 32,
            q8_dot: Q8Dot::I8,
            unroll: 4,
            f16_tiling: DenseTiling::Rows,
            // (int8 Q8_0 and the F16 row tiling never read the all-rows lookahead)
            ..Default::default()
        },
        // F16 in the all-rows tiling (K = 7 and 100 fall back to rows).
        GemvConfig {
            f16_tiling: DenseTiling::AllRows,
            ..Default::default()
        },
        GemvConfig {
            cols_per_tg: 8,
            wg_size: 32,
            f16_tiling: DenseTiling::AllRows,
            ..Default::default()
        },
        // Two units per lane ahead in the all-rows loops. With 32 threads a lane steps 32
        // units, so K = 1032 (F16, 129 units) and 1056 (Q8_0, 66 units) run the paired
        // body and then its tail, with the norm's sum of squares taken in both.
        GemvConfig {
            wg_size: 32,
            all_rows_wg_size: 32,
            f16_tiling: DenseTiling::AllRows,
            all_rows_unroll: 2,
            ..Default::default()
        },
    ];
    // K = 7 and 100 have tails after the vector loops (norm weight read as scalars there).
    let shapes = [
        (GgmlType::F16, 7),
        (GgmlType::F16, 100),
        (GgmlType::F16, 896),
        (GgmlType::F16, 1032),
        (GgmlType::F32, 36),
        (GgmlType::F32, 301),
        (GgmlType::Q8_0, 64),
        (GgmlType::Q8_0, 512),
        (GgmlType::Q8_0, 1056),
    ];
    for cfg in &configs {
        for (i, &(ty, k)) in shapes.iter().enumerate() {
            let (n, rows) = (37usize, 1 + 2 * (i % 2));
            let (bias_on, accumulate) = (i % 3 != 0, i % 2 == 0);
            let what = format!("{ty:?} k={k} rows={rows} bias={bias_on} acc={accumulate} {cfg:?}");
            let (file, deq) = gguf(ty, &[("w", n, k)], &mut rng);
            let w = GpuMatrix::upload(&gpu, &file, file.require_tensor("w").unwrap()).unwrap();
            let x = Activation::new(&gpu, "x", rows as u32 + 1, k as u32).unwrap();
            let y = Activation::new(&gpu, "y", rows as u32 + 1, n as u32).unwrap();
            let xs = x_rows(&gpu, &mut rng, &x, rows);
            let y_words = (y.buf.size() / 4) as usize;
            let y0 = if accumulate {
                rand_vec(&mut rng, y_words, 2.0)
            } else {
                vec![f32::from_bits(POISON); y_words]
            };
            write_f32(&gpu, &y.buf, &y0);
            let bias = rand_vec(&mut rng, n, 0.5);
            let bias_buf = f32_buffer(&gpu, "bias", &bias);
            let (gbuf, g) = norm_weight(&gpu, &mut rng, k);
            let dummy = storage_buffer(&gpu, "dummy", 16);
            let opts = GemvOptions {
                bias: bias_on.then_some(&bias_buf),
                accumulate,
                norm: Some(InputNorm { weight: &gbuf, eps }),
                last_row: None,
            };
            let ds = linear_with(&gpu, cfg, &w, &x, (&y, 0), &opts, &dummy).unwrap();
            assert!(ds[0].label.ends_with("+norm"), "{}", ds[0].label);
            run(&gpu, ds, rows as u32);
            let got = read_f32(&gpu, &y.buf);
            let stride = y.stride as usize;
            let mut want = Vec::new();
            for m in 0..rows {
                let xn = norm_ref_for(ty, cfg, &xs[m * k..(m + 1) * k], &g, eps);
                for j in 0..n {
                    let mut s = dot(&deq[0][j * k..(j + 1) * k], &xn);
                    if bias_on {
                        s += bias[j] as f64;
                    }
                    if accumulate {
                        s += y0[m * stride + j] as f64;
                    }
                    want.push(s);
                }
            }
            assert_close(&what, &unpad(&y, &got, rows), &want, tol_for(ty, cfg));
            for (i, (g, o)) in got.iter().zip(&y0).enumerate() {
                if i / stride >= rows || i % stride >= n {
                    assert_eq!(g.to_bits(), o.to_bits(), "{what}: y[{i}] written");
                }
            }
        }
    }
}

#[test]
fn norm_prologue_matches_the_rmsnorm_kernel() {
    // The fused prologue against the chain it replaces (rmsnorm kernel, then the GEMV):
    // same formula, same eps, f32; only the order of the sums differs.
    let gpu = gpu(None);
    let mut rng = Rng::new(52);
    for (ty, k, eps) in [
        (GgmlType::F16, 896, 1e-6),
        (GgmlType::Q8_0, 512, 1e-5),
        // A row of tiny values: eps dominates, so an eps applied differently shows.
        (GgmlType::F32, 64, 1e-2),
    ] {
        let (n, rows) = (50usize, 2usize);
        let (file, _) = gguf(ty, &[("w", n, k)], &mut rng);
        let w = GpuMatrix::upload(&gpu, &file, file.require_tensor("w").unwrap()).unwrap();
        let x = Activation::new(&gpu, "x", rows as u32, k as u32).unwrap();
        let h = Activation::new(&gpu, "h", rows as u32, k as u32).unwrap();
        let y = Activation::new(&gpu, "y", rows as u32, n as u32).unwrap();
        let scale = if eps > 1e-3 { 0.01 } else { 1.0 };
        let xs = rand_vec(&mut rng, rows * k, scale);
        write_rows(&gpu, &x, &xs, 0.0);
        let (gbuf, _) = norm_weight(&gpu, &mut rng, k);
        let dummy = storage_buffer(&gpu, "dummy", 16);
        let state = state_buffer(&gpu, 0, rows as u32, 0);
        let cfg = GemvConfig::default();
        let mut chain = vec![rmsnorm(&gpu, &state, &x, &gbuf, &h, eps, false).unwrap()];
        chain.extend(linear(&gpu, &cfg, &w, &h, (&y, 0), None, false, &dummy).unwrap());
        run(&gpu, chain, rows as u32);
        let want = to_f64(&unpad(&y, &read_f32(&gpu, &y.buf), rows));
        poison(&gpu, &y.buf);
        let opts = GemvOptions {
            norm: Some(InputNorm { weight: &gbuf, eps }),
            ..Default::default()
        };
        run(
            &gpu,
            linear_with(&gpu, &cfg, &w, &x, (&y, 0), &opts, &dummy).unwrap(),
            rows as u32,
        );
        let got = unpad(&y, &read_f32(&gpu, &y.buf), rows);
        assert_close(&format!("{ty:?} eps={eps}"), &got, &want, 1e-5);
    }
}

#[test]
fn norm_prologue_with_swiglu() {
    // Gate and up interleaved; a 4 KiB limit splits the matrix between pairs.
    for (ty, max_binding) in [(GgmlType::F16, None), (GgmlType::Q8_0, Some(4096))] {
        let gpu = gpu(max_binding);
        let mut rng = Rng::new(53);
        let (ffn, k, rows, eps) = (90usize, 64usize, 3usize, 1e-6);
        let (file, deq) = gguf(ty, &[("gate", ffn, k), ("up", ffn, k)], &mut rng);
        let parts = [
            file.require_tensor("gate").unwrap(),
            file.require_tensor("up").unwrap(),
        ];
        let w = GpuMatrix::upload_interleaved(&gpu, &file, &parts, "gate_up").unwrap();
        let x = Activation::new(&gpu, "x", rows as u32, k as u32).unwrap();
        let act = Activation::new(&gpu, "act", rows as u32 + 1, ffn as u32).unwrap();
        let xs = x_rows(&gpu, &mut rng, &x, rows);
        let (gbuf, g) = norm_weight(&gpu, &mut rng, k);
        let dummy = storage_buffer(&gpu, "dummy", 16);
        for (cols, q8_dot, f16_tiling) in [
            (2, Q8Dot::F32, DenseTiling::Rows),
            (8, Q8Dot::F32, DenseTiling::AllRows),
            (16, Q8Dot::F32, DenseTiling::Rows),
            (4, Q8Dot::I8, DenseTiling::AllRows),
        ] {
            let cfg = GemvConfig {
                cols_per_tg: cols,
                q8_cols_per_tg: cols,
                wg_size: 64,
                all_rows_wg_size: 64,
                q8_dot,
                f16_tiling,
                ..Default::default()
            };
            poison(&gpu, &act.buf);
            let norm = InputNorm { weight: &gbuf, eps };
            let ds = linear_swiglu_norm(&gpu, &cfg, &w, &x, &act, Some(norm), &dummy).unwrap();
            run(&gpu, ds, rows as u32);
            let got = read_f32(&gpu, &act.buf);
            let mut want = Vec::new();
            for m in 0..rows {
                let xn = norm_ref_for(ty, &cfg, &xs[m * k..(m + 1) * k], &g, eps);
                for j in 0..ffn {
                    let gate = dot(&deq[0][j * k..(j + 1) * k], &xn);
                    let up = dot(&deq[1][j * k..(j + 1) * k], &xn);
                    want.push(gate / (1.0 + (-gate).exp()) * up);
                }
            }
            let what = format!("{ty:?} {cfg:?}");
            assert_close(&what, &unpad(&act, &got, rows), &want, tol_for(ty, &cfg));
            assert_poisoned(&what, &got[rows * act.stride as usize..]);
        }
    }
}

#[test]
fn norm_prologue_on_the_last_row_only() {
    // The LM head: x row state.n_rows - 1 normed, logits into row 0 and nowhere else,
    // whatever row count the plan is encoded with. The first two split W into chunks, the
    // third folds its grid into z.
    let mut rng = Rng::new(54);
    for (ty, n, k, cfg, max_binding) in [
        (
            GgmlType::F16,
            300usize,
            64usize,
            GemvConfig::default(),
            Some(8192),
        ),
        (GgmlType::Q8_0, 300, 96, GemvConfig::default(), Some(8192)),
        (
            GgmlType::Q8_0,
            300,
            96,
            GemvConfig {
                q8_dot: Q8Dot::I8,
                ..Default::default()
            },
            Some(8192),
        ),
        (
            GgmlType::F16,
            2 * 65_535 + 37,
            8,
            GemvConfig {
                cols_per_tg: 2,
                q8_cols_per_tg: 2,
                wg_size: 32,
                all_rows_wg_size: 32,
                ..Default::default()
            },
            None,
        ),
    ] {
        let gpu = gpu(max_binding);
        let dummy = storage_buffer(&gpu, "dummy", 16);
        let (file, deq) = gguf(ty, &[("w", n, k)], &mut rng);
        let w = GpuMatrix::upload(&gpu, &file, file.require_tensor("w").unwrap()).unwrap();
        assert_eq!(w.chunks.len() > 1, max_binding.is_some());
        let (gbuf, g) = norm_weight(&gpu, &mut rng, k);
        let eps = 1e-5;
        let x = Activation::new(&gpu, "x", 4, k as u32).unwrap();
        let xs = x_rows(&gpu, &mut rng, &x, 4);
        let logits = Activation::new(&gpu, "logits", 2, n as u32).unwrap();
        for n_rows in [1u32, 3] {
            let what = format!("{ty:?} n={n} n_rows={n_rows} {cfg:?}");
            poison(&gpu, &logits.buf);
            let state = state_buffer(&gpu, 9, n_rows, 0);
            let opts = GemvOptions {
                norm: Some(InputNorm { weight: &gbuf, eps }),
                last_row: Some(&state),
                ..Default::default()
            };
            let ds = linear_with(&gpu, &cfg, &w, &x, (&logits, 0), &opts, &dummy).unwrap();
            run(&gpu, ds, n_rows);
            let got = read_f32(&gpu, &logits.buf);
            let m = (n_rows - 1) as usize;
            let xn = norm_ref_for(ty, &cfg, &xs[m * k..(m + 1) * k], &g, eps);
            let want: Vec<f64> = (0..n)
                .map(|j| dot(&deq[0][j * k..(j + 1) * k], &xn))
                .collect();
            assert_close(&what, &got[..n], &want, tol_for(ty, &cfg));
            assert_poisoned(&what, &got[n..]);
        }
    }
}

// ---------------------------------------------------------------------------------
// QKV GEMV + RoPE + KV append

#[derive(Clone, Debug)]
struct QkvCase {
    ty: GgmlType,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    hidden: usize,
    rows: usize,
    pos: usize,
    ctx: usize,
    theta: f32,
    max_binding: Option<u64>,
    cfg: GemvConfig,
}

impl Default for QkvCase {
    fn default() -> Self {
        Self {
            ty: GgmlType::F16,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 32,
            hidden: 64,
            rows: 1,
            pos: 0,
            ctx: 24,
            theta: 10_000.0,
            max_binding: None,
            cfg: GemvConfig::default(),
        }
    }
}

/// NEOX RoPE with transformers' rounding: the inverse frequency and the angle are f32
/// products; sin and cos are exact.
fn rope_ref(head: &mut [f64], pos: usize, theta: f32) {
    let half = head.len() / 2;
    for i in 0..half {
        let inv = (1.0 / (theta as f64).powf(2.0 * i as f64 / head.len() as f64)) as f32;
        let (s, c) = ((pos as f32 * inv) as f64).sin_cos();
        let (a, b) = (head[i], head[i + half]);
        head[i] = a * c - b * s;
        head[i + half] = b * c + a * s;
    }
}

struct QkvRun {
    /// The whole qkv activation, K cache (as (kv_head, ctx, head_dim)) and V cache.
    qkv: Vec<f32>,
    k_cache: Vec<f32>,
    v_cache: Vec<f32>,
}

struct QkvSetup {
    gpu: std::sync::Arc<Gpu>,
    w: GpuMatrix,
    /// Dequantized Q, K and V matrices.
    deq: Vec<Vec<f32>>,
    bias: Vec<f32>,
    bias_buf: wgpu::Buffer,
    g: Vec<f32>,
    gbuf: wgpu::Buffer,
    x: Activation,
    xs: Vec<f32>,
    qkv: Activation,
    k_cache: wgpu::Buffer,
    v_cache: wgpu::Buffer,
    state: wgpu::Buffer,
    dummy: wgpu::Buffer,
}

const EPS: f32 = 1e-6;

fn qkv_setup(c: &QkvCase, rng: &mut Rng) -> QkvSetup {
    let gpu = shared_gpu(c.max_binding);
    let (hd, h) = (c.head_dim, c.hidden);
    let (q_dim, kv_dim) = (c.n_heads * hd, c.n_kv_heads * hd);
    let (file, deq) = gguf(
        c.ty,
        &[("q", q_dim, h), ("k", kv_dim, h), ("v", kv_dim, h)],
        rng,
    );
    let parts = ["q", "k", "v"].map(|n| file.require_tensor(n).unwrap());
    let w = GpuMatrix::upload_stacked_grouped(&gpu, &file, &parts, "attn_qkv", hd as u32).unwrap();
    if c.max_binding.is_some() {
        assert!(w.chunks.len() > 2, "{c:?}: expected a split QKV matrix");
    }
    let width = q_dim + 2 * kv_dim;
    let bias = rand_vec(rng, width, 0.5);
    let bias_buf = f32_buffer(&gpu, "bias", &bias);
    let (gbuf, g) = norm_weight(&gpu, rng, h);
    let x = Activation::new(&gpu, "x", c.rows as u32 + 1, h as u32).unwrap();
    let xs = x_rows(&gpu, rng, &x, c.rows);
    let qkv = Activation::new(&gpu, "qkv", c.rows as u32 + 1, width as u32).unwrap();
    let cache_bytes = f16_cache_bytes(c.n_kv_heads, hd, c.ctx);
    let k_cache = storage_buffer(&gpu, "k_cache", cache_bytes);
    let v_cache = storage_buffer(&gpu, "v_cache", cache_bytes);
    let state = state_buffer(&gpu, c.pos as u32, c.rows as u32, 0);
    let dummy = storage_buffer(&gpu, "dummy", 16);
    QkvSetup {
        gpu,
        w,
        deq,
        bias,
        bias_buf,
        g,
        gbuf,
        x,
        xs,
        qkv,
        k_cache,
        v_cache,
        state,
        dummy,
    }
}

impl QkvSetup {
    fn read(&self, c: &QkvCase) -> QkvRun {
        QkvRun {
            qkv: read_f32(&self.gpu, &self.qkv.buf),
            k_cache: k_cache_from_gpu(
                &read_u32(&self.gpu, &self.k_cache),
                c.n_kv_heads,
                c.head_dim,
                c.ctx,
            ),
            v_cache: v_cache_from_gpu(&read_u32(&self.gpu, &self.v_cache)),
        }
    }

    fn poison_outputs(&self) {
        poison(&self.gpu, &self.qkv.buf);
        poison(&self.gpu, &self.k_cache);
        poison(&self.gpu, &self.v_cache);
    }

    /// The fused kernel under test.
    fn run_fused(&self, c: &QkvCase) -> QkvRun {
        self.poison_outputs();
        let inv_freq = rope_kv::inv_freq(c.theta, c.head_dim as u32);
        let target = RopeCacheTarget {
            state: &self.state,
            k_cache: &self.k_cache,
            v_cache: &self.v_cache,
            inv_freq: &inv_freq,
            n_heads: c.n_heads as u32,
            n_kv_heads: c.n_kv_heads as u32,
            head_dim: c.head_dim as u32,
            ctx: c.ctx as u32,
        };
        let norm = InputNorm {
            weight: &self.gbuf,
            eps: EPS,
        };
        let ds = linear_qkv_rope(
            &self.gpu,
            &c.cfg,
            &self.w,
            &self.x,
            Some(norm),
            &self.bias_buf,
            &self.qkv,
            &target,
            &self.dummy,
        )
        .unwrap();
        assert_eq!(ds.len(), self.w.chunks.len(), "one dispatch per chunk");
        run(&self.gpu, ds, c.rows as u32);
        self.read(c)
    }

    /// The chain the fused kernel replaces: rmsnorm, QKV GEMV, rope_kv.
    fn run_unfused(&self, c: &QkvCase) -> QkvRun {
        self.poison_outputs();
        let h = Activation::new(&self.gpu, "h", c.rows as u32 + 1, c.hidden as u32).unwrap();
        let inv_freq = rope_kv::inv_freq(c.theta, c.head_dim as u32);
        let inv_buf = f32_buffer(&self.gpu, "inv_freq", &inv_freq);
        let mut ds =
            vec![rmsnorm(&self.gpu, &self.state, &self.x, &self.gbuf, &h, EPS, false).unwrap()];
        ds.extend(
            linear(
                &self.gpu,
                &c.cfg,
                &self.w,
                &h,
                (&self.qkv, 0),
                Some(&self.bias_buf),
                false,
                &self.dummy,
            )
            .unwrap(),
        );
        let b = RopeKvBindings {
            state: &self.state,
            qkv: &self.qkv,
            k_cache: &self.k_cache,
            v_cache: &self.v_cache,
            inv_freq: &inv_buf,
        };
        let (nh, nkv, hd, ctx) = (c.n_heads, c.n_kv_heads, c.head_dim, c.ctx);
        ds.push(rope_kv(&self.gpu, &b, nh as u32, nkv as u32, hd as u32, ctx as u32).unwrap());
        run(&self.gpu, ds, c.rows as u32);
        self.read(c)
    }
}

/// Checks a fused run against the f64 reference, and that nothing else was written.
fn check_qkv(c: &QkvCase, s: &QkvSetup, got: &QkvRun) {
    let what = format!("{c:?}");
    let (hd, h) = (c.head_dim, c.hidden);
    let (q_dim, kv_dim) = (c.n_heads * hd, c.n_kv_heads * hd);
    let stride = s.qkv.stride as usize;
    let mut q_got = Vec::new();
    let mut q_want = Vec::new();
    let mut k_got = Vec::new();
    let mut k_want = Vec::new();
    let mut v_got = Vec::new();
    let mut v_want = Vec::new();
    let mut cache_written = vec![false; c.n_kv_heads * c.ctx * hd];
    for m in 0..c.rows {
        let pos = c.pos + m;
        let xn = norm_ref_for(c.ty, &c.cfg, &s.xs[m * h..(m + 1) * h], &s.g, EPS);
        let project = |w: &[f32], rows: usize, bias: &[f32]| -> Vec<f64> {
            (0..rows)
                .map(|j| dot(&w[j * h..(j + 1) * h], &xn) + bias[j] as f64)
                .collect()
        };
        let mut q = project(&s.deq[0], q_dim, &s.bias[..q_dim]);
        let mut k = project(&s.deq[1], kv_dim, &s.bias[q_dim..q_dim + kv_dim]);
        let v = project(&s.deq[2], kv_dim, &s.bias[q_dim + kv_dim..]);
        for head in q.chunks_mut(hd).chain(k.chunks_mut(hd)) {
            rope_ref(head, pos, c.theta);
        }
        q_want.extend(q);
        q_got.extend_from_slice(&got.qkv[m * stride..m * stride + q_dim]);
        k_want.extend(k);
        v_want.extend(v);
        for kvh in 0..c.n_kv_heads {
            let slot = (kvh * c.ctx + pos) * hd;
            k_got.extend_from_slice(&got.k_cache[slot..slot + hd]);
            v_got.extend_from_slice(&got.v_cache[slot..slot + hd]);
            cache_written[slot..slot + hd].fill(true);
        }
    }
    let tol = tol_for(c.ty, &c.cfg);
    assert_close(&format!("{what}: q"), &q_got, &q_want, tol);
    // The cache holds f16.
    let cache_tol = tol + F16_ROUNDING;
    assert_close(&format!("{what}: k cache"), &k_got, &k_want, cache_tol);
    assert_close(&format!("{what}: v cache"), &v_got, &v_want, cache_tol);
    // In qkv only the Q columns of the batch rows; in the caches only the new slots.
    let untouched: Vec<f32> = got
        .qkv
        .iter()
        .enumerate()
        .filter(|(i, _)| i / stride >= c.rows || i % stride >= q_dim)
        .map(|(_, v)| *v)
        .collect();
    assert_poisoned(&format!("{what}: qkv outside Q"), &untouched);
    for (name, cache) in [("k", &got.k_cache), ("v", &got.v_cache)] {
        let rest: Vec<f32> = cache
            .iter()
            .zip(&cache_written)
            .filter(|(_, w)| !**w)
            .map(|(v, _)| *v)
            .collect();
        assert_poisoned(&format!("{what}: {name} cache elsewhere"), &rest);
    }
}

fn check_qkv_case(c: &QkvCase, rng: &mut Rng) {
    let s = qkv_setup(c, rng);
    let got = s.run_fused(c);
    check_qkv(c, &s, &got);
}

#[test]
fn qkv_rope_small_positions() {
    let mut rng = Rng::new(61);
    for (ty, n_heads, n_kv_heads, head_dim, hidden, rows, pos) in [
        (GgmlType::F16, 4, 2, 32, 64, 1, 0),
        (GgmlType::F16, 4, 2, 32, 100, 3, 5),
        (GgmlType::Q8_0, 4, 1, 64, 128, 2, 0),
        (GgmlType::Q8_0, 8, 2, 16, 64, 1, 17),
        (GgmlType::F32, 2, 2, 32, 36, 2, 3),
        (GgmlType::F16, 3, 1, 20, 40, 1, 9),
    ] {
        let c = QkvCase {
            ty,
            n_heads,
            n_kv_heads,
            head_dim,
            hidden,
            rows,
            pos,
            ..Default::default()
        };
        check_qkv_case(&c, &mut rng);
    }
}

#[test]
fn qkv_rope_large_positions() {
    // Positions where the angle needs its reduction: 5000 and 30000 radians and more.
    let mut rng = Rng::new(62);
    for (ty, pos, theta) in [
        (GgmlType::F16, 5000, 10_000.0),
        (GgmlType::Q8_0, 5000, 1_000_000.0),
        (GgmlType::Q8_0, 30_000, 10_000.0),
    ] {
        let c = QkvCase {
            ty,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 64,
            hidden: 64,
            rows: 2,
            pos,
            ctx: pos + 3,
            theta,
            ..Default::default()
        };
        check_qkv_case(&c, &mut rng);
    }
}

#[test]
fn qkv_rope_qwen_half_b_shape() {
    // Qwen2.5-0.5B's attention: hidden 896, 14 query heads, 2 KV heads of 64.
    let mut rng = Rng::new(63);
    for ty in [GgmlType::F16, GgmlType::Q8_0] {
        let c = QkvCase {
            ty,
            n_heads: 14,
            n_kv_heads: 2,
            head_dim: 64,
            hidden: 896,
            rows: 1,
            pos: 4999,
            ctx: 5000,
            ..Default::default()
        };
        check_qkv_case(&c, &mut rng);
    }
}

#[test]
fn qkv_rope_every_config_and_split_bindings() {
    // Pairs must stay inside one workgroup whatever COLS_PER_TG and however the subgroups
    // share the rows; a 4 KiB binding limit splits the matrix (between heads) into chunks
    // that each find their heads.
    let mut rng = Rng::new(64);
    for cols_per_tg in [2, 4, 8, 16] {
        for wg_size in [32, 64, 256] {
            for (ty, max_binding) in [(GgmlType::F16, None), (GgmlType::Q8_0, Some(4096))] {
                let c = QkvCase {
                    ty,
                    n_heads: 4,
                    n_kv_heads: 2,
                    head_dim: 16,
                    hidden: 128,
                    rows: 2,
                    pos: 11,
                    max_binding,
                    // Q8_0 alternates the dot product form across the configs.
                    cfg: GemvConfig {
                        cols_per_tg,
                        q8_cols_per_tg: cols_per_tg,
                        wg_size,
                        all_rows_wg_size: wg_size,
                        q8_dot: if (cols_per_tg + wg_size) % 3 == 0 {
                            Q8Dot::I8
                        } else {
                            Q8Dot::F32
                        },
                        unroll: 1 << (wg_size % 3),
                        f16_tiling: if wg_size == 64 {
                            DenseTiling::Rows
                        } else {
                            DenseTiling::AllRows
                        },
                        all_rows_unroll: 1 + (cols_per_tg / 2 + wg_size / 32) % 2,
                    },
                    ..Default::default()
                };
                check_qkv_case(&c, &mut rng);
            }
        }
    }
}

#[test]
fn qkv_rope_matches_the_unfused_chain() {
    // Same inputs through rmsnorm + QKV GEMV + rope_kv: q agrees to f32 rounding (same
    // angle code, same norm formula), the caches to one f16 step (2^-10 relative) where
    // that f32 difference crosses a rounding boundary.
    let mut rng = Rng::new(65);
    for (ty, pos) in [(GgmlType::F16, 3), (GgmlType::Q8_0, 5000)] {
        let c = QkvCase {
            ty,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 64,
            hidden: 128,
            rows: 2,
            pos,
            ctx: pos + 2,
            ..Default::default()
        };
        let s = qkv_setup(&c, &mut rng);
        let fused = s.run_fused(&c);
        let unfused = s.run_unfused(&c);
        let q_dim = c.n_heads * c.head_dim;
        let stride = s.qkv.stride as usize;
        let q = |r: &QkvRun| -> Vec<f32> {
            (0..c.rows)
                .flat_map(|m| r.qkv[m * stride..m * stride + q_dim].to_vec())
                .collect()
        };
        let written = |cache: &[f32]| -> Vec<f32> {
            cache
                .iter()
                .copied()
                .filter(|v| v.to_bits() != POISON)
                .collect()
        };
        let what = format!("{ty:?} pos={pos}");
        assert_close(
            &format!("{what}: q"),
            &q(&fused),
            &to_f64(&q(&unfused)),
            1e-5,
        );
        for (name, a, b) in [
            ("k", &fused.k_cache, &unfused.k_cache),
            ("v", &fused.v_cache, &unfused.v_cache),
        ] {
            let (a, b) = (written(a), written(b));
            assert_eq!(
                a.len(),
                c.rows * c.n_kv_heads * c.head_dim,
                "{what}: {name}"
            );
            assert_close(
                &format!("{what}: {name} cache"),
                &a,
                &to_f64(&b),
                1e-5 + 2.0 * F16_ROUNDING,
            );
        }
    }
}

#[test]
fn qkv_rope_refuses_what_it_cannot_fuse() {
    let gpu = gpu(Some(4096));
    let mut rng = Rng::new(66);
    let (hd, h) = (16usize, 96usize);
    let (file, _) = gguf(
        GgmlType::F16,
        &[("q", 4 * hd, h), ("k", 2 * hd, h), ("v", 2 * hd, h)],
        &mut rng,
    );
    let parts = ["q", "k", "v"].map(|n| file.require_tensor(n).unwrap());
    // 4 KiB of 192-byte rows: plain chunks of 21 rows, which cut heads of 16.
    let plain = GpuMatrix::upload_stacked(&gpu, &file, &parts, "qkv").unwrap();
    let why = qkv_rope_unsupported(&gpu, &plain, 4, 2, 16).expect("split inside a head");
    assert!(why.contains("inside a head"), "{why}");
    let grouped = GpuMatrix::upload_stacked_grouped(&gpu, &file, &parts, "qkv", 16).unwrap();
    assert!(grouped.chunks.len() > 1);
    assert!(grouped
        .chunks
        .iter()
        .all(|c| c.first_row % 16 == 0 && c.rows % 16 == 0));
    assert!(qkv_rope_unsupported(&gpu, &grouped, 4, 2, 16).is_none());
    let why = qkv_rope_unsupported(&gpu, &grouped, 4, 1, 16).expect("wrong row count");
    assert!(why.contains("rows"), "{why}");
    // The kernel builder refuses too, rather than rotating the wrong pairs.
    let x = Activation::new(&gpu, "x", 1, h as u32).unwrap();
    let qkv = Activation::new(&gpu, "qkv", 1, 8 * hd as u32).unwrap();
    let (gbuf, _) = norm_weight(&gpu, &mut rng, h);
    let dummy = storage_buffer(&gpu, "dummy", 16);
    let inv_freq = rope_kv::inv_freq(10_000.0, hd as u32);
    let target = RopeCacheTarget {
        state: &dummy,
        k_cache: &dummy,
        v_cache: &dummy,
        inv_freq: &inv_freq,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: hd as u32,
        ctx: 1,
    };
    let norm = InputNorm {
        weight: &gbuf,
        eps: EPS,
    };
    let cfg = GemvConfig::default();
    let r = linear_qkv_rope(
        &gpu,
        &cfg,
        &plain,
        &x,
        Some(norm),
        &dummy,
        &qkv,
        &target,
        &dummy,
    );
    assert!(r.is_err());
}
