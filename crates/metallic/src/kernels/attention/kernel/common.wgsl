// Shared by the decode and prefill attention kernels.
//
// Scores are kept in base 2: q is pre-multiplied by log2(e) / sqrt(head_dim), so the
// softmax uses exp2, and max / sum statistics in the scratch buffer are in that unit.

override HEAD_DIM: u32 = 64u;  // a multiple of 4, at most 256

// "Minus infinity" for masked scores: exp2(NEG - m) is 0 for any finite m, and it stays
// finite, so NEG - NEG is 0 rather than NaN.
const NEG: f32 = -3.0e38;

// Binding numbers are unique across the module; each entry point binds only the ones it
// uses: decode_partial 0-4 and 6, decode_combine 0, 1, 5, 6, prefill 1, 3, 8-11.
@group(0) @binding(1) var<storage, read> state: StepState;
// The f16 K cache, two halves per word: word (kv head, i, t) holds dims i and
// i + head_dim / 2 (a NEOX rotation pair) of key t, so the cache is
// (n_kv_heads, head_dim / 2, ctx) words and a tile's keys are contiguous.
@group(0) @binding(3) var<storage, read> k_cache: array<u32>;
