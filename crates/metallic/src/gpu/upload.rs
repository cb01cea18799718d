//! Weight uploads through a small ring of reusable, mapped staging buffers, filled by
//! several threads.
//!
//! Why not `queue.write_buffer` for the weights: every call allocates a fresh staging
//! buffer in host memory the driver has to map for the GPU, and the caller must first
//! build the bytes in a host `Vec` of its own, so every weight byte was written twice, each
//! time into newly faulted pages, on one thread. On the H100 host that loaded 7B F16 (15 GB)
//! at about 1 GB/s: 16 s of the 20 s before the first token. Here each row is written once
//! into staging memory that is reused, by up to `MAX_THREADS` threads, while the GPU
//! copies the previous piece.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// Staging buffers in the ring: one being filled, the others being copied or waiting.
const SLOTS: usize = 3;
/// The largest staging buffer; a piece of an upload is at most this (or one row).
const MAX_SLOT_BYTES: u64 = 64 << 20;
const MIN_SLOT_BYTES: u64 = 1 << 20;
/// Threads filling one piece; below `PARALLEL_MIN_BYTES` a piece is filled on the caller's.
const MAX_THREADS: usize = 16;
const PARALLEL_MIN_BYTES: usize = 4 << 20;

/// Writes row `r` of an upload in full (padding included) into the slice, which holds
/// zeros on entry.
pub type FillRow<'a> = dyn Fn(usize, &mut [u8]) -> Result<()> + Sync + 'a;

/// Whether a slot's buffer is mapped: None while a map is pending, then its outcome.
type MapState = Arc<Mutex<Option<bool>>>;

struct Slot {
    buf: wgpu::Buffer,
    mapped: MapState,
    /// The submission that last copied out of it.
    copied_in: Option<wgpu::SubmissionIndex>,
}

#[derive(Default)]
pub(crate) struct StagingRing {
    slots: Vec<Option<Slot>>,
    next: usize,
}

impl StagingRing {
    /// The next slot, mapped and holding at least `bytes`; waits for its last copy.
    fn acquire(&mut self, gpu: &Gpu, bytes: u64) -> Result<&mut Slot> {
        if self.slots.is_empty() {
            self.slots.resize_with(SLOTS, || None);
        }
        let i = self.next;
        self.next = (i + 1) % SLOTS;
        let slot = &mut self.slots[i];
        if let Some(s) = slot.as_ref() {
            if let Err(e) = wait_mapped(gpu, s) {
                // Not reused: the next pass round the ring makes a new one.
                *slot = None;
                return Err(e);
            }
        }
        if slot.as_ref().is_none_or(|s| s.buf.size() < bytes) {
            let size = bytes.next_power_of_two().clamp(
                MIN_SLOT_BYTES,
                MAX_SLOT_BYTES.max(bytes.next_multiple_of(4)),
            );
            *slot = Some(Slot {
                buf: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("upload staging"),
                    size,
                    usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: true,
                }),
                mapped: Arc::new(Mutex::new(Some(true))),
                copied_in: None,
            });
        }
        Ok(slot.as_mut().expect("slot set above"))
    }
}

/// Waits for the slot's last copy, whose completion also runs its map callback; failing
/// that, for all submitted work once more, then gives up rather than spin.
fn wait_mapped(gpu: &Gpu, slot: &Slot) -> Result<()> {
    let polls = [
        wgpu::PollType::Wait {
            submission_index: slot.copied_in.clone(),
            timeout: None,
        },
        wgpu::PollType::wait_indefinitely(),
    ];
    for poll in polls {
        if let Some(ok) = *lock(&slot.mapped) {
            return map_outcome(ok);
        }
        gpu.device
            .poll(poll)
            .map_err(|e| Error::Gpu(format!("device poll failed: {e}")))?;
    }
    match *lock(&slot.mapped) {
        Some(ok) => map_outcome(ok),
        None => Err(Error::Gpu(
            "an upload staging buffer was never mapped again".into(),
        )),
    }
}

fn map_outcome(ok: bool) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::Gpu("mapping an upload staging buffer failed".into()))
    }
}

