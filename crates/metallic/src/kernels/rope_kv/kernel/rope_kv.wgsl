// NEOX-style RoPE on q (in place) and k, then k and v appended to the layer's KV cache.
// Workgroup (h, m): h < n_heads rotates query head h of batch row m; the rest handle
// KV head h - n_heads.

struct RopeParams {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    q_stride: u32,   // floats between batch rows of q
    kv_stride: u32,  // floats between batch rows of k and v
    ctx: u32,        // cache capacity (positions)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: RopeParams;
@group(0) @binding(1) var<storage, read> state: StepState;
@group(0) @binding(2) var<storage, read_write> q: array<f32>;        // (rows, q_stride)
@group(0) @binding(3) var<storage, read> k: array<f32>;              // (rows, kv_stride)
@group(0) @binding(4) var<storage, read> v: array<f32>;              // (rows, kv_stride)
@group(0) @binding(5) var<storage, read_write> k_cache: array<f32>;  // (n_kv_heads, head_dim, ctx): transposed for attention
@group(0) @binding(6) var<storage, read_write> v_cache: array<f32>;  // (n_kv_heads, ctx, head_dim)
@group(0) @binding(7) var<storage, read> inv_freq: array<f32>;       // (head_dim / 2), from theta

const TWO_PI_HI: f32 = 6.28125;                 // exact in 8 bits, so k * TWO_PI_HI is exact
const TWO_PI_LO: f32 = 0.0019353071795864769;   // 2*pi - TWO_PI_HI

// GPU sin/cos lose accuracy far from zero; positions reach tens of thousands of radians.
fn reduce_angle(a: f32) -> f32 {
    let n = round(a / 6.283185307179586);
    return (a - n * TWO_PI_HI) - n * TWO_PI_LO;
}

@compute @workgroup_size(64)
fn rope_kv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wg.x;
    let m = wg.y;
    let pos = state.pos + m;
    let half_dim = p.head_dim / 2u;
    for (var i = lid; i < half_dim; i += 64u) {
        // Same rounding as the reference models: the angle is an f32 product.
        let angle = reduce_angle(f32(pos) * inv_freq[i]);
        let c = cos(angle);
        let s = sin(angle);
        if (h < p.n_heads) {
            let b = m * p.q_stride + h * p.head_dim + i;
            let x0 = q[b];
            let x1 = q[b + half_dim];
            q[b] = x0 * c - x1 * s;
            q[b + half_dim] = x1 * c + x0 * s;
        } else {
            let kvh = h - p.n_heads;
            let b = m * p.kv_stride + kvh * p.head_dim + i;
            let x0 = k[b];
            let x1 = k[b + half_dim];
            let kb = (kvh * p.head_dim + i) * p.ctx + pos;
            k_cache[kb] = x0 * c - x1 * s;
            k_cache[kb + half_dim * p.ctx] = x1 * c + x0 * s;
            let vb = (kvh * p.ctx + pos) * p.head_dim + i;
            v_cache[vb] = v[b];
            v_cache[vb + half_dim] = v[b + half_dim];
        }
    }
}
