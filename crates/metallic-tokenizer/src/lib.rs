//! Tokenization for Metallic: byte-level BPE vocabularies read from GGUF
//! (`tokenizer.ggml.model = "gpt2"`, used by Qwen, Llama 3 and most recent
//! models), incremental decoding for streaming output, and chat templates.
//!
//! The BPE itself is Hugging Face's `tokenizers`, configured from the GGUF
//! metadata, so encodings match the reference implementation the models were
//! trained with.

mod bytes;
mod chat;
mod error;
mod pretokenize;
mod spec;
mod stream;
mod strftime;
mod tokenizer;

pub use chat::{ChatMessage, ChatTemplate};
pub use error::TokenizerError;
pub use spec::{TokenType, TokenizerSpec};
pub use stream::StreamDecoder;
pub use tokenizer::Tokenizer;
