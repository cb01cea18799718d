//! `matmul_gemm::linear` / `linear_swiglu` against an f64 CPU reference over the
//! dequantized weights: F16, F32 and Q8_0; K not a multiple of the K step, N not a
//! multiple of the output tile, 1 to 100 batch rows (partial row tiles), padded x rows
//! holding NaN, a column offset, bias, residual add, SwiGLU on interleaved gate/up, and
//! matrices split into several binding chunks. Every path the adapter has is checked: the
//! portable one always, the cooperative-matrix one where it is supported (skipped, with a
//! note, elsewhere).

mod common;

use common::*;
use metallic::gguf::GgmlType;
use metallic::gpu::{storage_buffer, Gpu, Plan};
use metallic::kernels::matmul_gemm::{linear, linear_swiglu, GemmConfig, GemmPath};
use metallic::synthetic::Rng;
use metallic::tensor::Activation;

/// The coop path, or None (with a note) on an adapter without cooperative matrices.
fn coop_config(gpu: &Gpu) -> Option<GemmConfig> {
    if !gpu.coop_matrix_f16 {
        eprintln!(
            "note: no cooperative matrices on '{}': skipped",
            gpu.info.name
        );
        return None;
    }
    Some(GemmConfig::new(gpu, GemmPath::Coop).unwrap())
}

/// The paths to check on this adapter.
fn paths(gpu: &Gpu) -> Vec<GemmConfig> {
    let mut out = vec![GemmConfig::new(gpu, GemmPath::Portable).unwrap()];
    if gpu.coop_matrix_f16 {
        out.push(GemmConfig::new(gpu, GemmPath::Coop).unwrap());
    } else {
        eprintln!(
            "note: '{}' has no 16x16 f16 cooperative matrices: coop GEMM path skipped",
            gpu.info.name
        );
    }
    out
}

#[derive(Clone, Copy, Debug)]
struct Case {
    ty: GgmlType,
    n: u32,
    k: u32,
    rows: u32,
    col: u32,
    bias: bool,
    accumulate: bool,
    /// x as an f16 activation (the coop path's prefill input), its values f16-exact.
    f16_x: bool,
}

/// Checks `got` (the `rows x n` outputs) against the f64 reference `want`.
///
/// Portable: all arithmetic is f32 on exact weights, so a normalised error of 1e-4.
/// Coop: x, F32 weights and dequantized Q8_0 weights are rounded to f16 (relative error
/// 2^-11 each) and products are summed in f32, so each output may be off by at most
/// about (2^-10 + K 2^-24) * sum_k |x_k w_k|; `abs_sum` carries that sum per output.
fn check_close(what: &str, cfg: &GemmConfig, got: &[f32], want: &[f64], abs_sum: &[f64], k: u32) {
    match cfg.path {
        GemmPath::Portable => assert_close(what, got, want, 1e-4),
        GemmPath::Coop => {
            assert_close(what, got, want, 2e-3);
            let unit = 2f64.powi(-10) + k as f64 * 2f64.powi(-24);
            for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(abs_sum).enumerate() {
                let bound = unit * s + 1e-6 * w.abs().max(1.0);
                assert!(
                    (g as f64 - w).abs() <= bound,
                    "{what}: element {i} = {g}, expected {w} within {bound:.2e} (f16 staging)"
                );
            }
        }
    }
}

