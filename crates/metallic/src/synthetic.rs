//! Tiny random Qwen2 models written as real GGUF files, for tests and tools. Weights
//! are random and non-zero (norm weights near 1, biases non-zero) so every term of the
//! forward pass matters. With [`SyntheticSpec::tokenizer`] the file also carries a small
//! byte-level BPE vocabulary and a ChatML template, so the `metallic` CLI can run it.

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
    /// A different type for `attn_v` only (mixed-type files keep Q, K, V apart).
    pub v_type: Option<GgmlType>,
    /// A different type for `ffn_up` only (keeps gate and up apart).
    pub up_type: Option<GgmlType>,
    pub rope_theta: f32,
    pub rms_eps: f32,
    pub seed: u64,
    /// Write `tokenizer.ggml.*` metadata (see [`synthetic_tokens`]) and a ChatML
    /// `tokenizer.chat_template`. Needs `vocab >= TOKENIZER_MIN_VOCAB`; the token list
    /// is padded with `[PADn]` normal tokens up to `vocab`.
    pub tokenizer: bool,
    /// Overrides `tokenizer.ggml.eos_token_id` (default `<|im_end|>`), e.g. to make a
    /// token the model greedily produces end the generation.
    pub eos_token_id: Option<u32>,
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
            v_type: None,
            up_type: None,
            rope_theta: 10_000.0,
            rms_eps: 1e-6,
            seed: 1,
            tokenizer: false,
            eos_token_id: None,
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

/// Merges of the synthetic vocabulary, in priority order.
pub const SYNTHETIC_MERGES: &[&str] = &["Ġ t", "h e", "Ġt he"];

