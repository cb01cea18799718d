//! Model definitions: configuration from GGUF metadata, the GGUF tensor-name table, and
//! one file per architecture built from the shared blocks.

pub mod blocks;
pub mod config;
pub mod qwen2;
pub mod tensor_names;

pub use config::ModelConfig;
