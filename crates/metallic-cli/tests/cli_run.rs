//! `metallic run` and `metallic inspect` end to end on synthetic Qwen2 models with a
//! tokenizer: prompt encoding, greedy parity with the CPU reference, output formats,
//! seeds, --max-tokens, stopping at EOS, stdin prompts.

mod common;

use common::*;
use metallic::gguf::GgufFile;
use metallic::synthetic::{synthetic_control_id, SyntheticSpec, SYNTHETIC_CHAT_TEMPLATE};
use metallic_tokenizer::{ChatMessage, ChatTemplate, TokenType};

const PROMPT: &str = "the theme";
/// PROMPT through the synthetic ChatML template.
const CHAT_PROMPT: &str = "<|im_start|>user\nthe theme<|im_end|>\n<|im_start|>assistant\n";
/// Its ids, worked out by hand: bytes are their own ids, 256 = "Ġt", 257 = "he",
/// 258 = "Ġthe", 260 = <|im_start|>, 261 = <|im_end|>.
const PROMPT_IDS: &[u32] = &[116, 257, 258, 109, 101];
const CHAT_PROMPT_IDS: &[u32] = &[
    260, 117, 115, 101, 114, 10, 116, 257, 258, 109, 101, 261, 10, 260, 97, 115, 115, 105, 115,
    116, 97, 110, 116, 10,
];

fn run_json(model: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "run",
        model.to_str().unwrap(),
        PROMPT,
        "--output-format",
        "json",
    ];
    args.extend_from_slice(extra);
    cli(&args).ok().json()
}

#[test]
fn synthetic_tokenizer_loads() {
    let file = GgufFile::from_bytes(metallic::synthetic::qwen2_gguf(&spec())).unwrap();
    let tok = metallic_tokenizer::Tokenizer::from_gguf(&file).unwrap();
    assert!(tok.warnings().is_empty(), "{:?}", tok.warnings());
    assert_eq!(tok.vocab_size(), 300);
    assert_eq!(tok.pre_tokenizer(), "qwen2");
    let im_end = synthetic_control_id("<|im_end|>").unwrap();
    let endoftext = synthetic_control_id("<|endoftext|>").unwrap();
    assert_eq!(tok.eos_id(), Some(im_end));
    assert_eq!(tok.bos_id(), Some(endoftext));
    assert_eq!(tok.pad_id(), Some(endoftext));
    assert!(!tok.add_bos());
    assert_eq!(tok.stop_ids(), vec![endoftext, im_end]);
    assert_eq!(tok.token_type(im_end), Some(TokenType::Control));
    assert_eq!(tok.token_type(299), Some(TokenType::Normal));
    assert_eq!(tok.token_text(299), Some("[PAD37]"));
    assert_eq!(tok.token_to_id("Ġthe"), Some(258));

    assert_eq!(tok.encode(PROMPT, true).unwrap(), PROMPT_IDS);
    assert_eq!(tok.encode(CHAT_PROMPT, true).unwrap(), CHAT_PROMPT_IDS);
    // Every byte round-trips, control tokens render as their text.
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let ids: Vec<u32> = (0..256).collect();
    let text = String::from_utf8_lossy(&all_bytes);
    assert_eq!(tok.decode(&ids), text);
    assert_eq!(tok.decode(&[260, 258, 261]), "<|im_start|> the<|im_end|>");

    let template = ChatTemplate::from_gguf(&file, &tok).unwrap().unwrap();
    let rendered = template
        .render(&[ChatMessage::new("user", PROMPT)], true)
        .unwrap();
    assert_eq!(rendered, CHAT_PROMPT);
    assert_eq!(
        file.get_str("tokenizer.chat_template").unwrap(),
        Some(SYNTHETIC_CHAT_TEMPLATE)
    );

    // No tokenizer unless asked for, and eos can be overridden.
    let plain =
        GgufFile::from_bytes(metallic::synthetic::qwen2_gguf(&SyntheticSpec::default())).unwrap();
    assert!(plain.get("tokenizer.ggml.model").is_none());
    let custom = GgufFile::from_bytes(metallic::synthetic::qwen2_gguf(&SyntheticSpec {
        eos_token_id: Some(42),
        ..spec()
    }))
    .unwrap();
    let tok = metallic_tokenizer::Tokenizer::from_gguf(&custom).unwrap();
    assert_eq!(tok.eos_id(), Some(42));
    assert!(tok.is_stop(42));
}

