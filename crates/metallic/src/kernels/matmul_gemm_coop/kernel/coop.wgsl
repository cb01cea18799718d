// Cooperative-matrix GEMM. A workgroup of C_THREADS (128 or 256) threads computes a
// CM x CN tile (batch rows x outputs) with WARPS_M x WARPS_N warp slots, each a 32 x WTN
// block held as 2 x 4 (WTN 64) or 2 x 2 (WTN 32) accumulators of 16 x 16 f32. The tile
// shape is chosen per matrix by the host (override constants): 128 x 128 (256 threads,
// 4 x 2 slots of 32 x 64) for wide matrices with deep K, 64 x 128 (2 x 2 slots of
// 32 x 64), 64 x 64 (2 x 2 slots of 32 x 32) for narrow ones; tiles with fewer slots than
// subgroups leave the others to staging only.
//
// K advances CK (64, or 32) at a time: x (converted to f16) and W (f16; F32 rounded, Q8_0
// dequantized) are staged in workgroup memory as vec4<f16> (one 8-byte store per 4
// halves, and 16-byte aligned rows for the cooperative loads). With PREFETCH_X/W the
// next stage's global loads are issued into registers before the current stage's multiplies.
//
// Any subgroup size: slot s goes to subgroup s % n_sg in sweep s / n_sg. With 32-wide
// subgroups (NVIDIA, AMD wave32, Apple) the threads hold every slot in one sweep.
// Wider subgroups take two sweeps (each re-stages the tiles); narrower ones leave the
// extra subgroups to help with staging only.

override WARPS_M: u32 = 2u;  // 1, 2 or 4
override WARPS_N: u32 = 2u;  // 1 or 2
override WTN: u32 = 64u;     // outputs per warp slot: 64 (2 x 4 accumulators) or 32 (2 x 2)
override C_THREADS: u32 = 128u;  // 128, or 256 for 128-row tiles
// Hold the next stage's global loads of x (PREFETCH_X) or W (PREFETCH_W) in registers
// over the current stage's multiplies. Off by default: on an H100 the extra live registers
// (up to 64 per thread) cost more (1.6-1.8x slower with both) than the exposed latency.
override PREFETCH_X: bool = false;
override PREFETCH_W: bool = false;
override WARPS: u32 = WARPS_M * WARPS_N;
override CM: u32 = 32u * WARPS_M;  // batch rows per workgroup: 32, 64 or 128
override CN: u32 = WTN * WARPS_N;  // outputs per workgroup: 64 or 128
override CK: u32 = 64u;       // K per stage: 64 or 32
override VPR: u32 = CK / 8u;  // staged 8-half vectors per row
override UPR: u32 = CK / 16u; // 16-byte Q8_0 units per row
// vec4<f16> pitch of a staged row: CK halves + 8 of padding. 144 (CK 64) or 80 (CK 32)
// bytes put 8 consecutive rows on distinct banks and keep rows 16-byte aligned.
override LDSV: u32 = CK / 4u + 2u;
// Staged vectors per thread: of x (CM * VPR in a tile), of F16 W (CN * VPR), and Q8_0
// units (CN * UPR). Each is 1, 2, 4 or 8 for the shapes the host allows.
override NXV: u32 = CM * VPR / C_THREADS;
override NWV: u32 = CN * VPR / C_THREADS;
override NQV: u32 = CN * UPR / C_THREADS;
// f16 activations (prefill): x read from x16 as 8 halves per 16-byte load, and the SwiGLU
// output written to y16 as f16. x is rounded to f16 when staged either way, so this only
// moves the rounding into the producer: the stage loads a third fewer bytes (x was two
// thirds of them in f32) and skips the conversion.
override X_F16: bool = false;
override Y_F16: bool = false;
// Split-K: grid z cuts K into SPLIT_K ranges of whole stages; each workgroup writes its raw
// sums to `part` and `gemm_splitk_reduce` adds them and applies the epilogue. For matrices
// with few output tiles and deep K (0.5B and 7B down: 112 workgroups at M = 512, walking
// 76 and 296 stages), so more workgroups share the walk.
override SPLIT_K: u32 = 1u;

