//! `Engine::generate` (the pipelined, GPU-resident token loop) against the CPU reference,
//! and the profiling mode.

use std::sync::Arc;

use metallic::gguf::{GgmlType, GgufFile};
use metallic::gpu::{Gpu, GpuOptions};
use metallic::reference::Reference;
use metallic::synthetic::{qwen2_gguf, SyntheticSpec};
use metallic::{Engine, EngineOptions, ModelConfig, SamplerConfig, StopReason};

fn engine(spec: &SyntheticSpec) -> (Engine, Reference) {
    engine_with(spec, &GpuOptions::default())
}

fn engine_with(spec: &SyntheticSpec, opts: &GpuOptions) -> (Engine, Reference) {
    let file = GgufFile::from_bytes(qwen2_gguf(spec)).unwrap();
    let gpu = Arc::new(Gpu::new(opts).expect("a Vulkan device (lavapipe) is required"));
    let config = ModelConfig::from_gguf(&file).unwrap();
    let engine = Engine::with_gpu(
        gpu,
        &file,
        config,
        &EngineOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    (engine, Reference::load(&file).unwrap())
}

fn reference_greedy(reference: &mut Reference, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut logits = reference.forward(prompt);
    let mut out = Vec::new();
    for _ in 0..n {
        let t = logits
            .iter()
            .enumerate()
            .fold(0, |b, (i, &x)| if x > logits[b] { i } else { b }) as u32;
        out.push(t);
        logits = reference.forward(&[t]);
    }
    out
}

#[test]
fn greedy_generation_matches_reference_and_stops_exactly() {
    let spec = SyntheticSpec::default();
    let (mut engine, mut reference) = engine(&spec);
    let prompt = [3u32, 17, 200, 5];
    let want = reference_greedy(&mut reference, &prompt, 30);
    // 30 tokens cross several decode batches of 8 with two in flight.
    let mut streamed = Vec::new();
    let g = engine
        .generate(&prompt, 30, &SamplerConfig::greedy(), &[], &mut |t| {
            streamed.push(t)
        })
        .unwrap();
    assert_eq!(g.tokens, want);
    assert_eq!(streamed, want);
    assert_eq!(g.stop_reason, StopReason::MaxTokens);
    // Stop on the 12th token: generation must end right after it even though later
    // steps were already queued on the GPU.
    let stop = want[11];
    let first = want.iter().position(|&t| t == stop).unwrap();
    let g = engine
        .generate(&prompt, 30, &SamplerConfig::greedy(), &[stop], &mut |_| {})
        .unwrap();
    assert_eq!(g.tokens, want[..=first]);
    assert_eq!(g.stop_reason, StopReason::Stop);
}

#[test]
fn seeded_sampling_reproduces() {
    let (mut engine, _) = engine(&SyntheticSpec::default());
    let run = |engine: &mut Engine, seed| {
        let s = SamplerConfig {
            temperature: 1.0,
            top_k: 50,
            top_p: 0.9,
            seed,
        };
        engine
            .generate(&[1, 2, 3], 20, &s, &[], &mut |_| {})
            .unwrap()
            .tokens
    };
    let a = run(&mut engine, 42);
    assert_eq!(a, run(&mut engine, 42));
    assert!(
        (43..48).any(|seed| run(&mut engine, seed) != a),
        "different seeds never changed the output"
    );
}

#[test]
fn context_overflow_is_an_error() {
    let (mut engine, _) = engine(&SyntheticSpec {
        context_length: 16,
        ..Default::default()
    });
    let err = engine
        .generate(&[1; 10], 7, &SamplerConfig::greedy(), &[], &mut |_| {})
        .unwrap_err();
    assert!(
        err.to_string().contains("exceeds the context size (16)"),
        "{err}"
    );
}

#[test]
fn profiling_times_every_dispatch() {
    let spec = SyntheticSpec::default();
    let (mut engine, mut reference) = engine(&spec);
    engine.enable_profiling().unwrap();
    let g = engine
        .generate(&[9, 8, 7], 4, &SamplerConfig::greedy(), &[], &mut |_| {})
        .unwrap();
    assert_eq!(
        g.tokens,
        reference_greedy(&mut reference, &[9, 8, 7], 4),
        "profiling changed the output"
    );
    // The 3-token prompt is one prefill chunk (its kernels labelled prefill/...), then
    // one profile per decode step after the first token.
    assert_eq!(
        engine.profile.len(),
        4,
        "one prompt chunk and 3 decode steps"
    );
    let (prompt, decode) = engine.profile.split_first().unwrap();
    assert_eq!(prompt.len(), engine.dispatches_per_chunk_of(3));
    assert!(prompt.iter().all(|k| k.label.starts_with("prefill/")));
    // Decode steps at positions 3, 4, 5: the short-context plan (one dispatch per layer
    // fewer: the attention's combine is folded into the output projection).
    for (pos, step) in (3..).zip(decode) {
        assert_eq!(step.len(), engine.dispatches_per_token_at(pos));
        assert!(step.iter().all(|k| !k.label.starts_with("prefill/")));
    }
    if engine.short_decode_last_pos().is_some_and(|last| last >= 5) {
        let layers = engine.config.n_layers as usize;
        assert_eq!(
            engine.dispatches_per_token_at(3) + layers,
            engine.dispatches_per_token()
        );
        assert!(decode[0].iter().any(|k| k.label.contains("+attn_combine")));
        assert!(!decode[0].iter().any(|k| k.label == "attention_combine"));
    }
    for step in &engine.profile {
        assert!(step.iter().all(|k| k.ns.is_finite() && k.ns >= 0.0));
    }
    let table = metallic::gpu::profile::format_table(&engine.profile);
    assert!(
        table.contains("gemv_f16:attn_q")
            && table.contains("sample")
            && table.contains("prompt chunks")
            && table.contains("prefill/"),
        "{table}"
    );
}

#[test]
fn decode_crosses_the_short_context_plan_limit() {
    // 512 positions of 64-key attention tiles (head_dim 16): up to 8 chunks. Decode steps
    // merge the chunks inside the output projection while at most 4 are live (positions
    // up to 255), then take the plan with the combine pass; the generation crosses over.
    let spec = SyntheticSpec {
        context_length: 512,
        ..Default::default()
    };
    let (mut engine, mut reference) = engine(&spec);
    assert_eq!(engine.short_decode_last_pos(), Some(255));
    let layers = engine.config.n_layers as usize;
    assert_eq!(
        engine.dispatches_per_token_at(255) + layers,
        engine.dispatches_per_token_at(256)
    );
    let prompt: Vec<u32> = (0..250).map(|i| (i * 7 + 3) % spec.vocab).collect();
    let g = engine
        .generate(&prompt, 12, &SamplerConfig::greedy(), &[], &mut |_| {})
        .unwrap();
    assert_eq!(g.tokens, reference_greedy(&mut reference, &prompt, 12));
}

#[test]
fn kernels_with_and_without_runtime_checks_agree() {
    // The default compiles the kernels without wgpu's runtime checks (loop guards, index
    // clamps); both forms must generate the same tokens, greedy (against the reference)
    // and top-p sampled with a seed (the sampler's loops), for F16 and Q8_0 weights.
    for matrix_type in [GgmlType::F16, GgmlType::Q8_0] {
        let spec = SyntheticSpec {
            matrix_type,
            ..SyntheticSpec::default()
        };
        checks_agree(&spec);
    }
}

fn checks_agree(spec: &SyntheticSpec) {
    let prompt = [3u32, 17, 200, 5, 41];
    let top_p = SamplerConfig {
        temperature: 0.8,
        top_p: 0.9,
        seed: 7,
        ..SamplerConfig::greedy()
    };
    let mut runs = Vec::new();
    for checks in [true, false] {
        let opts = GpuOptions {
            shader_checks: Some(checks),
            ..Default::default()
        };
        let (mut engine, mut reference) = engine_with(spec, &opts);
        assert_eq!(engine.gpu.shader_checks, checks);
        let greedy = engine
            .generate(&prompt, 20, &SamplerConfig::greedy(), &[], &mut |_| {})
            .unwrap();
        assert_eq!(greedy.tokens, reference_greedy(&mut reference, &prompt, 20));
        let sampled = engine
            .generate(&prompt, 20, &top_p, &[], &mut |_| {})
            .unwrap();
        runs.push((greedy.tokens, sampled.tokens));
    }
    assert_eq!(runs[0], runs[1]);
}
