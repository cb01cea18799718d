//! Synthetic vocabularies: validation, defaults and the GGUF path.

use metallic_gguf::{GgufFile, GgufWriter, Value};
use metallic_tokenizer::{Tokenizer, TokenizerError, TokenizerSpec};

/// GPT-2's byte-to-unicode alphabet, written out independently of the crate:
/// printable Latin-1 maps to itself, the other 68 bytes to U+0100.. in order.
fn byte_alphabet() -> Vec<String> {
    let mut out = Vec::new();
    let mut shifted = 0;
    for b in 0u32..256 {
        let printable = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        let cp = if printable {
            b
        } else {
            shifted += 1;
            255 + shifted
        };
        out.push(char::from_u32(cp).unwrap().to_string());
    }
    out
}

/// 256 byte tokens (id = byte), merges building "Ġhello" and "ab", then
/// specials <s>, </s>, <|im_end|>, <tag>.
fn tiny_spec(pre: &str) -> TokenizerSpec {
    let mut tokens = byte_alphabet();
    let merges = ["h e", "l l", "he ll", "hell o", "Ġ hello", "a b"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    let base = tokens.len() as u32; // 262
    tokens.extend(["<s>", "</s>", "<|im_end|>", "<tag>"].map(String::from));
    let mut types = vec![1; tokens.len()];
    types[base as usize..base as usize + 3].fill(3);
    types[base as usize + 3] = 4;
    TokenizerSpec {
        model: "gpt2".into(),
        pre: Some(pre.into()),
        tokens,
        merges: merges.map(String::from).to_vec(),
        token_types: Some(types),
        bos_id: Some(base),
        eos_id: Some(base + 1),
        ..Default::default()
    }
}

#[test]
fn tiny_vocabulary_applies_merges_and_specials() {
    let tok = Tokenizer::from_spec(tiny_spec("qwen2")).unwrap();
    assert_eq!(tok.vocab_size(), 266);
    let ids = tok.encode("hello hello<tag>ab<s>\n", false).unwrap();
    // Ids: "hello" 259, "Ġhello" 260, <tag> 265, "ab" 261, <s> 262, byte 0x0A.
    assert_eq!(ids, vec![259, 260, 265, 261, 262, 10]);
    assert_eq!(tok.decode(&ids), "hello hello<tag>ab<s>\n");
    // add_bos defaults to false outside the Llama 3 family.
    assert!(!tok.add_bos());
    assert_eq!(tok.encode("ab", true).unwrap(), vec![261]);
}

#[test]
fn llama3_family_adds_bos_by_default_and_metadata_can_override() {
    let tok = Tokenizer::from_spec(tiny_spec("llama-bpe")).unwrap();
    assert!(tok.add_bos());
    assert_eq!(tok.encode("ab", true).unwrap(), vec![262, 261]);
    assert_eq!(tok.encode("ab", false).unwrap(), vec![261]);

    // A chat template that already printed BOS does not get a second one.
    assert_eq!(tok.encode("<s>ab", true).unwrap(), vec![262, 261]);

    let mut spec = tiny_spec("llama-bpe");
    spec.add_bos = Some(false);
    spec.add_eos = Some(true);
    let tok = Tokenizer::from_spec(spec).unwrap();
    assert_eq!(tok.encode("ab", true).unwrap(), vec![261, 263]);
    assert_eq!(tok.encode("ab</s>", true).unwrap(), vec![261, 263]);
}

#[test]
fn tokenizer_and_template_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    assert_send_sync::<metallic_tokenizer::ChatTemplate>();
}

#[test]
fn stop_ids_include_end_of_turn_controls() {
    let mut spec = tiny_spec("qwen2");
    spec.eot_id = Some(0);
    let tok = Tokenizer::from_spec(spec).unwrap();
    // EOS (</s>), EOT (id 0) and <|im_end|> by its text.
    assert_eq!(tok.stop_ids(), vec![0, 263, 264]);
}

#[test]
fn unknown_pre_tokenizer_falls_back_with_warning() {
    let tok = Tokenizer::from_spec(tiny_spec("some-future-model")).unwrap();
    assert_eq!(tok.pre_tokenizer(), "gpt2");
    assert_eq!(tok.warnings().len(), 1);
    assert!(tok.warnings()[0].contains("some-future-model"));
    assert_eq!(
        tok.decode(&tok.encode("hello ab", false).unwrap()),
        "hello ab"
    );
}

