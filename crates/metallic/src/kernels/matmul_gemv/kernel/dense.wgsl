// F16 and F32 weights. F16 rows are read 8 halves (16 bytes) per lane per step.

// METALLIC_GEMV_UNROLL: 16-byte weight loads a lane issues before it waits on them. At
// small K (0.5B's 896) a subgroup makes only a few steps per row, so latency, not
// bandwidth, bounds it unless several loads are in flight.
override UNROLL: u32 = 1u;

fn dot8_f16(w: vec4<u32>, x4: u32, i: u32, ss: ptr<function, f32>) -> f32 {
    let lo = vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
    let hi = vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w));
    return dot(lo, x_vec_ss(x4, 2u * i, ss)) + dot(hi, x_vec_ss(x4, 2u * i + 1u, ss));
}

// Row `row`'s dot product over this lane's share of K; with NORM, the squares of the x
// it read are added to *ss.
fn dot_row_f16(row: u32, x4: u32, first: u32, step: u32, ss: ptr<function, f32>) -> f32 {
    let base = row * (p.row_words / 4u);
    let n8 = p.k / 8u;
    var acc = 0.0;
    var i = first;
    if (UNROLL >= 4u) {
        for (; i + 3u * step < n8; i += 4u * step) {
            let w0 = weights[base + i];
            let w1 = weights[base + i + step];
            let w2 = weights[base + i + 2u * step];
            let w3 = weights[base + i + 3u * step];
            acc += (dot8_f16(w0, x4, i, ss) + dot8_f16(w1, x4, i + step, ss))
                + (dot8_f16(w2, x4, i + 2u * step, ss) + dot8_f16(w3, x4, i + 3u * step, ss));
        }
    }
    if (UNROLL >= 2u) {
        for (; i + step < n8; i += 2u * step) {
            let w0 = weights[base + i];
            let w1 = weights[base + i + step];
            acc += dot8_f16(w0, x4, i, ss) + dot8_f16(w1, x4, i + step, ss);
        }
    }
    for (; i < n8; i += step) {
        acc += dot8_f16(weights[base + i], x4, i, ss);
    }
    // K not divisible by 8: the tail, one half at a time.
    for (var k = n8 * 8u + first; k < p.k; k += step) {
        let word = weights[base + k / 8u][(k % 8u) / 2u];
        acc += unpack2x16float(word)[k % 2u] * x_scalar_ss(x4, k, ss);
    }
    return acc;
}

fn dot_row_f32(row: u32, x4: u32, first: u32, step: u32, ss: ptr<function, f32>) -> f32 {
    let base = row * (p.row_words / 4u);
    let n4 = p.k / 4u;
    var acc = 0.0;
    for (var i = first; i < n4; i += step) {
        acc += dot(bitcast<vec4<f32>>(weights[base + i]), x_vec_ss(x4, i, ss));
    }
    for (var k = n4 * 4u + first; k < p.k; k += step) {
        acc += bitcast<f32>(weights[base + k / 4u][k % 4u]) * x_scalar_ss(x4, k, ss);
    }
    return acc;
}

// Each subgroup's share of the workgroup's rows, into row_partials; F16 weights when
// `f16`, else F32 (a constant at every call, so each entry point keeps one loop).
fn partials_dense(su: Setup, lane: u32, sg_size: u32, f16: bool) {
    let t = su.t;
    let first = t.part * sg_size + lane;
    let step = t.parts * sg_size;
    var ss = 0.0;  // the first row's: its subgroups read x once between them
    for (var r = t.first_row; r < COLS_PER_TG; r += t.row_step) {
        let row = su.group * COLS_PER_TG + r;
        var acc = 0.0;
        var row_ss = 0.0;
        if (row < p.n) {
            if (f16) {
                acc = dot_row_f16(weight_row(row), su.x4, first, step, &row_ss);
            } else {
                acc = dot_row_f32(weight_row(row), su.x4, first, step, &row_ss);
            }
        }
        if (r == t.first_row) {
            ss = row_ss;
        }
        store_partial(t, r, subgroupAdd(acc), lane);
    }
    store_sum_squares(t, ss, lane);
}

// DENSE_ALL_ROWS: unit i (8 halves, 16 bytes) of every row of the workgroup (COLS_PER_TG
// of the 16), in named fields so no row-indexed array lands in local memory.
struct F16Unit {
    r0: vec4<u32>,
    r1: vec4<u32>,
    r2: vec4<u32>,
    r3: vec4<u32>,
    r4: vec4<u32>,
    r5: vec4<u32>,
    r6: vec4<u32>,
    r7: vec4<u32>,
    r8: vec4<u32>,
    r9: vec4<u32>,
    r10: vec4<u32>,
    r11: vec4<u32>,
    r12: vec4<u32>,
    r13: vec4<u32>,
    r14: vec4<u32>,
    r15: vec4<u32>,
}

fn f16_load(su: Setup, r: u32, words: u32, i: u32) -> vec4<u32> {
    // Rows past the chunk read its last row; finish_rows drops them.
    return weights[weight_row(min(su.group * COLS_PER_TG + r, p.n - 1u)) * words + i];
}

