// act = silu(gate) * up, element-wise over the batch's rows.

struct SwigluParams {
    n: u32,        // elements per row
    in_stride: u32,
    out_stride: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: SwigluParams;
@group(0) @binding(1) var<storage, read> state: StepState;
@group(0) @binding(2) var<storage, read> gate: array<f32>;       // (rows, in_stride)
@group(0) @binding(3) var<storage, read> up: array<f32>;         // (rows, in_stride)
@group(0) @binding(4) var<storage, read_write> act: array<f32>;  // (rows, out_stride)

@compute @workgroup_size(256)
fn swiglu(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x / p.n;
    let i = gid.x % p.n;
    if (row >= state.n_rows) {
        return;
    }
    let g = gate[row * p.in_stride + i];
    act[row * p.out_stride + i] = g / (1.0 + exp(-g)) * up[row * p.in_stride + i];
}
