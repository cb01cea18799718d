use thiserror::Error;

pub type Result<T> = std::result::Result<T, Error>;

/// Every failure the engine reports to users. Messages are one line and name the
/// offending key, tensor or limit.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Gguf(#[from] metallic_gguf::GgufError),
    #[error("model: {0}")]
    Model(String),
    #[error("GPU: {0}")]
    Gpu(String),
    #[error("{0}")]
    Invalid(String),
}