/// Runs one GEMM and checks it; returns the number of weight chunks.
fn check(gpu: &Gpu, cfg: &GemmConfig, c: Case, rng: &mut Rng) -> usize {
    let what = format!("{c:?} {:?}", cfg.path);
    let (n, k, rows, col) = (c.n as usize, c.k as usize, c.rows as usize, c.col as usize);
    let (w, deq) = matrix(gpu, c.ty, c.n, c.k, &rand_vec(rng, n * k, 1.0));
    // A spare batch row of capacity: a batch of `rows` must neither read nor write it.
    let width = c.col + c.n + 5;
    let y = Activation::new(gpu, "y", c.rows + 1, width).unwrap();
    let xs = rand_vec(rng, rows * k, 1.0);
    // Row padding and the spare row hold NaN: reading them would poison the outputs.
    let (x, xs) = if c.f16_x {
        let x = Activation::new_f16(gpu, "x", c.rows + 1, c.k).unwrap();
        let xs = round_f16(&xs);
        write_rows_f16(gpu, &x, &xs, f32::NAN);
        (x, xs)
    } else {
        let x = Activation::new(gpu, "x", c.rows + 1, c.k).unwrap();
        write_rows(gpu, &x, &xs, f32::NAN);
        (x, xs)
    };
    let y_words = (y.buf.size() / 4) as usize;
    let y0: Vec<f32> = if c.accumulate {
        rand_vec(rng, y_words, 2.0)
    } else {
        vec![f32::from_bits(POISON); y_words]
    };
    write_f32(gpu, &y.buf, &y0);
    let bias = rand_vec(rng, width as usize, 0.5);
    let bias_buf = f32_buffer(gpu, "bias", &bias);
    let dummy = storage_buffer(gpu, "dummy", 16);
    let state = state_buffer(gpu, 0, c.rows, 0);
    let ds = linear(
        gpu,
        cfg,
        &state,
        &w,
        &x,
        (&y, c.col),
        c.bias.then_some(&bias_buf),
        c.accumulate,
        &dummy,
    )
    .unwrap();
    // A plan holds alternatives for other chunk lengths; count what this step launches.
    let ds: Vec<_> = ds.into_iter().filter(|d| d.runs_at(c.rows)).collect();
    let reduces = ds
        .iter()
        .filter(|d| d.label.starts_with("gemm_splitk_reduce"))
        .count();
    assert_eq!(
        ds.len() - reduces,
        w.chunks.len(),
        "{what}: one GEMM dispatch per chunk"
    );
    if cfg.split_k.is_some_and(|s| s > 1) {
        assert_eq!(
            reduces,
            w.chunks.len(),
            "{what}: one reduce pass per split chunk"
        );
    }
    run(gpu, ds, c.rows);
    let got = read_f32(gpu, &y.buf);

    let stride = y.stride as usize;
    let (mut want, mut abs_sum, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for m in 0..rows {
        for j in 0..n {
            let terms = (0..k).map(|i| deq[j * k + i] as f64 * xs[m * k + i] as f64);
            let mut s: f64 = terms.clone().sum();
            abs_sum.push(terms.map(f64::abs).sum());
            if c.bias {
                s += bias[col + j] as f64;
            }
            if c.accumulate {
                s += y0[m * stride + col + j] as f64;
            }
            want.push(s);
            out.push(got[m * stride + col + j]);
        }
    }
    check_close(&what, cfg, &out, &want, &abs_sum, c.k);
    // Columns outside col..col + n, row padding and the spare row keep their values.
    for (i, (g, o)) in got.iter().zip(&y0).enumerate() {
        let (r, cc) = (i / stride, i % stride);
        if r >= rows || !(col..col + n).contains(&cc) {
            assert_eq!(
                g.to_bits(),
                o.to_bits(),
                "{what}: y[{r}][{cc}] outside the output was written"
            );
        }
    }
    w.chunks.len()
}

const FLAGS: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];
const ROWS: [u32; 5] = [1, 3, 17, 64, 100];

/// Every batch size of ROWS over the given (type, K, N) shapes, cycling the flags and a
/// column offset.
fn sweep(gpu: &Gpu, shapes: &[(GgmlType, u32, u32)], seed: u64) {
    let mut rng = Rng::new(seed);
    for cfg in paths(gpu) {
        let mut idx = 0;
        for &(ty, k, n) in shapes {
            for rows in ROWS {
                let (bias, accumulate) = FLAGS[idx % 4];
                let col = [0, 24, 7][idx % 3];
                idx += 1;
                let c = Case {
                    ty,
                    n,
                    k,
                    rows,
                    col,
                    bias,
                    accumulate,
                    f16_x: false,
                };
                check(gpu, &cfg, c, &mut rng);
            }
        }
    }
}

#[test]
fn gemm_f16_shapes() {
    // K = 896 (the 0.5B hidden size), 100 (a partial 4-wide quad and a partial K step),
    // 1000 (a tail after many steps), 4870 (an FFN-sized K with a tail); N = 130 and 37
    // leave partial output tiles.
    let gpu = gpu(None);
    let shapes = [
        (GgmlType::F16, 896, 130),
        (GgmlType::F16, 100, 37),
        (GgmlType::F16, 1000, 70),
        (GgmlType::F16, 4870, 24),
    ];
    sweep(&gpu, &shapes, 21);
}

#[test]
fn gemm_f32_shapes() {
    // BF16 is widened to F32 at upload, so it takes this path too.
    let gpu = gpu(None);
    let shapes = [
        (GgmlType::F32, 160, 130),
        (GgmlType::F32, 7, 37),
        (GgmlType::BF16, 366, 70),
    ];
    sweep(&gpu, &shapes, 22);
}

#[test]
fn gemm_q8_0_shapes() {
    // Q8_0 rows are whole 32-element blocks: K = 160 is 5 blocks (the coop path stages
    // one block per step), 896 and 4864 are the 0.5B hidden and FFN sizes.
    let gpu = gpu(None);
    let shapes = [
        (GgmlType::Q8_0, 896, 130),
        (GgmlType::Q8_0, 160, 37),
        (GgmlType::Q8_0, 4864, 24),
    ];
    sweep(&gpu, &shapes, 23);
}

