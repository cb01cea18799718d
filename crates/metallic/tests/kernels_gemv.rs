//! `matmul_gemv::linear` against an f64 CPU matvec over the dequantized weights: F16,
//! F32, BF16 and Q8_0, odd shapes, bias, accumulate, split bindings and every tuning config.

mod common;

use common::*;
use metallic::gguf::GgmlType;
use metallic::gpu::{storage_buffer, Gpu, Grid};
use metallic::kernels::matmul_gemv::{linear, DenseTiling, GemvConfig, Q8Dot};
use metallic::synthetic::Rng;
use metallic::tensor::Activation;

#[derive(Clone, Copy, Debug)]
struct Case {
    ty: GgmlType,
    n: u32,
    k: u32,
    rows: u32,
    bias: bool,
    accumulate: bool,
}

fn tolerance(ty: GgmlType) -> f64 {
    match ty {
        GgmlType::F32 | GgmlType::BF16 => 1e-4,
        _ => 2e-3,
    }
}

/// max |got - want| over the unpadded outputs.
fn worst_diff(got: &[f32], want: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .fold(0.0, f64::max)
}

/// Runs one GEMV and checks it; returns the number of weight chunks.
fn check(gpu: &Gpu, cfg: &GemvConfig, c: Case, rng: &mut Rng) -> usize {
    let what = format!("{c:?} {cfg:?}");
    let (n, k, rows) = (c.n as usize, c.k as usize, c.rows as usize);
    let (w, deq) = matrix(gpu, c.ty, c.n, c.k, &rand_vec(rng, n * k, 1.0));
    // One spare row of capacity: a batch of `rows` must leave it alone.
    let x = Activation::new(gpu, "x", c.rows + 1, c.k).unwrap();
    let y = Activation::new(gpu, "y", c.rows + 1, c.n).unwrap();
    let xs = rand_vec(rng, rows * k, 1.0);
    write_rows(gpu, &x, &xs, 0.0);
    let y_words = (y.buf.size() / 4) as usize;
    let y0: Vec<f32> = if c.accumulate {
        rand_vec(rng, y_words, 2.0)
    } else {
        vec![f32::from_bits(POISON); y_words]
    };
    write_f32(gpu, &y.buf, &y0);
    let bias = rand_vec(rng, n, 0.5);
    let bias_buf = f32_buffer(gpu, "bias", &bias);
    let dummy = storage_buffer(gpu, "dummy", 16);
    let ds = linear(
        gpu,
        cfg,
        &w,
        &x,
        (&y, 0),
        c.bias.then_some(&bias_buf),
        c.accumulate,
        &dummy,
    )
    .unwrap();
    assert_eq!(ds.len(), w.chunks.len(), "{what}: one dispatch per chunk");
    run(gpu, ds, c.rows);
    let got = read_f32(gpu, &y.buf);

    let stride = y.stride as usize;
    // With int8 activations the reference takes x as the kernel quantizes it.
    let quantized = quantizes_x(c.ty, cfg);
    let reference = |quantize: bool| -> Vec<f64> {
        let mut want = Vec::with_capacity(rows * n);
        for m in 0..rows {
            let xm = &xs[m * k..(m + 1) * k];
            let xv: Vec<f64> = if quantize {
                q8_activations(xm)
            } else {
                to_f64(xm)
            };
            for j in 0..n {
                let mut s: f64 = (0..k).map(|i| deq[j * k + i] as f64 * xv[i]).sum();
                if c.bias {
                    s += bias[j] as f64;
                }
                if c.accumulate {
                    s += y0[m * stride + j] as f64;
                }
                want.push(s);
            }
        }
        want
    };
    let want = reference(quantized);
    let got_rows = unpad(&y, &got, rows);
    assert_close(&what, &got_rows, &want, tolerance(c.ty));
    if quantized {
        // The quantized reference must explain the result better than exact x does
        // (a kernel that skipped the quantization would pass the tolerance above).
        let exact = reference(false);
        let (dq, dx) = (worst_diff(&got_rows, &want), worst_diff(&got_rows, &exact));
        assert!(
            dq < 0.5 * dx,
            "{what}: off the int8-x reference by {dq:.3e}, off exact x by {dx:.3e}"
        );
    }
    // Row padding and the spare batch row keep what was there before.
    for (i, (g, o)) in got.iter().zip(&y0).enumerate() {
        let (r, col) = (i / stride, i % stride);
        if r >= rows || col >= n {
            assert_eq!(
                g.to_bits(),
                o.to_bits(),
                "{what}: y[{r}][{col}] outside the output was written"
            );
        }
    }
    w.chunks.len()
}

const FLAGS: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];

