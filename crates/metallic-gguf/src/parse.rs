//! Header, metadata and tensor-info parsing. Every length or count read from the
//! file is checked against the bytes that remain before anything is allocated.

use std::collections::HashMap;

use crate::file::TensorInfo;
use crate::value::{self, min_encoded_size, Value};
use crate::{
    GgmlType, GgufError, Result, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS,
};

pub(crate) struct Parsed {
    pub version: u32,
    pub alignment: u64,
    pub data_offset: u64,
    pub metadata: Vec<(String, Value)>,
    pub kv_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
}

/// Smallest possible encoding of one kv: key length + value type + a 1-byte value.
const MIN_KV_SIZE: u64 = 8 + 4 + 1;
/// Smallest possible tensor info: name length + n_dims + type + offset.
const MIN_TENSOR_INFO_SIZE: u64 = 8 + 4 + 4 + 8;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what(),
                offset: self.pos as u64,
                needed: n,
                remaining: self.remaining(),
            });
        }
        // n <= remaining <= usize::MAX, so the cast is lossless.
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: impl FnOnce() -> String) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Fails unless `count` items of at least `min_size` bytes could still fit.
    fn check_count(&self, count: u64, min_size: u64, what: impl FnOnce() -> String) -> Result<()> {
        match count.checked_mul(min_size) {
            Some(total) if total <= self.remaining() => Ok(()),
            _ => Err(GgufError::CountPastEnd {
                what: what(),
                offset: self.pos as u64,
                count,
                min_size,
                remaining: self.remaining(),
            }),
        }
    }

    fn string(&mut self, what: impl Fn() -> String) -> Result<String> {
        let len = self.u64(|| format!("length of {}", what()))?;
        self.check_count(len, 1, || format!("length of {}", what()))?;
        let start = self.pos as u64;
        let bytes = self.take(len, &what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(GgufError::InvalidUtf8 {
                what: what(),
                offset: start,
            }),
        }
    }

    fn value(&mut self, type_id: u32, key: &str, depth: usize) -> Result<Value> {
        let what = || format!("value of metadata key '{key}'");
        Ok(match type_id {
            value::T_U8 => Value::U8(u8::from_le_bytes(self.array(what)?)),
            value::T_I8 => Value::I8(i8::from_le_bytes(self.array(what)?)),
            value::T_U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            value::T_I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            value::T_U32 => Value::U32(u32::from_le_bytes(self.array(what)?)),
            value::T_I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            value::T_U64 => Value::U64(u64::from_le_bytes(self.array(what)?)),
            value::T_I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            value::T_F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            value::T_F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            value::T_BOOL => match self.array::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(GgufError::InvalidBool {
                        key: key.to_owned(),
                        value: b,
                    })
                }
            },
            value::T_STRING => Value::String(self.string(what)?),
            value::T_ARRAY => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::NestingTooDeep {
                        key: key.to_owned(),
                        limit: MAX_ARRAY_DEPTH,
                    });
                }
                let arr_what = || format!("array header of metadata key '{key}'");
                let elem_type = self.u32(arr_what)?;
                let count = self.u64(arr_what)?;
                let min =
                    min_encoded_size(elem_type).ok_or_else(|| GgufError::UnknownValueType {
                        key: key.to_owned(),
                        type_id: elem_type,
                    })?;
                self.check_count(count, min, || format!("array of metadata key '{key}'"))?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(elem_type, key, depth + 1)?);
                }
                Value::Array(items)
            }
            other => {
                return Err(GgufError::UnknownValueType {
                    key: key.to_owned(),
                    type_id: other,
                })
            }
        })
    }
}

