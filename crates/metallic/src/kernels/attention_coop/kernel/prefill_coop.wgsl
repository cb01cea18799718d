// Causal prefill attention on cooperative matrices. A workgroup serves HG query heads of
// one GQA group (all G = n_heads / n_kv_heads of them, or a part when the group is cut to
// give the GPU more workgroups) for a block of 16 PB positions. Those heads read the same
// K and V tiles, so the workgroup stages each tile once for all of them (with 7 query
// heads per KV head, a seventh of the staging of one workgroup per query head).
//
// Work is cut in slots of 16 rows: slot s is the part's query head s % hs at positions
// m0 + 16 (s / hs) .., one subgroup each (hs: the part's heads, HG or the remainder). Row m
// (position pos + m) sees keys 0..=pos + m. Key tiles of BK walk up to the workgroup's
// last row once, flash-attention style: S = Q·Kᵀ per tile (coopMultiplyAdd over head_dim
// in steps of 16), P = exp2(S - m) in f16 with the row sums, then O += P·V.
//
// The running max m is lazy. Cooperative matrices cannot scale an accumulator's rows, so
// m moves only when a tile's max passes it by more than TAU (in log2 units): P stays below
// 2^TAU, which f16 holds exactly as well as values below 1, and O keeps accumulating in
// registers. Keys walk from position 0, where real models put their largest scores (the
// attention sink), so a move is rare after the first tile; when one comes, the
// workgroup takes a slow path that scales O's rows through workgroup memory. The row sums
// divide O on its way out. (Session 8's kernel walked the keys twice, the first time for
// the exact max: Q·Kᵀ twice, and seven barriers per tile instead of four.)
//
// Q stays in registers as A fragments for the whole walk (staged 16 dims at a time through
// the probabilities' buffer), which leaves the workgroup memory to the K and V tiles,
// scores and probabilities: with 8 slots 38 KiB at head_dim 64, 46 KiB at 128. K and V
// have a tile each, so staging the next K tile needs no barrier after the multiplies by V.
//
// No seq x seq matrix exists: one slot's scores are 16 x BK floats. Q is rounded to f16
// (as the GEMMs round x and W), K and V are f16 in the cache; accumulation and the
// softmax are f32.
//
// Subgroups: the first min(n_sg, SLOTS) subgroups take a slot each per sweep, and each
// sweep walks the keys again (more slots than subgroups); the rest only stage tiles. Row
// statistics combine lanes with subgroupShuffleXor within aligned groups of 8, so the
// subgroup size must be a multiple of 8 (every adapter with cooperative matrices: 32 on
// NVIDIA and Apple, 32 or 64 on AMD).

override HEAD_DIM: u32 = 64u;  // a multiple of 16, 32..=128
override HG: u32 = 8u;         // query heads per workgroup (at most G): mod.rs
override PB: u32 = 1u;         // 16-position blocks per workgroup: mod.rs
override SLOTS: u32 = 8u;      // HG * PB, at most 8: slots in flight per sweep
// 8 subgroups of 32 whatever the slot count: staging the K and V tiles is the critical
// path, and 224 threads for 7 slots (a K tile of 256 vec4 loads at head_dim 64 in two rounds)
// ran 10-15% slower end to end than 256 with one subgroup staging only.
const C_THREADS: u32 = 256u;

// "Minus infinity" for masked scores: exp2(NEG - m) is 0 for any finite m.
const NEG: f32 = -3.0e38;

const BK: u32 = 32u;           // keys per tile
// How far (log2 units) a row's scores may pass its running max before the max moves and
// O is rescaled: probabilities stay below 2^8.
const TAU: f32 = 8.0;
// vec4<f16> pitches of the staged rows, each 8 halves of padding (16-byte aligned rows
// on distinct banks): K (dim, key), V (key, dim), P (row, key; also q pieces).
const KP: u32 = BK / 4u + 2u;
override VP: u32 = HEAD_DIM / 4u + 2u;
const PP: u32 = BK / 4u + 2u;

