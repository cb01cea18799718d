//! Hyper-parameters read from GGUF metadata (`general.architecture` and `<arch>.*`).

use metallic_gguf::GgufFile;

use crate::error::{Error, Result};
use crate::kernels::attention::{supports_head_dim, AttnShape, MAX_HEAD_DIM};
use crate::model::tensor_names as names;

pub const SUPPORTED_ARCHITECTURES: &[&str] = &["qwen2"];

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub architecture: String,
    pub name: Option<String>,
    pub hidden: u32,
    pub n_layers: u32,
    pub ffn: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub vocab: u32,
    /// Trained context length from the metadata (the engine may cap it).
    pub context_length: u32,
    pub rope_theta: f32,
    pub rms_eps: f32,
    /// The output projection reuses the token embedding.
    pub tied_output: bool,
}

impl ModelConfig {
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch = file.require_str("general.architecture")?.to_string();
        if !SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
            return Err(Error::Model(format!(
                "unsupported architecture '{arch}' (supported: {})",
                SUPPORTED_ARCHITECTURES.join(", ")
            )));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let hidden = file.require_u32(&key("embedding_length"))?;
        let n_heads = file.require_u32(&key("attention.head_count"))?;
        let n_kv_heads = file
            .get_u32(&key("attention.head_count_kv"))?
            .unwrap_or(n_heads);
        let embd = file.require_tensor(names::TOKEN_EMBD)?;
        let vocab = match embd.dims.as_slice() {
            [h, v] if *h == hidden as u64 => {
                u32::try_from(*v).map_err(|_| bad("vocabulary too large"))?
            }
            d => {
                return Err(bad(&format!(
                    "'{}' has shape {d:?}, expected [{hidden}, vocab]",
                    names::TOKEN_EMBD
                )))
            }
        };
        if n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(bad(&format!(
                "head_count {n_heads} is not a multiple of head_count_kv {n_kv_heads}"
            )));
        }
        let head_dim = match file.get_u32(&key("attention.key_length"))? {
            Some(d) => d,
            None if hidden % n_heads == 0 => hidden / n_heads,
            None => {
                return Err(bad(&format!(
                    "embedding_length {hidden} is not a multiple of head_count {n_heads}"
                )))
            }
        };
        if !supports_head_dim(head_dim) {
            return Err(bad(&format!(
                "head dimension {head_dim} unsupported (a multiple of 4, at most {MAX_HEAD_DIM})"
            )));
        }
        if let Some(rope_dims) = file.get_u32(&key("rope.dimension_count"))? {
            if rope_dims != head_dim {
                return Err(bad(&format!(
                    "partial RoPE ({rope_dims} of {head_dim} dims) is not supported"
                )));
            }
        }
        let cfg = Self {
            name: file.get_str("general.name")?.map(str::to_string),
            hidden,
            n_layers: file.require_u32(&key("block_count"))?,
            ffn: file.require_u32(&key("feed_forward_length"))?,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab,
            context_length: file.require_u32(&key("context_length"))?,
            rope_theta: file.get_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            rms_eps: file
                .get_f32(&key("attention.layer_norm_rms_epsilon"))?
                .unwrap_or(1e-6),
            tied_output: file.tensor(names::OUTPUT).is_none(),
            architecture: arch,
        };
        if cfg.hidden == 0 || cfg.n_layers == 0 || cfg.ffn == 0 || cfg.context_length == 0 {
            return Err(bad("a zero dimension in the model metadata"));
        }
        Ok(cfg)
    }

    pub fn q_dim(&self) -> u32 {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> u32 {
        self.n_kv_heads * self.head_dim
    }

    /// The attention geometry of every layer, with a KV cache of `ctx` positions.
    pub fn attn_shape(&self, ctx: u32) -> AttnShape {
        AttnShape {
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            ctx,
        }
    }
}

fn bad(msg: &str) -> Error {
    Error::Model(msg.to_string())
}
