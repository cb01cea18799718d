//! Maps `tokenizer.ggml.pre` to the pre-tokenization a model was trained with.
//!
//! The names and regex lists follow llama.cpp's `llama-vocab.cpp`; where llama.cpp
//! rewrote a regex only because its own engine lacks a feature (case-insensitive
//! groups, look-arounds) the original Hugging Face `tokenizer.json` pattern is used,
//! since oniguruma handles it. Each list entry is applied in order as an
//! `Isolated` split (what HF's `Sequence` of `Split`s and llama.cpp's
//! `unicode_regex_split` both do), followed by a regex-free ByteLevel mapping.

use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{NormalizerWrapper, SplitDelimiterBehavior};

use crate::TokenizerError;

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT2_NO_TAIL: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const BLOOM: &str = r" ?[^(\s|.,!?\x{2026}\x{3002}\x{ff0c}\x{3001}\x{964}\x{6d4}\x{60c})]+";
const CJK: &str = r"[\x{4e00}-\x{9fa5}\x{800}-\x{4e00}\x{ac00}-\x{d7ff}]+";
const DEEPSEEK_LLM_LETTERS: &str = r"\s?[A-Za-z\x{b5}\x{c0}-\x{d6}\x{d8}-\x{f6}\x{f8}-\x{1ba}\x{1bc}-\x{1bf}\x{1c4}-\x{293}\x{295}-\x{2af}\x{370}-\x{373}\x{376}\x{377}\x{37b}-\x{37d}\x{37f}\x{386}\x{388}-\x{38a}\x{38c}\x{38e}-\x{3a1}\x{3a3}-\x{3f5}\x{3f7}-\x{481}\x{48a}-\x{52f}\x{531}-\x{556}\x{10a0}-\x{10c5}\x{13a0}-\x{13f5}\x{13f8}-\x{13fd}\x{1c90}-\x{1cba}\x{1cbd}-\x{1cbf}\x{1d00}-\x{1d2b}\x{1d6b}-\x{1d77}\x{1d79}-\x{1d9a}\x{1e00}-\x{1f15}\x{1f18}-\x{1f1d}\x{1f20}-\x{1f45}\x{1f48}-\x{1f4d}\x{1f50}-\x{1f57}\x{1f59}\x{1f5b}\x{1f5d}\x{1f5f}-\x{1f7d}\x{1f80}-\x{1fb4}\x{1fb6}-\x{1fbc}\x{1fbe}\x{1fc2}-\x{1fc4}\x{1fc6}-\x{1fcc}\x{1fd0}-\x{1fd3}\x{1fd6}-\x{1fdb}\x{1fe0}-\x{1fec}\x{1ff2}-\x{1ff4}\x{1ff6}-\x{1ffc}\x{2102}\x{2107}\x{210a}-\x{2113}\x{2115}\x{2119}-\x{211d}\x{2124}\x{2126}\x{2128}\x{212a}-\x{212d}\x{212f}-\x{2134}\x{2139}\x{213c}-\x{213f}\x{2145}-\x{2149}\x{214e}\x{2183}\x{2184}\x{2c00}-\x{2c7b}\x{2c7e}-\x{2ce4}\x{2ceb}-\x{2cee}\x{2cf2}\x{2cf3}\x{a640}-\x{a66d}\x{a680}-\x{a69b}\x{a722}-\x{a76f}\x{a771}-\x{a787}\x{a78b}-\x{a78e}\x{ab70}-\x{abbf}\x{fb00}-\x{fb06}\x{fb13}-\x{fb17}\x{ff21}-\x{ff3a}\x{ff41}-\x{ff5a}\x{10400}-\x{1044f}\x{104b0}-\x{104d3}\x{104d8}-\x{104fb}\x{10c80}-\x{10cb2}\x{10cc0}-\x{10cf2}\x{118a0}-\x{118df}\x{1e900}-\x{1e943}]+";
const DEEPSEEK3_WORDS: &str = r"[!\x22#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How one `tokenizer.ggml.pre` family tokenizes, beyond the vocabulary itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PreConfig {
    /// Canonical family name, for diagnostics.
    pub family: &'static str,
    /// Regexes applied one after another as isolated splits.
    pub regexes: &'static [&'static str],
    /// Whole pre-tokens found in the vocabulary skip BPE (llama.cpp's
    /// `ignore_merges`, HF's `BPE.ignore_merges`); Llama 3 relies on it.
    pub ignore_merges: bool,
    /// Apply Unicode NFC first, as the family's HF `tokenizer.json` does.
    pub nfc: bool,
    /// BOS default when `tokenizer.ggml.add_bos_token` is absent.
    pub add_bos_default: bool,
}

