//! The cooperative-matrix kernel of prefill attention (`kernel/prefill_coop.wgsl`). Its
//! dispatch is built by [`crate::kernels::attention::prefill_coop`]; this family holds the
//! WGSL and its sizes. Its shader module is created only on adapters that report 16x16
//! f16 cooperative matrices with an f32 accumulator (`Gpu::coop_matrix_f16`).

/// Kernel family name (`kernel_lib!`, pipeline cache).
pub const FAMILY: &str = "attention_coop";

/// Query rows per workgroup (`BQ`): 4 slots of 16, one subgroup each.
pub const ROWS: u32 = 64;

/// Keys per tile (`BK`).
const KEYS: u64 = 32;

/// Whether the kernel handles `head_dim`: 16-wide multiplies over it, at most 8
/// accumulators of output dims, and a K tile that can also hold a V tile (>= 32).
pub fn supports_head_dim(head_dim: u32) -> bool {
    head_dim.is_multiple_of(16) && (32..=128).contains(&head_dim)
}

/// Workgroup memory the kernel declares for `head_dim`: q (64 rows), one K or V tile and
/// each slot's scores and probabilities, padded rows as in the WGSL. 41 KiB at 128.
pub fn workgroup_bytes(head_dim: u32) -> u64 {
    let hd = head_dim as u64;
    let q = ROWS as u64 * (hd / 4 + 2) * 8;
    let kv = hd * (KEYS / 4 + 2) * 8;
    let scores = ROWS as u64 * KEYS * 4;
    let probs = ROWS as u64 * (KEYS / 4 + 2) * 8;
    let stats = 2 * ROWS as u64 * 4;
    q + kv + scores + probs + stats
}
