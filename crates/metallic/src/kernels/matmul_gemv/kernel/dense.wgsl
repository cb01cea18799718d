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
    let su = setup(wg, nwg, lid, sg_id, n_sg, lane);
    partials_dense(su, lane, sg_size, true);
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
    let su = setup(wg, nwg, lid, sg_id, n_sg, lane);
    partials_dense(su, lane, sg_size, true);
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
