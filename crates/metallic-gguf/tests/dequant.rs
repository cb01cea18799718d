use half::f16;
use metallic_gguf::dequant::{
    f32_to_bf16_bytes, f32_to_bytes, f32_to_f16_bytes, quantize_q8_0, to_f32,
};
use metallic_gguf::{GgmlType, GgufError};

/// Reference f16 decode in plain f64 arithmetic, independent of the `half` crate.
fn f16_ref(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let mant = f64::from(bits & 0x3ff);
    match exp {
        0 => sign * mant * 2f64.powi(-24),
        31 if mant == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + mant / 1024.0) * 2f64.powi(e - 15),
    }
}

fn bf16_ref(bits: u16) -> f64 {
    f64::from(f32::from_bits(u32::from(bits) << 16))
}

#[test]
fn f16_all_bit_patterns() {
    let bytes: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
    let out = to_f32(GgmlType::F16, &bytes, 65536).unwrap();
    for (bits, &v) in (0..=u16::MAX).zip(&out) {
        let r = f16_ref(bits);
        if r.is_nan() {
            assert!(v.is_nan());
        } else {
            assert_eq!(f64::from(v), r, "bits {bits:#06x}");
        }
    }
}

#[test]
fn bf16_and_f32() {
    let xs = [0.0f32, -0.0, 1.0, -2.5, 3.0e38, 1.0e-30, 0.1, 65504.0];
    let bytes = f32_to_bf16_bytes(&xs);
    let out = to_f32(GgmlType::BF16, &bytes, xs.len()).unwrap();
    for (i, (&x, &v)) in xs.iter().zip(&out).enumerate() {
        let bits = u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]);
        assert_eq!(f64::from(v), bf16_ref(bits));
        // bf16 keeps 8 significant bits: relative error ≤ 2^-9.
        assert!((f64::from(v) - f64::from(x)).abs() <= f64::from(x).abs() * 2f64.powi(-9));
    }
    // Round-to-nearest-even: 1 + 2^-8 is a tie between 1 and 1 + 2^-7.
    assert_eq!(
        f32_to_bf16_bytes(&[1.0 + 2f32.powi(-8)]),
        0x3f80u16.to_le_bytes()
    );
    assert_eq!(
        to_f32(GgmlType::F32, &f32_to_bytes(&xs), xs.len()).unwrap(),
        xs
    );
    assert_eq!(f32_to_f16_bytes(&[1.0, -2.0]), [0x00, 0x3c, 0x00, 0xc0]);
}

#[test]
fn q8_0_dequant_matches_f64_reference() {
    // Hand-built block: d = 0.5 (f16 0x3800), q = -128..=127 in steps.
    let qs: Vec<i8> = (0..32).map(|i| (i * 8 - 128) as i8).collect();
    let mut data = 0x3800u16.to_le_bytes().to_vec();
    data.extend(qs.iter().map(|&q| q as u8));
    let out = to_f32(GgmlType::Q8_0, &data, 32).unwrap();
    for (q, v) in qs.iter().zip(&out) {
        assert_eq!(f64::from(*v), 0.5 * f64::from(*q));
    }
}

#[test]
fn q8_0_round_trip_within_half_step() {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let x: Vec<f32> = (0..32 * 64)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            u * (1 + i / 32) as f32
        })
        .collect();
    let q = quantize_q8_0(&x);
    assert_eq!(q.len(), x.len() / 32 * 34);
    let y = to_f32(GgmlType::Q8_0, &q, x.len()).unwrap();
    for (b, (xb, yb)) in x.chunks(32).zip(y.chunks(32)).enumerate() {
        let amax = xb.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
        let d = amax / 127.0;
        let d16 = f16_ref(u16::from_le_bytes([q[b * 34], q[b * 34 + 1]]));
        // d/2 from rounding q, plus |q| ≤ 127 times the f16 rounding of d.
        let tol = d / 2.0 + 127.0 * (d - d16).abs() + 1e-6;
        for (xv, yv) in xb.iter().zip(yb) {
            assert!(
                (f64::from(*xv) - f64::from(*yv)).abs() <= tol,
                "block {b}: {xv} vs {yv}"
            );
        }
    }
}

#[test]
fn q8_0_matches_ggml_rounding() {
    // amax = 127 makes d = 1 exactly, so q = round(x) and ties show the rounding mode.
    let mut x = vec![0.0f32; 32];
    x[..8].copy_from_slice(&[127.0, 0.5, -0.5, 1.5, 2.5, -2.5, 0.49999997, 126.5]);
    let q = quantize_q8_0(&x);
    assert_eq!(&q[..2], &0x3c00u16.to_le_bytes()); // f16 1.0
    let qs: Vec<i8> = q[2..10].iter().map(|&b| b as i8).collect();
    // roundf: half away from zero (not banker's rounding).
    assert_eq!(qs, [127, 1, -1, 2, 3, -3, 0, 127]);

    // All-zero block: d = 0 and id = 0, so no NaNs.
    let q = quantize_q8_0(&[0.0; 32]);
    assert!(q.iter().all(|&b| b == 0));

    // Negative amax dominates: q = -127 for it, d stored positive.
    let mut x = vec![0.25f32; 32];
    x[5] = -2.0;
    let q = quantize_q8_0(&x);
    assert_eq!(q[2 + 5] as i8, -127);
    let d = f16::from_le_bytes([q[0], q[1]]).to_f32();
    assert_eq!(d, f16::from_f32(2.0 / 127.0).to_f32());
    // 0.25 * (127/2) = 15.875 -> 16.
    assert_eq!(q[2] as i8, 16);
}

#[test]
fn dequant_errors() {
    let e = to_f32(GgmlType::Q4_K, &[0; 144], 256).unwrap_err();
    assert!(matches!(
        e,
        GgufError::UnsupportedType {
            ty: GgmlType::Q4_K,
            ..
        }
    ));
    assert!(e.to_string().contains("Q4_K"), "{e}");
    assert!(matches!(
        to_f32(GgmlType::F16, &[0; 3], 2),
        Err(GgufError::BadData { .. })
    ));
    assert!(matches!(
        to_f32(GgmlType::Q8_0, &[0; 34], 33),
        Err(GgufError::BadData { .. })
    ));
}