@group(0) @binding(1) var<storage, read> state: StepState;
// The f16 K cache (see attention/kernel/common.wgsl): (n_kv_heads, head_dim / 2, ctx)
// words, each a dim pair (i, i + head_dim / 2) of one key, read as vec4s of 4 keys: ctx
// is a multiple of 4.
@group(0) @binding(3) var<storage, read> k4_cache: array<vec4<u32>>;

var<workgroup> ks: array<vec4<f16>, HEAD_DIM * KP>;  // a K tile (HEAD_DIM x KP)
var<workgroup> vs: array<vec4<f16>, BK * VP>;        // a V tile (BK x VP)
var<workgroup> ss: array<f32, SLOTS * 16u * BK>;     // each slot's scores, (16, BK)
var<workgroup> ps: array<vec4<f16>, SLOTS * 16u * PP>; // each slot's probabilities (or q piece)
var<workgroup> row_max: array<f32, SLOTS * 16u>;    // the running (lazy) max of each row
var<workgroup> row_sum: array<f32, SLOTS * 16u>;    // sum of exp2(score - row_max)
var<workgroup> row_scale: array<f32, SLOTS * 16u>;  // this tile's factor for O's row
// [0]: some row's max moved in this tile. 16 bytes, not a lone atomic<u32>: with a 4-byte
// workgroup variable in the module, the H100's driver returned zeros from P·V (every
// accumulator lost; PERFORMANCE.md, session 9), as if the tiles' coop loads had lost
// their alignment.
var<workgroup> rescale: array<atomic<u32>, 4>;

// Where a slot works: its query head and its first row in the chunk.
struct Slot {
    head: u32,
    m: u32,
}

// Slot s of the part whose first head is `h0` and which has `hs` heads.
fn slot_at(h0: u32, hs: u32, m0: u32, s: u32) -> Slot {
    return Slot(h0 + s % hs, m0 + 16u * (s / hs));
}

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
        ks[pair * KP + j] = vec4<f16>(vec4<f32>(k0.x, k1.x, k2.x, k3.x));
        ks[(pair + half) * KP + j] = vec4<f16>(vec4<f32>(k0.y, k1.y, k2.y, k3.y));
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
        vs[j * VP + c] = vec4<f16>(vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)));
    }
}

// Dims 16 ds.. of the sweep's slots' q rows, scaled, into their parts of ps (rows past
// the chunk zero), between barriers: every subgroup calls it.
fn stage_q_piece(lid: u32, ds: u32, h0: u32, hs: u32, m0: u32, first: u32, n_slots: u32) {
    workgroupBarrier();  // the previous piece's fragments are loaded
    for (var i = lid; i < n_slots * 64u; i += C_THREADS) {
        let ls = i / 64u;
        let r = (i / 4u) % 16u;
        let c = i % 4u;
        let sl = slot_at(h0, hs, m0, first + ls);
        var v = vec4<f32>(0.0);
        if (sl.m + r < state.n_rows) {
            v = q4[(sl.m + r) * pp.q_stride4 + sl.head * (HEAD_DIM / 4u) + 4u * ds + c] * pp.scale;
        }
        ps[(ls * 16u + r) * PP + c] = vec4<f16>(v);
    }
    workgroupBarrier();
}

