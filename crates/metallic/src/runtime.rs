//! The engine: weights, preallocated step buffers and the dispatch plans (prefill, decode,
//! head), plus the prefill and decode drivers. Every buffer and bind group is created at
//! load.

use std::path::Path;
use std::sync::Arc;

use metallic_gguf::GgufFile;

use crate::error::{Error, Result};
use crate::gpu::profile::{KernelTime, Profiler};
use crate::gpu::{read_buffer, storage_buffer, uniform_buffer, Gpu, GpuOptions, Plan};
use crate::kernels::attention::DecodeScratch;
use crate::kernels::matmul_gemm::{GemmConfig, GemmPath};
use crate::kernels::matmul_gemv::GemvConfig;
use crate::kernels::rope_kv;
use crate::kernels::sampling::{self, SampleBindings, SampleParams};
use crate::model::blocks::{Builder, KvCacheLayer};
use crate::model::qwen2::{self, ModelPlans};
use crate::model::ModelConfig;
use crate::tensor::Activation;

#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// Cap on the context (KV-cache positions); None = the model's trained length.
    pub ctx_size: Option<u32>,
    /// Rows per prefill chunk; None = [`DEFAULT_BATCH_SIZE`], or fewer where a chunk's
    /// activations would not fit one storage binding.
    pub batch_size: Option<u32>,
    pub gpu: GpuOptions,
}

/// Rows per prefill chunk unless asked otherwise. Larger chunks give the GEMMs and the
/// prefill attention more workgroups per dispatch and the prompt fewer dispatches: on
/// the H100 (session 8), 2048 against 512 took 0.5B pp2048 from 53k to 89k tok/s and 7B
/// from 9.3k to 10.3k. Activations grow with it (about 100 KB a row at 7B).
pub const DEFAULT_BATCH_SIZE: u32 = 2048;

/// The default chunk: [`DEFAULT_BATCH_SIZE`] rows, halved until the widest f32
/// activation of [`StepBuffers`] fits one storage binding, as `Activation` sizes it
/// (lavapipe's 128 MiB holds 7B's 18,944-wide FFN rows 1,024 at a time), and at most
/// `ctx`.
fn default_batch_size(gpu: &Gpu, cfg: &ModelConfig, ctx: u32) -> u32 {
    let widest = [
        cfg.hidden,
        cfg.q_dim() + 2 * cfg.kv_dim(),
        cfg.q_dim(),
        cfg.ffn,
    ]
    .into_iter()
    .max()
    .unwrap_or(1);
    let mut rows = DEFAULT_BATCH_SIZE;
    while rows > 1 && Activation::bytes(rows, widest, false) > gpu.max_binding_bytes {
        rows /= 2;
    }
    rows.min(ctx)
}

/// The buffers one forward step reads and writes; shapes in (rows, cols).
pub struct StepBuffers {
    /// The context limit: positions a sequence may use.
    pub ctx: u32,
    /// Positions the KV cache holds: `ctx` rounded up to a multiple of 4, so the
    /// cooperative-matrix prefill attention can read keys as vec4s. The cache layout and
    /// every attention kernel use this; nothing past `ctx` is ever written.
    pub kv_ctx: u32,
    pub max_rows: u32,
    pub state: wgpu::Buffer,         // StepState
    pub tokens: wgpu::Buffer,        // (max_rows) input ids
    pub out_tokens: wgpu::Buffer,    // (ctx) every sampled id, in order
    pub sample_params: wgpu::Buffer, // SampleParams (uniform)
    /// (vocab / 1024, 64) (key, index) candidates from the sampler pre-pass.
    pub candidates: wgpu::Buffer,
    pub x: Activation, // (max_rows, hidden) residual stream
    pub h: Activation, // (max_rows, hidden) normed (prefill; decode norms inside its GEMVs)
    /// (max_rows, q_dim + 2 kv_dim): Q | K | V. The decode plan's fused QKV GEMV writes
    /// only the Q columns (k and v go straight to the cache).
    pub qkv: Activation,
    pub attn: Activation, // (max_rows, q_dim)
    /// (max_rows, ffn) each; only for layers whose gate and up could not be fused.
    pub gate_up: Option<(Activation, Activation)>,
    pub act: Activation, // (max_rows, ffn)
    /// f16 twins of `h` and `act` for the prefill plan's cooperative-matrix GEMMs (see
    /// `METALLIC_PREFILL_ACT`); None on the portable path.
    pub h16: Option<Activation>,
    pub act16: Option<Activation>,
    pub logits: Activation, // (1, vocab)
    pub kv_cache: Vec<KvCacheLayer>,
    pub inv_freq: wgpu::Buffer, // (head_dim / 2)
    /// Per-chunk partials of split decode attention, shared by every layer.
    pub attn_scratch: DecodeScratch,
    pub dummy: wgpu::Buffer,
}

