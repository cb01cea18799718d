//! One test per class of malformed input: each must give a specific error, never
//! a panic or an allocation sized by the bad field.

mod common;

use common::*;
use metallic_gguf::dequant::f32_to_bytes;
use metallic_gguf::{GgmlType, GgufError, GgufFile, GgufWriter, Value, MAX_ARRAY_DEPTH};

#[test]
fn every_prefix_is_an_error() {
    let b = small_bytes();
    assert!(GgufFile::from_bytes(b.clone()).is_ok());
    for len in 0..b.len() {
        let r = GgufFile::from_bytes(b[..len].to_vec());
        assert!(r.is_err(), "prefix of {len}/{} bytes parsed", b.len());
    }
    let e = parse_err(b[..10].to_vec());
    assert!(matches!(e, GgufError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("tensor count"), "{e}");
}

#[test]
fn bad_magic() {
    let mut b = small_bytes();
    b[..4].copy_from_slice(b"GGML");
    let e = parse_err(b);
    assert!(matches!(e, GgufError::BadMagic { found } if &found == b"GGML"));
    assert!(e.to_string().contains("not a GGUF file"), "{e}");
}

#[test]
fn unsupported_versions() {
    for (v, hint) in [
        (1, "only versions 2 and 3"),
        (4, "only versions 2 and 3"),
        (0x0300_0000, "big-endian"),
    ] {
        let mut b = small_bytes();
        put_u32(&mut b, 4, v);
        let e = parse_err(b);
        assert!(matches!(e, GgufError::UnsupportedVersion { version, .. } if version == v));
        assert!(
            e.to_string()
                .contains(&format!("unsupported GGUF version {v}")),
            "{e}"
        );
        assert!(e.to_string().contains(hint), "{e}");
    }
}

fn assert_count_past_end(b: Vec<u8>, what: &str) {
    let e = parse_err(b);
    assert!(matches!(e, GgufError::CountPastEnd { .. }), "{e}");
    assert!(e.to_string().contains(what), "{e}");
}

#[test]
fn huge_counts_and_lengths() {
    let base = small_bytes();

    let mut b = base.clone();
    put_u64(&mut b, 8, u64::MAX);
    assert_count_past_end(b, "tensor count");

    let mut b = base.clone();
    put_u64(&mut b, 8, 1 << 40);
    assert_count_past_end(b, "tensor count");

    let mut b = base.clone();
    put_u64(&mut b, 16, u64::MAX / 2);
    assert_count_past_end(b, "metadata kv count");

    // Length of the first key.
    let mut b = base.clone();
    put_u64(&mut b, 24, u64::MAX);
    assert_count_past_end(b, "metadata key #0");

    // Length of the string value "llama".
    let mut b = base.clone();
    let at = after(&b, "general.architecture") + 4;
    put_u64(&mut b, at, 1 << 50);
    assert_count_past_end(b, "general.architecture");

    // Element count of the token array.
    let mut b = base.clone();
    let at = after(&b, "tokenizer.ggml.tokens") + 8;
    put_u64(&mut b, at, u64::MAX);
    assert_count_past_end(b, "tokenizer.ggml.tokens");

    // Tensor name length.
    let mut b = base;
    let at = find(&b, b"tok_embd") - 8;
    put_u64(&mut b, at, u64::MAX - 3);
    assert_count_past_end(b, "name of tensor #0");
}

fn assert_bad_shape(dims: &[u64], reason: &str) {
    let mut b = small_bytes();
    let at = tensor_info_at(&b, "tok_embd", 2);
    put_u32(&mut b, at.n_dims, dims.len() as u32);
    // Keep the rest of the info in place by only using 2-dim shapes here.
    assert_eq!(dims.len(), 2);
    put_u64(&mut b, at.dims, dims[0]);
    put_u64(&mut b, at.dims + 8, dims[1]);
    let e = parse_err(b);
    assert!(
        matches!(&e, GgufError::InvalidShape { name, .. } if name == "tok_embd"),
        "{e}"
    );
    assert!(e.to_string().contains(reason), "{e}");
}

#[test]
fn bad_dims() {
    assert_bad_shape(&[1 << 32, 1 << 32], "element count overflows");
    assert_bad_shape(&[1 << 62, 2], "element count overflows");
    assert_bad_shape(&[4, 0], "dimension 1 is zero");
    assert_bad_shape(&[u64::MAX - 1, 1], "exceeds i64::MAX");

    let mut b = small_bytes();
    let at = tensor_info_at(&b, "tok_embd", 2);
    put_u32(&mut b, at.n_dims, 5);
    let e = parse_err(b);
    assert!(matches!(e, GgufError::TooManyDims { n_dims: 5, .. }), "{e}");
    assert!(e.to_string().contains("tok_embd"), "{e}");

    // ne0 = 4 is fine for F32 but not for Q8_0's 32-element blocks.
    let mut b = small_bytes();
    let at = tensor_info_at(&b, "tok_embd", 2);
    put_u32(&mut b, at.ty, GgmlType::Q8_0.id());
    let e = parse_err(b);
    assert!(
        e.to_string()
            .contains("not a multiple of the Q8_0 block size 32"),
        "{e}"
    );
}

#[test]
fn tensor_data_out_of_range() {
    // Big but valid shape whose data cannot be in this tiny file.
    let mut b = small_bytes();
    let at = tensor_info_at(&b, "tok_embd", 2);
    put_u64(&mut b, at.dims + 8, 1 << 30);
    let e = parse_err(b);
    assert!(
        matches!(&e, GgufError::TensorOutOfBounds { name, .. } if name == "tok_embd"),
        "{e}"
    );

    // Offset just past the end, and an offset that overflows when added.
    for off in [4096, u64::MAX - 31] {
        let mut b = small_bytes();
        let at = tensor_info_at(&b, "blk.0.w", 1);
        put_u64(&mut b, at.offset, off);
        let e = parse_err(b);
        assert!(
            matches!(&e, GgufError::TensorOutOfBounds { name, .. } if name == "blk.0.w"),
            "{e}"
        );
    }
}

#[test]
fn misaligned_offset() {
    let mut b = small_bytes();
    let at = tensor_info_at(&b, "blk.0.w", 1);
    put_u64(&mut b, at.offset, 33);
    let e = parse_err(b);
    assert!(
        matches!(
            &e,
            GgufError::MisalignedTensor {
                offset: 33,
                alignment: 32,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("blk.0.w"), "{e}");
}

#[test]
fn unknown_value_types() {
    let mut b = small_bytes();
    let at = after(&b, "llama.block_count");
    put_u32(&mut b, at, 13);
    let e = parse_err(b);
    assert!(
        matches!(&e, GgufError::UnknownValueType { key, type_id: 13 } if key == "llama.block_count"),
        "{e}"
    );

    let mut b = small_bytes();
    let at = after(&b, "tokenizer.ggml.tokens") + 4;
    put_u32(&mut b, at, 99);
    let e = parse_err(b);
    assert!(
        matches!(&e, GgufError::UnknownValueType { type_id: 99, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("tokenizer.ggml.tokens"), "{e}");
}

#[test]
fn unknown_tensor_type() {
    for id in [4, 33, 40, u32::MAX] {
        let mut b = small_bytes();
        let at = tensor_info_at(&b, "blk.0.w", 1);
        put_u32(&mut b, at.ty, id);
        let e = parse_err(b);
        assert_eq!(
            e.to_string(),
            format!("tensor 'blk.0.w': unknown ggml type id {id}")
        );
    }
}

#[test]
fn duplicates() {
    let mut w = small_writer();
    w.add("llama.block_count", Value::U32(3));
    let e = parse_err(w.to_bytes());
    assert_eq!(e.to_string(), "duplicate metadata key 'llama.block_count'");

    let mut w = small_writer();
    w.add_tensor("tok_embd", GgmlType::F32, &[8], f32_to_bytes(&[0.0; 8]));
    let e = parse_err(w.to_bytes());
    assert_eq!(e.to_string(), "duplicate tensor name 'tok_embd'");
}

#[test]
fn invalid_utf8() {
    for (needle, what) in [
        ("llama.block_count", "metadata key #1"),
        ("llama", "value of metadata key 'general.architecture'"),
        ("<s>", "value of metadata key 'tokenizer.ggml.tokens'"),
        ("tok_embd", "name of tensor #0"),
    ] {
        let mut b = small_bytes();
        let at = find(&b, needle.as_bytes());
        b[at + 1] = 0xff;
        let e = parse_err(b);
        assert!(matches!(e, GgufError::InvalidUtf8 { .. }), "{e}");
        assert!(e.to_string().contains(what), "{what}: {e}");
    }
}

#[test]
fn invalid_bool_and_alignment() {
    let mut b = small_bytes();
    let at = after(&b, "flag") + 4;
    b[at] = 2;
    let e = parse_err(b);
    assert_eq!(
        e.to_string(),
        "metadata key 'flag': invalid bool byte 2 (must be 0 or 1)"
    );

    for a in [0u32, 3, 48] {
        let mut w = small_writer();
        w.add("general.alignment", Value::U32(a));
        let e = parse_err(w.to_bytes());
        assert!(
            matches!(e, GgufError::InvalidAlignment { value } if value == u64::from(a)),
            "{e}"
        );
    }
    let mut w = small_writer();
    w.add("general.alignment", Value::from("32"));
    let e = parse_err(w.to_bytes());
    assert!(matches!(e, GgufError::WrongType { .. }), "{e}");
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(Value::U8(1), |v, _| Value::Array(vec![v]))
}

#[test]
fn nesting_depth_limit() {
    let mut w = GgufWriter::new();
    w.add("deep", nested(MAX_ARRAY_DEPTH));
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(f.get("deep"), Some(&nested(MAX_ARRAY_DEPTH)));

    let mut w = GgufWriter::new();
    w.add("deep", nested(MAX_ARRAY_DEPTH + 1));
    let e = parse_err(w.to_bytes());
    assert!(
        matches!(&e, GgufError::NestingTooDeep { key, .. } if key == "deep"),
        "{e}"
    );

    // A hand-made bomb: 100k nested array headers claiming one element each.
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&4u64.to_le_bytes());
    b.extend_from_slice(b"bomb");
    b.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..100_000 {
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
    }
    let e = parse_err(b);
    assert!(matches!(e, GgufError::NestingTooDeep { .. }), "{e}");
}

#[test]
fn missing_keys_and_tensors() {
    let f = GgufFile::from_bytes(small_bytes()).unwrap();
    let e = f.require_u32("llama.context_length").unwrap_err();
    assert_eq!(e.to_string(), "missing metadata key 'llama.context_length'");
    assert!(matches!(
        f.require_str("x"),
        Err(GgufError::MissingKey { .. })
    ));
    assert!(matches!(
        f.require_f32("x"),
        Err(GgufError::MissingKey { .. })
    ));
    assert!(matches!(
        f.require_u64("x"),
        Err(GgufError::MissingKey { .. })
    ));
    assert!(matches!(
        f.require_array("x"),
        Err(GgufError::MissingKey { .. })
    ));
    let e = f.require_tensor("output.weight").unwrap_err();
    assert_eq!(e.to_string(), "missing tensor 'output.weight'");
    assert!(f.tensor("output.weight").is_none());
}

#[test]
fn wrong_value_types() {
    let f = GgufFile::from_bytes(small_bytes()).unwrap();
    let e = f.get_u32("general.architecture").unwrap_err();
    assert_eq!(
        e.to_string(),
        "metadata key 'general.architecture': expected u32, found string"
    );
    assert!(matches!(
        f.get_str("llama.block_count"),
        Err(GgufError::WrongType { found: "u32", .. })
    ));
    assert!(matches!(
        f.require_f32("llama.block_count"),
        Err(GgufError::WrongType { .. })
    ));
    assert!(matches!(
        f.get_bool("llama.block_count"),
        Err(GgufError::WrongType { .. })
    ));
    assert!(matches!(
        f.get_u64("flag"),
        Err(GgufError::WrongType { found: "bool", .. })
    ));
    assert!(matches!(
        f.get_array("flag"),
        Err(GgufError::WrongType { .. })
    ));
    assert!(matches!(
        f.get_i32_array("tokenizer.ggml.tokens"),
        Err(GgufError::WrongType { .. })
    ));

    let mut w = GgufWriter::new();
    w.add("mixed", Value::Array(vec![Value::from(vec![1u8])]))
        .add("big", Value::from(vec![1u64, u64::MAX]));
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert!(matches!(
        f.get_string_array("mixed"),
        Err(GgufError::WrongType { found: "array", .. })
    ));
    assert!(matches!(
        f.get_i32_array("big"),
        Err(GgufError::OutOfRange { .. })
    ));
}
