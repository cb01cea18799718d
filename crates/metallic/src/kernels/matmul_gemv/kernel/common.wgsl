// GEMV over a row-major weight chunk. A workgroup owns COLS_PER_TG output rows; its
// subgroups are split across those rows and across K, so the mapping is correct for any
// subgroup size: a subgroup never straddles two rows.
//
// Optional parts, fused so a decode step needs fewer dispatches:
// - prologue: RMSNorm of the x row (NORM), computed by every workgroup for itself. Its
//   sum of squares comes from the dot-product loop (the subgroups of the first row
//   between them read x once), not from a pass of its own, so it costs no extra read of
//   x and no barrier before the first weight load;
// - epilogues: bias, residual add, SwiGLU pairs (gemv_*), or RoPE on Q and K with the
//   KV-cache append (gemv_qkv_rope_*, in rope_epilogue.wgsl);
// - x merged from the decode attention's per-chunk partials (ATTN_X, below): the
//   attention's combine pass folded into the output projection at short contexts.

override COLS_PER_TG: u32 = 4u;  // METALLIC_GEMV_COLS_PER_TG: 2, 4, 8 or 16
override WG_SIZE: u32 = 128u;
// x is read as rmsnorm(x) * norm_w. A pipeline constant, not a flag, because it changes
// the inner loop.
override NORM: bool = false;
// F16 weights in the all-rows tiling (METALLIC_GEMV_F16_TILING; K a multiple of 8): each
// subgroup a slice of K for all the workgroup's rows, as Q8_0 always does.
override DENSE_ALL_ROWS: bool = false;
// All-rows tiling: 16-byte units of every row each lane loads before using them, 1 or 2.
// The host takes 2 for Q8_0 grids too small to keep enough loads in flight otherwise (the
// 0.5B down projection: 224 workgroups, 2.4 units per lane); elsewhere the extra
// registers cost more than they hide (matmul_gemv::all_rows_unroll_for).
override ALL_ROWS_UNROLL: u32 = 1u;

// ATTN_X: x is the decode attention's output row, merged here from the attention's
// per-chunk partials (bound as x) instead of by a combine pass of its own. A dependent
// dispatch costs about 4 us of the 48 a 0.5B layer takes per token (PERFORMANCE.md,
// session 11), and this saves one per layer. Every workgroup merges all of x for itself,
// so the plan takes this path only while few chunks are live (short contexts) and only for
// GEMVs whose workgroups' redundant x reads stay small (matmul_gemv::attn_input_live_chunks).
// The partials' layout is the attention kernel's (attention/kernel/decode.wgsl), and so is
// the chunking (common/decode_chunks.wgsl).
override ATTN_X: bool = false;
override ATTN_HEAD_DIM: u32 = 64u;
override ATTN_SPLITS: u32 = 1u;   // chunks per head in the partials (decode n_splits)
override ATTN_KT: u32 = 32u;      // chunk lengths are multiples of this many keys
const ATTN_MAX_LIVE: u32 = 4u;
const ATTN_MAX_HEADS: u32 = 64u;
const ATTN_NEG: f32 = -3.0e38;

struct GemvParams {
    k: u32,              // inner dimension (input features)
    n: u32,              // output rows in this weight chunk
    row_offset: u32,     // index in a y row of this chunk's first output
    row_words: u32,      // u32 words per weight row (a multiple of 4: rows are 16-byte aligned)
    x_stride: u32,       // floats between batch rows of x (a multiple of 4)
    y_stride: u32,       // floats between batch rows of y
    flags: u32,          // FLAG_*
    blocks_per_row: u32, // Q8_0 only: 32-element blocks (and f16 scales) per row
    eps: f32,            // NORM: the RMSNorm epsilon
    rope_rows: u32,      // leading rows (Q and K heads) taken in rotation pairs; 0 = none
    head_dim: u32,       // with rope_rows: rows per head
    _pad: u32,
}

