// NEOX-style RoPE on Q (in place) and K of a fused QKV row, then k and v appended to the
// layer's f16 KV cache.
// Workgroup (h, m): h < n_heads rotates query head h of batch row m; the rest handle
// KV head h - n_heads.

struct RopeParams {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    stride: u32,     // floats between batch rows of qkv
    k_offset: u32,   // K's first column in a qkv row (Q starts at 0)
    v_offset: u32,
    ctx: u32,        // cache capacity (positions)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: RopeParams;
@group(0) @binding(1) var<storage, read> state: StepState;
@group(0) @binding(2) var<storage, read_write> qkv: array<f32>;      // (rows, stride): Q | K | V
// The f16 caches, two halves per word (layouts: attention/kernel/common.wgsl and
// prefill_io.wgsl). K: (n_kv_heads, head_dim / 2, ctx) words of rotation pairs (i, i + half);
// V: (n_kv_heads, ctx, head_dim / 2) words of dims (2j, 2j + 1).
@group(0) @binding(5) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(6) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(7) var<storage, read> inv_freq: array<f32>;       // (head_dim / 2), from theta

@compute @workgroup_size(64)
fn rope_kv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wg.x;
    let m = wg.y;
    let pos = state.pos + m;
    let half_dim = p.head_dim / 2u;
    for (var i = lid; i < half_dim; i += 64u) {
        let cs = rope_cos_sin(pos, inv_freq[i]);
        let c = cs.x;
        let s = cs.y;
        if (h < p.n_heads) {
            let b = m * p.stride + h * p.head_dim + i;
            let x0 = qkv[b];
            let x1 = qkv[b + half_dim];
            qkv[b] = x0 * c - x1 * s;
            qkv[b + half_dim] = x1 * c + x0 * s;
        } else {
            let kvh = h - p.n_heads;
            let b = m * p.stride + p.k_offset + kvh * p.head_dim + i;
            let x0 = qkv[b];
            let x1 = qkv[b + half_dim];
            k_cache[(kvh * half_dim + i) * p.ctx + pos] = pack2x16float(vec2<f32>(x0 * c - x1 * s, x1 * c + x0 * s));
            // Thread i also copies V word i: dims 2i and 2i + 1.
            let src = m * p.stride + p.v_offset + kvh * p.head_dim + 2u * i;
            v_cache[(kvh * p.ctx + pos) * half_dim + i] = pack2x16float(vec2<f32>(qkv[src], qkv[src + 1u]));
        }
    }
}
