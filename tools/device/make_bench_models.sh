#!/usr/bin/env bash
# Builds random-weight Qwen2.5-shaped benchmark GGUFs on the GPU machine (or anywhere) with the
# real toolchain: transformers random init -> HF dir -> llama.cpp convert_hf_to_gguf.py
# (-> llama.cpp llama-quantize, with --quantize).
#
#   tools/device/make_bench_models.sh OUTDIR [--7b] [--only-7b] [--presets LIST] [--types f16,q8_0]
#        [--seed N] [--device cpu|cuda] [--fast] [--quantize LLAMA_QUANTIZE] [--skip-existing]
#        [--keep-hf] [--hf-root DIR]
#
# Writes OUTDIR/qwen2.5-0.5b-{f16,q8_0}.gguf (and OUTDIR/qwen2.5-7b-{f16,q8_0}.gguf with --7b).
#   --presets LIST    comma list of make_model.py presets (qwen2.5-0.5b,qwen2.5-7b); overrides --7b
#   --fast            benchmark mode: float16 HF checkpoint, filled by make_model.py --fast-init (tiled
#                     seeded pool: memory speed instead of torch's generator; the converter then only
#                     copies); the 7B preset takes ~1-2 min instead of many
#   --quantize BIN    make Q8_0 (and any non-f16 type) from the F16 GGUF with llama.cpp's llama-quantize
#                     (multi-threaded) instead of the converter's single-threaded numpy quantizer;
#                     the F16 file is made (and kept) even if f16 is not in --types
#   --skip-existing   leave GGUFs that already exist alone (a rerun only makes what is missing)
# Needs: python3 with torch, transformers (4.x or 5.x), safetensors, numpy, pyyaml, tqdm, requests
# (all on the GPU machine), plus the carried .devkit folder (tools/device/build_devkit.sh makes it:
# converter + vendored gguf-py + Qwen tokenizer). No internet, no gguf wheel needed.
# Env: PYTHON (default python3), DEVKIT (default <repo>/.devkit), THREADS (llama-quantize; nproc).
# Timing (0.5B): ~1 min on a 2-core CPU box; see tools/device/README.md.
set -euo pipefail

usage() { sed -n '2,25p' "$0"; exit 2; }
[ $# -ge 1 ] || usage
OUTDIR="$1"; shift
case "$OUTDIR" in -*) usage;; esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEVKIT="${DEVKIT:-$ROOT/.devkit}"
PYTHON="${PYTHON:-python3}"
PRESETS=(qwen2.5-0.5b)
TYPES=f16,q8_0
SEED=0
DEVICE=cpu
KEEP_HF=0
FAST=0
QUANTIZE=""
SKIP_EXISTING=0
HF_ROOT="${TMPDIR:-/tmp}/metallic-bench-hf"
while [ $# -gt 0 ]; do
  case "$1" in
    --7b) PRESETS=(qwen2.5-0.5b qwen2.5-7b);;
    --only-7b) PRESETS=(qwen2.5-7b);;
    --presets) IFS=, read -r -a PRESETS <<< "$2"; shift;;
    --types) TYPES="$2"; shift;;
    --seed) SEED="$2"; shift;;
    --device) DEVICE="$2"; shift;;
    --fast) FAST=1;;
    --quantize) QUANTIZE="$2"; shift;;
    --skip-existing) SKIP_EXISTING=1;;
    --keep-hf) KEEP_HF=1;;
    --hf-root) HF_ROOT="$2"; shift;;
    -h|--help) usage;;
    *) echo "unknown option $1" >&2; usage;;
  esac
  shift
done

# make_model.py: the repo's own copy (it travels with the working tree), else the devkit's.
MAKE_MODEL="$ROOT/tools/make_fixtures/make_model.py"
[ -f "$MAKE_MODEL" ] || MAKE_MODEL="$DEVKIT/make_model.py"
[ -f "$MAKE_MODEL" ] && [ -f "$DEVKIT/llama.cpp/convert_hf_to_gguf.py" ] || {
  echo "devkit not found at $DEVKIT (build it with tools/device/build_devkit.sh and carry .devkit)" >&2; exit 1; }
