// Cooperative-matrix GEMM. A workgroup computes a 64 x 128 tile (batch rows x outputs):
// WARPS_M x WARPS_N warp slots, each a 32 x 64 block held as 2 x 4 accumulators of
// 16 x 16 f32. K advances 32 at a time: x (converted to f16) and W (f16; F32 rounded,
// Q8_0 dequantized) are staged in workgroup memory, and the next stage's global loads are
// issued into registers before the current stage's multiplies, to hide their latency.
//
// Any subgroup size: slot s goes to subgroup s % n_sg in sweep s / n_sg. With 32-wide
// subgroups (NVIDIA, AMD wave32, Apple) the 128 threads are exactly the 4 slots, one sweep.
// Wider subgroups take two sweeps (each re-stages the tiles); narrower ones leave the
// extra subgroups to help with staging only.

const WM: u32 = 32u;        // batch rows per warp slot
const WN: u32 = 64u;        // outputs per warp slot
const WARPS_M: u32 = 2u;
const WARPS_N: u32 = 2u;
const WARPS: u32 = 4u;      // WARPS_M * WARPS_N
const CM: u32 = 64u;        // WM * WARPS_M: batch rows per workgroup
const CN: u32 = 128u;       // WN * WARPS_N: outputs per workgroup
const CK: u32 = 32u;        // K per stage
const LDS: u32 = 40u;       // f16 pitch of a staged row: 80 bytes keeps rows 16-byte
                            // aligned and puts 8 consecutive rows on distinct banks
const C_THREADS: u32 = 128u;

@group(0) @binding(5) var<storage, read> weights: array<vec4<u32>>;  // (n, row_words / 4)

var<workgroup> xs: array<f16, 2560>;  // (CM, LDS): xs[r * LDS + kk] = x[m0 + r, k0 + kk]
var<workgroup> ws: array<f16, 5120>;  // (CN, LDS): ws[r * LDS + kk] = W[n0 + r, k0 + kk]
var<workgroup> cs: array<f32, 2048>;  // (WARPS, 16, 32): two accumulators per slot on their way out

// One stage's global loads, held in registers between `fetch` and `stash`. Loops over
// these are written out with literal indices: naga's loop guards could keep a driver from
// unrolling them, and a dynamically indexed array would leave registers for memory.
struct Stage {
    x: array<vec4<f32>, 4>,   // 64 rows x 32 floats = 512 vec4 over 128 threads
    w: array<vec4<u32>, 8>,   // F16: 4 (8 halves each); F32: 8 (4 floats); Q8_0: 2 (16 bytes)
    d: array<f32, 2>,         // Q8_0 scales of w[0], w[1]
}

// Vector `idx` (0..512) of the stage's x tile: row idx / 8, floats 4 (idx % 8)...
fn fetch_x(o: vec2<u32>, k0: u32, idx: u32, rows: u32) -> vec4<f32> {
    return x_quad(o.x + idx / 8u, k0 + 4u * (idx % 8u), rows);
}

// Weight rows are padded with zeros to a multiple of 4 words, so a vector that starts
// before K needs no further guard.

// F16: vector idx (0..512) is row idx / 4, halves 8 (idx % 4)...
fn fetch_f16(o: vec2<u32>, k0: u32, idx: u32) -> vec4<u32> {
    let n = o.y + idx / 4u;
    let k = k0 + 8u * (idx % 4u);
    if (n >= p.n || k >= p.k) {
        return vec4<u32>(0u);
    }
    return weights[(n * p.row_words + k / 2u) / 4u];
}

// F32: vector idx (0..1024) is row idx / 8, floats 4 (idx % 8)...
fn fetch_f32(o: vec2<u32>, k0: u32, idx: u32) -> vec4<u32> {
    let n = o.y + idx / 8u;
    let k = k0 + 4u * (idx % 8u);
    if (n >= p.n || k >= p.k) {
        return vec4<u32>(0u);
    }
    return weights[(n * p.row_words + k) / 4u];
}

// Q8_0: K is a multiple of 32, so a stage is one block per row; vector idx (0..256) is
// row idx / 2, bytes 16 (idx % 2)...
fn fetch_q8_0(o: vec2<u32>, k0: u32, idx: u32) -> vec4<u32> {
    let n = o.y + idx / 2u;
    if (n >= p.n) {
        return vec4<u32>(0u);
    }
    return weights[(n * p.row_words + k0 / 4u) / 4u + idx % 2u];
}

fn scale_q8_0(o: vec2<u32>, k0: u32, idx: u32) -> f32 {
    let n = o.y + idx / 2u;
    if (n >= p.n) {
        return 0.0;
    }
    let h = n * p.blocks_per_row + k0 / 32u;
    return half_at(scales[h / 2u], h);
}

