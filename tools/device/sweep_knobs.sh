#!/usr/bin/env bash
# Sweeps Metallic's tuning knobs on the benchmark GGUFs made by tools/bench_vs_llamacpp.sh
# (run it first with --prepare-only, or after a full run): prefill attention tiles
# (METALLIC_ATTN_TILES) at pp512, and GEMV rows per workgroup (METALLIC_GEMV_COLS_PER_TG) at tg.
#
#   tools/device/sweep_knobs.sh MODEL_DIR OUT_DIR [METALLIC_BIN]
#
# Writes OUT_DIR/sweep.md: one line per (model, knob value) with metallic bench's mean t/s.
set -euo pipefail
MODELS="$1"; OUT="$2"; BIN="${3:-.devbin/metallic}"
mkdir -p "$OUT"
md="$OUT/sweep.md"
echo "| model | test | knob | t/s |" > "$md"
echo "|---|---|---|---:|" >> "$md"

bench() { # model test knob-label env... -- bench args...
  local model="$1" test="$2" label="$3"; shift 3
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  local tps
  if tps=$(env "${envs[@]}" timeout 120 "$BIN" bench "$MODELS/$model.gguf" "$@" -o json 2>>"$OUT/sweep.log" \
      | python3 -c 'import json,sys; d=json.load(sys.stdin); r=d["results"] if isinstance(d,dict) and "results" in d else d; print(" ".join("{:.1f}".format(x["avg_ts"]) for x in r))'); then
    echo "| $model | $test | $label | $tps |" | tee -a "$md"
  else
    echo "| $model | $test | $label | failed |" | tee -a "$md"
  fi
}

for t in default 64,32,8 32,32,8 16,32,8 32,64,16 16,16,16 32,32,16 64,64,16; do
  e=(); [ "$t" = default ] || e=(METALLIC_ATTN_TILES=$t)
  bench qwen2.5-0.5b-f16 pp512 "tiles $t" "${e[@]}" X=1 -- -p 512 -n 0 -r 3
done
for t in default 16,16,8 64,16,8 32,32,8 16,32,16 32,32,16 16,16,16; do
  e=(); [ "$t" = default ] || e=(METALLIC_ATTN_TILES=$t)
  bench qwen2.5-7b-f16 pp512 "tiles $t" "${e[@]}" X=1 -- -p 512 -n 0 -r 3
done
for c in 2 4 8; do
  bench qwen2.5-7b-q8_0 tg64 "cols $c" METALLIC_GEMV_COLS_PER_TG=$c -- -p 0 -n 64 -r 3
done
bench qwen2.5-0.5b-f16 pp8192 "default" X=1 -- -p 8192 -n 0 -r 2
bench qwen2.5-0.5b-q8_0 pp8192 "default" X=1 -- -p 8192 -n 0 -r 2
