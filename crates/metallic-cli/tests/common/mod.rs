//! Shared helpers for the CLI tests: scratch directories, synthetic models, running the
//! `metallic` binary and the CPU-reference greedy decode.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use metallic::gguf::{GgmlType, GgufFile, GgufWriter, Value};
use metallic::reference::Reference;
use metallic::synthetic::{qwen2_gguf, SyntheticSpec};
use metallic_tokenizer::Tokenizer;

/// A small Qwen2 with the synthetic tokenizer: hidden 64, 2 layers, vocab 300. Untied
/// and seed 7 because its greedy output varies (tied random models tend to repeat one
/// token) and its 4th greedy token after the chat prompt is new, which the EOS test uses.
pub fn spec() -> SyntheticSpec {
    SyntheticSpec {
        vocab: 300,
        tokenizer: true,
        tied: false,
        seed: 7,
        ..Default::default()
    }
}

/// A directory under the system temp dir, removed on drop.
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("metallic-cli-tests-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn write(&self, file: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(file);
        std::fs::write(&path, bytes).expect("write a scratch file");
        path
    }

    /// Writes the synthetic model of `spec` as `file`.
    pub fn model(&self, file: &str, spec: &SyntheticSpec) -> PathBuf {
        self.write(file, &qwen2_gguf(spec))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private runtime directory for the Vulkan loader, so that it prints nothing.
fn xdg_runtime_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("metallic-cli-tests-xdg-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    dir
}

pub struct Run {
    pub output: Output,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// Asserts success and returns the run.
    pub fn ok(self) -> Self {
        assert!(
            self.output.status.success(),
            "metallic failed ({:?})\nstdout: {}\nstderr: {}",
            self.output.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// The single JSON object `--output-format json` prints.
    pub fn json(&self) -> serde_json::Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one line of JSON on stdout, got:\n{}",
            self.stdout
        );
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", lines[0]))
    }

    /// Asserts a clean failure: non-zero exit, nothing on stdout, and exactly one line
    /// `error: ...` on stderr without panic text. Returns that line.
    pub fn fails(&self) -> &str {
        assert!(
            !self.output.status.success(),
            "expected a failure, got success\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "panic on stderr:\n{}",
            self.stderr
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("error: ") && lines[0].len() > 10,
            "expected one `error: ...` line on stderr, got:\n{}",
            self.stderr
        );
        assert_eq!(self.stdout, "", "nothing on stdout after an error");
        assert_eq!(self.code(), Some(1), "errors exit with 1: {}", self.stderr);
        lines[0]
    }
}

/// Runs `metallic` with `args`, the extra environment `env` and `stdin` (closed when
/// None). METALLIC_* variables of the caller's environment are not passed on.
pub fn cli_with<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_metallic"));
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .env("XDG_RUNTIME_DIR", xdg_runtime_dir());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("METALLIC_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("start the metallic binary");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    let output = child.wait_with_output().expect("wait for metallic");
    Run {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        output,
    }
}

pub fn cli<S: AsRef<OsStr>>(args: &[S]) -> Run {
    cli_with(args, &[], None)
}

pub fn tokenizer(model: &Path) -> Tokenizer {
    Tokenizer::from_gguf(&GgufFile::open(model).unwrap()).unwrap()
}

/// Greedy decoding with the CPU reference: up to `n` tokens, ending after the first
/// token of `stop`.
pub fn reference_greedy(model: &Path, prompt: &[u32], n: usize, stop: &[u32]) -> Vec<u32> {
    let file = GgufFile::open(model).unwrap();
    let mut reference = Reference::load(&file).unwrap();
    let mut logits = reference.forward(prompt);
    let mut out = Vec::new();
    for _ in 0..n {
        let t = argmax(&logits);
        out.push(t);
        if stop.contains(&t) {
            break;
        }
        logits = reference.forward(&[t]);
    }
    out
}

/// Index of the largest value (the first on ties), and its margin over the runner-up.
pub fn argmax_margin(v: &[f32]) -> (u32, f32) {
    let best = v
        .iter()
        .enumerate()
        .fold(0, |b, (i, &x)| if x > v[b] { i } else { b });
    let second = v
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != best)
        .fold(f32::NEG_INFINITY, |m, (_, &x)| m.max(x));
    (best as u32, v[best] - second)
}

pub fn argmax(v: &[f32]) -> u32 {
    argmax_margin(v).0
}

/// The ids of a JSON array of numbers.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|x| x.as_u64().expect("a token id") as u32)
        .collect()
}

/// Rebuilds a GGUF with edited metadata and tensors: `meta` maps each key/value to
/// its replacement (None drops it); `tensor` may replace a tensor's type and data.
pub fn rewrite(
    bytes: Vec<u8>,
    meta: impl Fn(&str, &Value) -> Option<(String, Value)>,
    tensor: impl Fn(&str, &[u64]) -> Option<(GgmlType, Vec<u8>)>,
) -> Vec<u8> {
    let file = GgufFile::from_bytes(bytes).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in file.metadata() {
        if let Some((k, v)) = meta(k, v) {
            w.add(&k, v);
        }
    }
    for t in file.tensors() {
        let (ty, data) =
            tensor(&t.name, &t.dims).unwrap_or((t.ggml_type, file.tensor_data(t).to_vec()));
        w.add_tensor(&t.name, ty, &t.dims, data);
    }
    w.to_bytes()
}