@group(0) @binding(5) var<storage, read> weights: array<vec4<u32>>;  // (n, row_words / 4)
@group(0) @binding(7) var<storage, read> x16: array<vec4<u32>>;      // X_F16: (rows, x_stride halves)
@group(0) @binding(8) var<storage, read_write> y16: array<f16>;      // Y_F16: (rows, y_stride)
// SPLIT_K > 1: (SPLIT_K, rows, n) raw sums, one K range each (a stand-in otherwise).
@group(0) @binding(9) var<storage, read_write> part: array<f32>;

var<workgroup> xs: array<vec4<f16>, CM * LDSV>;  // (CM, LDSV): x[m0 + r, k0 + 4 j..]
var<workgroup> ws: array<vec4<f16>, CN * LDSV>;  // (CN, LDSV): W[n0 + r, k0 + 4 j..]
var<workgroup> cs: array<f32, WARPS * 256u>;  // (WARPS, 16, 16): one accumulator per slot on its way out
var<private> split_index: u32;  // this workgroup's K range (grid z)

// One stage's global loads, held in registers between `fetch` and `stash`. Loops over
// these are written out with literal indices: naga's loop guards could keep a driver from
// unrolling them, and a dynamically indexed array would leave registers for memory.
// The staged unit is a vector of 8 halves (two vec4<f16>): the x tile has CM * VPR of
// them, NXV per thread; the W tile CN * VPR, NWV per thread (Q8_0: NQV 16-byte units).
struct Stage {
    x: array<vec4<f32>, 8>,   // vector i: x[2 i], x[2 i + 1]; with X_F16, xh[i]
    xh: array<vec4<u32>, 4>,  // X_F16: vector i as 8 halves
    w: array<vec4<u32>, 8>,   // F16: vector i; Q8_0: 16 bytes (16 weights) each, 2 or 4
    d: array<f32, 4>,         // Q8_0 scales of w[i]
}

// Vector v of the x tile: row v / VPR, floats 8 (v % VPR)...; half h (0, 1) of it.
fn fetch_x(o: vec2<u32>, k0: u32, v: u32, h: u32, rows: u32) -> vec4<f32> {
    return x_quad(o.x + v / VPR, k0 + 8u * (v % VPR) + 4u * h, rows);
}

// X_F16: vector v of the x tile as 8 halves. K and x_stride are multiples of 8 (the host
// checks), so a vector is all inside K or all past it.
fn fetch_x16(o: vec2<u32>, k0: u32, v: u32, rows: u32) -> vec4<u32> {
    let m = o.x + v / VPR;
    let k = k0 + 8u * (v % VPR);
    if (m >= rows || k >= p.k) {
        return vec4<u32>(0u);
    }
    return x16[(m * p.x_stride + k) / 8u];
}

// Weight rows are padded with zeros to a multiple of 4 words, so a vector that starts
// before K needs no further guard.

// F16: vector v is row v / VPR, halves 8 (v % VPR)...
fn fetch_f16(o: vec2<u32>, k0: u32, v: u32) -> vec4<u32> {
    let n = o.y + v / VPR;
    let k = k0 + 8u * (v % VPR);
    if (n >= p.n || k >= p.k) {
        return vec4<u32>(0u);
    }
    return weights[(n * p.row_words + k / 2u) / 4u];
}

// F32: floats 4 h.. of vector v (not prefetched: loaded while staging).
fn fetch_f32(o: vec2<u32>, k0: u32, v: u32, h: u32) -> vec4<u32> {
    let n = o.y + v / VPR;
    let k = k0 + 8u * (v % VPR) + 4u * h;
    if (n >= p.n || k >= p.k) {
        return vec4<u32>(0u);
    }
    return weights[(n * p.row_words + k) / 4u];
}

