// Q8_0 weights, re-laid out at load into an int8 matrix (4 per word) plus an f16 scale
// per 32-element block, because GGUF's 34-byte blocks are not 4-byte aligned.

@group(0) @binding(5) var<storage, read> scales: array<u32>;  // (n * blocks_per_row) halves

// Each subgroup computes all of its rows over its slice of K at once, so every x vector
// it loads serves all those rows. Q8_0 packs 16 weights into the 16 bytes a lane loads,
// against 64 bytes of f32 x: loading x once per row made the 7B Q8_0 GEMVs bound by
// x reads (32% of the DRAM floor, against 71% for F16).
fn partials_q8_0(su: Setup, lane: u32, sg_size: u32) {
    if (all_rows(su.t)) {
        partials_q8_0_all_rows(su, lane, sg_size);
    } else {
        partials_q8_0_rows(su, lane, sg_size);
    }
}

// x[16 i .. 16 i + 16) as the dot products see it.
struct X16 {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
}

// Unit i (16 elements) of the x row, its squares added to *ss under NORM.
fn x16(su: Setup, i: u32, ss: ptr<function, f32>) -> X16 {
    let xi = 4u * i;
    let x0 = x_vec_ss(su.x4, xi, ss);
    let x1 = x_vec_ss(su.x4, xi + 1u, ss);
    let x2 = x_vec_ss(su.x4, xi + 2u, ss);
    let x3 = x_vec_ss(su.x4, xi + 3u, ss);
    return X16(x0, x1, x2, x3);
}

// One row's 16 weights at a unit, as loaded: 16 int8 and their block's scale.
struct Q8W {
    w: vec4<u32>,
    d: f32,
}

// Workgroup row r's weights at unit i.
fn q8_load(su: Setup, r: u32, words: u32, i: u32) -> Q8W {
    // Rows past the chunk read its last row; finish_rows drops them.
    let wr = weight_row(min(su.group * COLS_PER_TG + r, p.n - 1u));
    let h = wr * p.blocks_per_row + i / 2u;
    return Q8W(weights[wr * words + i], half_at(scales[h / 2u], h));
}

fn q8_dot(q: Q8W, x: X16) -> f32 {
    return q.d * (dot(unpack_i8x4(q.w.x), x.v0) + dot(unpack_i8x4(q.w.y), x.v1)
                + dot(unpack_i8x4(q.w.z), x.v2) + dot(unpack_i8x4(q.w.w), x.v3));
}

// Any tiling (the one taken when not all_rows): rows looped over per subgroup, their
// sums in an array.
fn partials_q8_0_rows(su: Setup, lane: u32, sg_size: u32) {
    let t = su.t;
    let n16 = p.k / 16u;  // K is a multiple of 32 for Q8_0
    let words = p.row_words / 4u;
    var acc: array<f32, 16>;  // COLS_PER_TG <= 16
    var ss = 0.0;  // each x vector is read once per subgroup, whatever its rows
    for (var i = t.part * sg_size + lane; i < n16; i += t.parts * sg_size) {
        let xv = x16(su, i, &ss);
        for (var r = t.first_row; r < COLS_PER_TG; r += t.row_step) {
            acc[r] += q8_dot(q8_load(su, r, words, i), xv);
        }
    }
    for (var r = t.first_row; r < COLS_PER_TG; r += t.row_step) {
        store_partial(t, r, subgroupAdd(acc[r]), lane);
    }
    store_sum_squares(t, ss, lane);
}

// Unit i of every row of the workgroup (COLS_PER_TG of the 16), in named fields: an
// array indexed by row could live in local memory (see partials_q8_0_all_rows).
struct Q8Unit {
    r0: Q8W,
    r1: Q8W,
    r2: Q8W,
    r3: Q8W,
    r4: Q8W,
    r5: Q8W,
    r6: Q8W,
    r7: Q8W,
    r8: Q8W,
    r9: Q8W,
    r10: Q8W,
    r11: Q8W,
    r12: Q8W,
    r13: Q8W,
    r14: Q8W,
    r15: Q8W,
}

