#![allow(dead_code)] // each test binary uses a different subset

use metallic_gguf::dequant::f32_to_bytes;
use metallic_gguf::{GgmlType, GgufError, GgufFile, GgufWriter, Value};

/// A small valid file with a few kv types and two tensors. The last tensor's
/// data is a multiple of 32 bytes, so the file ends exactly where its data ends
/// and every proper prefix is missing required bytes.
pub fn small_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::from("llama"))
        .add("llama.block_count", Value::U32(2))
        .add("llama.rope.freq_base", Value::F32(10000.0))
        .add("tokenizer.ggml.tokens", Value::from(vec!["a", "b", "<s>"]))
        .add("flag", Value::Bool(true))
        .add_tensor("tok_embd", GgmlType::F32, &[4, 2], f32_to_bytes(&[1.0; 8]))
        .add_tensor(
            "blk.0.w",
            GgmlType::F32,
            &[8],
            f32_to_bytes(&[0.5, -1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]),
        );
    w
}

pub fn small_bytes() -> Vec<u8> {
    small_writer().to_bytes()
}

pub fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not found", String::from_utf8_lossy(needle)))
}

pub fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Offset just past a serialized string, given where its bytes start.
pub fn after(b: &[u8], s: &str) -> usize {
    find(b, s.as_bytes()) + s.len()
}

/// Byte offsets of a tensor info's fields, found via its (unique) name.
pub struct InfoAt {
    pub n_dims: usize,
    pub dims: usize,
    pub ty: usize,
    pub offset: usize,
}

pub fn tensor_info_at(b: &[u8], name: &str, n_dims: usize) -> InfoAt {
    let n = after(b, name);
    InfoAt {
        n_dims: n,
        dims: n + 4,
        ty: n + 4 + 8 * n_dims,
        offset: n + 4 + 8 * n_dims + 4,
    }
}

pub fn parse_err(bytes: Vec<u8>) -> GgufError {
    match GgufFile::from_bytes(bytes) {
        Ok(f) => panic!("expected an error, parsed {f:?}"),
        Err(e) => e,
    }
}