#[test]
fn gemm_split_bindings() {
    // A 128 KiB binding limit splits 600-row matrices into 3 to 12 chunks, none aligned
    // to the output tile; each dispatch writes its outputs at col + first_row and reads
    // its bias there. (x and y must still fit one binding each: 50 x 608 floats.)
    let gpu = gpu(Some(128 << 10));
    let mut rng = Rng::new(24);
    for cfg in paths(&gpu) {
        for (ty, k) in [
            (GgmlType::F16, 600),
            (GgmlType::F32, 600),
            (GgmlType::Q8_0, 608),
        ] {
            for (rows, (bias, accumulate), col) in [(50, FLAGS[3], 3), (17, FLAGS[1], 0)] {
                let c = Case {
                    ty,
                    n: 600,
                    k,
                    rows,
                    col,
                    bias,
                    accumulate,
                    f16_x: false,
                };
                let chunks = check(&gpu, &cfg, c, &mut rng);
                assert!(chunks >= 3, "{c:?}: expected a split matrix, got {chunks}");
            }
        }
    }
}

/// silu(x_m . gate_j) * (x_m . up_j) in f64, and the sum that bounds its error the way
/// `check_close`'s `abs_sum` does: |d(silu(g) u)| <= |u| |dg| (silu' is within
/// [-0.1, 1.1]) + |silu| |du|, with |dg| and |du| bounded by the sums of |x_i w_i|.
fn swiglu_reference(
    gd: &[f32],
    ud: &[f32],
    xs: &[f32],
    k: usize,
    m: usize,
    j: usize,
) -> (f64, f64) {
    let sum = |wd: &[f32], f: fn(f64) -> f64| {
        (0..k)
            .map(|i| f(wd[j * k + i] as f64 * xs[m * k + i] as f64))
            .sum::<f64>()
    };
    let (g, u) = (sum(gd, |v| v), sum(ud, |v| v));
    let silu = g / (1.0 + (-g).exp());
    let abs_sum = 1.1 * u.abs() * sum(gd, f64::abs) + silu.abs() * sum(ud, f64::abs);
    (silu * u, abs_sum)
}

#[test]
fn gemm_swiglu_on_interleaved_gate_up() {
    // Gate and up interleaved by GpuMatrix::upload_interleaved: the GEMM writes
    // silu(x . gate) * (x . up). ffn = 90 gives 180 rows, a partial output tile; the
    // 16 KiB limit splits the matrix between (gate, up) pairs.
    for (ty, k, max_binding) in [
        (GgmlType::F16, 100, None),
        (GgmlType::F16, 64, Some(16 << 10)),
        (GgmlType::Q8_0, 160, Some(16 << 10)),
        (GgmlType::F32, 36, None),
    ] {
        let gpu = gpu(max_binding);
        let mut rng = Rng::new(25);
        let ffn = 90usize;
        let kk = k as usize;
        let (w, gd, ud) = gate_up_matrix(&gpu, &mut rng, ty, ffn, kk);
        if max_binding.is_some() {
            assert!(w.chunks.len() > 1, "{ty:?}: expected a split");
        }
        let dummy = storage_buffer(&gpu, "dummy", 16);
        for cfg in paths(&gpu) {
            for rows in [1usize, 17, 64, 100] {
                if max_binding.is_some() && rows > 17 {
                    continue; // x and act must fit the small binding limit
                }
                let what = format!("{ty:?} k={k} rows={rows} {:?}", cfg.path);
                let x = Activation::new(&gpu, "x", rows as u32 + 1, k).unwrap();
                let act = Activation::new(&gpu, "act", rows as u32 + 1, ffn as u32).unwrap();
                let xs = rand_vec(&mut rng, rows * kk, 1.0);
                write_rows(&gpu, &x, &xs, f32::NAN);
                poison(&gpu, &act.buf);
                let state = state_buffer(&gpu, 0, rows as u32, 0);
                let ds = linear_swiglu(&gpu, &cfg, &state, &w, &x, &act, &dummy).unwrap();
                run(&gpu, ds, rows as u32);
                let got = read_f32(&gpu, &act.buf);
                let (mut want, mut abs_sum) = (Vec::new(), Vec::new());
                for m in 0..rows {
                    for j in 0..ffn {
                        let (v, a) = swiglu_reference(&gd, &ud, &xs, kk, m, j);
                        want.push(v);
                        abs_sum.push(a);
                    }
                }
                check_close(&what, &cfg, &unpad(&act, &got, rows), &want, &abs_sum, k);
                assert_poisoned(
                    &format!("{what} spare row"),
                    &got[rows * act.stride as usize..],
                );
                for r in 0..rows {
                    let pad = &got[r * act.stride as usize + ffn..(r + 1) * act.stride as usize];
                    assert_poisoned(&format!("{what} row {r} padding"), pad);
                }
            }
        }
    }
}

