// Picks the next token on the GPU and advances the step state, so the decode loop needs
// no readback: greedy argmax, or temperature, top-k and top-p with a counter-based RNG
// (seed, number of tokens sampled so far), so a seed always reproduces its output.

const NO_TOKEN: u32 = 0xffffffffu;
const LIST: u32 = 128u;  // top-k survivors the fast path can hold (k <= KEEP, plus ties)

var<workgroup> best_key: array<u32, WG>;
var<workgroup> best_idx: array<u32, WG>;
var<workgroup> list_keys: array<u32, LIST>;
var<workgroup> list_idx: array<u32, LIST>;
var<workgroup> list_len: atomic<u32>;
var<workgroup> list_n: u32;
var<workgroup> list_undecided: u32;
var<workgroup> list_pick: u32;
var<workgroup> use_full_path: u32;
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

// The best (key, index) over the chunks' list heads: greedy's token.
fn best_candidate(lid: u32) -> u32 {
    var bk = 0u;
    var bi = 0xffffffffu;
    for (var c = lid; c < n_chunks(); c += WG) {
        let v = candidates[c * KEEP];
        if (better(v.x, v.y, bk, bi)) {
            bk = v.x;
            bi = v.y;
        }
    }
    best_key[lid] = bk;
    best_idx[lid] = bi;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride && better(best_key[lid + stride], best_idx[lid + stride], best_key[lid], best_idx[lid])) {
            best_key[lid] = best_key[lid + stride];
            best_idx[lid] = best_idx[lid + stride];
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&best_idx[0]);
}

// Top-k (k <= KEEP) then top-p over the candidate lists, in workgroup memory. Returns
// NO_TOKEN when the lists cannot decide exactly (a chunk may have dropped ties at the
// k-th value, or more than LIST tokens tie); the caller then takes the full path.
fn sample_from_candidates(lid: u32, inv_temp: f32) -> u32 {
    let total = n_chunks() * KEEP;
    let kth = kth_largest_key(p.top_k, lid, true);
    if (lid == 0u) {
        atomicStore(&list_len, 0u);
        list_undecided = 0u;
    }
    workgroupBarrier();
    for (var c = lid; c < total; c += WG) {
        let v = candidates[c];
        if (v.y != NO_TOKEN && v.x >= kth) {
            if (c % KEEP == KEEP - 1u) {
                list_undecided = 1u;  // this chunk's list is full at or above the threshold
            }
            let slot = atomicAdd(&list_len, 1u);
            if (slot < LIST) {
                list_keys[slot] = v.x;
                list_idx[slot] = v.y;
            }
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        list_n = atomicLoad(&list_len);
        if (list_n > LIST) {
            list_undecided = 1u;
        }
    }
    if (workgroupUniformLoad(&list_undecided) != 0u) {
        return NO_TOKEN;
    }
    let n = workgroupUniformLoad(&list_n);
    for (var t = lid; t < LIST; t += WG) {
        if (t >= n) {
            list_keys[t] = 0u;
            list_idx[t] = NO_TOKEN;
        }
    }
    workgroupBarrier();
    // Sort best first, so the order (and so the draw) does not depend on atomics.
    for (var size = 2u; size <= LIST; size <<= 1u) {
        for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
            let a = lid;
            let b = a ^ stride;
            if (a < LIST && b > a) {
                let a_first = better(list_keys[a], list_idx[a], list_keys[b], list_idx[b]);
                if (a_first != ((a & size) == 0u)) {
                    let k = list_keys[a];
                    let ix = list_idx[a];
                    list_keys[a] = list_keys[b];
                    list_idx[a] = list_idx[b];
                    list_keys[b] = k;
                    list_idx[b] = ix;
                }
            }
            workgroupBarrier();
        }
    }
    if (lid == 0u) {
        let max_logit = logits[list_idx[0]];
        var mass = 0.0;
        for (var i = 0u; i < n; i++) {
            mass += exp((logits[list_idx[i]] - max_logit) * inv_temp);
        }
        // Smallest prefix of the sorted list whose mass reaches top_p.
        let wanted = min(p.top_p, 1.0) * mass;
        var kept = 0u;
        var cum = 0.0;
        loop {
            cum += exp((logits[list_idx[kept]] - max_logit) * inv_temp);
            kept += 1u;
            if (cum >= wanted || kept >= n) {
                break;
            }
        }
        let r = uniform01(state.n_out) * cum;
        var acc = 0.0;
        var pick = list_idx[kept - 1u];
        for (var i = 0u; i < kept; i++) {
            acc += exp((logits[list_idx[i]] - max_logit) * inv_temp);
            if (acc > r) {
                pick = list_idx[i];
                break;
            }
        }
        list_pick = pick;
    }
    return workgroupUniformLoad(&list_pick);
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

// The exact path over the whole vocabulary, for top_k = 0 or top_k > KEEP.
fn sample_full(lid: u32, sg_id: u32, n_sg: u32, lane: u32, max_logit: f32, inv_temp: f32) -> u32 {
    var threshold = 0u;
    if (p.top_k > 0u && p.top_k < p.vocab) {
        threshold = kth_largest_key(p.top_k, lid, false);
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
    return draw(threshold, max_logit, inv_temp, lid);
}

@compute @workgroup_size(WG)
fn sample(
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    var token = best_candidate(lid);
    if (p.temperature > 0.0) {
        let max_logit = logits[token];
        let inv_temp = 1.0 / p.temperature;
        var fast = NO_TOKEN;
        if (p.top_k > 0u && p.top_k <= KEEP) {
            fast = sample_from_candidates(lid, inv_temp);
        }
        if (lid == 0u) {
            use_full_path = u32(fast == NO_TOKEN);
        }
        token = fast;
        if (workgroupUniformLoad(&use_full_path) != 0u) {
            token = sample_full(lid, sg_id, n_sg, lane, max_logit, inv_temp);
        }
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
