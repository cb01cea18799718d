//! `metallic bench`: prompt processing (pp) and generation (tg) throughput in the
//! spirit of llama-bench: random prompt tokens, a warm-up run, `-r` repetitions,
//! mean ± sd, markdown or JSON.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use metallic::synthetic::Rng;
use metallic::{Engine, EngineOptions, SamplerConfig};

#[derive(Clone, Copy, ValueEnum)]
pub enum BenchOutput {
    Md,
    Json,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Path to a GGUF model.
    model: PathBuf,
    /// Prompt tokens for the pp test (0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    n_prompt: u32,
    /// Generated tokens for the tg test (0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    n_gen: u32,
    /// Repetitions of each test.
    #[arg(short = 'r', long, default_value_t = 5)]
    repetitions: u32,
    /// Prompt tokens per prefill batch [default: 2048, fewer where the activations would
    /// exceed the device's storage binding limit].
    #[arg(short = 'b', long)]
    batch_size: Option<u32>,
    #[arg(short = 'o', long, value_enum, default_value_t = BenchOutput::Md)]
    output: BenchOutput,
}

struct TestResult {
    name: String,
    n_tokens: u32,
    samples: Vec<f64>,
}

impl TestResult {
    fn mean(&self) -> f64 {
        self.samples.iter().sum::<f64>() / self.samples.len() as f64
    }

    fn sd(&self) -> f64 {
        let n = self.samples.len() as f64;
        if n < 2.0 {
            return 0.0;
        }
        let m = self.mean();
        (self.samples.iter().map(|s| (s - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    }
}

pub fn bench(args: BenchArgs) -> Result<(), String> {
    if args.repetitions == 0 {
        return Err("--repetitions must be at least 1".into());
    }
    if args.n_prompt == 0 && args.n_gen == 0 {
        return Err("nothing to measure: both -p and -n are 0".into());
    }
    let file = crate::open_gguf(&args.model)?;
    let n_params: u64 = file.tensors().iter().map(|t| t.n_elements).sum();
    let model_bytes: u64 = file.tensors().iter().map(|t| t.n_bytes).sum();
    // Like llama-bench, the context holds just the longest test.
    let ctx = args.n_prompt.max(1) + args.n_gen.max(1) + 1;
    let opts = EngineOptions {
        ctx_size: Some(ctx),
        batch_size: args.batch_size,
        ..Default::default()
    };
    let mut engine = Engine::from_gguf(&file, &opts, &mut |_, _| {}).map_err(|e| e.to_string())?;
    if engine.context_size() < ctx {
        return Err(format!(
            "the model's context ({}) is shorter than -p + -n",
            engine.context_size()
        ));
    }
    let vocab = engine.config.vocab;
    let mut rng = Rng::new(42);
    let mut random_tokens = |n: u32| -> Vec<u32> {
        (0..n)
            .map(|_| (rng.next_u64() % vocab as u64) as u32)
            .collect()
    };
    let greedy = SamplerConfig::greedy();
    let mut results = Vec::new();
    if args.n_prompt > 0 {
        let mut r = TestResult {
            name: format!("pp{}", args.n_prompt),
            n_tokens: args.n_prompt,
            samples: Vec::new(),
        };
        for rep in 0..=args.repetitions {
            let prompt = random_tokens(args.n_prompt);
            let g = engine
                .generate(&prompt, 1, &greedy, &[], &mut |_| {})
                .map_err(|e| e.to_string())?;
            if rep > 0 {
                r.samples.push(args.n_prompt as f64 / g.prompt_s);
            }
        }
        results.push(r);
    }
    if args.n_gen > 0 {
        let mut r = TestResult {
            name: format!("tg{}", args.n_gen),
            n_tokens: args.n_gen,
            samples: Vec::new(),
        };
        for rep in 0..=args.repetitions {
            // One prompt token; every generated token counts, as in llama-bench.
            let prompt = random_tokens(1);
            let g = engine
                .generate(&prompt, args.n_gen, &greedy, &[], &mut |_| {})
                .map_err(|e| e.to_string())?;
            if rep > 0 {
                r.samples
                    .push(g.tokens.len() as f64 / (g.prompt_s + g.decode_s));
            }
        }
        results.push(r);
    }
    let model = args.model.file_name().map_or_else(
        || args.model.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let device = engine.gpu.describe();
    match args.output {
        BenchOutput::Md => {
            println!("| model | size | params | backend | device | test | t/s |");
            println!("| --- | ---: | ---: | --- | --- | ---: | ---: |");
            for r in &results {
                println!(
                    "| {model} | {:.2} MiB | {:.2} M | wgpu | {device} | {} | {:.2} ± {:.2} |",
                    model_bytes as f64 / (1 << 20) as f64,
                    n_params as f64 / 1e6,
                    r.name,
                    r.mean(),
                    r.sd()
                );
            }
            println!(
                "\ndispatches per token: {} (decode plan + head); per prompt chunk: {}",
                engine.dispatches_per_token(),
                engine.dispatches_per_prefill_chunk()
            );
        }
        BenchOutput::Json => {
            let rows: Vec<_> = results
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "model": model, "model_bytes": model_bytes, "n_params": n_params,
                        "backend": "wgpu", "device": device, "n_batch": engine.batch_size(),
                        "test": r.name,
                        "n_tokens": r.n_tokens, "repetitions": r.samples.len(),
                        "avg_ts": r.mean(), "stddev_ts": r.sd(), "samples_ts": r.samples,
                        "dispatches_per_token": engine.dispatches_per_token(),
                        "dispatches_per_prefill_chunk": engine.dispatches_per_prefill_chunk(),
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(rows));
        }
    }
    Ok(())
}
