#!/usr/bin/env bash
# First decode baseline on the GPU machine: correctness of the release binary on the
# converter-made tiny models (transformers references), then 0.5B-shaped decode speed.
#
#   tools/device/baseline.sh BIN MODELS_DIR OUTDIR
#
# BIN: the metallic release binary; MODELS_DIR: tiny-*.gguf + *.ref.json to check;
# OUTDIR: where logs go. Builds the Qwen2.5-0.5B-shaped GGUFs with make_bench_models.sh.
set -uo pipefail
BIN="$1"; MODELS="$2"; OUTDIR="$3"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
mkdir -p "$OUTDIR"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUTDIR/gpu.txt"
for ref in "$MODELS"/*.ref.json; do
  METALLIC_BIN="$BIN" bash "$ROOT/tools/check_hf_parity.sh" "${ref%.ref.json}.gguf" "$ref" 2>&1 | grep -v XDG | tail -7
done | tee "$OUTDIR/parity.txt"
"$ROOT/tools/device/make_bench_models.sh" /tmp/models > "$OUTDIR/make_models.log" 2>&1 || { tail -20 "$OUTDIR/make_models.log"; exit 1; }
for t in f16 q8_0; do
  model=/tmp/models/qwen2.5-0.5b-$t.gguf
  # One warm-up run (driver shader cache, page cache), then 5 measured runs.
  for i in 0 1 2 3 4 5; do
    "$BIN" run "$model" "The quick brown fox jumps over the lazy dog" --no-chat-template \
      --temperature 0 --max-tokens 256 --ignore-eos --output-format json 2>/dev/null > "$OUTDIR/run-$t-$i.json"
  done
  python3 - "$OUTDIR" "$t" <<'PY'
import json, statistics, sys
out, t = sys.argv[1], sys.argv[2]
runs = [json.load(open(f"{out}/run-{t}-{i}.json")) for i in range(1, 6)]
dec = [r["tps_decode"] for r in runs]
print(f"{t}: device={runs[0]['device']} dispatches/token={runs[0]['dispatches_per_token']} "
      f"tps_decode median={statistics.median(dec):.1f} min={min(dec):.1f} max={max(dec):.1f} "
      f"prompt_s median={statistics.median(r['prompt_s'] for r in runs):.4f} tokens={runs[0]['generated_tokens']}")
PY
done | tee "$OUTDIR/baseline.txt"
