//! The cooperative-matrix kernels of the prefill GEMM. Their dispatches are built by
//! [`crate::kernels::matmul_gemm`] (`GemmPath::Coop`); this family holds only the WGSL and
//! its tile shape. Its shader module is created only on adapters that report 16x16 f16
//! cooperative matrices with an f32 accumulator (`Gpu::coop_matrix_f16`).

/// Kernel family name (`kernel_lib!`, pipeline cache).
pub const FAMILY: &str = "matmul_gemm_coop";

/// (batch rows, outputs) per workgroup: `CM` x `CN` in `kernel/coop.wgsl`.
pub const TILE: (u32, u32) = (64, 128);