// All the rows' weights of unit i, loaded together before any is used: issued row by row
// between dot products, the loads waited on each other (the H100 measured 7B Q8_0
// decode 10% faster, 0.5B 17%, with this order).
fn q8_load_unit(su: Setup, words: u32, i: u32) -> Q8Unit {
    var u: Q8Unit;
    u.r0 = q8_load(su, 0u, words, i);
    u.r1 = q8_load(su, 1u, words, i);
    if (COLS_PER_TG > 2u) {
        u.r2 = q8_load(su, 2u, words, i);
        u.r3 = q8_load(su, 3u, words, i);
    }
    if (COLS_PER_TG > 4u) {
        u.r4 = q8_load(su, 4u, words, i);
        u.r5 = q8_load(su, 5u, words, i);
        u.r6 = q8_load(su, 6u, words, i);
        u.r7 = q8_load(su, 7u, words, i);
    }
    if (COLS_PER_TG > 8u) {
        u.r8 = q8_load(su, 8u, words, i);
        u.r9 = q8_load(su, 9u, words, i);
        u.r10 = q8_load(su, 10u, words, i);
        u.r11 = q8_load(su, 11u, words, i);
        u.r12 = q8_load(su, 12u, words, i);
        u.r13 = q8_load(su, 13u, words, i);
        u.r14 = q8_load(su, 14u, words, i);
        u.r15 = q8_load(su, 15u, words, i);
    }
    return u;
}

// s plus every row's dot product of unit u with x.
fn add_unit(s: RowSums, u: Q8Unit, x: X16) -> RowSums {
    var o = s;
    o.v0.x += q8_dot(u.r0, x);
    o.v0.y += q8_dot(u.r1, x);
    if (COLS_PER_TG > 2u) {
        o.v0.z += q8_dot(u.r2, x);
        o.v0.w += q8_dot(u.r3, x);
    }
    if (COLS_PER_TG > 4u) {
        o.v1.x += q8_dot(u.r4, x);
        o.v1.y += q8_dot(u.r5, x);
        o.v1.z += q8_dot(u.r6, x);
        o.v1.w += q8_dot(u.r7, x);
    }
    if (COLS_PER_TG > 8u) {
        o.v2.x += q8_dot(u.r8, x);
        o.v2.y += q8_dot(u.r9, x);
        o.v2.z += q8_dot(u.r10, x);
        o.v2.w += q8_dot(u.r11, x);
        o.v3.x += q8_dot(u.r12, x);
        o.v3.y += q8_dot(u.r13, x);
        o.v3.z += q8_dot(u.r14, x);
        o.v3.w += q8_dot(u.r15, x);
    }
    return o;
}

// The all-rows case with its sums in four vec4s, rows 0-3 to 12-15, whose lanes are only
// ever indexed by constants: an f32 array indexed by the row loop lives in local memory
// on the H100 (as the prefill attention accumulators did). With ALL_ROWS_UNROLL = 2 a lane
// loads two units before using either.
fn partials_q8_0_all_rows(su: Setup, lane: u32, sg_size: u32) {
    let t = su.t;
    let n16 = p.k / 16u;
    let words = p.row_words / 4u;
    let step = t.parts * sg_size;
    var s = RowSums();
    var ss = 0.0;
    var i = t.part * sg_size + lane;
    if (ALL_ROWS_UNROLL > 1u) {
        for (; i + step < n16; i += 2u * step) {
            let u0 = q8_load_unit(su, words, i);
            let u1 = q8_load_unit(su, words, i + step);
            s = add_unit(s, u0, x16(su, i, &ss));
            s = add_unit(s, u1, x16(su, i + step, &ss));
        }
    }
    for (; i < n16; i += step) {
        s = add_unit(s, q8_load_unit(su, words, i), x16(su, i, &ss));
    }
    store_row_sums(t, s, lane);
    store_sum_squares(t, ss, lane);
}

