//! Tiny random Qwen2 models written as real GGUF files, for tests and tools. Weights
//! are random and non-zero (norm weights near 1, biases non-zero) so every term of the
//! forward pass matters.

use metallic_gguf::{dequant, GgmlType, GgufWriter, Value};

use crate::model::tensor_names as names;

#[derive(Clone, Debug)]
pub struct SyntheticSpec {
    pub hidden: u32,
    pub n_layers: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub ffn: u32,
    pub vocab: u32,
    pub context_length: u32,
    pub tied: bool,
    /// Type of the 2-D weight matrices (F32, F16, BF16 or Q8_0); norms and biases stay F32.
    pub matrix_type: GgmlType,
    pub rope_theta: f32,
    pub rms_eps: f32,
    pub seed: u64,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self {
            hidden: 64,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            ffn: 96,
            vocab: 256,
            context_length: 128,
            tied: true,
            matrix_type: GgmlType::F16,
            rope_theta: 10_000.0,
            rms_eps: 1e-6,
            seed: 1,
        }
    }
}

/// xorshift64*: deterministic, dependency-free random numbers for fixtures.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [-1, 1).
    pub fn symmetric(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    pub fn vec(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|_| offset + scale * self.symmetric()).collect()
    }
}

/// Serialises a GGUF with `qwen2.*` metadata and llama.cpp's tensor names.
pub fn qwen2_gguf(spec: &SyntheticSpec) -> Vec<u8> {
    let s = spec;
    let head_dim = s.hidden / s.n_heads;
    let (q_dim, kv_dim) = (s.n_heads * head_dim, s.n_kv_heads * head_dim);
    let mut rng = Rng::new(s.seed);
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("qwen2".into()))
        .add("general.name", Value::String("synthetic-qwen2".into()))
        .add("qwen2.context_length", Value::U32(s.context_length))
        .add("qwen2.embedding_length", Value::U32(s.hidden))
        .add("qwen2.block_count", Value::U32(s.n_layers))
        .add("qwen2.feed_forward_length", Value::U32(s.ffn))
        .add("qwen2.attention.head_count", Value::U32(s.n_heads))
        .add("qwen2.attention.head_count_kv", Value::U32(s.n_kv_heads))
        .add("qwen2.rope.freq_base", Value::F32(s.rope_theta))
        .add(
            "qwen2.attention.layer_norm_rms_epsilon",
            Value::F32(s.rms_eps),
        );
    let matrix = |w: &mut GgufWriter, rng: &mut Rng, name: &str, rows: u32, k: u32| {
        let data = rng.vec((rows * k) as usize, 1.5 / (k as f32).sqrt(), 0.0);
        let bytes = match s.matrix_type {
            GgmlType::F32 => dequant::f32_to_bytes(&data),
            GgmlType::F16 => dequant::f32_to_f16_bytes(&data),
            GgmlType::BF16 => dequant::f32_to_bf16_bytes(&data),
            GgmlType::Q8_0 => dequant::quantize_q8_0(&data),
            t => panic!("synthetic models do not write {t:?} matrices"),
        };
        w.add_tensor(name, s.matrix_type, &[k as u64, rows as u64], bytes);
    };
    let vector =
        |w: &mut GgufWriter, rng: &mut Rng, name: &str, n: u32, scale: f32, offset: f32| {
            w.add_tensor(
                name,
                GgmlType::F32,
                &[n as u64],
                dequant::f32_to_bytes(&rng.vec(n as usize, scale, offset)),
            );
        };
    // Embeddings of larger magnitude so that RMSNorm's input is well away from eps.
    matrix(&mut w, &mut rng, names::TOKEN_EMBD, s.vocab, s.hidden);
    for l in 0..s.n_layers {
        let n = |x: &str| names::layer(l, x);
        vector(&mut w, &mut rng, &n(names::ATTN_NORM), s.hidden, 0.2, 1.0);
        matrix(&mut w, &mut rng, &n(names::ATTN_Q), q_dim, s.hidden);
        vector(&mut w, &mut rng, &n(names::ATTN_Q_BIAS), q_dim, 0.5, 0.0);
        matrix(&mut w, &mut rng, &n(names::ATTN_K), kv_dim, s.hidden);
        vector(&mut w, &mut rng, &n(names::ATTN_K_BIAS), kv_dim, 0.5, 0.0);
        matrix(&mut w, &mut rng, &n(names::ATTN_V), kv_dim, s.hidden);
        vector(&mut w, &mut rng, &n(names::ATTN_V_BIAS), kv_dim, 0.5, 0.0);
        matrix(&mut w, &mut rng, &n(names::ATTN_OUTPUT), s.hidden, q_dim);
        vector(&mut w, &mut rng, &n(names::FFN_NORM), s.hidden, 0.2, 1.0);
        matrix(&mut w, &mut rng, &n(names::FFN_GATE), s.ffn, s.hidden);
        matrix(&mut w, &mut rng, &n(names::FFN_UP), s.ffn, s.hidden);
        matrix(&mut w, &mut rng, &n(names::FFN_DOWN), s.hidden, s.ffn);
    }
    vector(&mut w, &mut rng, names::OUTPUT_NORM, s.hidden, 0.2, 1.0);
    if !s.tied {
        matrix(&mut w, &mut rng, names::OUTPUT, s.vocab, s.hidden);
    }
    w.to_bytes()
}
