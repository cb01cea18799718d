// Causal prefill attention on cooperative matrices. Workgroup (h, y) owns query head h
// for batch rows y*BQ .. y*BQ + BQ (row m at position pos + m sees keys 0..=pos + m),
// as BQ / 16 slots of 16 rows, one subgroup each. Key tiles of BK walk up to the last
// row's limit, twice:
//
// 1. S = Q·Kᵀ per tile (coopMultiplyAdd over head_dim in steps of 16); two lanes per row
//    fold its scores into the row's running max (in workgroup memory).
// 2. S again, P = exp2(S - max) in f16, the row sums of P, then O += P·V. With the max
//    known up front, O's accumulators never need a per-row rescale (which cooperative
//    matrices cannot do), so they stay in registers for the whole walk; the sums divide
//    O on its way out. Q·Kᵀ runs twice: 1.5x the multiplies of a one-pass flash
//    attention, all of them on tensor cores.
//
// No seq x seq matrix exists: one slot's scores are 16 x BK floats. Q is rounded to f16
// (as the GEMMs round x and W), K and V are f16 in the cache; accumulation and the
// softmax are f32.
//
// Subgroups: slot s goes to subgroup s % n_sg in sweep s / n_sg (each sweep walks the keys
// again); subgroups without a slot only stage tiles. Row statistics combine lanes with
// subgroupShuffleXor within aligned groups of 8, so the subgroup size must be a multiple
// of 8 (every adapter with cooperative matrices: 32 on NVIDIA and Apple, 32 or 64 on AMD).

override HEAD_DIM: u32 = 64u;  // a multiple of 16, 32..=128

// "Minus infinity" for masked scores: exp2(NEG - m) is 0 for any finite m.
const NEG: f32 = -3.0e38;

const BQ: u32 = 64u;           // rows per workgroup: 4 slots of 16
const SLOTS: u32 = BQ / 16u;
const BK: u32 = 32u;           // keys per tile
const C_THREADS: u32 = 128u;
// vec4<f16> pitches of the staged rows, each 8 halves of padding (16-byte aligned rows
// on distinct banks): q (row, dim), K (dim, key), V (key, dim), P (row, key).
override QP: u32 = HEAD_DIM / 4u + 2u;
const KP: u32 = BK / 4u + 2u;
override VP: u32 = HEAD_DIM / 4u + 2u;
const PP: u32 = BK / 4u + 2u;

@group(0) @binding(1) var<storage, read> state: StepState;
// The f16 K cache (see attention/kernel/common.wgsl): (n_kv_heads, head_dim / 2, ctx)
// words, each a dim pair (i, i + head_dim / 2) of one key, read as vec4s of 4 keys: ctx
// is a multiple of 4.
@group(0) @binding(3) var<storage, read> k4_cache: array<vec4<u32>>;

var<workgroup> qs: array<vec4<f16>, BQ * QP>;        // scaled q rows
var<workgroup> kv: array<vec4<f16>, HEAD_DIM * KP>;  // a K tile (HEAD_DIM x KP), or a V tile (BK x VP)
var<workgroup> ss: array<f32, SLOTS * 16u * BK>;     // each slot's scores, (16, BK)
var<workgroup> ps: array<vec4<f16>, SLOTS * 16u * PP>; // each slot's probabilities
var<workgroup> row_max: array<f32, BQ>;
var<workgroup> row_sum: array<f32, BQ>;

// K tile: dims x keys t0.., keys at or past n_keys zero (the cache holds stale values
// there). 4 keys of dim pair i fill 4 keys of dims i and i + HEAD_DIM / 2.
fn stage_k(lid: u32, k_base4: u32, t0: u32, n_keys: u32) {
    let half = HEAD_DIM / 2u;
    for (var i = lid; i < half * (BK / 4u); i += C_THREADS) {
        let pair = i / (BK / 4u);
        let j = i % (BK / 4u);
        let t = t0 + 4u * j;
        var w = vec4<u32>(0u);
        if (t < n_keys) {
            w = k4_cache[k_base4 + pair * (pp.ctx / 4u) + t / 4u];
            w = select(vec4<u32>(0u), w, vec4<u32>(t) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(n_keys));
        }
        let k0 = unpack2x16float(w.x);
        let k1 = unpack2x16float(w.y);
        let k2 = unpack2x16float(w.z);
        let k3 = unpack2x16float(w.w);
        kv[pair * KP + j] = vec4<f16>(vec4<f32>(k0.x, k1.x, k2.x, k3.x));
        kv[(pair + half) * KP + j] = vec4<f16>(vec4<f32>(k0.y, k1.y, k2.y, k3.y));
    }
}

