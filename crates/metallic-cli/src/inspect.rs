use std::path::PathBuf;

use clap::Args;

#[derive(Args)]
pub struct InspectArgs {
    /// Path to a GGUF file.
    model: PathBuf,
}

pub fn inspect(args: InspectArgs) -> Result<(), String> {
    let file = crate::open_gguf(&args.model)?;
    print!("{}", metallic_gguf::format_inspect(&file));
    Ok(())
}