#[test]
fn gemv_dense_odd_k() {
    // F16 and F32 rows of any length: K = 7 is all tail, 36 and 100 have a tail after
    // the vector loop, 1000 and 2048 loop several times per lane.
    let gpu = gpu(None);
    let mut rng = Rng::new(11);
    let cfg = GemvConfig::default();
    let mut idx = 0;
    // BF16 is widened to F32 at upload.
    for ty in [GgmlType::F16, GgmlType::F32, GgmlType::BF16] {
        for k in [7, 36, 100, 1000, 2048] {
            for n in [1, 13, 37] {
                for rows in [1, 5] {
                    let (bias, accumulate) = FLAGS[idx % 4];
                    idx += 1;
                    let c = Case {
                        ty,
                        n,
                        k,
                        rows,
                        bias,
                        accumulate,
                    };
                    check(&gpu, &cfg, c, &mut rng);
                }
            }
        }
    }
}

#[test]
fn gemv_q8_0_shapes() {
    // Both dot forms. With int8 activations x is staged 4096 elements at a time: 4096 is
    // one whole tile, 4160 and 9024 end on a partial one.
    let gpu = gpu(None);
    let mut rng = Rng::new(12);
    let mut idx = 0;
    for (k, q8_dot) in [32, 64, 96, 1024, 4096, 4160, 9024]
        .into_iter()
        .flat_map(|k| [(k, Q8Dot::F32), (k, Q8Dot::I8)])
    {
        let cfg = GemvConfig {
            q8_dot,
            ..Default::default()
        };
        for n in [1, 13, 37] {
            for rows in [1, 5] {
                let (bias, accumulate) = FLAGS[idx % 4];
                idx += 1;
                let c = Case {
                    ty: GgmlType::Q8_0,
                    n,
                    k,
                    rows,
                    bias,
                    accumulate,
                };
                check(&gpu, &cfg, c, &mut rng);
            }
        }
    }
}

#[test]
fn gemv_every_config() {
    // wg 32 with 8 rows per group on 8-wide subgroups: fewer subgroups than rows, so
    // each subgroup loops over rows; wg 256 with 2 rows: 16 subgroups share one row.
    let gpu = gpu(None);
    let mut rng = Rng::new(13);
    for cols_per_tg in [2, 4, 8, 16] {
        for (wg_i, wg_size) in [32, 64, 128, 256].into_iter().enumerate() {
            // Every pair meets both Q8_0 dot forms and, over the loop, each F16 unroll.
            let cfg = GemvConfig {
                cols_per_tg,
                q8_cols_per_tg: cols_per_tg,
                wg_size,
                all_rows_wg_size: wg_size,
                unroll: [1, 2, 4][(wg_i + cols_per_tg as usize) % 3],
                q8_dot: Q8Dot::F32,
                f16_tiling: DenseTiling::Rows,
                // The all-rows lookahead, forced both ways (auto takes 2 for Q8_0 grids
                // this small). Its paired body runs where a lane has two units or more:
                // here F16 K = 520 at 32 or 64 threads; kernels_fused's norm test runs
                // it for Q8_0 too.
                all_rows_unroll: [1, 2][(wg_i + cols_per_tg as usize) % 2],
            };
            let cfg_i8 = GemvConfig {
                q8_dot: Q8Dot::I8,
                ..cfg
            };
            // F16 K = 100 is not a multiple of 8, so it keeps the row tiling.
            let cfg_all_rows = GemvConfig {
                f16_tiling: DenseTiling::AllRows,
                ..cfg
            };
            for (ty, k) in [
                (GgmlType::F16, 100),
                (GgmlType::F16, 520),
                (GgmlType::F32, 36),
                (GgmlType::F32, 300),
                (GgmlType::Q8_0, 96),
                (GgmlType::Q8_0, 512),
            ] {
                let cfgs: &[GemvConfig] = match ty {
                    GgmlType::Q8_0 => &[cfg, cfg_i8],
                    GgmlType::F16 => &[cfg, cfg_all_rows],
                    _ => &[cfg],
                };
                for (cfg, (rows, (bias, accumulate))) in cfgs
                    .iter()
                    .flat_map(|c| [(c, (1, FLAGS[0])), (c, (5, FLAGS[3])), (c, (2, FLAGS[1]))])
                {
                    let c = Case {
                        ty,
                        n: 37,
                        k,
                        rows,
                        bias,
                        accumulate,
                    };
                    check(&gpu, cfg, c, &mut rng);
                }
            }
        }
    }
}

