//! Where the time before the first token goes: the load phases, then the same random
//! prompt prefilled five times (back to back, after 1 s and after 5 s of GPU idleness).
//!
//! cargo run --release -p metallic --example ttft_probe -- MODEL.gguf [CTX] [BATCH] [PROMPT_TOKENS]
//!
//! CTX and BATCH of 0 keep the engine's defaults (the model's context, 2048-row chunks);
//! PROMPT_TOKENS defaults to 504. The load line splits `Engine::with_gpu` at its last
//! progress callback: "weights" is the upload of every tensor (copies queued, the ring's
//! staging buffers waited for), "rest" is buffers, kernels and the wait for the copies.
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metallic::gguf::GgufFile;
use metallic::gpu::{Gpu, GpuOptions};
use metallic::synthetic::Rng;
use metallic::{Engine, EngineOptions, ModelConfig, SamplerConfig};

fn arg(args: &[String], i: usize, default: u32) -> Result<u32, String> {
    args.get(i).map_or(Ok(default), |s| {
        s.parse()
            .map_err(|_| format!("argument {i} must be a number, got '{s}'"))
    })
}

fn probe(args: &[String]) -> Result<(), String> {
    let path = args
        .get(1)
        .ok_or("usage: ttft_probe MODEL.gguf [CTX] [BATCH] [PROMPT_TOKENS]")?;
    let ctx = Some(arg(args, 2, 0)?).filter(|&c| c > 0);
    let batch = Some(arg(args, 3, 0)?).filter(|&b| b > 0);
    let n_prompt = arg(args, 4, 504)?;
    let err = |e: metallic::Error| e.to_string();

    let t0 = Instant::now();
    let file = GgufFile::open(path).map_err(|e| e.to_string())?;
    let config = ModelConfig::from_gguf(&file).map_err(err)?;
    let t_open = t0.elapsed().as_secs_f64();
    let gpu = Arc::new(Gpu::new(&GpuOptions::default()).map_err(err)?);
    let t_gpu = t0.elapsed().as_secs_f64();
    let opts = EngineOptions {
        ctx_size: ctx,
        batch_size: batch,
        ..Default::default()
    };
    let mut t_weights = t_gpu;
    let mut engine = Engine::with_gpu(gpu, &file, config, &opts, &mut |_, _| {
        t_weights = t0.elapsed().as_secs_f64();
    })
    .map_err(err)?;
    let t_ready = t0.elapsed().as_secs_f64();
    println!(
        "load: open {t_open:.3} s, gpu {:.3} s, weights {:.3} s, rest {:.3} s, total {t_ready:.3} s",
        t_gpu - t_open,
        t_weights - t_gpu,
        t_ready - t_weights,
    );

    let mut rng = Rng::new(11);
    let vocab = engine.config.vocab as u64;
    let prompt: Vec<u32> = (0..n_prompt)
        .map(|_| (rng.next_u64() % vocab) as u32)
        .collect();
    let greedy = SamplerConfig::greedy();
    let runs = [
        ("first", 0),
        ("second", 0),
        ("third", 0),
        ("after 1 s idle", 1),
        ("after 5 s idle", 5),
    ];
    for (label, idle_s) in runs {
        std::thread::sleep(Duration::from_secs(idle_s));
        let g = engine
            .generate(&prompt, 1, &greedy, &[], &mut |_| {})
            .map_err(err)?;
        println!("{label}: prompt_s {:.4} ({n_prompt} tokens)", g.prompt_s);
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match probe(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
