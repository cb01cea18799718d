//! Qwen2 / Qwen2.5: RMSNorm, attention with q/k/v bias, NEOX RoPE, grouped-query
//! attention, SwiGLU MLP, tied or untied output.

use metallic_gguf::GgufFile;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Plan};
use crate::model::blocks::{AttnShape, Builder, KvCacheLayer};
use crate::model::tensor_names as names;
use crate::model::ModelConfig;
use crate::runtime::StepBuffers;
use crate::tensor::{upload_vector, GpuMatrix};

pub struct LayerWeights {
    pub attn_norm: wgpu::Buffer, // (hidden)
    pub wq: GpuMatrix,           // (q_dim, hidden)
    pub bq: wgpu::Buffer,        // (q_dim)
    pub wk: GpuMatrix,           // (kv_dim, hidden)
    pub bk: wgpu::Buffer,        // (kv_dim)
    pub wv: GpuMatrix,           // (kv_dim, hidden)
    pub bv: wgpu::Buffer,        // (kv_dim)
    pub wo: GpuMatrix,           // (hidden, q_dim)
    pub ffn_norm: wgpu::Buffer,  // (hidden)
    pub w_gate: GpuMatrix,       // (ffn, hidden)
    pub w_up: GpuMatrix,         // (ffn, hidden)
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
        let mut matrix = |name: &str, rows: u32, k: u32| -> Result<GpuMatrix> {
            let info = file.require_tensor(name)?;
            expect_shape(name, &info.dims, &[k as u64, rows as u64])?;
            let m = GpuMatrix::upload(gpu, file, info)?;
            done += info.n_bytes;
            progress(done);
            Ok(m)
        };
        let token_embd = matrix(names::TOKEN_EMBD, cfg.vocab, cfg.hidden)?;
        let (h, q, kv, f) = (cfg.hidden, cfg.q_dim(), cfg.kv_dim(), cfg.ffn);
        let mut layers = Vec::with_capacity(cfg.n_layers as usize);
        for l in 0..cfg.n_layers {
            let n = |s: &str| names::layer(l, s);
            layers.push(LayerWeights {
                attn_norm: vector(gpu, file, &n(names::ATTN_NORM), h)?,
                wq: matrix(&n(names::ATTN_Q), q, h)?,
                bq: vector(gpu, file, &n(names::ATTN_Q_BIAS), q)?,
                wk: matrix(&n(names::ATTN_K), kv, h)?,
                bk: vector(gpu, file, &n(names::ATTN_K_BIAS), kv)?,
                wv: matrix(&n(names::ATTN_V), kv, h)?,
                bv: vector(gpu, file, &n(names::ATTN_V_BIAS), kv)?,
                wo: matrix(&n(names::ATTN_OUTPUT), h, q)?,
                ffn_norm: vector(gpu, file, &n(names::FFN_NORM), h)?,
                w_gate: matrix(&n(names::FFN_GATE), f, h)?,
                w_up: matrix(&n(names::FFN_UP), f, h)?,
                w_down: matrix(&n(names::FFN_DOWN), h, f)?,
            });
        }
        let output_norm = vector(gpu, file, names::OUTPUT_NORM, h)?;
        let output = if cfg.tied_output {
            None
        } else {
            Some(matrix(names::OUTPUT, cfg.vocab, h)?)
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
        b.linear(&mut body, &layer.wq, Some(&layer.bq), &s.h, &s.q)?;
        b.linear(&mut body, &layer.wk, Some(&layer.bk), &s.h, &s.k)?;
        b.linear(&mut body, &layer.wv, Some(&layer.bv), &s.h, &s.v)?;
        b.rope_and_cache(&mut body, shape, &s.q, &s.k, &s.v, cache, &s.inv_freq)?;
        b.attention(&mut body, shape, &s.q, cache, &s.attn)?;
        b.linear_residual(&mut body, &layer.wo, &s.attn, &s.x)?;
        // MLP block: x += W_down . (silu(W_gate h) * W_up h)
        b.rms_norm(&mut body, &s.x, &layer.ffn_norm, &s.h, cfg.rms_eps)?;
        b.linear(&mut body, &layer.w_gate, None, &s.h, &s.gate)?;
        b.linear(&mut body, &layer.w_up, None, &s.h, &s.up)?;
        b.swiglu(&mut body, &s.gate, &s.up, &s.act)?;
        b.linear_residual(&mut body, &layer.w_down, &s.act, &s.x)?;
    }
    let mut head = Plan::default();
    b.rms_norm_last_row(&mut head, &s.x, &w.output_norm, &s.x_last, cfg.rms_eps)?;
    b.linear(&mut head, w.output(), None, &s.x_last, &s.logits)?;
    b.sample(&mut head, &s.sample_bindings(), cfg.vocab)?;
    Ok((body, head))
}

fn vector(gpu: &Gpu, file: &GgufFile, name: &str, len: u32) -> Result<wgpu::Buffer> {
    let info = file.require_tensor(name)?;
    expect_shape(name, &info.dims, &[len as u64])?;
    upload_vector(gpu, file, info)
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