const FLAG_BIAS: u32 = 1u;
const FLAG_ACCUMULATE: u32 = 2u;  // y += W x: the residual add, fused
const FLAG_SWIGLU: u32 = 4u;      // rows are (gate, up) pairs: y[row / 2] = silu(gate) * up
const FLAG_LAST_ROW: u32 = 8u;    // read x row state.n_rows - 1, write y row 0 (the LM head)

@group(0) @binding(0) var<uniform> p: GemvParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;        // (rows, x_stride)
@group(0) @binding(2) var<storage, read_write> y: array<f32>;        // (rows, y_stride)
@group(0) @binding(3) var<storage, read> bias: array<f32>;           // (row_offset + n)
@group(0) @binding(4) var<storage, read> weights: array<vec4<u32>>;  // (n, row_words / 4)
@group(0) @binding(6) var<storage, read> norm_w: array<vec4<f32>>;   // NORM: (k padded to 4)
@group(0) @binding(7) var<storage, read> state: StepState;           // FLAG_LAST_ROW, rope

var<workgroup> row_partials: array<f32, 256>;
// ATTN_X: per head, the weights of its live chunks (exp2(m_c - m) / total).
var<workgroup> attn_w: array<vec4<f32>, ATTN_MAX_HEADS>;
// ATTN_X: live chunks at this step (set by attn_prologue).
var<private> attn_live: u32;

// How a workgroup's subgroups share its rows: `parts` subgroups per row, each taking
// every parts-th slice of K; with fewer subgroups than rows, a subgroup loops over rows.
struct Tiling {
    parts: u32,
    first_row: u32,
    row_step: u32,
    part: u32,
}

fn tiling(sg_id: u32, n_sg: u32) -> Tiling {
    let parts = max(n_sg / COLS_PER_TG, 1u);
    return Tiling(parts, sg_id / parts, n_sg / parts, sg_id % parts);
}

// What a workgroup works on, fixed before the dot products.
struct Setup {
    group: u32,   // index of the workgroup's COLS_PER_TG-row slice of the chunk
    t: Tiling,
    x_row: u32,   // batch row of x read (and the position offset for rope)
    y_row: u32,   // batch row of y written
    x4: u32,      // x_row's first vec4 in x
    // NORM: 1 / rms(x row) when computed up front (the int8 path); 0 when it comes from
    // the sums of squares the dot-product loop leaves in reduce_slots (norm_scale).
    scale: f32,
}

fn setup(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, sg_id: u32, n_sg: u32, lane: u32) -> Setup {
    var x_row = wg.y;
    var y_row = wg.y;
    if ((p.flags & FLAG_LAST_ROW) != 0u) {
        x_row = state.n_rows - 1u;
        y_row = 0u;
    }
    let x4 = x_row * p.x_stride / 4u;
    // Grids wider than 65535 fold into z.
    let group = wg.x + wg.z * nwg.x;
    if (ATTN_X) {
        attn_prologue(lid);
        workgroupBarrier();
    }
    return Setup(group, tiling(sg_id, n_sg), x_row, y_row, x4, 0.0);
}

// Float i of the partials (bound as x).
fn partial_at(i: u32) -> f32 {
    return x[i / 4u][i % 4u];
}

// Each head's chunk weights into attn_w, one thread per head: the chunks' (max, sum)
// statistics follow the (n_heads, n_splits, head_dim) sums in the partials.
fn attn_prologue(lid: u32) {
    attn_live = decode_live_chunks(state.pos + 1u, ATTN_SPLITS, ATTN_KT);
    let n_heads = p.k / ATTN_HEAD_DIM;
    let stats = n_heads * ATTN_SPLITS * ATTN_HEAD_DIM;
    for (var h = lid; h < n_heads; h += WG_SIZE) {
        let at = stats + h * ATTN_SPLITS * 2u;
        // Dead chunks' statistics are stale: never read them.
        var m = vec4<f32>(ATTN_NEG);
        var l = vec4<f32>(0.0);
        for (var c = 0u; c < ATTN_MAX_LIVE; c++) {
            if (c < attn_live) {
                m[c] = partial_at(at + 2u * c);
                l[c] = partial_at(at + 2u * c + 1u);
            }
        }
        let m_all = max(max(m.x, m.y), max(m.z, m.w));
        let w = exp2(m - m_all);
        attn_w[h] = w / dot(w, l);
    }
}