[ -z "$QUANTIZE" ] || [ -x "$QUANTIZE" ] || { echo "llama-quantize not executable: $QUANTIZE" >&2; exit 1; }
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"

t_start=$(date +%s.%N)
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.1f}s')" "$1" "$(date +%s.%N)"; }

echo "[bench-models] python: $(command -v "$PYTHON")"
"$PYTHON" - <<'EOF'
import sys, torch, transformers, safetensors, numpy, yaml, tqdm
print(f"[bench-models] python {sys.version.split()[0]} torch {torch.__version__} transformers {transformers.__version__} "
      f"safetensors {safetensors.__version__} numpy {numpy.__version__} cuda={torch.cuda.is_available()} "
      f"cpus={torch.get_num_threads()}")
EOF
echo "[bench-models] devkit: $(tr '\n' ';' < "$DEVKIT/VERSIONS" 2>/dev/null)"

init_args=()
[ "$FAST" = 1 ] && init_args=(--fast-init --dtype float16)

for preset in "${PRESETS[@]}"; do
  t0=$(date +%s.%N)
  # Which files the converter makes, which llama-quantize makes.
  conv=(); quant=()
  IFS=, read -r -a want <<< "$TYPES"
  for t in "${want[@]}"; do
    [ -n "$t" ] || continue
    if [ "$SKIP_EXISTING" = 1 ] && [ -s "$OUTDIR/$preset-$t.gguf" ]; then
      echo "[bench-models] $preset-$t.gguf exists, kept"; continue
    fi
    if [ -n "$QUANTIZE" ] && [ "$t" != f16 ] && [ "$t" != f32 ] && [ "$t" != bf16 ]; then quant+=("$t"); else conv+=("$t"); fi
  done
  if [ ${#quant[@]} -gt 0 ] && [ ! -s "$OUTDIR/$preset-f16.gguf" ] && [[ " ${conv[*]} " != *" f16 "* ]]; then
    conv+=(f16)
  fi
  if [ ${#conv[@]} -gt 0 ]; then
    outtypes="$(IFS=,; echo "${conv[*]}")"
    "$PYTHON" "$MAKE_MODEL" --preset "$preset" --seed "$SEED" --device "$DEVICE" "${init_args[@]}" \
      --out-dir "$OUTDIR" --hf-root "$HF_ROOT" --tokenizer-dir "$DEVKIT/tokenizer" \
      --converter "$DEVKIT/llama.cpp/convert_hf_to_gguf.py" --outtypes "$outtypes" --parallel-convert
    [ "$KEEP_HF" = 1 ] || rm -rf "${HF_ROOT:?}/$preset"
  fi
  for t in "${quant[@]}"; do
    t1=$(date +%s.%N)
    T="$(echo "$t" | tr '[:lower:]' '[:upper:]')"
    "$QUANTIZE" "$OUTDIR/$preset-f16.gguf" "$OUTDIR/.$preset-$t.gguf.tmp" "$T" "${THREADS:-$(nproc)}" \
      > "$OUTDIR/.$preset-$t.quantize.log" 2>&1 || {
        tail -20 "$OUTDIR/.$preset-$t.quantize.log" >&2; echo "llama-quantize failed for $preset $t" >&2; exit 1; }
    mv "$OUTDIR/.$preset-$t.gguf.tmp" "$OUTDIR/$preset-$t.gguf"
    echo "[bench-models] llama-quantize $preset F16 -> $T ($(du -m "$OUTDIR/$preset-$t.gguf" | cut -f1) MB) in $(elapsed "$t1")"
  done
  echo "[bench-models] $preset done in $(elapsed "$t0")"
done
rm -f "$OUTDIR"/.*.convert.log "$OUTDIR"/.*.quantize.log
ls -la "$OUTDIR"/*.gguf
echo "[bench-models] total $(elapsed "$t_start")"