fn fetch(fmt: u32, o: vec2<u32>, k0: u32, lid: u32, rows: u32, st: ptr<function, Stage>) {
    let t = C_THREADS;
    (*st).x[0] = fetch_x(o, k0, lid, rows);
    (*st).x[1] = fetch_x(o, k0, lid + t, rows);
    (*st).x[2] = fetch_x(o, k0, lid + 2u * t, rows);
    (*st).x[3] = fetch_x(o, k0, lid + 3u * t, rows);
    switch fmt {
        case FMT_F16: {
            (*st).w[0] = fetch_f16(o, k0, lid);
            (*st).w[1] = fetch_f16(o, k0, lid + t);
            (*st).w[2] = fetch_f16(o, k0, lid + 2u * t);
            (*st).w[3] = fetch_f16(o, k0, lid + 3u * t);
        }
        case FMT_F32: {
            (*st).w[0] = fetch_f32(o, k0, lid);
            (*st).w[1] = fetch_f32(o, k0, lid + t);
            (*st).w[2] = fetch_f32(o, k0, lid + 2u * t);
            (*st).w[3] = fetch_f32(o, k0, lid + 3u * t);
            (*st).w[4] = fetch_f32(o, k0, lid + 4u * t);
            (*st).w[5] = fetch_f32(o, k0, lid + 5u * t);
            (*st).w[6] = fetch_f32(o, k0, lid + 6u * t);
            (*st).w[7] = fetch_f32(o, k0, lid + 7u * t);
        }
        default: {
            (*st).w[0] = fetch_q8_0(o, k0, lid);
            (*st).w[1] = fetch_q8_0(o, k0, lid + t);
            (*st).d[0] = scale_q8_0(o, k0, lid);
            (*st).d[1] = scale_q8_0(o, k0, lid + t);
        }
    }
}

fn put_x4(at: u32, v: vec4<f16>) {
    xs[at] = v.x;
    xs[at + 1u] = v.y;
    xs[at + 2u] = v.z;
    xs[at + 3u] = v.w;
}

fn put_w4(at: u32, v: vec4<f16>) {
    ws[at] = v.x;
    ws[at + 1u] = v.y;
    ws[at + 2u] = v.z;
    ws[at + 3u] = v.w;
}

fn stash_x(idx: u32, v: vec4<f32>) {
    put_x4((idx / 8u) * LDS + 4u * (idx % 8u), vec4<f16>(v));
}

fn stash_f16(idx: u32, w: vec4<u32>) {
    let at = (idx / 4u) * LDS + 8u * (idx % 4u);
    // f16 -> f32 -> f16 is exact.
    put_w4(at, vec4<f16>(vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y))));
    put_w4(at + 4u, vec4<f16>(vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w))));
}

fn stash_f32(idx: u32, w: vec4<u32>) {
    put_w4((idx / 8u) * LDS + 4u * (idx % 8u), vec4<f16>(bitcast<vec4<f32>>(w)));
}

fn stash_q8_0(idx: u32, w: vec4<u32>, d: f32) {
    let at = (idx / 2u) * LDS + 16u * (idx % 2u);
    put_w4(at, vec4<f16>(d * unpack_i8x4(w.x)));
    put_w4(at + 4u, vec4<f16>(d * unpack_i8x4(w.y)));
    put_w4(at + 8u, vec4<f16>(d * unpack_i8x4(w.z)));
    put_w4(at + 12u, vec4<f16>(d * unpack_i8x4(w.w)));
}

fn stash(fmt: u32, lid: u32, st: ptr<function, Stage>) {
    let t = C_THREADS;
    stash_x(lid, (*st).x[0]);
    stash_x(lid + t, (*st).x[1]);
    stash_x(lid + 2u * t, (*st).x[2]);
    stash_x(lid + 3u * t, (*st).x[3]);
    switch fmt {
        case FMT_F16: {
            stash_f16(lid, (*st).w[0]);
            stash_f16(lid + t, (*st).w[1]);
            stash_f16(lid + 2u * t, (*st).w[2]);
            stash_f16(lid + 3u * t, (*st).w[3]);
        }
        case FMT_F32: {
            stash_f32(lid, (*st).w[0]);
            stash_f32(lid + t, (*st).w[1]);
            stash_f32(lid + 2u * t, (*st).w[2]);
            stash_f32(lid + 3u * t, (*st).w[3]);
            stash_f32(lid + 4u * t, (*st).w[4]);
            stash_f32(lid + 5u * t, (*st).w[5]);
            stash_f32(lid + 6u * t, (*st).w[6]);
            stash_f32(lid + 7u * t, (*st).w[7]);
        }
        default: {
            stash_q8_0(lid, (*st).w[0], (*st).d[0]);
            stash_q8_0(lid + t, (*st).w[1], (*st).d[1]);
        }
    }
}

