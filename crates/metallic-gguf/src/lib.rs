//! GGUF (v2 and v3) model files: a validating reader over mmap, a writer for test
//! fixtures, dequantization of the simple tensor types, and an `inspect` formatter.
//!
//! The reader validates everything at open time (sizes, offsets, alignment, UTF-8,
//! nesting) so that later accessors can hand out slices without re-checking.

mod accessors;
pub mod dequant;
mod error;
mod file;
mod inspect;
mod parse;
mod types;
mod value;
mod writer;

pub use error::GgufError;
pub use file::{GgufFile, TensorInfo};
pub use inspect::{format_inspect, format_value};
pub use types::GgmlType;
pub use value::Value;
pub use writer::GgufWriter;

pub type Result<T> = std::result::Result<T, GgufError>;

/// The four magic bytes every GGUF file starts with ("GGUF").
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment used when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;
/// Deepest array nesting accepted; real files use at most 1, so this only guards
/// against stack exhaustion from crafted input.
pub const MAX_ARRAY_DEPTH: usize = 16;