// The slot's 16 x BK scores against the staged K tile, into its part of ss.
fn scores(
    ls: u32,
    q0: coop_mat16x16<f16, A>,
    q1: coop_mat16x16<f16, A>,
    q2: coop_mat16x16<f16, A>,
    q3: coop_mat16x16<f16, A>,
    q4_: coop_mat16x16<f16, A>,
    q5: coop_mat16x16<f16, A>,
    q6: coop_mat16x16<f16, A>,
    q7: coop_mat16x16<f16, A>,
) {
    var s0 = coop_mat16x16<f32, C>();
    var s1 = coop_mat16x16<f32, C>();
    s0 = coopMultiplyAdd(q0, coopLoadT<coop_mat16x16<f16, B>>(&ks[0u], KP), s0);
    s1 = coopMultiplyAdd(q0, coopLoadT<coop_mat16x16<f16, B>>(&ks[4u], KP), s1);
    s0 = coopMultiplyAdd(q1, coopLoadT<coop_mat16x16<f16, B>>(&ks[16u * KP], KP), s0);
    s1 = coopMultiplyAdd(q1, coopLoadT<coop_mat16x16<f16, B>>(&ks[16u * KP + 4u], KP), s1);
    if (HEAD_DIM > 32u) {
        s0 = coopMultiplyAdd(q2, coopLoadT<coop_mat16x16<f16, B>>(&ks[32u * KP], KP), s0);
        s1 = coopMultiplyAdd(q2, coopLoadT<coop_mat16x16<f16, B>>(&ks[32u * KP + 4u], KP), s1);
    }
    if (HEAD_DIM > 48u) {
        s0 = coopMultiplyAdd(q3, coopLoadT<coop_mat16x16<f16, B>>(&ks[48u * KP], KP), s0);
        s1 = coopMultiplyAdd(q3, coopLoadT<coop_mat16x16<f16, B>>(&ks[48u * KP + 4u], KP), s1);
    }
    if (HEAD_DIM > 64u) {
        s0 = coopMultiplyAdd(q4_, coopLoadT<coop_mat16x16<f16, B>>(&ks[64u * KP], KP), s0);
        s1 = coopMultiplyAdd(q4_, coopLoadT<coop_mat16x16<f16, B>>(&ks[64u * KP + 4u], KP), s1);
    }
    if (HEAD_DIM > 80u) {
        s0 = coopMultiplyAdd(q5, coopLoadT<coop_mat16x16<f16, B>>(&ks[80u * KP], KP), s0);
        s1 = coopMultiplyAdd(q5, coopLoadT<coop_mat16x16<f16, B>>(&ks[80u * KP + 4u], KP), s1);
    }
    if (HEAD_DIM > 96u) {
        s0 = coopMultiplyAdd(q6, coopLoadT<coop_mat16x16<f16, B>>(&ks[96u * KP], KP), s0);
        s1 = coopMultiplyAdd(q6, coopLoadT<coop_mat16x16<f16, B>>(&ks[96u * KP + 4u], KP), s1);
    }
    if (HEAD_DIM > 112u) {
        s0 = coopMultiplyAdd(q7, coopLoadT<coop_mat16x16<f16, B>>(&ks[112u * KP], KP), s0);
        s1 = coopMultiplyAdd(q7, coopLoadT<coop_mat16x16<f16, B>>(&ks[112u * KP + 4u], KP), s1);
    }
    let at = ls * 16u * BK;
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
    let group = pp.n_heads / pp.n_kv_heads;
    let parts = (group + HG - 1u) / HG;
    let kvh = wg.x / parts;
    let h0 = kvh * group + (wg.x % parts) * HG;  // the part's first query head
    let hs = min(HG, (kvh + 1u) * group - h0);   // and its number of heads
    // Read-only storage is uniform, so the loop bounds below may hold barriers.
    let pos = state.pos;
    let n_rows = state.n_rows;
    // Last blocks first: a block walks keys up to its last row, so the late blocks of a
    // chunk are the long ones, and starting them first shortens the tail of the dispatch.
    let n_blocks = (n_rows + 16u * PB - 1u) / (16u * PB);
    if (wg.y >= n_blocks) {
        return;
    }
    let m0 = (n_blocks - 1u - wg.y) * 16u * PB;
    let n_keys = pos + min(m0 + 16u * PB, n_rows);  // keys the workgroup's last row sees
    let k_base4 = kvh * (HEAD_DIM / 2u) * (pp.ctx / 4u);
    let v_base = kvh * pp.ctx * hd4;

    if (lid == 0u) {
        atomicStore(&rescale[0], 0u);  // seen after the q staging's barriers
    }
    let per_sweep = min(n_sg, SLOTS);
    let total = hs * PB;
    let sweeps = (total + per_sweep - 1u) / per_sweep;
    for (var sweep = 0u; sweep < sweeps; sweep++) {
        let first = sweep * per_sweep;
        let n_here = min(per_sweep, total - first);
        let ls = sg_id;                   // the subgroup's slot in this sweep
        let owner = ls < n_here;          // uniform in the subgroup, as cooperative ops require
        let sl = slot_at(h0, hs, m0, first + min(ls, n_here - 1u));
        let rl = ls * 16u;                // the slot's first row in ss / ps / the statistics

        // Q fragments, 16 dims at a time through ps: named variables, never an array
        // (arrays indexed in loops live in memory), and written out per piece. A helper
        // function returning each fragment ran slower on the H100 (PERFORMANCE.md,
        // session 8).
        var q0 = coop_mat16x16<f16, A>();
        var q1 = coop_mat16x16<f16, A>();
        var q2 = coop_mat16x16<f16, A>();
        var q3 = coop_mat16x16<f16, A>();
        var q4_ = coop_mat16x16<f16, A>();
        var q5 = coop_mat16x16<f16, A>();
        var q6 = coop_mat16x16<f16, A>();
        var q7 = coop_mat16x16<f16, A>();
        stage_q_piece(lid, 0u, h0, hs, m0, first, n_here);
        if (owner) {
            q0 = coopLoadT<coop_mat16x16<f16, A>>(&ps[rl * PP], PP);
        }
        stage_q_piece(lid, 1u, h0, hs, m0, first, n_here);
        if (owner) {
            q1 = coopLoadT<coop_mat16x16<f16, A>>(&ps[rl * PP], PP);
        }
        if (HEAD_DIM > 32u) {
            stage_q_piece(lid, 2u, h0, hs, m0, first, n_here);
            if (owner) {
                q2 = coopLoadT<coop_mat16x16<f16, A>>(&ps[rl * PP], PP);
            }
        }
        if (HEAD_DIM > 48u) {
            stage_q_piece(lid, 3u, h0, hs, m0, first, n_here);
            if (owner) {
                q3 = coopLoadT<coop_mat16x16<f16, A>>(&ps[rl * PP], PP);
            }
        }
        if (HEAD_DIM > 64u) {
            stage_q_piece(lid, 4u, h0, hs, m0, first, n_here);
            if (owner) {
                q4_ = coopLoadT<coop_mat16x16<f16, A>>(&ps[rl * PP], PP);
            }
        }
        if (HEAD_DIM > 80u) {
            stage_q_piece(lid, 5u, h0, hs, m0, first, n_here);
            if (owner) {
                q5 = coopLoadT<coop_mat16x16<f16, A>>(&ps[rl * PP], PP);
            }
        }
        if (HEAD_DIM > 96u) {
            stage_q_piece(lid, 6u, h0, hs, m0, first, n_here);
            if (owner) {
                q6 = coopLoadT<coop_mat16x16<f16, A>>(&ps[rl * PP], PP);
            }
        }
        if (HEAD_DIM > 112u) {
            stage_q_piece(lid, 7u, h0, hs, m0, first, n_here);
            if (owner) {
                q7 = coopLoadT<coop_mat16x16<f16, A>>(&ps[rl * PP], PP);
            }
        }
        for (var r = lid; r < SLOTS * 16u; r += C_THREADS) {
            row_max[r] = NEG;
            row_sum[r] = 0.0;
        }

        // o{i}: dims 16 i.. of the slot's rows.
        var o0 = coop_mat16x16<f32, C>();
        var o1 = coop_mat16x16<f32, C>();
        var o2 = coop_mat16x16<f32, C>();
        var o3 = coop_mat16x16<f32, C>();
        var o4 = coop_mat16x16<f32, C>();
        var o5 = coop_mat16x16<f32, C>();
        var o6 = coop_mat16x16<f32, C>();
        var o7 = coop_mat16x16<f32, C>();
        for (var t0 = 0u; t0 < n_keys; t0 += BK) {
            // ks is free: the previous tile's scores were taken before its softmax barrier.
            stage_k(lid, k_base4, t0, n_keys);
            workgroupBarrier();
            if (owner) {
                scores(ls, q0, q1, q2, q3, q4_, q5, q6, q7);
            }
            workgroupBarrier();  // every slot's scores are out
            if (owner) {
                softmax_tile(rl, pos + sl.m, t0, lane, sg_size);
            }
            stage_v(lid, v_base, t0, n_keys);
            // Barrier, flag, barrier: ps, vs and the row factors are visible, and the flag
            // is the same in every thread, so the slow path may hold barriers.
            if (workgroupUniformLoad(&rescale[0]) != 0u) {
                o0 = rescaled(owner, o0, ls, lane, sg_size);
                o1 = rescaled(owner, o1, ls, lane, sg_size);
                if (HEAD_DIM > 32u) {
                    o2 = rescaled(owner, o2, ls, lane, sg_size);
                }
                if (HEAD_DIM > 48u) {
                    o3 = rescaled(owner, o3, ls, lane, sg_size);
                }
                if (HEAD_DIM > 64u) {
                    o4 = rescaled(owner, o4, ls, lane, sg_size);
                }
                if (HEAD_DIM > 80u) {
                    o5 = rescaled(owner, o5, ls, lane, sg_size);
                }
                if (HEAD_DIM > 96u) {
                    o6 = rescaled(owner, o6, ls, lane, sg_size);
                }
                if (HEAD_DIM > 112u) {
                    o7 = rescaled(owner, o7, ls, lane, sg_size);
                }
                if (lid == 0u) {
                    atomicStore(&rescale[0], 0u);  // every thread has read it (the load's barrier)
                }
            }
            if (owner) {
                for (var kq = 0u; kq < BK / 16u; kq++) {
                    let a = coopLoadT<coop_mat16x16<f16, A>>(&ps[rl * PP + 4u * kq], PP);
                    let vb = 16u * kq * VP;
                    o0 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&vs[vb], VP), o0);
                    o1 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&vs[vb + 4u], VP), o1);
                    if (HEAD_DIM > 32u) {
                        o2 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&vs[vb + 8u], VP), o2);
                    }
                    if (HEAD_DIM > 48u) {
                        o3 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&vs[vb + 12u], VP), o3);
                    }
                    if (HEAD_DIM > 64u) {
                        o4 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&vs[vb + 16u], VP), o4);
                    }
                    if (HEAD_DIM > 80u) {
                        o5 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&vs[vb + 20u], VP), o5);
                    }
                    if (HEAD_DIM > 96u) {
                        o6 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&vs[vb + 24u], VP), o6);
                    }
                    if (HEAD_DIM > 112u) {
                        o7 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&vs[vb + 28u], VP), o7);
                    }
                }
            }
        }

        // Out through the slot's part of ss, 16 x 16 at a time.
        emit(owner, o0, ls, sl, 0u, n_rows, lane, sg_size);
        emit(owner, o1, ls, sl, 1u, n_rows, lane, sg_size);
        if (HEAD_DIM > 32u) {
            emit(owner, o2, ls, sl, 2u, n_rows, lane, sg_size);
        }
        if (HEAD_DIM > 48u) {
            emit(owner, o3, ls, sl, 3u, n_rows, lane, sg_size);
        }
        if (HEAD_DIM > 64u) {
            emit(owner, o4, ls, sl, 4u, n_rows, lane, sg_size);
        }
        if (HEAD_DIM > 80u) {
            emit(owner, o5, ls, sl, 5u, n_rows, lane, sg_size);
        }
        if (HEAD_DIM > 96u) {
            emit(owner, o6, ls, sl, 6u, n_rows, lane, sg_size);
        }
        if (HEAD_DIM > 112u) {
            emit(owner, o7, ls, sl, 7u, n_rows, lane, sg_size);
        }
    }
}

