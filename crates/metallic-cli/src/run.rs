use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use metallic::kernels::matmul_gemv::GemvConfig;
use metallic::{Engine, EngineOptions, ModelConfig, SamplerConfig};
use metallic_tokenizer::{ChatMessage, ChatTemplate, Tokenizer};

#[derive(Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    /// Stream the generated text to stdout.
    Text,
    /// Print one JSON object with the prompt and generated ids, text, stop reason and timings.
    Json,
    /// Print nothing but the two timing lines on stderr.
    None,
}

#[derive(Args)]
pub struct RunArgs {
    /// Path to a GGUF model (Qwen2 / Qwen2.5; F16, Q8_0, F32 or BF16 weights).
    model: PathBuf,
    /// The prompt. Read from stdin when omitted.
    prompt: Option<String>,
    /// Maximum number of tokens to generate.
    #[arg(short = 'n', long, default_value_t = 256)]
    max_tokens: u32,
    /// Sampling temperature; 0 means greedy.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    temperature: f32,
    /// Keep only the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 40)]
    top_k: u32,
    /// Keep the smallest set of tokens whose probability reaches P (1.0 = off).
    #[arg(long, default_value_t = 0.95, allow_negative_numbers = true)]
    top_p: f32,
    /// Random seed; the same seed gives the same output. Random when omitted.
    #[arg(long)]
    seed: Option<u64>,
    /// Context size (KV-cache positions), capped by the model's trained context.
    #[arg(short = 'c', long)]
    ctx_size: Option<u32>,
    /// Prompt tokens processed per prefill batch [default: 2048, fewer where the
    /// activations would exceed the device's storage binding limit].
    #[arg(short = 'b', long)]
    batch_size: Option<u32>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output_format: OutputFormat,
    /// Feed the prompt as raw text instead of applying the model's chat template.
    #[arg(long)]
    no_chat_template: bool,
    /// System message for the chat template.
    #[arg(long)]
    system: Option<String>,
    /// Keep generating past end-of-generation tokens (for benchmarks).
    #[arg(long)]
    ignore_eos: bool,
    /// Time every kernel of every prompt chunk and decode step with GPU timestamps (also
    /// METALLIC_ENABLE_PROFILING=1): a per-kernel table on stderr and one JSON line per
    /// dispatch in --profile-out. Steps run one at a time while profiling.
    #[arg(long)]
    profile: bool,
    /// Where --profile writes its per-dispatch JSONL.
    #[arg(long, value_name = "PATH", default_value = "metallic-profile.jsonl")]
    profile_out: PathBuf,
}