impl PreConfig {
    const fn new(family: &'static str, regexes: &'static [&'static str]) -> Self {
        PreConfig {
            family,
            regexes,
            ignore_merges: false,
            nfc: false,
            add_bos_default: false,
        }
    }
}

/// Resolves a `tokenizer.ggml.pre` value. The second element is a warning when the
/// value was missing or unknown and the GPT-2 split was used instead (llama.cpp
/// warns the same way for a missing value; for an unknown one it refuses to load,
/// which is harsher than an inference engine needs).
pub(crate) fn lookup(pre: Option<&str>) -> (PreConfig, Option<String>) {
    let gpt2 = PreConfig::new("gpt2", &[GPT2]);
    let Some(pre) = pre else {
        let warn = "tokenizer.ggml.pre is missing; using the GPT-2 pre-tokenizer, \
                    tokenization may differ from the original model";
        return (gpt2, Some(warn.to_string()));
    };
    let cfg = match pre {
        "default" | "gpt-2" | "gpt2" | "phi-2" | "mpt" | "olmo" | "jais" | "trillion"
        | "roberta-bpe" | "jina-es" | "jina-de" | "jina-v2-es" | "jina-v2-de" | "jina-v2-code"
        | "gigachat" => gpt2,
        "qwen2" => PreConfig {
            nfc: true,
            ..PreConfig::new("qwen2", &[QWEN2])
        },
        "deepseek-r1-qwen" | "megrez" | "stablelm2" | "hunyuan" => {
            PreConfig::new("qwen2", &[QWEN2])
        }
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "dbrx" | "smaug-bpe" | "bailingmoe" => PreConfig {
            ignore_merges: true,
            add_bos_default: true,
            ..PreConfig::new("llama3", &[LLAMA3])
        },
        "chatglm-bpe" => PreConfig::new("chatglm4", &[LLAMA3]),
        "gpt-4o" | "llama4" => PreConfig::new("gpt-4o", &[GPT4O]),
        "tekken" => PreConfig {
            ignore_merges: true,
            add_bos_default: true,
            ..PreConfig::new("tekken", &[TEKKEN])
        },
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b" => {
            PreConfig::new("starcoder", &[r"\p{N}", GPT2_NO_TAIL])
        }
        "falcon" => PreConfig::new(
            "falcon",
            &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2_NO_TAIL, "[0-9][0-9][0-9]"],
        ),
        "deepseek-llm" => PreConfig::new(
            "deepseek-llm",
            &[
                "[\r\n]",
                DEEPSEEK_LLM_LETTERS,
                r"\s?[!-/:-~\x{ff01}-\x{ff0f}\x{ff1a}-\x{ff5e}\x{2018}-\x{201f}\x{3000}-\x{3002}]+",
                r"\s+$",
                CJK,
                r"\p{N}+",
            ],
        ),
        "deepseek-coder" => PreConfig::new(
            "deepseek-coder",
            &["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK, r"\p{N}"],
        ),
        "deepseek-v3" => PreConfig::new(
            "deepseek-v3",
            &[
                r"\p{N}{1,3}",
                r"[\x{4e00}-\x{9fa5}\x{3040}-\x{309f}\x{30a0}-\x{30ff}]+",
                DEEPSEEK3_WORDS,
            ],
        ),
        "poro-chat" | "bloom" | "gpt3-finnish" => PreConfig::new("bloom", &[BLOOM]),
        "viking" => PreConfig::new("viking", &[BLOOM, r"\p{N}"]),
        other => {
            let warn = format!(
                "unknown tokenizer.ggml.pre `{other}`; using the GPT-2 pre-tokenizer, \
                 tokenization may differ from the original model"
            );
            return (gpt2, Some(warn));
        }
    };
    (cfg, None)
}

