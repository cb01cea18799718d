//! Prefill attention alone, timed with GPU timestamps, over the Qwen2.5 shapes:
//!
//! ```text
//! cargo build --release --example attention_bench
//! target/release/examples/attention_bench                       # M = 512, 2048; default tiles
//! METALLIC_BENCH_M=512 METALLIC_ATTN_TILES=32,32,8 attention_bench
//! ```
//!
//! One prompt chunk of M rows from position `METALLIC_BENCH_POS` (default 0; causal:
//! M²/2 + M·pos scores per head), random q and K/V caches (speed does not depend on the
//! values). A chunk at a later position is what a long prompt's later chunks cost. Prints µs (median of
//! `METALLIC_BENCH_REPS`, default 10, after a warm-up) and the rate in TFLOP/s counting
//! 4 · head_dim FLOPs per visible (query, key) pair. Built with `--features src_kernels`
//! it reads the WGSL from `$METALLIC_KERNEL_DIR`, so edited copies of the kernel (parts
//! removed) can be timed against the original to see where the time goes.

use metallic::gpu::profile::Profiler;
use metallic::gpu::{storage_buffer, Gpu, GpuOptions, Plan};
use metallic::kernels::attention::{self, AttentionBindings, AttnShape};
use metallic::synthetic::Rng;
use metallic::tensor::Activation;

/// (model, n_heads, n_kv_heads, head_dim).
const SHAPES: &[(&str, u32, u32, u32)] = &[("0.5b", 14, 2, 64), ("7b", 28, 4, 128)];

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn main() {
    let gpu = Gpu::new(&GpuOptions::default()).expect("a GPU adapter");
    let ms: Vec<u32> = env_or("METALLIC_BENCH_M", "512,2048")
        .split(',')
        .map(|m| {
            m.trim()
                .parse()
                .expect("METALLIC_BENCH_M: comma-separated row counts")
        })
        .collect();
    let reps: usize = env_or("METALLIC_BENCH_REPS", "10").parse().expect("REPS");
    let prof = Profiler::new(&gpu, 4).expect("timestamp queries");
    let pos: u32 = env_or("METALLIC_BENCH_POS", "0")
        .trim()
        .parse()
        .expect("METALLIC_BENCH_POS: a position");
    println!("adapter: {}", gpu.describe());
    println!("| model | heads | head_dim | pos | M | µs | TFLOP/s |");
    println!("|---|---|---|---:|---:|---:|---:|");
    for &(model, n_heads, n_kv_heads, head_dim) in SHAPES {
        for &m in &ms {
            let shape = AttnShape {
                n_heads,
                n_kv_heads,
                head_dim,
                ctx: (pos + m).next_multiple_of(4),
            };
            let mut rng = Rng::new(5);
            let q = Activation::new(&gpu, "q", m, n_heads * head_dim).expect("q");
            let out = Activation::new(&gpu, "out", m, n_heads * head_dim).expect("out");
            // The caches hold f16 values, two per word.
            let cache_values = (n_kv_heads * head_dim * shape.ctx) as usize;
            let k_cache = storage_buffer(&gpu, "k", cache_values as u64 * 2);
            let v_cache = storage_buffer(&gpu, "v", cache_values as u64 * 2);
            let q_values = rng.vec((m * q.stride) as usize, 1.0, 0.0);
            gpu.queue
                .write_buffer(&q.buf, 0, bytemuck::cast_slice(&q_values));
            for buf in [&k_cache, &v_cache] {
                let halves: Vec<half::f16> = rng
                    .vec(cache_values, 1.0, 0.0)
                    .into_iter()
                    .map(half::f16::from_f32)
                    .collect();
                gpu.queue
                    .write_buffer(buf, 0, bytemuck::cast_slice(&halves));
            }
            let state = storage_buffer(&gpu, "state", 16);
            gpu.queue
                .write_buffer(&state, 0, bytemuck::cast_slice(&[pos, m, 0, 0]));
            let b = AttentionBindings {
                state: &state,
                q: &q,
                k_cache: &k_cache,
                v_cache: &v_cache,
                out: &out,
            };
            let mut plan = Plan::default();
            plan.extend(attention::prefill(&gpu, &b, &shape).expect("prefill attention"));
            let time = || {
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                let labels = prof.encode(&mut enc, &[(&plan, m)]).expect("profile");
                gpu.queue.submit([enc.finish()]);
                let t = prof.read(&gpu, labels).expect("timestamps");
                t.iter().map(|k| k.ns).sum::<f64>() / 1e3
            };
            for _ in 0..3 {
                time();
            }
            let mut us: Vec<f64> = (0..reps).map(|_| time()).collect();
            us.sort_by(f64::total_cmp);
            let median = us[us.len() / 2];
            let pairs = n_heads as f64 * m as f64 * ((m as f64 + 1.0) / 2.0 + pos as f64);
            let flops = 4.0 * head_dim as f64 * pairs;
            println!(
                "| {model} | {n_heads}/{n_kv_heads} | {head_dim} | {pos} | {m} | {median:.1} | {:.2} |",
                flops / median / 1e6
            );
        }
    }
}