#[test]
fn rejects_unsupported_and_inconsistent_metadata() {
    let mut spec = tiny_spec("qwen2");
    spec.model = "llama".into();
    let err = Tokenizer::from_spec(spec).unwrap_err();
    assert!(matches!(err, TokenizerError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("llama"));

    let mut spec = tiny_spec("qwen2");
    spec.token_types.as_mut().unwrap().pop();
    assert!(matches!(
        Tokenizer::from_spec(spec),
        Err(TokenizerError::Invalid(_))
    ));

    let mut spec = tiny_spec("qwen2");
    spec.merges.push("nosuch token".into());
    assert!(matches!(
        Tokenizer::from_spec(spec),
        Err(TokenizerError::Invalid(_))
    ));

    let mut spec = tiny_spec("qwen2");
    spec.merges.push("nospace".into());
    assert!(matches!(
        Tokenizer::from_spec(spec),
        Err(TokenizerError::Invalid(_))
    ));
}

#[test]
fn out_of_range_special_ids_are_dropped_with_warning() {
    let mut spec = tiny_spec("llama-bpe");
    spec.bos_id = Some(9999);
    let tok = Tokenizer::from_spec(spec).unwrap();
    assert_eq!(tok.bos_id(), None);
    assert!(!tok.add_bos());
    assert_eq!(tok.warnings().len(), 2, "{:?}", tok.warnings());
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().cloned().map(Value::String).collect())
}

#[test]
fn from_gguf_reads_what_gguf_writer_wrote() {
    let spec = tiny_spec("qwen2");
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("qwen2".into()))
        .add("tokenizer.ggml.model", Value::String("gpt2".into()))
        .add("tokenizer.ggml.pre", Value::String("qwen2".into()))
        .add("tokenizer.ggml.tokens", strings(&spec.tokens))
        .add("tokenizer.ggml.merges", strings(&spec.merges))
        .add(
            "tokenizer.ggml.token_type",
            Value::Array(
                spec.token_types
                    .clone()
                    .unwrap()
                    .into_iter()
                    .map(Value::I32)
                    .collect(),
            ),
        )
        .add("tokenizer.ggml.bos_token_id", Value::U32(262))
        .add("tokenizer.ggml.eos_token_id", Value::U32(263))
        .add("tokenizer.ggml.padding_token_id", Value::U32(263))
        .add("tokenizer.ggml.add_bos_token", Value::Bool(true))
        .add(
            "tokenizer.chat_template",
            Value::String(
                "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"
                    .into(),
            ),
        );
    let file = GgufFile::from_bytes(w.to_bytes()).unwrap();

    let read = TokenizerSpec::from_gguf(&file).unwrap();
    assert_eq!(read.tokens, spec.tokens);
    assert_eq!(read.merges, spec.merges);
    assert_eq!(read.token_types, spec.token_types);
    assert_eq!(read.pad_id, Some(263));
    assert_eq!(read.add_bos, Some(true));
    assert_eq!(read.add_eos, None);

    let tok = Tokenizer::from_gguf(&file).unwrap();
    // BOS, "hello", then " ab" = "Ġ" (byte 0x20) + "ab" as there is no "Ġ ab" merge.
    assert_eq!(
        tok.encode("hello ab", true).unwrap(),
        vec![262, 259, 32, 261]
    );
    assert_eq!(tok.pad_id(), Some(263));
    let chat = metallic_tokenizer::ChatTemplate::from_gguf(&file, &tok)
        .unwrap()
        .unwrap();
    let msgs = [metallic_tokenizer::ChatMessage::new("user", "hi")];
    assert_eq!(chat.render(&msgs, false).unwrap(), "<s>hi</s>");
}

#[test]
fn from_gguf_reports_missing_and_mistyped_keys() {
    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.tokens", strings(&["a".into()]));
    let file = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert!(matches!(
        Tokenizer::from_gguf(&file),
        Err(TokenizerError::MissingKey("tokenizer.ggml.model"))
    ));

    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.model", Value::String("gpt2".into()))
        .add("tokenizer.ggml.tokens", strings(&["a".into()]))
        .add("tokenizer.ggml.bos_token_id", Value::String("1".into()));
    let file = GgufFile::from_bytes(w.to_bytes()).unwrap();
    let err = Tokenizer::from_gguf(&file).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::Gguf {
                key: "tokenizer.ggml.bos_token_id",
                ..
            }
        ),
        "{err}"
    );

    let file = GgufFile::from_bytes(GgufWriter::new().to_bytes()).unwrap();
    assert!(metallic_tokenizer::ChatTemplate::from_gguf(
        &file,
        &Tokenizer::from_spec(tiny_spec("qwen2")).unwrap()
    )
    .unwrap()
    .is_none());
}
