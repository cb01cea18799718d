// The QKV GEMV's epilogue for decode: bias, NEOX RoPE on the Q and K heads, and the KV-cache
// append, so no separate rope_kv dispatch is needed. The weight matrix is Q | K | V stacked
// (q_dim + 2 kv_dim rows); its first p.rope_rows = q_dim + kv_dim rows are computed in
// rotation pairs (see weight_row), so the thread finishing a pair holds both halves.
// Rotated q goes to the Q columns of y in their original order (attention reads it there);
// rotated k and v go straight to the f16 cache at position state.pos + batch row, a word
// (two halves) per thread: a K rotation pair, or two neighbouring V dims. The K and V
// columns of y are not written.

struct RopeParams {
    n_heads: u32,
    ctx: u32,                          // cache capacity (positions)
    _pad0: u32,
    _pad1: u32,
    inv_freq: array<vec4<f32>, 32>,    // (head_dim / 2) inverse frequencies, from theta
}

// Layouts as in rope_kv: K (n_kv_heads, head_dim / 2, ctx) words of pairs (i, i + half),
// V (n_kv_heads, ctx, head_dim / 2) words of dims (2j, 2j + 1).
@group(0) @binding(8) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(9) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(10) var<uniform> rope: RopeParams;

fn finish_rope(su: Setup, lid: u32) {
    workgroupBarrier();
    if (lid >= COLS_PER_TG) {
        return;
    }
    let row = su.group * COLS_PER_TG + lid;
    if (row >= p.n) {
        return;
    }
    let hd = p.head_dim;
    let half = hd / 2u;
    let slot = p.row_offset + row;               // output row in the paired order
    let w_row = p.row_offset + weight_row(row);  // its row of the stacked matrix (and bias)
    let pos = state.pos + su.x_row;
    let scale = norm_scale(su);
    let s = row_sum(su, lid, scale) + bias[w_row];
    // The even thread of each pair writes the pair's word (chunks start at head
    // boundaries, so slot parity is lid parity).
    if ((lid & 1u) != 0u) {
        return;
    }
    if (slot >= p.rope_rows) {
        // V: dims c and c + 1, a plain copy into the cache.
        let c = slot - p.rope_rows;
        let s1 = row_sum(su, lid + 1u, scale) + bias[w_row + 1u];
        v_cache[((c / hd) * rope.ctx + pos) * half + (c % hd) / 2u] = pack2x16float(vec2<f32>(s, s1));
        return;
    }
    // Even slots hold element i of a head, odd slots element i + half: rotate the pair.
    let x0 = s;
    let x1 = row_sum(su, lid + 1u, scale) + bias[w_row + half];
    let i = (slot % hd) / 2u;
    let cs = rope_cos_sin(pos, rope.inv_freq[i / 4u][i % 4u]);
    let r0 = x0 * cs.x - x1 * cs.y;
    let r1 = x1 * cs.x + x0 * cs.y;
    let head = slot / hd;
    if (head < rope.n_heads) {
        let yi = su.y_row * p.y_stride + head * hd + i;
        y[yi] = r0;
        y[yi + half] = r1;
    } else {
        k_cache[((head - rope.n_heads) * half + i) * rope.ctx + pos] = pack2x16float(vec2<f32>(r0, r1));
    }
}