/// Control tokens of the synthetic vocabulary, right after the merged tokens.
pub const SYNTHETIC_CONTROL_TOKENS: &[&str] = &["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Smallest `vocab` a synthetic model with a tokenizer can have: 256 byte tokens, one
/// per merge and the control tokens.
pub const TOKENIZER_MIN_VOCAB: u32 =
    256 + SYNTHETIC_MERGES.len() as u32 + SYNTHETIC_CONTROL_TOKENS.len() as u32;

/// A ChatML template in the style of Qwen's, without the default system message.
pub const SYNTHETIC_CHAT_TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n\
{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n\
{% endif %}";

/// GPT-2's `bytes_to_unicode`: the printable character that stands for each byte in a
/// byte-level BPE vocabulary (printable Latin-1 bytes map to themselves, the others to
/// U+0100 onwards in byte order; space is `Ġ`).
pub fn byte_to_unicode(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        char::from(b)
    } else {
        let n = (0..b).filter(|&x| !printable(x)).count() as u32;
        char::from_u32(256 + n).expect("in the Latin Extended range")
    }
}

/// The synthetic vocabulary, `vocab` entries: ids 0..256 are the bytes (id = byte
/// value), then one token per merge, then the control tokens, then `[PADn]` (normal)
/// tokens. Returns the token texts and their `token_type`s (1 normal, 3 control).
///
/// # Panics
/// If `vocab < TOKENIZER_MIN_VOCAB`.
pub fn synthetic_tokens(vocab: u32) -> (Vec<String>, Vec<i32>) {
    assert!(
        vocab >= TOKENIZER_MIN_VOCAB,
        "a synthetic tokenizer needs vocab >= {TOKENIZER_MIN_VOCAB}, got {vocab}"
    );
    let mut tokens: Vec<String> = (0..=255u8)
        .map(|b| byte_to_unicode(b).to_string())
        .collect();
    tokens.extend(SYNTHETIC_MERGES.iter().map(|m| m.replace(' ', "")));
    let mut types = vec![1; tokens.len()];
    for t in SYNTHETIC_CONTROL_TOKENS {
        tokens.push(t.to_string());
        types.push(3);
    }
    let n = tokens.len() as u32;
    tokens.extend((0..vocab - n).map(|i| format!("[PAD{i}]")));
    types.resize(tokens.len(), 1);
    (tokens, types)
}

/// Id of a control token of the synthetic vocabulary (e.g. `"<|im_end|>"`).
pub fn synthetic_control_id(text: &str) -> Option<u32> {
    let i = SYNTHETIC_CONTROL_TOKENS.iter().position(|&t| t == text)?;
    Some(256 + SYNTHETIC_MERGES.len() as u32 + i as u32)
}

fn add_tokenizer(w: &mut GgufWriter, spec: &SyntheticSpec) {
    let (tokens, types) = synthetic_tokens(spec.vocab);
    let id = |t: &str| synthetic_control_id(t).expect("a synthetic control token");
    let eos = spec.eos_token_id.unwrap_or_else(|| id("<|im_end|>"));
    w.add("tokenizer.ggml.model", Value::from("gpt2"))
        .add("tokenizer.ggml.pre", Value::from("qwen2"))
        .add("tokenizer.ggml.tokens", Value::from(tokens))
        .add("tokenizer.ggml.token_type", Value::from(types))
        .add(
            "tokenizer.ggml.merges",
            Value::from(SYNTHETIC_MERGES.to_vec()),
        )
        .add("tokenizer.ggml.eos_token_id", Value::U32(eos))
        .add(
            "tokenizer.ggml.bos_token_id",
            Value::U32(id("<|endoftext|>")),
        )
        .add(
            "tokenizer.ggml.padding_token_id",
            Value::U32(id("<|endoftext|>")),
        )
        .add("tokenizer.ggml.add_bos_token", Value::Bool(false))
        .add(
            "tokenizer.chat_template",
            Value::from(SYNTHETIC_CHAT_TEMPLATE),
        );
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
    if s.tokenizer {
        add_tokenizer(&mut w, s);
    }
    let typed_matrix =
        |w: &mut GgufWriter, rng: &mut Rng, ty: GgmlType, name: &str, rows: u32, k: u32| {
            let data = rng.vec((rows * k) as usize, 1.5 / (k as f32).sqrt(), 0.0);
            let bytes = match ty {
                GgmlType::F32 => dequant::f32_to_bytes(&data),
                GgmlType::F16 => dequant::f32_to_f16_bytes(&data),
                GgmlType::BF16 => dequant::f32_to_bf16_bytes(&data),
                GgmlType::Q8_0 => dequant::quantize_q8_0(&data),
                t => panic!("synthetic models do not write {t:?} matrices"),
            };
            w.add_tensor(name, ty, &[k as u64, rows as u64], bytes);
        };
    let matrix = |w: &mut GgufWriter, rng: &mut Rng, name: &str, rows: u32, k: u32| {
        typed_matrix(w, rng, s.matrix_type, name, rows, k)
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
        let v_type = s.v_type.unwrap_or(s.matrix_type);
        typed_matrix(
            &mut w,
            &mut rng,
            v_type,
            &n(names::ATTN_V),
            kv_dim,
            s.hidden,
        );
        vector(&mut w, &mut rng, &n(names::ATTN_V_BIAS), kv_dim, 0.5, 0.0);
        matrix(&mut w, &mut rng, &n(names::ATTN_OUTPUT), s.hidden, q_dim);
        vector(&mut w, &mut rng, &n(names::FFN_NORM), s.hidden, 0.2, 1.0);
        matrix(&mut w, &mut rng, &n(names::FFN_GATE), s.ffn, s.hidden);
        let up_type = s.up_type.unwrap_or(s.matrix_type);
        typed_matrix(
            &mut w,
            &mut rng,
            up_type,
            &n(names::FFN_UP),
            s.ffn,
            s.hidden,
        );
        matrix(&mut w, &mut rng, &n(names::FFN_DOWN), s.hidden, s.ffn);
    }
    vector(&mut w, &mut rng, names::OUTPUT_NORM, s.hidden, 0.2, 1.0);
    if !s.tied {
        matrix(&mut w, &mut rng, names::OUTPUT, s.vocab, s.hidden);
    }
    w.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_to_unicode_matches_gpt2() {
        assert_eq!(byte_to_unicode(b' '), 'Ġ');
        assert_eq!(byte_to_unicode(b'\n'), 'Ċ');
        assert_eq!(byte_to_unicode(0), 'Ā');
        assert_eq!(byte_to_unicode(b'a'), 'a');
        assert_eq!(byte_to_unicode(0xAD), 'Ń');
        let all: std::collections::HashSet<char> = (0..=255u8).map(byte_to_unicode).collect();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn tokens_are_padded_to_vocab() {
        let (tokens, types) = synthetic_tokens(300);
        assert_eq!((tokens.len(), types.len()), (300, 300));
        assert_eq!(tokens[256], "Ġt");
        assert_eq!(tokens[258], "Ġthe");
        assert_eq!(synthetic_control_id("<|im_end|>"), Some(261));
        assert_eq!(tokens[261], "<|im_end|>");
        assert_eq!(types[261], 3);
        assert_eq!(tokens[262], "[PAD0]");
        assert_eq!(tokens[299], "[PAD37]");
        assert_eq!(synthetic_tokens(TOKENIZER_MIN_VOCAB).0.len(), 262);
    }
}
