//! Prefill GEMM against the current prefill (one GEMV pass per batch row) over the
//! Qwen2.5 shapes, timed with GPU timestamps:
//!
//! ```text
//! cargo build --release --example gemm_bench
//! target/release/examples/gemm_bench            # all shapes, M = 512 and 2048
//! METALLIC_BENCH_SHAPES=0.5b METALLIC_BENCH_M=512 METALLIC_BENCH_REPS=20 gemm_bench
//! METALLIC_BENCH_PATHS=coop METALLIC_BENCH_TYPES=f16 gemm_bench   # time only these
//! METALLIC_GEMM_COOP_SPLIT_K=1 gemm_bench                        # coop without split-K
//! METALLIC_BENCH_SHAPES=custom:16896x3584,33792x3584 gemm_bench   # any N x K
//! ```
//!
//! Each (shape, weight type, M) runs every path the adapter has: `gemv` (the baseline),
//! `portable` and, where cooperative matrices are supported, `coop`. The coop path takes
//! f16 activations, as the prefill plan gives it: x in f16, and the SwiGLU output in f16.
//! Each path first runs
//! once into a zeroed output, which is compared with the GEMV's (`max|Δ|/max|ref|`, a
//! sanity check: the coop path stages x and W in f16); then it is warmed up and timed
//! `REPS` times, one timed pass per dispatch, and the median is reported. Weights are
//! synthetic (speed does not depend on their values). Prints a markdown table.

use metallic::gguf::{dequant, GgmlType, GgufFile, GgufWriter};
use metallic::gpu::profile::Profiler;
use metallic::gpu::{read_buffer, storage_buffer, Dispatch, Gpu, GpuOptions, Plan};
use metallic::kernels::{matmul_gemm, matmul_gemv};
use metallic::synthetic::Rng;
use metallic::tensor::{Activation, GpuMatrix};

/// How a layer's matrix is applied: the epilogue changes what the GEMM writes.
#[derive(Clone, Copy, PartialEq)]
enum Op {
    /// y = x W^T + bias (QKV).
    Bias,
    /// y += x W^T (attention output and FFN down: the residual add).
    Residual,
    /// act = silu(x gate^T) * (x up^T), gate and up interleaved.
    Swiglu,
}

/// (model, name, output rows, K, op). The gate/up rows count both halves.
const SHAPES: &[(&str, &str, u32, u32, Op)] = &[
    ("0.5b", "attn_qkv", 1152, 896, Op::Bias),
    ("0.5b", "attn_output", 896, 896, Op::Residual),
    ("0.5b", "ffn_gate_up", 9728, 896, Op::Swiglu),
    ("0.5b", "ffn_down", 896, 4864, Op::Residual),
    ("7b", "attn_qkv", 4608, 3584, Op::Bias),
    ("7b", "attn_output", 3584, 3584, Op::Residual),
    ("7b", "ffn_gate_up", 37888, 3584, Op::Swiglu),
    ("7b", "ffn_down", 3584, 18944, Op::Residual),
];

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// A synthetic matrix of `rows x k` (gate/up interleaved for SwiGLU), small values.
fn upload(gpu: &Gpu, ty: GgmlType, rows: u32, k: u32, op: Op) -> GpuMatrix {
    let mut rng = Rng::new(7);
    let parts = if op == Op::Swiglu { 2 } else { 1 };
    let part_rows = rows / parts;
    let mut w = GgufWriter::new();
    let names = ["gate", "up"];
    for name in &names[..parts as usize] {
        let data = rng.vec((part_rows * k) as usize, 0.05, 0.0);
        let bytes = match ty {
            GgmlType::Q8_0 => dequant::quantize_q8_0(&data),
            _ => dequant::f32_to_f16_bytes(&data),
        };
        w.add_tensor(name, ty, &[k as u64, part_rows as u64], bytes);
    }
    let file = GgufFile::from_bytes(w.to_bytes()).expect("gguf");
    let infos: Vec<_> = names[..parts as usize]
        .iter()
        .map(|n| file.require_tensor(n).expect("tensor"))
        .collect();
    if op == Op::Swiglu {
        GpuMatrix::upload_interleaved(gpu, &file, &infos, "blk.0.ffn_gate_up.weight")
    } else {
        GpuMatrix::upload(gpu, &file, infos[0])
    }
    .expect("upload")
}

