//! Qwen2 / Qwen2.5: RMSNorm, attention with q/k/v bias, NEOX RoPE, grouped-query
//! attention, SwiGLU MLP, tied or untied output.

use metallic_gguf::{GgufFile, TensorInfo};

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Plan};
use crate::kernels::matmul_gemv::{self, InputNorm};
use crate::kernels::rope_kv;
use crate::model::blocks::{Builder, KvCacheLayer};
use crate::model::tensor_names as names;
use crate::model::ModelConfig;
use crate::runtime::StepBuffers;
use crate::tensor::{upload_vector, GpuMatrix};

/// Q, K and V projections: stacked into one (q_dim + 2 kv_dim, hidden) matrix when
/// they share a type (one GEMV; row chunks split only between heads, for the decode
/// plan's RoPE epilogue), else kept apart and written to the same output.
pub enum QkvWeights {
    Stacked(GpuMatrix),
    Separate([GpuMatrix; 3]),
}

/// The MLP's gate and up projections: interleaved into one (2 ffn, hidden) matrix whose
/// GEMV writes silu(gate) * up directly when they share a type, else kept apart and
/// followed by a SwiGLU kernel.
pub enum FfnUpWeights {
    Fused(GpuMatrix),
    Separate { gate: GpuMatrix, up: GpuMatrix },
}

pub struct LayerWeights {
    pub attn_norm: wgpu::Buffer, // (hidden)
    pub wqkv: QkvWeights,        // (q_dim + 2 kv_dim, hidden)
    pub bqkv: wgpu::Buffer,      // (q_dim + 2 kv_dim)
    pub wo: GpuMatrix,           // (hidden, q_dim)
    pub ffn_norm: wgpu::Buffer,  // (hidden)
    pub ffn_up: FfnUpWeights,    // gate and up, (ffn, hidden) each
    pub w_down: GpuMatrix,       // (hidden, ffn)
}

/// The dispatch plans of a loaded model. A step runs `prefill` or `decode` (by its row
/// count, see `Engine`), then `head`.
pub struct ModelPlans {
    /// Prompt chunks of more than one row: tiled GEMMs and flash attention.
    pub prefill: Plan,
    /// Single-row steps (decode, and one-row prompt chunks): fused kernels.
    pub decode: Plan,
    /// `decode` with each layer's attention combine folded into its output projection
    /// (one dispatch less per layer), for short contexts. None where turned off
    /// (`METALLIC_ATTN_FOLD=off`) or where the fold would not pay.
    pub short_decode: Option<ShortDecode>,
    /// The last row to the next token: final norm + LM head, then the sampler.
    pub head: Plan,
}

/// The short-context decode plan and how far it is valid.
pub struct ShortDecode {
    pub plan: Plan,
    /// The most keys (position + 1) a step may see: its merge reads only this few chunks.
    pub max_keys: u32,
}

pub struct Qwen2Weights {
    pub token_embd: GpuMatrix, // (vocab, hidden)
    pub layers: Vec<LayerWeights>,
    pub output_norm: wgpu::Buffer, // (hidden)
    /// None when tied to `token_embd`.
    pub output: Option<GpuMatrix>, // (vocab, hidden)
}

