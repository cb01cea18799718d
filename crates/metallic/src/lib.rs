//! Metallic: batch-1 LLM inference on wgpu. GGUF weights are re-laid out and uploaded
//! once; every forward step is a prebuilt list of WGSL dispatches; sampling runs on the
//! GPU and tokens come back in asynchronous batches.

pub mod error;
pub mod gpu;
pub mod kernels;
pub mod model;
pub mod reference;
pub mod runtime;
pub mod synthetic;
pub mod tensor;

pub use error::{Error, Result};
pub use metallic_gguf as gguf;
pub use model::ModelConfig;
pub use runtime::{Engine, EngineOptions, Generation, SamplerConfig, StopReason};
