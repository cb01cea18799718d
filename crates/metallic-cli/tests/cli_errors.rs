//! Bad input to `metallic`: every case exits non-zero with one `error: ...` line on
//! stderr, nothing on stdout and no panic.

mod common;

use common::*;
use metallic::gguf::{GgmlType, Value};
use metallic::synthetic::{qwen2_gguf, SyntheticSpec};

const PROMPT: &str = "the theme";

/// `metallic run MODEL PROMPT -n 4 ARGS...`, expected to fail; returns the error line.
/// Options repeated in ARGS override the `-n 4`.
fn run_fails(model: &std::path::Path, args: &[&str]) -> String {
    run_fails_env(model, args, &[])
}

fn run_fails_env(model: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut all = vec!["run", model.to_str().unwrap(), PROMPT, "-n", "4"];
    all.extend_from_slice(args);
    let run = cli_with(&all, env, None);
    run.fails().to_string()
}

fn assert_mentions(line: &str, needles: &[&str]) {
    for n in needles {
        assert!(line.contains(n), "error line lacks `{n}`: {line}");
    }
}

#[test]
fn missing_model_file() {
    let dir = Scratch::new("missing");
    let path = dir.path("nope.gguf");
    let line = run_fails(&path, &[]);
    assert_mentions(&line, &["nope.gguf", "No such file"]);
    let run = cli(&["inspect", path.to_str().unwrap()]);
    assert_mentions(run.fails(), &["nope.gguf"]);
}

#[test]
fn directory_as_model() {
    let dir = Scratch::new("dir");
    let line = run_fails(dir.dir(), &[]);
    assert_mentions(&line, &[dir.dir().to_str().unwrap(), "is a directory"]);
    let run = cli(&["inspect", dir.dir().to_str().unwrap()]);
    assert_mentions(run.fails(), &["is a directory"]);
}

#[test]
fn truncated_gguf() {
    let dir = Scratch::new("truncated");
    let bytes = qwen2_gguf(&spec());
    // In the header, in the metadata, in the tensor data; and empty.
    for (i, len) in [12, 200, bytes.len() - 100, 0].into_iter().enumerate() {
        let path = dir.write(&format!("t{i}.gguf"), &bytes[..len]);
        let line = run_fails(&path, &[]);
        assert_mentions(&line, &[path.to_str().unwrap()]);
        // The scratch path itself contains "truncated".
        let msg = line.replace(path.to_str().unwrap(), "");
        assert!(
            ["truncated", "exceeds the", "outside the file"]
                .iter()
                .any(|n| msg.contains(n)),
            "{line}"
        );
        cli(&["inspect", path.to_str().unwrap()]).fails();
    }
}

#[test]
fn not_a_gguf_file() {
    let dir = Scratch::new("not-gguf");
    let path = dir.write("hello.gguf", b"hello, world, this is not a model\n");
    let line = run_fails(&path, &[]);
    assert_mentions(&line, &["not a GGUF file"]);
    cli(&["inspect", path.to_str().unwrap()]).fails();
}

#[test]
fn unsupported_architecture() {
    let dir = Scratch::new("llama");
    let bytes = rewrite(
        qwen2_gguf(&spec()),
        |k, v| {
            Some(match k {
                "general.architecture" => (k.to_string(), Value::from("llama")),
                _ => (k.replacen("qwen2.", "llama.", 1), v.clone()),
            })
        },
        |_, _| None,
    );
    let path = dir.write("llama.gguf", &bytes);
    let line = run_fails(&path, &[]);
    assert_mentions(&line, &["unsupported architecture", "llama", "qwen2"]);
    // inspect still works: it only reads the file.
    let run = cli(&["inspect", path.to_str().unwrap()]).ok();
    assert!(run.stdout.contains("llama.embedding_length"));
}

