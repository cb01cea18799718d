// Causal flash attention for a batch of rows (prefill). Workgroup (h, y) owns query
// head h for batch rows y*BQ .. y*BQ + BQ; row m sits at position pos + m and sees
// keys 0..=pos + m. The workgroup walks key tiles of BK up to its last row's limit with
// an online softmax per row; no score matrix beyond one (BQ x BK) tile exists.
//
// Why this shape:
// - Thread (ty, tx) owns 4 query rows (4ty .. 4ty+3) for the whole walk, so the
//   softmax statistics and the output accumulators stay in its registers, and every
//   workgroup-memory read feeds 4 rows: vec4 over rows of q, of the scores and of the
//   probabilities.
// - Scores: the thread takes KPT = BK / TX keys. Q (transposed, [d][row]) stays in
//   workgroup memory for the whole walk; K tiles are staged transposed ([d][key], the
//   cache's order once its f16 pairs are split), so with KPT = 4 a d step is two vec4
//   loads and 16 FMAs.
// - Output: the thread takes head_dim / (4 TX) vec4 chunks of dims; V tiles are
//   staged [key][d] in the same buffer as K (K is dead once the scores exist), so a key
//   step is one vec4 of probabilities, NC vec4 of V and 16 NC FMAs.
// - Each thread computes its rows' tile max itself from the staged scores (the threads
//   of a row agree bit for bit), so no cross-thread reduction or subgroup is needed:
//   the kernel is correct for any subgroup size.
// - Tiles are override constants sized so the workgroup memory fits 32 KiB (Apple,
//   lavapipe); `PrefillTiles` in mod.rs picks them per head_dim.

override BQ: u32 = 64u;      // query rows per workgroup, a multiple of 4
override TX: u32 = 8u;       // threads per row group
override BK: u32 = 32u;      // keys per tile: TX, 2 TX or 4 TX
override KPT: u32 = BK / TX; // keys per thread in the score step
// vec4 dim chunks per thread in the output step: at most 4 (4 TX >= head_dim / 4).
override NC: u32 = (HEAD_DIM / 4u + TX - 1u) / TX;
// Loads per thread to stage a K tile (4 keys of a dim pair each) or a V tile, overrides
// for the same reason.
override K_STEPS: u32 = (HEAD_DIM / 2u * (BK / 4u) + BQ / 4u * TX - 1u) / (BQ / 4u * TX);
override V_STEPS: u32 = (BK * (HEAD_DIM / 4u) + BQ / 4u * TX - 1u) / (BQ / 4u * TX);

var<workgroup> q_t: array<vec4<f32>, HEAD_DIM * BQ / 4u>;  // [d][row / 4], scaled
var<workgroup> kv_t: array<vec4<f32>, HEAD_DIM * BK / 4u>; // K: [d][key / 4]; V: [key][d / 4]
var<workgroup> p_t: array<vec4<f32>, BK * BQ / 4u>;        // [key][row / 4]: scores, then probs