// Q8_0: K is a multiple of 32; unit u (16 bytes) is row u / UPR, weights 16 (u % UPR)..
// of the stage, in block k0 / 32 + (u % UPR) / 2.
fn fetch_q8_0(o: vec2<u32>, k0: u32, u: u32) -> vec4<u32> {
    let n = o.y + u / UPR;
    if (n >= p.n || k0 + 16u * (u % UPR) >= p.k) {
        return vec4<u32>(0u);
    }
    return weights[(n * p.row_words + k0 / 4u) / 4u + u % UPR];
}

fn scale_q8_0(o: vec2<u32>, k0: u32, u: u32) -> f32 {
    let n = o.y + u / UPR;
    if (n >= p.n || k0 + 16u * (u % UPR) >= p.k) {
        return 0.0;
    }
    let h = n * p.blocks_per_row + k0 / 32u + (u % UPR) / 2u;
    return half_at(scales[h / 2u], h);
}

fn fetch_xs(o: vec2<u32>, k0: u32, lid: u32, rows: u32, st: ptr<function, Stage>) {
    let t = C_THREADS;
    if (X_F16) {
        (*st).xh[0] = fetch_x16(o, k0, lid, rows);
        if (NXV > 1u) {
            (*st).xh[1] = fetch_x16(o, k0, lid + t, rows);
        }
        if (NXV > 2u) {
            (*st).xh[2] = fetch_x16(o, k0, lid + 2u * t, rows);
            (*st).xh[3] = fetch_x16(o, k0, lid + 3u * t, rows);
        }
        return;
    }
    (*st).x[0] = fetch_x(o, k0, lid, 0u, rows);
    (*st).x[1] = fetch_x(o, k0, lid, 1u, rows);
    if (NXV > 1u) {
        (*st).x[2] = fetch_x(o, k0, lid + t, 0u, rows);
        (*st).x[3] = fetch_x(o, k0, lid + t, 1u, rows);
    }
    if (NXV > 2u) {
        (*st).x[4] = fetch_x(o, k0, lid + 2u * t, 0u, rows);
        (*st).x[5] = fetch_x(o, k0, lid + 2u * t, 1u, rows);
        (*st).x[6] = fetch_x(o, k0, lid + 3u * t, 0u, rows);
        (*st).x[7] = fetch_x(o, k0, lid + 3u * t, 1u, rows);
    }
}

fn fetch_ws(fmt: u32, o: vec2<u32>, k0: u32, lid: u32, st: ptr<function, Stage>) {
    let t = C_THREADS;
    switch fmt {
        case FMT_F16: {
            (*st).w[0] = fetch_f16(o, k0, lid);
            if (NWV > 1u) {
                (*st).w[1] = fetch_f16(o, k0, lid + t);
            }
            if (NWV > 2u) {
                (*st).w[2] = fetch_f16(o, k0, lid + 2u * t);
                (*st).w[3] = fetch_f16(o, k0, lid + 3u * t);
            }
            if (NWV > 4u) {
                (*st).w[4] = fetch_f16(o, k0, lid + 4u * t);
                (*st).w[5] = fetch_f16(o, k0, lid + 5u * t);
                (*st).w[6] = fetch_f16(o, k0, lid + 6u * t);
                (*st).w[7] = fetch_f16(o, k0, lid + 7u * t);
            }
        }
        case FMT_F32: {}
        default: {
            (*st).w[0] = fetch_q8_0(o, k0, lid);
            (*st).d[0] = scale_q8_0(o, k0, lid);
            if (NQV > 1u) {
                (*st).w[1] = fetch_q8_0(o, k0, lid + t);
                (*st).d[1] = scale_q8_0(o, k0, lid + t);
            }
            if (NQV > 2u) {
                (*st).w[2] = fetch_q8_0(o, k0, lid + 2u * t);
                (*st).w[3] = fetch_q8_0(o, k0, lid + 3u * t);
                (*st).d[2] = scale_q8_0(o, k0, lid + 2u * t);
                (*st).d[3] = scale_q8_0(o, k0, lid + 3u * t);
            }
        }
    }
}

