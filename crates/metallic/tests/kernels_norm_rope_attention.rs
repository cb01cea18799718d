//! RMSNorm and RoPE + KV-cache append against f64 CPU references (attention: see
//! kernels_attention.rs).

mod common;

use common::*;
// One value rounded to f16 and back (what the cache holds), as the CPU reference rounds it.
use metallic::gpu::{storage_buffer, Gpu};
use metallic::kernels::rmsnorm::rmsnorm;
use metallic::kernels::rope_kv::{rope_kv, RopeKvBindings};
use metallic::reference;
use metallic::reference::round_f16 as f16_round;
use metallic::synthetic::Rng;
use metallic::tensor::Activation;

// ---------------------------------------------------------------------------------
// RMSNorm

/// An RMSNorm input of `rows` rows (plus a spare) of length `n`, rows of different
/// magnitude so a row mixed up with another shows, and a norm weight near 1: (x, its
/// values, the weight, its buffer).
fn norm_inputs(
    gpu: &Gpu,
    rng: &mut Rng,
    n: u32,
    rows: u32,
) -> (Activation, Vec<f32>, Vec<f32>, wgpu::Buffer) {
    let x = Activation::new(gpu, "x", rows + 1, n).unwrap();
    let xs: Vec<f32> = (0..rows)
        .flat_map(|r| rand_vec(rng, n as usize, 0.5 + r as f32))
        .collect();
    write_rows(gpu, &x, &xs, 0.0);
    let weight: Vec<f32> = rand_vec(rng, n as usize, 0.3)
        .iter()
        .map(|v| v + 1.0)
        .collect();
    let wbuf = f32_buffer(gpu, "w", &weight);
    (x, xs, weight, wbuf)
}

#[test]
fn rmsnorm_rows() {
    let gpu = gpu(None);
    let mut rng = Rng::new(21);
    let eps = 1e-6;
    for n in [64u32, 896, 1000] {
        for rows in [1u32, 3] {
            let what = format!("rmsnorm n={n} rows={rows}");
            let (x, xs, weight, wbuf) = norm_inputs(&gpu, &mut rng, n, rows);
            let y = Activation::new(&gpu, "y", rows + 1, n).unwrap();
            poison(&gpu, &y.buf);
            let state = state_buffer(&gpu, 0, rows, 0);
            let d = rmsnorm(&gpu, &state, &x, &wbuf, &y, eps, false).unwrap();
            run(&gpu, vec![d], rows);
            let got = read_f32(&gpu, &y.buf);
            let want: Vec<f64> = xs
                .chunks(n as usize)
                .flat_map(|row| to_f64(&reference::rms_norm(row, &weight, eps)))
                .collect();
            assert_close(&what, &unpad(&y, &got, rows as usize), &want, 1e-4);
            // Padding and the spare row stay poisoned.
            let stride = y.stride as usize;
            let outside: Vec<f32> = got
                .iter()
                .enumerate()
                .filter(|(i, _)| i / stride >= rows as usize || i % stride >= n as usize)
                .map(|(_, v)| *v)
                .collect();
            assert_poisoned(&what, &outside);
        }
    }
}

