//! Weight uploads through the staging ring (`Gpu::upload_rows`): every byte lands where it
//! belongs whatever the row length, piece size and thread count, and errors come back.

mod common;

use metallic::gpu::{read_buffer, storage_buffer};
use metallic::synthetic::Rng;

/// Random bytes for `rows` rows of `row_bytes`.
fn random_rows(rng: &mut Rng, rows: usize, row_bytes: usize) -> Vec<Vec<u8>> {
    (0..rows)
        .map(|_| {
            (0..row_bytes)
                .map(|_| (rng.next_u64() >> 56) as u8)
                .collect()
        })
        .collect()
}

fn check_upload(row_bytes: usize, rows: usize, piece_bytes: usize, seed: u64) {
    let gpu = common::gpu(None);
    let mut rng = Rng::new(seed);
    let data = random_rows(&mut rng, rows, row_bytes);
    let total = rows * row_bytes;
    let dst = storage_buffer(&gpu, "dst", total as u64 + 8);
    gpu.queue
        .write_buffer(&dst, 0, &vec![0xAB; dst.size() as usize]);
    gpu.upload_rows_in_pieces(&dst, row_bytes, rows, piece_bytes, &|r, out| {
        out.copy_from_slice(&data[r]);
        Ok(())
    })
    .expect("upload");
    gpu.wait_idle().unwrap();
    let got = read_buffer(&gpu, &dst, 0, dst.size()).unwrap();
    let want: Vec<u8> = data.concat();
    if let Some(i) = (0..total).find(|&i| got[i] != want[i]) {
        panic!(
            "row_bytes {row_bytes}, piece {piece_bytes}: byte {i} (row {}) is {:#x}, want {:#x}",
            i / row_bytes,
            got[i],
            want[i]
        );
    }
    // The last piece is padded to 4 bytes with zeros; past that the poison stays.
    let padded = total.next_multiple_of(4);
    assert!(
        got[total..padded].iter().all(|&b| b == 0),
        "padding not zeroed"
    );
    assert!(
        got[padded..].iter().all(|&b| b == 0xAB),
        "bytes past the upload were overwritten"
    );
}

#[test]
fn unaligned_rows_through_many_pieces() {
    // 6-byte rows (pieces must hold an even number of them), 4 KiB pieces: ~15 pieces, so
    // each of the three staging buffers is mapped again and reused several times.
    check_upload(6, 10_001, 4096, 1);
    // One row larger than a piece: one row per piece.
    check_upload(5000, 7, 4096, 2);
}

#[test]
fn large_pieces_are_filled_by_threads() {
    // 7B F16 down-projection rows, 8 MiB pieces: several pieces, each split between threads.
    check_upload(37_888, 1000, 8 << 20, 3);
}

#[test]
fn a_failing_row_fails_the_upload() {
    let gpu = common::gpu(None);
    let dst = storage_buffer(&gpu, "dst", 64 << 20);
    let err = gpu
        .upload_rows_in_pieces(&dst, 4096, 16 << 10, 8 << 20, &|r, out| {
            if r == 9000 {
                return Err(metallic::Error::Model("row 9000 is bad".into()));
            }
            out.fill(1);
            Ok(())
        })
        .expect_err("the bad row must fail the upload");
    assert!(err.to_string().contains("row 9000 is bad"), "{err}");
    assert_ring_usable(&gpu, &dst, 2);
}

/// An upload after a failed one lands whole.
fn assert_ring_usable(gpu: &metallic::gpu::Gpu, dst: &wgpu::Buffer, value: u8) {
    gpu.upload_rows(dst, 4096, 10, &|_, out| {
        out.fill(value);
        Ok(())
    })
    .expect("upload after a failed one");
    gpu.wait_idle().unwrap();
    let got = read_buffer(gpu, dst, 0, 4096 * 10).unwrap();
    assert!(got.iter().all(|&b| b == value));
}

#[test]
fn a_panicking_row_leaves_the_ring_usable() {
    let gpu = common::gpu(None);
    let dst = storage_buffer(&gpu, "dst", 64 << 20);
    let bad_row = |r: usize, out: &mut [u8]| -> metallic::Result<()> {
        assert!(r != 9000, "row 9000 panics");
        out.fill(1);
        Ok(())
    };
    // Threaded pieces: the panic comes back as an error.
    let err = gpu
        .upload_rows_in_pieces(&dst, 4096, 16 << 10, 8 << 20, &bad_row)
        .expect_err("a panicking row must fail the upload");
    assert!(err.to_string().contains("panicked"), "{err}");
    // A piece filled on the caller's thread: the panic unwinds to the caller.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        gpu.upload_rows_in_pieces(&dst, 64, 9001, 1 << 20, &bad_row)
    }));
    assert!(caught.is_err(), "the row's panic reaches the caller");
    assert_ring_usable(&gpu, &dst, 3);
}
