use metallic_gguf::dequant::f32_to_bytes;
use metallic_gguf::{format_inspect, format_value, GgmlType, GgufFile, GgufWriter, Value};

#[test]
fn inspect_output() {
    let tokens: Vec<String> = (0..151_936).map(|i| format!("t{i}")).collect();
    let template = "{% for message in messages %}".repeat(10);
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::from("qwen2"))
        .add("qwen2.block_count", Value::U32(24))
        .add("tokenizer.ggml.tokens", Value::from(tokens))
        .add("small", Value::from(vec![1i32, 2, 3]))
        .add("tokenizer.chat_template", Value::from(template.as_str()))
        .add_tensor(
            "token_embd.weight",
            GgmlType::F32,
            &[4, 2],
            f32_to_bytes(&[0.0; 8]),
        )
        .add_tensor(
            "blk.0.attn_q.weight",
            GgmlType::Q8_0,
            &[32, 3],
            vec![0; 3 * 34],
        );
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    let s = format_inspect(&f);
    println!("{s}");

    let first = s.lines().next().unwrap();
    assert!(
        first.starts_with("GGUF v3 | alignment 32 | 2 tensors | 5 metadata keys | file size"),
        "{first}"
    );
    assert!(s.contains("  general.architecture = \"qwen2\"\n"));
    assert!(s.contains("  qwen2.block_count = 24\n"));
    assert!(
        s.contains("  tokenizer.ggml.tokens = [\"t0\", \"t1\", \"t2\", ... ] (151936 × string)\n")
    );
    assert!(s.contains("  small = [1, 2, 3]\n"));
    assert!(s.contains(&format!("…\" ({} chars)\n", template.len())));
    let tmpl_line = s.lines().find(|l| l.contains("chat_template")).unwrap();
    assert!(tmpl_line.chars().count() < 200, "{tmpl_line}");
    assert!(s.contains("blk.0.attn_q.weight  Q8_0"));
    assert!(s.contains("32 × 3"));
    assert!(
        s.contains("total: 2 tensors, 134 B (134 bytes), 104 parameters (104)"),
        "{s}"
    );
}

#[test]
fn value_formatting() {
    assert_eq!(format_value(&Value::from("a\"b\n")), r#""a\"b\n""#);
    assert_eq!(format_value(&Value::Bool(false)), "false");
    assert_eq!(format_value(&Value::F32(0.5)), "0.5");
    assert_eq!(format_value(&Value::Array(vec![])), "[]");
    assert_eq!(
        format_value(&Value::Array(vec![
            Value::from(vec![1u8, 2]),
            Value::from(vec![3u8])
        ])),
        "[[1, 2], [3]]"
    );
    let long = Value::from((0..9u8).collect::<Vec<_>>());
    assert_eq!(format_value(&long), "[0, 1, 2, ... ] (9 × u8)");
}
