#!/usr/bin/env bash
# Repeated end-to-end runs of `metallic run`, as in the original project: one
# "TPS Total / TPS Decode" line per run, then min / avg / max.
#
#   tools/run_throughput.sh MODEL.gguf ["prompt"]
#
# Env: ITERATIONS (default 5), MAX_TOKENS (default 256), METALLIC_BIN (default
# target/release/metallic), EXTRA_ARGS (more `metallic run` flags). Runs are greedy and
# ignore EOS so every run generates MAX_TOKENS tokens.
set -euo pipefail
MODEL="${1:?usage: tools/run_throughput.sh MODEL.gguf [prompt]}"
PROMPT="${2:-The quick brown fox jumps over the lazy dog}"
ITERATIONS="${ITERATIONS:-5}"
MAX_TOKENS="${MAX_TOKENS:-256}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${METALLIC_BIN:-$ROOT/target/release/metallic}"
[ -x "$BIN" ] || { echo "no binary at $BIN (cargo build --release)" >&2; exit 1; }
totals=(); decodes=()
for i in $(seq 1 "$ITERATIONS"); do
  # shellcheck disable=SC2086
  err=$("$BIN" run "$MODEL" "$PROMPT" --no-chat-template --temperature 0 --ignore-eos \
        -n "$MAX_TOKENS" --output-format none ${EXTRA_ARGS:-} 2>&1 >/dev/null) || { echo "$err" >&2; exit 1; }
  total=$(grep -o 'tps_total=[0-9.]*' <<<"$err" | cut -d= -f2)
  decode=$(grep -o 'tps_decode=[0-9.]*' <<<"$err" | cut -d= -f2)
  printf 'run %d: TPS Total: %s  TPS Decode: %s\n' "$i" "$total" "$decode"
  totals+=("$total"); decodes+=("$decode")
done
stats() { printf '%s\n' "$@" | awk 'NR==1{mn=$1;mx=$1} {s+=$1; if($1<mn)mn=$1; if($1>mx)mx=$1} END{printf "min %.2f  avg %.2f  max %.2f", mn, s/NR, mx}'; }
echo "TPS Total:  $(stats "${totals[@]}")"
echo "TPS Decode: $(stats "${decodes[@]}")"