impl StepBuffers {
    fn new(
        gpu: &Gpu,
        cfg: &ModelConfig,
        ctx: u32,
        max_rows: u32,
        separate_ffn: bool,
        half_prefill: bool,
    ) -> Result<Self> {
        let act = |label: &str, rows: u32, cols: u32| Activation::new(gpu, label, rows, cols);
        // The f16 GEMM input is read 8 halves at a time: K must be a multiple of 8.
        let half = |label: &str, cols: u32| -> Result<Option<Activation>> {
            match half_prefill && cols.is_multiple_of(8) {
                true => Activation::new_f16(gpu, label, max_rows, cols).map(Some),
                false => Ok(None),
            }
        };
        let inv_freq = rope_kv::inv_freq(cfg.rope_theta, cfg.head_dim);
        let inv_freq_buf = storage_buffer(gpu, "inv_freq", inv_freq.len() as u64 * 4);
        gpu.queue
            .write_buffer(&inv_freq_buf, 0, bytemuck::cast_slice(&inv_freq));
        let kv_ctx = ctx.next_multiple_of(4);
        let kv_cache = (0..cfg.n_layers)
            .map(|l| qwen2::kv_cache_layer(gpu, cfg, kv_ctx, l))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            ctx,
            kv_ctx,
            max_rows,
            state: storage_buffer(gpu, "state", 16),
            tokens: storage_buffer(gpu, "tokens", max_rows as u64 * 4),
            out_tokens: storage_buffer(gpu, "out_tokens", ctx as u64 * 4),
            sample_params: uniform_buffer(
                gpu,
                "sample.params",
                &SampleParams::zeroed_for(cfg.vocab, ctx),
            ),
            candidates: storage_buffer(gpu, "candidates", sampling::candidates_bytes(cfg.vocab)),
            x: act("x", max_rows, cfg.hidden)?,
            h: act("h", max_rows, cfg.hidden)?,
            qkv: act("qkv", max_rows, cfg.q_dim() + 2 * cfg.kv_dim())?,
            attn: act("attn", max_rows, cfg.q_dim())?,
            gate_up: match separate_ffn {
                true => Some((
                    act("gate", max_rows, cfg.ffn)?,
                    act("up", max_rows, cfg.ffn)?,
                )),
                false => None,
            },
            act: act("act", max_rows, cfg.ffn)?,
            h16: half("h16", cfg.hidden)?,
            act16: half("act16", cfg.ffn)?,
            logits: act("logits", 1, cfg.vocab)?,
            kv_cache,
            inv_freq: inv_freq_buf,
            attn_scratch: DecodeScratch::new(gpu, &cfg.attn_shape(kv_ctx))?,
            dummy: storage_buffer(gpu, "dummy", 16),
        })
    }

    pub fn sample_bindings(&self) -> SampleBindings<'_> {
        SampleBindings {
            params: &self.sample_params,
            state: &self.state,
            logits: &self.logits.buf,
            tokens: &self.tokens,
            out_tokens: &self.out_tokens,
            candidates: &self.candidates,
        }
    }
}

/// `METALLIC_ATTN_FOLD=on|off`: at short contexts, decode steps merge the attention's
/// chunks inside the output projection instead of in a combine pass of their own.
pub fn attn_fold_from_env() -> Result<bool> {
    env_switch("METALLIC_ATTN_FOLD", "on", "off")
}

/// `METALLIC_PREFILL_ACT=f16|f32`: whether the prefill plan feeds its cooperative-matrix
/// GEMMs f16 activations (default f16; the portable path always uses f32).
fn prefill_f16_from_env() -> Result<bool> {
    env_switch("METALLIC_PREFILL_ACT", "f16", "f32")
}

