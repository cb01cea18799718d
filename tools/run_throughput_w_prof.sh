#!/usr/bin/env bash
# run_throughput.sh with per-kernel GPU timestamps: each run also prints the per-kernel
# table (count, total, average, share) and writes its per-dispatch JSONL to
# ${PROFILE_DIR:-metallic-profiles}/run-N.jsonl. Steps run one at a time while profiling,
# so the TPS lines here are lower than without profiling; use them for attribution only.
#
#   tools/run_throughput_w_prof.sh MODEL.gguf ["prompt"]
set -euo pipefail
MODEL="${1:?usage: tools/run_throughput_w_prof.sh MODEL.gguf [prompt]}"
PROMPT="${2:-The quick brown fox jumps over the lazy dog}"
ITERATIONS="${ITERATIONS:-3}"
MAX_TOKENS="${MAX_TOKENS:-64}"
PROFILE_DIR="${PROFILE_DIR:-metallic-profiles}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${METALLIC_BIN:-$ROOT/target/release/metallic}"
mkdir -p "$PROFILE_DIR"
for i in $(seq 1 "$ITERATIONS"); do
  echo "== run $i"
  "$BIN" run "$MODEL" "$PROMPT" --no-chat-template --temperature 0 --ignore-eos -n "$MAX_TOKENS" \
    --output-format none --profile --profile-out "$PROFILE_DIR/run-$i.jsonl" 2>&1 | grep -v '^error: XDG'
done
