//! GEMV variants over the Qwen2.5 decode shapes: `cargo bench -p metallic --bench
//! gemv_variant_bench`. The variant comes from `METALLIC_GEMV_COLS_PER_TG` and
//! `METALLIC_GEMV_Q8_COLS_PER_TG` (2, 4, 8 or 16), as in the engine; `METALLIC_BENCH_SHAPES=0.5b|7b|all` picks the shapes (default 0.5b).
//! Each sample records `iters` dependent-free dispatches of one GEMV in a single pass
//! and waits for the GPU, so the time per iteration is kernel time plus the per-dispatch
//! cost; throughput is reported as weight bytes read.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use metallic::gguf::{dequant, GgmlType, GgufFile, GgufWriter};
use metallic::gpu::{storage_buffer, Gpu, GpuOptions, Plan};
use metallic::kernels::matmul_gemv::{linear, GemvConfig};
use metallic::synthetic::Rng;
use metallic::tensor::{Activation, GpuMatrix};

/// (name, rows, k): decode GEMVs of Qwen2.5-0.5B and -7B (QKV stacked).
const SHAPES_05B: &[(&str, u32, u32)] = &[
    ("qkv", 1152, 896),
    ("attn_output", 896, 896),
    ("ffn_gate", 4864, 896),
    ("ffn_down", 896, 4864),
    ("lm_head", 151936, 896),
];
const SHAPES_7B: &[(&str, u32, u32)] = &[
    ("qkv", 4608, 3584),
    ("attn_output", 3584, 3584),
    ("ffn_gate", 18944, 3584),
    ("ffn_down", 3584, 18944),
    ("lm_head", 152064, 3584),
];

fn upload(gpu: &Gpu, ty: GgmlType, rows: u32, k: u32) -> GpuMatrix {
    let mut rng = Rng::new(7);
    let data = rng.vec((rows * k) as usize, 0.05, 0.0);
    let bytes = match ty {
        GgmlType::Q8_0 => dequant::quantize_q8_0(&data),
        _ => dequant::f32_to_f16_bytes(&data),
    };
    let mut w = GgufWriter::new();
    w.add_tensor("w", ty, &[k as u64, rows as u64], bytes);
    let file = GgufFile::from_bytes(w.to_bytes()).expect("gguf");
    GpuMatrix::upload(gpu, &file, file.require_tensor("w").expect("w")).expect("upload")
}

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new(&GpuOptions::default()).expect("a GPU adapter");
    let cfg = GemvConfig::from_env().expect("METALLIC_GEMV_COLS_PER_TG");
    let shapes: Vec<_> = match std::env::var("METALLIC_BENCH_SHAPES").as_deref() {
        Ok("7b") => SHAPES_7B.to_vec(),
        Ok("all") => SHAPES_05B.iter().chain(SHAPES_7B).copied().collect(),
        _ => SHAPES_05B.to_vec(),
    };
    let dummy = storage_buffer(&gpu, "dummy", 16);
    let mut group = c.benchmark_group(format!(
        "gemv_cols{}_q8cols{}",
        cfg.cols_per_tg, cfg.q8_cols_per_tg
    ));
    group
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for &(name, rows, k) in &shapes {
        for ty in [GgmlType::F16, GgmlType::Q8_0] {
            let w = upload(&gpu, ty, rows, k);
            let x = Activation::new(&gpu, "x", 1, k).expect("x");
            let y = Activation::new(&gpu, "y", 1, rows).expect("y");
            let mut plan = Plan::default();
            plan.extend(linear(&gpu, &cfg, &w, &x, (&y, 0), None, false, &dummy).expect("gemv"));
            group.throughput(Throughput::Bytes(w.bytes()));
            let id = BenchmarkId::new(format!("{}_{name}", ty.name()), format!("{rows}x{k}"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let mut enc = gpu.device.create_command_encoder(&Default::default());
                    {
                        let mut pass = enc.begin_compute_pass(&Default::default());
                        for _ in 0..iters {
                            plan.encode(&mut pass, 1);
                        }
                    }
                    let start = Instant::now();
                    gpu.queue.submit([enc.finish()]);
                    gpu.wait_idle().expect("wait");
                    start.elapsed()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