// V tile: keys t0.. x dims, f16, keys at or past n_keys zero.
fn stage_v(lid: u32, v_base: u32, t0: u32, n_keys: u32) {
    let hd4 = HEAD_DIM / 4u;
    for (var i = lid; i < BK * hd4; i += C_THREADS) {
        let j = i / hd4;
        let c = i % hd4;
        var w = vec2<u32>(0u);
        if (t0 + j < n_keys) {
            w = v2_cache[v_base + (t0 + j) * hd4 + c];
        }
        kv[j * VP + c] = vec4<f16>(vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)));
    }
}

// The slot's 16 x BK scores of the staged K tile, into its part of ss.
fn scores(slot: u32) {
    var s0 = coop_mat16x16<f32, C>();
    var s1 = coop_mat16x16<f32, C>();
    let qa = slot * 16u * QP;
    for (var ds = 0u; ds < HEAD_DIM / 16u; ds++) {
        let a = coopLoadT<coop_mat16x16<f16, A>>(&qs[qa + 4u * ds], QP);
        let b0 = coopLoadT<coop_mat16x16<f16, B>>(&kv[16u * ds * KP], KP);
        let b1 = coopLoadT<coop_mat16x16<f16, B>>(&kv[16u * ds * KP + 4u], KP);
        s0 = coopMultiplyAdd(a, b0, s0);
        s1 = coopMultiplyAdd(a, b1, s1);
    }
    let at = slot * 16u * BK;
    coopStoreT(s0, &ss[at], BK);
    coopStoreT(s1, &ss[at + 16u], BK);
}

