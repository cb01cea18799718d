//! Kernel families. Each folder holds a `kernel.sources` manifest, its WGSL parts and
//! the Rust side that sizes and records its dispatches.

pub mod attention;
pub mod attention_coop;
pub mod elementwise;
pub mod embedding;
pub mod matmul_gemm;
pub mod matmul_gemm_coop;
pub mod matmul_gemv;
pub mod rmsnorm;
pub mod rope_kv;
pub mod sampling;
pub mod stitch;

use std::borrow::Cow;

#[cfg(not(feature = "src_kernels"))]
include!(concat!(env!("OUT_DIR"), "/kernel_registry.rs"));

/// Returns a kernel family's stitched WGSL source.
///
/// With `built_kernels` (the default) it was validated by naga and embedded at build time.
/// With `src_kernels` it is stitched from `src/kernels/<family>` (or
/// `$METALLIC_KERNEL_DIR/<family>`) on every call, so shaders can be edited without a rebuild.
#[macro_export]
macro_rules! kernel_lib {
    ($family:expr) => {
        $crate::kernels::kernel_source($family)
    };
}

#[cfg(not(feature = "src_kernels"))]
pub fn kernel_source(family: &str) -> Result<Cow<'static, str>, String> {
    BUILT_KERNELS
        .iter()
        .find(|(name, _)| *name == family)
        .map(|(_, src)| Cow::Borrowed(*src))
        .ok_or_else(|| format!("no kernel family named '{family}'"))
}

#[cfg(feature = "src_kernels")]
pub fn kernel_source(family: &str) -> Result<Cow<'static, str>, String> {
    let root = std::env::var_os("METALLIC_KERNEL_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/src/kernels").into());
    stitch::stitch(&root.join(family)).map(|s| Cow::Owned(s.source))
}
