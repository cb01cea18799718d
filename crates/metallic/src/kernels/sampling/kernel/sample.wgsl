// Picks the next token on the GPU and advances the step state, so the decode loop needs
// no readback: greedy argmax, or temperature, top-k and top-p with a counter-based RNG
// (seed, number of tokens sampled so far), so a seed always reproduces its output.

var<workgroup> best_val: array<f32, WG>;
var<workgroup> best_idx: array<u32, WG>;
var<workgroup> thread_mass: array<f32, WG>;
var<workgroup> chosen: atomic<u32>;

fn pcg_hash(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

fn uniform01(counter: u32) -> f32 {
    let h = pcg_hash(p.seed_lo ^ pcg_hash(p.seed_hi ^ pcg_hash(counter)));
    return f32(h >> 8u) * (1.0 / 16777216.0);
}

// First index of the largest logit, as torch.argmax picks it.
fn argmax(lid: u32) -> u32 {
    var bv = -3.4e38;
    var bi = 0xffffffffu;
    for (var i = lid; i < p.vocab; i += WG) {
        let l = logits[i];
        if (l > bv) {
            bv = l;
            bi = i;
        }
    }
    best_val[lid] = bv;
    best_idx[lid] = bi;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            let ov = best_val[lid + stride];
            let oi = best_idx[lid + stride];
            if (ov > best_val[lid] || (ov == best_val[lid] && oi < best_idx[lid])) {
                best_val[lid] = ov;
                best_idx[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    return best_idx[0];
}

// Draws from the tokens whose key is at least `threshold`, in proportion to their mass.
// Each thread owns a contiguous range, so the order of summation is fixed.
fn draw(threshold: u32, max_logit: f32, inv_temp: f32, lid: u32) -> u32 {
    let chunk = (p.vocab + WG - 1u) / WG;
    let begin = min(lid * chunk, p.vocab);
    let end = min(begin + chunk, p.vocab);
    var local = 0.0;
    for (var i = begin; i < end; i++) {
        let l = logits[i];
        if (key_of(l) >= threshold) {
            local += exp((l - max_logit) * inv_temp);
        }
    }
    thread_mass[lid] = local;
    if (lid == 0u) {
        atomicStore(&chosen, 0xffffffffu);
    }
    workgroupBarrier();
    var before = 0.0;
    for (var j = 0u; j < lid; j++) {
        before += thread_mass[j];
    }
    var total = before;
    for (var j = lid; j < WG; j++) {
        total += thread_mass[j];
    }
    let r = uniform01(state.n_out) * total;
    let last_owner = r >= total && local > 0.0;  // rounding put r past the end
    if ((r >= before && r < before + local) || last_owner) {
        let goal = r - before;
        var acc = 0.0;
        var pick = 0xffffffffu;
        for (var i = begin; i < end; i++) {
            let l = logits[i];
            if (key_of(l) >= threshold) {
                acc += exp((l - max_logit) * inv_temp);
                pick = i;
                if (acc > goal && !last_owner) {
                    break;
                }
            }
        }
        if (last_owner) {
            atomicMax(&chosen, pick);
        } else {
            atomicMin(&chosen, pick);
        }
    }
    workgroupBarrier();
    return atomicLoad(&chosen);
}

@compute @workgroup_size(WG)
fn sample(
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    var token = argmax(lid);
    if (p.temperature > 0.0) {
        let max_logit = best_val[0];
        let inv_temp = 1.0 / p.temperature;
        var threshold = 0u;
        if (p.top_k > 0u && p.top_k < p.vocab) {
            threshold = kth_largest_key(p.top_k, lid);
        }
        if (p.top_p < 1.0) {
            // The largest threshold whose kept mass still reaches top_p: the smallest
            // prefix of the sorted distribution with cumulative probability >= top_p.
            let wanted = p.top_p * mass_from(threshold, max_logit, inv_temp, lid, sg_id, n_sg, lane);
            var lo = threshold;
            var hi = key_of(max_logit);
            for (var it = 0u; it < 32u; it++) {
                let span = hi - lo;
                let mid = lo + (span >> 1u) + (span & 1u);
                if (mass_from(mid, max_logit, inv_temp, lid, sg_id, n_sg, lane) >= wanted) {
                    lo = mid;
                } else {
                    hi = mid - 1u;
                }
            }
            threshold = lo;
        }
        token = draw(threshold, max_logit, inv_temp, lid);
    }
    workgroupBarrier();
    if (lid == 0u) {
        tokens[0] = token;
        if (state.n_out < p.max_out) {
            out_tokens[state.n_out] = token;
        }
        state.n_out += 1u;
        state.pos += state.n_rows;
        state.n_rows = 1u;
    }
}