// Vector v of a tile goes to row v / VPR, vec4s 2 (v % VPR) and 2 (v % VPR) + 1.
fn at_v(v: u32) -> u32 {
    return (v / VPR) * LDSV + 2u * (v % VPR);
}

fn stash_x(v: u32, a: vec4<f32>, b: vec4<f32>) {
    let at = at_v(v);
    xs[at] = vec4<f16>(a);
    xs[at + 1u] = vec4<f16>(b);
}

fn stash_x16(v: u32, h: vec4<u32>) {
    let at = at_v(v);
    xs[at] = halves(h.x, h.y);
    xs[at + 1u] = halves(h.z, h.w);
}

fn halves(a: u32, b: u32) -> vec4<f16> {
    // (naga types a bitcast to f16 vectors wrongly; f16 -> f32 -> f16 is exact)
    return vec4<f16>(vec4<f32>(unpack2x16float(a), unpack2x16float(b)));
}

fn stash_f16(v: u32, w: vec4<u32>) {
    let at = at_v(v);
    ws[at] = halves(w.x, w.y);
    ws[at + 1u] = halves(w.z, w.w);
}

fn stash_f32(o: vec2<u32>, k0: u32, v: u32) {
    let at = at_v(v);
    ws[at] = vec4<f16>(bitcast<vec4<f32>>(fetch_f32(o, k0, v, 0u)));
    ws[at + 1u] = vec4<f16>(bitcast<vec4<f32>>(fetch_f32(o, k0, v, 1u)));
}

// Unit u (16 weights) goes to row u / UPR, vec4s 4 (u % UPR)...
fn stash_q8_0(u: u32, w: vec4<u32>, d: f32) {
    let at = (u / UPR) * LDSV + 4u * (u % UPR);
    ws[at] = vec4<f16>(d * unpack_i8x4(w.x));
    ws[at + 1u] = vec4<f16>(d * unpack_i8x4(w.y));
    ws[at + 2u] = vec4<f16>(d * unpack_i8x4(w.z));
    ws[at + 3u] = vec4<f16>(d * unpack_i8x4(w.w));
}

fn stash(fmt: u32, o: vec2<u32>, k0: u32, lid: u32, st: ptr<function, Stage>) {
    let t = C_THREADS;
    if (X_F16) {
        stash_x16(lid, (*st).xh[0]);
        if (NXV > 1u) {
            stash_x16(lid + t, (*st).xh[1]);
        }
        if (NXV > 2u) {
            stash_x16(lid + 2u * t, (*st).xh[2]);
            stash_x16(lid + 3u * t, (*st).xh[3]);
        }
    } else {
        stash_x(lid, (*st).x[0], (*st).x[1]);
        if (NXV > 1u) {
            stash_x(lid + t, (*st).x[2], (*st).x[3]);
        }
        if (NXV > 2u) {
            stash_x(lid + 2u * t, (*st).x[4], (*st).x[5]);
            stash_x(lid + 3u * t, (*st).x[6], (*st).x[7]);
        }
    }
    switch fmt {
        case FMT_F16: {
            stash_f16(lid, (*st).w[0]);
            if (NWV > 1u) {
                stash_f16(lid + t, (*st).w[1]);
            }
            if (NWV > 2u) {
                stash_f16(lid + 2u * t, (*st).w[2]);
                stash_f16(lid + 3u * t, (*st).w[3]);
            }
            if (NWV > 4u) {
                stash_f16(lid + 4u * t, (*st).w[4]);
                stash_f16(lid + 5u * t, (*st).w[5]);
                stash_f16(lid + 6u * t, (*st).w[6]);
                stash_f16(lid + 7u * t, (*st).w[7]);
            }
        }
        case FMT_F32: {
            for (var i = 0u; i < NWV; i++) {
                stash_f32(o, k0, lid + i * t);
            }
        }
        default: {
            stash_q8_0(lid, (*st).w[0], (*st).d[0]);
            if (NQV > 1u) {
                stash_q8_0(lid + t, (*st).w[1], (*st).d[1]);
            }
            if (NQV > 2u) {
                stash_q8_0(lid + 2u * t, (*st).w[2], (*st).d[2]);
                stash_q8_0(lid + 3u * t, (*st).w[3], (*st).d[3]);
            }
        }
    }
}

