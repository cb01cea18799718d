// GEMV over a row-major weight chunk. A workgroup owns COLS_PER_TG output rows; its
// subgroups are split across those rows and across K, so the mapping is correct for any
// subgroup size: a subgroup never straddles two rows.

override COLS_PER_TG: u32 = 4u;  // METALLIC_GEMV_COLS_PER_TG: 2, 4 or 8
override WG_SIZE: u32 = 128u;

struct GemvParams {
    k: u32,              // inner dimension (input features)
    n: u32,              // output rows in this weight chunk
    row_offset: u32,     // index in a y row of this chunk's first output
    row_words: u32,      // u32 words per weight row (a multiple of 4: rows are 16-byte aligned)
    x_stride: u32,       // floats between batch rows of x (a multiple of 4)
    y_stride: u32,       // floats between batch rows of y
    flags: u32,          // FLAG_BIAS | FLAG_ACCUMULATE
    blocks_per_row: u32, // Q8_0 only: 32-element blocks (and f16 scales) per row
}

const FLAG_BIAS: u32 = 1u;
const FLAG_ACCUMULATE: u32 = 2u;  // y += W x: the residual add, fused
const FLAG_SWIGLU: u32 = 4u;      // rows are (gate, up) pairs: y[row / 2] = silu(gate) * up

@group(0) @binding(0) var<uniform> p: GemvParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;        // (rows, x_stride)
@group(0) @binding(2) var<storage, read_write> y: array<f32>;        // (rows, y_stride)
@group(0) @binding(3) var<storage, read> bias: array<f32>;           // (row_offset + n)
@group(0) @binding(4) var<storage, read> weights: array<vec4<u32>>;  // (n, row_words / 4)

var<workgroup> row_partials: array<f32, 256>;

// How a workgroup's subgroups share its rows: `parts` subgroups per row, each taking
// every parts-th slice of K; with fewer subgroups than rows, a subgroup loops over rows.
struct Tiling {
    parts: u32,
    first_row: u32,
    row_step: u32,
    part: u32,
}

fn tiling(sg_id: u32, n_sg: u32) -> Tiling {
    let parts = max(n_sg / COLS_PER_TG, 1u);
    return Tiling(parts, sg_id / parts, n_sg / parts, sg_id % parts);
}

fn group_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    // Grids wider than 65535 fold into z.
    return wg.x + wg.z * nwg.x;
}

fn store_partial(t: Tiling, r: u32, s: f32, lane: u32) {
    if (lane == 0u) {
        row_partials[r * t.parts + t.part] = s;
    }
}

fn finish_rows(group: u32, batch_row: u32, lid: u32, parts: u32) {
    workgroupBarrier();
    if (lid >= COLS_PER_TG) {
        return;
    }
    let row = group * COLS_PER_TG + lid;
    if (row >= p.n) {
        return;
    }
    var s = 0.0;
    for (var j = 0u; j < parts; j++) {
        s += row_partials[lid * parts + j];
    }
    if ((p.flags & FLAG_SWIGLU) != 0u) {
        // COLS_PER_TG is even and chunks split between pairs, so the up row is ours too.
        if ((lid & 1u) != 0u) {
            return;
        }
        var up = 0.0;
        for (var j = 0u; j < parts; j++) {
            up += row_partials[(lid + 1u) * parts + j];
        }
        y[batch_row * p.y_stride + (p.row_offset + row) / 2u] = s / (1.0 + exp(-s)) * up;
        return;
    }
    let out_row = p.row_offset + row;
    if ((p.flags & FLAG_BIAS) != 0u) {
        s += bias[out_row];
    }
    let yi = batch_row * p.y_stride + out_row;
    if ((p.flags & FLAG_ACCUMULATE) != 0u) {
        s += y[yi];
    }
    y[yi] = s;
}

fn x_scalar(x4: u32, k: u32) -> f32 {
    return x[x4 + k / 4u][k % 4u];
}
