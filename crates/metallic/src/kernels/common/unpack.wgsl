// Weight unpacking shared by the GEMV and embedding kernels.

// Four signed bytes of a Q8_0 word, as floats, without an int-to-float conversion:
// NVIDIA issues those at 16 per SM per clock, an eighth of the FMA rate, and a Q8_0 dot
// product needs one per weight. Each byte, offset to unsigned by the XOR, becomes the
// low mantissa bits of 2^23 (0x4B000000 is 2^23, whose mantissa step is 1), so the float
// is 2^23 + b + 128 exactly, and one subtraction leaves b: bit and add operations only,
// and exact for every byte.
fn unpack_i8x4(w: u32) -> vec4<f32> {
    let u = w ^ 0x80808080u;
    let bytes = vec4<u32>(u, u >> 8u, u >> 16u, u >> 24u) & vec4<u32>(0xFFu);
    return bitcast<vec4<f32>>(bytes | vec4<u32>(0x4B000000u)) - vec4<f32>(8388736.0);
}

// Q8_0 scales are f16, two per word; `index` counts halves.
fn half_at(word: u32, index: u32) -> f32 {
    return unpack2x16float(word)[index & 1u];
}
