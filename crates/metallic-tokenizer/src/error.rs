use thiserror::Error;

/// Everything that can go wrong while building a tokenizer, encoding text or
/// rendering a chat template.
#[derive(Debug, Error)]
pub enum TokenizerError {
    /// The model file asks for something this crate deliberately does not implement
    /// (e.g. a SentencePiece `llama` vocabulary).
    #[error("unsupported tokenizer: {0}")]
    Unsupported(String),
    /// Metadata is present but inconsistent (bad ids, length mismatches, ...).
    #[error("invalid tokenizer metadata: {0}")]
    Invalid(String),
    /// A required GGUF key is absent.
    #[error("missing GGUF key `{0}`")]
    MissingKey(&'static str),
    /// The GGUF reader rejected a key (usually a type mismatch).
    #[error("GGUF key `{key}`: {source}")]
    Gguf {
        key: &'static str,
        #[source]
        source: metallic_gguf::GgufError,
    },
    /// The Hugging Face tokenizer failed to build or to encode.
    #[error("tokenizer backend: {0}")]
    Backend(String),
    /// The chat template failed to compile or render.
    #[error("chat template: {0}")]
    Template(String),
}

impl From<minijinja::Error> for TokenizerError {
    fn from(err: minijinja::Error) -> Self {
        // minijinja's Display omits the cause chain (e.g. the message passed to
        // raise_exception lives in the detail), so use the alternate form.
        TokenizerError::Template(format!("{err:#}"))
    }
}