impl Qwen2Weights {
    pub fn output(&self) -> &GpuMatrix {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    /// Uploads every tensor, checking each shape against the config.
    /// `progress(bytes_done)` is called after each tensor.
    pub fn load(
        gpu: &Gpu,
        file: &GgufFile,
        cfg: &ModelConfig,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Self> {
        let mut done = 0u64;
        let matrix_info = |name: &str, rows: u32, k: u32| -> Result<&TensorInfo> {
            let info = file.require_tensor(name)?;
            expect_shape(name, &info.dims, &[k as u64, rows as u64])?;
            Ok(info)
        };
        // Uploads `parts` stacked (or interleaved) by rows and reports progress.
        let mut load = |parts: &[&TensorInfo], name: &str, rows: Rows| -> Result<GpuMatrix> {
            let m = match rows {
                Rows::Stacked => GpuMatrix::upload_stacked(gpu, file, parts, name)?,
                Rows::Heads(head_dim) => {
                    GpuMatrix::upload_stacked_grouped(gpu, file, parts, name, head_dim)?
                }
                Rows::Interleaved => GpuMatrix::upload_interleaved(gpu, file, parts, name)?,
            };
            done += parts.iter().map(|p| p.n_bytes).sum::<u64>();
            progress(done);
            Ok(m)
        };
        let token_embd = load(
            &[matrix_info(names::TOKEN_EMBD, cfg.vocab, cfg.hidden)?],
            names::TOKEN_EMBD,
            Rows::Stacked,
        )?;
        let (h, q, kv, f) = (cfg.hidden, cfg.q_dim(), cfg.kv_dim(), cfg.ffn);
        let mut layers = Vec::with_capacity(cfg.n_layers as usize);
        for l in 0..cfg.n_layers {
            let n = |s: &str| names::layer(l, s);
            let qkv = [
                matrix_info(&n(names::ATTN_Q), q, h)?,
                matrix_info(&n(names::ATTN_K), kv, h)?,
                matrix_info(&n(names::ATTN_V), kv, h)?,
            ];
            let wqkv = if qkv.iter().all(|t| t.ggml_type == qkv[0].ggml_type) {
                QkvWeights::Stacked(load(
                    &qkv,
                    &n("attn_qkv.weight"),
                    Rows::Heads(cfg.head_dim),
                )?)
            } else {
                QkvWeights::Separate([
                    load(&qkv[..1], &qkv[0].name, Rows::Stacked)?,
                    load(&qkv[1..2], &qkv[1].name, Rows::Stacked)?,
                    load(&qkv[2..], &qkv[2].name, Rows::Stacked)?,
                ])
            };
            let gate_up = [
                matrix_info(&n(names::FFN_GATE), f, h)?,
                matrix_info(&n(names::FFN_UP), f, h)?,
            ];
            let ffn_up = if gate_up[0].ggml_type == gate_up[1].ggml_type {
                FfnUpWeights::Fused(load(&gate_up, &n("ffn_gate_up.weight"), Rows::Interleaved)?)
            } else {
                FfnUpWeights::Separate {
                    gate: load(&gate_up[..1], &gate_up[0].name, Rows::Stacked)?,
                    up: load(&gate_up[1..], &gate_up[1].name, Rows::Stacked)?,
                }
            };
            let biases = [
                vector_info(file, &n(names::ATTN_Q_BIAS), q)?,
                vector_info(file, &n(names::ATTN_K_BIAS), kv)?,
                vector_info(file, &n(names::ATTN_V_BIAS), kv)?,
            ];
            layers.push(LayerWeights {
                attn_norm: vector(gpu, file, &n(names::ATTN_NORM), h)?,
                wqkv,
                bqkv: upload_vector(gpu, file, &biases)?,
                wo: load(
                    &[matrix_info(&n(names::ATTN_OUTPUT), h, q)?],
                    &n(names::ATTN_OUTPUT),
                    Rows::Stacked,
                )?,
                ffn_norm: vector(gpu, file, &n(names::FFN_NORM), h)?,
                ffn_up,
                w_down: load(
                    &[matrix_info(&n(names::FFN_DOWN), h, f)?],
                    &n(names::FFN_DOWN),
                    Rows::Stacked,
                )?,
            });
        }
        let output_norm = vector(gpu, file, names::OUTPUT_NORM, h)?;
        let output = if cfg.tied_output {
            None
        } else {
            Some(load(
                &[matrix_info(names::OUTPUT, cfg.vocab, h)?],
                names::OUTPUT,
                Rows::Stacked,
            )?)
        };
        Ok(Self {
            token_embd,
            layers,
            output_norm,
            output,
        })
    }
}

/// How `Qwen2Weights::load` lays out a matrix made of one or more GGUF tensors.
#[derive(Clone, Copy)]
enum Rows {
    Stacked,
    /// Stacked, with row chunks split only between heads of this many rows.
    Heads(u32),
    Interleaved,
}

/// The forward pass as dispatch plans (see `ModelPlans`).
pub fn build(
    b: &Builder<'_>,
    cfg: &ModelConfig,
    w: &Qwen2Weights,
    s: &StepBuffers,
    fold_attention: bool,
) -> Result<ModelPlans> {
    // The fold pays for itself only where every o-proj workgroup re-reading x per live
    // chunk stays cheap (the 0.5B shape, not the 7B one).
    let live = w
        .layers
        .iter()
        .map(|l| matmul_gemv::attn_input_live_chunks(&b.gemv, &l.wo))
        .min()
        .unwrap_or(0);
    let short_decode = match fold_attention && live > 0 {
        true => Some(ShortDecode {
            plan: build_decode(b, cfg, w, s, true)?,
            max_keys: matmul_gemv::attn_input_max_keys(&s.attn_scratch, live),
        }),
        false => None,
    };
    Ok(ModelPlans {
        prefill: build_prefill(b, cfg, w, s)?,
        decode: build_decode(b, cfg, w, s, false)?,
        short_decode,
        head: build_head(b, cfg, w, s)?,
    })
}

/// Prompt chunks: tiled GEMMs (each weight tile read once per tile of rows, not once per
/// row), RoPE + KV append, and causal flash attention over the chunk's query tiles.
fn build_prefill(
    b: &Builder<'_>,
    cfg: &ModelConfig,
    w: &Qwen2Weights,
    s: &StepBuffers,
) -> Result<Plan> {
    let shape = cfg.attn_shape(s.kv_ctx);
    // The GEMMs' inputs in f16 where the buffers exist (cooperative-matrix GEMMs).
    let h = s.h16.as_ref().unwrap_or(&s.h);
    let mut body = Plan::default();
    b.embed(&mut body, &w.token_embd, &s.tokens, &s.x)?;
    for (layer, cache) in w.layers.iter().zip(&s.kv_cache) {
        // Attention block: x += Wo . attn(rope(Wq h + bq), rope(Wk h + bk), Wv h + bv)
        b.rms_norm(&mut body, &s.x, &layer.attn_norm, h, cfg.rms_eps)?;
        match &layer.wqkv {
            QkvWeights::Stacked(w) => {
                b.matmul(&mut body, w, Some(&layer.bqkv), h, &s.qkv, 0, false)?
            }
            QkvWeights::Separate(ws) => {
                let mut col = 0;
                for w in ws {
                    b.matmul(&mut body, w, Some(&layer.bqkv), h, &s.qkv, col, false)?;
                    col += w.rows;
                }
            }
        }
        b.rope_and_cache(&mut body, shape, &s.qkv, cache, &s.inv_freq)?;
        b.attention_prefill(&mut body, shape, &s.qkv, cache, &s.attn)?;
        b.matmul(&mut body, &layer.wo, None, &s.attn, &s.x, 0, true)?;
        // MLP block: x += W_down . (silu(W_gate h) * W_up h)
        b.rms_norm(&mut body, &s.x, &layer.ffn_norm, h, cfg.rms_eps)?;
        // The SwiGLU GEMM writes act in f16 where it can; the separate kernel writes f32.
        let act = match &layer.ffn_up {
            FfnUpWeights::Fused(w) => {
                let act = s.act16.as_ref().unwrap_or(&s.act);
                b.matmul_swiglu(&mut body, w, h, act)?;
                act
            }
            FfnUpWeights::Separate { gate, up } => {
                let (gate_out, up_out) = separate_ffn_buffers(s)?;
                b.matmul(&mut body, gate, None, h, gate_out, 0, false)?;
                b.matmul(&mut body, up, None, h, up_out, 0, false)?;
                b.swiglu(&mut body, gate_out, up_out, &s.act)?;
                &s.act
            }
        };
        b.matmul(&mut body, &layer.w_down, None, act, &s.x, 0, true)?;
    }
    Ok(body)
}

/// Single-row steps: the RMSNorms fold into the GEMVs that follow them, and RoPE with the
/// KV append into the QKV GEMV, and attention is split over positions (two dispatches),
/// so a layer with stacked Q/K/V and fused gate/up is six dispatches. One row only: split
/// attention reads row 0 at `state.pos`. With `fold_attention` the attention leaves its
/// per-chunk partials and the output projection merges them: five dispatches (valid at
/// short contexts only: `ShortDecode`).
fn build_decode(
    b: &Builder<'_>,
    cfg: &ModelConfig,
    w: &Qwen2Weights,
    s: &StepBuffers,
    fold_attention: bool,
) -> Result<Plan> {
    let shape = cfg.attn_shape(s.kv_ctx);
    let inv_freq = rope_kv::inv_freq(cfg.rope_theta, cfg.head_dim);
    let norm = |weight| InputNorm {
        weight,
        eps: cfg.rms_eps,
    };
    let mut body = Plan::default();
    b.embed(&mut body, &w.token_embd, &s.tokens, &s.x)?;
    for (layer, cache) in w.layers.iter().zip(&s.kv_cache) {
        // Attention block: x += Wo . attn(rope(Wq h + bq), rope(Wk h + bk), Wv h + bv),
        // h = rmsnorm(x) computed inside the QKV GEMV.
        let attn_norm = norm(&layer.attn_norm);
        match &layer.wqkv {
            QkvWeights::Stacked(wqkv) if b.qkv_rope_unsupported(wqkv, shape).is_none() => {
                b.norm_qkv_rope_cache(
                    &mut body,
                    shape,
                    attn_norm,
                    wqkv,
                    &layer.bqkv,
                    &s.x,
                    &s.qkv,
                    cache,
                    &inv_freq,
                )?;
            }
            // Fallbacks: mixed Q/K/V types, or a device with too few storage bindings.
            QkvWeights::Stacked(wqkv) => {
                b.norm_linear(
                    &mut body,
                    attn_norm,
                    wqkv,
                    Some(&layer.bqkv),
                    &s.x,
                    &s.qkv,
                    0,
                )?;
                b.rope_and_cache(&mut body, shape, &s.qkv, cache, &s.inv_freq)?;
            }
            QkvWeights::Separate(ws) => {
                let mut col = 0;
                for w in ws {
                    b.norm_linear(
                        &mut body,
                        attn_norm,
                        w,
                        Some(&layer.bqkv),
                        &s.x,
                        &s.qkv,
                        col,
                    )?;
                    col += w.rows;
                }
                b.rope_and_cache(&mut body, shape, &s.qkv, cache, &s.inv_freq)?;
            }
        }
        let (attn, scratch) = (&s.attn, &s.attn_scratch);
        b.attention_decode(
            &mut body,
            shape,
            &s.qkv,
            cache,
            attn,
            scratch,
            !fold_attention,
        )?;
        if fold_attention {
            b.linear_residual_attn(&mut body, &layer.wo, attn, scratch, &s.x)?;
        } else {
            b.linear_residual(&mut body, &layer.wo, attn, &s.x)?;
        }
        // MLP block: x += W_down . (silu(W_gate h) * W_up h), h = rmsnorm(x) inside the GEMV.
        let ffn_norm = norm(&layer.ffn_norm);
        match &layer.ffn_up {
            FfnUpWeights::Fused(w) => b.norm_linear_swiglu(&mut body, ffn_norm, w, &s.x, &s.act)?,
            FfnUpWeights::Separate { gate, up } => {
                let (gate_out, up_out) = separate_ffn_buffers(s)?;
                b.norm_linear(&mut body, ffn_norm, gate, None, &s.x, gate_out, 0)?;
                b.norm_linear(&mut body, ffn_norm, up, None, &s.x, up_out, 0)?;
                b.swiglu(&mut body, gate_out, up_out, &s.act)?;
            }
        }
        b.linear_residual(&mut body, &layer.w_down, &s.act, &s.x)?;
    }
    Ok(body)
}

/// After either body: the batch's last row through the final norm and the LM head to
/// logits, then the sampler.
fn build_head(
    b: &Builder<'_>,
    cfg: &ModelConfig,
    w: &Qwen2Weights,
    s: &StepBuffers,
) -> Result<Plan> {
    let mut head = Plan::default();
    let norm = InputNorm {
        weight: &w.output_norm,
        eps: cfg.rms_eps,
    };
    b.norm_last_row_linear(&mut head, norm, w.output(), &s.x, &s.h, &s.logits)?;
    b.sample(&mut head, &s.sample_bindings(), cfg.vocab)?;
    Ok(head)
}

fn separate_ffn_buffers(
    s: &StepBuffers,
) -> Result<(&crate::tensor::Activation, &crate::tensor::Activation)> {
    s.gate_up
        .as_ref()
        .map(|(g, u)| (g, u))
        .ok_or_else(|| Error::Model("gate/up buffers were not allocated".into()))
}

fn vector_info<'f>(
    file: &'f GgufFile,
    name: &str,
    len: u32,
) -> Result<&'f metallic_gguf::TensorInfo> {
    let info = file.require_tensor(name)?;
    expect_shape(name, &info.dims, &[len as u64])?;
    Ok(info)
}