/// x W^T + bias for the first `rows` rows of x ((rows, k), dense) against the dequantized
/// (n, k) weights, n = bias.len(), in f64; and per output sum |x_k w_k| (the f16 bound).
fn reference_rows(
    deq: &[f32],
    xs: &[f32],
    k: usize,
    rows: usize,
    bias: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let (mut want, mut abs_sum) = (Vec::new(), Vec::new());
    for m in 0..rows {
        for (j, &b) in bias.iter().enumerate() {
            let terms = (0..k).map(|i| deq[j * k + i] as f64 * xs[m * k + i] as f64);
            want.push(terms.clone().sum::<f64>() + b as f64);
            abs_sum.push(terms.map(f64::abs).sum());
        }
    }
    (want, abs_sum)
}

/// Runs `plan` for a step of `rows` rows (the step state set, y poisoned first) and checks
/// y's first `rows` rows against `want` (outputs, sums |x_k w_k|: `reference_rows`), and
/// that the rows past them stay poisoned.
#[allow(clippy::too_many_arguments)]
fn check_plan_step(
    gpu: &Gpu,
    cfg: &GemmConfig,
    plan: &Plan,
    state: &wgpu::Buffer,
    y: &Activation,
    rows: usize,
    (want, abs_sum): &(Vec<f64>, Vec<f64>),
    k: usize,
    what: &str,
) {
    write_u32(gpu, state, &[0, rows as u32, 0, 0]);
    poison(gpu, &y.buf);
    run_plan(gpu, plan, rows as u32, 1);
    let got = read_f32(gpu, &y.buf);
    check_close(what, cfg, &unpad(y, &got, rows), want, abs_sum, k as u32);
    assert_poisoned(what, &got[rows * y.stride as usize..]);
}

#[test]
fn gemm_one_plan_serves_any_batch() {
    // Dispatches built once (as the prefill plan is) follow the step state's row count:
    // a batch of 100 after one of 3, then 3 again, each writing exactly its rows.
    let gpu = gpu(None);
    let mut rng = Rng::new(26);
    let (n, k) = (70usize, 96usize);
    for cfg in paths(&gpu) {
        let (w, deq) = matrix(
            &gpu,
            GgmlType::Q8_0,
            n as u32,
            k as u32,
            &rand_vec(&mut rng, n * k, 1.0),
        );
        let x = Activation::new(&gpu, "x", 100, k as u32).unwrap();
        let y = Activation::new(&gpu, "y", 100, n as u32).unwrap();
        let xs = rand_vec(&mut rng, 100 * k, 1.0);
        write_rows(&gpu, &x, &xs, f32::NAN);
        let dummy = storage_buffer(&gpu, "dummy", 16);
        let state = storage_buffer(&gpu, "state", 16);
        let mut plan = Plan::default();
        plan.extend(linear(&gpu, &cfg, &state, &w, &x, (&y, 0), None, false, &dummy).unwrap());
        for rows in [3usize, 100, 3] {
            let what = format!("rows={rows} {:?}", cfg.path);
            let want = reference_rows(&deq, &xs, k, rows, &vec![0.0; n]);
            check_plan_step(&gpu, &cfg, &plan, &state, &y, rows, &want, k, &what);
        }
    }
}

#[test]
fn gemm_rejects_bad_shapes_and_paths() {
    let gpu = gpu(None);
    let mut rng = Rng::new(27);
    let cfg = GemmConfig::new(&gpu, GemmPath::Portable).unwrap();
    let (w, _) = matrix(
        &gpu,
        GgmlType::F16,
        40,
        64,
        &rand_vec(&mut rng, 40 * 64, 1.0),
    );
    let dummy = storage_buffer(&gpu, "dummy", 16);
    let state = state_buffer(&gpu, 0, 1, 0);
    let x = Activation::new(&gpu, "x", 1, 64).unwrap();
    let x_wrong = Activation::new(&gpu, "x", 1, 63).unwrap();
    let y = Activation::new(&gpu, "y", 1, 50).unwrap();
    assert!(linear(
        &gpu,
        &cfg,
        &state,
        &w,
        &x_wrong,
        (&y, 0),
        None,
        false,
        &dummy
    )
    .is_err());
    assert!(linear(&gpu, &cfg, &state, &w, &x, (&y, 11), None, false, &dummy).is_err());
    assert!(linear(&gpu, &cfg, &state, &w, &x, (&y, 10), None, false, &dummy).is_ok());
    // 40 rows make 20 SwiGLU pairs, not 25.
    let act = Activation::new(&gpu, "act", 1, 25).unwrap();
    assert!(linear_swiglu(&gpu, &cfg, &state, &w, &x, &act, &dummy).is_err());
    // f16 activations are for the coop path only.
    let x16 = Activation::new_f16(&gpu, "x16", 1, 64).unwrap();
    let err = linear(&gpu, &cfg, &state, &w, &x16, (&y, 0), None, false, &dummy)
        .err()
        .expect("f16 x on the portable path");
    assert!(err.to_string().contains("cooperative"), "{err}");
    if !gpu.coop_matrix_f16 {
        let err = GemmConfig::new(&gpu, GemmPath::Coop)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cooperative"), "{err}");
        assert_eq!(GemmConfig::auto(&gpu).path, GemmPath::Portable);
    }
}

