// Tiled GEMM for prefill: y[m, col + n] = sum_k x[m, k] * W[n, k] over one weight chunk,
// for the batch rows m < state.n_rows, with the GEMV's epilogues. Shared by the portable
// kernel and the cooperative-matrix one (`matmul_gemm_coop`), so both apply bias,
// residual add and SwiGLU identically.

struct GemmParams {
    k: u32,              // inner dimension (input features)
    n: u32,              // output rows in this weight chunk
    col: u32,            // index in a y row of this chunk's first output (also indexes bias)
    row_words: u32,      // u32 words per weight row (a multiple of 4: rows are 16-byte aligned)
    x_stride: u32,       // floats between batch rows of x (a multiple of 8)
    y_stride: u32,       // floats between batch rows of y
    flags: u32,          // FLAG_BIAS | FLAG_ACCUMULATE, or FLAG_SWIGLU
    blocks_per_row: u32, // Q8_0 only: 32-element blocks (and f16 scales) per row
}

const FLAG_BIAS: u32 = 1u;
const FLAG_ACCUMULATE: u32 = 2u;  // y += W x: the residual add, fused
const FLAG_SWIGLU: u32 = 4u;      // rows are (gate, up) pairs: y[(col + n) / 2] = silu(gate) * up

const FMT_F16: u32 = 0u;
const FMT_F32: u32 = 1u;
const FMT_Q8_0: u32 = 2u;

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> state: StepState;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;   // (rows, x_stride)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;   // (rows, y_stride)
@group(0) @binding(4) var<storage, read> bias: array<f32>;      // (col + n)
// binding 5: the weight chunk, (n, row_words) words, typed by each kernel
@group(0) @binding(6) var<storage, read> scales: array<u32>;    // Q8_0: (n * blocks_per_row) halves

// The (first batch row, first output) of this workgroup's tile. The grid is (output tiles,
// row tiles), as `Grid::RowTiles` launches it; consecutive workgroups are relabelled to
// walk the row tiles first, so the workgroups running together share a weight tile (read
// once from memory) while x, much smaller, stays in cache.
fn tile_origin(wg: vec3<u32>, nwg: vec3<u32>, tile_m: u32, tile_n: u32) -> vec2<u32> {
    let id = wg.x + wg.y * nwg.x;
    return vec2<u32>((id % nwg.y) * tile_m, (id / nwg.y) * tile_n);
}

// Four floats of x row m from column k (a multiple of 4); zero past K (the row padding
// may hold anything) and for rows past the batch.
fn x_quad(m: u32, k: u32, rows: u32) -> vec4<f32> {
    if (m >= rows || k >= p.k) {
        return vec4<f32>(0.0);
    }
    let v = x[(m * p.x_stride + k) / 4u];
    return select(vec4<f32>(0.0), v, vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.k));
}

// Output n (< p.n) of batch row m, with bias and the residual add.
fn store_out(m: u32, n: u32, v: f32) {
    let c = p.col + n;
    var s = v;
    if ((p.flags & FLAG_BIAS) != 0u) {
        s += bias[c];
    }
    let yi = m * p.y_stride + c;
    if ((p.flags & FLAG_ACCUMULATE) != 0u) {
        s += y[yi];
    }
    y[yi] = s;
}

// The SwiGLU pair (gate n, up n + 1), n even: chunks and tiles start on even rows.
fn store_swiglu(m: u32, n: u32, gate: f32, up: f32) {
    y[m * p.y_stride + (p.col + n) / 2u] = gate / (1.0 + exp(-gate)) * up;
}