/// Builds the HF pre-tokenizer chain for `cfg`.
pub(crate) fn build(cfg: &PreConfig) -> Result<PreTokenizerWrapper, TokenizerError> {
    let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(cfg.regexes.len() + 1);
    for re in cfg.regexes {
        let split = Split::new(
            SplitPattern::Regex((*re).to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| TokenizerError::Backend(format!("pre-tokenizer regex {re:?}: {e}")))?;
        steps.push(split.into());
    }
    // The splits above already did the word segmentation; ByteLevel only maps
    // bytes to the printable alphabet the vocabulary is written in.
    steps.push(ByteLevel::new(false, false, false).into());
    Ok(Sequence::new(steps).into())
}

pub(crate) fn normalizer(cfg: &PreConfig) -> Option<NormalizerWrapper> {
    cfg.nfc.then(|| NFC.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_compiles() {
        let names = [
            "gpt2",
            "qwen2",
            "llama-bpe",
            "chatglm-bpe",
            "gpt-4o",
            "tekken",
            "starcoder",
            "falcon",
            "deepseek-llm",
            "deepseek-coder",
            "deepseek-v3",
            "bloom",
            "viking",
        ];
        for name in names {
            let (cfg, warn) = lookup(Some(name));
            assert!(warn.is_none(), "{name}");
            build(&cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    fn pieces(pre: &str, text: &str) -> Vec<String> {
        use tokenizers::PreTokenizer;
        let (cfg, _) = lookup(Some(pre));
        let mut s = tokenizers::PreTokenizedString::from(text);
        build(&cfg).unwrap().pre_tokenize(&mut s).unwrap();
        s.get_splits(
            tokenizers::OffsetReferential::Original,
            tokenizers::OffsetType::Byte,
        )
        .into_iter()
        .map(|(p, _, _)| p.to_string())
        .collect()
    }

    #[test]
    fn digit_grouping_differs_by_family() {
        // Expected splits follow from each family's regex: Qwen splits digits one
        // by one, Llama 3 in groups of up to three, GPT-2 keeps the run with its
        // leading space, StarCoder isolates digits first.
        assert_eq!(
            pieces("qwen2", "x 12345"),
            ["x", "Ġ", "1", "2", "3", "4", "5"]
        );
        assert_eq!(pieces("llama-bpe", "x 12345"), ["x", "Ġ", "123", "45"]);
        assert_eq!(pieces("gpt2", "x 12345"), ["x", "Ġ12345"]);
        assert_eq!(pieces("starcoder", "ab12"), ["ab", "1", "2"]);
        // Case-insensitive contractions are Qwen/Llama 3 only.
        assert_eq!(pieces("qwen2", "I'M"), ["I", "'M"]);
        assert_eq!(pieces("gpt2", "I'M"), ["I", "'", "M"]);
    }

    #[test]
    fn unknown_and_missing_fall_back_with_warning() {
        let (cfg, warn) = lookup(Some("brand-new-model"));
        assert_eq!(cfg.family, "gpt2");
        assert!(warn.unwrap().contains("brand-new-model"));
        let (cfg, warn) = lookup(None);
        assert_eq!(cfg.family, "gpt2");
        assert!(warn.is_some());
    }

    #[test]
    fn llama3_family_ignores_merges_and_adds_bos() {
        let (cfg, _) = lookup(Some("llama-bpe"));
        assert!(cfg.ignore_merges && cfg.add_bos_default && !cfg.nfc);
        let (cfg, _) = lookup(Some("qwen2"));
        assert!(!cfg.ignore_merges && !cfg.add_bos_default && cfg.nfc);
    }
}