// The slot's probabilities for the tile at t0 into ps, from its scores in ss; row r of
// the slot (position p_row + r) sees keys t <= p_row + r. Lanes 8r .. 8r + 7 (of e) take
// row r, 4 keys each, and meet by shuffles. A row whose tile max passes its running max
// by more than TAU moves the max there: its sum and (through `rescaled`) its O take the
// factor exp2(old - new).
fn softmax_tile(rl: u32, p_row: u32, t0: u32, lane: u32, sg_size: u32) {
    for (var e = lane; e < 16u * (BK / 4u); e += sg_size) {
        let r = e / (BK / 4u);
        let j = 4u * (e % (BK / 4u));
        let at = (rl + r) * BK + j;
        let s = vec4<f32>(ss[at], ss[at + 1u], ss[at + 2u], ss[at + 3u]);
        let live = vec4<u32>(t0 + j) + vec4<u32>(0u, 1u, 2u, 3u) <= vec4<u32>(p_row + r);
        let v = select(vec4<f32>(NEG), s, live);
        var top = max(max(v.x, v.y), max(v.z, v.w));
        top = max(top, subgroupShuffleXor(top, 1u));
        top = max(top, subgroupShuffleXor(top, 2u));
        top = max(top, subgroupShuffleXor(top, 4u));
        // Every lane of the row reads the old max before its first lane writes the new
        // one (after the shuffles below, which all of them reach first).
        let m_old = row_max[rl + r];
        let moves = top > m_old + TAU;
        let m = select(m_old, top, moves);
        let p = select(vec4<f32>(0.0), exp2(s - m), live);
        ps[(rl + r) * PP + j / 4u] = vec4<f16>(p);
        var l = p.x + p.y + p.z + p.w;
        l += subgroupShuffleXor(l, 1u);
        l += subgroupShuffleXor(l, 2u);
        l += subgroupShuffleXor(l, 4u);
        if (j == 0u) {
            let f = exp2(m_old - m);  // 1 if the max stays; 0 on the first tile
            row_sum[rl + r] = row_sum[rl + r] * f + l;
            row_max[rl + r] = m;
            row_scale[rl + r] = f;
            // A row's first tile (m_old = NEG) has nothing in O to scale.
            if (moves && m_old > NEG) {
                atomicStore(&rescale[0], 1u);
            }
        }
    }
}

