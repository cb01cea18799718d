//! The GPU sampler: greedy argmax, temperature / top-k / top-p draws checked against
//! sets computed on the CPU in f64, seeding, empirical frequencies and the step-state
//! update it performs.

mod common;

use common::*;
use metallic::gpu::{storage_buffer, uniform_buffer, Gpu, Plan};
use metallic::kernels::sampling::{candidates_bytes, sample, SampleBindings, SampleParams};
use metallic::synthetic::Rng;

struct Sampler {
    gpu: Gpu,
    params: wgpu::Buffer,
    state: wgpu::Buffer,
    logits: wgpu::Buffer,
    tokens: wgpu::Buffer,
    out_tokens: wgpu::Buffer,
    plan: Plan,
    vocab: u32,
    max_out: u32,
}

struct Outcome {
    state: [u32; 4],
    /// The whole 4-word tokens buffer.
    tokens: Vec<u32>,
    out_tokens: Vec<u32>,
}

impl Sampler {
    fn new(vocab: u32, max_out: u32) -> Self {
        let gpu = gpu(None);
        let params = uniform_buffer(&gpu, "params", &greedy(vocab, max_out));
        let state = storage_buffer(&gpu, "state", 16);
        let logits = storage_buffer(&gpu, "logits", vocab as u64 * 4);
        let tokens = storage_buffer(&gpu, "tokens", 16);
        let out_tokens = storage_buffer(&gpu, "out_tokens", max_out as u64 * 4);
        let candidates = storage_buffer(&gpu, "candidates", candidates_bytes(vocab));
        let mut plan = Plan::default();
        let bindings = SampleBindings {
            params: &params,
            state: &state,
            logits: &logits,
            tokens: &tokens,
            out_tokens: &out_tokens,
            candidates: &candidates,
        };
        for d in sample(&gpu, &bindings, vocab).unwrap() {
            plan.push(d);
        }
        Self {
            gpu,
            params,
            state,
            logits,
            tokens,
            out_tokens,
            plan,
            vocab,
            max_out,
        }
    }

    fn set_logits(&self, logits: &[f32]) {
        assert_eq!(logits.len(), self.vocab as usize);
        write_f32(&self.gpu, &self.logits, logits);
    }

    fn set_params(&self, p: &SampleParams) {
        self.gpu
            .queue
            .write_buffer(&self.params, 0, bytemuck::bytes_of(p));
    }

    /// Runs the sampler `times` times back to back (it advances the state itself) from
    /// `state`, with poisoned token buffers.
    fn run(&self, state: [u32; 4], times: u32) -> Outcome {
        write_u32(&self.gpu, &self.state, &state);
        poison(&self.gpu, &self.tokens);
        poison(&self.gpu, &self.out_tokens);
        run_plan(&self.gpu, &self.plan, 1, times);
        let s = read_u32(&self.gpu, &self.state);
        Outcome {
            state: [s[0], s[1], s[2], s[3]],
            tokens: read_u32(&self.gpu, &self.tokens),
            out_tokens: read_u32(&self.gpu, &self.out_tokens),
        }
    }

    /// `n` draws with counters 0..n; checks the state bookkeeping and returns them.
    fn draws(&self, n: u32) -> Vec<u32> {
        assert!(n <= self.max_out);
        let o = self.run([0, 1, 0, 0], n);
        assert_eq!(o.state, [n, 1, n, 0], "state after {n} draws");
        let drawn = o.out_tokens[..n as usize].to_vec();
        assert_eq!(
            o.tokens[0],
            drawn[n as usize - 1],
            "tokens[0] is the last draw"
        );
        for (i, &t) in drawn.iter().enumerate() {
            assert!(t < self.vocab, "draw {i}: token {t} (not written?)");
        }
        assert!(o.out_tokens[n as usize..].iter().all(|&t| t == POISON));
        drawn
    }
}