// store_swiglu's f16 form (Y_F16).
fn store_swiglu16(m: u32, n: u32, gate: f32, up: f32) {
    y16[m * p.y_stride + (p.col + n) / 2u] = f16(gate / (1.0 + exp(-gate)) * up);
}

// Writes the 16 x 16 block that slot `slot` left in cs to batch rows mb.. and outputs
// nb.., through the shared epilogue; the subgroup's lanes share the elements.
fn drain(owner: bool, slot: u32, mb: u32, nb: u32, rows: u32, lane: u32, sg_size: u32) {
    if (!owner) {
        return;
    }
    let base = slot * 256u;
    if (SPLIT_K > 1u) {
        // Raw sums of this workgroup's K range; the reduce pass applies the epilogue.
        let kz = split_index;
        for (var e = lane; e < 256u; e += sg_size) {
            let r = e / 16u;
            let c = e % 16u;
            if (mb + r < rows && nb + c < p.n) {
                part[(kz * rows + mb + r) * p.n + nb + c] = cs[base + e];
            }
        }
        return;
    }
    if ((p.flags & FLAG_SWIGLU) != 0u) {
        for (var e = lane; e < 128u; e += sg_size) {
            let r = e / 8u;
            let c = 2u * (e % 8u);
            if (mb + r < rows && nb + c < p.n) {
                let at = base + r * 16u + c;
                if (Y_F16) {
                    store_swiglu16(mb + r, nb + c, cs[at], cs[at + 1u]);
                } else {
                    store_swiglu(mb + r, nb + c, cs[at], cs[at + 1u]);
                }
            }
        }
    } else {
        for (var e = lane; e < 256u; e += sg_size) {
            let r = e / 16u;
            let c = e % 16u;
            if (mb + r < rows && nb + c < p.n) {
                store_out(mb + r, nb + c, cs[base + e]);
            }
        }
    }
}

// One accumulator out through the slot's part of cs. The barriers are workgroup-wide
// (cs is workgroup memory), so every subgroup takes them, owners or not.
fn emit(
    owner: bool,
    c: coop_mat16x16<f32, C>,
    slot: u32,
    mb: u32,
    nb: u32,
    rows: u32,
    lane: u32,
    sg_size: u32,
) {
    workgroupBarrier();
    if (owner) {
        coopStoreT(c, &cs[slot * 256u], 16u);
    }
    workgroupBarrier();
    drain(owner, slot, mb, nb, rows, lane, sg_size);
}

