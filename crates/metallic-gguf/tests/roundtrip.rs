mod common;

use common::*;
use metallic_gguf::dequant::{f32_to_bytes, quantize_q8_0};
use metallic_gguf::{GgmlType, GgufFile, GgufWriter, Value};

fn all_values() -> Vec<(&'static str, Value)> {
    vec![
        ("u8", Value::U8(200)),
        ("i8", Value::I8(-100)),
        ("u16", Value::U16(65000)),
        ("i16", Value::I16(-32000)),
        ("u32", Value::U32(4_000_000_000)),
        ("i32", Value::I32(-2_000_000_000)),
        ("u64", Value::U64(u64::MAX)),
        ("i64", Value::I64(i64::MIN)),
        ("f32", Value::F32(-1.25e-3)),
        ("f64", Value::F64(std::f64::consts::PI)),
        ("bool.t", Value::Bool(true)),
        ("bool.f", Value::Bool(false)),
        ("str", Value::from("héllo ✓ \n\"quoted\"")),
        ("str.empty", Value::from("")),
        ("arr.i32", Value::from(vec![1i32, -2, 3])),
        ("arr.str", Value::from(vec!["x", "", "zz"])),
        ("arr.empty", Value::Array(vec![])),
        ("arr.f64", Value::from(vec![0.5f64, -0.25])),
        ("arr.bool", Value::from(vec![true, false])),
        (
            "arr.nested",
            Value::Array(vec![
                Value::from(vec![1u8, 2]),
                Value::from(vec!["a"]),
                Value::Array(vec![Value::from(vec![7i64])]),
                Value::Array(vec![]),
            ]),
        ),
    ]
}

fn full_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.set_alignment(64);
    for (k, v) in all_values() {
        w.add(k, v);
    }
    let q8 = quantize_q8_0(&(0..64).map(|i| i as f32 / 7.0).collect::<Vec<_>>());
    w.add_tensor(
        "f32",
        GgmlType::F32,
        &[3, 2],
        f32_to_bytes(&[1., 2., 3., 4., 5., 6.]),
    )
    .add_tensor("q8", GgmlType::Q8_0, &[32, 2], q8)
    .add_tensor("f16", GgmlType::F16, &[2], vec![0x00, 0x3c, 0x00, 0xc0])
    .add_tensor("q4k", GgmlType::Q4_K, &[256, 1, 1, 2], vec![0xab; 2 * 144])
    .add_tensor("scalar", GgmlType::I32, &[], 42i32.to_le_bytes().to_vec());
    w
}

#[test]
fn round_trip_all_value_types_and_tensors() {
    let w = full_writer();
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    assert_eq!(f.file_size(), w.to_bytes().len() as u64);

    let expected = all_values();
    assert_eq!(f.metadata().len(), expected.len() + 1);
    assert_eq!(
        f.metadata()[0],
        ("general.alignment".into(), Value::U32(64))
    );
    for ((k, v), (ek, ev)) in f.metadata()[1..].iter().zip(&expected) {
        assert_eq!(k, ek);
        assert_eq!(v, ev, "{k}");
        assert_eq!(f.get(k), Some(ev));
    }

    let names: Vec<_> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["f32", "q8", "f16", "q4k", "scalar"]);
    let q4k = f.require_tensor("q4k").unwrap();
    assert_eq!(q4k.ggml_type, GgmlType::Q4_K);
    assert_eq!(q4k.dims, [256, 1, 1, 2]);
    assert_eq!(q4k.n_elements, 512);
    assert_eq!(q4k.n_bytes, 288);
    assert!(f.tensor_data(q4k).iter().all(|&b| b == 0xab));
    let q8 = f.tensor("q8").unwrap();
    assert_eq!((q8.n_elements, q8.n_bytes), (64, 68));
    assert_eq!(
        f.tensor_bytes("f32").unwrap(),
        f32_to_bytes(&[1., 2., 3., 4., 5., 6.])
    );
    assert_eq!(f.tensor_bytes("f16").unwrap(), [0x00, 0x3c, 0x00, 0xc0]);
    let scalar = f.tensor("scalar").unwrap();
    assert_eq!((scalar.n_elements, scalar.dims.len()), (1, 0));
    assert_eq!(f.tensor_data(scalar), 42i32.to_le_bytes());
    for t in f.tensors() {
        assert_eq!(t.offset % 64, 0);
        assert_eq!(f.absolute_offset(t), f.data_offset() + t.offset);
    }
}

#[test]
fn version_2_is_accepted() {
    let mut b = small_bytes();
    put_u32(&mut b, 4, 2);
    let f = GgufFile::from_bytes(b).unwrap();
    assert_eq!(f.version(), 2);
    assert_eq!(f.tensors().len(), 2);
}

#[test]
fn open_from_disk_uses_mmap_and_names_path_on_error() {
    let dir = std::env::temp_dir().join(format!("metallic-gguf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.gguf");
    small_writer().write_to(&good).unwrap();
    let f = GgufFile::open(&good).unwrap();
    assert_eq!(f.path(), Some(good.as_path()));
    assert_eq!(f.tensor_bytes("blk.0.w").unwrap().len(), 32);

    let bad = dir.join("bad.gguf");
    std::fs::write(&bad, b"GGML....").unwrap();
    let e = GgufFile::open(&bad).unwrap_err();
    assert!(e.to_string().contains("bad.gguf"), "{e}");
    assert!(matches!(
        e.root(),
        metallic_gguf::GgufError::BadMagic { .. }
    ));

    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    assert!(GgufFile::open(&empty).is_err());

    let missing = dir.join("missing.gguf");
    let e = GgufFile::open(&missing).unwrap_err();
    assert!(e.to_string().contains("missing.gguf"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn typed_accessors() {
    let f = GgufFile::from_bytes(full_writer().to_bytes()).unwrap();
    assert_eq!(f.get_u32("u16").unwrap(), Some(65000));
    assert_eq!(
        f.get_u32("i8").map_err(|e| e.to_string()).unwrap_err(),
        "metadata key 'i8': value -100 does not fit in u32"
    );
    assert!(f.get_u32("u64").is_err());
    assert_eq!(f.get_u64("u64").unwrap(), Some(u64::MAX));
    assert_eq!(f.require_u64("u32").unwrap(), 4_000_000_000);
    assert_eq!(f.get_i64("i64").unwrap(), Some(i64::MIN));
    assert_eq!(f.get_u32("nope").unwrap(), None);
    assert_eq!(f.get_f32("f64").unwrap(), Some(std::f64::consts::PI as f32));
    assert_eq!(f.require_f32("f32").unwrap(), -1.25e-3);
    assert_eq!(f.get_bool("bool.t").unwrap(), Some(true));
    assert_eq!(f.require_str("str.empty").unwrap(), "");
    assert_eq!(
        f.get_string_array("arr.str").unwrap(),
        Some(vec!["x", "", "zz"])
    );
    assert_eq!(f.get_i32_array("arr.i32").unwrap(), Some(vec![1, -2, 3]));
    assert_eq!(f.get_i32_array("arr.empty").unwrap(), Some(vec![]));
    assert_eq!(f.get_f32_array("arr.f64").unwrap(), Some(vec![0.5, -0.25]));
    assert_eq!(f.require_array("arr.nested").unwrap().len(), 4);
    assert_eq!(f.get_string_array("absent").unwrap(), None);
}
