//! The GGUF-independent description of a vocabulary, and how to read it from GGUF.

use metallic_gguf::GgufFile;

use crate::TokenizerError;

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
    /// Any other value; kept rather than rejected so odd converters still load.
    Other(i32),
}

impl TokenType {
    pub fn from_i32(v: i32) -> Self {
        match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            other => TokenType::Other(other),
        }
    }

    /// Control and user-defined tokens are matched verbatim in input text and
    /// rendered verbatim on output instead of going through byte-level BPE.
    pub fn is_added(self) -> bool {
        matches!(self, TokenType::Control | TokenType::UserDefined)
    }
}

/// Everything needed to build a [`crate::Tokenizer`], mirroring the
/// `tokenizer.ggml.*` GGUF keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenizerSpec {
    /// `tokenizer.ggml.model`; only `"gpt2"` (byte-level BPE) is supported.
    pub model: String,
    /// `tokenizer.ggml.pre`, selects the pre-tokenizer.
    pub pre: Option<String>,
    /// Token texts in byte-level (GPT-2 byte-to-unicode) form, indexed by id.
    pub tokens: Vec<String>,
    /// Merge rules `"left right"`, highest priority first.
    pub merges: Vec<String>,
    /// Per-token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    pub token_types: Option<Vec<i32>>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub eot_id: Option<u32>,
    pub eom_id: Option<u32>,
    pub pad_id: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
}

fn gguf<T>(key: &'static str, r: metallic_gguf::Result<T>) -> Result<T, TokenizerError> {
    r.map_err(|source| TokenizerError::Gguf { key, source })
}

impl TokenizerSpec {
    /// Reads the `tokenizer.ggml.*` keys. Only the model name and token list are
    /// required; everything else is optional in real files.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, TokenizerError> {
        const MODEL: &str = "tokenizer.ggml.model";
        const TOKENS: &str = "tokenizer.ggml.tokens";
        const MERGES: &str = "tokenizer.ggml.merges";
        const TYPES: &str = "tokenizer.ggml.token_type";
        let model = gguf(MODEL, file.get_str(MODEL))?
            .ok_or(TokenizerError::MissingKey(MODEL))?
            .to_string();
        let owned = |v: Vec<&str>| v.into_iter().map(str::to_string).collect::<Vec<_>>();
        let tokens = gguf(TOKENS, file.get_string_array(TOKENS))?
            .map(owned)
            .ok_or(TokenizerError::MissingKey(TOKENS))?;
        let merges = gguf(MERGES, file.get_string_array(MERGES))?
            .map(owned)
            .unwrap_or_default();
        let u32_key = |key: &'static str| gguf(key, file.get_u32(key));
        let bool_key = |key: &'static str| gguf(key, file.get_bool(key));
        Ok(TokenizerSpec {
            model,
            pre: gguf("tokenizer.ggml.pre", file.get_str("tokenizer.ggml.pre"))?
                .map(str::to_string),
            tokens,
            merges,
            token_types: gguf(TYPES, file.get_i32_array(TYPES))?,
            bos_id: u32_key("tokenizer.ggml.bos_token_id")?,
            eos_id: u32_key("tokenizer.ggml.eos_token_id")?,
            eot_id: u32_key("tokenizer.ggml.eot_token_id")?,
            eom_id: u32_key("tokenizer.ggml.eom_token_id")?,
            pad_id: u32_key("tokenizer.ggml.padding_token_id")?,
            add_bos: bool_key("tokenizer.ggml.add_bos_token")?,
            add_eos: bool_key("tokenizer.ggml.add_eos_token")?,
        })
    }

    /// Type of token `id`; `Normal` when the file carries no type array.
    pub fn token_type(&self, id: usize) -> TokenType {
        self.token_types
            .as_ref()
            .and_then(|t| t.get(id))
            .map_or(TokenType::Normal, |&t| TokenType::from_i32(t))
    }
}
