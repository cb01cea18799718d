// act = silu(gate) * up, element-wise. Grid: (ceil(n / 256), rows), folded into z when
// a row needs more than 65535 workgroups.

struct SwigluParams {
    n: u32,        // elements per row
    in_stride: u32,
    out_stride: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: SwigluParams;
@group(0) @binding(2) var<storage, read> gate: array<f32>;       // (rows, in_stride)
@group(0) @binding(3) var<storage, read> up: array<f32>;         // (rows, in_stride)
@group(0) @binding(4) var<storage, read_write> act: array<f32>;  // (rows, out_stride)

@compute @workgroup_size(256)
fn swiglu(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wg.x + wg.z * nwg.x) * 256u + lid;
    if (i >= p.n) {
        return;
    }
    let row = wg.y;
    let g = gate[row * p.in_stride + i];
    act[row * p.out_stride + i] = g / (1.0 + exp(-g)) * up[row * p.in_stride + i];
}