#[test]
fn gemv_split_bindings() {
    // A 4 KiB binding limit splits a 300-row matrix into many chunks; each dispatch must
    // write its rows at their offset in y (and read its bias there).
    let gpu = gpu(Some(4096));
    assert_eq!(gpu.max_binding_bytes, 4096);
    let mut rng = Rng::new(14);
    let configs = [
        GemvConfig::default(),
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
        GemvConfig {
            f16_tiling: DenseTiling::AllRows,
            ..Default::default()
        },
    ];
    for cfg in &configs {
        for (ty, k) in [
            (GgmlType::F16, 100),
            (GgmlType::F32, 64),
            (GgmlType::F32, 7),
            (GgmlType::Q8_0, 64),
            (GgmlType::Q8_0, 96),
        ] {
            // y of 3 rows x 304 floats still fits in one 4 KiB binding.
            for (rows, (bias, accumulate)) in [(1, FLAGS[1]), (2, FLAGS[0]), (2, FLAGS[3])] {
                let c = Case {
                    ty,
                    n: 300,
                    k,
                    rows,
                    bias,
                    accumulate,
                };
                let chunks = check(&gpu, cfg, c, &mut rng);
                assert!(
                    chunks >= 3,
                    "{c:?}: expected a split matrix, got {chunks} chunk(s)"
                );
            }
        }
    }
}

#[test]
fn gemv_grid_folded_into_z() {
    // N > 65535 * cols_per_tg: the grid folds into z and the kernel rebuilds its group
    // index as wg.x + wg.z * num_workgroups.x. Short rows keep it cheap on lavapipe.
    let gpu = gpu(None);
    let mut rng = Rng::new(15);
    let cfg = GemvConfig {
        cols_per_tg: 2,
        q8_cols_per_tg: 2,
        wg_size: 32,
        all_rows_wg_size: 32,
        ..Default::default()
    };
    let n: u32 = 2 * 65_535 + 37;
    assert_eq!(Grid::PerRow(n.div_ceil(2)).size(1)[2], 2);
    for (ty, k, rows) in [(GgmlType::F16, 8, 1), (GgmlType::Q8_0, 32, 2)] {
        let c = Case {
            ty,
            n,
            k,
            rows,
            bias: true,
            accumulate: false,
        };
        check(&gpu, &cfg, c, &mut rng);
    }
}

#[test]
fn grid_per_row_folds_into_z() {
    for (x, rows) in [(100_000u32, 3u32), (65_535, 2), (65_536, 1), (200_001, 4)] {
        let [gx, gy, gz] = Grid::PerRow(x).size(rows);
        assert!(gx <= 65_535, "PerRow({x}): x = {gx} over the limit");
        assert_eq!(gy, rows);
        // The kernels index groups as wg.x + wg.z * gx: all of 0..x must be covered,
        // and no z slice may be entirely past the end.
        assert!(
            gx as u64 * gz as u64 >= x as u64,
            "PerRow({x}): {gx} x {gz} too few"
        );
        assert!(
            gx as u64 * (gz as u64 - 1) < x as u64,
            "PerRow({x}): empty z slice"
        );
    }
    assert_eq!(Grid::PerRow(100_000).size(3), [50_000, 3, 2]);
    assert_eq!(Grid::PerRow(7).size(5), [7, 5, 1]);
}

#[test]
fn gemv_writes_at_a_column_offset() {
    // Q, K and V kept apart (mixed types) write into one QKV row: W goes to columns
    // col..col + n and reads bias[col..]; every other column keeps its value.
    let gpu = gpu(Some(4096));
    let mut rng = Rng::new(13);
    let cfg = GemvConfig::default();
    for ty in [GgmlType::F16, GgmlType::Q8_0] {
        let (n, k, col, rows) = (100usize, 64usize, 24usize, 3usize);
        let width = col + n + 16;
        let (w, deq) = matrix(
            &gpu,
            ty,
            n as u32,
            k as u32,
            &rand_vec(&mut rng, n * k, 1.0),
        );
        let x = Activation::new(&gpu, "x", rows as u32, k as u32).unwrap();
        let y = Activation::new(&gpu, "y", rows as u32, width as u32).unwrap();
        let xs = rand_vec(&mut rng, rows * k, 1.0);
        write_rows(&gpu, &x, &xs, 0.0);
        let y0 = rand_vec(&mut rng, (y.buf.size() / 4) as usize, 1.0);
        write_f32(&gpu, &y.buf, &y0);
        let bias = rand_vec(&mut rng, width, 0.5);
        let bias_buf = f32_buffer(&gpu, "bias", &bias);
        let dummy = storage_buffer(&gpu, "dummy", 16);
        let ds = linear(
            &gpu,
            &cfg,
            &w,
            &x,
            (&y, col as u32),
            Some(&bias_buf),
            false,
            &dummy,
        )
        .unwrap();
        assert!(ds.len() > 1, "the 4 KiB limit should split W");
        run(&gpu, ds, rows as u32);
        let got = read_f32(&gpu, &y.buf);
        let stride = y.stride as usize;
        for m in 0..rows {
            for c in 0..stride {
                let g = got[m * stride + c] as f64;
                if (col..col + n).contains(&c) {
                    let j = c - col;
                    let want: f64 = (0..k)
                        .map(|i| deq[j * k + i] as f64 * xs[m * k + i] as f64)
                        .sum::<f64>()
                        + bias[c] as f64;
                    assert!(
                        (g - want).abs() <= 2e-3 * want.abs().max(1.0),
                        "{ty:?} y[{m}][{c}] = {g}, want {want}"
                    );
                } else {
                    assert_eq!(
                        g as f32,
                        y0[m * stride + c],
                        "{ty:?} y[{m}][{c}] outside W's columns was written"
                    );
                }
            }
        }
    }
}