#[test]
fn gemm_coop_f16_activations() {
    // The prefill plan's form on the coop path: x in f16 (8 halves per load), with the
    // bias / residual epilogue in f32, and the SwiGLU output written in f16. x is rounded
    // to f16 in staging anyway, so the reference uses the f16-rounded x and the bounds of
    // check_close; the f16 SwiGLU output adds one rounding (2^-11 of the value).
    let gpu = gpu(None);
    let Some(cfg) = coop_config(&gpu) else {
        return;
    };
    let mut rng = Rng::new(28);
    for (ty, k, n) in [
        (GgmlType::F16, 64, 40),
        (GgmlType::F16, 200, 300),
        (GgmlType::Q8_0, 160, 130),
        (GgmlType::F32, 40, 70),
    ] {
        for (rows, (bias, accumulate)) in [1u32, 17, 64, 100].into_iter().zip(FLAGS) {
            let c = Case {
                ty,
                n,
                k,
                rows,
                col: 0,
                bias,
                accumulate,
                f16_x: true,
            };
            check(&gpu, &cfg, c, &mut rng);
        }
    }
    // SwiGLU into f16, over a matrix split between (gate, up) pairs.
    for (ty, k, max_binding) in [
        (GgmlType::F16, 64, None),
        (GgmlType::Q8_0, 160, Some(16 << 10)),
    ] {
        let gpu = common::gpu(max_binding);
        let dummy = storage_buffer(&gpu, "dummy", 16);
        let ffn = 90usize;
        let (w, gd, ud) = gate_up_matrix(&gpu, &mut rng, ty, ffn, k as usize);
        for rows in [1usize, 17] {
            let what = format!("f16 SwiGLU {ty:?} k={k} rows={rows}");
            let kk = k as usize;
            let x = Activation::new_f16(&gpu, "x", rows as u32 + 1, k).unwrap();
            let xs = round_f16(&rand_vec(&mut rng, rows * kk, 1.0));
            write_rows_f16(&gpu, &x, &xs, f32::NAN);
            let act = Activation::new_f16(&gpu, "act", rows as u32 + 1, ffn as u32).unwrap();
            write_rows_f16(&gpu, &act, &[], 1234.0);
            let state = state_buffer(&gpu, 0, rows as u32, 0);
            let ds = linear_swiglu(&gpu, &cfg, &state, &w, &x, &act, &dummy).unwrap();
            run(&gpu, ds, rows as u32);
            let got = read_f16(&gpu, &act.buf);
            let unit = 2f64.powi(-10) + k as f64 * 2f64.powi(-24);
            for m in 0..rows {
                for j in 0..ffn {
                    let (want, abs_sum) = swiglu_reference(&gd, &ud, &xs, kk, m, j);
                    let bound = unit * abs_sum + want.abs() * 2f64.powi(-10) + 1e-6;
                    let v = got[m * act.stride as usize + j] as f64;
                    assert!(
                        (v - want).abs() <= bound,
                        "{what}: [{m}][{j}] = {v}, expected {want} within {bound:.2e}"
                    );
                }
            }
            let stride = act.stride as usize;
            for (i, v) in got.iter().enumerate() {
                if i / stride >= rows || i % stride >= ffn {
                    assert_eq!(
                        *v, 1234.0,
                        "{what}: element {i} outside the rows was written"
                    );
                }
            }
        }
    }
}