fn greedy(vocab: u32, max_out: u32) -> SampleParams {
    SampleParams {
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

fn params(
    vocab: u32,
    max_out: u32,
    temperature: f32,
    top_k: u32,
    top_p: f32,
    seed: u64,
) -> SampleParams {
    SampleParams {
        temperature,
        top_k,
        top_p,
        seed_lo: seed as u32,
        seed_hi: (seed >> 32) as u32,
        ..greedy(vocab, max_out)
    }
}

fn first_argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn distinct(v: &[u32]) -> usize {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v.len()
}

/// Tokens a temperature / top-k / top-p sampler may return, in f64: those among the
/// top_k largest logits (ties at the k-th value kept) such that the softmax mass of the
/// kept logits strictly larger than theirs is below top_p (+ a rounding margin).
fn allowed(logits: &[f32], temperature: f64, top_k: usize, top_p: f64) -> Vec<bool> {
    let mut sorted: Vec<f32> = logits.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let kth = if top_k > 0 && top_k < logits.len() {
        sorted[top_k - 1]
    } else {
        f32::NEG_INFINITY
    };
    let max = sorted[0] as f64;
    let w = |l: f32| ((l as f64 - max) / temperature).exp();
    let kept: Vec<f32> = sorted.iter().copied().filter(|&l| l >= kth).collect();
    let total: f64 = kept.iter().map(|&l| w(l)).sum();
    logits
        .iter()
        .map(|&l| {
            let above: f64 = kept.iter().filter(|&&o| o > l).map(|&o| w(o)).sum();
            l >= kth && above / total < top_p + 1e-5
        })
        .collect()
}

#[test]
fn greedy_first_max_and_state_update() {
    let vocab = 1000;
    let s = Sampler::new(vocab, 8);
    let mut rng = Rng::new(71);
    s.set_params(&greedy(vocab, 8));
    // Ties within one thread's stride (300, 556), across threads (301), at the ends.
    for ties in [
        vec![556, 301, 300],
        vec![999, 998],
        vec![0, 999],
        vec![257, 513, 769],
        vec![777],
    ] {
        let mut logits = rand_vec(&mut rng, vocab as usize, 5.0);
        for &t in &ties {
            logits[t] = 9.5;
        }
        s.set_logits(&logits);
        let want = *ties.iter().min().unwrap() as u32;
        assert_eq!(first_argmax(&logits), want);
        let o = s.run([10, 4, 3, 0], 1);
        assert_eq!(o.tokens[0], want, "greedy with ties at {ties:?}");
        assert_eq!(&o.tokens[1..], &[POISON; 3], "only tokens[0] is written");
        assert_eq!(o.out_tokens[3], want, "out_tokens[n_out]");
        for (i, &t) in o.out_tokens.iter().enumerate() {
            if i != 3 {
                assert_eq!(t, POISON, "out_tokens[{i}] written");
            }
        }
        // pos += n_rows, n_rows = 1, n_out += 1.
        assert_eq!(o.state, [14, 1, 4, 0]);
    }
    // All-negative logits: the max is the least negative.
    let mut logits: Vec<f32> = rand_vec(&mut rng, vocab as usize, 5.0)
        .iter()
        .map(|v| v - 20.0)
        .collect();
    logits[613] = -1.0;
    s.set_logits(&logits);
    assert_eq!(s.run([0, 1, 0, 0], 1).tokens[0], 613);
    // out_tokens full: nothing written there, the counter still advances.
    let o = s.run([20, 1, 8, 0], 1);
    assert_eq!(o.tokens[0], 613);
    assert!(
        o.out_tokens.iter().all(|&t| t == POISON),
        "wrote past max_out"
    );
    assert_eq!(o.state, [21, 1, 9, 0]);
}

#[test]
fn greedy_large_vocab() {
    let vocab = 151_936;
    let s = Sampler::new(vocab, 4);
    let mut rng = Rng::new(72);
    s.set_params(&greedy(vocab, 4));
    let mut logits = rand_vec(&mut rng, vocab as usize, 8.0);
    logits[151_935] = 12.0;
    logits[140_000] = 12.0;
    s.set_logits(&logits);
    assert_eq!(s.run([0, 1, 0, 0], 1).tokens[0], 140_000);
    logits[77_777] = 12.0;
    s.set_logits(&logits);
    assert_eq!(s.run([0, 1, 0, 0], 1).tokens[0], 77_777);
    // Temperature with top_k = 1 is greedy too, whatever the vocabulary size. (Without
    // the ties: top-k keeps every logit equal to the k-th, so ties would all be drawn.)
    logits[151_935] = 11.0;
    logits[140_000] = 11.0;
    s.set_logits(&logits);
    s.set_params(&params(vocab, 4, 0.8, 1, 1.0, 5));
    let o = s.run([0, 1, 0, 0], 4);
    assert_eq!(&o.out_tokens, &[77_777; 4]);
}

#[test]
fn top_k_one_and_tiny_top_p_are_argmax() {
    let vocab = 1000;
    let s = Sampler::new(vocab, 64);
    let mut rng = Rng::new(73);
    let logits = rand_vec(&mut rng, vocab as usize, 2.0);
    s.set_logits(&logits);
    let want = first_argmax(&logits);
    for p in [
        params(vocab, 64, 0.8, 1, 1.0, 1),
        params(vocab, 64, 1.5, 1, 0.9, 2),
        params(vocab, 64, 1.0, 0, 1e-6, 3),
    ] {
        s.set_params(&p);
        let draws = s.draws(64);
        assert!(
            draws.iter().all(|&t| t == want),
            "{p:?}: {draws:?}, argmax {want}"
        );
    }
}

#[test]
fn top_k_draws_stay_in_top_k() {
    let vocab = 1000;
    let s = Sampler::new(vocab, 200);
    let mut rng = Rng::new(74);
    let logits = rand_vec(&mut rng, vocab as usize, 3.0);
    s.set_logits(&logits);
    // k <= 64 takes the candidate fast path, 100 the full-vocabulary path.
    for (temperature, top_k) in [(1.0, 5), (0.7, 5), (2.0, 40), (1.5, 100)] {
        s.set_params(&params(
            vocab,
            200,
            temperature,
            top_k,
            1.0,
            0xDEAD_BEEF_0000_0001,
        ));
        let ok = allowed(&logits, temperature as f64, top_k as usize, 1.0);
        assert_eq!(ok.iter().filter(|&&b| b).count(), top_k as usize);
        let draws = s.draws(200);
        for (i, &t) in draws.iter().enumerate() {
            assert!(
                ok[t as usize],
                "T={temperature} top_k={top_k}: draw {i} = {t} (logit {}) outside the top k",
                logits[t as usize]
            );
        }
        let d = distinct(&draws);
        assert!(
            d >= 3,
            "T={temperature} top_k={top_k}: only {d} distinct tokens in 200 draws"
        );
    }
}

#[test]
fn top_p_draws_stay_in_nucleus() {
    let vocab = 1000;
    let s = Sampler::new(vocab, 200);
    let mut rng = Rng::new(75);
    let logits = rand_vec(&mut rng, vocab as usize, 6.0);
    s.set_logits(&logits);
    for (temperature, top_k, top_p) in [
        (0.7, 0, 0.5),
        (1.0, 0, 0.9),
        (1.3, 50, 0.5),
        (0.5, 20, 0.95),
    ] {
        let what = format!("T={temperature} top_k={top_k} top_p={top_p}");
        s.set_params(&params(vocab, 200, temperature, top_k, top_p, 99));
        let ok = allowed(&logits, temperature as f64, top_k as usize, top_p as f64);
        let size = ok.iter().filter(|&&b| b).count();
        assert!(size >= 5, "{what}: nucleus of {size} is too small to test");
        let draws = s.draws(200);
        for (i, &t) in draws.iter().enumerate() {
            assert!(
                ok[t as usize],
                "{what}: draw {i} = {t} (logit {}) outside the nucleus of {size}",
                logits[t as usize]
            );
        }
        let d = distinct(&draws);
        assert!(d >= 3, "{what}: only {d} distinct tokens in 200 draws");
    }
}

#[test]
fn seeds_and_counters() {
    let vocab = 1000;
    let s = Sampler::new(vocab, 64);
    let mut rng = Rng::new(76);
    let logits = rand_vec(&mut rng, vocab as usize, 1.0);
    s.set_logits(&logits);
    let one = |seed: u64, counter: u32| {
        s.set_params(&params(vocab, 64, 1.0, 0, 1.0, seed));
        let o = s.run([0, 1, counter, 0], 1);
        assert_eq!(o.out_tokens[counter as usize], o.tokens[0]);
        o.tokens[0]
    };
    // Same seed and counter: same token, also inside a chained run.
    s.set_params(&params(vocab, 64, 1.0, 0, 1.0, 1234));
    let chained = s.draws(64);
    for counter in [0u32, 1, 37, 63] {
        assert_eq!(
            one(1234, counter),
            chained[counter as usize],
            "counter {counter}"
        );
        assert_eq!(one(1234, counter), one(1234, counter), "counter {counter}");
    }
    assert!(
        distinct(&chained) >= 16,
        "counters barely change the draw: {chained:?}"
    );
    // Different seeds (low word, high word): a spread of tokens.
    let lo: Vec<u32> = (0..16u64).map(|i| one(i, 5)).collect();
    let hi: Vec<u32> = (0..16u64).map(|i| one(i << 32, 5)).collect();
    assert!(distinct(&lo) >= 4, "seeds 0..16 give {lo:?}");
    assert!(distinct(&hi) >= 4, "seeds (0..16) << 32 give {hi:?}");
}

#[test]
fn empirical_frequencies() {
    // Four live tokens in different threads' ranges, the rest impossible.
    let vocab = 1000;
    let n = 400;
    let s = Sampler::new(vocab, n);
    let live = [3usize, 250, 517, 999];
    let probs = [0.1f64, 0.2, 0.3, 0.4];
    let mut logits = vec![-1e4f32; vocab as usize];
    for (&i, &p) in live.iter().zip(&probs) {
        logits[i] = p.ln() as f32;
    }
    s.set_logits(&logits);
    // top_k 0: the full path; top_k 10: the candidate fast path.
    for (temperature, seed, top_k) in [
        (1.0f64, 7u64, 0u32),
        (0.5, 8, 0),
        (1.0, 9, 10),
        (0.5, 10, 10),
    ] {
        let w: Vec<f64> = probs.iter().map(|p| p.powf(1.0 / temperature)).collect();
        let sum: f64 = w.iter().sum();
        s.set_params(&params(vocab, n, temperature as f32, top_k, 1.0, seed));
        let draws = s.draws(n);
        let mut counts = [0u32; 4];
        for &t in &draws {
            let j = live
                .iter()
                .position(|&l| l == t as usize)
                .unwrap_or_else(|| panic!("T={temperature}: drew impossible token {t}"));
            counts[j] += 1;
        }
        let chi2: f64 = counts
            .iter()
            .zip(&w)
            .map(|(&c, &wi)| {
                let e = n as f64 * wi / sum;
                (c as f64 - e).powi(2) / e
            })
            .sum();
        // 3 degrees of freedom: P(chi2 > 20) is about 2e-4.
        assert!(
            chi2 < 20.0,
            "T={temperature}: counts {counts:?}, chi2 {chi2:.1}"
        );
    }
}

#[test]
fn ties_at_the_kth_value_fall_back_exactly() {
    // 100 logits tie at the top inside one 1024-wide chunk: that chunk's 64-entry list
    // cannot hold them all, so the sampler must take the full path, which keeps every
    // tie at the k-th value.
    let vocab = 3000;
    let s = Sampler::new(vocab, 200);
    let mut rng = Rng::new(76);
    let mut logits: Vec<f32> = rand_vec(&mut rng, vocab as usize, 1.0);
    for l in &mut logits[200..300] {
        *l = 5.0;
    }
    s.set_logits(&logits);
    s.set_params(&params(vocab, 200, 1.0, 5, 1.0, 1234));
    let draws = s.draws(200);
    assert!(
        draws.iter().all(|&t| (200..300).contains(&t)),
        "a draw left the tied top set"
    );
    // Chunk 0's list holds ids 200..264 only; an exact sampler draws the rest too
    // (P(no draw from 264..300 in 200 uniform draws) is about 1e-39).
    assert!(
        draws.iter().any(|&t| t >= 264),
        "ties beyond the chunk's 64-entry list were never drawn"
    );
}

#[test]
fn small_vocabulary() {
    // Fewer logits than the 256 threads: most threads own nothing.
    let vocab = 5;
    let s = Sampler::new(vocab, 100);
    let logits = [0.5, 2.0, -1.0, 2.0, 1.9];
    s.set_logits(&logits);
    s.set_params(&greedy(vocab, 100));
    assert_eq!(
        s.run([0, 1, 0, 0], 1).tokens[0],
        1,
        "first of the tied maxima"
    );
    // top_k = 3 keeps {1, 3, 4}.
    s.set_params(&params(vocab, 100, 1.0, 3, 1.0, 3));
    let draws = s.draws(100);
    assert!(
        draws.iter().all(|t| [1, 3, 4].contains(t)),
        "top_k=3: {draws:?}"
    );
    assert_eq!(distinct(&draws), 3, "top_k=3: {draws:?}");
    // top_k = vocab is off: every token can come out.
    s.set_params(&params(vocab, 100, 3.0, vocab, 1.0, 4));
    let draws = s.draws(100);
    assert_eq!(distinct(&draws), 5, "top_k=vocab: {draws:?}");
}
