// Token embedding lookup: out[m, :] = table[tokens[m], :]. The table may be split into
// row chunks; each chunk's dispatch writes only the rows whose token it holds.

struct EmbedParams {
    row_start: u32,       // first vocabulary row of this chunk
    rows: u32,            // rows in this chunk
    hidden: u32,
    row_words: u32,       // u32 words per table row
    out_stride: u32,
    blocks_per_row: u32,  // Q8_0 only
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: EmbedParams;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;       // (rows)
@group(0) @binding(2) var<storage, read> table: array<u32>;        // (rows, row_words)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;    // (rows, out_stride)
@group(0) @binding(4) var<storage, read> scales: array<u32>;       // Q8_0: (rows * blocks_per_row) halves

fn chunk_row(m: u32) -> u32 {
    let tok = tokens[m];
    if (tok < p.row_start || tok >= p.row_start + p.rows) {
        return 0xffffffffu;
    }
    return tok - p.row_start;
}

@compute @workgroup_size(256)
fn embed_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = chunk_row(wg.y);
    if (r == 0xffffffffu) {
        return;
    }
    for (var i = lid; i < p.hidden; i += 256u) {
        out[wg.y * p.out_stride + i] = half_at(table[r * p.row_words + i / 2u], i);
    }
}

@compute @workgroup_size(256)
fn embed_f32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = chunk_row(wg.y);
    if (r == 0xffffffffu) {
        return;
    }
    for (var i = lid; i < p.hidden; i += 256u) {
        out[wg.y * p.out_stride + i] = bitcast<f32>(table[r * p.row_words + i]);
    }
}

@compute @workgroup_size(256)
fn embed_q8_0(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = chunk_row(wg.y);
    if (r == 0xffffffffu) {
        return;
    }
    for (var i = lid; i < p.hidden; i += 256u) {
        let q = unpack_i8x4(table[r * p.row_words + i / 4u])[i % 4u];
        let h = r * p.blocks_per_row + i / 32u;
        out[wg.y * p.out_stride + i] = q * half_at(scales[h / 2u], h);
    }
}
