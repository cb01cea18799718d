// Portable GEMM: a 64 x 64 output tile per 256-thread workgroup, K in steps of 16 staged
// as f32 in workgroup memory (8 KiB), 4 x 4 outputs per thread held in registers. No
// subgroup operations, so any subgroup size works; this is the path on lavapipe and on
// adapters without cooperative matrices.

const PM: u32 = 64u;   // batch rows per workgroup
const PN: u32 = 64u;   // outputs per workgroup
const PK: u32 = 16u;   // K per stage
const P_THREADS: u32 = 256u;

@group(0) @binding(5) var<storage, read> weights: array<u32>;  // (n, row_words)

// Staged tiles, K-major so that a thread reads its 4 rows (or outputs) as one vec4:
// xs[kk * 16 + i][c] = x[m0 + 4i + c, k0 + kk], ws[kk * 16 + j][c] = W[n0 + 4j + c, k0 + kk].
var<workgroup> xs: array<vec4<f32>, 256>;  // (PK, PM / 4)
var<workgroup> ws: array<vec4<f32>, 256>;  // (PK, PN / 4)

// Four weights of chunk row n from column k (a multiple of 4, < K). Rows are padded with
// zeros to their word length, so the quad never needs a K guard of its own.
fn w_quad(fmt: u32, n: u32, k: u32) -> vec4<f32> {
    let base = n * p.row_words;
    switch fmt {
        case FMT_F16: {
            let i = base + k / 2u;
            return vec4<f32>(unpack2x16float(weights[i]), unpack2x16float(weights[i + 1u]));
        }
        case FMT_F32: {
            let i = base + k;
            return bitcast<vec4<f32>>(vec4<u32>(
                weights[i], weights[i + 1u], weights[i + 2u], weights[i + 3u]));
        }
        default: {  // FMT_Q8_0
            let h = n * p.blocks_per_row + k / 32u;
            return half_at(scales[h / 2u], h) * unpack_i8x4(weights[base + k / 4u]);
        }
    }
}

fn stage(fmt: u32, o: vec2<u32>, k0: u32, lid: u32, rows: u32) {
    // Thread lid loads 4 consecutive K of tile row (and weight row) lid / 4.
    let r = lid / 4u;
    let kq = 4u * (lid % 4u);
    let xv = x_quad(o.x + r, k0 + kq, rows);
    var wv = vec4<f32>(0.0);
    if (o.y + r < p.n && k0 + kq < p.k) {
        wv = w_quad(fmt, o.y + r, k0 + kq);
    }
    for (var c = 0u; c < 4u; c++) {
        let at = (kq + c) * 16u + r / 4u;
        xs[at][r % 4u] = xv[c];
        ws[at][r % 4u] = wv[c];
    }
}

fn gemm_portable(fmt: u32, wg: vec3<u32>, nwg: vec3<u32>, lid: u32) {
    let rows = state.n_rows;
    let o = tile_origin(wg, nwg, PM, PN);
    if (o.x >= rows) {
        return;  // the whole workgroup: the grid may cover more rows than this batch
    }
    let tx = lid % 16u;  // outputs o.y + 4 tx + j
    let ty = lid / 16u;  // batch rows o.x + 4 ty + i
    var acc: array<vec4<f32>, 4>;  // acc[i][j]
    for (var k0 = 0u; k0 < p.k; k0 += PK) {
        stage(fmt, o, k0, lid, rows);
        workgroupBarrier();
        for (var kk = 0u; kk < PK; kk++) {
            let a = xs[kk * 16u + ty];
            let b = ws[kk * 16u + tx];
            acc[0] += a.x * b;
            acc[1] += a.y * b;
            acc[2] += a.z * b;
            acc[3] += a.w * b;
        }
        workgroupBarrier();
    }
    let n = o.y + 4u * tx;
    for (var i = 0u; i < 4u; i++) {
        let m = o.x + 4u * ty + i;
        if (m >= rows) {
            break;
        }
        if ((p.flags & FLAG_SWIGLU) != 0u) {
            // n is even and p.n is even, so a pair is never split.
            for (var j = 0u; j < 4u; j += 2u) {
                if (n + j < p.n) {
                    store_swiglu(m, n + j, acc[i][j], acc[i][j + 1u]);
                }
            }
        } else {
            for (var j = 0u; j < 4u; j++) {
                if (n + j < p.n) {
                    store_out(m, n + j, acc[i][j]);
                }
            }
        }
    }
}

@compute @workgroup_size(P_THREADS)
fn gemm_f16(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    gemm_portable(FMT_F16, wg, nwg, lid);
}

@compute @workgroup_size(P_THREADS)
fn gemm_f32(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    gemm_portable(FMT_F32, wg, nwg, lid);
}

@compute @workgroup_size(P_THREADS)
fn gemm_q8_0(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    gemm_portable(FMT_Q8_0, wg, nwg, lid);
}