// Vector i of the merged attention row: dims 4 i .. 4 i + 3 of one head.
fn attn_x_vec(i: u32) -> vec4<f32> {
    let hd4 = ATTN_HEAD_DIM / 4u;
    let h = i / hd4;
    let first = h * ATTN_SPLITS * hd4 + i % hd4;
    let w = attn_w[h];
    var v = w.x * x[first];
    for (var c = 1u; c < ATTN_MAX_LIVE; c++) {
        if (c < attn_live) {
            v += w[c] * x[first + c * hd4];
        }
    }
    return v;
}

// 1 / sqrt(mean(x^2) + eps) of the row at x4, in a pass over x of its own (the int8 path,
// which reads x while staging it, not in its dot products).
fn inverse_rms(x4: u32, lid: u32, sg_id: u32, n_sg: u32, lane: u32) -> f32 {
    let n4 = p.k / 4u;
    var ss = 0.0;
    for (var i = lid; i < n4; i += WG_SIZE) {
        let v = x[x4 + i];
        ss += dot(v, v);
    }
    for (var k = n4 * 4u + lid; k < p.k; k += WG_SIZE) {
        let v = x[x4 + k / 4u][k % 4u];
        ss += v * v;
    }
    let total = workgroup_sum(ss, sg_id, n_sg, lane);
    return inverseSqrt(total / f32(p.k) + p.eps);
}

// x[x4 + i] as the dot products see it: times the norm weight with NORM (the 1 / rms
// factor is applied to the finished sums).
fn x_vec(x4: u32, i: u32) -> vec4<f32> {
    if (ATTN_X) {
        return attn_x_vec(i);
    }
    return normed(x[x4 + i], i);
}

// x[x4 + i] for the dot products, its squares added to *ss with NORM.
fn x_vec_ss(x4: u32, i: u32, ss: ptr<function, f32>) -> vec4<f32> {
    if (ATTN_X) {
        return attn_x_vec(i);
    }
    let v = x[x4 + i];
    if (NORM) {
        *ss += dot(v, v);
    }
    return normed(v, i);
}

// Vector i of the x row times the norm weight, with NORM.
fn normed(v: vec4<f32>, i: u32) -> vec4<f32> {
    if (NORM) {
        return v * norm_w[i];
    }
    return v;
}

fn x_scalar_ss(x4: u32, k: u32, ss: ptr<function, f32>) -> f32 {
    if (ATTN_X) {
        return attn_x_vec(k / 4u)[k % 4u];
    }
    let v = x[x4 + k / 4u][k % 4u];
    if (NORM) {
        *ss += v * v;
        return v * norm_w[k / 4u][k % 4u];
    }
    return v;
}

// The weight row (in this chunk) behind output row `row` of the chunk. Below
// p.rope_rows, rows come in rotation pairs: row 2j of a head reads weight row j and row
// 2j + 1 reads row j + head_dim / 2, so one workgroup owns both halves of a pair
// (COLS_PER_TG is even and chunks start at head boundaries).
fn weight_row(row: u32) -> u32 {
    let v = p.row_offset + row;
    if (v >= p.rope_rows) {
        return row;
    }
    let j = v % p.head_dim;
    return row - j + j / 2u + (j & 1u) * (p.head_dim / 2u);
}

fn store_partial(t: Tiling, r: u32, s: f32, lane: u32) {
    if (lane == 0u) {
        row_partials[r * t.parts + t.part] = s;
    }
}