#[test]
fn gemv_swiglu_epilogue_on_interleaved_gate_up() {
    // Gate and up interleaved by GpuMatrix::upload_interleaved: the GEMV writes
    // silu(gate . x) * (up . x); a small binding limit splits the matrix, always between
    // (gate, up) pairs, and every COLS_PER_TG keeps pairs inside one workgroup.
    use metallic::kernels::matmul_gemv::linear_swiglu;
    for (ty, max_binding) in [
        (GgmlType::F16, None),
        (GgmlType::F16, Some(4096)),
        (GgmlType::Q8_0, Some(4096)),
    ] {
        let gpu = gpu(max_binding);
        let mut rng = Rng::new(17);
        let (ffn, k, rows) = (90usize, 64usize, 3usize);
        let (w, gd, ud) = gate_up_matrix(&gpu, &mut rng, ty, ffn, k);
        assert!(w
            .chunks
            .iter()
            .all(|c| c.first_row % 2 == 0 && c.rows % 2 == 0));
        if max_binding.is_some() {
            assert!(w.chunks.len() > 1, "{ty:?}: expected a split");
        }
        let x = Activation::new(&gpu, "x", rows as u32, k as u32).unwrap();
        let act = Activation::new(&gpu, "act", rows as u32 + 1, ffn as u32).unwrap();
        let xs = rand_vec(&mut rng, rows * k, 1.0);
        write_rows(&gpu, &x, &xs, 0.0);
        let dummy = storage_buffer(&gpu, "dummy", 16);
        for (cols, f16_tiling) in [
            (2, DenseTiling::Rows),
            (4, DenseTiling::AllRows),
            (8, DenseTiling::Rows),
            (8, DenseTiling::AllRows),
        ] {
            let cfg = GemvConfig {
                cols_per_tg: cols,
                q8_cols_per_tg: cols,
                wg_size: 64,
                all_rows_wg_size: 64,
                f16_tiling,
                ..Default::default()
            };
            poison(&gpu, &act.buf);
            run(
                &gpu,
                linear_swiglu(&gpu, &cfg, &w, &x, &act, &dummy).unwrap(),
                rows as u32,
            );
            let got = read_f32(&gpu, &act.buf);
            let mut want = Vec::new();
            for m in 0..rows {
                for j in 0..ffn {
                    let dot = |wd: &[f32]| {
                        (0..k)
                            .map(|i| wd[j * k + i] as f64 * xs[m * k + i] as f64)
                            .sum::<f64>()
                    };
                    let g = dot(&gd);
                    want.push(g / (1.0 + (-g).exp()) * dot(&ud));
                }
            }
            assert_close(
                &format!("{ty:?} cols={cols}"),
                &unpad(&act, &got, rows),
                &want,
                2e-3,
            );
            assert_poisoned(
                &format!("{ty:?} spare row"),
                &got[rows * act.stride as usize..],
            );
        }
    }
}

#[test]
fn all_rows_lookahead_choice() {
    use metallic::kernels::matmul_gemv::all_rows_unroll_for;
    use metallic::tensor::WeightFormat;
    // 0.5B down (896 rows, 224 workgroups of 4): Q8_0 loads two units ahead, F16 one.
    assert_eq!(all_rows_unroll_for(WeightFormat::Q8_0, 896, 4), 2);
    assert_eq!(all_rows_unroll_for(WeightFormat::F16, 896, 4), 1);
    // 7B o / down (3584 rows, 896 workgroups) and any grid of 512 or more: one.
    assert_eq!(all_rows_unroll_for(WeightFormat::Q8_0, 3584, 4), 1);
    assert_eq!(all_rows_unroll_for(WeightFormat::Q8_0, 2048, 4), 1);
    assert_eq!(all_rows_unroll_for(WeightFormat::Q8_0, 2044, 4), 2);
}
