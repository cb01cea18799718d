// Weight unpacking shared by the GEMV and embedding kernels.

// Four signed bytes of a Q8_0 word, as floats.
fn unpack_i8x4(w: u32) -> vec4<f32> {
    let v = bitcast<i32>(w);
    return vec4<f32>(vec4<i32>(
        extractBits(v, 0u, 8u),
        extractBits(v, 8u, 8u),
        extractBits(v, 16u, 8u),
        extractBits(v, 24u, 8u),
    ));
}

// Q8_0 scales are f16, two per word; `index` counts halves.
fn half_at(word: u32, index: u32) -> f32 {
    return unpack2x16float(word)[index & 1u];
}
