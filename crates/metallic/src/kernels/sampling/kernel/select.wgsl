// Order-preserving keys and threshold searches over the logits, for one 256-wide workgroup.

const WG: u32 = 256u;

struct SampleParams {
    vocab: u32,
    top_k: u32,        // 0 or >= vocab: off
    top_p: f32,        // >= 1: off
    temperature: f32,  // <= 0: greedy
    seed_lo: u32,
    seed_hi: u32,
    max_out: u32,      // capacity of out_tokens
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: SampleParams;
@group(0) @binding(1) var<storage, read_write> state: StepState;
@group(0) @binding(2) var<storage, read> logits: array<f32>;          // (vocab)
@group(0) @binding(3) var<storage, read_write> tokens: array<u32>;    // next step's input, row 0
@group(0) @binding(4) var<storage, read_write> out_tokens: array<u32>; // (max_out) every sampled id

var<workgroup> hist: array<atomic<u32>, WG>;
var<workgroup> radix_prefix: u32;
var<workgroup> radix_remaining: u32;

// A u32 whose unsigned order is the float order (negative floats flip entirely).
fn key_of(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// The key of the k-th largest logit (or, with `from_candidates`, of the k-th largest
// candidate), by four 8-bit radix passes: exact; ties share a key.
fn kth_largest_key(k: u32, lid: u32, from_candidates: bool) -> u32 {
    if (lid == 0u) {
        radix_prefix = 0u;
        radix_remaining = k;
    }
    for (var round = 0u; round < 4u; round++) {
        let shift = 24u - 8u * round;
        let high_mask = ~(0xffffffffu >> (8u * round));  // digits already fixed
        atomicStore(&hist[lid], 0u);
        let prefix = workgroupUniformLoad(&radix_prefix);
        let n = select(p.vocab, n_chunks() * KEEP, from_candidates);
        for (var i = lid; i < n; i += WG) {
            var key = 0u;
            var valid = true;
            if (from_candidates) {
                key = candidates[i].x;
                valid = candidates[i].y != 0xffffffffu;
            } else {
                key = key_of(logits[i]);
            }
            if (valid && (key & high_mask) == prefix) {
                atomicAdd(&hist[(key >> shift) & 255u], 1u);
            }
        }
        workgroupBarrier();
        if (lid == 0u) {
            var remaining = radix_remaining;
            var digit = 255u;
            loop {
                let c = atomicLoad(&hist[digit]);
                if (c >= remaining || digit == 0u) {
                    break;
                }
                remaining -= c;
                digit -= 1u;
            }
            radix_prefix = prefix | (digit << shift);
            radix_remaining = remaining;
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&radix_prefix);
}

// Unnormalised softmax mass of the logits whose key is at least `threshold`.
fn mass_from(threshold: u32, max_logit: f32, inv_temp: f32, lid: u32, sg_id: u32, n_sg: u32, lane: u32) -> f32 {
    var s = 0.0;
    for (var i = lid; i < p.vocab; i += WG) {
        let l = logits[i];
        if (key_of(l) >= threshold) {
            s += exp((l - max_logit) * inv_temp);
        }
    }
    return workgroup_sum(s, sg_id, n_sg, lane);
}
