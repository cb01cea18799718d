#!/usr/bin/env bash
# Builds /work/main/.devkit (git-ignored via .git/info/exclude): everything make_bench_models.sh needs
# on the GPU machine, which has python3 + torch + transformers + safetensors + numpy + yaml + tqdm but
# no gguf package and no internet. Run tools/make_fixtures/setup.sh first. Idempotent. ~3.5 MB.
#   .devkit/llama.cpp/{convert_hf_to_gguf.py,conversion/,gguf-py/gguf/,LICENSE}  (from the
#            llama-cpp-python sdist; the converter puts its sibling gguf-py/ on sys.path itself)
#   .devkit/tokenizer/{tokenizer.json.gz,tokenizer_config.json}  (real Qwen tokenizer, gzipped)
#   .devkit/{make_model.py,hf_greedy.py,inspect_gguf.py}          (copies of tools/make_fixtures/)
#   .devkit/VERSIONS
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
W="$ROOT/work"
DK="$ROOT/.devkit"
[ -f "$W/llama.cpp/convert_hf_to_gguf.py" ] && [ -f "$W/tokenizer/qwen/tokenizer.json" ] || {
  echo "run tools/make_fixtures/setup.sh first" >&2; exit 1; }

mkdir -p "$ROOT/.git/info"; touch "$ROOT/.git/info/exclude"
grep -qxF "/.devkit/" "$ROOT/.git/info/exclude" || echo "/.devkit/" >> "$ROOT/.git/info/exclude"

rm -rf "$DK"
mkdir -p "$DK/llama.cpp/gguf-py" "$DK/tokenizer"
cp "$W/llama.cpp/convert_hf_to_gguf.py" "$W/llama.cpp/LICENSE" "$DK/llama.cpp/"
cp -r "$W/llama.cpp/conversion" "$DK/llama.cpp/"
cp -r "$W/llama.cpp/gguf-py/gguf" "$W/llama.cpp/gguf-py/LICENSE" "$W/llama.cpp/gguf-py/pyproject.toml" "$DK/llama.cpp/gguf-py/"
find "$DK" -name __pycache__ -prune -exec rm -rf {} +
gzip -9 -c "$W/tokenizer/qwen/tokenizer.json" > "$DK/tokenizer/tokenizer.json.gz"
cp "$W/tokenizer/qwen/tokenizer_config.json" "$DK/tokenizer/"
cp "$ROOT/tools/make_fixtures/make_model.py" "$ROOT/tools/make_fixtures/hf_greedy.py" \
   "$ROOT/tools/make_fixtures/inspect_gguf.py" "$DK/"
{
  echo "llama.cpp converter: $(cat "$W/llama.cpp/.stamp")"
  echo "tokenizer: $(cat "$W/tokenizer/qwen/.stamp")"
  echo "gguf-py: $(grep -m1 '^version' "$W/llama.cpp/gguf-py/pyproject.toml")"
  echo "built: $(date -u +%FT%TZ)"
} > "$DK/VERSIONS"
du -sh "$DK"
