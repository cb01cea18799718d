use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// A read-write storage buffer that can also be copied to and from.
pub fn storage_buffer(gpu: &Gpu, label: &str, bytes: u64) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        // Zero-sized bindings are invalid; keep at least one word.
        size: bytes.max(16).next_multiple_of(4),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// A uniform buffer holding one `#[repr(C)]` parameter block, written once at load.
pub fn uniform_buffer<T: bytemuck::Pod>(gpu: &Gpu, label: &str, value: &T) -> wgpu::Buffer {
    let bytes = bytemuck::bytes_of(value);
    let buf = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (bytes.len() as u64).next_multiple_of(16),
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    gpu.queue.write_buffer(&buf, 0, bytes);
    buf
}

/// Copies `len` bytes at `offset` of `buffer` back to the host and waits for them.
/// For tests and debugging only: the decode loop never does this per token.
pub fn read_buffer(gpu: &Gpu, buffer: &wgpu::Buffer, offset: u64, len: u64) -> Result<Vec<u8>> {
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: len.next_multiple_of(4),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, len.next_multiple_of(4));
    gpu.queue.submit([enc.finish()]);
    let (tx, rx) = std::sync::mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    gpu.wait_idle()?;
    rx.recv()
        .map_err(|_| Error::Gpu("readback callback dropped".into()))?
        .map_err(|e| Error::Gpu(format!("readback failed: {e}")))?;
    let data = staging
        .get_mapped_range(..)
        .map_err(|e| Error::Gpu(format!("{e}")))?[..len as usize]
        .to_vec();
    staging.unmap();
    Ok(data)
}

/// How a matrix of `n_rows` rows is split into bindings no larger than the device allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowSplit {
    /// `(first_row, row_count)` per chunk.
    pub chunks: Vec<(u32, u32)>,
}

impl RowSplit {
    /// `row_bytes` is the size of one row in the largest buffer of the chunk.
    pub fn new(n_rows: u32, row_bytes: u64, max_binding_bytes: u64) -> Result<Self> {
        Self::grouped(n_rows, row_bytes, max_binding_bytes, 1)
    }

    /// As `new`, but chunks hold whole groups of `group` rows (interleaved pairs).
    pub fn grouped(
        n_rows: u32,
        row_bytes: u64,
        max_binding_bytes: u64,
        group: u32,
    ) -> Result<Self> {
        let group = group.max(1) as u64;
        let per_chunk = max_binding_bytes / (row_bytes.max(1) * group) * group;
        if per_chunk == 0 {
            return Err(Error::Gpu(format!(
                "one row of {row_bytes} bytes exceeds the device's storage binding limit of {max_binding_bytes} bytes"
            )));
        }
        let per_chunk = per_chunk.min(u32::MAX as u64) as u32;
        let mut chunks = Vec::new();
        let mut start = 0u32;
        while start < n_rows {
            let rows = per_chunk.min(n_rows - start);
            chunks.push((start, rows));
            start += rows;
        }
        Ok(Self { chunks })
    }
}
