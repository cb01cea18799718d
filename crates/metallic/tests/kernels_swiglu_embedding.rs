//! SwiGLU and the token-embedding lookup (F16, F32, BF16, Q8_0 tables, split into chunks).

mod common;

use common::*;
use metallic::gguf::GgmlType;
use metallic::gpu::{storage_buffer, Gpu};
use metallic::kernels::elementwise::swiglu;
use metallic::kernels::embedding::embed;
use metallic::reference;
use metallic::synthetic::Rng;
use metallic::tensor::{Activation, GpuMatrix};

#[test]
fn swiglu_rows() {
    let gpu = gpu(None);
    let mut rng = Rng::new(51);
    for n in [100u32, 1000, 4864] {
        for rows in [1u32, 3] {
            let what = format!("swiglu n={n} rows={rows}");
            let gate = Activation::new(&gpu, "gate", rows + 1, n).unwrap();
            let up = Activation::new(&gpu, "up", rows + 1, n).unwrap();
            let act = Activation::new(&gpu, "act", rows + 1, n).unwrap();
            let count = (rows * n) as usize;
            // Gates over [-8, 8): silu's negative tail, its knee and its linear part.
            let gs = rand_vec(&mut rng, count, 8.0);
            let us = rand_vec(&mut rng, count, 2.0);
            write_rows(&gpu, &gate, &gs, 0.0);
            write_rows(&gpu, &up, &us, 0.0);
            poison(&gpu, &act.buf);
            let d = swiglu(&gpu, &gate, &up, &act).unwrap();
            run(&gpu, vec![d], rows);
            let got = read_f32(&gpu, &act.buf);
            let want: Vec<f64> = gs
                .iter()
                .zip(&us)
                .map(|(&g, &u)| reference::silu(g) as f64 * u as f64)
                .collect();
            assert_close(&what, &unpad(&act, &got, rows as usize), &want, 1e-4);
            let stride = act.stride as usize;
            let outside: Vec<f32> = got
                .iter()
                .enumerate()
                .filter(|(i, _)| i / stride >= rows as usize || i % stride >= n as usize)
                .map(|(_, v)| *v)
                .collect();
            assert_poisoned(&what, &outside);
        }
    }
}

#[test]
fn swiglu_over_65535_groups() {
    // Qwen2.5-7B's FFN (18944) in a prefill chunk of 886 rows needs 65564 groups of 256:
    // today wgpu rejects the dispatch ("dispatch group size dimension ([65564, 1, 1])
    // must be less or equal to 65535"). Needs ~200 MB of buffers.
    let gpu = gpu(None);
    let mut rng = Rng::new(52);
    let (n, rows) = (18_944u32, 886u32);
    let gate = Activation::new(&gpu, "gate", rows, n).unwrap();
    let up = Activation::new(&gpu, "up", rows, n).unwrap();
    let act = Activation::new(&gpu, "act", rows, n).unwrap();
    let count = (rows * n) as usize;
    let gs = rand_vec(&mut rng, count, 8.0);
    let us = rand_vec(&mut rng, count, 2.0);
    write_rows(&gpu, &gate, &gs, 0.0);
    write_rows(&gpu, &up, &us, 0.0);
    poison(&gpu, &act.buf);
    let d = swiglu(&gpu, &gate, &up, &act).unwrap();
    run(&gpu, vec![d], rows);
    let got = read_f32(&gpu, &act.buf);
    let want: Vec<f64> = gs
        .iter()
        .zip(&us)
        .map(|(&g, &u)| reference::silu(g) as f64 * u as f64)
        .collect();
    assert_close("swiglu 886 x 18944", &got, &want, 1e-4);
}

fn check_embedding(gpu: &Gpu, ty: GgmlType, vocab: u32, hidden: u32, tokens: &[u32]) {
    let mut rng = Rng::new(61 + hidden as u64);
    let data = rand_vec(&mut rng, (vocab * hidden) as usize, 1.0);
    let table = matrix(gpu, ty, vocab, hidden, &data);
    check_embedding_table(gpu, ty, table, hidden, tokens);
}

