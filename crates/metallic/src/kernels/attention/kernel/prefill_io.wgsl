// What both prefill attention kernels (f32 `prefill` here, `attention_coop`'s
// `prefill_coop`) bind beyond the step state and the K cache: one params layout, mirrored
// by `PrefillParams` in attention/mod.rs, which builds both bind groups.

struct PrefillParams {
    n_heads: u32,
    n_kv_heads: u32,
    q_stride4: u32,    // vec4s between batch rows of q
    out_stride4: u32,  // vec4s between batch rows of out
    ctx: u32,          // cache capacity (positions)
    scale: f32,        // log2(e) / sqrt(head_dim)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(8) var<uniform> pp: PrefillParams;
@group(0) @binding(9) var<storage, read> q4: array<vec4<f32>>;          // (rows, q_stride), rotated
// The f16 V cache, (n_kv_heads, ctx, head_dim): an element holds 4 dims as two words
// of two halves each (dims 2j, 2j + 1 per word).
@group(0) @binding(10) var<storage, read> v2_cache: array<vec2<u32>>;
@group(0) @binding(11) var<storage, read_write> out4: array<vec4<f32>>; // (rows, out_stride)
