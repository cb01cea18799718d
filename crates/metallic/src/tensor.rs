//! GPU-resident tensors and the load-time relayout from GGUF.
//!
//! Matrices keep GGUF's row-major order (row = output feature, K contiguous) but:
//! - F16 rows are padded to a multiple of 8 halves so every row starts 16-byte aligned
//!   and the GEMV can load `vec4<u32>` (8 halves) per lane;
//! - F32 and BF16 matrices become F32, rows padded to a multiple of 4;
//! - Q8_0's 34-byte blocks (f16 scale + 32 int8) are split into an int8 matrix and an
//!   f16 scale array, because the blocks are not 4-byte aligned;
//! - matrices larger than the device's storage binding are split into row chunks.

use metallic_gguf::{dequant, GgmlType, GgufFile, TensorInfo};

use crate::error::{Error, Result};
use crate::gpu::{storage_buffer, Gpu, RowSplit};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    F16,
    F32,
    Q8_0,
}

/// One binding-sized piece of a matrix: rows `first_row .. first_row + rows`.
pub struct MatrixChunk {
    pub first_row: u32,
    pub rows: u32,
    /// (rows, row_words) u32 words.
    pub data: wgpu::Buffer,
    /// Q8_0 only: (rows, blocks_per_row) f16 scales.
    pub scales: Option<wgpu::Buffer>,
}

pub struct GpuMatrix {
    pub name: String,
    pub format: WeightFormat,
    /// Output features (rows).
    pub rows: u32,
    /// Input features (row length).
    pub k: u32,
    pub row_words: u32,
    pub blocks_per_row: u32,
    pub chunks: Vec<MatrixChunk>,
}

impl WeightFormat {
    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::F16 => "f16",
            WeightFormat::F32 => "f32",
            WeightFormat::Q8_0 => "q8_0",
        }
    }
}

impl GpuMatrix {
    /// Uploads a 2-D GGUF tensor (ne0 = K, ne1 = rows).
    pub fn upload(gpu: &Gpu, file: &GgufFile, info: &TensorInfo) -> Result<Self> {
        Self::upload_stacked(gpu, file, &[info], &info.name)
    }

    /// Uploads tensors of one type and row length as one matrix, their rows stacked in
    /// order (Q, K and V become one QKV matrix: one GEMV instead of three).
    pub fn upload_stacked(
        gpu: &Gpu,
        file: &GgufFile,
        parts: &[&TensorInfo],
        name: &str,
    ) -> Result<Self> {
        Self::upload_parts(gpu, file, parts, name, false, 1)
    }

    /// As `upload_stacked`, but row chunks (see `RowSplit`) split only between groups of
    /// `group_rows` rows: with the head dimension, every attention head of a stacked QKV
    /// matrix stays in one chunk, as the GEMV's RoPE epilogue needs.
    pub fn upload_stacked_grouped(
        gpu: &Gpu,
        file: &GgufFile,
        parts: &[&TensorInfo],
        name: &str,
        group_rows: u32,
    ) -> Result<Self> {
        Self::upload_parts(gpu, file, parts, name, false, group_rows)
    }

    /// Uploads same-shaped tensors with their rows interleaved (gate 0, up 0, gate 1,
    /// up 1, ...), so one GEMV workgroup holds both rows of a SwiGLU pair. Chunks split
    /// only between pairs.
    pub fn upload_interleaved(
        gpu: &Gpu,
        file: &GgufFile,
        parts: &[&TensorInfo],
        name: &str,
    ) -> Result<Self> {
        Self::upload_parts(gpu, file, parts, name, true, parts.len() as u32)
    }

