// How decode attention cuts the keys 0..=pos into chunks (attention/kernel/decode.wgsl): at
// most n_splits chunks of a multiple of kt keys, each as long as needed to cover n_keys.
// Shared with the GEMV that merges the chunks' partials itself (matmul_gemv, ATTN_X), which
// must count the same chunks.

fn decode_chunk_len(n_keys: u32, n_splits: u32, kt: u32) -> u32 {
    let per = (n_keys + n_splits - 1u) / n_splits;
    return max(kt, (per + kt - 1u) / kt * kt);
}

// Chunks holding at least one of n_keys keys.
fn decode_live_chunks(n_keys: u32, n_splits: u32, kt: u32) -> u32 {
    let len = decode_chunk_len(n_keys, n_splits, kt);
    return (n_keys + len - 1u) / len;
}
