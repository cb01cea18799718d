//! Shared loaders for the conformance fixtures in the repository's tests/fixtures, produced by
//! tools/make_fixtures/make_test_fixtures.sh (Hugging Face tokenizers / transformers and
//! llama.cpp's converter; see tools/make_fixtures/README.md).
#![allow(dead_code)] // each test binary uses a different subset

use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;

use metallic_gguf::GgufFile;
use metallic_tokenizer::Tokenizer;
use serde_json::Value;

/// The shared fixture directory at the repository root.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");

/// A file of tests/fixtures/tokenizer.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(FIXTURES).join("tokenizer").join(name)
}

pub fn read_fixture(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn json_fixture(name: &str) -> Value {
    serde_json::from_str(&read_fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The Qwen3 vocabulary as a vocab-only GGUF written by llama.cpp's convert_hf_to_gguf.py
/// (`--vocab-only`), shared with the engine's conformance tests.
pub fn qwen3_gguf() -> &'static GgufFile {
    static FILE: OnceLock<GgufFile> = OnceLock::new();
    FILE.get_or_init(|| {
        let gz = std::fs::File::open(PathBuf::from(FIXTURES).join("qwen3-vocab.gguf.gz"))
            .expect("fixture");
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut bytes)
            .expect("gunzip");
        GgufFile::from_bytes(bytes).expect("parse GGUF fixture")
    })
}

pub fn qwen3() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| Tokenizer::from_gguf(qwen3_gguf()).expect("build tokenizer"))
}

pub struct Case {
    pub text: String,
    pub ids: Vec<u32>,
    pub decoded: String,
    pub is_nfc: bool,
}

/// Ids and decodings computed by Hugging Face `tokenizers` (Python).
pub fn expected_cases() -> Vec<Case> {
    let doc = json_fixture("expected_ids.json");
    doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().unwrap().to_string(),
            ids: c["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect(),
            decoded: c["decoded"].as_str().unwrap().to_string(),
            is_nfc: c["is_nfc"].as_bool().unwrap(),
        })
        .collect()
}