@compute @workgroup_size(WG_SIZE)
fn gemv_q8_0(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    var su = setup(wg, nwg, lid, sg_id, n_sg, lane);
    su.t = shared_x_tiling(su.t, sg_id, n_sg);
    partials_q8_0(su, lane, sg_size);
    finish_rows(su, lid);
}

@compute @workgroup_size(WG_SIZE)
fn gemv_qkv_rope_q8_0(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    var su = setup(wg, nwg, lid, sg_id, n_sg, lane);
    su.t = shared_x_tiling(su.t, sg_id, n_sg);
    partials_q8_0(su, lane, sg_size);
    finish_rope(su, lid);
}

// ---------------------------------------------------------------------------------------
// int8 activations (METALLIC_GEMV_Q8_DOT=i8). The workgroup quantizes x (times the norm
// weight, with NORM) per 32-element block into workgroup memory, d = max|x| / 127 and
// q = round(x / d), as llama.cpp does for its integer Q8_0 kernels; then each 16 weights
// cost one 16-byte weight load, one 16-byte x load from workgroup memory and four 4-wide
// integer dot products, against four 16-byte x loads and 16 conversions and FMAs in f32.
// x is staged X_TILE elements at a time, so any K fits a fixed amount of workgroup memory.

const X_TILE: u32 = 4096u;
var<workgroup> xq_sh: array<vec4<u32>, X_TILE / 16u>;  // 16 int8 per entry
var<workgroup> xd_sh: array<f32, X_TILE / 32u>;        // one scale per 32-element block

fn quantize4(v: vec4<f32>, inv: f32) -> u32 {
    return pack4xI8Clamp(vec4<i32>(round(v * inv)));
}

// Quantizes x[t0 .. t0 + n) (n a multiple of 32), one block per thread.
fn stage_x_i8(x4: u32, t0: u32, n: u32, lid: u32) {
    for (var b = lid; b < n / 32u; b += WG_SIZE) {
        let c = (t0 + 32u * b) / 4u;
        let v0 = x_vec(x4, c);
        let v1 = x_vec(x4, c + 1u);
        let v2 = x_vec(x4, c + 2u);
        let v3 = x_vec(x4, c + 3u);
        let v4 = x_vec(x4, c + 4u);
        let v5 = x_vec(x4, c + 5u);
        let v6 = x_vec(x4, c + 6u);
        let v7 = x_vec(x4, c + 7u);
        let m = max(max(max(abs(v0), abs(v1)), max(abs(v2), abs(v3))),
                    max(max(abs(v4), abs(v5)), max(abs(v6), abs(v7))));
        let d = max(max(m.x, m.y), max(m.z, m.w)) / 127.0;
        let inv = select(0.0, 1.0 / d, d > 0.0);
        xd_sh[b] = d;
        xq_sh[2u * b] = vec4<u32>(quantize4(v0, inv), quantize4(v1, inv), quantize4(v2, inv), quantize4(v3, inv));
        xq_sh[2u * b + 1u] = vec4<u32>(quantize4(v4, inv), quantize4(v5, inv), quantize4(v6, inv), quantize4(v7, inv));
    }
}

// Workgroup row r's 16 weights at 16-element index i against int8 x (xq, scale xd).
fn q8_dot16_i8(su: Setup, r: u32, words: u32, i: u32, xq: vec4<u32>, xd: f32) -> f32 {
    // Rows past the chunk read its last row; finish_rows drops them.
    let wr = weight_row(min(su.group * COLS_PER_TG + r, p.n - 1u));
    let w = weights[wr * words + i];
    let h = wr * p.blocks_per_row + i / 2u;
    let d = half_at(scales[h / 2u], h);
    let s = (dot4I8Packed(w.x, xq.x) + dot4I8Packed(w.y, xq.y))
          + (dot4I8Packed(w.z, xq.z) + dot4I8Packed(w.w, xq.w));
    return (d * xd) * f32(s);
}

