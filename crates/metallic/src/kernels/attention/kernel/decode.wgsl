// Decode attention (one query row, at position state.pos), split over positions:
// flash-decoding in two dispatches.
//
// Why this shape:
// - A decode step has one query row, so one workgroup per head leaves most of the GPU
//   idle and the step is pure latency. Splitting the keys 0..=pos into chunks gives
//   (kv heads x chunks) workgroups in flight, each walking at most a few key tiles.
// - The grid is fixed when the plan is built (pos lives on the GPU), so the chunk
//   length is derived from pos inside the kernel: the keys are cut into at most
//   n_splits chunks of a multiple of KT keys, as long as needed to cover pos + 1 keys
//   with n_splits workgroups. Short contexts use a few workgroups of one tile each;
//   long ones use all n_splits. Workgroups past the last chunk return at once.
// - One workgroup serves up to HB = 8 query heads of one kv head (two vec4 lanes of
//   heads), so each K and V element is loaded once per GQA group, not once per head.
// - Scores are computed by KT keys x DP dim parts: the K cache is transposed, so the
//   threads of a part read consecutive keys (contiguous loads), and each thread's serial
//   chain is head_dim / DP long, not head_dim. The parts are summed in workgroup memory.
//   DP grows with head_dim (about 8 dims per thread, 4 words of the f16 cache), so a
//   tile is one round of loads whatever the head size; KT = 256 / DP is then 16 to 64
//   keys. Decode is
//   latency-bound at short contexts: with a fixed 64 x 4 tile a 7B layer (head_dim
//   128) made 8 dependent rounds of K loads and 8 of V loads per tile.
// - Pass 2 (`decode_combine`) merges the chunks' (max, sum, acc) per head. It is a
//   second dispatch, not a "last workgroup combines" counter: WGSL has no
//   cross-workgroup acquire/release, so reading other workgroups' partials within one
//   dispatch would rely on behaviour the language does not promise. The merge order
//   is fixed, so results are deterministic.

const DEC_WG: u32 = 256u;
override DP: u32 = 4u;           // dim parts per key (4 to 32, from head_dim: mod.rs)
override KT: u32 = DEC_WG / DP;  // keys per tile; chunk lengths are multiples of it
const MAX_KT: u32 = 64u;
const HB: u32 = 8u;        // query heads per workgroup
const MAX_SPLITS: u32 = 256u;

