//! Decode (split over positions) and prefill (causal flash) attention against an f64
//! CPU reference. Cache slots past the live range hold NaN, so a kernel that reads a
//! future or stale position fails; outputs start poisoned, so a row or head the kernel
//! forgot reads back as NaN, and rows it must not touch must stay poisoned.

mod common;

use common::*;
// One value rounded to f16 and back (what the cache holds), as the CPU reference rounds it.
use metallic::gguf::GgmlType;
use metallic::gpu::{storage_buffer, Gpu};
use metallic::kernels::attention::{
    decode, decode_partial_only, decode_splits, decode_tile_keys, prefill, prefill_coop,
    prefill_coop_with, prefill_with, AttentionBindings, AttnShape, DecodeScratch, PrefillPath,
    PrefillTiles, MAX_SPLITS,
};
use metallic::kernels::attention_coop::CoopSplit;
use metallic::kernels::matmul_gemv::{
    attn_input_max_keys, linear_residual_attn, AttnInput, GemvConfig, ATTN_MAX_LIVE_CHUNKS,
};
use metallic::reference::round_f16 as f16_round;
use metallic::synthetic::Rng;
use metallic::tensor::Activation;

/// Causal softmax attention in f64: batch row m at position pos + m sees cache
/// positions 0..=pos + m. `q` is (rows, n_heads * hd); caches are
/// (n_kv_heads, ctx, head_dim). Returns (rows, n_heads * hd).
fn attention_ref(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    s: &AttnShape,
    pos: usize,
    rows: usize,
) -> Vec<f64> {
    let (n_heads, hd, ctx) = (s.n_heads as usize, s.head_dim as usize, s.ctx as usize);
    let group = n_heads / s.n_kv_heads as usize;
    let scale = 1.0 / (hd as f64).sqrt();
    let mut out = Vec::with_capacity(rows * n_heads * hd);
    for m in 0..rows {
        let n_keys = pos + m + 1;
        for h in 0..n_heads {
            let slot = |t: usize| ((h / group) * ctx + t) * hd;
            let qh = &q[(m * n_heads + h) * hd..][..hd];
            let scores: Vec<f64> = (0..n_keys)
                .map(|t| {
                    let k = &kc[slot(t)..slot(t) + hd];
                    scale
                        * qh.iter()
                            .zip(k)
                            .map(|(&a, &b)| a as f64 * b as f64)
                            .sum::<f64>()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let p: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = p.iter().sum();
            for d in 0..hd {
                let acc: f64 = (0..n_keys).map(|t| p[t] * vc[slot(t) + d] as f64).sum();
                out.push(acc / sum);
            }
        }
    }
    out
}

/// KV caches (GPU layouts, f16) with random values at positions < `live` and NaN beyond,
/// plus the (n_kv_heads, ctx, head_dim) copies the reference reads: the same values,
/// exact in f16, so the comparison measures the kernels, not the rounding.
struct Caches {
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    k_host: Vec<f32>,
    v_host: Vec<f32>,
}

fn caches(gpu: &Gpu, rng: &mut Rng, s: &AttnShape, live: usize) -> Caches {
    caches_with_gain(gpu, rng, s, live, |_| 1.0)
}

/// [`caches`] with key t scaled by `k_gain(t)`.
fn caches_with_gain(
    gpu: &Gpu,
    rng: &mut Rng,
    s: &AttnShape,
    live: usize,
    k_gain: impl Fn(usize) -> f32,
) -> Caches {
    let (n_kv, hd, ctx) = (s.n_kv_heads as usize, s.head_dim as usize, s.ctx as usize);
    let mut k_host = vec![f32::from_bits(POISON); n_kv * ctx * hd];
    let mut v_host = k_host.clone();
    for kvh in 0..n_kv {
        let at = kvh * ctx * hd;
        for (is_k, cache) in [(true, &mut k_host), (false, &mut v_host)] {
            let vals = rand_vec(rng, live * hd, 1.0);
            for (i, (dst, &x)) in cache[at..at + live * hd].iter_mut().zip(&vals).enumerate() {
                let gain = if is_k { k_gain(i / hd) } else { 1.0 };
                *dst = f16_round(x * gain);
            }
        }
    }
    Caches {
        k: u32_buffer(gpu, "k_cache", &k_cache_to_gpu(&k_host, n_kv, hd, ctx)),
        v: u32_buffer(gpu, "v_cache", &v_cache_to_gpu(&v_host)),
        k_host,
        v_host,
    }
}

/// GQA ratios 1, 2, 7 and 18 (more than one 8-head block per kv head), head_dim 64 and
/// 128, plus two odd sizes (256, and 20: dims not a multiple of the thread tiles).
const SHAPES: &[(u32, u32, u32)] = &[
    (4, 4, 64),
    (4, 2, 128),
    (14, 2, 64),
    (7, 1, 128),
    (18, 1, 64),
    (2, 1, 256),
    (6, 3, 20),
];

fn shape(n_heads: u32, n_kv_heads: u32, head_dim: u32, ctx: u32) -> AttnShape {
    AttnShape {
        n_heads,
        n_kv_heads,
        head_dim,
        ctx,
    }
}

// ---------------------------------------------------------------------------------
// Decode

/// Runs decode at each of `positions` in turn on one scratch buffer (so stale
/// partials of a longer context are present) and checks row 0.
fn check_decode(gpu: &Gpu, rng: &mut Rng, s: &AttnShape, n_splits: Option<u32>, positions: &[u32]) {
    let live = *positions.iter().max().unwrap() as usize + 1;
    let c = caches(gpu, rng, s, live);
    let q_dim = s.n_heads * s.head_dim;
    // Two rows: q's padding and row 1 are NaN (decode must read row 0 only), and row 1
    // of out must stay poisoned.
    let q = Activation::new(gpu, "q", 2, q_dim).unwrap();
    let out = Activation::new(gpu, "out", 2, q_dim).unwrap();
    let scratch = match n_splits {
        Some(n) => DecodeScratch::with_splits(gpu, s, n).unwrap(),
        None => DecodeScratch::new(gpu, s).unwrap(),
    };
    poison(gpu, &scratch.buf);
    for &pos in positions {
        let what = format!(
            "decode heads={}/{} hd={} ctx={} splits={} pos={pos}",
            s.n_heads, s.n_kv_heads, s.head_dim, s.ctx, scratch.n_splits
        );
        // q scaled up so the softmax is far from uniform.
        let qs = rand_vec(rng, q_dim as usize, 4.0);
        write_rows(gpu, &q, &qs, f32::from_bits(POISON));
        poison(gpu, &out.buf);
        let state = state_buffer(gpu, pos, 1, 0);
        let b = AttentionBindings {
            state: &state,
            q: &q,
            k_cache: &c.k,
            v_cache: &c.v,
            out: &out,
        };
        let d = decode(gpu, &b, s, &scratch).unwrap();
        assert_eq!(d.len(), 2);
        run(gpu, d, 1);
        let got = read_f32(gpu, &out.buf);
        let want = attention_ref(&qs, &c.k_host, &c.v_host, s, pos as usize, 1);
        assert_close(&what, &unpad(&out, &got, 1), &want, 1e-4);
        let stride = out.stride as usize;
        assert_poisoned(&format!("{what}: row 1"), &got[stride..]);
        assert_poisoned(
            &format!("{what}: row 0 padding"),
            &got[q_dim as usize..stride],
        );
    }
}

#[test]
fn decode_splits_default() {
    // ctx 4160: one chunk per key tile at full context (65 of 64 keys at head_dim 20,
    // 130 of 32 at 64, 256 at 128); pos crosses tile boundaries (15 | 16, 31 | 32,
    // 63 | 64) and reaches the last, partial chunk.
    let gpu = gpu(None);
    let mut rng = Rng::new(51);
    assert_eq!(decode_tile_keys(20), 64);
    assert_eq!(decode_tile_keys(64), 32);
    assert_eq!(decode_tile_keys(128), 16);
    assert_eq!(decode_tile_keys(256), 8);
    assert_eq!(decode_splits(4160, 20), 65);
    assert_eq!(decode_splits(4160, 64), 130);
    assert_eq!(decode_splits(4160, 128), MAX_SPLITS);
    assert_eq!(decode_splits(1, 64), 1);
    assert_eq!(decode_splits(1 << 20, 20), MAX_SPLITS);
    for &(h, kv, hd) in SHAPES {
        let s = shape(h, kv, hd, 4160);
        check_decode(
            &gpu,
            &mut rng,
            &s,
            None,
            &[4100, 0, 1, 15, 16, 31, 32, 63, 64, 200, 1000, 4159],
        );
    }
}

/// The output projection with the attention's combine folded in: decode_partial's
/// per-chunk partials merged inside the GEMV (`linear_residual_attn`), y += W attn. The
/// scratch is poisoned before every step, so a merge that reads a dead chunk fails.
#[test]
fn decode_folded_into_the_output_projection() {
    let gpu = gpu(None);
    let mut rng = Rng::new(53);
    let dummy = storage_buffer(&gpu, "dummy", 16);
    let cfg = GemvConfig::default();
    // ctx 600: 19 splits of 32 keys at head_dim 64, 38 of 16 at 128, 10 of 64 at 20, so
    // the fold is valid up to 128, 64 and 256 keys.
    for &(h, kv, hd) in &[(14, 2, 64), (7, 1, 128), (8, 4, 20)] {
        let s = shape(h, kv, hd, 600);
        let kt = decode_tile_keys(hd);
        let scratch = DecodeScratch::new(&gpu, &s).unwrap();
        let max_keys = attn_input_max_keys(&scratch, ATTN_MAX_LIVE_CHUNKS);
        assert_eq!(max_keys, ATTN_MAX_LIVE_CHUNKS * kt);
        let c = caches(&gpu, &mut rng, &s, max_keys as usize);
        let q_dim = s.n_heads * s.head_dim;
        let q = Activation::new(&gpu, "q", 1, q_dim).unwrap();
        let attn = Activation::new(&gpu, "attn", 1, q_dim).unwrap();
        let n_out = 72;
        let y = Activation::new(&gpu, "y", 1, n_out).unwrap();
        for ty in [GgmlType::F16, GgmlType::Q8_0] {
            let (w, w_host) = matrix(
                &gpu,
                ty,
                n_out,
                q_dim,
                &rand_vec(&mut rng, (n_out * q_dim) as usize, 0.5),
            );
            for pos in [max_keys - 1, 0, 1, kt - 1, kt, 2 * kt + 3, max_keys - 2] {
                let what = format!("fold heads={h}/{kv} hd={hd} {ty:?} pos={pos}");
                let qs = rand_vec(&mut rng, q_dim as usize, 4.0);
                write_rows(&gpu, &q, &qs, f32::from_bits(POISON));
                let residual = rand_vec(&mut rng, n_out as usize, 1.0);
                write_rows(&gpu, &y, &residual, f32::from_bits(POISON));
                poison(&gpu, &scratch.buf);
                poison(&gpu, &attn.buf);
                let state = state_buffer(&gpu, pos, 1, 0);
                let b = AttentionBindings {
                    state: &state,
                    q: &q,
                    k_cache: &c.k,
                    v_cache: &c.v,
                    out: &attn,
                };
                let mut d = decode_partial_only(&gpu, &b, &s, &scratch).unwrap();
                assert_eq!(d.len(), 1);
                let input = AttnInput {
                    scratch: &scratch,
                    state: &state,
                };
                d.extend(linear_residual_attn(&gpu, &cfg, &w, &input, &attn, &y, &dummy).unwrap());
                run(&gpu, d, 1);
                let a = attention_ref(&qs, &c.k_host, &c.v_host, &s, pos as usize, 1);
                let want: Vec<f64> = (0..n_out as usize)
                    .map(|r| {
                        let row = &w_host[r * q_dim as usize..(r + 1) * q_dim as usize];
                        residual[r] as f64
                            + row
                                .iter()
                                .zip(&a)
                                .map(|(&wv, &av)| wv as f64 * av)
                                .sum::<f64>()
                    })
                    .collect();
                let got = read_f32(&gpu, &y.buf);
                assert_close(&what, &unpad(&y, &got, 1), &want, 1e-4);
                // The attention output itself is never written on this path.
                assert_poisoned(&format!("{what}: attn"), &read_f32(&gpu, &attn.buf));
            }
        }
    }
}

#[test]
fn decode_long_chunks() {
    // Few splits: each live chunk spans several key tiles (the online softmax across
    // tiles), and the chunk length changes with pos (with 64-key tiles, 200 / 3 -> 128,
    // 1000 / 3 -> 384). Head dims 64, 128 and 20 give tiles of 32, 16 and 64 keys.
    let gpu = gpu(None);
    let mut rng = Rng::new(52);
    for &(h, kv, hd) in &[(14, 2, 64), (4, 2, 128), (6, 3, 20)] {
        for splits in [1, 3] {
            let s = shape(h, kv, hd, 1100);
            check_decode(
                &gpu,
                &mut rng,
                &s,
                Some(splits),
                &[1000, 0, 63, 64, 200, 191, 1099],
            );
        }
    }
}

#[test]
fn decode_rejects_bad_shapes() {
    let gpu = gpu(None);
    let s = shape(4, 3, 64, 64);
    let q = Activation::new(&gpu, "q", 1, 256).unwrap();
    let out = Activation::new(&gpu, "out", 1, 256).unwrap();
    let buf = storage_buffer(&gpu, "cache", 4 * 64 * 64 * 4);
    let state = state_buffer(&gpu, 0, 1, 0);
    let b = AttentionBindings {
        state: &state,
        q: &q,
        k_cache: &buf,
        v_cache: &buf,
        out: &out,
    };
    let ok = shape(4, 2, 64, 64);
    let scratch = DecodeScratch::new(&gpu, &ok).unwrap();
    assert!(
        decode(&gpu, &b, &s, &scratch).is_err(),
        "4 heads over 3 kv heads"
    );
    assert!(
        decode(&gpu, &b, &shape(4, 2, 62, 64), &scratch).is_err(),
        "hd 62"
    );
    assert!(
        decode(&gpu, &b, &shape(2, 2, 64, 64), &scratch).is_err(),
        "scratch shape"
    );
    assert!(DecodeScratch::with_splits(&gpu, &ok, MAX_SPLITS + 1).is_err());
    assert!(decode(&gpu, &b, &ok, &scratch).is_ok());
}

// ---------------------------------------------------------------------------------
// Prefill

/// Which prefill kernel a check runs: the default choice, the f32 tiles, or the
/// cooperative-matrix kernel.
#[derive(Clone, Copy, Debug)]
enum Kernel {
    Default,
    Tiles(PrefillTiles),
    Coop,
    /// The coop kernel with at most this many query heads per workgroup.
    CoopHeads(u32),
}

fn check_prefill(gpu: &Gpu, rng: &mut Rng, s: &AttnShape, kernel: Kernel, pos: u32, rows: u32) {
    check_prefill_gain(gpu, rng, s, kernel, pos, rows, |_| 1.0);
}

/// [`check_prefill`] with key t scaled by `k_gain(t)`.
fn check_prefill_gain(
    gpu: &Gpu,
    rng: &mut Rng,
    s: &AttnShape,
    kernel: Kernel,
    pos: u32,
    rows: u32,
    k_gain: impl Fn(usize) -> f32,
) {
    let what = format!(
        "prefill heads={}/{} hd={} {kernel:?} pos={pos} rows={rows}",
        s.n_heads, s.n_kv_heads, s.head_dim
    );
    let c = caches_with_gain(gpu, rng, s, (pos + rows) as usize, k_gain);
    let q_dim = s.n_heads * s.head_dim;
    // One spare row each: q's (and q's padding) is NaN, out's must stay poisoned.
    let q = Activation::new(gpu, "q", rows + 1, q_dim).unwrap();
    let out = Activation::new(gpu, "out", rows + 1, q_dim).unwrap();
    let qs = rand_vec(rng, (rows * q_dim) as usize, 4.0);
    write_rows(gpu, &q, &qs, f32::from_bits(POISON));
    poison(gpu, &out.buf);
    let state = state_buffer(gpu, pos, rows, 0);
    let b = AttentionBindings {
        state: &state,
        q: &q,
        k_cache: &c.k,
        v_cache: &c.v,
        out: &out,
    };
    let d = match kernel {
        Kernel::Tiles(t) => prefill_with(gpu, &b, s, t).unwrap(),
        Kernel::Default => prefill(gpu, &b, s).unwrap(),
        Kernel::Coop => prefill_coop(gpu, &b, s).unwrap(),
        Kernel::CoopHeads(n) => {
            let split = CoopSplit::with_heads(s.n_heads / s.n_kv_heads, n);
            prefill_coop_with(gpu, &b, s, split).unwrap()
        }
    };
    run(gpu, d, rows);
    let got = read_f32(gpu, &out.buf);
    let want = attention_ref(&qs, &c.k_host, &c.v_host, s, pos as usize, rows as usize);
    // The coop kernel rounds q and the probabilities to f16 (2^-11 relative each).
    let coop = match kernel {
        Kernel::Coop | Kernel::CoopHeads(_) => true,
        Kernel::Tiles(_) => false,
        Kernel::Default => PrefillPath::choose(gpu, s).unwrap() == PrefillPath::Coop,
    };
    let tol = if coop { 4e-3 } else { 1e-4 };
    assert_close(&what, &unpad(&out, &got, rows as usize), &want, tol);
    let stride = out.stride as usize;
    let outside: Vec<f32> = got
        .iter()
        .enumerate()
        .filter(|(i, _)| i / stride >= rows as usize || i % stride >= q_dim as usize)
        .map(|(_, v)| *v)
        .collect();
    assert_poisoned(&format!("{what}: spare row and padding"), &outside);
}

#[test]
fn prefill_default_tiles() {
    // From pos 0 and chunked (pos > 0, not a tile multiple); rows within one row tile,
    // exactly one, and across several with a partial last one.
    let gpu = gpu(None);
    let mut rng = Rng::new(61);
    for &(h, kv, hd) in SHAPES {
        let s = shape(h, kv, hd, 400);
        for (pos, rows) in [
            (0, 1),
            (0, 5),
            (0, 64),
            (0, 130),
            (37, 64),
            (201, 130),
            (258, 1),
            (250, 5),
        ] {
            check_prefill(&gpu, &mut rng, &s, Kernel::Default, pos, rows);
        }
    }
}

#[test]
fn prefill_tile_variants() {
    // Every score-step path (keys per thread 1, 2, 4) and output split (1 to 4 dim
    // chunks per thread), at sizes that fit 32 KiB of workgroup memory. 24-row tiles
    // give 48 threads, so the K and V staging loops end on a partial step (as the
    // H100's 48,32,8 default does at head_dim 128).
    let gpu = gpu(None);
    let mut rng = Rng::new(62);
    let t = |bq, bk, tx| Kernel::Tiles(PrefillTiles { bq, bk, tx });
    for (hd, tiles) in [
        (64, t(32, 32, 8)),
        (64, t(16, 16, 4)),
        (64, t(8, 8, 8)),
        (64, t(4, 32, 16)),
        (64, t(24, 32, 8)),
        (128, t(16, 16, 8)),
        (128, t(24, 16, 8)),
        (128, t(12, 32, 8)),
        (128, t(8, 32, 16)),
        (256, t(4, 16, 16)),
        (20, t(8, 8, 2)),
    ] {
        let s = shape(7, 1, hd, 300);
        for (pos, rows) in [(0, 1), (0, 37), (101, 70)] {
            check_prefill(&gpu, &mut rng, &s, tiles, pos, rows);
        }
    }
}

#[test]
fn prefill_coop_matches_reference() {
    // Every head_dim the kernel takes (each output-accumulator guard), GQA groups of 1 to
    // 7 and 18 with the default splits (whole groups with 8 or 1 blocks of 16 positions,
    // groups cut in 2 to 4 parts where there are few KV heads), rows within one 16-row
    // block, exactly one, across several with a partial last one, from pos 0 and from a
    // pos that is not a multiple of the 32-key tile. Then explicit splits: whole groups of
    // 7, 3 and 2 heads (1, 2 and 4 blocks), and groups cut in parts of 3 and 1 heads.
    let gpu = gpu(None);
    if !gpu.coop_matrix_f16 {
        eprintln!(
            "note: '{}' has no 16x16 f16 cooperative matrices: coop prefill attention skipped",
            gpu.info.name
        );
        assert_eq!(
            PrefillPath::choose(&gpu, &shape(14, 2, 64, 400)).unwrap(),
            PrefillPath::Tiled,
            "the default path without cooperative matrices"
        );
        return;
    }
    let mut rng = Rng::new(63);
    for (h, kv, hd) in [
        (14, 2, 64),
        (28, 4, 128),
        (4, 4, 32),
        (6, 2, 48),
        (7, 7, 80),
        (2, 1, 96),
        (3, 1, 112),
        (18, 1, 64),
    ] {
        let s = shape(h, kv, hd, 400);
        for (pos, rows) in [
            (0, 1),
            (0, 17),
            (0, 64),
            (0, 130),
            (37, 64),
            (201, 130),
            (250, 5),
        ] {
            check_prefill(&gpu, &mut rng, &s, Kernel::Coop, pos, rows);
        }
    }
    for (h, kv, hd, heads) in [
        (14, 2, 64, 8),
        (14, 2, 64, 3),
        (6, 2, 48, 8),
        (2, 1, 96, 8),
        (28, 4, 128, 3),
        (6, 2, 48, 1),
    ] {
        let s = shape(h, kv, hd, 400);
        for (pos, rows) in [(0, 17), (37, 64), (201, 130)] {
            check_prefill(&gpu, &mut rng, &s, Kernel::CoopHeads(heads), pos, rows);
        }
    }
    // Keys that grow with their position (6x over 330 keys): rows' scores climb tile
    // after tile, so the kernel's running max moves several times (its slow path scales
    // O), at different tiles for different rows and heads of one workgroup. (Gains are
    // modest because q is rounded to f16: the scores' error grows with their size.) With the gain ramping over
    // the first 64 keys only, it moves early and then settles. Then a first key far
    // larger than the rest: the rows whose q it matches hold it as their max from the
    // first tile on (an attention sink), the others move past it.
    for (h, kv, hd) in [(14, 2, 64), (28, 4, 128), (6, 2, 48)] {
        let s = shape(h, kv, hd, 400);
        for (pos, rows) in [(0, 130), (201, 64)] {
            check_prefill_gain(&gpu, &mut rng, &s, Kernel::Coop, pos, rows, |t| {
                1.0 + t as f32 / 64.0
            });
            check_prefill_gain(&gpu, &mut rng, &s, Kernel::Coop, pos, rows, |t| {
                1.0 + t.min(64) as f32 / 16.0
            });
            check_prefill_gain(&gpu, &mut rng, &s, Kernel::Coop, pos, rows, |t| {
                if t == 0 {
                    6.0
                } else {
                    1.0
                }
            });
        }
    }
    // A cache of 401 positions cannot be read as vec4s of keys: the default path takes
    // the f32 tiles, and the coop kernel refuses it.
    let s = shape(14, 2, 64, 401);
    check_prefill(&gpu, &mut rng, &s, Kernel::Default, 100, 70);
    let q = Activation::new(&gpu, "q", 4, 14 * 64).unwrap();
    let c = caches(&gpu, &mut rng, &s, 4);
    let state = state_buffer(&gpu, 0, 4, 0);
    let b = AttentionBindings {
        state: &state,
        q: &q,
        k_cache: &c.k,
        v_cache: &c.v,
        out: &q,
    };
    let err = match prefill_coop(&gpu, &b, &s) {
        Ok(_) => panic!("prefill_coop accepted ctx 401"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("multiple of 4 positions"), "{err}");
}

#[test]
fn prefill_tiles_fit_the_device() {
    let gpu = gpu(None);
    for hd in [8, 20, 64, 128, 256] {
        let t = PrefillTiles::for_head_dim(&gpu, hd).unwrap();
        assert!(
            t.workgroup_bytes(hd) <= gpu.limits.max_compute_workgroup_storage_size as u64,
            "hd {hd}: {t:?}"
        );
    }
    let bad = PrefillTiles {
        bq: 6,
        bk: 32,
        tx: 8,
    };
    assert!(bad.validate(&gpu, 64).is_err(), "bq not a multiple of 4");
    let bad = PrefillTiles {
        bq: 8,
        bk: 24,
        tx: 8,
    };
    assert!(bad.validate(&gpu, 64).is_err(), "bk not tx, 2 tx or 4 tx");
    let bad = PrefillTiles {
        bq: 8,
        bk: 8,
        tx: 4,
    };
    assert!(bad.validate(&gpu, 128).is_err(), "32 dims per thread");
}
