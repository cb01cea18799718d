#!/usr/bin/env bash
# Regenerates the tiny fixture GGUFs + HF greedy references under models/.
#   tools/make_fixtures/setup.sh && tools/make_fixtures/make_tiny_fixtures.sh
# Produces models/{tiny,tiny-untied}-{f16,q8_0}.gguf and matching *.ref.json (6 cases each:
# 3 prompts x raw/chat, 24 new tokens), HF dirs under models/hf/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="$ROOT/.venv/bin/python"
cd "$ROOT"
PROMPTS=(--prompt "The capital of France is"
         --prompt $'def fibonacci(n):\n    '
         --prompt "Héllo wörld — 你好! 🙂 123456")
# Seeds chosen (by simulating f16 rounding / q8_0 quantization) so that every reference step has a
# top1-top2 logit margin >= ~1e-3 in both files: no near-ties for an f32 engine to flip.
for spec in tiny:3 tiny-untied:7; do
  name="${spec%%:*}" seed="${spec##*:}"
  "$PY" tools/make_fixtures/make_model.py --preset "$name" --seed "$seed" --parallel-convert
  for t in f16 q8_0; do
    "$PY" tools/make_fixtures/hf_greedy.py "models/$name-$t.gguf" --max-new-tokens 24 "${PROMPTS[@]}"
  done
done
"$PY" tools/make_fixtures/inspect_gguf.py models/tiny-f16.gguf models/tiny-q8_0.gguf \
  models/tiny-untied-f16.gguf models/tiny-untied-q8_0.gguf > models/fixtures-metadata.txt
echo "metadata dump: models/fixtures-metadata.txt"
