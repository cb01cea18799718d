#!/usr/bin/env bash
# Builds random-weight Qwen2.5-shaped benchmark GGUFs on the GPU machine (or anywhere) with the
# real toolchain: transformers random init -> HF dir -> llama.cpp convert_hf_to_gguf.py.
#
#   tools/device/make_bench_models.sh OUTDIR [--7b] [--only-7b] [--types f16,q8_0] [--seed N]
#                                            [--device cpu|cuda] [--keep-hf] [--hf-root DIR]
#
# Writes OUTDIR/qwen2.5-0.5b-{f16,q8_0}.gguf (and OUTDIR/qwen2.5-7b-{f16,q8_0}.gguf with --7b).
# Needs: python3 with torch, transformers (4.x or 5.x), safetensors, numpy, pyyaml, tqdm, requests
# (all on the GPU machine), plus the carried .devkit folder (tools/device/build_devkit.sh makes it:
# converter + vendored gguf-py + Qwen tokenizer + make_model.py). No internet, no gguf wheel needed.
# Env: PYTHON (default python3), DEVKIT (default <repo>/.devkit).
# Timing (0.5B): ~1-2 min on a 2-core CPU box; see README.md.
set -euo pipefail

usage() { sed -n '2,13p' "$0"; exit 2; }
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
HF_ROOT="${TMPDIR:-/tmp}/metallic-bench-hf"
while [ $# -gt 0 ]; do
  case "$1" in
    --7b) PRESETS=(qwen2.5-0.5b qwen2.5-7b);;
    --only-7b) PRESETS=(qwen2.5-7b);;
    --types) TYPES="$2"; shift;;
    --seed) SEED="$2"; shift;;
    --device) DEVICE="$2"; shift;;
    --keep-hf) KEEP_HF=1;;
    --hf-root) HF_ROOT="$2"; shift;;
    -h|--help) usage;;
    *) echo "unknown option $1" >&2; usage;;
  esac
  shift
done

[ -f "$DEVKIT/make_model.py" ] && [ -f "$DEVKIT/llama.cpp/convert_hf_to_gguf.py" ] || {
  echo "devkit not found at $DEVKIT (build it with tools/device/build_devkit.sh and carry .devkit)" >&2; exit 1; }
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

# Converter options: --parallel-convert runs f16 and q8_0 concurrently (they read the same HF dir).
for preset in "${PRESETS[@]}"; do
  t0=$(date +%s.%N)
  "$PYTHON" "$DEVKIT/make_model.py" --preset "$preset" --seed "$SEED" --device "$DEVICE" \
    --out-dir "$OUTDIR" --hf-root "$HF_ROOT" --tokenizer-dir "$DEVKIT/tokenizer" \
    --converter "$DEVKIT/llama.cpp/convert_hf_to_gguf.py" --outtypes "$TYPES" --parallel-convert
  [ "$KEEP_HF" = 1 ] || rm -rf "${HF_ROOT:?}/$preset"
  echo "[bench-models] $preset done in $(elapsed "$t0")"
done
rm -f "$OUTDIR"/.*.convert.log
ls -la "$OUTDIR"/*.gguf
echo "[bench-models] total $(elapsed "$t_start")"