// Every row's unit i, loaded before any is used (the order that made Q8_0 decode 10-17%
// faster on the H100).
fn f16_load_unit(su: Setup, words: u32, i: u32) -> F16Unit {
    var u: F16Unit;
    u.r0 = f16_load(su, 0u, words, i);
    u.r1 = f16_load(su, 1u, words, i);
    if (COLS_PER_TG > 2u) {
        u.r2 = f16_load(su, 2u, words, i);
        u.r3 = f16_load(su, 3u, words, i);
    }
    if (COLS_PER_TG > 4u) {
        u.r4 = f16_load(su, 4u, words, i);
        u.r5 = f16_load(su, 5u, words, i);
        u.r6 = f16_load(su, 6u, words, i);
        u.r7 = f16_load(su, 7u, words, i);
    }
    if (COLS_PER_TG > 8u) {
        u.r8 = f16_load(su, 8u, words, i);
        u.r9 = f16_load(su, 9u, words, i);
        u.r10 = f16_load(su, 10u, words, i);
        u.r11 = f16_load(su, 11u, words, i);
        u.r12 = f16_load(su, 12u, words, i);
        u.r13 = f16_load(su, 13u, words, i);
        u.r14 = f16_load(su, 14u, words, i);
        u.r15 = f16_load(su, 15u, words, i);
    }
    return u;
}

fn dot8_halves(w: vec4<u32>, lo: vec4<f32>, hi: vec4<f32>) -> f32 {
    return dot(vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)), lo)
         + dot(vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w)), hi);
}

fn add_f16_unit(s: RowSums, u: F16Unit, lo: vec4<f32>, hi: vec4<f32>) -> RowSums {
    var o = s;
    o.v0.x += dot8_halves(u.r0, lo, hi);
    o.v0.y += dot8_halves(u.r1, lo, hi);
    if (COLS_PER_TG > 2u) {
        o.v0.z += dot8_halves(u.r2, lo, hi);
        o.v0.w += dot8_halves(u.r3, lo, hi);
    }
    if (COLS_PER_TG > 4u) {
        o.v1.x += dot8_halves(u.r4, lo, hi);
        o.v1.y += dot8_halves(u.r5, lo, hi);
        o.v1.z += dot8_halves(u.r6, lo, hi);
        o.v1.w += dot8_halves(u.r7, lo, hi);
    }
    if (COLS_PER_TG > 8u) {
        o.v2.x += dot8_halves(u.r8, lo, hi);
        o.v2.y += dot8_halves(u.r9, lo, hi);
        o.v2.z += dot8_halves(u.r10, lo, hi);
        o.v2.w += dot8_halves(u.r11, lo, hi);
        o.v3.x += dot8_halves(u.r12, lo, hi);
        o.v3.y += dot8_halves(u.r13, lo, hi);
        o.v3.z += dot8_halves(u.r14, lo, hi);
        o.v3.w += dot8_halves(u.r15, lo, hi);
    }
    return o;
}

// F16 in the all-rows tiling (K a multiple of 8, which the host checks): every x vector
// a lane loads serves all the rows, so x costs a quarter of the loads per weight byte
// at 4 rows, and the rows' weight loads go out together.
fn partials_f16_all_rows(su: Setup, lane: u32, sg_size: u32) {
    let t = su.t;
    let n8 = p.k / 8u;
    let words = p.row_words / 4u;
    var s = RowSums();
    var ss = 0.0;
    let step = t.parts * sg_size;
    var i = t.part * sg_size + lane;
    if (ALL_ROWS_UNROLL > 1u) {
        for (; i + step < n8; i += 2u * step) {
            let j = i + step;
            let u0 = f16_load_unit(su, words, i);
            let u1 = f16_load_unit(su, words, j);
            s = add_f16_unit(s, u0, x_vec_ss(su.x4, 2u * i, &ss), x_vec_ss(su.x4, 2u * i + 1u, &ss));
            s = add_f16_unit(s, u1, x_vec_ss(su.x4, 2u * j, &ss), x_vec_ss(su.x4, 2u * j + 1u, &ss));
        }
    }
    for (; i < n8; i += step) {
        let u = f16_load_unit(su, words, i);
        let lo = x_vec_ss(su.x4, 2u * i, &ss);
        let hi = x_vec_ss(su.x4, 2u * i + 1u, &ss);
        s = add_f16_unit(s, u, lo, hi);
    }
    store_row_sums(t, s, lane);
    store_sum_squares(t, ss, lane);
}

// F16 partials in the tiling the pipeline was built for.
fn partials_f16(su: Setup, lane: u32, sg_size: u32) {
    if (DENSE_ALL_ROWS && all_rows(su.t)) {
        partials_f16_all_rows(su, lane, sg_size);
    } else {
        partials_dense(su, lane, sg_size, true);
    }
}

// The F16 entry points' tiling: all rows per subgroup with DENSE_ALL_ROWS.
fn f16_setup(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, sg_id: u32, n_sg: u32, lane: u32) -> Setup {
    var su = setup(wg, nwg, lid, sg_id, n_sg, lane);
    if (DENSE_ALL_ROWS) {
        su.t = shared_x_tiling(su.t, sg_id, n_sg);
    }
    return su;
}

@compute @workgroup_size(WG_SIZE)
fn gemv_f16(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    let su = f16_setup(wg, nwg, lid, sg_id, n_sg, lane);
    partials_f16(su, lane, sg_size);
    finish_rows(su, lid);
}

@compute @workgroup_size(WG_SIZE)
fn gemv_f32(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    let su = setup(wg, nwg, lid, sg_id, n_sg, lane);
    partials_dense(su, lane, sg_size, false);
    finish_rows(su, lid);
}

@compute @workgroup_size(WG_SIZE)
fn gemv_qkv_rope_f16(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    let su = f16_setup(wg, nwg, lid, sg_id, n_sg, lane);
    partials_f16(su, lane, sg_size);
    finish_rope(su, lid);
}

@compute @workgroup_size(WG_SIZE)
fn gemv_qkv_rope_f32(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    let su = setup(wg, nwg, lid, sg_id, n_sg, lane);
    partials_dense(su, lane, sg_size, false);
    finish_rope(su, lid);
}
