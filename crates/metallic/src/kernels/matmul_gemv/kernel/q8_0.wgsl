// Q8_0 weights, re-laid out at load into an int8 matrix (4 per word) plus an f16 scale
// per 32-element block, because GGUF's 34-byte blocks are not 4-byte aligned.

@group(0) @binding(5) var<storage, read> scales: array<u32>;  // (n * blocks_per_row) halves

// Each subgroup computes all of its rows over its slice of K at once, so every x vector
// it loads serves all those rows. Q8_0 packs 16 weights into the 16 bytes a lane loads,
// against 64 bytes of f32 x: loading x once per row made the 7B Q8_0 GEMVs bound by
// x reads (32% of the DRAM floor, against 71% for F16).
fn partials_q8_0(su: Setup, lane: u32, sg_size: u32) {
    let t = su.t;
    let n16 = p.k / 16u;  // K is a multiple of 32 for Q8_0
    let words = p.row_words / 4u;
    var acc: array<f32, 8>;  // COLS_PER_TG <= 8
    for (var i = t.part * sg_size + lane; i < n16; i += t.parts * sg_size) {
        let xi = 4u * i;
        let x0 = x_vec(su.x4, xi);
        let x1 = x_vec(su.x4, xi + 1u);
        let x2 = x_vec(su.x4, xi + 2u);
        let x3 = x_vec(su.x4, xi + 3u);
        for (var r = t.first_row; r < COLS_PER_TG; r += t.row_step) {
            // Rows past the chunk read its last row; finish_rows drops them.
            let wr = weight_row(min(su.group * COLS_PER_TG + r, p.n - 1u));
            let w = weights[wr * words + i];
            let h = wr * p.blocks_per_row + i / 2u;
            let d = half_at(scales[h / 2u], h);
            let s = dot(unpack_i8x4(w.x), x0) + dot(unpack_i8x4(w.y), x1)
                  + dot(unpack_i8x4(w.z), x2) + dot(unpack_i8x4(w.w), x3);
            acc[r] += d * s;
        }
    }
    for (var r = t.first_row; r < COLS_PER_TG; r += t.row_step) {
        store_partial(t, r, subgroupAdd(acc[r]), lane);
    }
}

// All rows in every subgroup, each subgroup a slice of K, when the partials fit.
fn shared_x_tiling(t: Tiling, sg_id: u32, n_sg: u32) -> Tiling {
    if (n_sg * COLS_PER_TG > 256u) {
        return t;
    }
    return Tiling(n_sg, 0u, 1u, sg_id);
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