#[test]
fn gemm_coop_split_k() {
    // Split-K on the coop path: each of 2 or 4 workgroups per output tile takes a range of
    // whole K stages, writes raw sums to the shared scratch, and a reduce pass adds them
    // with the bias / residual epilogue. K with a tail, K shorter than the ranges (a range
    // past K adds zeros), F16, F32 and Q8_0, f32 and f16 x, split matrices, and GEMMs of
    // growing sizes, each taking the one shared scratch (grown as needed).
    let gpu = gpu(None);
    let Some(coop) = coop_config(&gpu) else {
        return;
    };
    let mut rng = Rng::new(30);
    for split in [2, 4] {
        let cfg = coop.with_split_k(Some(split));
        for (ty, k, n) in [
            (GgmlType::F16, 4870u32, 130),
            (GgmlType::F16, 100, 37),
            (GgmlType::Q8_0, 1024, 200),
            (GgmlType::F32, 640, 70),
        ] {
            for (rows, (bias, accumulate)) in [1u32, 17, 100].into_iter().zip(FLAGS) {
                for f16_x in [false, true] {
                    if f16_x && !k.is_multiple_of(8) {
                        continue;
                    }
                    let c = Case {
                        ty,
                        n,
                        k,
                        rows,
                        col: 5,
                        bias,
                        accumulate,
                        f16_x,
                    };
                    check(&gpu, &cfg, c, &mut rng);
                }
            }
        }
    }
    // Split matrices (several binding chunks, each with its own reduce pass).
    let small = common::gpu(Some(128 << 10));
    let cfg = GemmConfig::new(&small, GemmPath::Coop)
        .unwrap()
        .with_split_k(Some(2));
    for (ty, k) in [(GgmlType::F16, 600), (GgmlType::Q8_0, 608)] {
        let c = Case {
            ty,
            n: 600,
            k,
            rows: 17,
            col: 3,
            bias: true,
            accumulate: true,
            f16_x: false,
        };
        assert!(check(&small, &cfg, c, &mut rng) >= 3);
    }
    // Partial sums that would not fit one binding: a forced split is an error (4 ranges x
    // 100 rows x ~100 outputs x 4 bytes > 128 KiB), and auto never splits there.
    let x = Activation::new_f16(&small, "x", 100, 600).unwrap();
    let (w, _) = matrix(
        &small,
        GgmlType::F16,
        600,
        600,
        &rand_vec(&mut rng, 600 * 600, 1.0),
    );
    let dummy_small = storage_buffer(&small, "dummy", 16);
    let state_small = state_buffer(&small, 0, 1, 0);
    let forced = GemmConfig::new(&small, GemmPath::Coop)
        .unwrap()
        .with_split_k(Some(4));
    let y_wide = Activation::new(&small, "y", 2, 600).unwrap();
    let err = linear(
        &small,
        &forced,
        &state_small,
        &w,
        &x,
        (&y_wide, 0),
        None,
        false,
        &dummy_small,
    )
    .err()
    .expect("a split-K scratch over the binding limit")
    .to_string();
    assert!(err.contains("storage binding limit"), "{err}");
    // SwiGLU never splits; asking for it is an error.
    let dummy = storage_buffer(&gpu, "dummy", 16);
    let (w, _, _) = gate_up_matrix(&gpu, &mut rng, GgmlType::F16, 64, 64);
    let x = Activation::new(&gpu, "x", 4, 64).unwrap();
    let act = Activation::new(&gpu, "act", 4, 64).unwrap();
    let state = state_buffer(&gpu, 0, 4, 0);
    let cfg = coop.with_split_k(Some(2));
    assert!(linear_swiglu(&gpu, &cfg, &state, &w, &x, &act, &dummy).is_err());
}

#[test]
fn split_k_choice() {
    use metallic::kernels::matmul_gemm::{split_k_for, FLAG_ACCUMULATE, FLAG_SWIGLU};
    // At M = 512: 0.5B down (112 tiles of 64 x 64, K = 4864) and 7B down and o (112 of
    // 128 x 128, K = 18944 / 3584) split in two; 0.5B o (K = 896) and 7B qkv (144 tiles)
    // do not; SwiGLU never does.
    assert_eq!(split_k_for(112, 4864, FLAG_ACCUMULATE), 2);
    assert_eq!(split_k_for(112, 18944, FLAG_ACCUMULATE), 2);
    assert_eq!(split_k_for(112, 3584, FLAG_ACCUMULATE), 2);
    assert_eq!(split_k_for(112, 896, FLAG_ACCUMULATE), 1);
    assert_eq!(split_k_for(144, 3584, 0), 1);
    assert_eq!(split_k_for(28, 18944, FLAG_ACCUMULATE), 4);
    assert_eq!(split_k_for(28, 37888, FLAG_SWIGLU), 1);
}

#[test]
fn wave_split_choice() {
    use metallic::kernels::matmul_gemm::{wave_split_k, FLAG_ACCUMULATE, FLAG_BIAS, FLAG_SWIGLU};
    // 132 SMs, one 128 x 128 workgroup each. 7B down (K = 18944): 112 tiles fill one wave
    // and stay whole; 140 (a 630-row chunk) leave a second wave of 8, and four ranges take
    // 5 waves of a quarter (1.25 tile-times against 2); 448 (2048 rows) take 3.5 in two
    // ranges against 4 whole. K = 3584 (o, qkv) has 56 stages, too few for four ranges of
    // 16. SwiGLU never splits.
    assert_eq!(wave_split_k(112, 18944, FLAG_ACCUMULATE, 132), 1);
    assert_eq!(wave_split_k(140, 18944, FLAG_ACCUMULATE, 132), 4);
    assert_eq!(wave_split_k(448, 18944, FLAG_ACCUMULATE, 132), 2);
    assert_eq!(wave_split_k(140, 3584, FLAG_ACCUMULATE, 132), 2);
    assert_eq!(wave_split_k(144, 3584, FLAG_BIAS, 132), 2);
    assert_eq!(wave_split_k(132, 3584, FLAG_BIAS, 132), 1);
    assert_eq!(wave_split_k(140, 18944, FLAG_SWIGLU, 132), 1);
    assert_eq!(wave_split_k(140, 900, FLAG_ACCUMULATE, 132), 1);
    assert_eq!(wave_split_k(140, 18944, FLAG_ACCUMULATE, 0), 1);
}