    fn upload_parts(
        gpu: &Gpu,
        file: &GgufFile,
        parts: &[&TensorInfo],
        name: &str,
        interleave: bool,
        group: u32,
    ) -> Result<Self> {
        let first = parts
            .first()
            .ok_or_else(|| Error::Model(format!("'{name}' has no parts")))?;
        let (ty, k) = (first.ggml_type, matrix_dims(first)?.0);
        let first_rows = matrix_dims(first)?.1;
        let mut per_part: Vec<Vec<&[u8]>> = Vec::new();
        for part in parts {
            let (pk, prows) = matrix_dims(part)?;
            if part.ggml_type != ty || pk != k || (interleave && prows != first_rows) {
                return Err(Error::Model(format!(
                    "'{}' cannot be combined with '{}'",
                    part.name, first.name
                )));
            }
            let row_bytes = (part.n_bytes / prows.max(1) as u64) as usize;
            per_part.push(file.tensor_data(part).chunks_exact(row_bytes).collect());
        }
        let src_rows: Vec<&[u8]> = if interleave {
            (0..first_rows as usize)
                .flat_map(|r| per_part.iter().map(move |p| p[r]))
                .collect()
        } else {
            per_part.concat()
        };
        let rows = to_u32(src_rows.len() as u64, name)?;
        let (format, row_words, blocks_per_row) = match ty {
            GgmlType::F16 => (WeightFormat::F16, k.div_ceil(8) * 4, 0),
            GgmlType::F32 | GgmlType::BF16 => (WeightFormat::F32, k.div_ceil(4) * 4, 0),
            GgmlType::Q8_0 => (WeightFormat::Q8_0, k / 4, k / 32),
            other => return Err(unsupported(&first.name, other)),
        };
        let row_bytes = row_words as usize * 4;
        let split = RowSplit::grouped(rows, row_bytes as u64, gpu.max_binding_bytes, group)?;
        let mut chunks = Vec::with_capacity(split.chunks.len());
        for &(first_row, n) in &split.chunks {
            let src = &src_rows[first_row as usize..(first_row + n) as usize];
            let label = format!("{name}[{first_row}..{}]", first_row + n);
            let buf = storage_buffer(gpu, &label, n as u64 * row_bytes as u64);
            let mut scales = None;
            match ty {
                GgmlType::F16 => gpu.upload_rows(&buf, row_bytes, src.len(), &|r, out| {
                    out[..src[r].len()].copy_from_slice(src[r]);
                    Ok(())
                })?,
                GgmlType::F32 | GgmlType::BF16 => {
                    gpu.upload_rows(&buf, row_bytes, src.len(), &|r, out| {
                        let row = dequant::to_f32(ty, src[r], k as usize)?;
                        out[..row.len() * 4].copy_from_slice(bytemuck::cast_slice(&row));
                        Ok(())
                    })?
                }
                GgmlType::Q8_0 => {
                    // Each 34-byte block: its f16 scale to the scale rows, its 32 int8 to
                    // the weight rows.
                    let scale_row = blocks_per_row as usize * 2;
                    let sc = storage_buffer(
                        gpu,
                        &format!("{label}.scales"),
                        (n as u64 * scale_row as u64).next_multiple_of(4),
                    );
                    gpu.upload_rows(&sc, scale_row, src.len(), &|r, out| {
                        for (dst, block) in out.chunks_exact_mut(2).zip(src[r].chunks_exact(34)) {
                            dst.copy_from_slice(&block[..2]);
                        }
                        Ok(())
                    })?;
                    gpu.upload_rows(&buf, row_bytes, src.len(), &|r, out| {
                        for (dst, block) in out.chunks_exact_mut(32).zip(src[r].chunks_exact(34)) {
                            dst.copy_from_slice(&block[2..]);
                        }
                        Ok(())
                    })?;
                    scales = Some(sc);
                }
                _ => unreachable!("format checked above"),
            }
            chunks.push(MatrixChunk {
                first_row,
                rows: n,
                data: buf,
                scales,
            });
        }
        Ok(Self {
            name: name.to_string(),
            format,
            rows,
            k,
            row_words,
            blocks_per_row,
            chunks,
        })
    }

