//! Human-readable dump for `metallic inspect`.

use std::fmt::Write;

use crate::{GgufFile, Value};

/// Arrays longer than this are abbreviated.
const MAX_ARRAY_SHOWN: usize = 8;
/// Elements shown before the ellipsis of an abbreviated array.
const ARRAY_HEAD: usize = 3;
/// Top-level strings (chat templates...) longer than this are truncated.
const MAX_STRING_CHARS: usize = 120;
/// Strings inside arrays get less room, as several share a line.
const MAX_ELEM_CHARS: usize = 40;

/// One value as shown by inspect: strings quoted and escaped, long strings and
/// arrays abbreviated.
pub fn format_value(v: &Value) -> String {
    let mut s = String::new();
    write_value(&mut s, v, MAX_STRING_CHARS);
    s
}

fn write_value(out: &mut String, v: &Value, max_chars: usize) {
    match v {
        Value::String(s) => write_string(out, s, max_chars),
        Value::Array(items) => {
            let shown = if items.len() > MAX_ARRAY_SHOWN {
                ARRAY_HEAD
            } else {
                items.len()
            };
            out.push('[');
            for (i, item) in items[..shown].iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item, MAX_ELEM_CHARS);
            }
            if shown < items.len() {
                let elem = items.first().map_or("?", Value::type_name);
                let _ = write!(out, ", ... ] ({} × {elem})", items.len());
            } else {
                out.push(']');
            }
        }
        Value::U8(x) => push_display(out, x),
        Value::I8(x) => push_display(out, x),
        Value::U16(x) => push_display(out, x),
        Value::I16(x) => push_display(out, x),
        Value::U32(x) => push_display(out, x),
        Value::I32(x) => push_display(out, x),
        Value::U64(x) => push_display(out, x),
        Value::I64(x) => push_display(out, x),
        Value::F32(x) => push_display(out, x),
        Value::F64(x) => push_display(out, x),
        Value::Bool(x) => push_display(out, x),
    }
}

fn push_display(out: &mut String, x: impl std::fmt::Display) {
    let _ = write!(out, "{x}");
}

fn write_string(out: &mut String, s: &str, max_chars: usize) {
    let n_chars = s.chars().count();
    if n_chars <= max_chars {
        let _ = write!(out, "{s:?}");
    } else {
        let head: String = s.chars().take(max_chars).collect();
        // Debug-format the head, then re-open the quote so the ellipsis sits
        // inside it: "abc…" reads as a truncated string, "abc"… does not.
        let quoted = format!("{head:?}");
        let _ = write!(out, "{}…\" ({n_chars} chars)", &quoted[..quoted.len() - 1]);
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

fn human_count(n: u64) -> String {
    let v = n as f64;
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}K", v / 1e3),
        1_000_000..=999_999_999 => format!("{:.2}M", v / 1e6),
        _ => format!("{:.2}B", v / 1e9),
    }
}

/// Header line, metadata (`key = value`), tensor table, and totals.
pub fn format_inspect(file: &GgufFile) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "GGUF v{} | alignment {} | {} tensors | {} metadata keys | file size {} ({} bytes) | data at offset {}",
        file.version(),
        file.alignment(),
        file.tensors().len(),
        file.metadata().len(),
        human_bytes(file.file_size()),
        file.file_size(),
        file.data_offset(),
    );

    let _ = writeln!(out, "\nmetadata:");
    for (k, v) in file.metadata() {
        let _ = writeln!(out, "  {k} = {}", format_value(v));
    }

    let _ = writeln!(out, "\ntensors:");
    let tensors = file.tensors();
    let shapes: Vec<String> = tensors.iter().map(|t| t.shape_string()).collect();
    let name_w = tensors
        .iter()
        .map(|t| t.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let shape_w = shapes
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    let _ = writeln!(
        out,
        "  {:<name_w$}  {:<7}  {:<shape_w$}  {:>12}",
        "name", "type", "shape", "bytes"
    );
    for (t, shape) in tensors.iter().zip(&shapes) {
        // `{:<w$}` pads by chars, but "×" is multi-byte; pad manually so columns line up.
        let pad = " ".repeat(shape_w - shape.chars().count());
        let _ = writeln!(
            out,
            "  {:<name_w$}  {:<7}  {shape}{pad}  {:>12}",
            t.name,
            t.ggml_type.name(),
            t.n_bytes
        );
    }

    // Saturating: crafted files may alias many huge tensors onto the same bytes.
    let total_bytes = tensors
        .iter()
        .fold(0u64, |a, t| a.saturating_add(t.n_bytes));
    let params = tensors
        .iter()
        .fold(0u64, |a, t| a.saturating_add(t.n_elements));
    let _ = writeln!(
        out,
        "\ntotal: {} tensors, {} ({total_bytes} bytes), {} parameters ({params})",
        tensors.len(),
        human_bytes(total_bytes),
        human_count(params),
    );
    out
}
