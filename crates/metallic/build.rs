//! Finds every `src/kernels/<family>/kernel.sources`, stitches its WGSL parts, validates
//! the result with naga (so a broken shader fails `cargo build` with its file and line),
//! and writes the stitched text to OUT_DIR for `include_str!`.

#[path = "src/kernels/stitch.rs"]
mod stitch;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let kernels_dir = Path::new("src/kernels");
    println!("cargo:rerun-if-changed=src/kernels");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::create_dir_all(out_dir.join("kernels")).expect("create OUT_DIR/kernels");

    let mut families: Vec<String> = std::fs::read_dir(kernels_dir)
        .expect("read src/kernels")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("kernel.sources").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    families.sort();

    let mut registry = String::from("pub(crate) const BUILT_KERNELS: &[(&str, &str)] = &[\n");
    let mut failures = Vec::new();
    for family in &families {
        let dir = kernels_dir.join(family);
        match stitch::stitch(&dir).and_then(|s| validate(family, &s).map(|()| s)) {
            Ok(stitched) => {
                let path = out_dir.join("kernels").join(format!("{family}.wgsl"));
                std::fs::write(&path, &stitched.source).expect("write stitched kernel");
                writeln!(
                    registry,
                    "    ({family:?}, include_str!({:?})),",
                    path.display()
                )
                .unwrap();
            }
            Err(e) => failures.push(e),
        }
    }
    registry.push_str("];\n");
    if !failures.is_empty() {
        // Cargo prints a failed build script's stderr; exit without a panic's backtrace.
        for f in &failures {
            eprintln!("{f}");
        }
        std::process::exit(1);
    }
    std::fs::write(out_dir.join("kernel_registry.rs"), registry).expect("write registry");
}

/// Parses and validates with the capabilities the engine requests from wgpu.
fn validate(family: &str, s: &stitch::Stitched) -> Result<(), String> {
    use naga::valid::{
        Capabilities, ShaderStages, SubgroupOperationSet, ValidationFlags, Validator,
    };
    let locate = |line: Option<u32>| match line.and_then(|l| s.origin(l)) {
        Some((file, l)) => format!("src/kernels/{family}/{file}:{l}"),
        None => format!("src/kernels/{family}"),
    };
    let module = naga::front::wgsl::parse_str(&s.source).map_err(|e| {
        let loc = e.location(&s.source).map(|l| l.line_number);
        format!(
            "{}: error: {}\n{}",
            locate(loc),
            e.message(),
            e.emit_to_string(&s.source)
        )
    })?;
    let mut caps = Capabilities::SUBGROUP
        | Capabilities::SUBGROUP_BARRIER
        | Capabilities::SHADER_FLOAT16
        | Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    // Cooperative matrices only for the families that opt in with the WGSL directive
    // (`matmul_gemm_coop`); the engine creates their pipelines only on adapters that
    // support them, so every other family stays valid without the capability.
    if s.source.contains("enable wgpu_cooperative_matrix;") {
        caps |= Capabilities::COOPERATIVE_MATRIX;
    }
    let mut validator = Validator::new(ValidationFlags::all(), caps);
    validator.subgroup_stages(ShaderStages::COMPUTE);
    validator.subgroup_operations(SubgroupOperationSet::all());
    validator.validate(&module).map_err(|e| {
        let loc = e.location(&s.source).map(|l| l.line_number);
        format!(
            "{}: error: {}\n{}",
            locate(loc),
            e.as_inner(),
            e.emit_to_string(&s.source)
        )
    })?;
    Ok(())
}