fn plan_of(ds: Vec<Dispatch>) -> Plan {
    let mut plan = Plan::default();
    plan.extend(ds);
    plan
}

fn run_once(gpu: &Gpu, plan: &Plan, rows: u32) {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        plan.encode(&mut pass, rows);
    }
    gpu.queue.submit([enc.finish()]);
    gpu.wait_idle().expect("wait");
}

/// Median GPU time of the whole plan (all its chunk dispatches), in microseconds.
/// The median over `reps` back-to-back runs in one submission, so the GPU never idles
/// between them the way a readback per run would let it. Before that, the plan runs
/// back to back for at least `WARM_UP`: on an H100 a large GEMM timed after a second of
/// idle or light work read up to 2.5x slower (7B gate_up 2913 / 2026 / 1881 us in three
/// rounds) than after sustained load (1231 us), and `metallic bench` never sees that.
fn time_plan(gpu: &Gpu, prof: &Profiler, plan: &Plan, rows: u32, reps: usize) -> f64 {
    const WARM_UP: std::time::Duration = std::time::Duration::from_millis(1500);
    let start = std::time::Instant::now();
    while start.elapsed() < WARM_UP {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for _ in 0..16 {
                plan.encode(&mut pass, rows);
            }
        }
        gpu.queue.submit([enc.finish()]);
        gpu.wait_idle().expect("wait");
    }
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    let labels = prof
        .encode(&mut enc, &vec![(plan, rows); reps])
        .expect("profile");
    gpu.queue.submit([enc.finish()]);
    let t = prof.read(gpu, labels).expect("timestamps");
    // Only the dispatches for this row count run (and are timed): a plan holds one GEMM
    // per range of chunk lengths.
    let per_rep = plan.dispatches.iter().filter(|d| d.runs_at(rows)).count();
    let mut times: Vec<f64> = t
        .chunks(per_rep)
        .map(|rep| rep.iter().map(|k| k.ns).sum::<f64>() / 1e3)
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn read_f32(gpu: &Gpu, act: &Activation, rows: u32) -> Vec<f32> {
    let bytes = read_buffer(gpu, &act.buf, 0, rows as u64 * act.stride as u64 * 4).expect("read");
    bytemuck::pod_collect_to_vec(&bytes)
}

/// The f16 output's rows, widened to f32 in the f32 output's layout (same stride).
fn read_f16(gpu: &Gpu, act: &Activation, rows: u32) -> Vec<f32> {
    let bytes = read_buffer(gpu, &act.buf, 0, rows as u64 * act.stride as u64 * 2).expect("read");
    let halves: Vec<half::f16> = bytemuck::pod_collect_to_vec(&bytes);
    halves.iter().map(|h| h.to_f32()).collect()
}

fn rel_diff(got: &[f32], want: &[f32]) -> f64 {
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| {
            if g.is_finite() {
                (*g as f64 - *w as f64).abs()
            } else {
                f64::INFINITY
            }
        })
        .fold(0f64, f64::max);
    worst / scale.max(f64::MIN_POSITIVE)
}

