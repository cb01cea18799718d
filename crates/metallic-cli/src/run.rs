use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use metallic::{Engine, EngineOptions, SamplerConfig};
use metallic_gguf::GgufFile;
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
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Keep only the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 40)]
    top_k: u32,
    /// Keep the smallest set of tokens whose probability reaches P (1.0 = off).
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Random seed; the same seed gives the same output. Random when omitted.
    #[arg(long)]
    seed: Option<u64>,
    /// Context size (KV-cache positions), capped by the model's trained context.
    #[arg(short = 'c', long)]
    ctx_size: Option<u32>,
    /// Prompt tokens processed per prefill batch.
    #[arg(short = 'b', long, default_value_t = 512)]
    batch_size: u32,
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
}

pub fn run(args: RunArgs) -> Result<(), String> {
    let sampler = SamplerConfig {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed.unwrap_or_else(random_seed),
    };
    sampler.validate().map_err(|e| e.to_string())?;
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
    let file = GgufFile::open(&args.model).map_err(|e| e.to_string())?;
    let tokenizer = Tokenizer::from_gguf(&file).map_err(|e| e.to_string())?;
    let text = match (
        args.no_chat_template,
        ChatTemplate::from_gguf(&file, &tokenizer).map_err(|e| e.to_string())?,
    ) {
        (false, Some(template)) => {
            let mut messages = Vec::new();
            if let Some(system) = &args.system {
                messages.push(ChatMessage::new("system", system.as_str()));
            }
            messages.push(ChatMessage::new("user", prompt.as_str()));
            template
                .render(&messages, true)
                .map_err(|e| e.to_string())?
        }
        _ => prompt,
    };
    let prompt_ids = tokenizer.encode(&text, true).map_err(|e| e.to_string())?;

    let opts = EngineOptions {
        ctx_size: args.ctx_size,
        batch_size: args.batch_size,
        ..Default::default()
    };
    let progress = load_progress();
    let mut engine = Engine::from_gguf(&file, &opts, &mut |done, total| {
        if let Some(bar) = &progress {
            bar.set_length(total);
            bar.set_position(done);
        }
    })
    .map_err(|e| e.to_string())?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
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
            "prompt_tokens": prompt_ids,
            "tokens": generation.tokens,
            "text": tokenizer.decode(&visible),
            "stop_reason": generation.stop_reason.as_str(),
            "seed": sampler.seed,
            "generated_tokens": n,
            "prompt_s": generation.prompt_s,
            "decode_s": generation.decode_s,
            "total_s": total_s,
            "tps_total": tps_total,
            "tps_decode": tps_decode,
        });
        writeln!(stdout, "{json}").map_err(|e| format!("writing output: {e}"))?;
    }
    eprintln!("[metallic] generated_tokens={n} total_s={total_s:.4} tps_total={tps_total:.2}");
    eprintln!(
        "[metallic] prompt_tokens={} prompt_s={:.4} decode_s={:.4} tps_decode={tps_decode:.2}",
        prompt_ids.len(),
        generation.prompt_s,
        generation.decode_s
    );
    Ok(())
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
