//! Chat templates against renderings by transformers' `apply_chat_template`.

mod common;

use common::{json_fixture, qwen3, qwen3_gguf, read_fixture};
use metallic_tokenizer::{ChatMessage, ChatTemplate, TokenizerError};
use serde_json::Value;

fn messages(conv: &Value) -> Vec<ChatMessage> {
    conv.as_array()
        .unwrap()
        .iter()
        .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

/// The Llama template prints today's date; the reference was rendered on
/// another day, so compare everything but that line.
fn without_date(s: &str) -> String {
    s.lines()
        .map(|l| {
            if l.starts_with("Today Date: ") {
                "Today Date: <date>"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every reference rendering of template `name` (transformers' `apply_chat_template`): same
/// text, or an error carrying the same message where the template raises.
fn check_renders(name: &str, tmpl: &ChatTemplate) {
    let doc = json_fixture("expected_chat.json");
    let mut checked = 0;
    for r in doc["renders"].as_array().unwrap() {
        if r["template"] != name {
            continue;
        }
        let conv = &doc["conversations"][r["conversation"].as_str().unwrap()];
        let agp = r["add_generation_prompt"].as_bool().unwrap();
        let extra = r
            .get("extra")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let what = format!(
            "{name} / {} / agp={agp} / extra={extra:?}",
            r["conversation"]
        );
        let got = tmpl.render_with(&messages(conv), agp, &extra);
        if let Some(want) = r.get("text").and_then(Value::as_str) {
            let got = got.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(without_date(&got), without_date(want), "{what}");
        } else {
            let want = r["error"].as_str().expect("text or error");
            let err = got.expect_err(&what);
            assert!(err.to_string().contains(want), "{what}: {err} vs {want}");
        }
        checked += 1;
    }
    assert!(checked >= 12, "{name}: only {checked} renders checked");
}

fn qwen25() -> ChatTemplate {
    ChatTemplate::new(
        &read_fixture("qwen2.5_chat_template.jinja"),
        "",
        "<|im_end|>",
    )
    .unwrap()
}

fn llama3() -> ChatTemplate {
    ChatTemplate::new(
        &read_fixture("llama3_chat_template.jinja"),
        "<|begin_of_text|>",
        "<|eot_id|>",
    )
    .unwrap()
}

#[test]
fn qwen25_matches_reference() {
    check_renders("qwen2.5", &qwen25());
}

#[test]
fn qwen25_shapes() {
    let t = qwen25();
    let got = t
        .render(
            &[
                ChatMessage::new("system", "Be brief."),
                ChatMessage::new("user", "Hi"),
            ],
            true,
        )
        .unwrap();
    assert_eq!(
        got,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let got = t.render(&[ChatMessage::new("user", "Hi")], false).unwrap();
    assert_eq!(
        got,
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    );
}

#[test]
fn llama3_matches_reference() {
    check_renders("llama3", &llama3());
}

#[test]
fn qwen3_template_from_gguf_matches_reference() {
    let tmpl = ChatTemplate::from_gguf(qwen3_gguf(), qwen3())
        .unwrap()
        .expect("fixture has a chat template");
    check_renders("qwen3", &tmpl);
}

#[test]
fn strftime_now_renders_a_date() {
    let got = llama3()
        .render(&[ChatMessage::new("user", "x")], false)
        .unwrap();
    let line = got.lines().find(|l| l.starts_with("Today Date: ")).unwrap();
    let date = &line["Today Date: ".len()..];
    // "%d %b %Y", e.g. "05 Mar 2031".
    let parts: Vec<&str> = date.split(' ').collect();
    assert_eq!(parts.len(), 3, "{date}");
    assert!(parts[0].len() == 2 && parts[0].chars().all(|c| c.is_ascii_digit()));
    assert!(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            .contains(&parts[1])
    );
    assert!(parts[2].parse::<u32>().unwrap() >= 2025);
}

#[test]
fn raise_exception_surfaces_the_message() {
    let err = llama3()
        .render(&[ChatMessage::new("narrator", "x")], true)
        .unwrap_err();
    assert!(matches!(err, TokenizerError::Template(_)));
    assert!(err.to_string().contains("Unknown role: narrator"), "{err}");
}

#[test]
fn tojson_matches_python() {
    let doc = json_fixture("expected_chat.json");
    let tj = &doc["tojson"];
    let data = tj["data"].as_object().unwrap().clone();
    let extra: serde_json::Map<String, Value> = [("data".to_string(), Value::Object(data))]
        .into_iter()
        .collect();
    for (src, key) in [
        ("{{ data | tojson }}", "plain"),
        ("{{ data | tojson(indent=2) }}", "indent2"),
        ("{{ data | tojson(sort_keys=true) }}", "sorted"),
    ] {
        let t = ChatTemplate::new(src, "", "").unwrap();
        assert_eq!(
            t.render_with(&[], false, &extra).unwrap(),
            tj[key].as_str().unwrap(),
            "{key}"
        );
    }
}

#[test]
fn python_string_methods_and_builtins() {
    let src = "{{ '  a b  '.strip() }}|{{ 'x,y,z'.split(',') | length }}|{{ 'abc'.startswith('ab') }}\
               |{{ 'Hi'.upper() }}|{{ messages[0].content.replace('o', '0') }}|{{ messages | length }}\
               |{{ tools is none }}|{{ bos_token }}{{ eos_token }}|{{ add_generation_prompt }}\
               |{{ none }}|{{ [1, 'a', true, none] }}|{{ {'k': \"it's\"} }}";
    let t = ChatTemplate::new(src, "<s>", "</s>").unwrap();
    let got = t.render(&[ChatMessage::new("user", "foo")], true).unwrap();
    // Reference: the same template rendered by Python jinja2 3.1.
    assert_eq!(
        got,
        "a b|3|True|HI|f00|1|True|<s></s>|True|None|[1, 'a', True, None]|{'k': \"it's\"}"
    );
}

#[test]
fn trim_and_lstrip_blocks_like_hf() {
    let src = "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}";
    let t = ChatTemplate::new(src, "", "").unwrap();
    let got = t
        .render(
            &[ChatMessage::new("user", "a"), ChatMessage::new("user", "b")],
            false,
        )
        .unwrap();
    assert_eq!(got, "[a]\n[b]\n");
}

#[test]
fn extras_reach_the_template_but_cannot_override_standard_variables() {
    let t = ChatTemplate::new("{{ enable_thinking }}|{{ messages | length }}", "", "").unwrap();
    let extra: serde_json::Map<String, Value> = [
        ("enable_thinking".to_string(), Value::Bool(false)),
        ("messages".to_string(), Value::Array(vec![])),
    ]
    .into_iter()
    .collect();
    let got = t
        .render_with(&[ChatMessage::new("user", "x")], false, &extra)
        .unwrap();
    assert_eq!(got, "False|1");
}

#[test]
fn syntax_errors_are_reported_at_construction() {
    let err = ChatTemplate::new("{% if %}", "", "").unwrap_err();
    assert!(matches!(err, TokenizerError::Template(_)), "{err}");
}
