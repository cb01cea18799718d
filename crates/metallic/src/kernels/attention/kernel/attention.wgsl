// Causal attention over the KV cache, one workgroup per (query head, batch row). Keys are
// visited in tiles of 128 with an online softmax, so no (seq x seq) score matrix exists.
// Batch row m sits at position state.pos + m and sees cache positions 0..=pos.

struct AttnParams {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,    // at most 256
    q_stride: u32,
    out_stride: u32,
    ctx: u32,
    scale: f32,       // 1 / sqrt(head_dim)
    _pad: u32,
}

const TILE: u32 = 128u;

@group(0) @binding(0) var<uniform> p: AttnParams;
@group(0) @binding(1) var<storage, read> state: StepState;
@group(0) @binding(2) var<storage, read> q: array<f32>;           // (rows, q_stride), rotated
@group(0) @binding(3) var<storage, read> k_cache: array<f32>;     // (n_kv_heads, ctx, head_dim)
@group(0) @binding(4) var<storage, read> v_cache: array<f32>;     // (n_kv_heads, ctx, head_dim)
@group(0) @binding(5) var<storage, read_write> out: array<f32>;   // (rows, out_stride)

var<workgroup> q_tile: array<f32, 256>;
var<workgroup> probs: array<f32, TILE>;
var<workgroup> start_pos: u32;

@compute @workgroup_size(TILE)
fn attention(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let h = wg.x;
    let m = wg.y;
    let kvh = h / (p.n_heads / p.n_kv_heads);
    let hd = p.head_dim;
    if (lid == 0u) {
        start_pos = state.pos;
    }
    for (var d = lid; d < hd; d += TILE) {
        q_tile[d] = q[m * p.q_stride + h * hd + d];
    }
    // The loop below holds barriers, so its bound must be provably uniform.
    let n_keys = workgroupUniformLoad(&start_pos) + m + 1u;
    let cache_base = kvh * p.ctx * hd;

    var run_max = -3.0e38;
    var run_sum = 0.0;
    var acc0 = 0.0;  // output dim lid
    var acc1 = 0.0;  // output dim lid + TILE
    for (var t0 = 0u; t0 < n_keys; t0 += TILE) {
        let t = t0 + lid;
        var score = -3.0e38;
        if (t < n_keys) {
            let kb = cache_base + t * hd;
            var s = 0.0;
            for (var d = 0u; d < hd; d++) {
                s += q_tile[d] * k_cache[kb + d];
            }
            score = s * p.scale;
        }
        let new_max = max(run_max, workgroup_max(score, sg_id, n_sg, lane));
        let correction = exp(run_max - new_max);
        var prob = 0.0;
        if (t < n_keys) {
            prob = exp(score - new_max);
        }
        probs[lid] = prob;
        run_sum = run_sum * correction + workgroup_sum(prob, sg_id, n_sg, lane);
        let count = min(TILE, n_keys - t0);
        acc0 *= correction;
        acc1 *= correction;
        for (var j = 0u; j < count; j++) {
            let vb = cache_base + (t0 + j) * hd;
            let pj = probs[j];
            if (lid < hd) {
                acc0 += pj * v_cache[vb + lid];
            }
            if (lid + TILE < hd) {
                acc1 += pj * v_cache[vb + lid + TILE];
            }
        }
        run_max = new_max;
        workgroupBarrier();
    }
    let ob = m * p.out_stride + h * hd;
    if (lid < hd) {
        out[ob + lid] = acc0 / run_sum;
    }
    if (lid + TILE < hd) {
        out[ob + lid + TILE] = acc1 / run_sum;
    }
}
