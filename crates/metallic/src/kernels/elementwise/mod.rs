//! Element-wise kernels: SwiGLU.

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::{uniform_buffer, Dispatch, Gpu, Grid};
use crate::tensor::Activation;

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct SwigluParams {
    pub n: u32,
    pub in_stride: u32,
    pub out_stride: u32,
    pub _pad: u32,
}

/// act = silu(gate) * up.
pub fn swiglu(gpu: &Gpu, gate: &Activation, up: &Activation, act: &Activation) -> Result<Dispatch> {
    let pipeline = gpu.pipeline("elementwise", "swiglu", &[])?;
    let params = SwigluParams {
        n: gate.cols,
        in_stride: gate.stride,
        out_stride: act.stride,
        _pad: 0,
    };
    debug_assert_eq!(gate.stride, up.stride);
    let ubuf = uniform_buffer(gpu, "swiglu.params", &params);
    let bind_group = gpu.bind_group(
        "swiglu",
        &pipeline,
        &[
            (0, ubuf.as_entire_binding()),
            (2, gate.buf.as_entire_binding()),
            (3, up.buf.as_entire_binding()),
            (4, act.buf.as_entire_binding()),
        ],
    );
    Ok(Dispatch {
        label: "swiglu".into(),
        pipeline,
        bind_group,
        grid: Grid::PerRow(gate.cols.div_ceil(256)),
    })
}
