// A parallel pre-pass over the logits: each workgroup sorts a CHUNK of them (bitonic,
// in workgroup memory) and keeps its best KEEP as (key, index). The global top-k for
// any k <= KEEP is inside the union of the chunks' lists, so the sampler then works on
// n_chunks * KEEP candidates instead of the whole vocabulary. Greedy keeps only the head.

const CHUNK: u32 = 1024u;
const KEEP: u32 = 64u;

@group(0) @binding(5) var<storage, read_write> candidates: array<vec2<u32>>;  // (n_chunks, KEEP) best first

var<workgroup> sort_keys: array<u32, CHUNK>;
var<workgroup> sort_idx: array<u32, CHUNK>;

// The sampler's order: larger logit first, then smaller index (torch.argmax's tie rule).
fn better(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
    return ka > kb || (ka == kb && ia < ib);
}

fn n_chunks() -> u32 {
    return (p.vocab + CHUNK - 1u) / CHUNK;
}

// Greedy reads only each list's head, so the chunk needs its best entry, not a sort:
// a tree reduction (log2(WG) barriers instead of the sort's 55).
fn chunk_best(base: u32, lid: u32) {
    var bk = 0u;
    var bi = 0xffffffffu;
    for (var j = 0u; j < CHUNK / WG; j++) {
        let i = base + lid + j * WG;
        if (i < p.vocab) {
            let k = key_of(logits[i]);
            if (better(k, i, bk, bi)) {
                bk = k;
                bi = i;
            }
        }
    }
    sort_keys[lid] = bk;
    sort_idx[lid] = bi;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride && better(sort_keys[lid + stride], sort_idx[lid + stride], sort_keys[lid], sort_idx[lid])) {
            sort_keys[lid] = sort_keys[lid + stride];
            sort_idx[lid] = sort_idx[lid + stride];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG)
fn chunk_candidates(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = wg.x * CHUNK;
    if (p.temperature <= 0.0) {
        chunk_best(base, lid);
        if (lid == 0u) {
            candidates[wg.x * KEEP] = vec2<u32>(sort_keys[0], sort_idx[0]);
        }
        return;
    }
    for (var j = 0u; j < CHUNK / WG; j++) {
        let t = lid + j * WG;
        let i = base + t;
        if (i < p.vocab) {
            sort_keys[t] = key_of(logits[i]);
            sort_idx[t] = i;
        } else {
            sort_keys[t] = 0u;
            sort_idx[t] = 0xffffffffu;
        }
    }
    workgroupBarrier();
    for (var size = 2u; size <= CHUNK; size <<= 1u) {
        for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
            for (var j = 0u; j < CHUNK / WG; j++) {
                let a = lid + j * WG;
                let b = a ^ stride;
                if (b > a) {
                    let a_first = better(sort_keys[a], sort_idx[a], sort_keys[b], sort_idx[b]);
                    // Blocks alternate direction so that each stage merges bitonic runs.
                    let want_a_first = (a & size) == 0u;
                    if (a_first != want_a_first) {
                        let k = sort_keys[a];
                        let ix = sort_idx[a];
                        sort_keys[a] = sort_keys[b];
                        sort_idx[a] = sort_idx[b];
                        sort_keys[b] = k;
                        sort_idx[b] = ix;
                    }
                }
            }
            workgroupBarrier();
        }
    }
    if (lid < KEEP) {
        candidates[wg.x * KEEP + lid] = vec2<u32>(sort_keys[lid], sort_idx[lid]);
    }
}