// Writes the 16 x 32 block that slot `slot` left in cs to batch rows mb.. and outputs
// nb.., through the shared epilogue; the subgroup's lanes share the elements.
fn drain(owner: bool, slot: u32, mb: u32, nb: u32, rows: u32, lane: u32, sg_size: u32) {
    if (!owner) {
        return;
    }
    let base = slot * 512u;
    if ((p.flags & FLAG_SWIGLU) != 0u) {
        for (var e = lane; e < 256u; e += sg_size) {
            let r = e / 16u;
            let c = 2u * (e % 16u);
            if (mb + r < rows && nb + c < p.n) {
                let at = base + r * 32u + c;
                store_swiglu(mb + r, nb + c, cs[at], cs[at + 1u]);
            }
        }
    } else {
        for (var e = lane; e < 512u; e += sg_size) {
            let r = e / 32u;
            let c = e % 32u;
            if (mb + r < rows && nb + c < p.n) {
                store_out(mb + r, nb + c, cs[base + e]);
            }
        }
    }
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
    let sweeps = (WARPS + n_sg - 1u) / n_sg;
    for (var sweep = 0u; sweep < sweeps; sweep++) {
        let slot = sweep * n_sg + sg_id;
        let owner = slot < WARPS;  // uniform in the subgroup, as cooperative ops require
        let xa = (slot / WARPS_N) * WM * LDS;
        let wb = (slot % WARPS_N) * WN * LDS;
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
        fetch(fmt, o, 0u, lid, rows, &st);
        for (var k0 = 0u; k0 < p.k; k0 += CK) {
            workgroupBarrier();  // the previous stage's multiplies are done with xs, ws
            stash(fmt, lid, &st);
            workgroupBarrier();
            if (k0 + CK < p.k) {
                fetch(fmt, o, k0 + CK, lid, rows, &st);
            }
            if (owner) {
                // A = x rows (row-major, K contiguous); B = W^T: W rows are B's columns,
                // so B loads column-major from the same layout. The stage's two K steps
                // of 16 are written out (see Stage).
                {
                    let kk = 0u;
                    let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xs[xa + kk], LDS);
                    let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xs[xa + 16u * LDS + kk], LDS);
                    let b0 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + kk], LDS);
                    let b1 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 16u * LDS + kk], LDS);
                    let b2 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 32u * LDS + kk], LDS);
                    let b3 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 48u * LDS + kk], LDS);
                    c00 = coopMultiplyAdd(a0, b0, c00);
                    c01 = coopMultiplyAdd(a0, b1, c01);
                    c02 = coopMultiplyAdd(a0, b2, c02);
                    c03 = coopMultiplyAdd(a0, b3, c03);
                    c10 = coopMultiplyAdd(a1, b0, c10);
                    c11 = coopMultiplyAdd(a1, b1, c11);
                    c12 = coopMultiplyAdd(a1, b2, c12);
                    c13 = coopMultiplyAdd(a1, b3, c13);
                }
                {
                    let kk = 16u;
                    let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xs[xa + kk], LDS);
                    let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xs[xa + 16u * LDS + kk], LDS);
                    let b0 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + kk], LDS);
                    let b1 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 16u * LDS + kk], LDS);
                    let b2 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 32u * LDS + kk], LDS);
                    let b3 = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 48u * LDS + kk], LDS);
                    c00 = coopMultiplyAdd(a0, b0, c00);
                    c01 = coopMultiplyAdd(a0, b1, c01);
                    c02 = coopMultiplyAdd(a0, b2, c02);
                    c03 = coopMultiplyAdd(a0, b3, c03);
                    c10 = coopMultiplyAdd(a1, b0, c10);
                    c11 = coopMultiplyAdd(a1, b1, c11);
                    c12 = coopMultiplyAdd(a1, b2, c12);
                    c13 = coopMultiplyAdd(a1, b3, c13);
                }
            }
        }
        // Out through workgroup memory, two accumulators (16 x 32) at a time, so the
        // epilogue sees plain (row, output) indices whatever the fragment layout. The
        // barriers are workgroup-wide (cs is workgroup memory), so every subgroup takes
        // them, owners or not.
        let mb = o.x + (slot / WARPS_N) * WM;
        let nb = o.y + (slot % WARPS_N) * WN;
        let at = slot * 512u;
        if (owner) {
            coopStoreT(c00, &cs[at], 32u);
            coopStoreT(c01, &cs[at + 16u], 32u);
        }
        workgroupBarrier();
        drain(owner, slot, mb, nb, rows, lane, sg_size);
        workgroupBarrier();
        if (owner) {
            coopStoreT(c02, &cs[at], 32u);
            coopStoreT(c03, &cs[at + 16u], 32u);
        }
        workgroupBarrier();
        drain(owner, slot, mb, nb + 32u, rows, lane, sg_size);
        workgroupBarrier();
        if (owner) {
            coopStoreT(c10, &cs[at], 32u);
            coopStoreT(c11, &cs[at + 16u], 32u);
        }
        workgroupBarrier();
        drain(owner, slot, mb + 16u, nb, rows, lane, sg_size);
        workgroupBarrier();
        if (owner) {
            coopStoreT(c12, &cs[at], 32u);
            coopStoreT(c13, &cs[at + 16u], 32u);
        }
        workgroupBarrier();
        drain(owner, slot, mb + 16u, nb + 32u, rows, lane, sg_size);
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
