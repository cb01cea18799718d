#!/usr/bin/env bash
# Sweeps Metallic's tuning knobs on the benchmark GGUFs made by tools/bench_vs_llamacpp.sh
# (run it first with --prepare-only, or after a full run). Each line of a plan is one
# `metallic bench` run with some METALLIC_* variables set.
#
#   tools/device/sweep_knobs.sh MODEL_DIR OUT_DIR [METALLIC_BIN] [PLAN] [BUDGET_S]
#
# PLAN: prefill (attention tiles at pp512, pp8192), decode (GEMV knobs at tg128), or a file
# with lines `model | test | ENV=V ENV=V | bench args` (`-` for no variables). Default
# decode. BUDGET_S (default 0: none): start no run after this many seconds.
# Writes OUT_DIR/sweep.md: one line per run with metallic bench's mean t/s (and sd).
set -euo pipefail
MODELS="$1"; OUT="$2"; BIN="${3:-.devbin/metallic}"; PLAN="${4:-decode}"; BUDGET="${5:-0}"
mkdir -p "$OUT"
md="$OUT/sweep.md"
echo "| model | test | knobs | t/s |" > "$md"
echo "|---|---|---|---:|" >> "$md"

prefill_plan() {
  for t in default 64,32,8 32,32,8 16,32,8 32,64,16 64,64,16; do
    e=-; [ "$t" = default ] || e=METALLIC_ATTN_TILES=$t
    echo "qwen2.5-0.5b-f16 | pp512 | $e | -p 512 -n 0 -r 3"
  done
  for t in default 16,16,8 64,16,8 32,32,8 32,32,16; do
    e=-; [ "$t" = default ] || e=METALLIC_ATTN_TILES=$t
    echo "qwen2.5-7b-f16 | pp512 | $e | -p 512 -n 0 -r 3"
  done
  echo "qwen2.5-0.5b-f16 | pp8192 | - | -p 8192 -n 0 -r 2"
  echo "qwen2.5-0.5b-q8_0 | pp8192 | - | -p 8192 -n 0 -r 2"
}

# GEMV variants at tg128; Q8_0 files also try int8 activations. Small models first (fast),
# so a budget cut drops 7B variants, not whole models.
decode_plan() {
  local f16=(- METALLIC_GEMV_UNROLL=2 METALLIC_GEMV_UNROLL=4 METALLIC_GEMV_WG_SIZE=256 METALLIC_GEMV_WG_SIZE=64)
  local q8=(- METALLIC_GEMV_Q8_DOT=i8 "METALLIC_GEMV_Q8_DOT=i8 METALLIC_GEMV_COLS_PER_TG=8"
            "METALLIC_GEMV_Q8_DOT=i8 METALLIC_GEMV_WG_SIZE=256" METALLIC_GEMV_WG_SIZE=256 METALLIC_GEMV_UNROLL=2)
  for size in 0.5b 7b; do
    local reps=5; [ "$size" = 7b ] && reps=3
    for e in "${f16[@]}"; do echo "qwen2.5-$size-f16 | tg128 | $e | -p 0 -n 128 -r $reps"; done
    for e in "${q8[@]}"; do echo "qwen2.5-$size-q8_0 | tg128 | $e | -p 0 -n 128 -r $reps"; done
  done
}

case "$PLAN" in
  prefill) lines="$(prefill_plan)";;
  decode) lines="$(decode_plan)";;
  *) [ -f "$PLAN" ] || { echo "sweep_knobs: no plan '$PLAN'" >&2; exit 2; }; lines="$(cat "$PLAN")";;
esac

start=$SECONDS
while IFS='|' read -r model test envs args; do
  model="$(echo $model)"; test="$(echo $test)"; envs="$(echo $envs)"
  [ -n "$model" ] || continue
  if [ "$BUDGET" -gt 0 ] && [ $((SECONDS - start)) -ge "$BUDGET" ]; then
    echo "| $model | $test | $envs | skipped (budget) |" | tee -a "$md"; continue
  fi
  env_args=(); [ "$envs" = - ] || read -r -a env_args <<< "$envs"
  # shellcheck disable=SC2086
  if tps=$(env "${env_args[@]}" timeout 150 "$BIN" bench "$MODELS/$model.gguf" $args -o json 2>>"$OUT/sweep.log" \
      | python3 -c 'import json,sys; d=json.load(sys.stdin); r=d["results"] if isinstance(d,dict) and "results" in d else d; print(" ".join("{:.1f} ± {:.1f}".format(x["avg_ts"], x["stddev_ts"]) for x in r))'); then
    echo "| $model | $test | $envs | $tps |" | tee -a "$md"
  else
    echo "| $model | $test | $envs | failed |" | tee -a "$md"
  fi
done <<< "$lines"
