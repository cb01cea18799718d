//! A plain CPU forward pass, f32 storage (f16 for the KV cache, as the engine keeps it) with
//! f64 accumulation: the oracle of the tests.
//! It shares only the config and tensor names with the GPU path, never its kernels.

use metallic_gguf::{dequant, GgufFile};

use crate::error::Result;
use crate::model::tensor_names as names;
use crate::model::ModelConfig;

struct Layer {
    attn_norm: Vec<f32>,
    wq: Vec<f32>,
    bq: Vec<f32>,
    wk: Vec<f32>,
    bk: Vec<f32>,
    wv: Vec<f32>,
    bv: Vec<f32>,
    wo: Vec<f32>,
    ffn_norm: Vec<f32>,
    w_gate: Vec<f32>,
    w_up: Vec<f32>,
    w_down: Vec<f32>,
    k_cache: Vec<f32>, // (pos, kv_dim), values rounded to f16 unless f32 is asked for
    v_cache: Vec<f32>, // (pos, kv_dim)
}

pub struct Reference {
    pub config: ModelConfig,
    token_embd: Vec<f32>, // (vocab, hidden)
    output: Option<Vec<f32>>,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
    pos: usize,
    /// Round cached k and v to f16, as the engine stores them (the default).
    f16_kv: bool,
}

impl Reference {
    pub fn load(file: &GgufFile) -> Result<Self> {
        let config = ModelConfig::from_gguf(file)?;
        let t = |name: &str| -> Result<Vec<f32>> {
            let info = file.require_tensor(name)?;
            Ok(dequant::to_f32(
                info.ggml_type,
                file.tensor_data(info),
                info.n_elements as usize,
            )?)
        };
        let mut layers = Vec::new();
        for l in 0..config.n_layers {
            let n = |s: &str| names::layer(l, s);
            layers.push(Layer {
                attn_norm: t(&n(names::ATTN_NORM))?,
                wq: t(&n(names::ATTN_Q))?,
                bq: t(&n(names::ATTN_Q_BIAS))?,
                wk: t(&n(names::ATTN_K))?,
                bk: t(&n(names::ATTN_K_BIAS))?,
                wv: t(&n(names::ATTN_V))?,
                bv: t(&n(names::ATTN_V_BIAS))?,
                wo: t(&n(names::ATTN_OUTPUT))?,
                ffn_norm: t(&n(names::FFN_NORM))?,
                w_gate: t(&n(names::FFN_GATE))?,
                w_up: t(&n(names::FFN_UP))?,
                w_down: t(&n(names::FFN_DOWN))?,
                k_cache: Vec::new(),
                v_cache: Vec::new(),
            });
        }
        Ok(Self {
            token_embd: t(names::TOKEN_EMBD)?,
            output: if config.tied_output {
                None
            } else {
                Some(t(names::OUTPUT)?)
            },
            output_norm: t(names::OUTPUT_NORM)?,
            config,
            layers,
            pos: 0,
            f16_kv: true,
        })
    }

    pub fn reset(&mut self) {
        self.pos = 0;
        for l in &mut self.layers {
            l.k_cache.clear();
            l.v_cache.clear();
        }
    }

    /// Keep the KV cache in f32 instead: the model's math alone, for comparing with
    /// transformers at f32 precision.
    pub fn with_f32_kv_cache(mut self) -> Self {
        self.f16_kv = false;
        self
    }

    /// Feeds `tokens` one position at a time; returns the logits after the last one.
    pub fn forward(&mut self, tokens: &[u32]) -> Vec<f32> {
        let mut logits = Vec::new();
        for &t in tokens {
            logits = self.step(t);
        }
        logits
    }