#[test]
fn rmsnorm_f16_output() {
    // The prefill GEMMs' input in f16: the f32 result rounded once (relative error 2^-11
    // on top of the f32 kernel's), pairs of halves per word, padding left alone.
    let gpu = gpu(None);
    let mut rng = Rng::new(23);
    let eps = 1e-6;
    for n in [64u32, 896, 1000] {
        for rows in [1u32, 3] {
            let what = format!("rmsnorm f16 n={n} rows={rows}");
            let (x, xs, weight, wbuf) = norm_inputs(&gpu, &mut rng, n, rows);
            let y = Activation::new_f16(&gpu, "y", rows + 1, n).unwrap();
            write_rows_f16(&gpu, &y, &[], 1234.0);
            let state = state_buffer(&gpu, 0, rows, 0);
            let d = rmsnorm(&gpu, &state, &x, &wbuf, &y, eps, false).unwrap();
            run(&gpu, vec![d], rows);
            let got = read_f16(&gpu, &y.buf);
            let want: Vec<f64> = xs
                .chunks(n as usize)
                .flat_map(|row| to_f64(&reference::rms_norm(row, &weight, eps)))
                .collect();
            assert_close(&what, &unpad(&y, &got, rows as usize), &want, 1e-3);
            let stride = y.stride as usize;
            for (i, v) in got.iter().enumerate() {
                if i / stride >= rows as usize || i % stride >= n as usize {
                    assert_eq!(
                        *v, 1234.0,
                        "{what}: element {i} outside the rows was written"
                    );
                }
            }
        }
    }
    // Pairs of halves per word: an odd row length is refused.
    let x = Activation::new(&gpu, "x", 1, 7).unwrap();
    let y = Activation::new_f16(&gpu, "y", 1, 7).unwrap();
    let state = state_buffer(&gpu, 0, 1, 0);
    let err = rmsnorm(&gpu, &state, &x, &x.buf, &y, eps, false)
        .err()
        .expect("odd n");
    assert!(err.to_string().contains("even"), "{err}");
}

#[test]
fn rmsnorm_last_row_only() {
    // Reads row n_rows - 1 (from the state buffer), writes that row and nothing else.
    let gpu = gpu(None);
    let mut rng = Rng::new(22);
    let eps = 1e-5;
    for n in [64u32, 896, 1000] {
        for n_rows in [1u32, 3] {
            let what = format!("rmsnorm last_row_only n={n} n_rows={n_rows}");
            let cap = 4;
            let x = Activation::new(&gpu, "x", cap, n).unwrap();
            let y = Activation::new(&gpu, "y", cap, n).unwrap();
            let xs: Vec<f32> = (0..cap)
                .flat_map(|r| rand_vec(&mut rng, n as usize, 0.5 + r as f32))
                .collect();
            write_rows(&gpu, &x, &xs, 0.0);
            let weight: Vec<f32> = rand_vec(&mut rng, n as usize, 0.3)
                .iter()
                .map(|v| v + 1.0)
                .collect();
            let wbuf = f32_buffer(&gpu, "w", &weight);
            poison(&gpu, &y.buf);
            let state = state_buffer(&gpu, 7, n_rows, 0);
            let d = rmsnorm(&gpu, &state, &x, &wbuf, &y, eps, true).unwrap();
            run(&gpu, vec![d], n_rows);
            let got = read_f32(&gpu, &y.buf);
            let last = (n_rows - 1) as usize;
            let want = to_f64(&reference::rms_norm(
                &xs[last * n as usize..][..n as usize],
                &weight,
                eps,
            ));
            let stride = y.stride as usize;
            let row = &got[last * stride..last * stride + n as usize];
            assert_close(&what, row, &want, 1e-4);
            assert_poisoned(&what, &got[..last * stride]);
            assert_poisoned(&what, &got[last * stride + n as usize..]);
        }
    }
}

// ---------------------------------------------------------------------------------
// RoPE + KV append

struct RopeCase {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    rows: u32,
    pos: u32,
    ctx: u32,
    theta: f32,
}

/// HF's rounding: inverse frequency rounded to f32, angle = f32(pos) * inv_freq in f32,
/// then exact sin / cos. Differs from `reference::rope_neox` (f64 angle) by up to
/// ~pos * 2^-24 radians.
fn rope_hf(head: &mut [f32], pos: u32, theta: f32) {
    let half = head.len() / 2;
    for i in 0..half {
        let inv = (1.0 / (theta as f64).powf(2.0 * i as f64 / head.len() as f64)) as f32;
        let angle = (pos as f32 * inv) as f64;
        let (s, c) = angle.sin_cos();
        let (a, b) = (head[i] as f64, head[i + half] as f64);
        head[i] = (a * c - b * s) as f32;
        head[i + half] = (b * c + a * s) as f32;
    }
}

