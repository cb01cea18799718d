#!/usr/bin/env bash
# On the GPU machine: builds llama.cpp's llama-bench (CUDA) from the carried source in the
# background, builds the Qwen2.5-0.5B-shaped GGUFs, profiles Metallic's decode per kernel,
# measures Metallic's decode, then runs llama-bench on the same files.
#
#   tools/device/profile_and_peer.sh BIN OUTDIR [LLAMA_SRC_TAR]
set -uo pipefail
BIN="$1"; OUTDIR="$2"; SRC="${3:-.llamasrc/llama.cpp.tar.xz}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
mkdir -p "$OUTDIR" /tmp/llama
start=$(date +%s)
( cd /tmp/llama && tar xJf "$ROOT/$SRC" &&
  cmake -S llama.cpp -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=ON > /tmp/llama/cmake.log 2>&1 &&
  ninja -C build llama-bench > /tmp/llama/build.log 2>&1; echo "build rc=$? after $(( $(date +%s) - start ))s" ) &
build_pid=$!
"$ROOT/tools/device/make_bench_models.sh" /tmp/models > /tmp/make_models.log 2>&1 || { tail -20 /tmp/make_models.log; exit 1; }
for t in f16 q8_0; do
  m=/tmp/models/qwen2.5-0.5b-$t.gguf
  "$BIN" run "$m" "The quick brown fox" --no-chat-template --temperature 0 -n 64 --ignore-eos \
    --output-format none --profile --profile-out /tmp/profile-$t.jsonl 2>&1 | grep -v '^\[metallic\] per-dispatch' > "$OUTDIR/profile-$t.txt"
  for i in 0 1 2 3; do
    "$BIN" run "$m" "The quick brown fox jumps over the lazy dog" --no-chat-template --temperature 0 -n 128 \
      --ignore-eos --output-format none 2>&1 | grep tps_decode
  done > "$OUTDIR/metallic-tg-$t.txt"
done
echo "metallic done after $(( $(date +%s) - start ))s"
wait $build_pid
if [ -x /tmp/llama/build/bin/llama-bench ]; then
  /tmp/llama/build/bin/llama-bench -m /tmp/models/qwen2.5-0.5b-f16.gguf -m /tmp/models/qwen2.5-0.5b-q8_0.gguf \
    -p 512 -n 128 -r 5 -fa 1 -ngl 99 -o md 2>&1 | tee "$OUTDIR/llama-bench.md"
else
  tail -30 /tmp/llama/build.log /tmp/llama/cmake.log > "$OUTDIR/llama-build-fail.txt"
fi
for t in f16 q8_0; do echo "== $t"; head -14 "$OUTDIR/profile-$t.txt"; cat "$OUTDIR/metallic-tg-$t.txt"; done