@compute @workgroup_size(BQ / 4u * TX)
fn prefill(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let hd4 = HEAD_DIM / 4u;
    let bq4 = BQ / 4u;
    let bk4 = BK / 4u;
    let n_threads = bq4 * TX;
    let h = wg.x;
    let m0 = wg.y * BQ;
    // Read-only storage is uniform, so the loop bounds below may hold barriers.
    let pos = state.pos;
    let n_rows = state.n_rows;
    if (m0 >= n_rows) {
        return;
    }
    let rows_here = min(BQ, n_rows - m0);
    let n_keys = pos + m0 + rows_here;  // keys the tile's last row sees
    let kvh = h / (pp.n_heads / pp.n_kv_heads);
    let ty = lid / TX;
    let tx = lid % TX;
    // Position of each of the thread's rows: row r sees keys t <= limit[r].
    let limit = vec4<u32>(pos + m0 + 4u * ty) + vec4<u32>(0u, 1u, 2u, 3u);

    for (var i = lid; i < BQ * hd4; i += n_threads) {
        let r = i / hd4;
        let c = i % hd4;
        var v = vec4<f32>(0.0);
        if (r < rows_here) {
            v = q4[(m0 + r) * pp.q_stride4 + h * hd4 + c] * pp.scale;
        }
        let dst = 4u * c * bq4 + r / 4u;
        let e = r % 4u;
        q_t[dst][e] = v.x;
        q_t[dst + bq4][e] = v.y;
        q_t[dst + 2u * bq4][e] = v.z;
        q_t[dst + 3u * bq4][e] = v.w;
    }

    let half = HEAD_DIM / 2u;
    let k_base = kvh * half * pp.ctx;
    let v_base = kvh * pp.ctx * hd4;
    var m_run = vec4<f32>(NEG);  // per row
    var l_run = vec4<f32>(0.0);
    // One Rows4 per dim chunk, as named variables, never an array indexed in a loop: on
    // the H100 an array here lived in local memory and the P·V step took 56% of the
    // kernel (attention_bench with the step removed: 1512 -> 666 µs, 7B pp512).
    var acc0 = Rows4(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    var acc1 = acc0;
    var acc2 = acc0;
    var acc3 = acc0;
    // The thread's KPT keys' scores, vec4 over its rows: named fields, for the same
    // reason as the accumulators.
    var s = acc0;

    for (var t0 = 0u; t0 < n_keys; t0 += BK) {
        let n_valid = min(BK, n_keys - t0);
        // K tile, transposed: 4 keys of dim pair i give 4 keys of dims i and i + half.
        // Keys past the last row's limit read 0. Loops over a constant trip count, so
        // the compiler can unroll them and keep all of a thread's loads in flight.
        for (var r = 0u; r < K_STEPS; r++) {
            let i = r * n_threads + lid;
            if (i >= half * bk4) {
                break;
            }
            let pair = i / bk4;
            let j = i % bk4;
            let t = t0 + 4u * j;
            let src = k_base + pair * pp.ctx + t;
            var w = vec4<u32>(0u);
            if (t + 3u < n_keys) {
                w = vec4<u32>(k_cache[src], k_cache[src + 1u], k_cache[src + 2u], k_cache[src + 3u]);
            } else {
                for (var e = 0u; e < 4u; e++) {
                    if (t + e < n_keys) {
                        w[e] = k_cache[src + e];
                    }
                }
            }
            let k0 = unpack2x16float(w.x);
            let k1 = unpack2x16float(w.y);
            let k2 = unpack2x16float(w.z);
            let k3 = unpack2x16float(w.w);
            kv_t[pair * bk4 + j] = vec4<f32>(k0.x, k1.x, k2.x, k3.x);
            kv_t[(pair + half) * bk4 + j] = vec4<f32>(k0.y, k1.y, k2.y, k3.y);
        }
        workgroupBarrier();

        s = Rows4(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
        for (var d = 0u; d < HEAD_DIM; d++) {
            let qv = q_t[d * bq4 + ty];
            if (KPT == 4u) {
                let k = kv_t[d * bk4 + tx];
                s = rows_fma(s, k, qv);
            } else {
                // KPT 1 or 2: the thread's keys sit in one vec4 of the tile.
                let kk = tx * KPT;
                let k = kv_t[d * bk4 + kk / 4u];
                s.r0 += qv * k[kk % 4u];
                if (KPT == 2u) {
                    s.r1 += qv * k[(kk + 1u) % 4u];
                }
            }
        }
        let t_first = t0 + tx * KPT;
        let p_first = tx * KPT * bq4 + ty;
        s.r0 = masked(s.r0, t_first, limit);
        p_t[p_first] = s.r0;
        if (KPT > 1u) {
            s.r1 = masked(s.r1, t_first + 1u, limit);
            p_t[p_first + bq4] = s.r1;
        }
        if (KPT > 2u) {
            s.r2 = masked(s.r2, t_first + 2u, limit);
            s.r3 = masked(s.r3, t_first + 3u, limit);
            p_t[p_first + 2u * bq4] = s.r2;
            p_t[p_first + 3u * bq4] = s.r3;
        }
        workgroupBarrier();

        // V tile over the dead K tile, while each thread takes its rows' tile max.
        for (var r = 0u; r < V_STEPS; r++) {
            let i = r * n_threads + lid;
            if (i >= BK * hd4) {
                break;
            }
            let t = t0 + i / hd4;
            var v = vec4<f32>(0.0);
            if (t < n_keys) {
                let w = v2_cache[v_base + t * hd4 + i % hd4];
                v = vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
            }
            kv_t[i] = v;
        }
        var m_tile = vec4<f32>(NEG);
        for (var kk = 0u; kk < n_valid; kk++) {
            m_tile = max(m_tile, p_t[kk * bq4 + ty]);
        }
        let m_new = max(m_run, m_tile);
        let corr = exp2(m_run - m_new);
        m_run = m_new;
        workgroupBarrier();

        p_t[p_first] = prob(s.r0, m_new);
        if (KPT > 1u) {
            p_t[p_first + bq4] = prob(s.r1, m_new);
        }
        if (KPT > 2u) {
            p_t[p_first + 2u * bq4] = prob(s.r2, m_new);
            p_t[p_first + 3u * bq4] = prob(s.r3, m_new);
        }
        workgroupBarrier();

        l_run *= corr;
        acc0 = rows_scaled(acc0, corr);
        acc1 = rows_scaled(acc1, corr);
        acc2 = rows_scaled(acc2, corr);
        acc3 = rows_scaled(acc3, corr);
        // Chunk n is dims 4 (tx + TX n) ..; NC is an override, so the dead tests fold.
        let c0 = tx < hd4;
        let c1 = NC > 1u && tx + TX < hd4;
        let c2 = NC > 2u && tx + 2u * TX < hd4;
        let c3 = NC > 3u && tx + 3u * TX < hd4;
        for (var kk = 0u; kk < n_valid; kk++) {
            let p = p_t[kk * bq4 + ty];
            l_run += p;
            let vb = kk * hd4 + tx;
            if (c0) {
                acc0 = rows_fma(acc0, p, kv_t[vb]);
            }
            if (c1) {
                acc1 = rows_fma(acc1, p, kv_t[vb + TX]);
            }
            if (c2) {
                acc2 = rows_fma(acc2, p, kv_t[vb + 2u * TX]);
            }
            if (c3) {
                acc3 = rows_fma(acc3, p, kv_t[vb + 3u * TX]);
            }
        }
        // The next tile overwrites kv_t and p_t.
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let r = 4u * ty + i;
        if (r < rows_here) {
            let row = (m0 + r) * pp.out_stride4 + h * hd4 + tx;
            let inv = 1.0 / l_run[i];
            if (tx < hd4) {
                out4[row] = rows_get(acc0, i) * inv;
            }
            if (NC > 1u && tx + TX < hd4) {
                out4[row + TX] = rows_get(acc1, i) * inv;
            }
            if (NC > 2u && tx + 2u * TX < hd4) {
                out4[row + 2u * TX] = rows_get(acc2, i) * inv;
            }
            if (NC > 3u && tx + 3u * TX < hd4) {
                out4[row + 3u * TX] = rows_get(acc3, i) * inv;
            }
        }
    }
}

// Four vec4s held as named fields, so they stay in registers: four query rows'
// accumulators for one vec4 of dims, or four keys' scores (vec4 over rows).
struct Rows4 {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
}

// a.rj + p[j] * v for each j.
fn rows_fma(a: Rows4, p: vec4<f32>, v: vec4<f32>) -> Rows4 {
    return Rows4(a.r0 + p.x * v, a.r1 + p.y * v, a.r2 + p.z * v, a.r3 + p.w * v);
}

fn rows_scaled(a: Rows4, c: vec4<f32>) -> Rows4 {
    return Rows4(a.r0 * c.x, a.r1 * c.y, a.r2 * c.z, a.r3 * c.w);
}

fn rows_get(a: Rows4, i: u32) -> vec4<f32> {
    switch i {
        case 0u: { return a.r0; }
        case 1u: { return a.r1; }
        case 2u: { return a.r2; }
        default: { return a.r3; }
    }
}

// Key t's scores for the thread's rows, NEG where t is past a row's causal limit.
fn masked(score: vec4<f32>, t: u32, limit: vec4<u32>) -> vec4<f32> {
    return select(vec4<f32>(NEG), score, vec4<u32>(t) <= limit);
}

fn prob(score: vec4<f32>, m: vec4<f32>) -> vec4<f32> {
    return select(vec4<f32>(0.0), exp2(score - m), score > vec4<f32>(NEG));
}