    fn step(&mut self, token: u32) -> Vec<f32> {
        let c = self.config.clone();
        let (h, hd) = (c.hidden as usize, c.head_dim as usize);
        let mut x = self.token_embd[token as usize * h..(token as usize + 1) * h].to_vec();
        let pos = self.pos;
        let f16_kv = self.f16_kv;
        for layer in &mut self.layers {
            let xn = rms_norm(&x, &layer.attn_norm, c.rms_eps);
            let mut q = add(&matvec(&layer.wq, &xn), &layer.bq);
            let mut k = add(&matvec(&layer.wk, &xn), &layer.bk);
            let v = add(&matvec(&layer.wv, &xn), &layer.bv);
            for head in q.chunks_mut(hd).chain(k.chunks_mut(hd)) {
                rope_neox(head, pos, c.rope_theta);
            }
            // The engine's cache holds f16 (as llama.cpp's does by default); so does this
            // one unless asked not to, so comparisons measure the kernels, not the format.
            let store = |x: &f32| if f16_kv { round_f16(*x) } else { *x };
            layer.k_cache.extend(k.iter().map(store));
            layer.v_cache.extend(v.iter().map(store));
            let attn = attend(&q, &layer.k_cache, &layer.v_cache, &c);
            x = add(&x, &matvec(&layer.wo, &attn));
            let xn = rms_norm(&x, &layer.ffn_norm, c.rms_eps);
            let gate = matvec(&layer.w_gate, &xn);
            let up = matvec(&layer.w_up, &xn);
            let act: Vec<f32> = gate.iter().zip(&up).map(|(&g, &u)| silu(g) * u).collect();
            x = add(&x, &matvec(&layer.w_down, &act));
        }
        self.pos += 1;
        let xn = rms_norm(&x, &self.output_norm, c.rms_eps);
        matvec(self.output.as_ref().unwrap_or(&self.token_embd), &xn)
    }
}

/// (rows, k) . (k) with f64 accumulation.
pub fn matvec(w: &[f32], x: &[f32]) -> Vec<f32> {
    w.chunks(x.len())
        .map(|row| {
            row.iter()
                .zip(x)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>() as f32
        })
        .collect()
}

pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (ms + eps as f64).sqrt();
    x.iter()
        .zip(w)
        .map(|(&v, &g)| (v as f64 * inv) as f32 * g)
        .collect()
}

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// x rounded to the nearest f16 (ties to even), back in f32.
pub fn round_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

pub fn silu(x: f32) -> f32 {
    (x as f64 / (1.0 + (-x as f64).exp())) as f32
}

/// NEOX pairing: element i rotates with element i + head_dim/2. The angle is rounded
/// to f32 the way Hugging Face computes it (f32 inverse frequency times f32 position),
/// so long contexts stay comparable with transformers.
pub fn rope_neox(head: &mut [f32], pos: usize, theta: f32) {
    let half = head.len() / 2;
    for i in 0..half {
        let inv_freq = (1.0 / (theta as f64).powf(2.0 * i as f64 / head.len() as f64)) as f32;
        let (s, c) = ((pos as f32 * inv_freq) as f64).sin_cos();
        let (a, b) = (head[i] as f64, head[i + half] as f64);
        head[i] = (a * c - b * s) as f32;
        head[i + half] = (b * c + a * s) as f32;
    }
}

/// Causal attention of one position over all cached positions, grouped-query.
fn attend(q: &[f32], k_cache: &[f32], v_cache: &[f32], c: &ModelConfig) -> Vec<f32> {
    let (hd, kv_dim) = (c.head_dim as usize, c.kv_dim() as usize);
    let n_pos = k_cache.len() / kv_dim;
    let group = (c.n_heads / c.n_kv_heads) as usize;
    let scale = 1.0 / (hd as f64).sqrt();
    let mut out = vec![0f32; q.len()];
    for h in 0..c.n_heads as usize {
        let kvh = h / group;
        let qh = &q[h * hd..(h + 1) * hd];
        let scores: Vec<f64> = (0..n_pos)
            .map(|t| {
                let kt = &k_cache[t * kv_dim + kvh * hd..][..hd];
                qh.iter()
                    .zip(kt)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>()
                    * scale
            })
            .collect();
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        for d in 0..hd {
            let acc: f64 = (0..n_pos)
                .map(|t| exps[t] * v_cache[t * kv_dim + kvh * hd + d] as f64)
                .sum();
            out[h * hd + d] = (acc / sum) as f32;
        }
    }
    out
}
