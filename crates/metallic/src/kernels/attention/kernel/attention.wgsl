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

@group(0) @binding(0) var<uniform> p: AttnParams;
@group(0) @binding(1) var<storage, read> state: StepState;
@group(0) @binding(2) var<storage, read> q: array<f32>;           // (rows, q_stride), rotated
@group(0) @binding(3) var<storage, read> k_cache: array<f32>;     // (n_kv_heads, head_dim, ctx)
@group(0) @binding(4) var<storage, read> v_cache: array<f32>;     // (n_kv_heads, ctx, head_dim)
@group(0) @binding(5) var<storage, read_write> out: array<f32>;   // (rows, out_stride)

var<workgroup> q_tile: array<f32, 256>;
var<workgroup> probs: array<f32, TILE>;
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
    let kvh = h / (p.n_heads / p.n_kv_heads);
    let hd = p.head_dim;
    let groups = TILE / hd;
    let group = lid / hd;  // >= groups: idle in the V sum
    let dim = lid % hd;
    if (lid == 0u) {
        start_pos = state.pos;
    }
    if (lid < hd) {
        q_tile[lid] = q[m * p.q_stride + h * hd + lid];
    }
    // The loop below holds barriers, so its bound must be provably uniform.
    let n_keys = workgroupUniformLoad(&start_pos) + m + 1u;
    let k_base = kvh * hd * p.ctx;
    let v_base = kvh * p.ctx * hd;

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
                let k0 = k_cache[kt + d * p.ctx];
                let k1 = k_cache[kt + (d + 1u) * p.ctx];
                let k2 = k_cache[kt + (d + 2u) * p.ctx];
                let k3 = k_cache[kt + (d + 3u) * p.ctx];
                s0 += q_tile[d] * k0;
                s1 += q_tile[d + 1u] * k1;
                s2 += q_tile[d + 2u] * k2;
                s3 += q_tile[d + 3u] * k3;
            }
            for (; d < hd; d++) {
                s0 += q_tile[d] * k_cache[kt + d * p.ctx];
            }
            score = ((s0 + s1) + (s2 + s3)) * p.scale;
        }
        let new_max = max(run_max, workgroup_max(score, sg_id, n_sg, lane));
        let correction = exp(run_max - new_max);
        var prob = 0.0;
        if (t < n_keys) {
            prob = exp(score - new_max);
        }
        probs[lid] = prob;
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
                acc += probs[j] * v0;
                a1 += probs[j + groups] * v1;
            }
            if (j < count) {
                acc += probs[j] * v_cache[vb + j * hd];
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
        out[m * p.out_stride + h * hd + lid] = total / run_sum;
    }
}