#[test]
fn unsupported_tensor_type() {
    let dir = Scratch::new("q4k");
    // ffn 256 so that ffn_down's rows (ne0 = ffn) are whole Q4_K blocks.
    let spec = SyntheticSpec { ffn: 256, ..spec() };
    let target = "blk.1.ffn_down.weight";
    let bytes = rewrite(
        qwen2_gguf(&spec),
        |k, v| Some((k.to_string(), v.clone())),
        |name, dims| {
            (name == target).then(|| {
                let n = dims.iter().product();
                let size = GgmlType::Q4_K.bytes_for(n).unwrap();
                (GgmlType::Q4_K, vec![0u8; size as usize])
            })
        },
    );
    let path = dir.write("q4k.gguf", &bytes);
    let line = run_fails(&path, &[]);
    assert_mentions(&line, &["Q4_K"]);
    assert!(line.contains(target) || line.contains("ffn_down"), "{line}");
}

#[test]
fn no_tokenizer_metadata() {
    let dir = Scratch::new("no-tokenizer");
    let spec = SyntheticSpec {
        tokenizer: false,
        ..spec()
    };
    let path = dir.model("m.gguf", &spec);
    let line = run_fails(&path, &[]);
    assert_mentions(&line, &["tokenizer"]);
}

#[test]
fn prompt_and_max_tokens_exceed_context() {
    let dir = Scratch::new("ctx");
    let path = dir.model("m.gguf", &spec());
    let line = run_fails(&path, &["--ctx-size", "16", "--max-tokens", "32"]);
    assert_mentions(&line, &["context", "16", "32"]);
    // The model's trained context (128) caps the default and larger --ctx-size values.
    let line = run_fails(&path, &["--max-tokens", "200"]);
    assert_mentions(&line, &["context", "128"]);
    let line = run_fails(&path, &["--ctx-size", "4096", "--max-tokens", "200"]);
    assert_mentions(&line, &["context", "128"]);
}

#[test]
fn empty_prompt() {
    let dir = Scratch::new("empty-prompt");
    let path = dir.model("m.gguf", &spec());
    let run = cli(&["run", path.to_str().unwrap(), "", "--no-chat-template"]);
    assert_mentions(run.fails(), &["prompt"]);
    // Nothing on stdin either.
    let args = ["run", path.to_str().unwrap(), "--no-chat-template"];
    assert_mentions(cli_with(&args, &[], Some("")).fails(), &["prompt"]);
}

#[test]
fn bad_numeric_options() {
    let dir = Scratch::new("options");
    let path = dir.model("m.gguf", &spec());
    let cases: &[(&[&str], &str)] = &[
        (&["--ctx-size", "0"], "ctx-size"),
        (&["--temperature", "-1"], "temperature"),
        (&["--temperature", "nan"], "temperature"),
        (&["--top-p", "0"], "top-p"),
        (&["--top-p", "1.5"], "top-p"),
        (&["--batch-size", "0"], "batch-size"),
    ];
    for (args, needle) in cases {
        let line = run_fails(&path, args);
        assert_mentions(&line, &[needle]);
    }
}

#[test]
fn bad_gemv_env() {
    let dir = Scratch::new("gemv-env");
    let path = dir.model("m.gguf", &spec());
    let line = run_fails_env(&path, &[], &[("METALLIC_GEMV_COLS_PER_TG", "3")]);
    assert_mentions(&line, &["METALLIC_GEMV_COLS_PER_TG", "3"]);
    let line = run_fails_env(&path, &[], &[("METALLIC_ATTN_FOLD", "maybe")]);
    assert_mentions(&line, &["METALLIC_ATTN_FOLD", "maybe"]);
    let line = run_fails_env(&path, &[], &[("METALLIC_SHADER_CHECKS", "yes")]);
    assert_mentions(&line, &["METALLIC_SHADER_CHECKS", "yes"]);
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let dir = Scratch::new("flag");
    let path = dir.model("m.gguf", &spec());
    let run = cli(&["run", path.to_str().unwrap(), PROMPT, "--frobnicate"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert!(run.stderr.contains("--frobnicate"), "{}", run.stderr);
    assert_eq!(run.stdout, "");
    // No subcommand at all.
    let run = cli::<&str>(&[]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}