pub(crate) fn parse(buf: &[u8]) -> Result<Parsed> {
    let mut cur = Cursor { buf, pos: 0 };
    let magic: [u8; 4] = cur.array(|| "magic".into())?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = cur.u32(|| "version".into())?;
    if version != 2 && version != 3 {
        let hint = if matches!(version.swap_bytes(), 1..=3) {
            " (looks like a big-endian GGUF; only little-endian is supported)"
        } else {
            " (only versions 2 and 3 are supported)"
        };
        return Err(GgufError::UnsupportedVersion { version, hint });
    }
    let tensor_count = cur.u64(|| "tensor count".into())?;
    let kv_count = cur.u64(|| "metadata kv count".into())?;

    cur.check_count(kv_count, MIN_KV_SIZE, || "metadata kv count".into())?;
    let mut metadata = Vec::with_capacity(kv_count as usize);
    let mut kv_index = HashMap::with_capacity(kv_count as usize);
    for i in 0..kv_count {
        let key = cur.string(|| format!("metadata key #{i}"))?;
        let type_id = cur.u32(|| format!("value type of metadata key '{key}'"))?;
        let value = cur.value(type_id, &key, 0)?;
        if kv_index.contains_key(&key) {
            return Err(GgufError::DuplicateKey { key });
        }
        kv_index.insert(key.clone(), metadata.len());
        metadata.push((key, value));
    }

    let alignment = match kv_index.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(&i) => {
            let v = &metadata[i].1;
            let a = v.as_u64().ok_or(GgufError::WrongType {
                key: "general.alignment".into(),
                expected: "u32",
                found: v.type_name(),
            })?;
            if a == 0 || !a.is_power_of_two() || a > u64::from(u32::MAX) {
                return Err(GgufError::InvalidAlignment { value: a });
            }
            a
        }
    };

    cur.check_count(tensor_count, MIN_TENSOR_INFO_SIZE, || "tensor count".into())?;
    let mut tensors = Vec::with_capacity(tensor_count as usize);
    let mut tensor_index = HashMap::with_capacity(tensor_count as usize);
    for i in 0..tensor_count {
        let info = tensor_info(&mut cur, i, alignment)?;
        if tensor_index.contains_key(&info.name) {
            return Err(GgufError::DuplicateTensor { name: info.name });
        }
        tensor_index.insert(info.name.clone(), tensors.len());
        tensors.push(info);
    }

    // cur.pos <= file size and alignment <= u32::MAX, so this cannot overflow.
    let data_offset = (cur.pos as u64).next_multiple_of(alignment);
    let file_size = buf.len() as u64;
    for t in &tensors {
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        match (start, end) {
            (Some(_), Some(end)) if end <= file_size => {}
            _ => {
                return Err(GgufError::TensorOutOfBounds {
                    name: t.name.clone(),
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    file_size,
                })
            }
        }
    }

    Ok(Parsed {
        version,
        alignment,
        data_offset,
        metadata,
        kv_index,
        tensors,
        tensor_index,
    })
}

fn tensor_info(cur: &mut Cursor<'_>, index: u64, alignment: u64) -> Result<TensorInfo> {
    let name = cur.string(|| format!("name of tensor #{index}"))?;
    let what = || format!("info of tensor '{name}'");
    let n_dims = cur.u32(what)?;
    if n_dims as usize > MAX_DIMS {
        return Err(GgufError::TooManyDims {
            name,
            n_dims,
            max: MAX_DIMS,
        });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(cur.u64(what)?);
    }
    let type_id = cur.u32(what)?;
    let offset = cur.u64(what)?;
    let Some(ggml_type) = GgmlType::from_id(type_id) else {
        return Err(GgufError::UnknownTensorType { name, type_id });
    };

    let bad_shape = |reason: String| GgufError::InvalidShape {
        name: name.clone(),
        dims: dims.clone(),
        reason,
    };
    let mut n_elements: u64 = 1;
    for (i, &d) in dims.iter().enumerate() {
        if d == 0 {
            return Err(bad_shape(format!("dimension {i} is zero")));
        }
        // ggml stores ne as int64_t, so anything above i64::MAX is a negative size.
        if d > i64::MAX as u64 {
            return Err(bad_shape(format!("dimension {i} ({d}) exceeds i64::MAX")));
        }
        n_elements = match n_elements.checked_mul(d) {
            Some(n) if n <= i64::MAX as u64 => n,
            _ => return Err(bad_shape("element count overflows".into())),
        };
    }
    let ne0 = dims.first().copied().unwrap_or(1);
    if ne0 % ggml_type.block_size() != 0 {
        return Err(bad_shape(format!(
            "ne0 = {ne0} is not a multiple of the {ggml_type} block size {}",
            ggml_type.block_size()
        )));
    }
    let n_bytes = ggml_type
        .bytes_for(n_elements)
        .ok_or_else(|| bad_shape("byte size overflows".into()))?;
    if offset % alignment != 0 {
        return Err(GgufError::MisalignedTensor {
            name,
            offset,
            alignment,
        });
    }
    Ok(TensorInfo {
        name,
        ggml_type,
        dims,
        offset,
        n_elements,
        n_bytes,
    })
}
