//! The `metallic` command.

mod bench;
mod inspect;
mod run;

use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Metallic: run GGUF language models on the GPU through wgpu (Vulkan, Metal, DX12).
#[derive(Parser)]
#[command(
    name = "metallic",
    version,
    about,
    propagate_version = true,
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt.
    Run(run::RunArgs),
    /// Print a GGUF file's metadata and tensor table.
    Inspect(inspect::InspectArgs),
    /// Measure prompt processing (pp) and generation (tg) throughput, llama-bench style.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Inspect(args) => inspect::inspect(args),
        Command::Bench(args) => bench::bench(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Opens a GGUF file; a directory gets a clear message instead of the mmap error
/// ("No such device").
fn open_gguf(path: &Path) -> Result<metallic_gguf::GgufFile, String> {
    if path.is_dir() {
        return Err(format!(
            "{} is a directory; expected a GGUF file",
            path.display()
        ));
    }
    metallic_gguf::GgufFile::open(path).map_err(|e| e.to_string())
}

/// Rust ignores SIGPIPE, so printing into a closed pipe (`metallic bench ... | head`)
/// would panic; the default action ends the process quietly, as other command-line
/// tools do.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
