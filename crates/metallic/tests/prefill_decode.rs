//! Prefill (batched prompt processing, chunked) followed by decode must agree with
//! feeding the same prompt one token at a time through the decode path.

use std::sync::Arc;

use metallic::gguf::{GgmlType, GgufFile};
use metallic::gpu::{Gpu, GpuOptions};
use metallic::synthetic::{qwen2_gguf, SyntheticSpec};
use metallic::{Engine, EngineOptions, ModelConfig, SamplerConfig};

fn engine(file: &GgufFile, gpu: &Arc<Gpu>, batch_size: u32) -> Engine {
    let opts = EngineOptions {
        batch_size: Some(batch_size),
        ctx_size: Some(160),
        ..Default::default()
    };
    let config = ModelConfig::from_gguf(file).unwrap();
    Engine::with_gpu(gpu.clone(), file, config, &opts, &mut |_, _| {}).unwrap()
}

fn argmax(v: &[f32]) -> u32 {
    v.iter()
        .enumerate()
        .fold(0, |best, (i, &x)| if x > v[best] { i } else { best }) as u32
}

/// max |a - b| / max |b|
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn check(spec: SyntheticSpec) {
    let gpu = Arc::new(Gpu::new(&GpuOptions::default()).expect("a Vulkan device is required"));
    let file = GgufFile::from_bytes(qwen2_gguf(&spec)).unwrap();
    // 75 prompt tokens in chunks of 32: two full chunks and one of 11 rows.
    let prompt: Vec<u32> = (0..75u32).map(|i| (i * 61 + 7) % spec.vocab).collect();
    let steps = 12;

    let mut batched = engine(&file, &gpu, 32);
    let mut stepped = engine(&file, &gpu, 32);
    let mut logits_b = batched.eval(&prompt).unwrap();
    let mut logits_s = Vec::new();
    for &t in &prompt {
        logits_s = stepped.eval(&[t]).unwrap();
    }
    let mut greedy = Vec::new();
    for step in 0..steps {
        let err = rel_err(&logits_b, &logits_s);
        assert!(
            err < 1e-3,
            "{spec:?}: step {step}: prefill vs token-by-token rel err {err}"
        );
        let t = argmax(&logits_s);
        assert_eq!(argmax(&logits_b), t, "step {step}: greedy tokens differ");
        greedy.push(t);
        logits_b = batched.eval(&[t]).unwrap();
        logits_s = stepped.eval(&[t]).unwrap();
    }

    // The pipelined generation loop (prefill, then GPU-resident decode) gives the same.
    let mut generating = engine(&file, &gpu, 32);
    let g = generating
        .generate(
            &prompt,
            steps as u32,
            &SamplerConfig::greedy(),
            &[],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(g.tokens, greedy, "{spec:?}: generate() differs from eval()");
}

#[test]
fn f16_prefill_then_decode_equals_token_by_token() {
    check(SyntheticSpec {
        context_length: 160,
        ..Default::default()
    });
}

#[test]
fn q8_0_prefill_then_decode_equals_token_by_token() {
    check(SyntheticSpec {
        matrix_type: GgmlType::Q8_0,
        tied: false,
        n_heads: 8,
        n_kv_heads: 2,
        context_length: 160,
        ..Default::default()
    });
}