/// Greedy JSON run: the prompt is the chat-rendered encoding, the tokens are the CPU
/// reference's greedy tokens (stopping at a stop token), the text is their decoding.
#[test]
fn json_greedy_matches_reference() {
    let dir = Scratch::new("json-greedy");
    let model = dir.model("m.gguf", &spec());
    let tok = tokenizer(&model);
    let json = run_json(&model, &["--temperature", "0", "-n", "12"]);

    let prompt = ids(&json["prompt_tokens"]);
    assert_eq!(prompt, CHAT_PROMPT_IDS);
    assert_eq!(prompt, tok.encode(CHAT_PROMPT, true).unwrap());

    let tokens = ids(&json["tokens"]);
    let expected = reference_greedy(&model, &prompt, 12, &tok.stop_ids());
    assert_eq!(
        tokens, expected,
        "GPU greedy differs from the CPU reference"
    );
    let stopped = tokens.last().is_some_and(|&t| tok.is_stop(t));
    let reason = if stopped { "stop" } else { "length" };
    assert_eq!(json["stop_reason"], reason);
    let visible: Vec<u32> = tokens
        .iter()
        .copied()
        .filter(|&t| !tok.is_stop(t))
        .collect();
    assert_eq!(json["text"], tok.decode(&visible));
    assert_eq!(json["generated_tokens"], tokens.len());
    for key in [
        "load_s",
        "prompt_s",
        "decode_s",
        "total_s",
        "tps_total",
        "tps_decode",
    ] {
        let v = json[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key}: {json}"));
        assert!(v.is_finite() && v >= 0.0, "{key} = {v}");
    }
    assert!(json["seed"].is_u64(), "{json}");
}

/// With --no-chat-template the prompt is encoded raw; --ignore-eos runs to the limit
/// and every token matches the reference, stop tokens included.
#[test]
fn json_raw_prompt_ignore_eos_matches_reference() {
    let dir = Scratch::new("json-raw");
    let model = dir.model("m.gguf", &spec());
    let json = run_json(
        &model,
        &[
            "--temperature",
            "0",
            "-n",
            "20",
            "--no-chat-template",
            "--ignore-eos",
        ],
    );
    let prompt = ids(&json["prompt_tokens"]);
    assert_eq!(prompt, PROMPT_IDS);
    assert_eq!(prompt, tokenizer(&model).encode(PROMPT, true).unwrap());
    let tokens = ids(&json["tokens"]);
    assert_eq!(tokens, reference_greedy(&model, &prompt, 20, &[]));
    assert_eq!(json["stop_reason"], "length");
    assert_eq!(json["text"], tokenizer(&model).decode(&tokens));
}

/// --system adds a system turn before the user's.
#[test]
fn system_message_is_rendered() {
    let dir = Scratch::new("system");
    let model = dir.model("m.gguf", &spec());
    let json = run_json(&model, &["--temperature", "0", "-n", "1", "--system", "be"]);
    let expected = format!("<|im_start|>system\nbe<|im_end|>\n{CHAT_PROMPT}");
    assert_eq!(
        ids(&json["prompt_tokens"]),
        tokenizer(&model).encode(&expected, true).unwrap()
    );
}

/// Parses `[metallic] a=1 b=2.5 ...` into (key, value) pairs.
fn stat_line(line: &str) -> Vec<(String, f64)> {
    let rest = line
        .strip_prefix("[metallic] ")
        .unwrap_or_else(|| panic!("not a stats line: {line}"));
    rest.split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{line}"));
            (
                k.to_string(),
                v.parse().unwrap_or_else(|_| panic!("{line}")),
            )
        })
        .collect()
}

/// Checks that stderr ends with the load line and the two timing lines.
fn check_stats(stderr: &str, generated: usize, prompt: usize) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 3, "stderr: {stderr}");
    let load = stat_line(lines[lines.len() - 3]);
    assert_eq!(load.len(), 1, "{stderr}");
    assert_eq!(load[0].0, "load_s", "{stderr}");
    assert!(load[0].1.is_finite() && load[0].1 > 0.0, "{stderr}");
    let a = stat_line(lines[lines.len() - 2]);
    let b = stat_line(lines[lines.len() - 1]);
    let keys = |s: &[(String, f64)]| s.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&a), ["generated_tokens", "total_s", "tps_total"]);
    assert_eq!(
        keys(&b),
        ["prompt_tokens", "prompt_s", "decode_s", "tps_decode"]
    );
    assert_eq!(a[0].1, generated as f64, "{stderr}");
    assert_eq!(b[0].1, prompt as f64, "{stderr}");
    for (k, v) in a.iter().chain(&b) {
        assert!(v.is_finite() && *v >= 0.0, "{k} = {v}");
    }
}

