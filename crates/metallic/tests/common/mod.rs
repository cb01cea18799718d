//! Shared helpers for the per-kernel tests: device setup, poisoned buffers, weight
//! matrices written as in-memory GGUF, and the normalised error check.
#![allow(dead_code)]

use metallic::gguf::{dequant, GgmlType, GgufFile, GgufWriter};
use metallic::gpu::{read_buffer, storage_buffer, Dispatch, Gpu, GpuOptions, Plan};
use metallic::synthetic::Rng;
use metallic::tensor::{Activation, GpuMatrix};

/// A quiet-NaN bit pattern: every output buffer is filled with it before a run, so an
/// element the kernel forgot to write reads back as NaN.
pub const POISON: u32 = 0x7fc0_0000;

pub fn gpu(max_binding_bytes: Option<u64>) -> Gpu {
    Gpu::new(&GpuOptions {
        max_binding_bytes,
        ..Default::default()
    })
    .expect("a Vulkan device (lavapipe) is required")
}

/// One device per binding limit for the whole test binary, for tests that would otherwise
/// open one per case: NVIDIA's driver stopped finding an adapter after a few dozen devices
/// opened in one process (the H100, session 12).
pub fn shared_gpu(max_binding_bytes: Option<u64>) -> std::sync::Arc<Gpu> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static DEVICES: OnceLock<Mutex<HashMap<Option<u64>, Arc<Gpu>>>> = OnceLock::new();
    let mut devices = DEVICES.get_or_init(Mutex::default).lock().unwrap();
    devices
        .entry(max_binding_bytes)
        .or_insert_with(|| Arc::new(gpu(max_binding_bytes)))
        .clone()
}

/// `n` random values in `[-scale, scale)`, never exactly zero.
pub fn rand_vec(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v = rng.symmetric();
            scale * if v == 0.0 { 0.5 } else { v }
        })
        .collect()
}

pub fn poison(gpu: &Gpu, buf: &wgpu::Buffer) {
    let words = vec![POISON; (buf.size() / 4) as usize];
    gpu.queue.write_buffer(buf, 0, bytemuck::cast_slice(&words));
}

pub fn write_f32(gpu: &Gpu, buf: &wgpu::Buffer, data: &[f32]) {
    gpu.queue.write_buffer(buf, 0, bytemuck::cast_slice(data));
}

pub fn write_u32(gpu: &Gpu, buf: &wgpu::Buffer, data: &[u32]) {
    gpu.queue.write_buffer(buf, 0, bytemuck::cast_slice(data));
}

/// The whole buffer as f32.
pub fn read_f32(gpu: &Gpu, buf: &wgpu::Buffer) -> Vec<f32> {
    let bytes = read_buffer(gpu, buf, 0, buf.size()).expect("readback");
    bytemuck::pod_collect_to_vec(&bytes)
}

/// The whole buffer as u32.
pub fn read_u32(gpu: &Gpu, buf: &wgpu::Buffer) -> Vec<u32> {
    let bytes = read_buffer(gpu, buf, 0, buf.size()).expect("readback");
    bytemuck::pod_collect_to_vec(&bytes)
}

/// A storage buffer holding `data`.
pub fn f32_buffer(gpu: &Gpu, label: &str, data: &[f32]) -> wgpu::Buffer {
    let buf = storage_buffer(gpu, label, data.len() as u64 * 4);
    write_f32(gpu, &buf, data);
    buf
}

/// The 4-word step state [pos, n_rows, n_out, 0].
pub fn state_buffer(gpu: &Gpu, pos: u32, n_rows: u32, n_out: u32) -> wgpu::Buffer {
    let buf = storage_buffer(gpu, "state", 16);
    write_u32(gpu, &buf, &[pos, n_rows, n_out, 0]);
    buf
}

/// Writes `data` ((rows, cols), dense) into `act`'s padded rows; padding gets `pad`.
pub fn write_rows(gpu: &Gpu, act: &Activation, data: &[f32], pad: f32) {
    let (cols, stride) = (act.cols as usize, act.stride as usize);
    let mut full = vec![pad; (act.buf.size() / 4) as usize];
    for (r, row) in data.chunks(cols).enumerate() {
        full[r * stride..r * stride + cols].copy_from_slice(row);
    }
    write_f32(gpu, &act.buf, &full);
}

/// The first `rows` rows of `act` without padding, read back from `full` (the whole
/// buffer as read back).
pub fn unpad(act: &Activation, full: &[f32], rows: usize) -> Vec<f32> {
    let (cols, stride) = (act.cols as usize, act.stride as usize);
    (0..rows)
        .flat_map(|r| full[r * stride..r * stride + cols].iter().copied())
        .collect()
}

/// Records `dispatches` into one compute pass for a batch of `rows` and submits it.
pub fn run(gpu: &Gpu, dispatches: Vec<Dispatch>, rows: u32) {
    let mut plan = Plan::default();
    plan.extend(dispatches);
    run_plan(gpu, &plan, rows, 1);
}