    pub fn bytes(&self) -> u64 {
        self.chunks
            .iter()
            .map(|c| c.data.size() + c.scales.as_ref().map_or(0, |s| s.size()))
            .sum()
    }
}

/// 1-D tensors (a norm weight, or biases to stack) as one f32 buffer, in order, zero-padded
/// to a multiple of 4 floats (the GEMV's norm prologue reads the norm weight as vec4).
pub fn upload_vector(gpu: &Gpu, file: &GgufFile, parts: &[&TensorInfo]) -> Result<wgpu::Buffer> {
    let mut values = Vec::new();
    for info in parts {
        let part = dequant::to_f32(
            info.ggml_type,
            file.tensor_data(info),
            info.n_elements as usize,
        )
        .map_err(|_| unsupported(&info.name, info.ggml_type))?;
        values.extend(part);
    }
    values.resize(values.len().next_multiple_of(4), 0.0);
    let label = parts.first().map_or("vector", |i| i.name.as_str());
    let buf = storage_buffer(gpu, label, values.len() as u64 * 4);
    gpu.queue
        .write_buffer(&buf, 0, bytemuck::cast_slice(&values));
    Ok(buf)
}

/// A batch of activation rows, each padded to a multiple of 8 floats so kernels can use
/// vector loads.
pub struct Activation {
    pub buf: wgpu::Buffer,
    /// Elements between rows (a multiple of 8, so rows start 16-byte aligned in f16 too).
    pub stride: u32,
    pub cols: u32,
    pub rows: u32,
    /// Elements are f16, not f32: the prefill inputs of the cooperative-matrix GEMMs.
    pub half: bool,
}

impl Activation {
    pub fn new(gpu: &Gpu, label: &str, rows: u32, cols: u32) -> Result<Self> {
        Self::with_element(gpu, label, rows, cols, false)
    }

    /// An f16 activation (see `half`).
    pub fn new_f16(gpu: &Gpu, label: &str, rows: u32, cols: u32) -> Result<Self> {
        Self::with_element(gpu, label, rows, cols, true)
    }

    /// Bytes of a (rows, cols) activation: rows padded to a stride of 8 elements.
    pub fn bytes(rows: u32, cols: u32, half: bool) -> u64 {
        rows as u64 * cols.next_multiple_of(8) as u64 * if half { 2 } else { 4 }
    }

    fn with_element(gpu: &Gpu, label: &str, rows: u32, cols: u32, half: bool) -> Result<Self> {
        let stride = cols.next_multiple_of(8);
        let bytes = Self::bytes(rows, cols, half);
        if bytes > gpu.max_binding_bytes {
            return Err(Error::Gpu(format!(
                "activation '{label}' ({rows} x {cols}) exceeds the storage binding limit; lower --batch-size"
            )));
        }
        Ok(Self {
            buf: storage_buffer(gpu, label, bytes.max(16)),
            stride,
            cols,
            rows,
            half,
        })
    }
}

/// (K, rows) of a 1-D or 2-D tensor.
fn matrix_dims(info: &TensorInfo) -> Result<(u32, u32)> {
    let (k, rows) = match info.dims.as_slice() {
        [k, rows] => (*k, *rows),
        [k] => (*k, 1),
        d => {
            return Err(Error::Model(format!(
                "tensor '{}' should be 2-D, has shape {d:?}",
                info.name
            )))
        }
    };
    Ok((to_u32(k, &info.name)?, to_u32(rows, &info.name)?))
}

fn to_u32(v: u64, name: &str) -> Result<u32> {
    u32::try_from(v)
        .map_err(|_| Error::Model(format!("tensor '{name}' dimension {v} is too large")))
}

fn unsupported(name: &str, ty: GgmlType) -> Error {
    Error::Model(format!(
        "tensor '{name}' has type {}, which Metallic does not support yet (supported: F32, F16, BF16, Q8_0)",
        ty.name()
    ))
}
