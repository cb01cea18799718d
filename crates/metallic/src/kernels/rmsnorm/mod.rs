//! RMSNorm, one workgroup per row.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{storage_buffer, uniform_buffer, Dispatch, Gpu, Grid};
use crate::tensor::Activation;

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct NormParams {
    pub n: u32,
    pub x_stride: u32,
    pub y_stride: u32,
    pub eps: f32,
    pub last_row_only: u32,
    pub _pad: [u32; 3],
}

/// y = rmsnorm(x) * weight. With `last_row_only`, only the batch's last row is
/// normalised, into the same row of `y`, on a one-workgroup grid (the LM head needs just
/// that row). `y` may be f16 (`Activation::half`) when its row length is even.
pub fn rmsnorm(
    gpu: &Gpu,
    state: &wgpu::Buffer,
    x: &Activation,
    weight: &wgpu::Buffer,
    y: &Activation,
    eps: f32,
    last_row_only: bool,
) -> Result<Dispatch> {
    if y.half && !x.cols.is_multiple_of(2) {
        return Err(Error::Invalid(format!(
            "an f16 RMSNorm output needs an even row length, got {}",
            x.cols
        )));
    }
    let pipeline = gpu.pipeline("rmsnorm", "rmsnorm", &[("Y_F16", y.half as u32 as f64)])?;
    // The binding of the other element type gets a stand-in (built once, with the plan).
    let dummy = storage_buffer(gpu, "rmsnorm.dummy", 16);
    let (y32, y16) = if y.half {
        (&dummy, &y.buf)
    } else {
        (&y.buf, &dummy)
    };
    let params = NormParams {
        n: x.cols,
        x_stride: x.stride,
        y_stride: y.stride,
        eps,
        last_row_only: last_row_only as u32,
        _pad: [0; 3],
    };
    let ubuf = uniform_buffer(gpu, "rmsnorm.params", &params);
    let bind_group = gpu.bind_group(
        "rmsnorm",
        &pipeline,
        &[
            (0, ubuf.as_entire_binding()),
            (1, state.as_entire_binding()),
            (2, x.buf.as_entire_binding()),
            (3, weight.as_entire_binding()),
            (4, y32.as_entire_binding()),
            (5, y16.as_entire_binding()),
        ],
    );
    let grid = if last_row_only {
        Grid::Fixed([1, 1, 1])
    } else {
        Grid::PerRow(1)
    };
    Ok(Dispatch {
        label: if last_row_only {
            "rmsnorm_last_row"
        } else {
            "rmsnorm"
        }
        .into(),
        pipeline,
        bind_group,
        grid,
    })
}