#[test]
fn coop_choice_follows_the_chunk_length() {
    use metallic::kernels::matmul_gemm::{coop_choice, FLAG_ACCUMULATE, FLAG_BIAS, FLAG_SWIGLU};
    use metallic::kernels::matmul_gemm_coop::CoopTile;
    let generic = GemmConfig {
        path: GemmPath::Coop,
        split_k: None,
        compute_units: None,
    };
    let h100 = generic.with_compute_units(Some(132));
    let limit = 48 << 10;
    // 0.5B down (896 x 4864): a 512-row chunk takes 112 tiles of 64 x 64 in two K ranges,
    // as a plan built for 512 rows would, even in a plan built for 2048, whose 2048-row
    // chunks take 112 tiles of 128 x 128 in two ranges (the generic rule; whole or split,
    // the waves tie, and the wave rule never removes a split).
    let c =
        |cfg: &GemmConfig, rows| coop_choice(cfg, 896, 4864, rows, FLAG_ACCUMULATE, limit, None);
    assert_eq!(c(&generic, 512), (CoopTile::NARROW, 2));
    assert_eq!(c(&h100, 512), (CoopTile::NARROW, 2));
    assert_eq!(c(&generic, 2048), (CoopTile::TALL, 2));
    assert_eq!(c(&h100, 2048), (CoopTile::TALL, 2));
    // 7B qkv (4608 x 3584) at 512 rows: 144 tall tiles, a second wave of 12 unless split.
    let q = |cfg: &GemmConfig| coop_choice(cfg, 4608, 3584, 512, FLAG_BIAS, limit, None);
    assert_eq!(q(&generic), (CoopTile::TALL, 1));
    assert_eq!(q(&h100), (CoopTile::TALL, 2));
    // 7B down (3584 x 18944) at 630 rows: 140 tall tiles, four ranges with the SM count.
    let d =
        |cfg: &GemmConfig, rows| coop_choice(cfg, 3584, 18944, rows, FLAG_ACCUMULATE, limit, None);
    assert_eq!(d(&generic, 630), (CoopTile::TALL, 1));
    assert_eq!(d(&h100, 630), (CoopTile::TALL, 4));
    // A forced tile and split win.
    let forced = h100.with_split_k(Some(2));
    let f = coop_choice(
        &forced,
        3584,
        18944,
        630,
        FLAG_ACCUMULATE,
        limit,
        Some(CoopTile::WIDE),
    );
    assert_eq!(f, (CoopTile::WIDE, 2));
    // ... except over SwiGLU pairs, which a forced split leaves whole.
    let g = coop_choice(&forced, 37888, 3584, 630, FLAG_SWIGLU, limit, None);
    assert_eq!(g.1, 1);
}

#[test]
fn gemm_plan_picks_by_chunk_length() {
    // A coop GEMM built for up to 700 rows holds one dispatch (and reduce pass) per range
    // of chunk lengths; each step launches exactly one of them and writes its rows. With
    // 2200 outputs and K = 2112 (33 stages): up to 448 rows 64 x 128 tiles in two K
    // ranges, to 640 whole (over 264 workgroups split), then 108 tiles of 128 x 128, in
    // two ranges again.
    let gpu = gpu(None);
    let Some(coop) = coop_config(&gpu) else {
        return;
    };
    let cfg = coop.with_compute_units(Some(132));
    let mut rng = Rng::new(31);
    let (n, k, max_rows) = (2200usize, 2112usize, 700u32);
    let (w, deq) = matrix(
        &gpu,
        GgmlType::F16,
        n as u32,
        k as u32,
        &rand_vec(&mut rng, n * k, 1.0),
    );
    let x = Activation::new(&gpu, "x", max_rows, k as u32).unwrap();
    let y = Activation::new(&gpu, "y", max_rows, n as u32).unwrap();
    let xs = rand_vec(&mut rng, max_rows as usize * k, 1.0);
    write_rows(&gpu, &x, &xs, f32::NAN);
    let bias = rand_vec(&mut rng, n, 0.5);
    let bias_buf = f32_buffer(&gpu, "bias", &bias);
    let dummy = storage_buffer(&gpu, "dummy", 16);
    let state = storage_buffer(&gpu, "state", 16);
    let mut plan = Plan::default();
    plan.extend(
        linear(
            &gpu,
            &cfg,
            &state,
            &w,
            &x,
            (&y, 0),
            Some(&bias_buf),
            false,
            &dummy,
        )
        .unwrap(),
    );
    let gemms = |rows| {
        plan.dispatches
            .iter()
            .filter(|d| d.runs_at(rows) && d.label.starts_with("gemm_f16"))
            .count()
    };
    assert_eq!(plan.len(), 5, "three GEMMs and two reduce passes");
    for rows in [65u32, 449, 700] {
        assert_eq!(gemms(rows), 1, "rows={rows}: one GEMM launched");
        let what = format!("rows={rows} ({} launched)", plan.len_at(rows));
        let want = reference_rows(&deq, &xs, k, rows as usize, &bias);
        check_plan_step(
            &gpu,
            &cfg,
            &plan,
            &state,
            &y,
            rows as usize,
            &want,
            k,
            &what,
        );
    }
}

