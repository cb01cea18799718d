// The RoPE angle, shared by `rope_kv` and the QKV GEMV's rope epilogue so both rotate
// bit for bit alike.

const TWO_PI_HI: f32 = 6.28125;                 // exact in 8 bits, so k * TWO_PI_HI is exact
const TWO_PI_LO: f32 = 0.0019353071795864769;   // 2*pi - TWO_PI_HI

// GPU sin/cos lose accuracy far from zero; positions reach tens of thousands of radians.
fn reduce_angle(a: f32) -> f32 {
    let n = round(a / 6.283185307179586);
    return (a - n * TWO_PI_HI) - n * TWO_PI_LO;
}

// (cos, sin) of the angle pos * inv_freq. Same rounding as the reference models: the
// angle is an f32 product, then reduced by Cody-Waite before sin/cos.
fn rope_cos_sin(pos: u32, inv_freq: f32) -> vec2<f32> {
    let angle = reduce_angle(f32(pos) * inv_freq);
    return vec2<f32>(cos(angle), sin(angle));
}
