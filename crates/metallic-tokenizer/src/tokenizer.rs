//! The byte-level BPE tokenizer, built on Hugging Face `tokenizers`.

use std::collections::HashSet;

use metallic_gguf::GgufFile;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::AddedToken;

use crate::bytes::token_bytes;
use crate::pretokenize;
use crate::spec::{TokenType, TokenizerSpec};
use crate::stream::StreamDecoder;
use crate::TokenizerError;

/// Texts of control tokens that end a turn. llama.cpp treats these as
/// end-of-generation whatever the metadata says, because many conversions only
/// record one of them as EOS while chat models emit another (Qwen: EOS is
/// `<|endoftext|>` but turns end with `<|im_end|>`). The FIM separators are in the
/// list for the same reason llama.cpp has them: a code model emitting one is done.
const END_OF_TURN_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
    "<|return|>",
    "<|call|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
];

/// A byte-level BPE tokenizer built from GGUF `tokenizer.ggml.*` metadata.
pub struct Tokenizer {
    hf: tokenizers::Tokenizer,
    tokens: Vec<String>,
    types: Vec<TokenType>,
    /// Decoded bytes of every token, concatenated; token `i` is
    /// `bytes[offsets[i]..offsets[i + 1]]`. One buffer instead of 150k small vecs.
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    eot_id: Option<u32>,
    eom_id: Option<u32>,
    pad_id: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    stop_ids: Vec<u32>,
    pre_family: &'static str,
    warnings: Vec<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.tokens.len())
            .field("pre", &self.pre_family)
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("add_bos", &self.add_bos)
            .field("stop_ids", &self.stop_ids)
            .finish_non_exhaustive()
    }
}

/// Splits a GGUF merge rule. The separator search starts after the first char,
/// as llama.cpp does, so a left part that is itself a space still parses.
fn parse_merge(rule: &str) -> Option<(String, String)> {
    let first_len = rule.chars().next()?.len_utf8();
    let sep = first_len + rule[first_len..].find(' ')?;
    Some((rule[..sep].to_string(), rule[sep + 1..].to_string()))
}

impl Tokenizer {
    /// Reads `tokenizer.ggml.*` from a GGUF file and builds the tokenizer.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, TokenizerError> {
        Self::from_spec(TokenizerSpec::from_gguf(file)?)
    }

    pub fn from_spec(spec: TokenizerSpec) -> Result<Self, TokenizerError> {
        if spec.model != "gpt2" {
            return Err(TokenizerError::Unsupported(format!(
                "tokenizer.ggml.model `{}`; only byte-level BPE (`gpt2`) is implemented",
                spec.model
            )));
        }
        let n = spec.tokens.len();
        if n == 0 || u32::try_from(n).is_err() {
            return Err(TokenizerError::Invalid(format!("vocabulary of {n} tokens")));
        }
        if let Some(types) = &spec.token_types {
            if types.len() != n {
                return Err(TokenizerError::Invalid(format!(
                    "{} token types for {n} tokens",
                    types.len()
                )));
            }
        }
        let types: Vec<TokenType> = (0..n).map(|i| spec.token_type(i)).collect();
        let (pre_cfg, pre_warning) = pretokenize::lookup(spec.pre.as_deref());
        let mut warnings: Vec<String> = pre_warning.into_iter().collect();

        let mut checked_id = |name: &str, id: Option<u32>| match id {
            Some(id) if id as usize >= n => {
                warnings.push(format!("{name} id {id} is outside the vocabulary; ignored"));
                None
            }
            other => other,
        };
        let bos_id = checked_id("BOS", spec.bos_id);
        let eos_id = checked_id("EOS", spec.eos_id);
        let eot_id = checked_id("EOT", spec.eot_id);
        let eom_id = checked_id("EOM", spec.eom_id);
        let pad_id = checked_id("padding", spec.pad_id);
        let mut add_bos = spec.add_bos.unwrap_or(pre_cfg.add_bos_default);
        if add_bos && bos_id.is_none() {
            warnings.push("add_bos_token is set but there is no BOS token".to_string());
            add_bos = false;
        }
        let mut add_eos = spec.add_eos.unwrap_or(false);
        if add_eos && eos_id.is_none() {
            warnings.push("add_eos_token is set but there is no EOS token".to_string());
            add_eos = false;
        }

        let hf = build_hf(&spec, &types, &pre_cfg)?;

        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        for (tok, ty) in spec.tokens.iter().zip(&types) {
            if ty.is_added() {
                bytes.extend_from_slice(tok.as_bytes());
            } else {
                bytes.extend(token_bytes(tok));
            }
            offsets.push(bytes.len());
        }

        let mut stop: HashSet<u32> = [eos_id, eot_id, eom_id].into_iter().flatten().collect();
        for (id, tok) in spec.tokens.iter().enumerate() {
            if END_OF_TURN_TEXTS.contains(&tok.as_str()) {
                stop.insert(id as u32);
            }
        }
        let mut stop_ids: Vec<u32> = stop.into_iter().collect();
        stop_ids.sort_unstable();

        Ok(Tokenizer {
            hf,
            tokens: spec.tokens,
            types,
            bytes,
            offsets,
            bos_id,
            eos_id,
            eot_id,
            eom_id,
            pad_id,
            add_bos,
            add_eos,
            stop_ids,
            pre_family: pre_cfg.family,
            warnings,
        })
    }

    /// Encodes `text`. Control and user-defined tokens written literally in the
    /// text (e.g. `<|im_start|>`) become their ids. With `add_special`, BOS/EOS are
    /// added only where the model's metadata asks for them, and not when the text
    /// already begins with BOS / ends with EOS: chat templates print `bos_token`
    /// themselves, and a doubled BOS measurably degrades Llama 3 output.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .hf
            .encode_fast(text, false)
            .map_err(|e| TokenizerError::Backend(e.to_string()))?;
        let body = enc.get_ids();
        let mut ids = Vec::with_capacity(body.len() + 2);
        if add_special && self.add_bos && body.first().copied() != self.bos_id {
            ids.extend(self.bos_id);
        }
        ids.extend_from_slice(body);
        if add_special && self.add_eos && body.last().copied() != self.eos_id {
            ids.extend(self.eos_id);
        }
        Ok(ids)
    }

    /// Decodes ids to text; special tokens render as their text. Invalid UTF-8
    /// becomes U+FFFD. Ids outside the vocabulary (possible when a model's output
    /// layer is wider than its vocabulary) and UNUSED padding entries render as nothing.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut buf = Vec::new();
        for &id in ids {
            buf.extend_from_slice(self.output_bytes(id));
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Decoder that turns ids into text one at a time without splitting
    /// multi-byte characters.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    pub fn eot_id(&self) -> Option<u32> {
        self.eot_id
    }

    pub fn eom_id(&self) -> Option<u32> {
        self.eom_id
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.pad_id
    }

    /// Whether `encode(.., true)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode(.., true)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Ids that end generation: EOS, EOT, EOM and end-of-turn control tokens.
    /// Sorted, no duplicates.
    pub fn stop_ids(&self) -> Vec<u32> {
        self.stop_ids.clone()
    }

    pub fn is_stop(&self, id: u32) -> bool {
        self.stop_ids.binary_search(&id).is_ok()
    }

    /// The vocabulary entry as stored in the model (byte-level form for normal
    /// tokens, e.g. `"Ġhello"`; verbatim for special tokens).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// What `id` contributes to decoded text: nothing for ids outside the vocabulary
    /// and for UNUSED entries (the converter's `[PADnnnnnn]` padding), as Hugging Face
    /// and llama.cpp decode them; a random-weight model can sample them.
    pub(crate) fn output_bytes(&self, id: u32) -> &[u8] {
        match self.token_type(id) {
            Some(TokenType::Unused) | None => &[],
            _ => self.token_bytes(id).unwrap_or_default(),
        }
    }

    /// The raw bytes token `id` decodes to; may be part of a UTF-8 character.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        (i < self.tokens.len()).then(|| &self.bytes[self.offsets[i]..self.offsets[i + 1]])
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// Id of a vocabulary entry given in its stored form (see [`Self::token_text`]).
    pub fn token_to_id(&self, text: &str) -> Option<u32> {
        self.hf.token_to_id(text)
    }

    /// Canonical name of the pre-tokenizer family in use (e.g. `"qwen2"`).
    pub fn pre_tokenizer(&self) -> &'static str {
        self.pre_family
    }

    /// Problems that did not prevent loading but may affect output, such as an
    /// unknown `tokenizer.ggml.pre` that fell back to the GPT-2 pre-tokenizer.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