fn check_rope(gpu: &Gpu, c: &RopeCase, rng: &mut Rng) {
    let what = format!(
        "rope_kv heads={}/{} hd={} rows={} pos={}",
        c.n_heads, c.n_kv_heads, c.head_dim, c.rows, c.pos
    );
    let hd = c.head_dim as usize;
    let (q_dim, kv_dim) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
    let rows = c.rows as usize;
    // One fused row per batch row: Q | K | V, as the QKV GEMV writes it.
    let (qd, kvd) = (q_dim as usize, kv_dim as usize);
    let qkv = Activation::new(gpu, "qkv", c.rows, q_dim + 2 * kv_dim).unwrap();
    let qs = rand_vec(rng, rows * qd, 1.0);
    let ks = rand_vec(rng, rows * kvd, 1.0);
    let vs = rand_vec(rng, rows * kvd, 1.0);
    let fused: Vec<f32> = (0..rows)
        .flat_map(|m| {
            let q = &qs[m * qd..(m + 1) * qd];
            let k = &ks[m * kvd..(m + 1) * kvd];
            let v = &vs[m * kvd..(m + 1) * kvd];
            q.iter().chain(k).chain(v).copied().collect::<Vec<_>>()
        })
        .collect();
    // The padding holds a sentinel: it must survive the in-place rotation.
    write_rows(gpu, &qkv, &fused, 42.0);
    let cache_floats = (c.n_kv_heads * c.ctx * c.head_dim) as u64;
    let cache_bytes = f16_cache_bytes(c.n_kv_heads as usize, hd, c.ctx as usize);
    let k_cache = storage_buffer(gpu, "k_cache", cache_bytes);
    let v_cache = storage_buffer(gpu, "v_cache", cache_bytes);
    poison(gpu, &k_cache);
    poison(gpu, &v_cache);
    // Independent of `rope_kv::inv_freq`: HF's formula, rounded to f32.
    let inv: Vec<f32> = (0..hd / 2)
        .map(|i| (1.0 / (c.theta as f64).powf(2.0 * i as f64 / hd as f64)) as f32)
        .collect();
    let inv_buf = f32_buffer(gpu, "inv_freq", &inv);
    let state = state_buffer(gpu, c.pos, c.rows, 0);
    let b = RopeKvBindings {
        state: &state,
        qkv: &qkv,
        k_cache: &k_cache,
        v_cache: &v_cache,
        inv_freq: &inv_buf,
    };
    let d = rope_kv(gpu, &b, c.n_heads, c.n_kv_heads, c.head_dim, c.ctx).unwrap();
    run(gpu, vec![d], c.rows);
    let qkv_got = read_f32(gpu, &qkv.buf);
    let kc = k_cache_from_gpu(
        &read_u32(gpu, &k_cache),
        c.n_kv_heads as usize,
        hd,
        c.ctx as usize,
    );
    let vc = v_cache_from_gpu(&read_u32(gpu, &v_cache));

    // The f64-angle reference of the CPU forward pass is only usable where pos * 2^-24
    // is negligible; far out, compare with HF's f32 angle (what the kernel promises)
    // and keep a loose check against the f64 angle.
    let large = c.pos > 4096;
    let rotate = |head: &mut [f32], pos: u32| {
        if large {
            rope_hf(head, pos, c.theta)
        } else {
            reference::rope_neox(head, pos as usize, c.theta)
        }
    };
    let mut q_want = qs.clone();
    let mut q_f64 = qs.clone();
    for m in 0..rows {
        for h in 0..c.n_heads as usize {
            let s = m * q_dim as usize + h * hd;
            rotate(&mut q_want[s..s + hd], c.pos + m as u32);
            reference::rope_neox(&mut q_f64[s..s + hd], c.pos as usize + m, c.theta);
        }
    }
    let got_rows = unpad(&qkv, &qkv_got, rows);
    let width = qd + 2 * kvd;
    let q_rows: Vec<f32> = (0..rows)
        .flat_map(|m| got_rows[m * width..m * width + qd].to_vec())
        .collect();
    for m in 0..rows {
        assert_eq!(
            got_rows[m * width + qd..(m + 1) * width],
            fused[m * width + qd..(m + 1) * width],
            "{what}: K or V inside the QKV row changed"
        );
    }
    assert_close(&format!("{what}: q"), &q_rows, &to_f64(&q_want), 1e-4);
    if large {
        assert_close(
            &format!("{what}: q vs f64 angle"),
            &q_rows,
            &to_f64(&q_f64),
            2e-3,
        );
    }
    let stride = qkv.stride as usize;
    for (i, v) in qkv_got.iter().enumerate() {
        if i % stride >= width {
            assert_eq!(*v, 42.0, "{what}: q padding {i} was written");
        }
    }

    // Cache: slot (kvh, pos + m) holds rotated k and copied v; every other slot untouched.
    let mut k_want = Vec::new();
    let mut v_want = Vec::new();
    let mut k_got = Vec::new();
    let mut v_got = Vec::new();
    let mut written = vec![false; cache_floats as usize];
    for m in 0..rows {
        for kvh in 0..c.n_kv_heads as usize {
            let src = m * kv_dim as usize + kvh * hd;
            let mut head = ks[src..src + hd].to_vec();
            rotate(&mut head, c.pos + m as u32);
            k_want.extend(to_f64(&head));
            v_want.extend(to_f64(&vs[src..src + hd]));
            let dst = (kvh * c.ctx as usize + c.pos as usize + m) * hd;
            k_got.extend_from_slice(&kc[dst..dst + hd]);
            v_got.extend_from_slice(&vc[dst..dst + hd]);
            written[dst..dst + hd].iter_mut().for_each(|w| *w = true);
        }
    }
    assert_close(
        &format!("{what}: k cache"),
        &k_got,
        &k_want,
        1e-4 + F16_ROUNDING,
    );
    // V is a copy, rounded to f16: one of the value's two f16 neighbours (WGSL lets
    // pack2x16float round either way).
    for (i, (&g, &w)) in v_got.iter().zip(&v_want).enumerate() {
        let w = w as f32;
        let near = f16_round(w);
        let ulp = (near.abs() * 2.0 * F16_ROUNDING as f32).max(6e-8);
        assert!(
            g == near || ((g - w).abs() < ulp && f16_round(g) == g),
            "{what}: v cache {i} is {g}, not {w} in f16"
        );
    }
    let untouched = |cache: &[f32]| -> Vec<f32> {
        cache
            .iter()
            .zip(&written)
            .filter(|(_, w)| !**w)
            .map(|(v, _)| *v)
            .collect()
    };
    assert_poisoned(&format!("{what}: k cache elsewhere"), &untouched(&kc));
    assert_poisoned(&format!("{what}: v cache elsewhere"), &untouched(&vc));
}

#[test]
fn rope_kv_small_positions() {
    let gpu = gpu(None);
    let mut rng = Rng::new(31);
    for (n_heads, n_kv_heads, head_dim) in [(4, 2, 64), (3, 1, 20), (2, 2, 256), (4, 4, 128)] {
        for (rows, pos) in [(2, 5), (1, 0), (3, 17)] {
            let c = RopeCase {
                n_heads,
                n_kv_heads,
                head_dim,
                rows,
                pos,
                ctx: 24,
                theta: 10_000.0,
            };
            check_rope(&gpu, &c, &mut rng);
        }
    }
}

#[test]
fn rope_kv_large_position() {
    // 2 x 64-float slots at 30000 and 30001 in a 30010-position cache (7.7 MB).
    let gpu = gpu(None);
    let mut rng = Rng::new(32);
    for theta in [10_000.0, 1_000_000.0] {
        let c = RopeCase {
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 64,
            rows: 2,
            pos: 30_000,
            ctx: 30_010,
            theta,
        };
        check_rope(&gpu, &c, &mut rng);
    }
}
