//! Shared building blocks: each call appends the dispatches of one named step of a
//! transformer to a plan. Architectures are written as a sequence of these calls.

use crate::error::Result;
use crate::gpu::{Gpu, Plan};
use crate::kernels::matmul_gemm::GemmConfig;
use crate::kernels::matmul_gemv::{GemvConfig, GemvOptions, InputNorm, RopeCacheTarget};
use crate::kernels::{
    attention, elementwise, embedding, matmul_gemm, matmul_gemv, rmsnorm, rope_kv, sampling,
};
use crate::tensor::{Activation, GpuMatrix};

pub use crate::kernels::attention::{AttnShape, DecodeScratch};

/// Records dispatches against buffers that live as long as the engine.
pub struct Builder<'a> {
    pub gpu: &'a Gpu,
    pub gemv: GemvConfig,
    /// The tiled GEMM of prefill chunks (cooperative-matrix or portable path).
    pub gemm: GemmConfig,
    /// Per-step state (`StepState` in WGSL).
    pub state: &'a wgpu::Buffer,
    /// Bound where a kernel's optional input (a bias) is absent.
    pub dummy: &'a wgpu::Buffer,
}

impl Builder<'_> {
    pub fn embed(
        &self,
        plan: &mut Plan,
        table: &GpuMatrix,
        tokens: &wgpu::Buffer,
        out: &Activation,
    ) -> Result<()> {
        plan.extend(embedding::embed(self.gpu, table, tokens, out)?);
        Ok(())
    }

    /// y[:, col..col + rows(W)] = X W^T + bias[col..] for every row of a prefill chunk:
    /// a tiled GEMM, so each weight tile is read once per tile of batch rows.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &self,
        plan: &mut Plan,
        w: &GpuMatrix,
        bias: Option<&wgpu::Buffer>,
        x: &Activation,
        y: &Activation,
        col: u32,
        accumulate: bool,
    ) -> Result<()> {
        plan.extend(matmul_gemm::linear(
            self.gpu,
            &self.gemm,
            self.state,
            w,
            x,
            (y, col),
            bias,
            accumulate,
            self.dummy,
        )?);
        Ok(())
    }

    /// act = silu(X W_gate^T) * (X W_up^T) over a prefill chunk, from interleaved rows.
    pub fn matmul_swiglu(
        &self,
        plan: &mut Plan,
        w: &GpuMatrix,
        x: &Activation,
        act: &Activation,
    ) -> Result<()> {
        plan.extend(matmul_gemm::linear_swiglu(
            self.gpu, &self.gemm, self.state, w, x, act, self.dummy,
        )?);
        Ok(())
    }

    pub fn rms_norm(
        &self,
        plan: &mut Plan,
        x: &Activation,
        weight: &wgpu::Buffer,
        y: &Activation,
        eps: f32,
    ) -> Result<()> {
        plan.push(rmsnorm::rmsnorm(
            self.gpu, self.state, x, weight, y, eps, false,
        )?);
        Ok(())
    }

    /// y[:, col..col + rows(W)] = W rmsnorm(x) + bias[col..]: the norm folded into the GEMV.
    #[allow(clippy::too_many_arguments)]
    pub fn norm_linear(
        &self,
        plan: &mut Plan,
        norm: InputNorm<'_>,
        w: &GpuMatrix,
        bias: Option<&wgpu::Buffer>,
        x: &Activation,
        y: &Activation,
        col: u32,
    ) -> Result<()> {
        let opts = GemvOptions {
            bias,
            norm: Some(norm),
            ..Default::default()
        };
        plan.extend(matmul_gemv::linear_with(
            self.gpu,
            &self.gemv,
            w,
            x,
            (y, col),
            &opts,
            self.dummy,
        )?);
        Ok(())
    }

    /// Whether `norm_qkv_rope_cache` can take this QKV matrix on this device (else: the
    /// reason, and the caller uses `norm_linear` + `rope_and_cache`).
    pub fn qkv_rope_unsupported(&self, w: &GpuMatrix, shape: AttnShape) -> Option<String> {
        matmul_gemv::qkv_rope_unsupported(
            self.gpu,
            w,
            shape.n_heads,
            shape.n_kv_heads,
            shape.head_dim,
        )
    }

    /// The decode step's attention input in one GEMV: q, k, v = W rmsnorm(x) + bias, q and
    /// k rotated (NEOX), q into the Q columns of `qkv`, k and v into the cache.
    #[allow(clippy::too_many_arguments)]
    pub fn norm_qkv_rope_cache(
        &self,
        plan: &mut Plan,
        shape: AttnShape,
        norm: InputNorm<'_>,
        w: &GpuMatrix,
        bias: &wgpu::Buffer,
        x: &Activation,
        qkv: &Activation,
        cache: &KvCacheLayer,
        inv_freq: &[f32],
    ) -> Result<()> {
        let target = RopeCacheTarget {
            state: self.state,
            k_cache: &cache.k,
            v_cache: &cache.v,
            inv_freq,
            n_heads: shape.n_heads,
            n_kv_heads: shape.n_kv_heads,
            head_dim: shape.head_dim,
            ctx: shape.ctx,
        };
        plan.extend(matmul_gemv::linear_qkv_rope(
            self.gpu,
            &self.gemv,
            w,
            x,
            Some(norm),
            bias,
            qkv,
            &target,
            self.dummy,
        )?);
        Ok(())
    }

    /// act = silu(gate h) * (up h) with h = rmsnorm(x): norm, gate/up and SwiGLU in one.
    pub fn norm_linear_swiglu(
        &self,
        plan: &mut Plan,
        norm: InputNorm<'_>,
        w: &GpuMatrix,
        x: &Activation,
        act: &Activation,
    ) -> Result<()> {
        plan.extend(matmul_gemv::linear_swiglu_norm(
            self.gpu,
            &self.gemv,
            w,
            x,
            act,
            Some(norm),
            self.dummy,
        )?);
        Ok(())
    }

    /// logits (one row) = W rmsnorm(x[n_rows - 1]), the norm through `h`. A dispatch of
    /// its own, not folded into the GEMV: the LM head has tens of thousands of
    /// workgroups, and each recomputing the norm cost more than the dispatch (17 µs of
    /// 112 at 0.5B on the H100).
    pub fn norm_last_row_linear(
        &self,
        plan: &mut Plan,
        norm: InputNorm<'_>,
        w: &GpuMatrix,
        x: &Activation,
        h: &Activation,
        logits: &Activation,
    ) -> Result<()> {
        plan.push(rmsnorm::rmsnorm(
            self.gpu,
            self.state,
            x,
            norm.weight,
            h,
            norm.eps,
            true,
        )?);
        let opts = GemvOptions {
            last_row: Some(self.state),
            ..Default::default()
        };
        plan.extend(matmul_gemv::linear_with(
            self.gpu,
            &self.gemv,
            w,
            h,
            (logits, 0),
            &opts,
            self.dummy,
        )?);
        Ok(())
    }

    /// residual += W x.
    pub fn linear_residual(
        &self,
        plan: &mut Plan,
        w: &GpuMatrix,
        x: &Activation,
        residual: &Activation,
    ) -> Result<()> {
        plan.extend(matmul_gemv::linear(
            self.gpu,
            &self.gemv,
            w,
            x,
            (residual, 0),
            None,
            true,
            self.dummy,
        )?);
        Ok(())
    }

    /// Rotates q and k in place (NEOX pairing) and appends k, v to the cache.
    #[allow(clippy::too_many_arguments)]
    pub fn rope_and_cache(
        &self,
        plan: &mut Plan,
        shape: AttnShape,
        qkv: &Activation,
        cache: &KvCacheLayer,
        inv_freq: &wgpu::Buffer,
    ) -> Result<()> {
        let b = rope_kv::RopeKvBindings {
            state: self.state,
            qkv,
            k_cache: &cache.k,
            v_cache: &cache.v,
            inv_freq,
        };
        plan.push(rope_kv::rope_kv(
            self.gpu,
            &b,
            shape.n_heads,
            shape.n_kv_heads,
            shape.head_dim,
            shape.ctx,
        )?);
        Ok(())
    }

    /// Causal flash attention over `n_rows` rows (prefill chunks): one dispatch,
    /// grid (n_heads, ceil(rows / BQ)).
    pub fn attention_prefill(
        &self,
        plan: &mut Plan,
        shape: AttnShape,
        q: &Activation,
        cache: &KvCacheLayer,
        out: &Activation,
    ) -> Result<()> {
        let b = self.attention_bindings(q, cache, out);
        plan.extend(attention::prefill(self.gpu, &b, &shape)?);
        Ok(())
    }

    /// Attention of one row at `state.pos` (decode steps, `n_rows` = 1), split over
    /// positions: two dispatches with grids fixed by `shape.ctx`. `scratch` (from
    /// `DecodeScratch::new(gpu, &shape)`) can be shared by every layer. Without `combine`
    /// only the first: the output stays as per-chunk partials in `scratch`, for
    /// `linear_residual_attn` to merge.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_decode(
        &self,
        plan: &mut Plan,
        shape: AttnShape,
        q: &Activation,
        cache: &KvCacheLayer,
        out: &Activation,
        scratch: &DecodeScratch,
        combine: bool,
    ) -> Result<()> {
        let b = self.attention_bindings(q, cache, out);
        plan.extend(match combine {
            true => attention::decode(self.gpu, &b, &shape, scratch)?,
            false => attention::decode_partial_only(self.gpu, &b, &shape, scratch)?,
        });
        Ok(())
    }

    /// residual += W attn, attn merged from the decode attention's partials in `scratch`
    /// (shaped like `attn`): the output projection with the combine pass folded in.
    pub fn linear_residual_attn(
        &self,
        plan: &mut Plan,
        w: &GpuMatrix,
        attn: &Activation,
        scratch: &DecodeScratch,
        residual: &Activation,
    ) -> Result<()> {
        let input = matmul_gemv::AttnInput {
            scratch,
            state: self.state,
        };
        plan.extend(matmul_gemv::linear_residual_attn(
            self.gpu, &self.gemv, w, &input, attn, residual, self.dummy,
        )?);
        Ok(())
    }

    fn attention_bindings<'b>(
        &'b self,
        q: &'b Activation,
        cache: &'b KvCacheLayer,
        out: &'b Activation,
    ) -> attention::AttentionBindings<'b> {
        attention::AttentionBindings {
            state: self.state,
            q,
            k_cache: &cache.k,
            v_cache: &cache.v,
            out,
        }
    }

    pub fn swiglu(
        &self,
        plan: &mut Plan,
        gate: &Activation,
        up: &Activation,
        act: &Activation,
    ) -> Result<()> {
        plan.push(elementwise::swiglu(self.gpu, gate, up, act)?);
        Ok(())
    }

    pub fn sample(
        &self,
        plan: &mut Plan,
        b: &sampling::SampleBindings<'_>,
        vocab: u32,
    ) -> Result<()> {
        plan.extend(sampling::sample(self.gpu, b, vocab)?);
        Ok(())
    }
}

/// One layer's preallocated cache, f16 packed two to a 32-bit word (WGSL's
/// `pack2x16float`, so no shader-f16 feature is needed). K is (n_kv_heads, head_dim / 2,
/// ctx) words, word (h, i, t) holding dims i and i + head_dim / 2 of key t: positions
/// run fastest so attention's score loads are contiguous, and each word is a NEOX
/// rotation pair, so the RoPE kernels write whole words. V is (n_kv_heads, ctx, head_dim)
/// halves in order (dims 2j, 2j + 1 per word).
pub struct KvCacheLayer {
    pub k: wgpu::Buffer,
    pub v: wgpu::Buffer,
}