fn gemm_coop(
    fmt: u32,
    wg: vec3<u32>,
    nwg: vec3<u32>,
    lid: u32,
    sg_id: u32,
    n_sg: u32,
    lane: u32,
    sg_size: u32,
) {
    let rows = state.n_rows;
    let o = tile_origin(wg, nwg, CM, CN);
    if (o.x >= rows) {
        return;  // the whole workgroup: the grid may cover more rows than this batch
    }
    // K range: SPLIT_K ranges of whole stages (a range past K stays zero and is still
    // written, since the reduce pass adds every range).
    split_index = wg.z;
    let k_len = ((p.k + SPLIT_K - 1u) / SPLIT_K + CK - 1u) / CK * CK;
    let k_begin = wg.z * k_len;
    let k_end = min(p.k, k_begin + k_len);
    let sweeps = (WARPS + n_sg - 1u) / n_sg;
    for (var sweep = 0u; sweep < sweeps; sweep++) {
        let slot = sweep * n_sg + sg_id;
        let owner = slot < WARPS;  // uniform in the subgroup, as cooperative ops require
        let xa = (slot / WARPS_N) * 32u * LDSV;
        let wb = (slot % WARPS_N) * WTN * LDSV;
        // c{i}{j}: batch rows 16 i.., outputs 16 j.. of the slot's 32 x 64 block
        var c00 = coop_mat16x16<f32, C>();
        var c01 = coop_mat16x16<f32, C>();
        var c02 = coop_mat16x16<f32, C>();
        var c03 = coop_mat16x16<f32, C>();
        var c10 = coop_mat16x16<f32, C>();
        var c11 = coop_mat16x16<f32, C>();
        var c12 = coop_mat16x16<f32, C>();
        var c13 = coop_mat16x16<f32, C>();
        var st: Stage;
        if (PREFETCH_X) {
            fetch_xs(o, k_begin, lid, rows, &st);
        }
        if (PREFETCH_W) {
            fetch_ws(fmt, o, k_begin, lid, &st);
        }
        for (var k0 = k_begin; k0 < k_end; k0 += CK) {
            workgroupBarrier();  // the previous stage's multiplies are done with xs, ws
            if (!PREFETCH_X) {
                fetch_xs(o, k0, lid, rows, &st);
            }
            if (!PREFETCH_W) {
                fetch_ws(fmt, o, k0, lid, &st);
            }
            stash(fmt, o, k0, lid, &st);
            workgroupBarrier();
            let next = k0 + CK < k_end;
            if (PREFETCH_X && next) {
                fetch_xs(o, k0 + CK, lid, rows, &st);
            }
            if (PREFETCH_W && next) {
                fetch_ws(fmt, o, k0 + CK, lid, &st);
            }
            if (owner) {
                // A = x rows (row-major, K contiguous); B = W^T: W rows are B's columns,
                // so B loads column-major from the same layout. Strides and offsets count
                // vec4<f16>. The stage's two or four K steps of 16 are written out: as a
                // loop over ks they ran 5-10% slower on the H100 (gemm_bench, every shape).
                {
                    let ko = 0u;
                    let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xs[xa + ko], LDSV);
                    let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xs[xa + 16u * LDSV + ko], LDSV);
                    let b0 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + ko], LDSV);
                    let b1 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 16u * LDSV + ko], LDSV);
                    c00 = coopMultiplyAdd(a0, b0, c00);
                    c01 = coopMultiplyAdd(a0, b1, c01);
                    c10 = coopMultiplyAdd(a1, b0, c10);
                    c11 = coopMultiplyAdd(a1, b1, c11);
                    if (WTN > 32u) {
                        let b2 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 32u * LDSV + ko], LDSV);
                        let b3 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 48u * LDSV + ko], LDSV);
                        c02 = coopMultiplyAdd(a0, b2, c02);
                        c03 = coopMultiplyAdd(a0, b3, c03);
                        c12 = coopMultiplyAdd(a1, b2, c12);
                        c13 = coopMultiplyAdd(a1, b3, c13);
                    }
                }
                {
                    let ko = 4u;
                    let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xs[xa + ko], LDSV);
                    let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xs[xa + 16u * LDSV + ko], LDSV);
                    let b0 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + ko], LDSV);
                    let b1 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 16u * LDSV + ko], LDSV);
                    c00 = coopMultiplyAdd(a0, b0, c00);
                    c01 = coopMultiplyAdd(a0, b1, c01);
                    c10 = coopMultiplyAdd(a1, b0, c10);
                    c11 = coopMultiplyAdd(a1, b1, c11);
                    if (WTN > 32u) {
                        let b2 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 32u * LDSV + ko], LDSV);
                        let b3 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 48u * LDSV + ko], LDSV);
                        c02 = coopMultiplyAdd(a0, b2, c02);
                        c03 = coopMultiplyAdd(a0, b3, c03);
                        c12 = coopMultiplyAdd(a1, b2, c12);
                        c13 = coopMultiplyAdd(a1, b3, c13);
                    }
                }
                if (CK > 32u) {
                    {
                        let ko = 8u;
                        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xs[xa + ko], LDSV);
                        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xs[xa + 16u * LDSV + ko], LDSV);
                        let b0 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + ko], LDSV);
                        let b1 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 16u * LDSV + ko], LDSV);
                        c00 = coopMultiplyAdd(a0, b0, c00);
                        c01 = coopMultiplyAdd(a0, b1, c01);
                        c10 = coopMultiplyAdd(a1, b0, c10);
                        c11 = coopMultiplyAdd(a1, b1, c11);
                        if (WTN > 32u) {
                            let b2 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 32u * LDSV + ko], LDSV);
                            let b3 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 48u * LDSV + ko], LDSV);
                            c02 = coopMultiplyAdd(a0, b2, c02);
                            c03 = coopMultiplyAdd(a0, b3, c03);
                            c12 = coopMultiplyAdd(a1, b2, c12);
                            c13 = coopMultiplyAdd(a1, b3, c13);
                        }
                    }
                    {
                        let ko = 12u;
                        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xs[xa + ko], LDSV);
                        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xs[xa + 16u * LDSV + ko], LDSV);
                        let b0 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + ko], LDSV);
                        let b1 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 16u * LDSV + ko], LDSV);
                        c00 = coopMultiplyAdd(a0, b0, c00);
                        c01 = coopMultiplyAdd(a0, b1, c01);
                        c10 = coopMultiplyAdd(a1, b0, c10);
                        c11 = coopMultiplyAdd(a1, b1, c11);
                        if (WTN > 32u) {
                            let b2 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 32u * LDSV + ko], LDSV);
                            let b3 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 48u * LDSV + ko], LDSV);
                            c02 = coopMultiplyAdd(a0, b2, c02);
                            c03 = coopMultiplyAdd(a0, b3, c03);
                            c12 = coopMultiplyAdd(a1, b2, c12);
                            c13 = coopMultiplyAdd(a1, b3, c13);
                        }
                    }
                }
            }
        }
        // Out through workgroup memory, one accumulator at a time, so the epilogue sees
        // plain (row, output) indices whatever the fragment layout.
        let mb = o.x + (slot / WARPS_N) * 32u;
        let nb = o.y + (slot % WARPS_N) * WTN;
        emit(owner, c00, slot, mb, nb, rows, lane, sg_size);
        emit(owner, c01, slot, mb, nb + 16u, rows, lane, sg_size);
        emit(owner, c10, slot, mb + 16u, nb, rows, lane, sg_size);
        emit(owner, c11, slot, mb + 16u, nb + 16u, rows, lane, sg_size);
        if (WTN > 32u) {
            emit(owner, c02, slot, mb, nb + 32u, rows, lane, sg_size);
            emit(owner, c03, slot, mb, nb + 48u, rows, lane, sg_size);
            emit(owner, c12, slot, mb + 16u, nb + 32u, rows, lane, sg_size);
            emit(owner, c13, slot, mb + 16u, nb + 48u, rows, lane, sg_size);
        }
    }
}

@compute @workgroup_size(C_THREADS)
fn gemm_coop_f16(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    gemm_coop(FMT_F16, wg, nwg, lid, sg_id, n_sg, lane, sg_size);
}

@compute @workgroup_size(C_THREADS)
fn gemm_coop_f32(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    gemm_coop(FMT_F32, wg, nwg, lid, sg_id, n_sg, lane, sg_size);
}

@compute @workgroup_size(C_THREADS)
fn gemm_coop_q8_0(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    gemm_coop(FMT_Q8_0, wg, nwg, lid, sg_id, n_sg, lane, sg_size);
}

// Split-K's second pass: y[m, col + n] = sum of the SPLIT_K ranges' raw sums, with the
// bias / residual epilogue (split-K GEMMs never take the SwiGLU one). Workgroup (x, m):
// outputs 256 x.. of batch row m.
@compute @workgroup_size(256)
fn gemm_splitk_reduce(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let rows = state.n_rows;
    let m = wg.y;
    let n = wg.x * 256u + lid;
    if (m >= rows || n >= p.n) {
        return;
    }
    var s = 0.0;
    for (var kz = 0u; kz < SPLIT_K; kz++) {
        s += part[(kz * rows + m) * p.n + n];
    }
    store_out(m, n, s);
}
