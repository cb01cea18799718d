//! Conversion between raw tensor bytes and f32 for the types the engine needs on
//! the CPU side (fixtures, reference checks, small tensors).

use half::{bf16, f16};

use crate::{GgmlType, GgufError, Result};

/// Elements per Q8_0 block.
pub const QK8_0: usize = 32;
/// Bytes per Q8_0 block: f16 scale + 32 × i8.
const Q8_0_BLOCK_BYTES: usize = 2 + QK8_0;

/// Decodes `n_elements` values of type `ty` from `data`, which must be exactly
/// that many elements long. Supports F32, F16, BF16 and Q8_0.
pub fn to_f32(ty: GgmlType, data: &[u8], n_elements: usize) -> Result<Vec<f32>> {
    let bad = |reason: String| GgufError::BadData { ty, reason };
    if !matches!(
        ty,
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q8_0
    ) {
        return Err(GgufError::UnsupportedType {
            ty,
            op: "dequantize to f32",
        });
    }
    let expected = ty.bytes_for(n_elements as u64).ok_or_else(|| {
        bad(format!(
            "{n_elements} elements is not a whole number of {}-element blocks",
            ty.block_size()
        ))
    })?;
    if data.len() as u64 != expected {
        return Err(bad(format!(
            "{n_elements} elements need {expected} bytes, got {}",
            data.len()
        )));
    }
    Ok(match ty {
        GgmlType::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        GgmlType::F16 => data
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        GgmlType::BF16 => data
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => {
            let mut out = Vec::with_capacity(n_elements);
            for block in data.chunks_exact(Q8_0_BLOCK_BYTES) {
                let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
                out.extend(block[2..].iter().map(|&q| d * f32::from(q as i8)));
            }
            out
        }
    })
}

/// Quantizes to Q8_0 exactly like ggml's `quantize_row_q8_0_ref`: per 32-element
/// block, `d = amax / 127`, `q = round(x * (1/d))` (half away from zero), and `d`
/// stored as f16. ggml multiplies by the reciprocal rather than dividing, which
/// can differ in the last ulp, so we do the same to stay bit-identical.
///
/// # Panics
/// If `x.len()` is not a multiple of 32.
pub fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    assert!(
        x.len() % QK8_0 == 0,
        "Q8_0 quantization needs a multiple of {QK8_0} values, got {}",
        x.len()
    );
    let mut out = Vec::with_capacity(x.len() / QK8_0 * Q8_0_BLOCK_BYTES);
    for block in x.chunks_exact(QK8_0) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        // `as i8` saturates, matching the C cast for the in-range values produced here.
        out.extend(block.iter().map(|&v| (v * id).round() as i8 as u8));
    }
    out
}

/// Round-to-nearest-even f16, little-endian.
pub fn f32_to_f16_bytes(x: &[f32]) -> Vec<u8> {
    x.iter()
        .flat_map(|&v| f16::from_f32(v).to_le_bytes())
        .collect()
}

/// Round-to-nearest-even bf16, little-endian.
pub fn f32_to_bf16_bytes(x: &[f32]) -> Vec<u8> {
    x.iter()
        .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
        .collect()
}

/// Little-endian f32 bytes, for building F32 fixtures.
pub fn f32_to_bytes(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}