fn vector(gpu: &Gpu, file: &GgufFile, name: &str, len: u32) -> Result<wgpu::Buffer> {
    upload_vector(gpu, file, &[vector_info(file, name, len)?])
}

fn expect_shape(name: &str, dims: &[u64], want: &[u64]) -> Result<()> {
    if dims != want {
        return Err(Error::Model(format!(
            "tensor '{name}' has shape {dims:?}, expected {want:?}"
        )));
    }
    Ok(())
}

/// Allocates one layer's KV cache (f16: two bytes a value).
pub fn kv_cache_layer(gpu: &Gpu, cfg: &ModelConfig, ctx: u32, layer: u32) -> Result<KvCacheLayer> {
    let bytes = cfg.n_kv_heads as u64 * ctx as u64 * cfg.head_dim as u64 * 2;
    if bytes > gpu.max_binding_bytes {
        return Err(Error::Invalid(format!(
            "a context of {ctx} needs {bytes} bytes of KV cache per layer, over the device's binding limit; lower --ctx-size"
        )));
    }
    Ok(KvCacheLayer {
        k: crate::gpu::storage_buffer(gpu, &format!("blk.{layer}.k_cache"), bytes),
        v: crate::gpu::storage_buffer(gpu, &format!("blk.{layer}.v_cache"), bytes),
    })
}
