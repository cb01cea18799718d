//! Qwen2 / Qwen2.5: RMSNorm, attention with q/k/v bias, NEOX RoPE, grouped-query
//! attention, SwiGLU MLP, tied or untied output.

use metallic_gguf::{GgufFile, TensorInfo};

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Plan};
use crate::model::blocks::{AttnShape, Builder, KvCacheLayer};
use crate::model::tensor_names as names;
use crate::model::ModelConfig;
use crate::runtime::StepBuffers;
use crate::tensor::{upload_vector, GpuMatrix};

/// Q, K and V projections: stacked into one (q_dim + 2 kv_dim, hidden) matrix when
/// they share a type (one GEMV), else kept apart and written to the same output.
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
        // Uploads `parts` stacked (or, with `interleave`, interleaved) by rows and
        // reports progress.
        let mut load = |parts: &[&TensorInfo], name: &str, interleave: bool| -> Result<GpuMatrix> {
            let m = if interleave {
                GpuMatrix::upload_interleaved(gpu, file, parts, name)?
            } else {
                GpuMatrix::upload_stacked(gpu, file, parts, name)?
            };
            done += parts.iter().map(|p| p.n_bytes).sum::<u64>();
            progress(done);
            Ok(m)
        };
        let token_embd = load(
            &[matrix_info(names::TOKEN_EMBD, cfg.vocab, cfg.hidden)?],
            names::TOKEN_EMBD,
            false,
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
                QkvWeights::Stacked(load(&qkv, &n("attn_qkv.weight"), false)?)
            } else {
                QkvWeights::Separate([
                    load(&qkv[..1], &qkv[0].name, false)?,
                    load(&qkv[1..2], &qkv[1].name, false)?,
                    load(&qkv[2..], &qkv[2].name, false)?,
                ])
            };
            let gate_up = [
                matrix_info(&n(names::FFN_GATE), f, h)?,
                matrix_info(&n(names::FFN_UP), f, h)?,
            ];
            let ffn_up = if gate_up[0].ggml_type == gate_up[1].ggml_type {
                FfnUpWeights::Fused(load(&gate_up, &n("ffn_gate_up.weight"), true)?)
            } else {
                FfnUpWeights::Separate {
                    gate: load(&gate_up[..1], &gate_up[0].name, false)?,
                    up: load(&gate_up[1..], &gate_up[1].name, false)?,
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
                    false,
                )?,
                ffn_norm: vector(gpu, file, &n(names::FFN_NORM), h)?,
                ffn_up,
                w_down: load(
                    &[matrix_info(&n(names::FFN_DOWN), h, f)?],
                    &n(names::FFN_DOWN),
                    false,
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
                false,
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

/// The forward pass as dispatch plans: `body` runs for every batch (prefill chunk or
/// decode step); `head` turns the batch's last row into the next token.
pub fn build(
    b: &Builder<'_>,
    cfg: &ModelConfig,
    w: &Qwen2Weights,
    s: &StepBuffers,
) -> Result<(Plan, Plan)> {
    let shape = AttnShape {
        n_heads: cfg.n_heads,
        n_kv_heads: cfg.n_kv_heads,
        head_dim: cfg.head_dim,
        ctx: s.ctx,
    };
    let mut body = Plan::default();
    b.embed(&mut body, &w.token_embd, &s.tokens, &s.x)?;
    for (layer, cache) in w.layers.iter().zip(&s.kv_cache) {
        // Attention block: x += Wo . attn(rope(Wq h + bq), rope(Wk h + bk), Wv h + bv)
        b.rms_norm(&mut body, &s.x, &layer.attn_norm, &s.h, cfg.rms_eps)?;
        match &layer.wqkv {
            QkvWeights::Stacked(w) => b.linear(&mut body, w, Some(&layer.bqkv), &s.h, &s.qkv, 0)?,
            QkvWeights::Separate(ws) => {
                let mut col = 0;
                for w in ws {
                    b.linear(&mut body, w, Some(&layer.bqkv), &s.h, &s.qkv, col)?;
                    col += w.rows;
                }
            }
        }
        b.rope_and_cache(&mut body, shape, &s.qkv, cache, &s.inv_freq)?;
        b.attention(&mut body, shape, &s.qkv, cache, &s.attn)?;
        b.linear_residual(&mut body, &layer.wo, &s.attn, &s.x)?;
        // MLP block: x += W_down . (silu(W_gate h) * W_up h)
        b.rms_norm(&mut body, &s.x, &layer.ffn_norm, &s.h, cfg.rms_eps)?;
        match &layer.ffn_up {
            FfnUpWeights::Fused(w) => b.linear_swiglu(&mut body, w, &s.h, &s.act)?,
            FfnUpWeights::Separate { gate, up } => {
                let (gate_out, up_out) = s
                    .gate_up
                    .as_ref()
                    .ok_or_else(|| Error::Model("gate/up buffers were not allocated".into()))?;
                b.linear(&mut body, gate, None, &s.h, gate_out, 0)?;
                b.linear(&mut body, up, None, &s.h, up_out, 0)?;
                b.swiglu(&mut body, gate_out, up_out, &s.act)?;
            }
        }
        b.linear_residual(&mut body, &layer.w_down, &s.act, &s.x)?;
    }
    let mut head = Plan::default();
    b.rms_norm_last_row(&mut head, &s.x, &w.output_norm, &s.x_last, cfg.rms_eps)?;
    b.linear(&mut head, w.output(), None, &s.x_last, &s.logits, 0)?;
    b.sample(&mut head, &s.sample_bindings(), cfg.vocab)?;
    Ok((body, head))
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

/// Allocates one layer's KV cache.
pub fn kv_cache_layer(gpu: &Gpu, cfg: &ModelConfig, ctx: u32, layer: u32) -> Result<KvCacheLayer> {
    let bytes = cfg.n_kv_heads as u64 * ctx as u64 * cfg.head_dim as u64 * 4;
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
