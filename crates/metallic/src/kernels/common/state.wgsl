// Per-step dynamic state, shared by every kernel of a step. The CPU writes it before a
// prefill chunk; afterwards the sampler advances it, so decode needs no host writes.
struct StepState {
    pos: u32,     // sequence position of batch row 0
    n_rows: u32,  // rows in the current batch (prefill chunk length, or 1 when decoding)
    n_out: u32,   // tokens sampled so far: the next slot of out_tokens
    _pad: u32,
}