@compute @workgroup_size(C_THREADS)
fn prefill_coop(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    let hd4 = HEAD_DIM / 4u;
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
    let k_base4 = kvh * (HEAD_DIM / 2u) * (pp.ctx / 4u);
    let v_base = kvh * pp.ctx * hd4;

    for (var i = lid; i < BQ * hd4; i += C_THREADS) {
        let r = i / hd4;
        let c = i % hd4;
        var v = vec4<f32>(0.0);
        if (r < rows_here) {
            v = q4[(m0 + r) * pp.q_stride4 + h * hd4 + c] * pp.scale;
        }
        qs[r * QP + c] = vec4<f16>(v);
    }
    for (var r = lid; r < BQ; r += C_THREADS) {
        row_max[r] = NEG;
        row_sum[r] = 0.0;
    }

    let sweeps = (SLOTS + n_sg - 1u) / n_sg;
    for (var sweep = 0u; sweep < sweeps; sweep++) {
        let slot = sweep * n_sg + sg_id;
        let owner = slot < SLOTS;  // uniform in the subgroup, as cooperative ops require
        let r0 = slot * 16u;       // the slot's first row in the tile

        // Pass 1: each row's max over its keys. Lanes 2r and 2r + 1 take row r's two
        // halves of the tile.
        for (var t0 = 0u; t0 < n_keys; t0 += BK) {
            workgroupBarrier();  // the previous tile's readers are done with kv
            stage_k(lid, k_base4, t0, n_keys);
            workgroupBarrier();
            if (owner) {
                scores(slot);
            }
            workgroupBarrier();
            if (owner) {
                for (var e = lane; e < 32u; e += sg_size) {
                    let r = e / 2u;
                    let j0 = 16u * (e % 2u);
                    let limit = pos + m0 + r0 + r;  // row r sees keys t <= limit
                    var m = NEG;
                    for (var q = 0u; q < 4u; q++) {
                        let j = j0 + 4u * q;
                        let at = (r0 + r) * BK + j;
                        let s = vec4<f32>(ss[at], ss[at + 1u], ss[at + 2u], ss[at + 3u]);
                        let live = vec4<u32>(t0 + j) + vec4<u32>(0u, 1u, 2u, 3u) <= vec4<u32>(limit);
                        let v = select(vec4<f32>(NEG), s, live);
                        m = max(m, max(max(v.x, v.y), max(v.z, v.w)));
                    }
                    m = max(m, subgroupShuffleXor(m, 1u));
                    if (j0 == 0u) {
                        row_max[r0 + r] = max(row_max[r0 + r], m);
                    }
                }
            }
        }

        // Pass 2: P = exp2(S - max) / sum, O += P·V. o{i}: dims 16 i.. of the slot's rows.
        var o0 = coop_mat16x16<f32, C>();
        var o1 = coop_mat16x16<f32, C>();
        var o2 = coop_mat16x16<f32, C>();
        var o3 = coop_mat16x16<f32, C>();
        var o4 = coop_mat16x16<f32, C>();
        var o5 = coop_mat16x16<f32, C>();
        var o6 = coop_mat16x16<f32, C>();
        var o7 = coop_mat16x16<f32, C>();
        for (var t0 = 0u; t0 < n_keys; t0 += BK) {
            workgroupBarrier();
            stage_k(lid, k_base4, t0, n_keys);
            workgroupBarrier();
            if (owner) {
                scores(slot);
            }
            workgroupBarrier();  // every slot's scores are out: kv may take V
            if (owner) {
                // Lanes 8r .. 8r + 7 (of e) take row r; their sums meet by shuffles.
                for (var e = lane; e < 16u * (BK / 4u); e += sg_size) {
                    let r = e / (BK / 4u);
                    let j = 4u * (e % (BK / 4u));
                    let limit = pos + m0 + r0 + r;
                    let at = (r0 + r) * BK + j;
                    let s = vec4<f32>(ss[at], ss[at + 1u], ss[at + 2u], ss[at + 3u]);
                    let live = vec4<u32>(t0 + j) + vec4<u32>(0u, 1u, 2u, 3u) <= vec4<u32>(limit);
                    let p = select(vec4<f32>(0.0), exp2(s - row_max[r0 + r]), live);
                    ps[(r0 + r) * PP + j / 4u] = vec4<f16>(p);
                    var l = p.x + p.y + p.z + p.w;
                    l += subgroupShuffleXor(l, 1u);
                    l += subgroupShuffleXor(l, 2u);
                    l += subgroupShuffleXor(l, 4u);
                    if (j == 0u) {
                        row_sum[r0 + r] += l;
                    }
                }
            }
            stage_v(lid, v_base, t0, n_keys);
            workgroupBarrier();
            if (owner) {
                for (var ks = 0u; ks < BK / 16u; ks++) {
                    let a = coopLoadT<coop_mat16x16<f16, A>>(&ps[r0 * PP + 4u * ks], PP);
                    let vb = 16u * ks * VP;
                    o0 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&kv[vb], VP), o0);
                    o1 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&kv[vb + 4u], VP), o1);
                    if (HEAD_DIM > 32u) {
                        o2 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&kv[vb + 8u], VP), o2);
                    }
                    if (HEAD_DIM > 48u) {
                        o3 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&kv[vb + 12u], VP), o3);
                    }
                    if (HEAD_DIM > 64u) {
                        o4 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&kv[vb + 16u], VP), o4);
                    }
                    if (HEAD_DIM > 80u) {
                        o5 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&kv[vb + 20u], VP), o5);
                    }
                    if (HEAD_DIM > 96u) {
                        o6 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&kv[vb + 24u], VP), o6);
                    }
                    if (HEAD_DIM > 112u) {
                        o7 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&kv[vb + 28u], VP), o7);
                    }
                }
            }
        }

        // Out through the slot's part of ss, 16 x 16 at a time.
        emit(owner, o0, slot, 0u, rows_here, m0, h, lane, sg_size);
        emit(owner, o1, slot, 1u, rows_here, m0, h, lane, sg_size);
        if (HEAD_DIM > 32u) {
            emit(owner, o2, slot, 2u, rows_here, m0, h, lane, sg_size);
        }
        if (HEAD_DIM > 48u) {
            emit(owner, o3, slot, 3u, rows_here, m0, h, lane, sg_size);
        }
        if (HEAD_DIM > 64u) {
            emit(owner, o4, slot, 4u, rows_here, m0, h, lane, sg_size);
        }
        if (HEAD_DIM > 80u) {
            emit(owner, o5, slot, 5u, rows_here, m0, h, lane, sg_size);
        }
        if (HEAD_DIM > 96u) {
            emit(owner, o6, slot, 6u, rows_here, m0, h, lane, sg_size);
        }
        if (HEAD_DIM > 112u) {
            emit(owner, o7, slot, 7u, rows_here, m0, h, lane, sg_size);
        }
    }
}

// Dims 16 i.. of the slot's 16 rows to out, divided by the rows' sums. The barriers are workgroup-wide, so every
// subgroup takes them, owners or not.
fn emit(
    owner: bool,
    o: coop_mat16x16<f32, C>,
    slot: u32,
    i: u32,
    rows_here: u32,
    m0: u32,
    h: u32,
    lane: u32,
    sg_size: u32,
) {
    workgroupBarrier();
    let at = slot * 16u * BK;
    if (owner) {
        coopStoreT(o, &ss[at], 16u);
    }
    workgroupBarrier();
    if (owner) {
        for (var e = lane; e < 64u; e += sg_size) {
            let r = e / 4u;
            let c = e % 4u;
            if (slot * 16u + r < rows_here) {
                let b = at + r * 16u + 4u * c;
                let inv = 1.0 / row_sum[slot * 16u + r];
                out4[(m0 + slot * 16u + r) * pp.out_stride4 + h * (HEAD_DIM / 4u) + 4u * i + c] =
                    vec4<f32>(ss[b], ss[b + 1u], ss[b + 2u], ss[b + 3u]) * inv;
            }
        }
    }
}
