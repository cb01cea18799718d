use std::path::Path;

use crate::{GgmlType, Value, DEFAULT_ALIGNMENT, GGUF_MAGIC};

/// Builds GGUF v3 files, mainly for test fixtures.
///
/// Metadata is written in insertion order and duplicate keys are *not* rejected,
/// so tests can produce deliberately malformed files.
#[derive(Clone, Debug, Default)]
pub struct GgufWriter {
    alignment: Option<u64>,
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

#[derive(Clone, Debug)]
struct PendingTensor {
    name: String,
    ty: GgmlType,
    dims: Vec<u64>,
    data: Vec<u8>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the data alignment and records it as `general.alignment` (u32).
    ///
    /// # Panics
    /// If `a` is not a non-zero power of two that fits in u32.
    pub fn set_alignment(&mut self, a: u64) -> &mut Self {
        assert!(
            a.is_power_of_two() && a <= u64::from(u32::MAX),
            "GGUF alignment must be a power of two fitting in u32, got {a}"
        );
        self.alignment = Some(a);
        self
    }

    pub fn add(&mut self, key: &str, v: Value) -> &mut Self {
        self.metadata.push((key.to_owned(), v));
        self
    }

    /// # Panics
    /// If `data.len()` doesn't match what `ty` and `dims` require, or ne0 isn't a
    /// multiple of the block size.
    pub fn add_tensor(
        &mut self,
        name: &str,
        ty: GgmlType,
        dims: &[u64],
        data: Vec<u8>,
    ) -> &mut Self {
        let n: u64 = dims.iter().product();
        let ne0 = dims.first().copied().unwrap_or(1);
        assert!(
            ne0 % ty.block_size() == 0,
            "tensor '{name}': ne0 {ne0} is not a multiple of the {ty} block size"
        );
        let expected = ty.bytes_for(n).expect("tensor size overflows");
        assert_eq!(
            data.len() as u64,
            expected,
            "tensor '{name}': {ty} {dims:?} needs {expected} bytes, got {}",
            data.len()
        );
        self.tensors.push(PendingTensor {
            name: name.to_owned(),
            ty,
            dims: dims.to_vec(),
            data,
        });
        self
    }

    fn effective_alignment(&self) -> u64 {
        self.alignment.unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// The complete file, laid out like llama.cpp's `gguf_write_to_file`: every
    /// tensor's data (including the last) is padded to the alignment.
    pub fn to_bytes(&self) -> Vec<u8> {
        let align = self.effective_alignment() as usize;
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        let n_kv = self.metadata.len() + usize::from(self.alignment.is_some());
        out.extend_from_slice(&(n_kv as u64).to_le_bytes());

        if let Some(a) = self.alignment {
            write_kv(&mut out, "general.alignment", &Value::U32(a as u32));
        }
        for (k, v) in &self.metadata {
            write_kv(&mut out, k, v);
        }

        let mut offset = 0u64;
        for t in &self.tensors {
            write_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + t.data.len() as u64).next_multiple_of(align as u64);
        }
        pad(&mut out, align);
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
            pad(&mut out, align);
        }
        out
    }

    pub fn write_to(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_bytes())
    }
}

fn pad(out: &mut Vec<u8>, align: usize) {
    out.resize(out.len().next_multiple_of(align), 0);
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_kv(out: &mut Vec<u8>, key: &str, v: &Value) {
    write_str(out, key);
    out.extend_from_slice(&v.type_id().to_le_bytes());
    write_value(out, v);
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(b) => out.push(u8::from(*b)),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            // GGUF arrays carry one element type; an empty array has none to
            // offer, so u8 is as good as any (readers see an empty array either way).
            let elem_type = items.first().map_or(0, Value::type_id);
            assert!(
                items.iter().all(|i| i.type_id() == elem_type),
                "GGUF arrays must be homogeneous (nested arrays may differ inside)"
            );
            out.extend_from_slice(&elem_type.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                write_value(out, i);
            }
        }
    }
}