#[test]
fn gemm_path_from_env() {
    // No other test reads METALLIC_GEMM, so setting it here cannot race with them.
    let gpu = gpu(None);
    let with = |v: Option<&str>| {
        match v {
            Some(v) => std::env::set_var("METALLIC_GEMM", v),
            None => std::env::remove_var("METALLIC_GEMM"),
        }
        let r = GemmConfig::from_env(&gpu);
        std::env::remove_var("METALLIC_GEMM");
        r
    };
    assert_eq!(with(None).unwrap(), GemmConfig::auto(&gpu));
    assert_eq!(with(Some("auto")).unwrap(), GemmConfig::auto(&gpu));
    assert_eq!(with(Some("portable")).unwrap().path, GemmPath::Portable);
    assert!(with(Some("fast")).is_err());
    match with(Some("coop")) {
        Ok(cfg) => assert!(gpu.coop_matrix_f16 && cfg.path == GemmPath::Coop),
        Err(e) => assert!(!gpu.coop_matrix_f16 && e.to_string().contains("cooperative")),
    }
}

#[test]
fn coop_tile_names_and_choice() {
    use metallic::kernels::matmul_gemm_coop::CoopTile;
    let t = |s| CoopTile::parse(s).map(|t| (t.shape(), t.prefetch_x, t.prefetch_w));
    assert_eq!(t("64x128"), Some(((64, 128), false, false)));
    assert_eq!(t("32x64"), Some(((32, 64), false, false)));
    assert_eq!(t("64x64w"), Some(((64, 64), false, false)));
    assert_eq!(t("32x64w-pf"), Some(((32, 64), true, true)));
    assert_eq!(t("64x128-pw"), Some(((64, 128), false, true)));
    assert_eq!(t("32x128-px"), Some(((32, 128), true, false)));
    assert_eq!(t("128x128"), Some(((128, 128), false, false)));
    assert_eq!(CoopTile::parse("128x128").map(|t| t.threads()), Some(256));
    assert_eq!(
        CoopTile::parse("128x128-k32-pf").map(|t| (t.ck, t.prefetch_x)),
        Some((32, true))
    );
    assert_eq!(
        CoopTile::parse("64x128-pw-k32").map(|t| (t.ck, t.prefetch_w)),
        Some((32, true))
    );
    assert_eq!(CoopTile::WIDE.threads(), 128);
    for bad in [
        "",
        "64",
        "16x128",
        "64x32",
        "64x128w",
        "64x128-np",
        "128x64",
        "128x64w",
        "64x64-k16",
        "64x64-",
    ] {
        assert_eq!(CoopTile::parse(bad), None, "{bad}");
    }
    // 0.5B and 7B shapes at M = 512 and 2048 (see CoopTile::for_shape).
    assert_eq!(CoopTile::for_shape(896, 512, 48 << 10), CoopTile::NARROW);
    assert_eq!(CoopTile::for_shape(1152, 512, 48 << 10), CoopTile::WIDE);
    assert_eq!(CoopTile::for_shape(9728, 512, 48 << 10), CoopTile::TALL);
    assert_eq!(CoopTile::for_shape(4608, 512, 48 << 10), CoopTile::TALL);
    assert_eq!(CoopTile::for_shape(896, 2048, 48 << 10), CoopTile::TALL);
    assert_eq!(CoopTile::for_shape(4608, 16, 48 << 10), CoopTile::WIDE);
    // 32 KiB of workgroup memory (Apple): never the 44 KiB tall tile.
    assert_eq!(CoopTile::for_shape(9728, 512, 32 << 10), CoopTile::WIDE);
    assert_eq!(CoopTile::TALL.workgroup_bytes(), 45056);
    assert!(CoopTile::WIDE.workgroup_bytes() <= 32 << 10);
    assert_eq!(
        CoopTile::TALL.shape(),
        metallic::kernels::matmul_gemm_coop::TILE
    );
}