/// Encodes `plan` `times` times back to back in one compute pass and submits it.
pub fn run_plan(gpu: &Gpu, plan: &Plan, rows: u32, times: u32) {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        for _ in 0..times {
            plan.encode(&mut pass, rows);
        }
    }
    gpu.queue.submit([enc.finish()]);
}

/// Asserts `got` matches `want` with max|got - want| / max|want| <= tol; a NaN in `got`
/// (a poisoned element left unwritten) fails with its index.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().position(|v| !v.is_finite()) {
        panic!(
            "{what}: element {i} of {} is {} (not written?), expected {}",
            got.len(),
            got[i],
            want[i]
        );
    }
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{what}: reference is all zeros");
    let (mut worst, mut at) = (0f64, 0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g as f64 - w).abs();
        if d > worst {
            worst = d;
            at = i;
        }
    }
    let rel = worst / scale;
    assert!(
        rel <= tol,
        "{what}: max|Δ|/max|ref| = {rel:.3e} > {tol:.0e} (element {at}: got {}, expected {})",
        got[at],
        want[at]
    );
}

/// Asserts every word of `got` still holds the poison pattern.
pub fn assert_poisoned(what: &str, got: &[f32]) {
    if let Some(i) = got.iter().position(|v| v.to_bits() != POISON) {
        panic!(
            "{what}: element {i} was overwritten with {} (should be untouched)",
            got[i]
        );
    }
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Serialises a (rows, k) matrix as a GGUF tensor of type `ty`, uploads it and returns
/// it with its dequantized values (what the kernel should see).
pub fn matrix(gpu: &Gpu, ty: GgmlType, rows: u32, k: u32, data: &[f32]) -> (GpuMatrix, Vec<f32>) {
    matrix_from_bytes(gpu, ty, rows, k, encode(ty, data))
}

/// A (rows, k) matrix from the raw bytes of a GGUF tensor of type `ty`, uploaded, with its
/// dequantized values (the CPU dequantizer's).
pub fn matrix_from_bytes(
    gpu: &Gpu,
    ty: GgmlType,
    rows: u32,
    k: u32,
    bytes: Vec<u8>,
) -> (GpuMatrix, Vec<f32>) {
    let mut w = GgufWriter::new();
    w.add_tensor("w", ty, &[k as u64, rows as u64], bytes);
    let file = GgufFile::from_bytes(w.to_bytes()).expect("gguf");
    let info = file.require_tensor("w").expect("tensor");
    let deq = dequant::to_f32(ty, file.tensor_data(info), (rows * k) as usize).expect("dequant");
    let m = GpuMatrix::upload(gpu, &file, info).expect("upload");
    (m, deq)
}

/// `data` as the bytes of a GGUF tensor of type `ty`.
fn encode(ty: GgmlType, data: &[f32]) -> Vec<u8> {
    match ty {
        GgmlType::F32 => dequant::f32_to_bytes(data),
        GgmlType::F16 => dequant::f32_to_f16_bytes(data),
        GgmlType::BF16 => dequant::f32_to_bf16_bytes(data),
        GgmlType::Q8_0 => dequant::quantize_q8_0(data),
        t => panic!("no fixture for {t:?}"),
    }
}

/// Random gate and up matrices, (ffn, k) each and drawn in that order, of type `ty`,
/// uploaded with their rows interleaved as the fused gate/up kernels read them. Returns
/// the matrix and the dequantized gate and up values.
pub fn gate_up_matrix(
    gpu: &Gpu,
    rng: &mut Rng,
    ty: GgmlType,
    ffn: usize,
    k: usize,
) -> (GpuMatrix, Vec<f32>, Vec<f32>) {
    let gate = rand_vec(rng, ffn * k, 1.0);
    let up = rand_vec(rng, ffn * k, 1.0);
    let mut wr = GgufWriter::new();
    wr.add_tensor("gate", ty, &[k as u64, ffn as u64], encode(ty, &gate));
    wr.add_tensor("up", ty, &[k as u64, ffn as u64], encode(ty, &up));
    let file = GgufFile::from_bytes(wr.to_bytes()).expect("gguf");
    let (gi, ui) = (
        file.require_tensor("gate").expect("gate"),
        file.require_tensor("up").expect("up"),
    );
    let deq = |t| dequant::to_f32(ty, file.tensor_data(t), ffn * k).expect("dequant");
    let (gd, ud) = (deq(gi), deq(ui));
    let w = GpuMatrix::upload_interleaved(gpu, &file, &[gi, ui], "gate_up").expect("upload");
    (w, gd, ud)
}

// The GPU's KV cache is f16, two halves per 32-bit word (low half first):
// - K as (n_kv_heads, head_dim / 2, ctx) words, word (h, i, t) = dims (i, i + hd / 2) of
//   key t;
// - V as (n_kv_heads, ctx, head_dim) halves, word j of a row = dims (2j, 2j + 1).
// The tests reason in (n_kv_heads, ctx, head_dim) f32. These convert between the two,
// written from that description, not from the kernels. A word still holding POISON
// reads back as POISON in both of its dims, so `assert_poisoned` works on the result.

/// The largest relative error of rounding to f16 (ties to even): 2^-11.
pub const F16_ROUNDING: f64 = 1.0 / 2048.0;

pub fn pack_f16_pair(lo: f32, hi: f32) -> u32 {
    let h = |x: f32| half::f16::from_f32(x).to_bits() as u32;
    h(lo) | (h(hi) << 16)
}

pub fn unpack_f16_pair(w: u32) -> (f32, f32) {
    if w == POISON {
        let p = f32::from_bits(POISON);
        return (p, p);
    }
    let h = |b: u32| half::f16::from_bits(b as u16).to_f32();
    (h(w & 0xffff), h(w >> 16))
}

pub fn k_cache_from_gpu(words: &[u32], n_kv: usize, hd: usize, ctx: usize) -> Vec<f32> {
    let half = hd / 2;
    let mut k = vec![0f32; n_kv * ctx * hd];
    for h in 0..n_kv {
        for i in 0..half {
            for t in 0..ctx {
                let (lo, hi) = unpack_f16_pair(words[(h * half + i) * ctx + t]);
                k[(h * ctx + t) * hd + i] = lo;
                k[(h * ctx + t) * hd + i + half] = hi;
            }
        }
    }
    k
}

pub fn k_cache_to_gpu(k: &[f32], n_kv: usize, hd: usize, ctx: usize) -> Vec<u32> {
    let half = hd / 2;
    let mut words = vec![0u32; n_kv * ctx * half];
    for h in 0..n_kv {
        for i in 0..half {
            for t in 0..ctx {
                let row = (h * ctx + t) * hd;
                words[(h * half + i) * ctx + t] = pack_f16_pair(k[row + i], k[row + i + half]);
            }
        }
    }
    words
}

pub fn v_cache_from_gpu(words: &[u32]) -> Vec<f32> {
    words
        .iter()
        .flat_map(|&w| {
            let (lo, hi) = unpack_f16_pair(w);
            [lo, hi]
        })
        .collect()
}

pub fn v_cache_to_gpu(v: &[f32]) -> Vec<u32> {
    v.chunks(2).map(|p| pack_f16_pair(p[0], p[1])).collect()
}

/// A storage buffer holding `data`.
pub fn u32_buffer(gpu: &Gpu, label: &str, data: &[u32]) -> wgpu::Buffer {
    let buf = storage_buffer(gpu, label, data.len() as u64 * 4);
    write_u32(gpu, &buf, data);
    buf
}

/// Bytes of one f16 K or V cache of `n_kv` heads, `hd` dims and `ctx` positions.
pub fn f16_cache_bytes(n_kv: usize, hd: usize, ctx: usize) -> u64 {
    (n_kv * hd * ctx * 2) as u64
}

/// x as the Q8_0 GEMV with int8 activations (`Q8Dot::I8`) sees it: per 32-element block
/// d = max|x| / 127 and q = round(x / d), ties to even, in f32 as the kernel computes
/// them; returns d * q. `x.len()` is a multiple of 32 (Q8_0 rows are).
pub fn q8_activations(x: &[f32]) -> Vec<f64> {
    assert!(x.len().is_multiple_of(32), "Q8_0 rows are whole blocks");
    x.chunks(32)
        .flat_map(|block| {
            let d = block.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            block
                .iter()
                .map(move |&v| d as f64 * (v * inv).round_ties_even().clamp(-128.0, 127.0) as f64)
        })
        .collect()
}

/// Whether a GEMV over `ty` weights with `cfg` quantizes its x (see [`q8_activations`]).
pub fn quantizes_x(ty: GgmlType, cfg: &metallic::kernels::matmul_gemv::GemvConfig) -> bool {
    ty == GgmlType::Q8_0 && cfg.q8_dot == metallic::kernels::matmul_gemv::Q8Dot::I8
}

/// As `write_rows`, for an f16 activation: `data` rounded to f16, padding `pad`.
pub fn write_rows_f16(gpu: &Gpu, act: &Activation, data: &[f32], pad: f32) {
    let (cols, stride) = (act.cols as usize, act.stride as usize);
    let mut full = vec![pad; (act.buf.size() / 2) as usize];
    for (r, row) in data.chunks(cols).enumerate() {
        full[r * stride..r * stride + cols].copy_from_slice(row);
    }
    gpu.queue
        .write_buffer(&act.buf, 0, &dequant::f32_to_f16_bytes(&full));
}

/// The whole buffer as f16 values, widened to f32.
pub fn read_f16(gpu: &Gpu, buf: &wgpu::Buffer) -> Vec<f32> {
    let bytes = read_buffer(gpu, buf, 0, buf.size()).expect("readback");
    dequant::to_f32(GgmlType::F16, &bytes, bytes.len() / 2).expect("f16")
}

/// `v` rounded to f16 (and back).
pub fn round_f16(v: &[f32]) -> Vec<f32> {
    dequant::to_f32(GgmlType::F16, &dequant::f32_to_f16_bytes(v), v.len()).expect("f16")
}