fn partials_q8_0_i8(su: Setup, lid: u32, lane: u32, sg_size: u32) {
    let t = su.t;
    let words = p.row_words / 4u;
    let fast = all_rows(t);
    var acc: array<f32, 16>;  // COLS_PER_TG <= 16; only when not all_rows
    // all_rows: rows 4 j .. 4 j + 3 in s{j}, as in partials_q8_0_all_rows
    var s0 = vec4<f32>(0.0);
    var s1 = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0);
    var s3 = vec4<f32>(0.0);
    for (var t0 = 0u; t0 < p.k; t0 += X_TILE) {
        let n = min(X_TILE, p.k - t0);
        workgroupBarrier();  // the previous tile's reads are done
        stage_x_i8(su.x4, t0, n, lid);
        workgroupBarrier();
        let i0 = t0 / 16u;
        for (var j = t.part * sg_size + lane; j < n / 16u; j += t.parts * sg_size) {
            let xq = xq_sh[j];
            let xd = xd_sh[j / 2u];
            let i = i0 + j;
            if (fast) {
                s0.x += q8_dot16_i8(su, 0u, words, i, xq, xd);
                s0.y += q8_dot16_i8(su, 1u, words, i, xq, xd);
                if (COLS_PER_TG > 2u) {
                    s0.z += q8_dot16_i8(su, 2u, words, i, xq, xd);
                    s0.w += q8_dot16_i8(su, 3u, words, i, xq, xd);
                }
                if (COLS_PER_TG > 4u) {
                    s1.x += q8_dot16_i8(su, 4u, words, i, xq, xd);
                    s1.y += q8_dot16_i8(su, 5u, words, i, xq, xd);
                    s1.z += q8_dot16_i8(su, 6u, words, i, xq, xd);
                    s1.w += q8_dot16_i8(su, 7u, words, i, xq, xd);
                }
                if (COLS_PER_TG > 8u) {
                    s2.x += q8_dot16_i8(su, 8u, words, i, xq, xd);
                    s2.y += q8_dot16_i8(su, 9u, words, i, xq, xd);
                    s2.z += q8_dot16_i8(su, 10u, words, i, xq, xd);
                    s2.w += q8_dot16_i8(su, 11u, words, i, xq, xd);
                    s3.x += q8_dot16_i8(su, 12u, words, i, xq, xd);
                    s3.y += q8_dot16_i8(su, 13u, words, i, xq, xd);
                    s3.z += q8_dot16_i8(su, 14u, words, i, xq, xd);
                    s3.w += q8_dot16_i8(su, 15u, words, i, xq, xd);
                }
            } else {
                for (var r = t.first_row; r < COLS_PER_TG; r += t.row_step) {
                    acc[r] += q8_dot16_i8(su, r, words, i, xq, xd);
                }
            }
        }
    }
    if (fast) {
        store_row_sums(t, RowSums(s0, s1, s2, s3), lane);
        return;
    }
    for (var r = t.first_row; r < COLS_PER_TG; r += t.row_step) {
        store_partial(t, r, subgroupAdd(acc[r]), lane);
    }
}

@compute @workgroup_size(WG_SIZE)
fn gemv_q8_0_i8(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    var su = setup(wg, nwg, lid, sg_id, n_sg, lane);
    su.t = shared_x_tiling(su.t, sg_id, n_sg);
    if (NORM) {
        su.scale = inverse_rms(su.x4, lid, sg_id, n_sg, lane);
    }
    partials_q8_0_i8(su, lid, lane, sg_size);
    finish_rows(su, lid);
}

@compute @workgroup_size(WG_SIZE)
fn gemv_qkv_rope_q8_0_i8(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    var su = setup(wg, nwg, lid, sg_id, n_sg, lane);
    su.t = shared_x_tiling(su.t, sg_id, n_sg);
    if (NORM) {
        su.scale = inverse_rms(su.x4, lid, sg_id, n_sg, lane);
    }
    partials_q8_0_i8(su, lid, lane, sg_size);
    finish_rope(su, lid);
}
