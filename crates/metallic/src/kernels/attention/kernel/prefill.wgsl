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
//   workgroup memory for the whole walk; K tiles are staged transposed ([d][key], as the
//   cache stores them), so with KPT = 4 a d step is two vec4 loads and 16 FMAs.
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
// vec4 dim chunks per thread in the output step. An override, not a value computed in
// the kernel, so every loop over the accumulators has a trip count known when the
// pipeline is compiled, so the compiler can unroll them and keep `acc` in registers.
// (On the H100 this kernel took 36% of a 7B pp512 chunk at head_dim 128, 13x the time
// per tile of head_dim 64: the suspect is `acc` in local memory.)
override NC: u32 = (HEAD_DIM / 4u + TX - 1u) / TX;
const MAX_NC: u32 = 4u;      // NC <= MAX_NC: 4 TX >= head_dim / 4
// Loads per thread to stage a K or V tile, overrides for the same reason.
override K_STEPS: u32 = (HEAD_DIM * (BK / 4u) + BQ / 4u * TX - 1u) / (BQ / 4u * TX);
override V_STEPS: u32 = (BK * (HEAD_DIM / 4u) + BQ / 4u * TX - 1u) / (BQ / 4u * TX);

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
@group(0) @binding(10) var<storage, read> v4_cache: array<vec4<f32>>;   // (n_kv_heads, ctx, head_dim)
@group(0) @binding(11) var<storage, read_write> out4: array<vec4<f32>>; // (rows, out_stride)

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

    let k_base = kvh * HEAD_DIM * pp.ctx;
    let v_base = kvh * pp.ctx * hd4;
    var m_run = vec4<f32>(NEG);  // per row
    var l_run = vec4<f32>(0.0);
    var acc: array<vec4<f32>, 4u * MAX_NC>;  // [chunk][row]: vec4 over 4 dims
    var s: array<vec4<f32>, 4>;              // [key]: vec4 over rows

    for (var t0 = 0u; t0 < n_keys; t0 += BK) {
        let n_valid = min(BK, n_keys - t0);
        // K tile, transposed as in the cache; keys past the last row's limit read 0.
        // Loops over a constant trip count, so the compiler can unroll them and keep
        // all of a thread's loads in flight.
        for (var r = 0u; r < K_STEPS; r++) {
            let i = r * n_threads + lid;
            if (i >= HEAD_DIM * bk4) {
                break;
            }
            let d = i / bk4;
            let t = t0 + 4u * (i % bk4);
            let src = k_base + d * pp.ctx + t;
            var k = vec4<f32>(0.0);
            if (t + 3u < n_keys) {
                k = vec4<f32>(k_cache[src], k_cache[src + 1u], k_cache[src + 2u], k_cache[src + 3u]);
            } else {
                for (var e = 0u; e < 4u; e++) {
                    if (t + e < n_keys) {
                        k[e] = k_cache[src + e];
                    }
                }
            }
            kv_t[i] = k;
        }
        workgroupBarrier();

        for (var j = 0u; j < KPT; j++) {
            s[j] = vec4<f32>(0.0);
        }
        for (var d = 0u; d < HEAD_DIM; d++) {
            let qv = q_t[d * bq4 + ty];
            if (KPT == 4u) {
                let k = kv_t[d * bk4 + tx];
                s[0] += qv * k.x;
                s[1] += qv * k.y;
                s[2] += qv * k.z;
                s[3] += qv * k.w;
            } else {
                for (var j = 0u; j < KPT; j++) {
                    let kk = tx * KPT + j;
                    s[j] += qv * kv_t[d * bk4 + kk / 4u][kk % 4u];
                }
            }
        }
        for (var j = 0u; j < KPT; j++) {
            let t = t0 + tx * KPT + j;
            let visible = vec4<u32>(t) <= limit;
            s[j] = select(vec4<f32>(NEG), s[j], visible);
            p_t[(tx * KPT + j) * bq4 + ty] = s[j];
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
                v = v4_cache[v_base + t * hd4 + i % hd4];
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

        for (var j = 0u; j < KPT; j++) {
            let p = select(vec4<f32>(0.0), exp2(s[j] - m_new), s[j] > vec4<f32>(NEG));
            p_t[(tx * KPT + j) * bq4 + ty] = p;
        }
        workgroupBarrier();

        l_run *= corr;
        for (var n = 0u; n < NC; n++) {
            acc[4u * n] *= corr.x;
            acc[4u * n + 1u] *= corr.y;
            acc[4u * n + 2u] *= corr.z;
            acc[4u * n + 3u] *= corr.w;
        }
        for (var kk = 0u; kk < n_valid; kk++) {
            let p = p_t[kk * bq4 + ty];
            l_run += p;
            for (var n = 0u; n < NC; n++) {
                let c = tx + TX * n;
                if (c < hd4) {
                    let v = kv_t[kk * hd4 + c];
                    acc[4u * n] += p.x * v;
                    acc[4u * n + 1u] += p.y * v;
                    acc[4u * n + 2u] += p.z * v;
                    acc[4u * n + 3u] += p.w * v;
                }
            }
        }
        // The next tile overwrites kv_t and p_t.
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let r = 4u * ty + i;
        if (r < rows_here) {
            let row = (m0 + r) * pp.out_stride4 + h * hd4;
            for (var n = 0u; n < NC; n++) {
                let c = tx + TX * n;
                if (c < hd4) {
                    out4[row + c] = acc[4u * n + i] / l_run[i];
                }
            }
        }
    }
}
