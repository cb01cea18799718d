use std::path::PathBuf;

use clap::Args;

#[derive(Args)]
pub struct InspectArgs {
    /// Path to a GGUF file.
    model: PathBuf,
}

pub fn inspect(args: InspectArgs) -> Result<(), String> {
    let file = metallic_gguf::GgufFile::open(&args.model).map_err(|e| e.to_string())?;
    print!("{}", metallic_gguf::format_inspect(&file));
    Ok(())
}
