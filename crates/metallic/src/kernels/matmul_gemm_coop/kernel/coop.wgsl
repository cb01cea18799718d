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

// One stage's global loads, held in registers between `fetch` and `stash`.
struct Stage {
    x: array<vec4<f32>, 4>,   // 64 rows x 32 floats = 512 vec4 over 128 threads
    w: array<vec4<u32>, 8>,   // F16: 4 (8 halves each); F32: 8 (4 floats); Q8_0: 2 (16 bytes)
    d: array<f32, 2>,         // Q8_0 scales of w[0], w[1]
}

fn fetch(fmt: u32, o: vec2<u32>, k0: u32, lid: u32, rows: u32, st: ptr<function, Stage>) {
    for (var i = 0u; i < 4u; i++) {
        let idx = lid + i * C_THREADS;
        (*st).x[i] = x_quad(o.x + idx / 8u, k0 + 4u * (idx % 8u), rows);
    }
    // Weight rows are padded with zeros to a multiple of 4 words, so a vector that starts
    // before K needs no further guard.
    switch fmt {
        case FMT_F16: {
            for (var i = 0u; i < 4u; i++) {
                let idx = lid + i * C_THREADS;
                let n = o.y + idx / 4u;
                let k = k0 + 8u * (idx % 4u);
                var v = vec4<u32>(0u);
                if (n < p.n && k < p.k) {
                    v = weights[(n * p.row_words + k / 2u) / 4u];
                }
                (*st).w[i] = v;
            }
        }
        case FMT_F32: {
            for (var i = 0u; i < 8u; i++) {
                let idx = lid + i * C_THREADS;
                let n = o.y + idx / 8u;
                let k = k0 + 4u * (idx % 8u);
                var v = vec4<u32>(0u);
                if (n < p.n && k < p.k) {
                    v = weights[(n * p.row_words + k) / 4u];
                }
                (*st).w[i] = v;
            }
        }
        default: {  // FMT_Q8_0: K is a multiple of 32, so a stage is one block per row
            for (var i = 0u; i < 2u; i++) {
                let idx = lid + i * C_THREADS;
                let n = o.y + idx / 2u;
                let k = k0 + 16u * (idx % 2u);
                var v = vec4<u32>(0u);
                var d = 0.0;
                if (n < p.n) {
                    v = weights[(n * p.row_words + k / 4u) / 4u];
                    let h = n * p.blocks_per_row + k0 / 32u;
                    d = half_at(scales[h / 2u], h);
                }
                (*st).w[i] = v;
                (*st).d[i] = d;
            }
        }
    }
}

fn stash(fmt: u32, lid: u32, st: ptr<function, Stage>) {
    for (var i = 0u; i < 4u; i++) {
        let idx = lid + i * C_THREADS;
        let at = (idx / 8u) * LDS + 4u * (idx % 8u);
        let v = vec4<f16>((*st).x[i]);
        xs[at] = v.x;
        xs[at + 1u] = v.y;
        xs[at + 2u] = v.z;
        xs[at + 3u] = v.w;
    }
    switch fmt {
        case FMT_F16: {
            for (var i = 0u; i < 4u; i++) {
                let idx = lid + i * C_THREADS;
                let at = (idx / 4u) * LDS + 8u * (idx % 4u);
                for (var j = 0u; j < 4u; j++) {
                    let h = vec2<f16>(unpack2x16float((*st).w[i][j]));  // exact
                    ws[at + 2u * j] = h.x;
                    ws[at + 2u * j + 1u] = h.y;
                }
            }
        }
        case FMT_F32: {
            for (var i = 0u; i < 8u; i++) {
                let idx = lid + i * C_THREADS;
                let at = (idx / 8u) * LDS + 4u * (idx % 8u);
                let v = vec4<f16>(bitcast<vec4<f32>>((*st).w[i]));
                ws[at] = v.x;
                ws[at + 1u] = v.y;
                ws[at + 2u] = v.z;
                ws[at + 3u] = v.w;
            }
        }
        default: {
            for (var i = 0u; i < 2u; i++) {
                let idx = lid + i * C_THREADS;
                let at = (idx / 2u) * LDS + 16u * (idx % 2u);
                for (var j = 0u; j < 4u; j++) {
                    let v = vec4<f16>((*st).d[i] * unpack_i8x4((*st).w[i][j]));
                    ws[at + 4u * j] = v.x;
                    ws[at + 4u * j + 1u] = v.y;
                    ws[at + 4u * j + 2u] = v.z;
                    ws[at + 4u * j + 3u] = v.w;
                }
            }
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
                for (var kk = 0u; kk < CK; kk += 16u) {
                    // A = x rows (row-major, K contiguous); B = W^T: W rows are B's
                    // columns, so B loads column-major from the same layout.
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
