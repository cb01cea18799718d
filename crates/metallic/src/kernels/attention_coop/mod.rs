//! The cooperative-matrix kernel of prefill attention (`kernel/prefill_coop.wgsl`). Its
//! dispatch is built by [`crate::kernels::attention::prefill_coop`]; this family holds the
//! WGSL and its sizes. Its shader module is created only on adapters that report 16x16
//! f16 cooperative matrices with an f32 accumulator (`Gpu::coop_matrix_f16`).

/// Kernel family name (`kernel_lib!`, pipeline cache).
pub const FAMILY: &str = "attention_coop";

use crate::error::{Error, Result};

/// Keys per tile (`BK`).
const KEYS: u64 = 32;

/// Most slots (16 query rows each, one subgroup) a workgroup runs at once.
pub const MAX_SLOTS: u32 = 8;

/// Threads per workgroup (`C_THREADS`): 8 subgroups of 32.
pub const THREADS: u32 = 256;

/// Workgroups per 16-position block of a chunk the default split aims for, over all KV
/// heads: at 512-row chunks, 4 x 32 = 128 workgroups, about one per SM of a large GPU.
const MIN_WORKGROUPS_PER_BLOCK: u32 = 4;

/// How the kernel cuts the work for a GQA group of `group` query heads per KV head (its
/// override constants): `heads` query heads of one group per workgroup (`HG`; the group
/// is cut in `parts` workgroups along grid x), `blocks` 16-position blocks per workgroup
/// (`PB`), so `heads * blocks` slots, one subgroup each, in workgroups of
/// [`THREADS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoopSplit {
    pub heads: u32,
    pub blocks: u32,
    pub parts: u32,
}

impl CoopSplit {
    /// The default for `group` query heads per KV head and `n_kv_heads` KV heads: the
    /// whole group in one workgroup (up to 8 heads, with more positions per workgroup
    /// when the group has fewer), unless there are too few KV heads to give the GPU
    /// [`MIN_WORKGROUPS_PER_BLOCK`] workgroups per position block; then the group is cut
    /// into that many parts. Measured on the H100 (session 8, `attention_bench`): 0.5B's
    /// 2 KV heads with groups of 7 ran 10-15% faster cut as 4 + 3, 7B's 4 KV heads 5-10%
    /// slower cut. `METALLIC_ATTN_COOP_HEADS=n` caps the heads per workgroup instead.
    pub fn for_group(group: u32, n_kv_heads: u32) -> Result<Self> {
        let cap = match std::env::var("METALLIC_ATTN_COOP_HEADS") {
            Ok(v) => match v.trim().parse::<u32>() {
                Ok(n @ 1..=MAX_SLOTS) => Some(n),
                _ => {
                    return Err(Error::Invalid(format!(
                        "METALLIC_ATTN_COOP_HEADS={v}: expected 1 to {MAX_SLOTS}"
                    )))
                }
            },
            Err(_) => None,
        };
        let parts = MIN_WORKGROUPS_PER_BLOCK.div_ceil(n_kv_heads.max(1));
        let heads = cap.unwrap_or_else(|| group.max(1).div_ceil(parts));
        Ok(Self::with_heads(group, heads))
    }

    /// At most `heads` (1..=8) query heads of a group of `group` per workgroup.
    pub fn with_heads(group: u32, heads: u32) -> Self {
        let group = group.max(1);
        let heads = group.min(heads.clamp(1, MAX_SLOTS));
        let parts = group.div_ceil(heads);
        let blocks = if parts == 1 {
            (MAX_SLOTS / heads).max(1)
        } else {
            1
        };
        Self {
            heads,
            blocks,
            parts,
        }
    }

    pub fn slots(&self) -> u32 {
        self.heads * self.blocks
    }

    /// Workgroup memory the kernel declares for `head_dim`: a K tile, a V tile, each
    /// slot's scores and probabilities, padded rows as in the WGSL (q lives in registers),
    /// three row statistics and the rescale flag. 46 KiB at 128 with 8 slots.
    pub fn workgroup_bytes(&self, head_dim: u32) -> u64 {
        let hd = head_dim as u64;
        let rows = self.slots() as u64 * 16;
        let k_tile = hd * (KEYS / 4 + 2) * 8;
        let v_tile = KEYS * (hd / 4 + 2) * 8;
        let scores = rows * KEYS * 4;
        let probs = rows * (KEYS / 4 + 2) * 8;
        let stats = 3 * rows * 4;
        k_tile + v_tile + scores + probs + stats + 16
    }
}

/// Whether the kernel handles `head_dim`: 16-wide multiplies over it, at most 8
/// accumulators of output dims, and at least 32 (q0, q1, o0 and o1 are unconditional).
pub fn supports_head_dim(head_dim: u32) -> bool {
    head_dim.is_multiple_of(16) && (32..=128).contains(&head_dim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_the_group_in_at_most_eight_slots() {
        for group in 1..=32 {
            for cap in 1..=MAX_SLOTS {
                let s = CoopSplit::with_heads(group, cap);
                assert!(
                    s.heads <= cap.min(group) && s.heads >= 1,
                    "{group} {cap}: {s:?}"
                );
                assert!(s.parts * s.heads >= group, "{group} {cap}: {s:?}");
                assert!((s.parts - 1) * s.heads < group, "{group} {cap}: {s:?}");
                assert!(s.slots() <= MAX_SLOTS, "{group} {cap}: {s:?}");
                assert!(s.blocks == 1 || s.parts == 1, "{group} {cap}: {s:?}");
                assert!(s.workgroup_bytes(128) <= 48 << 10, "{group} {cap}: {s:?}");
            }
        }
        // Qwen2.5 (7 heads per KV head): 7B's 4 KV heads take the whole group, 0.5B's 2
        // cut it in 4 + 3.
        let s = CoopSplit::with_heads(7, MAX_SLOTS);
        assert_eq!((s.heads, s.blocks, s.parts), (7, 1, 1));
        assert_eq!(CoopSplit::with_heads(2, MAX_SLOTS).blocks, 4);
        if std::env::var_os("METALLIC_ATTN_COOP_HEADS").is_none() {
            let s = CoopSplit::for_group(7, 4).unwrap();
            assert_eq!((s.heads, s.blocks, s.parts), (7, 1, 1));
            let s = CoopSplit::for_group(7, 2).unwrap();
            assert_eq!((s.heads, s.blocks, s.parts), (4, 1, 2));
            let s = CoopSplit::for_group(8, 1).unwrap();
            assert_eq!((s.heads, s.blocks, s.parts), (2, 1, 4));
        }
    }
}