/// A panic while filling a piece (in `fill_row`) must not make every later upload panic
/// on a poisoned lock: the state behind these locks stays valid whatever a fill did.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Rows per piece: as many as fit `piece_bytes`, a multiple of `step` so every piece but
/// the last starts and ends 4-byte aligned (buffer copies need it), at least `step`.
fn rows_per_piece(row_bytes: usize, piece_bytes: usize) -> usize {
    let step = 4 / gcd(row_bytes, 4);
    ((piece_bytes / row_bytes) / step * step).max(step)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Gpu {
    /// Writes `rows` rows of `row_bytes` bytes each to `dst` from offset 0, row `r` made by
    /// `fill_row(r, ..)`. The copies are queued, not waited for: later submissions see the
    /// data, and [`Gpu::wait_idle`] waits for it.
    pub fn upload_rows(
        &self,
        dst: &wgpu::Buffer,
        row_bytes: usize,
        rows: usize,
        fill_row: &FillRow,
    ) -> Result<()> {
        self.upload_rows_in_pieces(dst, row_bytes, rows, MAX_SLOT_BYTES as usize, fill_row)
    }

    /// [`Gpu::upload_rows`] through staging pieces of at most `piece_bytes` (or one row):
    /// tests use small pieces to go round the ring.
    pub fn upload_rows_in_pieces(
        &self,
        dst: &wgpu::Buffer,
        row_bytes: usize,
        rows: usize,
        piece_bytes: usize,
        fill_row: &FillRow,
    ) -> Result<()> {
        if rows == 0 || row_bytes == 0 {
            return Ok(());
        }
        let total = (rows * row_bytes) as u64;
        if total.next_multiple_of(4) > dst.size() {
            return Err(Error::Gpu(format!(
                "upload of {total} bytes into a buffer of {}",
                dst.size()
            )));
        }
        let per_piece = rows_per_piece(row_bytes, piece_bytes);
        let mut ring = lock(&self.staging);
        let mut first = 0;
        while first < rows {
            let n = per_piece.min(rows - first);
            let bytes = n * row_bytes;
            let padded = (bytes as u64).next_multiple_of(4);
            let slot = ring.acquire(self, padded)?;
            {
                let mut view = slot
                    .buf
                    .get_mapped_range_mut(..padded)
                    .map_err(|e| Error::Gpu(format!("mapping upload staging: {e}")))?;
                let (rows_out, mut pad) = view.slice(..).split_at(bytes);
                pad.fill(0);
                fill_rows(rows_out, row_bytes, first, n, fill_row)?;
            }
            slot.buf.unmap();
            let mut enc = self.device.create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(&slot.buf, 0, dst, (first * row_bytes) as u64, padded);
            slot.copied_in = Some(self.queue.submit([enc.finish()]));
            let state = Arc::new(Mutex::new(None));
            slot.mapped = state.clone();
            slot.buf.map_async(wgpu::MapMode::Write, .., move |r| {
                *lock(&state) = Some(r.is_ok());
            });
            first += n;
        }
        Ok(())
    }

    /// Frees the upload staging buffers (host memory the driver keeps mapped); the next
    /// upload makes new ones.
    pub fn release_staging(&self) {
        *lock(&self.staging) = StagingRing::default();
    }
}

/// A disjoint part of a mapped staging buffer, to hand to a filling thread.
struct SendRows<'a>(wgpu::WriteOnly<'a, [u8]>);

// SAFETY: a `WriteOnly<[u8]>` is exclusive write access to its bytes, like `&mut [u8]`, which
// is `Send`. wgpu only declares `Send` for `WriteOnly<T>` with a sized `T` (its impl carries
// the implicit `T: Sized` bound); the parts sent come from `split_at`, so they never overlap.
unsafe impl Send for SendRows<'_> {}

/// Rows `first .. first + n` into `out`, split between threads by whole rows.
fn fill_rows(
    out: wgpu::WriteOnly<'_, [u8]>,
    row_bytes: usize,
    first: usize,
    n: usize,
    fill_row: &FillRow,
) -> Result<()> {
    let threads = if n * row_bytes < PARALLEL_MIN_BYTES {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, NonZeroUsize::get)
            .min(MAX_THREADS)
            .min(n)
    };
    if threads == 1 {
        return fill_range(out, row_bytes, first, n, fill_row);
    }
    let per_thread = n.div_ceil(threads);
    std::thread::scope(|s| {
        let mut rest = out;
        let mut handles = Vec::new();
        let mut start = 0;
        while start < n {
            let m = per_thread.min(n - start);
            let (part, tail) = rest.split_at(m * row_bytes);
            rest = tail;
            let row0 = first + start;
            let part = SendRows(part);
            handles.push(s.spawn(move || {
                let part = part;
                fill_range(part.0, row_bytes, row0, m, fill_row)
            }));
            start += m;
        }
        // Every thread is joined (an unjoined one that panicked would make `scope` panic),
        // then the first error wins.
        let results: Vec<Result<()>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Gpu("an upload thread panicked".into())))
            })
            .collect();
        results.into_iter().collect()
    })
}

/// Rows `first .. first + n`, each built in a zeroed row buffer and copied out whole
/// (the staging memory may be write-combined: written once, in order, never read).
fn fill_range(
    mut out: wgpu::WriteOnly<'_, [u8]>,
    row_bytes: usize,
    first: usize,
    n: usize,
    fill_row: &FillRow,
) -> Result<()> {
    let mut row = vec![0u8; row_bytes];
    for i in 0..n {
        row.fill(0);
        fill_row(first + i, &mut row)?;
        out.slice(i * row_bytes..(i + 1) * row_bytes)
            .copy_from_slice(&row);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_stay_aligned() {
        for row_bytes in [1, 2, 3, 6, 8, 34, 1184, 37_888, 100 << 20] {
            for piece in [4, 4096, MAX_SLOT_BYTES as usize] {
                let n = rows_per_piece(row_bytes, piece);
                assert_eq!((n * row_bytes) % 4, 0, "row_bytes {row_bytes}");
                assert!(n * row_bytes <= piece || n <= 4, "row_bytes {row_bytes}");
            }
        }
    }
}