// With NORM: the subgroups of the workgroup's first row (parts of them, each a slice of
// K) between them read all of x once, so their sums of squares make the row's. Called
// by every subgroup (uniformly per subgroup), before finish's barrier.
fn store_sum_squares(t: Tiling, ss: f32, lane: u32) {
    if (!NORM || t.first_row != 0u) {
        return;
    }
    let s = subgroupAdd(ss);
    if (lane == 0u) {
        reduce_slots[t.part] = s;
    }
}

// The factor on the finished dot products (after the barrier): 1 / rms(x row) with NORM.
fn norm_scale(su: Setup) -> f32 {
    if (!NORM) {
        return 1.0;
    }
    if (su.scale > 0.0) {
        return su.scale;
    }
    var ss = 0.0;
    for (var j = 0u; j < su.t.parts; j++) {
        ss += reduce_slots[j];
    }
    return inverseSqrt(ss / f32(p.k) + p.eps);
}

// The finished dot product of the workgroup's row r (after the barrier).
fn row_sum(su: Setup, r: u32, scale: f32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < su.t.parts; j++) {
        s += row_partials[r * su.t.parts + j];
    }
    return s * scale;
}

fn finish_rows(su: Setup, lid: u32) {
    workgroupBarrier();
    if (lid >= COLS_PER_TG) {
        return;
    }
    let row = su.group * COLS_PER_TG + lid;
    if (row >= p.n) {
        return;
    }
    let scale = norm_scale(su);
    var s = row_sum(su, lid, scale);
    if ((p.flags & FLAG_SWIGLU) != 0u) {
        // COLS_PER_TG is even and chunks split between pairs, so the up row is ours too.
        if ((lid & 1u) != 0u) {
            return;
        }
        let up = row_sum(su, lid + 1u, scale);
        y[su.y_row * p.y_stride + (p.row_offset + row) / 2u] = s / (1.0 + exp(-s)) * up;
        return;
    }
    let out_row = p.row_offset + row;
    if ((p.flags & FLAG_BIAS) != 0u) {
        s += bias[out_row];
    }
    let yi = su.y_row * p.y_stride + out_row;
    if ((p.flags & FLAG_ACCUMULATE) != 0u) {
        s += y[yi];
    }
    y[yi] = s;
}

// The all-rows tiling (Q8_0 always, F16 with DENSE_ALL_ROWS): every subgroup takes all the
// workgroup's rows over its own slice of K, so each x vector it loads serves every row,
// and a lane can load its slice of every row before the first dot product.

// Per-row sums of the all-rows tiling, rows 4 j .. 4 j + 3 in v{j}.
struct RowSums {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
}

// The all-rows tiling's per-row sums into row_partials (COLS_PER_TG of the 16); vectors
// past COLS_PER_TG are never reduced.
fn store_row_sums(t: Tiling, s: RowSums, lane: u32) {
    let a = subgroupAdd(s.v0);
    var b = vec4<f32>(0.0);
    var c = vec4<f32>(0.0);
    var d = vec4<f32>(0.0);
    if (COLS_PER_TG > 4u) {
        b = subgroupAdd(s.v1);
    }
    if (COLS_PER_TG > 8u) {
        c = subgroupAdd(s.v2);
        d = subgroupAdd(s.v3);
    }
    for (var r = 0u; r < COLS_PER_TG; r++) {
        var v = a[r % 4u];
        if (r >= 12u) {
            v = d[r % 4u];
        } else if (r >= 8u) {
            v = c[r % 4u];
        } else if (r >= 4u) {
            v = b[r % 4u];
        }
        store_partial(t, r, v, lane);
    }
}

// All rows in every subgroup, each subgroup a slice of K, when the partials fit.
fn shared_x_tiling(t: Tiling, sg_id: u32, n_sg: u32) -> Tiling {
    if (n_sg * COLS_PER_TG > 256u) {
        return t;
    }
    return Tiling(n_sg, 0u, 1u, sg_id);
}

// Whether every subgroup takes all the workgroup's rows (shared_x_tiling).
fn all_rows(t: Tiling) -> bool {
    return t.first_row == 0u && t.row_step == 1u;
}
