//! The thin layer over wgpu: device setup, buffers, the pipeline cache and dispatch plans.

mod buffer;
mod context;
mod plan;
pub mod profile;
mod upload;

pub use buffer::{read_buffer, storage_buffer, uniform_buffer, RowSplit};
pub use context::{known_compute_units, Gpu, GpuOptions};
pub use plan::{Dispatch, Grid, Plan};
pub use upload::FillRow;