/// A two-valued knob: true when unset or `default`, false for `other`, else an error.
pub(crate) fn env_switch(name: &str, default: &str, other: &str) -> Result<bool> {
    match std::env::var(name).as_deref().map(str::trim) {
        Err(_) | Ok("") => Ok(true),
        Ok(v) if v == default => Ok(true),
        Ok(v) if v == other => Ok(false),
        Ok(v) => Err(Error::Invalid(format!(
            "{name} must be {default} or {other}, got '{v}'"
        ))),
    }
}

impl SampleParams {
    fn zeroed_for(vocab: u32, max_out: u32) -> Self {
        Self {
            vocab,
            top_k: 0,
            top_p: 1.0,
            temperature: 0.0,
            seed_lo: 0,
            seed_hi: 0,
            max_out,
            _pad: 0,
        }
    }
}

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: u32,
    /// 1.0 = off.
    pub top_p: f32,
    pub seed: u64,
}

impl SamplerConfig {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(Error::Invalid(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::Invalid(format!(
                "top-p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        Ok(())
    }
}

pub struct Engine {
    pub gpu: Arc<Gpu>,
    pub config: ModelConfig,
    pub weights: qwen2::Qwen2Weights,
    pub buffers: StepBuffers,
    plans: ModelPlans,
    /// Host-side copy of the sequence position, for the evaluation API.
    pos: u32,
    profiler: Option<Profiler>,
    /// Per decode step, each dispatch's GPU time (profiling mode only).
    pub profile: Vec<Vec<KernelTime>>,
}

impl Engine {
    pub fn load(
        path: impl AsRef<Path>,
        opts: &EngineOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self> {
        let file = GgufFile::open(path)?;
        Self::from_gguf(&file, opts, progress)
    }

    pub fn from_gguf(
        file: &GgufFile,
        opts: &EngineOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self> {
        let config = ModelConfig::from_gguf(file)?;
        let gpu = Arc::new(Gpu::new(&opts.gpu)?);
        Self::with_gpu(gpu, file, config, opts, progress)
    }

    pub fn with_gpu(
        gpu: Arc<Gpu>,
        file: &GgufFile,
        config: ModelConfig,
        opts: &EngineOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self> {
        let ctx = match opts.ctx_size {
            Some(0) => return Err(Error::Invalid("--ctx-size must be at least 1".into())),
            Some(c) => c.min(config.context_length),
            None => config.context_length,
        };
        if opts.batch_size == Some(0) {
            return Err(Error::Invalid("--batch-size must be at least 1".into()));
        }
        let total: u64 = file.tensors().iter().map(|t| t.n_bytes).sum();
        let weights =
            qwen2::Qwen2Weights::load(&gpu, file, &config, &mut |done| progress(done, total));
        gpu.release_staging();
        let weights = weights?;
        let separate_ffn = weights
            .layers
            .iter()
            .any(|l| matches!(l.ffn_up, qwen2::FfnUpWeights::Separate { .. }));
        let gemm = GemmConfig::from_env(&gpu)?;
        let half_prefill = prefill_f16_from_env()? && gemm.path == GemmPath::Coop;
        let buffers = StepBuffers::new(
            &gpu,
            &config,
            ctx,
            opts.batch_size
                .map_or_else(|| default_batch_size(&gpu, &config, ctx), |b| b.min(ctx)),
            separate_ffn,
            half_prefill,
        )?;
        let builder = Builder {
            gpu: &gpu,
            gemv: GemvConfig::from_env()?,
            gemm,
            state: &buffers.state,
            dummy: &buffers.dummy,
        };
        let plans = qwen2::build(&builder, &config, &weights, &buffers, attn_fold_from_env()?)?;
        gpu.wait_idle()?;
        Ok(Self {
            gpu,
            config,
            weights,
            buffers,
            plans,
            pos: 0,
            profiler: None,
            profile: Vec::new(),
        })
    }

    /// Times every dispatch of every prompt chunk and decode step from now on (one step
    /// per submission, so throughput drops while profiling). Prompt-chunk kernels are
    /// labelled `prefill/...`.
    pub fn enable_profiling(&mut self) -> Result<()> {
        // Capacity for every dispatch a plan holds (a step launches at most that many).
        let n = self
            .dispatches_per_token()
            .max(self.plans.prefill.len() + self.plans.head.len()) as u32;
        self.profiler = Some(Profiler::new(&self.gpu, n)?);
        Ok(())
    }

    pub fn context_size(&self) -> u32 {
        self.buffers.ctx
    }

    /// Rows per prefill chunk (`--batch-size`, or the default the device allows).
    pub fn batch_size(&self) -> u32 {
        self.buffers.max_rows
    }

    /// Dispatches per decode step past the short-context plan (the most a step takes):
    /// the decode plan and the head (for reports).
    pub fn dispatches_per_token(&self) -> usize {
        self.plans.decode.len() + self.plans.head.len()
    }

    /// Dispatches of the decode step at position `pos` (see [`Engine::decode_plan_at`]).
    pub fn dispatches_per_token_at(&self, pos: u32) -> usize {
        self.decode_plan_at(pos).len() + self.plans.head.len()
    }

    /// The last position that takes the short-context decode plan (the attention's combine
    /// folded into the output projection), if there is one.
    pub fn short_decode_last_pos(&self) -> Option<u32> {
        let short = self.plans.short_decode.as_ref()?;
        Some(short.max_keys.min(self.buffers.ctx).saturating_sub(1))
    }

    /// The one-row plan for a step at position `pos`: the short-context plan while its
    /// merge is valid (few attention chunks live), else the plan with the combine pass.
    fn decode_plan_at(&self, pos: u32) -> &Plan {
        match &self.plans.short_decode {
            Some(short) if pos < short.max_keys => &short.plan,
            _ => &self.plans.decode,
        }
    }

    /// Dispatches per full prompt chunk (`batch_size` rows): see
    /// [`Engine::dispatches_per_chunk_of`].
    pub fn dispatches_per_prefill_chunk(&self) -> usize {
        self.dispatches_per_chunk_of(self.batch_size())
    }

    /// Dispatches a prompt chunk of `rows` (more than one) launches: the prefill plan (its
    /// GEMMs hold alternatives by chunk length, one of which runs) and the head.
    pub fn dispatches_per_chunk_of(&self, rows: u32) -> usize {
        self.plans.prefill.len_at(rows) + self.plans.head.len()
    }

    /// The body plan for a step of `rows` rows. One row takes the decode plan, also for a
    /// prompt chunk of one token (a one-token prompt, or the last token of a prompt one
    /// longer than a multiple of --batch-size): it is the same computation in fewer
    /// dispatches, and a tiled GEMM gains nothing on a single row. More rows take the
    /// prefill plan. `pos` is the chunk's first position.
    fn body(&self, rows: u32, pos: u32) -> &Plan {
        match rows {
            1 => self.decode_plan_at(pos),
            _ => &self.plans.prefill,
        }
    }

    fn write_state(&self, pos: u32, rows: u32, n_out: u32) {
        self.gpu.queue.write_buffer(
            &self.buffers.state,
            0,
            bytemuck::cast_slice(&[pos, rows, n_out, 0u32]),
        );
    }

    fn set_sampler(&self, s: &SamplerConfig) {
        let params = SampleParams {
            vocab: self.config.vocab,
            top_k: s.top_k,
            top_p: s.top_p,
            temperature: s.temperature,
            seed_lo: s.seed as u32,
            seed_hi: (s.seed >> 32) as u32,
            max_out: self.buffers.ctx,
            _pad: 0,
        };
        self.gpu
            .queue
            .write_buffer(&self.buffers.sample_params, 0, bytemuck::bytes_of(&params));
    }

    /// Runs the prompt through the model in chunks of at most `max_rows`, starting at
    /// `start`; the last chunk also samples the first token into out_tokens[n_out].
    fn submit_prefill(&mut self, prompt: &[u32], start: u32, n_out: u32) -> Result<()> {
        let chunks: Vec<&[u32]> = prompt.chunks(self.buffers.max_rows as usize).collect();
        let mut pos = start;
        for (i, chunk) in chunks.iter().enumerate() {
            let rows = chunk.len() as u32;
            let last = i + 1 == chunks.len();
            self.gpu
                .queue
                .write_buffer(&self.buffers.tokens, 0, bytemuck::cast_slice(chunk));
            self.write_state(pos, rows, n_out);
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            if let Some(profiler) = &self.profiler {
                let mut plans = vec![(self.body(rows, pos), rows)];
                if last {
                    plans.push((&self.plans.head, rows));
                }
                let labels = profiler.encode(&mut enc, &plans)?;
                self.gpu.queue.submit([enc.finish()]);
                let mut times = profiler.read(&self.gpu, labels)?;
                if rows > 1 {
                    for t in &mut times {
                        t.label = format!("prefill/{}", t.label);
                    }
                }
                self.profile.push(times);
            } else {
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    self.body(rows, pos).encode(&mut pass, rows);
                    if last {
                        self.plans.head.encode(&mut pass, rows);
                    }
                }
                self.gpu.queue.submit([enc.finish()]);
            }
            pos += rows;
        }
        Ok(())
    }

    /// Evaluates `tokens` at the current position and returns the logits of the last
    /// one. For tests and tools: it reads back, which the generation loop never does.
    pub fn eval(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        self.check_tokens(tokens)?;
        if self.pos as usize + tokens.len() > self.buffers.ctx as usize {
            return Err(Error::Invalid("evaluation runs past the context".into()));
        }
        self.set_sampler(&SamplerConfig::greedy());
        self.submit_prefill(tokens, self.pos, 0)?;
        self.pos += tokens.len() as u32;
        let bytes = read_buffer(
            &self.gpu,
            &self.buffers.logits.buf,
            0,
            self.config.vocab as u64 * 4,
        )?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    /// The token the GPU sampler chose in the last `eval` (greedy).
    pub fn last_sampled(&self) -> Result<u32> {
        let bytes = read_buffer(&self.gpu, &self.buffers.out_tokens, 0, 4)?;
        Ok(u32::from_le_bytes(bytes[..4].try_into().unwrap()))
    }

    pub fn reset(&mut self) {
        self.pos = 0;
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        if let Some(&bad) = tokens.iter().find(|&&t| t >= self.config.vocab) {
            return Err(Error::Invalid(format!(
                "token id {bad} is outside the vocabulary ({})",
                self.config.vocab
            )));
        }
        Ok(())
    }

    /// Generates up to `max_tokens` tokens after `prompt`, calling `on_token` for each
    /// as batches come back. Sampling runs on the GPU and the CPU records step t+1
    /// while the GPU runs step t; tokens are read back asynchronously in batches.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        max_tokens: u32,
        sampler: &SamplerConfig,
        stop_ids: &[u32],
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Generation> {
        sampler.validate()?;
        self.check_tokens(prompt)?;
        if prompt.is_empty() {
            return Err(Error::Invalid("the prompt is empty".into()));
        }
        let ctx = self.buffers.ctx as u64;
        if prompt.len() as u64 + max_tokens as u64 > ctx {
            return Err(Error::Invalid(format!(
                "prompt ({} tokens) plus --max-tokens ({max_tokens}) exceeds the context size ({ctx}); \
                 shorten the prompt, lower --max-tokens or raise --ctx-size",
                prompt.len()
            )));
        }
        self.pos = 0;
        let start = std::time::Instant::now();
        let mut gen = Generation {
            tokens: Vec::new(),
            stop_reason: StopReason::MaxTokens,
            prompt_s: 0.0,
            decode_s: 0.0,
        };
        if max_tokens == 0 {
            return Ok(gen);
        }
        self.set_sampler(sampler);
        self.submit_prefill(prompt, 0, 0)?;
        let first = self.read_tokens_async(0, 1)?.wait(&self.gpu)?;
        gen.prompt_s = start.elapsed().as_secs_f64();
        let decode_start = std::time::Instant::now();
        if self.accept(&mut gen, &first, stop_ids, on_token) || max_tokens == 1 {
            gen.finish(max_tokens);
            return Ok(gen);
        }
        // Token i (i >= 1) comes from the step at position prompt + i - 1.
        let first_pos = prompt.len() as u32;
        if self.profiler.is_some() {
            self.decode_profiled(&mut gen, first_pos, max_tokens, stop_ids, on_token)?;
        } else {
            self.decode_pipelined(&mut gen, first_pos, max_tokens, stop_ids, on_token)?;
        }
        // Steps queued past a stop token still run; their tokens are discarded.
        self.gpu.wait_idle()?;
        gen.decode_s = decode_start.elapsed().as_secs_f64();
        gen.finish(max_tokens);
        Ok(gen)
    }

    /// Decode steps in batches with two in flight: the CPU records batch i+1 while the
    /// GPU runs batch i, and reads batch i's tokens when they land.
    fn decode_pipelined(
        &self,
        gen: &mut Generation,
        first_pos: u32,
        max_tokens: u32,
        stop_ids: &[u32],
        on_token: &mut dyn FnMut(u32),
    ) -> Result<()> {
        let batch = decode_batch();
        let mut submitted = 1u32;
        let mut in_flight = std::collections::VecDeque::new();
        loop {
            while in_flight.len() < 2 && submitted < max_tokens {
                let n = batch.min(max_tokens - submitted);
                let mut enc = self.gpu.device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    for i in 0..n {
                        self.decode_plan_at(first_pos + submitted + i - 1)
                            .encode(&mut pass, 1);
                        self.plans.head.encode(&mut pass, 1);
                    }
                }
                self.gpu.queue.submit([enc.finish()]);
                in_flight.push_back(self.read_tokens_async(submitted, n)?);
                submitted += n;
            }
            let Some(pending) = in_flight.pop_front() else {
                return Ok(());
            };
            let tokens = pending.wait(&self.gpu)?;
            if self.accept(gen, &tokens, stop_ids, on_token) {
                return Ok(());
            }
        }
    }

    /// One step per submission, every dispatch timed.
    fn decode_profiled(
        &mut self,
        gen: &mut Generation,
        first_pos: u32,
        max_tokens: u32,
        stop_ids: &[u32],
        on_token: &mut dyn FnMut(u32),
    ) -> Result<()> {
        let Some(profiler) = &self.profiler else {
            return Ok(());
        };
        for step in 1..max_tokens {
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            let body = self.decode_plan_at(first_pos + step - 1);
            let labels = profiler.encode(&mut enc, &[(body, 1), (&self.plans.head, 1)])?;
            self.gpu.queue.submit([enc.finish()]);
            let pending = self.read_tokens_async(step, 1)?;
            self.profile.push(profiler.read(&self.gpu, labels)?);
            let tokens = pending.wait(&self.gpu)?;
            if self.accept(gen, &tokens, stop_ids, on_token) {
                break;
            }
        }
        Ok(())
    }

    /// Appends tokens up to and including the first stop token; true once stopped.
    fn accept(
        &self,
        gen: &mut Generation,
        tokens: &[u32],
        stop_ids: &[u32],
        on_token: &mut dyn FnMut(u32),
    ) -> bool {
        for &t in tokens {
            gen.tokens.push(t);
            on_token(t);
            if stop_ids.contains(&t) {
                gen.stop_reason = StopReason::Stop;
                return true;
            }
        }
        false
    }

    /// Queues a copy of out_tokens[first .. first + n] into a mappable buffer.
    fn read_tokens_async(&self, first: u32, n: u32) -> Result<PendingTokens> {
        let bytes = n as u64 * 4;
        let staging = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tokens.readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(
            &self.buffers.out_tokens,
            first as u64 * 4,
            &staging,
            0,
            bytes,
        );
        let index = self.gpu.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        Ok(PendingTokens { staging, rx, index })
    }
}

fn decode_batch() -> u32 {
    std::env::var("METALLIC_DECODE_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(8)
}

struct PendingTokens {
    staging: wgpu::Buffer,
    rx: std::sync::mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
    index: wgpu::SubmissionIndex,
}

impl PendingTokens {
    fn wait(self, gpu: &Gpu) -> Result<Vec<u32>> {
        gpu.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(self.index),
                timeout: None,
            })
            .map_err(|e| Error::Gpu(format!("device poll failed: {e}")))?;
        self.rx
            .recv()
            .map_err(|_| Error::Gpu("token readback was dropped".into()))?
            .map_err(|e| Error::Gpu(format!("token readback failed: {e}")))?;
        let view = self
            .staging
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(e.to_string()))?;
        let tokens = bytemuck::cast_slice(&view).to_vec();
        drop(view);
        self.staging.unmap();
        Ok(tokens)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// An end-of-generation token (EOS / EOT) was produced.
    Stop,
    /// `max_tokens` were produced.
    MaxTokens,
}

impl StopReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            StopReason::Stop => "stop",
            StopReason::MaxTokens => "length",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub stop_reason: StopReason,
    /// Prompt processing up to the first sampled token (time to first token).
    pub prompt_s: f64,
    /// The remaining tokens (excludes the first).
    pub decode_s: f64,
}

impl Generation {
    fn finish(&mut self, max_tokens: u32) {
        self.tokens.truncate(max_tokens as usize);
    }
}