// The slow path: O's rows times this tile's factors (row_scale), through the slot's part
// of ss (its scores were consumed). Called in uniform control flow: its barriers are
// workgroup-wide, though each subgroup only touches its own slot.
fn rescaled(owner: bool, o: coop_mat16x16<f32, C>, ls: u32, lane: u32, sg_size: u32) -> coop_mat16x16<f32, C> {
    let at = ls * 16u * BK;
    workgroupBarrier();
    if (owner) {
        coopStoreT(o, &ss[at], 16u);
    }
    workgroupBarrier();
    if (owner) {
        for (var e = lane; e < 256u; e += sg_size) {
            ss[at + e] *= row_scale[ls * 16u + e / 16u];
        }
    }
    workgroupBarrier();
    var scaled = o;
    if (owner) {
        scaled = coopLoadT<coop_mat16x16<f32, C>>(&ss[at], 16u);
    }
    return scaled;
}

// Dims 16 i.. of the slot's 16 rows to out, divided by the rows' sums. The barriers are
// workgroup-wide, so every subgroup takes them, owners or not.
fn emit(
    owner: bool,
    o: coop_mat16x16<f32, C>,
    ls: u32,
    sl: Slot,
    i: u32,
    n_rows: u32,
    lane: u32,
    sg_size: u32,
) {
    workgroupBarrier();
    let at = ls * 16u * BK;
    if (owner) {
        coopStoreT(o, &ss[at], 16u);
    }
    workgroupBarrier();
    if (owner) {
        for (var e = lane; e < 64u; e += sg_size) {
            let r = e / 4u;
            let c = e % 4u;
            if (sl.m + r < n_rows) {
                let b = at + r * 16u + 4u * c;
                let inv = 1.0 / row_sum[ls * 16u + r];
                out4[(sl.m + r) * pp.out_stride4 + sl.head * (HEAD_DIM / 4u) + 4u * i + c] =
                    vec4<f32>(ss[b], ss[b + 1u], ss[b + 2u], ss[b + 3u]) * inv;
            }
        }
    }
}
