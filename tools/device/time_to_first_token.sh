#!/usr/bin/env bash
# Time to the first token of whole `metallic run` commands, one or more binaries interleaved,
# on the benchmark GGUFs made by tools/bench_vs_llamacpp.sh (--prepare-only is enough).
#
#   tools/device/time_to_first_token.sh MODEL_DIR METALLIC_BIN [METALLIC_BIN...]
#
# Each model (MODEL_DIR/*.gguf) runs a 504-token prompt (--no-chat-template, greedy, 16 tokens)
# three times per binary, the binaries interleaved. A binary's first run on a machine also
# compiles its GPU pipelines (the NVIDIA driver caches them per executable), so compare runs 2
# and 3. Prints one markdown line per run: the command's wall time, load_s (binaries from
# session 11 on) and prompt_s; and whether the binaries generated the same text.
set -euo pipefail
MODELS="$1"; shift
P=$(python3 -c 'print(" ".join(["The quick brown fox jumps over the lazy dog near the river bank."]*36))')
tmp=$(mktemp -d)
echo "| model | binary | run | wall s | load_s | prompt tokens | prompt_s |"
echo "|---|---|---:|---:|---:|---:|---:|"
for model in "$MODELS"/*.gguf; do
  m=$(basename "$model" .gguf)
  for i in 1 2 3; do
    for bin in "$@"; do
      b=$(basename "$bin")
      s=$(date +%s.%N)
      timeout 120 "$bin" run "$model" "$P" --no-chat-template --temperature 0 -n 16 \
        > "$tmp/$m-$b.out" 2> "$tmp/$m-$b.err" || { echo "| $m | $b | $i | failed: $(tail -1 "$tmp/$m-$b.err") |"; continue; }
      e=$(date +%s.%N)
      load=$(grep -o 'load_s=[0-9.]*' "$tmp/$m-$b.err" | cut -d= -f2 || true)
      pt=$(grep -o 'prompt_tokens=[0-9]*' "$tmp/$m-$b.err" | cut -d= -f2)
      ps=$(grep -o 'prompt_s=[0-9.]*' "$tmp/$m-$b.err" | cut -d= -f2)
      echo "| $m | $b | $i | $(python3 -c "print(round($e - $s, 2))") | ${load:--} | $pt | $ps |"
    done
  done
  first=$(basename "$1")
  for bin in "${@:2}"; do
    b=$(basename "$bin")
    if cmp -s "$tmp/$m-$first.out" "$tmp/$m-$b.out"; then
      echo "$m: $b generated the same text as $first"
    else
      echo "$m: $b generated DIFFERENT text from $first"
    fi
  done
done
rm -rf "$tmp"
