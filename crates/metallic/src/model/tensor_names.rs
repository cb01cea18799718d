//! GGUF tensor names (llama.cpp's `llama-arch.cpp` table), kept apart from the model code.

pub const TOKEN_EMBD: &str = "token_embd.weight";
pub const OUTPUT_NORM: &str = "output_norm.weight";
/// Absent when the output projection is tied to the token embedding.
pub const OUTPUT: &str = "output.weight";

pub const ATTN_NORM: &str = "attn_norm.weight";
pub const ATTN_Q: &str = "attn_q.weight";
pub const ATTN_Q_BIAS: &str = "attn_q.bias";
pub const ATTN_K: &str = "attn_k.weight";
pub const ATTN_K_BIAS: &str = "attn_k.bias";
pub const ATTN_V: &str = "attn_v.weight";
pub const ATTN_V_BIAS: &str = "attn_v.bias";
pub const ATTN_OUTPUT: &str = "attn_output.weight";
pub const FFN_NORM: &str = "ffn_norm.weight";
pub const FFN_GATE: &str = "ffn_gate.weight";
pub const FFN_UP: &str = "ffn_up.weight";
pub const FFN_DOWN: &str = "ffn_down.weight";

/// `blk.{layer}.{name}`
pub fn layer(layer: u32, name: &str) -> String {
    format!("blk.{layer}.{name}")
}