#[test]
fn text_and_none_output_formats() {
    let dir = Scratch::new("formats");
    let model = dir.model("m.gguf", &spec());
    let m = model.to_str().unwrap();
    let args = ["--temperature", "0", "-n", "10"];
    let json = run_json(&model, &args);
    let n = ids(&json["tokens"]).len();

    let text = cli(&[&["run", m, PROMPT, "--output-format", "text"], &args[..]].concat()).ok();
    assert_eq!(text.stdout, format!("{}\n", json["text"].as_str().unwrap()));
    check_stats(&text.stderr, n, CHAT_PROMPT_IDS.len());

    // Text is the default format.
    let default = cli(&[&["run", m, PROMPT], &args[..]].concat()).ok();
    assert_eq!(default.stdout, text.stdout);

    let none = cli(&[&["run", m, PROMPT, "--output-format", "none"], &args[..]].concat()).ok();
    assert_eq!(none.stdout, "");
    check_stats(&none.stderr, n, CHAT_PROMPT_IDS.len());

    // JSON runs print the same two lines on stderr.
    let run = cli(&[&["run", m, PROMPT, "--output-format", "json"], &args[..]].concat()).ok();
    check_stats(&run.stderr, n, CHAT_PROMPT_IDS.len());
}

#[test]
fn seeds_are_reproducible_and_matter() {
    let dir = Scratch::new("seeds");
    let model = dir.model("m.gguf", &spec());
    let sample = |seed: u64| {
        let seed = seed.to_string();
        let json = run_json(
            &model,
            &[
                "--temperature",
                "0.9",
                "--seed",
                &seed,
                "-n",
                "16",
                "--ignore-eos",
            ],
        );
        assert_eq!(json["seed"].as_u64().unwrap().to_string(), seed);
        ids(&json["tokens"])
    };
    let first = sample(1234);
    assert_eq!(first.len(), 16);
    assert_eq!(sample(1234), first, "same seed, different tokens");
    let others: Vec<Vec<u32>> = (1..=3).map(sample).collect();
    assert!(
        others.iter().any(|o| *o != first),
        "four seeds gave identical samples: {first:?}"
    );
}

#[test]
fn max_tokens_is_exact_with_ignore_eos() {
    let dir = Scratch::new("max-tokens");
    let model = dir.model("m.gguf", &spec());
    // 1: prefill only; 9 and 17: decode batches of 8 plus a partial one.
    for n in [1usize, 9, 17] {
        let json = run_json(
            &model,
            &[
                "--temperature",
                "0.7",
                "--seed",
                "5",
                "-n",
                &n.to_string(),
                "--ignore-eos",
            ],
        );
        assert_eq!(ids(&json["tokens"]).len(), n, "{json}");
        assert_eq!(json["generated_tokens"], n);
        assert_eq!(json["stop_reason"], "length");
    }
}

/// EOS is set to the token the model greedily produces at step k (3, or later if an
/// earlier step already ends the turn): generation ends right after it.
#[test]
fn stops_at_eos() {
    let dir = Scratch::new("eos");
    let plain = dir.model("plain.gguf", &spec());
    let greedy = reference_greedy(&plain, CHAT_PROMPT_IDS, 16, &[]);
    let default_stops = tokenizer(&plain).stop_ids();
    let k = (3..greedy.len())
        .find(|&k| {
            let before = &greedy[..k];
            !before.contains(&greedy[k]) && !before.iter().any(|t| default_stops.contains(t))
        })
        .unwrap_or_else(|| panic!("no usable EOS step in {greedy:?}"));
    assert_eq!(k, 3, "the spec's seed was chosen for k = 3: {greedy:?}");
    let eos = greedy[k];
    let model = dir.model(
        "eos.gguf",
        &SyntheticSpec {
            eos_token_id: Some(eos),
            ..spec()
        },
    );
    let tok = tokenizer(&model);
    assert_eq!(tok.eos_id(), Some(eos));
    let json = run_json(&model, &["--temperature", "0", "-n", "16"]);
    assert_eq!(ids(&json["tokens"]), &greedy[..=k]);
    assert_eq!(json["stop_reason"], "stop");
    assert_eq!(json["text"], tok.decode(&greedy[..k]));

    // Streaming text leaves the EOS token out too.
    let text = cli(&[
        "run",
        model.to_str().unwrap(),
        PROMPT,
        "--temperature",
        "0",
        "-n",
        "16",
    ])
    .ok();
    assert_eq!(text.stdout, format!("{}\n", tok.decode(&greedy[..k])));
    check_stats(&text.stderr, k + 1, CHAT_PROMPT_IDS.len());

    // --ignore-eos runs past it.
    let json = run_json(&model, &["--temperature", "0", "-n", "16", "--ignore-eos"]);
    assert_eq!(ids(&json["tokens"]), greedy);
    assert_eq!(json["stop_reason"], "length");
}

