//! Stitches a kernel family's `kernel.sources` manifest into one WGSL module.
//!
//! WGSL has no `#include`, so each family lists its parts in order. This file is
//! shared verbatim by `build.rs` (validation + embedding) and by the `src_kernels`
//! feature (reading from disk at run time), so both paths produce identical text.

use std::path::Path;

/// One stitched module plus a map from stitched line numbers back to the part files,
/// so a naga error can name `kernel/dense.wgsl:42` instead of a line in the blob.
pub struct Stitched {
    pub source: String,
    /// `origins[i]` is the (part path, 1-based line) of stitched line `i + 1`.
    pub origins: Vec<(String, u32)>,
}

impl Stitched {
    /// File and line of a 1-based line in the stitched source.
    pub fn origin(&self, line: u32) -> Option<(&str, u32)> {
        let (file, l) = self.origins.get(line.checked_sub(1)? as usize)?;
        Some((file.as_str(), *l))
    }
}

/// Reads `<family_dir>/kernel.sources`: one relative path per line; `#` starts a comment.
pub fn stitch(family_dir: &Path) -> Result<Stitched, String> {
    let manifest_path = family_dir.join("kernel.sources");
    let manifest = std::fs::read_to_string(&manifest_path)
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let mut source = String::new();
    let mut origins = Vec::new();
    for (i, raw) in manifest.lines().enumerate() {
        let part = raw.split('#').next().unwrap_or("").trim();
        if part.is_empty() {
            continue;
        }
        let part_path = family_dir.join(part);
        let text = std::fs::read_to_string(&part_path).map_err(|e| {
            format!(
                "{}:{}: cannot read part '{part}': {e}",
                manifest_path.display(),
                i + 1
            )
        })?;
        for (n, line) in text.lines().enumerate() {
            source.push_str(line);
            source.push('\n');
            origins.push((part.to_string(), n as u32 + 1));
        }
    }
    if source.is_empty() {
        return Err(format!("{}: lists no parts", manifest_path.display()));
    }
    Ok(Stitched { source, origins })
}
