//! The cooperative-matrix kernel of prefill attention (`kernel/prefill_coop.wgsl`). Its
//! dispatch is built by [`crate::kernels::attention::prefill_coop`]; this family holds the
//! WGSL and its sizes. Its shader module is created only on adapters that report 16x16
//! f16 cooperative matrices with an f32 accumulator (`Gpu::coop_matrix_f16`).

/// Kernel family name (`kernel_lib!`, pipeline cache).
pub const FAMILY: &str = "attention_coop";

/// Slots of 16 query rows a workgroup runs at once (`MAX_SLOTS`), one subgroup each.
const SLOTS: u64 = 8;

/// Keys per tile (`BK`).
const KEYS: u64 = 32;

/// Threads per workgroup (`C_THREADS`).
pub const THREADS: u32 = 256;

/// 16-position blocks per workgroup (`PB`) for `group` query heads per KV head: a
/// workgroup serves every head of the group, and takes several blocks of positions when
/// the group has fewer than 8 heads, so its subgroups stay busy.
pub fn position_blocks(group: u32) -> u32 {
    (8 / group.max(1)).max(1)
}

/// Whether the kernel handles `head_dim`: 16-wide multiplies over it, at most 8
/// accumulators of output dims, and a K tile that can also hold a V tile (>= 32).
pub fn supports_head_dim(head_dim: u32) -> bool {
    head_dim.is_multiple_of(16) && (32..=128).contains(&head_dim)
}

/// Workgroup memory the kernel declares for `head_dim`: one K or V tile and each slot's
/// scores and probabilities, padded rows as in the WGSL (q lives in registers). 37 KiB
/// at 128.
pub fn workgroup_bytes(head_dim: u32) -> u64 {
    let hd = head_dim as u64;
    let rows = SLOTS * 16;
    let kv = hd * (KEYS / 4 + 2) * 8;
    let scores = rows * KEYS * 4;
    let probs = rows * (KEYS / 4 + 2) * 8;
    let stats = 2 * rows * 4;
    kv + scores + probs + stats
}
