// Causal attention over the KV cache, one workgroup per (query head, batch row). Keys
// are visited in tiles of 256 with an online softmax, so no (seq x seq) score matrix
// exists. Batch row m sits at position state.pos + m and sees cache positions 0..=pos.
//
// The K cache is stored transposed, (n_kv_heads, head_dim, ctx): thread t scores key
// t0 + t, and at each dim d the workgroup's loads are contiguous. For the V sum, the
// workgroup splits into 256 / head_dim groups that take every G-th key of the tile,
// so the serial chain per thread is count / G long; the groups are combined once.

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

const TILE: u32 = 256u;

@group(0) @binding(0) var<uniform> p_old: AttnParams;

var<workgroup> old_q_tile: array<f32, 256>;
var<workgroup> old_probs: array<f32, TILE>;
var<workgroup> group_acc: array<f32, TILE>;
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
    let kvh = h / (p_old.n_heads / p_old.n_kv_heads);
    let hd = p_old.head_dim;
    let groups = TILE / hd;
    let group = lid / hd;  // >= groups: idle in the V sum
    let dim = lid % hd;
    if (lid == 0u) {
        start_pos = state.pos;
    }
    if (lid < hd) {
        old_q_tile[lid] = q[m * p_old.q_stride + h * hd + lid];
    }
    // The loop below holds barriers, so its bound must be provably uniform.
    let n_keys = workgroupUniformLoad(&start_pos) + m + 1u;
    let k_base = kvh * hd * p_old.ctx;
    let v_base = kvh * p_old.ctx * hd;

    var run_max = -3.0e38;
    var run_sum = 0.0;
    var acc = 0.0;
    for (var t0 = 0u; t0 < n_keys; t0 += TILE) {
        let t = t0 + lid;
        var score = -3.0e38;
        if (t < n_keys) {
            // Four independent loads in flight per step: each is a different cache
            // line (stride ctx), so a plain loop would wait on them one by one.
            let kt = k_base + t;
            var s0 = 0.0;
            var s1 = 0.0;
            var s2 = 0.0;
            var s3 = 0.0;
            var d = 0u;
            for (; d + 4u <= hd; d += 4u) {
                let k0 = k_cache[kt + d * p_old.ctx];
                let k1 = k_cache[kt + (d + 1u) * p_old.ctx];
                let k2 = k_cache[kt + (d + 2u) * p_old.ctx];
                let k3 = k_cache[kt + (d + 3u) * p_old.ctx];
                s0 += old_q_tile[d] * k0;
                s1 += old_q_tile[d + 1u] * k1;
                s2 += old_q_tile[d + 2u] * k2;
                s3 += old_q_tile[d + 3u] * k3;
            }
            for (; d < hd; d++) {
                s0 += old_q_tile[d] * k_cache[kt + d * p_old.ctx];
            }
            score = ((s0 + s1) + (s2 + s3)) * p_old.scale;
        }
        let new_max = max(run_max, workgroup_max(score, sg_id, n_sg, lane));
        let correction = exp(run_max - new_max);
        var prob = 0.0;
        if (t < n_keys) {
            prob = exp(score - new_max);
        }
        old_probs[lid] = prob;
        run_sum = run_sum * correction + workgroup_sum(prob, sg_id, n_sg, lane);
        acc *= correction;
        if (group < groups) {
            let count = min(TILE, n_keys - t0);
            let vb = v_base + t0 * hd + dim;
            var a1 = 0.0;
            var j = group;
            for (; j + groups < count; j += 2u * groups) {
                let v0 = v_cache[vb + j * hd];
                let v1 = v_cache[vb + (j + groups) * hd];
                acc += old_probs[j] * v0;
                a1 += old_probs[j + groups] * v1;
            }
            if (j < count) {
                acc += old_probs[j] * v_cache[vb + j * hd];
            }
            acc += a1;
        }
        run_max = new_max;
        workgroupBarrier();
    }
    group_acc[lid] = acc;
    workgroupBarrier();
    if (lid < hd) {
        var total = 0.0;
        for (var g = 0u; g < groups; g++) {
            total += group_acc[g * hd + lid];
        }
        out[m * p_old.out_stride + h * hd + lid] = total / run_sum;
    }
}