struct DecodeParams {
    n_heads: u32,
    n_kv_heads: u32,
    ctx: u32,        // cache capacity (positions)
    n_splits: u32,   // chunks per head at most (grid x), <= MAX_SPLITS
    scale: f32,      // log2(e) / sqrt(head_dim)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> dp: DecodeParams;
@group(0) @binding(2) var<storage, read> q: array<f32>;              // row 0: (n_heads, head_dim), rotated
@group(0) @binding(4) var<storage, read> v_cache: array<u32>;        // (n_kv_heads, ctx, head_dim) f16, dims 2j, 2j + 1 per word
@group(0) @binding(5) var<storage, read_write> out: array<f32>;      // row 0: (n_heads, head_dim)
// Per (head, chunk): acc (n_heads, n_splits, head_dim), unnormalised, relative to the
// chunk max; then (max, sum) pairs (n_heads, n_splits, 2).
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;

// Eight heads as two vec4 lanes.
struct Heads {
    a: vec4<f32>,
    b: vec4<f32>,
}

// [pair][half][lane]: scaled q of the 8 heads in the K cache's order (pair i holds dims i
// and i + HEAD_DIM / 2), zero for pairs past HEAD_DIM / 2 (the K loop's last step).
var<workgroup> q_sh: array<vec4<f32>, 2u * (HEAD_DIM + 6u * DP)>;
var<workgroup> parts: array<vec4<f32>, 2u * DEC_WG>;    // [part][key][lane] scores; then V sums
var<workgroup> probs: array<vec4<f32>, 2u * MAX_KT>;    // [key][lane]
var<workgroup> head_slots: array<vec4<f32>, 128>;       // [subgroup][lane], 64 subgroups

fn heads_max(v: Heads, sg_id: u32, n_sg: u32, lane: u32) -> Heads {
    let a = subgroupMax(v.a);
    let b = subgroupMax(v.b);
    if (lane == 0u) {
        head_slots[2u * sg_id] = a;
        head_slots[2u * sg_id + 1u] = b;
    }
    workgroupBarrier();
    var r = Heads(head_slots[0], head_slots[1]);
    for (var i = 1u; i < n_sg; i++) {
        r.a = max(r.a, head_slots[2u * i]);
        r.b = max(r.b, head_slots[2u * i + 1u]);
    }
    workgroupBarrier();
    return r;
}

fn heads_sum(v: Heads, sg_id: u32, n_sg: u32, lane: u32) -> Heads {
    let a = subgroupAdd(v.a);
    let b = subgroupAdd(v.b);
    if (lane == 0u) {
        head_slots[2u * sg_id] = a;
        head_slots[2u * sg_id + 1u] = b;
    }
    workgroupBarrier();
    var r = Heads(vec4<f32>(0.0), vec4<f32>(0.0));
    for (var i = 0u; i < n_sg; i++) {
        r.a += head_slots[2u * i];
        r.b += head_slots[2u * i + 1u];
    }
    workgroupBarrier();
    return r;
}

// V at key j of the tile whose word for this thread's dim starts at vrow (`hi`: the dim
// is the word's second half); zero past the thread's `count` keys.
fn v_at(vrow: u32, j: u32, count: u32, hi: bool) -> f32 {
    if (j < count) {
        let w = unpack2x16float(v_cache[vrow + j * (HEAD_DIM / 2u)]);
        return select(w.x, w.y, hi);
    }
    return 0.0;
}

// The probabilities of tile key j for the 8 heads; zero past the tile's `count` keys.
fn p_at(j: u32, count: u32) -> Heads {
    if (j < count) {
        return Heads(probs[2u * j], probs[2u * j + 1u]);
    }
    return Heads(vec4<f32>(0.0), vec4<f32>(0.0));
}

fn add_pv(acc: Heads, pr: Heads, v: f32) -> Heads {
    return Heads(acc.a + pr.a * v, acc.b + pr.b * v);
}

// Workgroup (chunk, kv head x head block): softmax statistics and the unnormalised
// V sum of its chunk, for each of its query heads.
@compute @workgroup_size(DEC_WG)
fn decode_partial(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let split = wg.x;
    let group = dp.n_heads / dp.n_kv_heads;
    let n_blocks = (group + HB - 1u) / HB;
    let kvh = wg.y / n_blocks;
    let h0 = kvh * group + (wg.y % n_blocks) * HB;
    let nh = min(HB, (kvh + 1u) * group - h0);
    // Read-only storage is uniform, so the loop bounds below may hold barriers.
    let n_keys = state.pos + 1u;
    let len = decode_chunk_len(n_keys, dp.n_splits, KT);  // the chunking: common/decode_chunks.wgsl
    let start = split * len;
    if (start >= n_keys) {
        return;
    }
    let end = min(start + len, n_keys);

    let half = HEAD_DIM / 2u;
    let n_q = HEAD_DIM + 6u * DP;  // (pair, half) slots of one head, padded for the K loop
    for (var i = lid; i < HB * n_q; i += DEC_WG) {
        let g = i / n_q;
        let e = i % n_q;
        let pair = e / 2u;
        var v = 0.0;
        if (g < nh && pair < half) {
            v = q[(h0 + g) * HEAD_DIM + pair + (e % 2u) * half] * dp.scale;
        }
        q_sh[2u * e + g / 4u][g % 4u] = v;
    }
    workgroupBarrier();

    let key = lid % KT;
    let part = lid / KT;
    let k_base = kvh * half * dp.ctx;
    let v_base = kvh * dp.ctx * half;
    // V sum: thread (slot, dim); slot takes every n_slots-th key of the tile.
    let vd = lid % HEAD_DIM;
    let slot = lid / HEAD_DIM;
    let n_slots = DEC_WG / HEAD_DIM;

    var m_run = Heads(vec4<f32>(NEG), vec4<f32>(NEG));
    var l_run = Heads(vec4<f32>(0.0), vec4<f32>(0.0));
    var acc = Heads(vec4<f32>(0.0), vec4<f32>(0.0));
    for (var t0 = start; t0 < end; t0 += KT) {
        let t = t0 + key;
        let live = t < end;
        var sa = vec4<f32>(0.0);
        var sb = vec4<f32>(0.0);
        if (live) {
            // Pairs part, part + DP, ...: four word loads in flight per step (each is its
            // own cache line, stride ctx), so a step waits on memory once, not four
            // times. Pairs past HEAD_DIM / 2 read the last one against a zero q.
            let kt = k_base + t;
            let last = half - 1u;
            for (var i = part; i < half; i += 4u * DP) {
                let k0 = unpack2x16float(k_cache[kt + i * dp.ctx]);
                let k1 = unpack2x16float(k_cache[kt + min(i + DP, last) * dp.ctx]);
                let k2 = unpack2x16float(k_cache[kt + min(i + 2u * DP, last) * dp.ctx]);
                let k3 = unpack2x16float(k_cache[kt + min(i + 3u * DP, last) * dp.ctx]);
                let q0 = 4u * i;
                let q1 = 4u * (i + DP);
                let q2 = 4u * (i + 2u * DP);
                let q3 = 4u * (i + 3u * DP);
                sa += q_sh[q0] * k0.x + q_sh[q0 + 2u] * k0.y + q_sh[q1] * k1.x + q_sh[q1 + 2u] * k1.y
                    + q_sh[q2] * k2.x + q_sh[q2 + 2u] * k2.y + q_sh[q3] * k3.x + q_sh[q3 + 2u] * k3.y;
                sb += q_sh[q0 + 1u] * k0.x + q_sh[q0 + 3u] * k0.y
                    + q_sh[q1 + 1u] * k1.x + q_sh[q1 + 3u] * k1.y
                    + q_sh[q2 + 1u] * k2.x + q_sh[q2 + 3u] * k2.y
                    + q_sh[q3 + 1u] * k3.x + q_sh[q3 + 3u] * k3.y;
            }
        }
        // The tile's V rows for this thread's slot, loaded now: they do not depend on
        // the scores, so their latency overlaps the softmax reductions' barriers instead
        // of following them. A slot takes at most HEAD_DIM / DP <= 8 keys of a tile.
        // Threads past the last whole slot (DEC_WG need not be a multiple of HEAD_DIM)
        // take no keys.
        let count = select(0u, min(KT, end - t0), slot < n_slots);
        // Two threads share each word; the other half is an L1 hit.
        let vrow = v_base + t0 * half + vd / 2u;
        let odd = (vd & 1u) != 0u;
        let v_lo = vec4<f32>(v_at(vrow, slot, count, odd), v_at(vrow, slot + n_slots, count, odd),
                             v_at(vrow, slot + 2u * n_slots, count, odd),
                             v_at(vrow, slot + 3u * n_slots, count, odd));
        let v_hi = vec4<f32>(v_at(vrow, slot + 4u * n_slots, count, odd),
                             v_at(vrow, slot + 5u * n_slots, count, odd),
                             v_at(vrow, slot + 6u * n_slots, count, odd),
                             v_at(vrow, slot + 7u * n_slots, count, odd));
        parts[2u * lid] = sa;
        parts[2u * lid + 1u] = sb;
        workgroupBarrier();

        var s = Heads(vec4<f32>(NEG), vec4<f32>(NEG));
        let scoring = lid < KT && live;
        if (scoring) {
            s = Heads(vec4<f32>(0.0), vec4<f32>(0.0));
            for (var part_i = 0u; part_i < DP; part_i++) {
                s.a += parts[2u * (lid + part_i * KT)];
                s.b += parts[2u * (lid + part_i * KT) + 1u];
            }
        }
        let tile_max = heads_max(s, sg_id, n_sg, lane);
        let m_new = Heads(max(m_run.a, tile_max.a), max(m_run.b, tile_max.b));
        var pr = Heads(vec4<f32>(0.0), vec4<f32>(0.0));
        if (scoring) {
            pr = Heads(exp2(s.a - m_new.a), exp2(s.b - m_new.b));
        }
        if (lid < KT) {
            probs[2u * lid] = pr.a;
            probs[2u * lid + 1u] = pr.b;
        }
        // Its barriers also publish probs.
        let tile_sum = heads_sum(pr, sg_id, n_sg, lane);
        let corr = Heads(exp2(m_run.a - m_new.a), exp2(m_run.b - m_new.b));
        l_run = Heads(l_run.a * corr.a + tile_sum.a, l_run.b * corr.b + tile_sum.b);
        m_run = m_new;

        acc = Heads(acc.a * corr.a, acc.b * corr.b);
        // Two accumulator chains; keys past the tile's count add a zero V times a probability
        // read as zero.
        var acc2 = Heads(vec4<f32>(0.0), vec4<f32>(0.0));
        acc = add_pv(acc, p_at(slot, count), v_lo.x);
        acc2 = add_pv(acc2, p_at(slot + n_slots, count), v_lo.y);
        acc = add_pv(acc, p_at(slot + 2u * n_slots, count), v_lo.z);
        acc2 = add_pv(acc2, p_at(slot + 3u * n_slots, count), v_lo.w);
        acc = add_pv(acc, p_at(slot + 4u * n_slots, count), v_hi.x);
        acc2 = add_pv(acc2, p_at(slot + 5u * n_slots, count), v_hi.y);
        acc = add_pv(acc, p_at(slot + 6u * n_slots, count), v_hi.z);
        acc2 = add_pv(acc2, p_at(slot + 7u * n_slots, count), v_hi.w);
        acc = Heads(acc.a + acc2.a, acc.b + acc2.b);
        // The next tile writes `parts` before a barrier and `probs` after two: both
        // reads above finish first.
    }

    // Sum the V slots; `parts` is free (last read before the final tile's reductions).
    parts[2u * lid] = acc.a;
    parts[2u * lid + 1u] = acc.b;
    workgroupBarrier();
    let base = dp.n_splits * HEAD_DIM;
    if (lid < HEAD_DIM) {
        var a = parts[2u * lid];
        var b = parts[2u * lid + 1u];
        for (var s = 1u; s < n_slots; s++) {
            a += parts[2u * (s * HEAD_DIM + lid)];
            b += parts[2u * (s * HEAD_DIM + lid) + 1u];
        }
        for (var g = 0u; g < nh; g++) {
            var v = a[g % 4u];
            if (g >= 4u) {
                v = b[g % 4u];
            }
            partials[(h0 + g) * base + split * HEAD_DIM + lid] = v;
        }
    }
    if (lid < nh) {
        var m = m_run.a[lid % 4u];
        var l = l_run.a[lid % 4u];
        if (lid >= 4u) {
            m = m_run.b[lid % 4u];
            l = l_run.b[lid % 4u];
        }
        let stats = dp.n_heads * base + ((h0 + lid) * dp.n_splits + split) * 2u;
        partials[stats] = m;
        partials[stats + 1u] = l;
    }
}

var<workgroup> chunk_weight: array<f32, MAX_SPLITS>;
var<workgroup> dim_sums: array<f32, DEC_WG>;

// Workgroup h: merges head h's chunks into row 0 of the output.
@compute @workgroup_size(DEC_WG)
fn decode_combine(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let h = wg.x;
    let n_live = decode_live_chunks(state.pos + 1u, dp.n_splits, KT);  // <= n_splits <= DEC_WG
    let base = dp.n_splits * HEAD_DIM;
    var m = NEG;
    var l = 0.0;
    if (lid < n_live) {
        let stats = dp.n_heads * base + (h * dp.n_splits + lid) * 2u;
        m = partials[stats];
        l = partials[stats + 1u];
    }
    let m_all = workgroup_max(m, sg_id, n_sg, lane);
    var w = 0.0;
    if (lid < n_live) {
        w = exp2(m - m_all);
    }
    chunk_weight[lid] = w;
    // Its barriers also publish chunk_weight.
    let total = workgroup_sum(w * l, sg_id, n_sg, lane);

    let d = lid % HEAD_DIM;
    let part = lid / HEAD_DIM;
    let n_parts = DEC_WG / HEAD_DIM;
    var a = 0.0;
    if (part < n_parts) {
        let src = h * base + d;
        // Four chunks per step: four loads in flight.
        var a2 = 0.0;
        var s = part;
        for (; s + 3u * n_parts < n_live; s += 4u * n_parts) {
            let s1 = s + n_parts;
            let s2 = s + 2u * n_parts;
            let s3 = s + 3u * n_parts;
            let x0 = partials[src + s * HEAD_DIM];
            let x1 = partials[src + s1 * HEAD_DIM];
            let x2 = partials[src + s2 * HEAD_DIM];
            let x3 = partials[src + s3 * HEAD_DIM];
            a += chunk_weight[s] * x0 + chunk_weight[s1] * x1;
            a2 += chunk_weight[s2] * x2 + chunk_weight[s3] * x3;
        }
        for (; s < n_live; s += n_parts) {
            a += chunk_weight[s] * partials[src + s * HEAD_DIM];
        }
        a += a2;
    }
    dim_sums[lid] = a;
    workgroupBarrier();
    if (lid < HEAD_DIM) {
        var o = 0.0;
        for (var p = 0u; p < n_parts; p++) {
            o += dim_sums[p * HEAD_DIM + lid];
        }
        out[h * HEAD_DIM + lid] = o / total;
    }
}