fn main() {
    let gpu = Gpu::new(&GpuOptions::default()).expect("a GPU adapter");
    let shapes = env_or("METALLIC_BENCH_SHAPES", "all");
    let ms: Vec<u32> = env_or("METALLIC_BENCH_M", "512,2048")
        .split(',')
        .map(|m| {
            m.trim()
                .parse()
                .expect("METALLIC_BENCH_M: comma-separated row counts")
        })
        .collect();
    let reps: usize = env_or("METALLIC_BENCH_REPS", "10").parse().expect("REPS");
    // The GEMV always runs once (it is the reference); only these paths are timed.
    let timed = env_or("METALLIC_BENCH_PATHS", "gemv,portable,coop");
    let timed: Vec<&str> = timed.split(',').map(str::trim).collect();
    let types = env_or("METALLIC_BENCH_TYPES", "f16,q8_0").to_lowercase();
    let prof = Profiler::new(&gpu, 64 * reps as u32).expect("timestamp queries");
    let gemv = matmul_gemv::GemvConfig::from_env().expect("GEMV config");
    let mut paths = vec![(
        "portable",
        matmul_gemm::GemmConfig::new(&gpu, matmul_gemm::GemmPath::Portable).unwrap(),
    )];
    if gpu.coop_matrix_f16 {
        // METALLIC_GEMM_COOP_SPLIT_K applies (auto by default), as in the engine.
        let split_k = matmul_gemm::GemmConfig::from_env(&gpu)
            .expect("METALLIC_GEMM / METALLIC_GEMM_COOP_SPLIT_K")
            .split_k;
        paths.push((
            "coop",
            matmul_gemm::GemmConfig::new(&gpu, matmul_gemm::GemmPath::Coop)
                .unwrap()
                .with_split_k(split_k),
        ));
    }
    println!("adapter: {}", gpu.describe());
    println!(
        "cooperative matrices (16x16 f16, f32 acc): {}; median of {reps}, GPU timestamps\n",
        if gpu.coop_matrix_f16 {
            "yes"
        } else {
            "no: coop path skipped"
        }
    );
    println!(
        "| model | matrix | N x K | type | M | path | µs | TFLOP/s | vs gemv | max rel Δ vs gemv |"
    );
    println!("|---|---|---|---|---|---|---:|---:|---:|---:|");
    let dummy = storage_buffer(&gpu, "dummy", 16);
    let state = storage_buffer(&gpu, "state", 16);
    // `custom:NxK,NxK`: plain matrices of N outputs and K inputs (residual epilogue),
    // e.g. sized so that a forced tile makes exactly one or two workgroups per SM.
    let custom: Vec<(&str, &str, u32, u32, Op)> = match shapes.strip_prefix("custom:") {
        Some(list) => list
            .split(',')
            .map(|nk| {
                let (n, k) = nk
                    .trim()
                    .split_once('x')
                    .and_then(|(n, k)| Some((n.parse().ok()?, k.parse().ok()?)))
                    .expect("METALLIC_BENCH_SHAPES=custom:NxK,...");
                ("custom", "matrix", n, k, Op::Residual)
            })
            .collect(),
        None => Vec::new(),
    };
    let table = if custom.is_empty() {
        SHAPES
    } else {
        &custom[..]
    };
    for &(model, name, n, k, op) in table {
        if custom.is_empty() && shapes != "all" && shapes != model {
            continue;
        }
        for ty in [GgmlType::F16, GgmlType::Q8_0] {
            if !types
                .split(',')
                .any(|t| t.trim() == ty.name().to_lowercase())
            {
                continue;
            }
            let w = upload(&gpu, ty, n, k, op);
            let bias = storage_buffer(&gpu, "bias", n as u64 * 4);
            for &m in &ms {
                let out_cols = if op == Op::Swiglu { n / 2 } else { n };
                let (x, y) = match (
                    Activation::new(&gpu, "x", m, k),
                    Activation::new(&gpu, "y", m, out_cols),
                ) {
                    (Ok(x), Ok(y)) => (x, y),
                    _ => {
                        println!("| {model} | {name} | {n}x{k} | {} | {m} | - | activations exceed the binding limit | | | |", ty.name());
                        continue;
                    }
                };
                let mut rng = Rng::new(11);
                let xs = rng.vec((m * x.stride) as usize, 1.0, 0.0);
                gpu.queue.write_buffer(&x.buf, 0, bytemuck::cast_slice(&xs));
                gpu.queue
                    .write_buffer(&state, 0, bytemuck::cast_slice(&[0u32, m, 0, 0]));
                let zeros = vec![0u8; y.buf.size() as usize];
                let flops = 2.0 * m as f64 * n as f64 * k as f64;
                let mut reference: Option<(Vec<f32>, f64)> = None;
                let gemv_plan = plan_of(
                    match op {
                        Op::Swiglu => matmul_gemv::linear_swiglu(&gpu, &gemv, &w, &x, &y, &dummy),
                        _ => matmul_gemv::linear(
                            &gpu,
                            &gemv,
                            &w,
                            &x,
                            (&y, 0),
                            (op == Op::Bias).then_some(&bias),
                            op == Op::Residual,
                            &dummy,
                        ),
                    }
                    .expect("gemv"),
                );
                // The coop paths take the prefill plan's f16 activations: x in f16, and
                // the SwiGLU output in f16 (the residual and bias outputs stay f32).
                let x16 = Activation::new_f16(&gpu, "x16", m, k).expect("x16");
                let halves: Vec<half::f16> = xs.iter().map(|&v| half::f16::from_f32(v)).collect();
                gpu.queue.write_buffer(
                    &x16.buf,
                    0,
                    bytemuck::cast_slice(&halves[..(m * x16.stride) as usize]),
                );
                let y16 = Activation::new_f16(&gpu, "y16", m, out_cols).expect("y16");
                let mut runs: Vec<(&str, Plan, bool)> = vec![("gemv", gemv_plan, false)];
                for (label, cfg) in &paths {
                    if !timed.contains(label) {
                        continue;
                    }
                    let coop = cfg.path == matmul_gemm::GemmPath::Coop;
                    let xa = if coop { &x16 } else { &x };
                    let half_out = coop && op == Op::Swiglu;
                    let ds = match op {
                        Op::Swiglu => matmul_gemm::linear_swiglu(
                            &gpu,
                            cfg,
                            &state,
                            &w,
                            xa,
                            if half_out { &y16 } else { &y },
                            &dummy,
                        ),
                        _ => matmul_gemm::linear(
                            &gpu,
                            cfg,
                            &state,
                            &w,
                            xa,
                            (&y, 0),
                            (op == Op::Bias).then_some(&bias),
                            op == Op::Residual,
                            &dummy,
                        ),
                    }
                    .expect("gemm");
                    runs.push((label, plan_of(ds), half_out));
                }
                for (label, plan, half_out) in &runs {
                    gpu.queue.write_buffer(&y.buf, 0, &zeros);
                    gpu.queue
                        .write_buffer(&y16.buf, 0, &zeros[..y16.buf.size() as usize]);
                    run_once(&gpu, plan, m);
                    let out = if *half_out {
                        read_f16(&gpu, &y16, m)
                    } else {
                        read_f32(&gpu, &y, m)
                    };
                    if !timed.contains(label) {
                        reference = Some((out, f64::NAN));
                        continue;
                    }
                    let us = time_plan(&gpu, &prof, plan, m, reps);
                    let diff = match &reference {
                        None => {
                            reference = Some((out, us));
                            "-".to_string()
                        }
                        Some((r, _)) => format!("{:.1e}", rel_diff(&out, r)),
                    };
                    let speedup = match reference.as_ref().map_or(1.0, |(_, g)| g / us) {
                        s if s.is_nan() => "-".to_string(), // the GEMV was not timed
                        s => format!("{s:.1}x"),
                    };
                    println!(
                        "| {model} | {name} | {n}x{k} | {} | {m} | {label} | {us:.1} | {:.2} | {speedup} | {diff} |",
                        ty.name(),
                        flops / us / 1e6,
                    );
                }
            }
        }
    }
}
