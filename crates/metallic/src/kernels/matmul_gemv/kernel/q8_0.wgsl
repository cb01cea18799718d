// Q8_0 weights, re-laid out at load into an int8 matrix (4 per word) plus an f16 scale
// per 32-element block, because GGUF's 34-byte blocks are not 4-byte aligned.

@group(0) @binding(5) var<storage, read> scales: array<u32>;  // (n * blocks_per_row) halves

fn dot_row_q8_0(row: u32, x4: u32, first: u32, step: u32) -> f32 {
    let base = row * (p.row_words / 4u);
    let n16 = p.k / 16u;  // K is a multiple of 32 for Q8_0
    var acc = 0.0;
    for (var i = first; i < n16; i += step) {
        let w = weights[base + i];
        let h = row * p.blocks_per_row + i / 2u;
        let d = half_at(scales[h / 2u], h);
        let xi = 4u * i;
        let s = dot(unpack_i8x4(w.x), x_vec(x4, xi)) + dot(unpack_i8x4(w.y), x_vec(x4, xi + 1u))
              + dot(unpack_i8x4(w.z), x_vec(x4, xi + 2u)) + dot(unpack_i8x4(w.w), x_vec(x4, xi + 3u));
        acc += d * s;
    }
    return acc;
}

fn partials_q8_0(su: Setup, lane: u32, sg_size: u32) {
    let t = su.t;
    for (var r = t.first_row; r < COLS_PER_TG; r += t.row_step) {
        let row = su.group * COLS_PER_TG + r;
        var acc = 0.0;
        if (row < p.n) {
            acc = dot_row_q8_0(weight_row(row), su.x4, t.part * sg_size + lane, t.parts * sg_size);
        }
        store_partial(t, r, subgroupAdd(acc), lane);
    }
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
    let su = setup(wg, nwg, lid, sg_id, n_sg, lane);
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
    let su = setup(wg, nwg, lid, sg_id, n_sg, lane);
    partials_q8_0(su, lane, sg_size);
    finish_rope(su, lid);
}