#[test]
fn prompt_from_stdin() {
    let dir = Scratch::new("stdin");
    let model = dir.model("m.gguf", &spec());
    let args = [
        "run",
        model.to_str().unwrap(),
        "--output-format",
        "json",
        "--temperature",
        "0",
        "-n",
        "3",
        "--no-chat-template",
    ];
    let json = cli_with(&args, &[], Some(PROMPT)).ok().json();
    assert_eq!(ids(&json["prompt_tokens"]), PROMPT_IDS);
    // Through the chat template, trailing newline included as typed.
    let json = cli_with(&args[..8], &[], Some("the theme\n")).ok().json();
    let expected = CHAT_PROMPT.replace("the theme", "the theme\n");
    assert_eq!(
        ids(&json["prompt_tokens"]),
        tokenizer(&model).encode(&expected, true).unwrap()
    );
}

#[test]
fn inspect_prints_metadata_and_tensors() {
    let dir = Scratch::new("inspect");
    let model = dir.model("m.gguf", &spec());
    let run = cli(&["inspect", model.to_str().unwrap()]).ok();
    let out = &run.stdout;
    for needle in [
        "general.architecture",
        "\"qwen2\"",
        "qwen2.embedding_length",
        "tokenizer.ggml.model",
        "\"gpt2\"",
        "tokenizer.chat_template",
        "token_embd.weight",
        "blk.1.ffn_down.weight",
        "output_norm.weight",
        "F16",
        "F32",
    ] {
        assert!(
            out.contains(needle),
            "inspect output lacks {needle}:\n{out}"
        );
    }
    let tensors = GgufFile::open(&model).unwrap().tensors().len();
    let tensor_lines = out
        .lines()
        .filter(|l| l.contains(".weight") || l.contains(".bias"))
        .count();
    assert_eq!(tensor_lines, tensors, "one line per tensor:\n{out}");
    assert_eq!(run.stderr, "");
}

#[test]
fn bench_reports_pp_and_tg() {
    let dir = Scratch::new("bench");
    let model = dir.model("m.gguf", &spec());
    let m = model.to_str().unwrap();
    let run = cli(&["bench", m, "-p", "8", "-n", "4", "-r", "2", "-o", "json"]).ok();
    let rows: serde_json::Value =
        serde_json::from_str(run.stdout.trim()).expect("bench prints one JSON array");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, test) in rows.iter().zip(["pp8", "tg4"]) {
        assert_eq!(row["test"], test);
        assert_eq!(row["repetitions"], 2);
        assert_eq!(row["samples_ts"].as_array().unwrap().len(), 2);
        assert!(row["avg_ts"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["n_params"].as_u64().unwrap() > 0);
        // The fused decode plan needs fewer dispatches than a prompt chunk.
        let decode = row["dispatches_per_token"].as_u64().unwrap();
        assert!(decode > 0 && decode < row["dispatches_per_prefill_chunk"].as_u64().unwrap());
    }
    let md = cli(&["bench", m, "-p", "4", "-n", "2", "-r", "1"]).ok();
    assert!(
        md.stdout.contains("| pp4 |")
            && md.stdout.contains("| tg2 |")
            && md.stdout.contains("dispatches per token: "),
        "{}",
        md.stdout
    );
    let bad = cli(&["bench", m, "-r", "0"]);
    assert!(bad.fails().contains("--repetitions must be at least 1"));
}
