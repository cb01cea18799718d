// y = x / sqrt(mean(x^2) + eps) * weight, one workgroup per row.

// Write y as f16 pairs into y16 instead of f32 into y: the prefill input of the
// cooperative-matrix GEMMs, which stage x as f16 anyway, so the GEMM loads half the bytes.
override Y_F16: bool = false;

struct NormParams {
    n: u32,              // row length
    x_stride: u32,
    y_stride: u32,
    eps: f32,
    last_row_only: u32,  // 1: normalise only the batch's last row (before the LM head)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: NormParams;
@group(0) @binding(1) var<storage, read> state: StepState;
@group(0) @binding(2) var<storage, read> x: array<f32>;           // (rows, x_stride)
@group(0) @binding(3) var<storage, read> weight: array<f32>;      // (n)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;     // (rows, y_stride)
@group(0) @binding(5) var<storage, read_write> y16: array<u32>;   // Y_F16: (rows, y_stride halves), 2 per word

@compute @workgroup_size(256)
fn rmsnorm(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    var x_row = wg.y;
    var y_row = wg.y;
    if (p.last_row_only != 0u) {
        x_row = state.n_rows - 1u;
        y_row = x_row;
    }
    let xb = x_row * p.x_stride;
    var ss = 0.0;
    for (var i = lid; i < p.n; i += 256u) {
        let v = x[xb + i];
        ss += v * v;
    }
    let total = workgroup_sum(ss, sg_id, n_sg, lane);
    let inv = inverseSqrt(total / f32(p.n) + p.eps);
    let yb = y_row * p.y_stride;
    if (Y_F16) {
        // n and y_stride are even (the host checks), so pairs never straddle rows.
        for (var j = lid; j < p.n / 2u; j += 256u) {
            let i = 2u * j;
            let v = vec2<f32>(x[xb + i] * weight[i], x[xb + i + 1u] * weight[i + 1u]) * inv;
            y16[yb / 2u + j] = pack2x16float(v);
        }
        return;
    }
    for (var i = lid; i < p.n; i += 256u) {
        y[yb + i] = x[xb + i] * inv * weight[i];
    }
}
