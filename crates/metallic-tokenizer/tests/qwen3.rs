//! The real Qwen3 vocabulary against Hugging Face `tokenizers` output.

mod common;

use common::{expected_cases, qwen3};
use metallic_tokenizer::TokenType;

#[test]
fn encode_matches_hugging_face() {
    let tok = qwen3();
    let cases = expected_cases();
    assert!(cases.len() >= 200, "fixture has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let ids = tok.encode(&case.text, false).unwrap();
        if ids != case.ids {
            failures.push(format!(
                "{:?}\n   got {ids:?}\n  want {:?}",
                case.text, case.ids
            ));
        }
        // Qwen's metadata says add_bos_token = false, so nothing changes.
        assert_eq!(tok.encode(&case.text, true).unwrap(), ids);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn decode_matches_hugging_face_and_round_trips() {
    let tok = qwen3();
    for case in expected_cases() {
        assert_eq!(tok.decode(&case.ids), case.decoded, "{:?}", case.text);
        let round = tok.decode(&tok.encode(&case.text, false).unwrap());
        if case.is_nfc {
            assert_eq!(round, case.text);
        } else {
            // Qwen normalizes to NFC before BPE, exactly like HF does.
            assert_eq!(round, case.decoded);
            assert_ne!(round, case.text);
        }
    }
}

#[test]
fn stream_decoder_never_emits_broken_characters() {
    let tok = qwen3();
    let mut split_chars_seen = 0;
    for case in expected_cases() {
        let full = tok.decode(&case.ids);
        let mut dec = tok.stream_decoder();
        let mut out = String::new();
        for &id in &case.ids {
            let chunk = dec.push(id);
            if !dec.pending_bytes().is_empty() {
                split_chars_seen += 1;
            }
            // A replacement char would mean a character was cut in half.
            if !full.contains('\u{FFFD}') {
                assert!(!chunk.contains('\u{FFFD}'), "{:?}: {chunk:?}", case.text);
            }
            out.push_str(&chunk);
        }
        out.push_str(&dec.finish());
        assert_eq!(out, full, "{:?}", case.text);
    }
    // Emoji and CJK in the fixture are split across byte-level tokens; without
    // such splits this test would prove nothing.
    assert!(
        split_chars_seen >= 5,
        "only {split_chars_seen} split characters"
    );
}

#[test]
fn stream_decoder_replaces_truncated_tail_on_finish() {
    let tok = qwen3();
    // The single-byte tokens for the first three bytes of a 4-byte character.
    let ids = tok.encode("😀😀", false).unwrap();
    assert_eq!(tok.decode(&ids), "😀😀");
    let byte_ids: Vec<u32> = [0xF0u8, 0x9F, 0x98]
        .iter()
        .map(|b| {
            (0..tok.vocab_size() as u32)
                .find(|&id| tok.token_bytes(id) == Some(&[*b][..]))
                .unwrap()
        })
        .collect();
    let mut dec = tok.stream_decoder();
    for &id in &byte_ids {
        assert_eq!(dec.push(id), "");
    }
    assert_eq!(dec.pending_bytes(), &[0xF0, 0x9F, 0x98]);
    assert_eq!(dec.finish(), "\u{FFFD}");
    assert_eq!(tok.decode(&byte_ids), "\u{FFFD}");

    // An invalid byte in the middle is replaced at once, like a one-shot decode.
    let a = tok.encode("a", false).unwrap()[0];
    let mut dec = tok.stream_decoder();
    assert_eq!(dec.push(byte_ids[0]), "");
    assert_eq!(dec.push(a), "\u{FFFD}a");
    assert_eq!(tok.decode(&[byte_ids[0], a]), "\u{FFFD}a");
}

#[test]
fn metadata_and_special_tokens() {
    let tok = qwen3();
    // convert_hf_to_gguf.py pads the 151669 real entries to the model's 151936 rows.
    assert_eq!(tok.vocab_size(), 151_936);
    assert_eq!(tok.pre_tokenizer(), "qwen2");
    assert!(tok.warnings().is_empty(), "{:?}", tok.warnings());
    assert_eq!(tok.bos_id(), Some(151_643));
    assert_eq!(tok.eos_id(), Some(151_645));
    assert_eq!(tok.pad_id(), Some(151_643));
    assert!(!tok.add_bos());
    assert_eq!(tok.token_text(151_644), Some("<|im_start|>"));
    assert_eq!(tok.token_text(9707), Some("Hello"));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(151_645));
    assert_eq!(tok.token_type(151_644), Some(TokenType::Control));
    assert_eq!(tok.token_type(151_667), Some(TokenType::UserDefined)); // <think>
    assert_eq!(tok.token_type(0), Some(TokenType::Normal));
    assert_eq!(tok.token_text(151_669), Some("[PAD151669]"));
    assert_eq!(tok.token_type(151_669), Some(TokenType::Unused));
    assert_eq!(tok.token_text(151_935), Some("[PAD151935]"));
    assert_eq!(tok.token_text(151_936), None);

    let stops = tok.stop_ids();
    for (id, why) in [
        (151_643, "<|endoftext|>"),
        (151_645, "<|im_end|>"),
        (151_662, "<|fim_pad|>"),
        (151_663, "<|repo_name|>"),
        (151_664, "<|file_sep|>"),
    ] {
        assert!(stops.contains(&id), "{why} missing from {stops:?}");
        assert!(tok.is_stop(id));
    }
    assert!(!stops.contains(&151_644), "<|im_start|> must not stop");
    assert!(!tok.is_stop(9707));
}

/// Hugging Face does not know the converter's padding entries and decodes them to nothing (as
/// does llama.cpp for UNUSED tokens); a random model can sample them.
#[test]
fn converter_padding_ids_decode_to_nothing() {
    let tok = qwen3();
    let hello = tok.encode("Hello", false).unwrap()[0];
    assert_eq!(tok.decode(&[hello, 151_669, 151_935, hello]), "HelloHello");
    let mut dec = tok.stream_decoder();
    assert_eq!(dec.push(151_700), "");
    assert_eq!(dec.push(hello), "Hello");
}

#[test]
fn out_of_vocabulary_ids_decode_to_nothing() {
    let tok = qwen3();
    let hello = tok.encode("Hello", false).unwrap();
    let mut ids = hello.clone();
    ids.push(200_000);
    assert_eq!(tok.decode(&ids), "Hello");
    let mut dec = tok.stream_decoder();
    assert_eq!(dec.push(200_000), "");
    assert_eq!(dec.push(hello[0]), "Hello");
}