pub fn run(args: RunArgs) -> Result<(), String> {
    let start = std::time::Instant::now();
    let sampler = SamplerConfig {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed.unwrap_or_else(random_seed),
    };
    // Everything that can be checked without the GPU is checked before loading the
    // weights, which takes a while for real models.
    sampler.validate().map_err(|e| e.to_string())?;
    if args.ctx_size == Some(0) {
        return Err("--ctx-size must be at least 1".into());
    }
    if args.batch_size == Some(0) {
        return Err("--batch-size must be at least 1".into());
    }
    GemvConfig::from_env().map_err(|e| e.to_string())?;
    metallic::runtime::attn_fold_from_env().map_err(|e| e.to_string())?;
    // The device comes up (0.15-0.2 s on the H100 host) while the tokenizer loads and the
    // prompt is checked; a bad prompt still fails before any weight is read.
    let opts = EngineOptions {
        ctx_size: args.ctx_size,
        batch_size: args.batch_size,
        ..Default::default()
    };
    let gpu_options = opts.gpu.clone();
    let gpu = std::thread::spawn(move || metallic::gpu::Gpu::new(&gpu_options));
    let file = crate::open_gguf(&args.model)?;
    let config = ModelConfig::from_gguf(&file).map_err(|e| e.to_string())?;
    let tokenizer =
        Tokenizer::from_gguf(&file).map_err(|e| format!("cannot load the tokenizer: {e}"))?;
    for warning in tokenizer.warnings() {
        eprintln!("warning: {warning}");
    }
    let template = if args.no_chat_template {
        None
    } else {
        ChatTemplate::from_gguf(&file, &tokenizer).map_err(|e| e.to_string())?
    };
    let prompt = match args.prompt {
        Some(p) => p,
        None if std::io::stdin().is_terminal() => {
            return Err("no prompt given (pass it as an argument or on stdin)".into())
        }
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("reading the prompt from stdin: {e}"))?;
            s
        }
    };
    let text = match template {
        Some(template) => {
            let mut messages = Vec::new();
            if let Some(system) = &args.system {
                messages.push(ChatMessage::new("system", system.as_str()));
            }
            messages.push(ChatMessage::new("user", prompt.as_str()));
            template
                .render(&messages, true)
                .map_err(|e| e.to_string())?
        }
        None => prompt,
    };
    let prompt_ids = tokenizer.encode(&text, true).map_err(|e| e.to_string())?;
    if prompt_ids.is_empty() {
        return Err("the prompt is empty".into());
    }
    let ctx = args
        .ctx_size
        .map_or(config.context_length, |c| c.min(config.context_length));
    if prompt_ids.len() as u64 + u64::from(args.max_tokens) > u64::from(ctx) {
        return Err(format!(
            "prompt ({} tokens) plus --max-tokens ({}) exceeds the context size ({ctx}); \
             shorten the prompt, lower --max-tokens or raise --ctx-size (the model's \
             trained context is {})",
            prompt_ids.len(),
            args.max_tokens,
            config.context_length
        ));
    }

    let gpu = gpu
        .join()
        .map_err(|_| "GPU setup panicked".to_string())?
        .map_err(|e| e.to_string())?;
    let progress = load_progress();
    let mut engine = Engine::with_gpu(Arc::new(gpu), &file, config, &opts, &mut |done, total| {
        if let Some(bar) = &progress {
            bar.set_length(total);
            bar.set_position(done);
        }
    })
    .map_err(|e| e.to_string())?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    // Everything before the prompt: file, tokenizer, weights on the GPU, kernels, buffers.
    let load_s = start.elapsed().as_secs_f64();
    let profiling =
        args.profile || std::env::var("METALLIC_ENABLE_PROFILING").as_deref() == Ok("1");
    let profile_path = profiling.then(|| args.profile_out.clone());
    if profile_path.is_some() {
        engine.enable_profiling().map_err(|e| e.to_string())?;
    }

    let stop_ids = if args.ignore_eos {
        Vec::new()
    } else {
        tokenizer.stop_ids()
    };
    let mut stream = tokenizer.stream_decoder();
    let mut stdout = std::io::stdout().lock();
    let streaming = matches!(args.output_format, OutputFormat::Text);
    let mut print_error = None;
    let generation = engine
        .generate(
            &prompt_ids,
            args.max_tokens,
            &sampler,
            &stop_ids,
            &mut |t| {
                if streaming && !stop_ids.contains(&t) {
                    let piece = stream.push(t);
                    if let Err(e) = stdout
                        .write_all(piece.as_bytes())
                        .and_then(|_| stdout.flush())
                    {
                        print_error.get_or_insert(e);
                    }
                }
            },
        )
        .map_err(|e| e.to_string())?;
    if streaming {
        let rest = stream.finish();
        writeln!(stdout, "{rest}").map_err(|e| format!("writing output: {e}"))?;
    }
    if let Some(e) = print_error {
        return Err(format!("writing output: {e}"));
    }

    let n = generation.tokens.len();
    let total_s = generation.prompt_s + generation.decode_s;
    let tps_total = if total_s > 0.0 {
        n as f64 / total_s
    } else {
        0.0
    };
    let tps_decode = if generation.decode_s > 0.0 {
        (n.saturating_sub(1)) as f64 / generation.decode_s
    } else {
        0.0
    };
    if let OutputFormat::Json = args.output_format {
        let visible: Vec<u32> = generation
            .tokens
            .iter()
            .copied()
            .filter(|t| !stop_ids.contains(t))
            .collect();
        let json = serde_json::json!({
            "model": args.model.display().to_string(),
            "device": engine.gpu.describe(),
            "dispatches_per_token": engine.dispatches_per_token(),
            "dispatches_per_prefill_chunk": engine.dispatches_per_prefill_chunk(),
            "prompt_tokens": prompt_ids,
            "tokens": generation.tokens,
            "text": tokenizer.decode(&visible),
            "stop_reason": generation.stop_reason.as_str(),
            "seed": sampler.seed,
            "generated_tokens": n,
            "load_s": load_s,
            "prompt_s": generation.prompt_s,
            "decode_s": generation.decode_s,
            "total_s": total_s,
            "tps_total": tps_total,
            "tps_decode": tps_decode,
        });
        writeln!(stdout, "{json}").map_err(|e| format!("writing output: {e}"))?;
    }
    if let Some(path) = &profile_path {
        write_profile(path, &engine.profile)?;
        eprint!("{}", metallic::gpu::profile::format_table(&engine.profile));
        let short = match engine.short_decode_last_pos() {
            Some(last) => format!(
                "; {} up to position {last}, with the attention combine folded into the output projection",
                engine.dispatches_per_token_at(0)
            ),
            None => String::new(),
        };
        eprintln!(
            "[metallic] dispatches per token: {} (decode plan + head{short}); per prompt chunk: {}",
            engine.dispatches_per_token(),
            engine.dispatches_per_prefill_chunk()
        );
        eprintln!(
            "[metallic] per-dispatch times written to {}",
            path.display()
        );
    }
    eprintln!("[metallic] load_s={load_s:.4}");
    eprintln!("[metallic] generated_tokens={n} total_s={total_s:.4} tps_total={tps_total:.2}");
    eprintln!(
        "[metallic] prompt_tokens={} prompt_s={:.4} decode_s={:.4} tps_decode={tps_decode:.2}",
        prompt_ids.len(),
        generation.prompt_s,
        generation.decode_s
    );
    Ok(())
}

fn write_profile(
    path: &std::path::Path,
    steps: &[Vec<metallic::gpu::profile::KernelTime>],
) -> Result<(), String> {
    let mut out = String::new();
    for (step, kernels) in steps.iter().enumerate() {
        for (index, k) in kernels.iter().enumerate() {
            let line = serde_json::json!({"step": step, "index": index, "kernel": k.label, "us": k.ns / 1e3});
            out.push_str(&line.to_string());
            out.push('\n');
        }
    }
    std::fs::write(path, out).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn load_progress() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("loading {bar:40} {bytes}/{total_bytes} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