/// Looks `tokens` up in `table` (with its CPU-dequantized values) and expects the rows bit
/// for bit.
fn check_embedding_table(
    gpu: &Gpu,
    ty: GgmlType,
    (table, deq): (GpuMatrix, Vec<f32>),
    hidden: u32,
    tokens: &[u32],
) {
    let split = gpu.max_binding_bytes < 1 << 20;
    let vocab = table.rows;
    let what = format!("embed {ty:?} vocab={vocab} hidden={hidden} split={split}");
    let h = hidden as usize;
    let rows = tokens.len() as u32;
    let tok_buf = storage_buffer(gpu, "tokens", rows as u64 * 4);
    write_u32(gpu, &tok_buf, tokens);
    let out = Activation::new(gpu, "out", rows + 1, hidden).unwrap();
    poison(gpu, &out.buf);
    let ds = embed(gpu, &table, &tok_buf, &out).unwrap();
    assert_eq!(
        ds.len(),
        table.chunks.len(),
        "{what}: one dispatch per chunk"
    );
    run(gpu, ds, rows);
    let got = read_f32(gpu, &out.buf);
    let stride = out.stride as usize;
    for (m, &t) in tokens.iter().enumerate() {
        let row = &got[m * stride..m * stride + h];
        if let Some(i) = row.iter().position(|v| v.is_nan()) {
            panic!("{what}: row {m} (token {t}) element {i} not written");
        }
        // A lookup (and an exact dequantization: f16 scale x int8 fits in f32).
        let want = &deq[t as usize * h..][..h];
        if let Some(i) = (0..h).find(|&i| row[i].to_bits() != want[i].to_bits()) {
            panic!(
                "{what}: row {m} (token {t}) element {i}: got {}, expected {}",
                row[i], want[i]
            );
        }
    }
    let outside: Vec<f32> = got
        .iter()
        .enumerate()
        .filter(|(i, _)| i / stride >= rows as usize || i % stride >= h)
        .map(|(_, v)| *v)
        .collect();
    assert_poisoned(&what, &outside);
    if split {
        let firsts: Vec<u32> = table.chunks.iter().map(|c| c.first_row).collect();
        let hit = |t: u32| firsts.iter().rposition(|&f| f <= t).unwrap();
        let mut chunks_hit: Vec<usize> = tokens.iter().map(|&t| hit(t)).collect();
        chunks_hit.sort();
        chunks_hit.dedup();
        assert!(
            table.chunks.len() >= 3 && chunks_hit.len() >= 3,
            "{what}: {} chunks, tokens in {} of them",
            table.chunks.len(),
            chunks_hit.len()
        );
    }
}

#[test]
fn embedding_single_binding() {
    let gpu = gpu(None);
    let tokens = [0, 5, 151, 299, 5, 42, 298];
    check_embedding(&gpu, GgmlType::F32, 300, 100, &tokens);
    check_embedding(&gpu, GgmlType::F16, 300, 100, &tokens);
    check_embedding(&gpu, GgmlType::F16, 300, 896, &tokens);
    check_embedding(&gpu, GgmlType::BF16, 300, 100, &tokens);
    check_embedding(&gpu, GgmlType::Q8_0, 300, 96, &tokens);
    check_embedding(&gpu, GgmlType::Q8_0, 300, 896, &tokens[..1]);
}

#[test]
fn embedding_split_tables() {
    // 4 KiB bindings: F32 x 100 -> 10 rows per chunk, F16 x 100 -> 19, Q8_0 x 96 -> 42;
    // the tokens (with repeats and both ends of the vocabulary) span many chunks.
    // (8 rows + 1 spare of 104 floats still fit one binding for the output.)
    let gpu = gpu(Some(4096));
    let tokens = [0, 299, 17, 150, 150, 42, 263, 9];
    check_embedding(&gpu, GgmlType::F32, 300, 100, &tokens);
    check_embedding(&gpu, GgmlType::F16, 300, 100, &tokens);
    check_embedding(&gpu, GgmlType::F16, 300, 36, &tokens);
    check_embedding(&gpu, GgmlType::BF16, 300, 100, &tokens);
    check_embedding(&gpu, GgmlType::Q8_0, 300, 96, &tokens);
    check_embedding(&gpu, GgmlType::Q8_0, 300, 64, &tokens);
}

#[test]
fn embedding_q8_0_every_byte() {
    // Eight one-block rows holding the 256 byte values (-128 included, which Q8_0
    // quantizers never write but files may hold) under mixed scales: the kernels turn
    // bytes into floats with bit operations, not a conversion, so every value is checked.
    let gpu = gpu(None);
    let scales = [1.0f32, -0.5, 3.0, 0.0078125, 65504.0, -2.0, 0.25, 1.5];
    let mut bytes = Vec::new();
    for (row, d) in scales.iter().enumerate() {
        bytes.extend_from_slice(&half::f16::from_f32(*d).to_le_bytes());
        bytes.extend((0..32).map(|i| (row * 32 + i) as u8));
    }
    let table = matrix_from_bytes(&gpu, GgmlType::Q8_0, 8, 32, bytes);
    check_embedding_table(&gpu, GgmlType::Q8_0, table, 32, &[0, 1, 2, 3, 4, 5, 6, 7]);
}
