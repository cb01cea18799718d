use std::path::PathBuf;

use crate::GgmlType;

/// Everything that can go wrong reading a GGUF file or looking things up in it.
///
/// Messages are one line and name the key, tensor or file offset involved, because
/// they usually end up printed verbatim by the CLI.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A parse error from [`GgufFile::open`](crate::GgufFile::open), tagged with the path.
    #[error("{}: {source}", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<GgufError>,
    },

    #[error("not a GGUF file: bad magic {found:02x?} (expected \"GGUF\")")]
    BadMagic { found: [u8; 4] },

    #[error("unsupported GGUF version {version}{hint}")]
    UnsupportedVersion { version: u32, hint: &'static str },

    #[error("file truncated: {what} at offset {offset} needs {needed} bytes but only {remaining} remain")]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        remaining: u64,
    },

    #[error("{what} at offset {offset}: count {count} × at least {min_size} bytes each exceeds the {remaining} bytes remaining")]
    CountPastEnd {
        what: String,
        offset: u64,
        count: u64,
        min_size: u64,
        remaining: u64,
    },

    #[error("invalid UTF-8 in {what} at offset {offset}")]
    InvalidUtf8 { what: String, offset: u64 },

    #[error("metadata key '{key}': unknown value type id {type_id}")]
    UnknownValueType { key: String, type_id: u32 },

    #[error("metadata key '{key}': invalid bool byte {value} (must be 0 or 1)")]
    InvalidBool { key: String, value: u8 },

    #[error("metadata key '{key}': arrays nested deeper than {limit} levels")]
    NestingTooDeep { key: String, limit: usize },

    #[error("duplicate metadata key '{key}'")]
    DuplicateKey { key: String },

    #[error("duplicate tensor name '{name}'")]
    DuplicateTensor { name: String },

    #[error("tensor '{name}': unknown ggml type id {type_id}")]
    UnknownTensorType { name: String, type_id: u32 },

    #[error("tensor '{name}': {n_dims} dimensions exceeds the maximum of {max}")]
    TooManyDims {
        name: String,
        n_dims: u32,
        max: usize,
    },

    #[error("tensor '{name}': invalid shape {dims:?}: {reason}")]
    InvalidShape {
        name: String,
        dims: Vec<u64>,
        reason: String,
    },

    #[error("tensor '{name}': offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        name: String,
        offset: u64,
        alignment: u64,
    },

    #[error("tensor '{name}': data at file bytes {start}..{end} lies outside the file (size {file_size})")]
    TensorOutOfBounds {
        name: String,
        start: u64,
        end: u64,
        file_size: u64,
    },

    #[error("invalid general.alignment {value}: must be a non-zero power of two")]
    InvalidAlignment { value: u64 },

    #[error("missing metadata key '{key}'")]
    MissingKey { key: String },

    #[error("missing tensor '{name}'")]
    MissingTensor { name: String },

    #[error("metadata key '{key}': expected {expected}, found {found}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },

    #[error("metadata key '{key}': value {value} does not fit in {target}")]
    OutOfRange {
        key: String,
        value: String,
        target: &'static str,
    },

    #[error("{op}: unsupported tensor type {ty}")]
    UnsupportedType { ty: GgmlType, op: &'static str },

    #[error("{ty} data: {reason}")]
    BadData { ty: GgmlType, reason: String },
}

impl GgufError {
    /// The underlying error with any [`GgufError::InFile`] wrapping removed, for
    /// callers that want to match on the kind of failure.
    pub fn root(&self) -> &GgufError {
        match self {
            GgufError::InFile { source, .. } => source.root(),
            other => other,
        }
    }
}