fn build_hf(
    spec: &TokenizerSpec,
    types: &[TokenType],
    pre_cfg: &pretokenize::PreConfig,
) -> Result<tokenizers::Tokenizer, TokenizerError> {
    // Every entry goes into the BPE vocabulary, special ones included, so that
    // the added-token registry below resolves them to their GGUF ids instead of
    // appending fresh ids. Duplicated texts keep their first id.
    let mut vocab = Vocab::default();
    for (id, tok) in spec.tokens.iter().enumerate() {
        vocab.entry(tok.clone()).or_insert(id as u32);
    }
    let merges: Merges = spec
        .merges
        .iter()
        .map(|m| parse_merge(m).ok_or_else(|| TokenizerError::Invalid(format!("merge rule {m:?}"))))
        .collect::<Result<_, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(pre_cfg.ignore_merges)
        .build()
        .map_err(|e| TokenizerError::Invalid(format!("BPE: {e}")))?;

    let mut hf = tokenizers::Tokenizer::new(bpe);
    hf.with_normalizer(pretokenize::normalizer(pre_cfg));
    hf.with_pre_tokenizer(Some(pretokenize::build(pre_cfg)?));

    // Matched against the raw text before normalization and pre-tokenization,
    // which is how HF treats Qwen's <|im_start|> and llama.cpp its control tokens.
    let added = |wanted: TokenType| -> Vec<AddedToken> {
        spec.tokens
            .iter()
            .zip(types)
            .filter(|(tok, ty)| **ty == wanted && !tok.is_empty())
            .map(|(tok, _)| {
                AddedToken::from(tok.clone(), wanted == TokenType::Control).normalized(false)
            })
            .collect()
    };
    hf.add_special_tokens(&added(TokenType::Control));
    hf.add_tokens(&added(TokenType::UserDefined));
    Ok(hf)
}

#[cfg(test)]
mod tests {
    use super::parse_merge;

    #[test]
    fn merge_rules_split_after_first_char() {
        assert_eq!(parse_merge("Ġ t"), Some(("Ġ".into(), "t".into())));
        assert_eq!(parse_merge("  x"), Some((" ".into(), "x".into())));
        assert_eq!(parse_merge("ab"), None);
        assert_eq!(parse_merge(""), None);
    }
}
