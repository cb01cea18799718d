// Probe kernels for grid_sync_probe.rs: what a barrier across all workgroups of one
// dispatch costs against a dependent dispatch, and whether plain loads see what other
// workgroups stored before the barrier. Not used by the engine.

struct Params {
    rounds: u32,
    // vec4<u32> words each round streams, over all workgroups; round r reads region
    // r % regions of `weights`, so consecutive rounds do not hit each other in cache
    words: u32,
    // the first round's index (the one-round-per-dispatch form runs round `first` only)
    first: u32,
    // 1: grid barrier after each round; 2: also load the next round's first vectors
    // before waiting at that barrier
    mode: u32,
    // rounds cycle through this many regions of `weights`
    regions: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256u;
override SLOT: u32 = 256u;  // words each workgroup publishes per round (coherence)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weights: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> sync: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

// All workgroups arrive, then all leave. `storageBarrier` is a device-scope acquire-release
// fence (naga: OpControlBarrier, memory scope Device, UniformMemory); the counter only
// grows, so round r waits for (r + 1) arrivals per workgroup.
fn grid_barrier(arrivals: u32, lid: u32) {
    storageBarrier();
    if (lid == 0u) {
        atomicAdd(&sync[0], 1u);
        loop {
            if (atomicLoad(&sync[0]) >= arrivals) {
                break;
            }
        }
    }
    storageBarrier();
}

fn load(r: u32, i: u32) -> vec4<u32> {
    if (i >= p.words) {
        return vec4<u32>(0u);
    }
    return weights[(r % p.regions) * p.words + i];
}

@compute @workgroup_size(WG)
fn stream_rounds(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let stride = nwg.x * WG;
    let me = wg.x * WG + lid;
    var acc = vec4<u32>(0u);
    // mode 2: the first 4 vectors of each round come from registers loaded before the
    // previous barrier
    var pre0 = vec4<u32>(0u);
    var pre1 = vec4<u32>(0u);
    var pre2 = vec4<u32>(0u);
    var pre3 = vec4<u32>(0u);
    var first_i = 0u;
    if (p.mode == 2u) {
        let r = p.first;
        pre0 = load(r, me);
        pre1 = load(r, me + stride);
        pre2 = load(r, me + 2u * stride);
        pre3 = load(r, me + 3u * stride);
        first_i = me + 4u * stride;
    }
    for (var k = 0u; k < p.rounds; k++) {
        let r = p.first + k;
        var i = me;
        if (p.mode == 2u) {
            acc ^= pre0 ^ pre1 ^ pre2 ^ pre3;
            i = first_i;
        }
        for (; i + 3u * stride < p.words; i += 4u * stride) {
            let a = load(r, i);
            let b = load(r, i + stride);
            let c = load(r, i + 2u * stride);
            let d = load(r, i + 3u * stride);
            acc ^= a ^ b ^ c ^ d;
        }
        for (; i < p.words; i += stride) {
            acc ^= load(r, i);
        }
        if (p.mode == 2u && k + 1u < p.rounds) {
            pre0 = load(r + 1u, me);
            pre1 = load(r + 1u, me + stride);
            pre2 = load(r + 1u, me + 2u * stride);
            pre3 = load(r + 1u, me + 3u * stride);
        }
        if (p.mode != 0u) {
            grid_barrier((k + 1u) * nwg.x, lid);
        }
    }
    out[me] = acc.x ^ acc.y ^ acc.z ^ acc.w;
}

@group(0) @binding(4) var<storage, read_write> slots: array<u32>;
@group(0) @binding(5) var<storage, read_write> errors: array<atomic<u32>>;

fn expected(r: u32, w: u32, i: u32) -> u32 {
    return (r * 2654435761u) ^ (w * 40503u) ^ (i * 2246822519u) ^ 0x9e3779b9u;
}

// Each round every workgroup stores its slot, waits at the barrier, then reads its
// neighbour's slot with plain loads (the same lines every round, so a stale cache line
// would show) and counts words that differ; a second barrier keeps the next round's
// stores after every read.
@compute @workgroup_size(WG)
fn coherence(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let other = (wg.x + 1u) % nwg.x;
    var bad = 0u;
    for (var r = 0u; r < p.rounds; r++) {
        for (var i = lid; i < SLOT; i += WG) {
            slots[wg.x * SLOT + i] = expected(r, wg.x, i);
        }
        grid_barrier((2u * r + 1u) * nwg.x, lid);
        for (var i = lid; i < SLOT; i += WG) {
            if (slots[other * SLOT + i] != expected(r, other, i)) {
                bad += 1u;
            }
        }
        grid_barrier((2u * r + 2u) * nwg.x, lid);
    }
    if (bad != 0u) {
        atomicAdd(&errors[0], bad);
    }
}

@group(0) @binding(6) var<storage, read_write> aslots: array<atomic<u32>>;

// `coherence` with the slots written and read through atomics (relaxed, device scope),
// which never come from a workgroup's own cache.
@compute @workgroup_size(WG)
fn coherence_atomic(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let other = (wg.x + 1u) % nwg.x;
    var bad = 0u;
    for (var r = 0u; r < p.rounds; r++) {
        for (var i = lid; i < SLOT; i += WG) {
            atomicStore(&aslots[wg.x * SLOT + i], expected(r, wg.x, i));
        }
        grid_barrier((2u * r + 1u) * nwg.x, lid);
        for (var i = lid; i < SLOT; i += WG) {
            if (atomicLoad(&aslots[other * SLOT + i]) != expected(r, other, i)) {
                bad += 1u;
            }
        }
        grid_barrier((2u * r + 2u) * nwg.x, lid);
    }
    if (bad != 0u) {
        atomicAdd(&errors[0], bad);
    }
}
