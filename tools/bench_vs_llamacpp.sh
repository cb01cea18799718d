#!/usr/bin/env bash
# Metallic against llama.cpp on the same GGUF files on the same GPU: one markdown table with ratios.
#
#   tools/bench_vs_llamacpp.sh [--models 0.5b,7b] [--types f16,q8_0] [--backends cuda,vulkan]
#       [--tests pp512,tg128,pp2048,pp8192] [--reps 5] [--work DIR] [--out DIR]
#       [--metallic BIN] [--llama-cuda auto|build|PATH] [--llama-vulkan auto|build|PATH]
#       [--export-llama DIR] [--model-dir DIR] [--bw-gbs N] [--budget SECONDS]
#       [--prepare-only] [--force] [--clean]
#
# Steps (each is skipped when its output is already in the work dir, so a run can be split across
# calls, or rerun after a failure, and only redo what is missing):
#   1. llama.cpp llama-bench + llama-quantize per backend: unpacked from a prebuilt pack (auto: use
#      .llamabin/llama-<backend>.tar.xz[.00] when present), else built from .llamasrc with
#      tools/device/build_llama.sh in the background (CUDA ~5 min on 16 cores; Vulkan needs .vkdev);
#   2. the GGUFs, meanwhile (tools/device/make_bench_models.sh --fast): transformers random init with
#      the published Qwen2.5-0.5B/7B-Instruct configs, the real Qwen tokenizer, llama.cpp's
#      convert_hf_to_gguf.py to F16, then llama-quantize F16 -> Q8_0 (once a llama build is ready);
#   3. device copy bandwidth (tools/device/copy_bw.cu, built with nvcc), for the decode floor;
#   4. metallic bench MODEL -p P -n N -r R -o json, per file, on an otherwise idle machine;
#   5. llama-bench -m MODEL -p P,.. -n N -r R -fa 1 -ngl 99 -o json, per file and backend;
#   6. the table: OUT/bench.md (also printed), OUT/bench.json (every raw JSON, the bandwidth, the
#      bytes per token of each file), OUT/logs.tar.gz. It is rewritten after every benchmark, so a
#      call killed at its time limit still leaves the results so far.
#
# Options:
#   --models LIST      0.5b, 7b (Qwen2.5-0.5B/7B-Instruct shapes) or any make_model.py preset (tiny,
#                      tiny-untied: for tests). Default 0.5b.
#   --types LIST       f16, q8_0. Default f16,q8_0.
#   --backends LIST    llama.cpp backends: cuda, vulkan, or none (Metallic only). Default cuda.
#   --tests LIST       ppN and tgN (llama-bench's pp/tg: N prompt tokens in one batch from an empty
#                      context; N generated tokens one by one). Default pp512,tg128.
#   --reps N           repetitions per test (both engines also do one warm-up). Default 5.
#   --work DIR         work dir: models, builds, raw results. Default ${TMPDIR:-/tmp}/bench-vs-llamacpp.
#   --out DIR          table, JSON and logs (at most 3 files; plus the --export-llama packs if that is
#                      the same folder). Default WORK/results.
#   --metallic BIN     the metallic binary, or an .xz of it. Default: .devbin/metallic, .devbin/metallic.xz,
#                      $CARGO_TARGET_DIR/release/metallic, target/release/metallic (first found).
#   --llama-cuda X, --llama-vulkan X
#                      auto (default): a prebuilt pack in .llamabin/ if there, else build from source;
#                      build: always build from .llamasrc; PATH: a build folder or a pack (.tar.xz[.00]).
#   --export-llama DIR pack each llama.cpp build made in this run (not the unpacked prebuilt ones) to
#                      DIR/llama-<backend>.tar.xz (split in 15 MiB parts .00, .01, ... when larger),
#                      to be copied into .llamabin/ and carried next time (saves the ~5 min build).
#   --model-dir DIR    take the GGUFs from DIR (<preset>-<type>.gguf) instead of making them.
#   --bw-gbs N         device bandwidth in GB/s for the floor (skips copy_bw; for machines without nvcc).
#   --budget S         start no further benchmark after S seconds of this run, and stop one still
#                      running 50 s after it (e.g. 540 inside a 10-minute call): the table is written
#                      with what finished. Env BENCH_TIMEOUT (default 420 s) caps each benchmark.
#   --prepare-only     steps 1-3 only (builds and models), e.g. as a first call.
#   --force            redo the bandwidth and benchmark steps (keeps builds and models).
#   --clean            delete the work dir first.
#
# Env passes through to the engines (e.g. VK_DRIVER_FILES, GGML_VK_VISIBLE_DEVICES, METALLIC_*).
# Needs: python3 (the GPU machine's has torch + transformers), a Vulkan loader for Metallic and
# llama.cpp Vulkan (.gl), cmake + ninja + nvcc to build llama.cpp CUDA, .devkit (converter +
# tokenizer) to make models. See tools/device/README.md for the H100 commands and timings.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
D="$ROOT/tools/device"
die() { echo "bench_vs_llamacpp: error: $*" >&2; exit 1; }
log() { echo "[bench +${SECONDS}s] $*"; }
usage() { sed -n '2,56p' "$0"; exit 2; }

MODELS=0.5b; TYPES=f16,q8_0; BACKENDS=cuda; TESTS=pp512,tg128; REPS=5
WORK="${TMPDIR:-/tmp}/bench-vs-llamacpp"; OUT=""; METALLIC=""
declare -A LLAMA_SRC=([cuda]=auto [vulkan]=auto)
EXPORT=""; MODEL_DIR=""; BW_GBS=""; BUDGET=0; PREPARE_ONLY=0; FORCE=0; CLEAN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --models|--types|--backends|--tests|--reps|--work|--out|--metallic|--llama-cuda|--llama-vulkan|\
    --export-llama|--model-dir|--bw-gbs|--budget) [ $# -ge 2 ] || die "$1 needs a value";;
  esac
  case "$1" in
    --models) MODELS="$2"; shift;;
    --types) TYPES="$2"; shift;;
    --backends) BACKENDS="$2"; shift;;
    --tests) TESTS="$2"; shift;;
    --reps) REPS="$2"; shift;;
    --work) WORK="$2"; shift;;
    --out) OUT="$2"; shift;;
    --metallic) METALLIC="$2"; shift;;
    --llama-cuda) LLAMA_SRC[cuda]="$2"; shift;;
    --llama-vulkan) LLAMA_SRC[vulkan]="$2"; shift;;
    --export-llama) EXPORT="$2"; shift;;
    --model-dir) MODEL_DIR="$2"; shift;;
    --bw-gbs) BW_GBS="$2"; shift;;
    --budget) BUDGET="$2"; shift;;
    --prepare-only) PREPARE_ONLY=1;;
    --force) FORCE=1;;
    --clean) CLEAN=1;;
    -h|--help) usage;;
    *) die "unknown option '$1' (--help lists them)";;
  esac
  shift
done

# ------------------------------------------------------------------ arguments
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "--reps must be a positive integer"
[[ "$BUDGET" =~ ^[0-9]+$ ]] || die "--budget must be a number of seconds"
[ -z "$BW_GBS" ] || [[ "$BW_GBS" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--bw-gbs must be a number"
PRESETS=(); PP=(); TG=(); TYPE_LIST=(); BACKEND_LIST=()
for m in ${MODELS//,/ }; do
  case "$m" in 0.5b) PRESETS+=(qwen2.5-0.5b);; 7b) PRESETS+=(qwen2.5-7b);; *) PRESETS+=("$m");; esac
done
for t in ${TYPES//,/ }; do
  case "$t" in f16|q8_0) TYPE_LIST+=("$t");; *) die "unknown type '$t' (f16, q8_0)";; esac
done
for b in ${BACKENDS//,/ }; do
  case "$b" in cuda|vulkan) BACKEND_LIST+=("$b");; none) ;; *) die "unknown backend '$b' (cuda, vulkan, none)";; esac
done
for t in ${TESTS//,/ }; do
  case "$t" in
    pp[1-9]*) [[ "${t#pp}" =~ ^[0-9]+$ ]] || die "bad test '$t'"; PP+=("${t#pp}");;
    tg[1-9]*) [[ "${t#tg}" =~ ^[0-9]+$ ]] || die "bad test '$t'"; TG+=("${t#tg}");;
    *) die "unknown test '$t' (ppN or tgN)";;
  esac
done
if [ ${#PRESETS[@]} -eq 0 ] || [ ${#TYPE_LIST[@]} -eq 0 ] || [ $(( ${#PP[@]} + ${#TG[@]} )) -eq 0 ]; then
  die "nothing to do: --models, --types and --tests need at least one entry each"
fi
command -v python3 >/dev/null || die "python3 not found"

[ "$CLEAN" = 1 ] && rm -rf "$WORK"
mkdir -p "$WORK"/{models,raw,logs,bin}
WORK="$(cd "$WORK" && pwd)"
OUT="${OUT:-$WORK/results}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
MODELS_DIR="${MODEL_DIR:-$WORK/models}"
[ -z "$MODEL_DIR" ] || [ -d "$MODEL_DIR" ] || die "--model-dir $MODEL_DIR does not exist"
FAILED=()
log "work $WORK, out $OUT; models ${PRESETS[*]}; types ${TYPE_LIST[*]}; backends ${BACKEND_LIST[*]:-none}; tests $TESTS; reps $REPS"

# ------------------------------------------------------------------ metallic binary
if [ "$PREPARE_ONLY" = 0 ]; then
  if [ -z "$METALLIC" ]; then
    for c in "$ROOT/.devbin/metallic" "$ROOT/.devbin/metallic.xz" "${CARGO_TARGET_DIR:-$ROOT/target}/release/metallic" "$ROOT/target/release/metallic"; do
      [ -f "$c" ] && { METALLIC="$c"; break; }
    done
    [ -n "$METALLIC" ] || die "no metallic binary (.devbin/metallic[.xz] or target/release/metallic; or --metallic BIN)"
  fi
  [ -f "$METALLIC" ] || die "--metallic $METALLIC not found"
  if [[ "$METALLIC" == *.xz ]]; then
    python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" "$METALLIC" "$WORK/bin/metallic"
    chmod +x "$WORK/bin/metallic"; METALLIC="$WORK/bin/metallic"
  fi
  [ -x "$METALLIC" ] || die "$METALLIC is not executable"
  "$METALLIC" bench --help >/dev/null 2>&1 || die "$METALLIC has no 'bench' command (too old?)"
  ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1' || [ -n "${LD_LIBRARY_PATH:-}" ] ||
    die "no Vulkan loader (libvulkan.so.1); on the GPU machine first run: for f in .gl/*.deb; do dpkg -x \$f /; done; ldconfig"
fi

# ------------------------------------------------------------------ step 1: llama.cpp builds
# LL[b]: folder with llama-bench for backend b, once ready. Builds from source run in one
# background job (sequentially: each uses every core), logged to WORK/logs/build-<b>.log.
declare -A LL=()
TO_BUILD=()
is_ready() { [ -x "$1/llama-bench" ] && [ -f "$1/BUILDINFO" ]; }
for b in "${BACKEND_LIST[@]}"; do
  dir="$WORK/llama-$b"
  src="${LLAMA_SRC[$b]}"
  if [ "$src" = auto ]; then
    src=build
    if [ -f "$ROOT/.llamabin/llama-$b.tar.xz" ] || [ -f "$ROOT/.llamabin/llama-$b.tar.xz.00" ]; then
      src="$ROOT/.llamabin/llama-$b.tar.xz"
    fi
  fi
  if [ "$src" = build ]; then
    if is_ready "$dir" && [ ! -f "$dir/.prebuilt" ]; then log "llama.cpp $b: built before ($dir)"; LL[$b]="$dir"
    else TO_BUILD+=("$b"); fi
  elif [ -d "$src" ]; then
    is_ready "$src" || die "--llama-$b $src: no llama-bench + BUILDINFO there"
    LL[$b]="$(cd "$src" && pwd)"; log "llama.cpp $b: using $src"
  else
    [ -f "$src" ] || [ -f "$src.00" ] || [ -f "${src%.00}" ] || die "--llama-$b $src: no such build folder or pack"
    if is_ready "$dir" && [ -f "$dir/.prebuilt" ] && [ "$(cat "$dir/.prebuilt")" = "$src" ]; then
      log "llama.cpp $b: prebuilt pack unpacked before"
    else
      bash "$D/llama_pack.sh" unpack "$src" "$dir"; echo "$src" > "$dir/.prebuilt"
      log "llama.cpp $b: unpacked prebuilt $src"
    fi
    if "$dir/llama-bench" --help >/dev/null 2>&1; then
      LL[$b]="$dir"
    else
      log "WARNING: the prebuilt llama-bench from $src does not run here: $("$dir/llama-bench" --help 2>&1 | head -2 | tr '\n' ' ')"
      rm -rf "$dir"
      if [ -f "$ROOT/.llamasrc/llama.cpp.tar.xz" ] && { [ "$b" = cuda ] || ls "$ROOT"/.vkdev/glslc_*.deb >/dev/null 2>&1; }; then
        TO_BUILD+=("$b")
      else
        FAILED+=("llama.cpp $b (prebuilt does not run, no source to build)")
      fi
    fi
  fi
done
BUILD_PID=""
if [ ${#TO_BUILD[@]} -gt 0 ]; then
  [ -f "$ROOT/.llamasrc/llama.cpp.tar.xz" ] || die "llama.cpp must be built (${TO_BUILD[*]}) but .llamasrc/llama.cpp.tar.xz is missing (carry .llamasrc, or a prebuilt .llamabin)"
  log "building llama.cpp ${TO_BUILD[*]} in the background (logs/build-*.log)"
  (
    for b in "${TO_BUILD[@]}"; do
      t0=$SECONDS
      if bash "$D/build_llama.sh" "$b" "$WORK/llama-$b" --build-dir "$WORK/build-$b" > "$WORK/logs/build-$b.log" 2>&1; then
        echo "[bench] llama.cpp $b built in $((SECONDS - t0))s"
      else
        echo "[bench] llama.cpp $b build FAILED after $((SECONDS - t0))s:"; tail -15 "$WORK/logs/build-$b.log"
      fi
    done
  ) &
  BUILD_PID=$!
fi
wait_builds() {
  if [ -n "$BUILD_PID" ]; then
    log "waiting for the llama.cpp build(s)"
    wait "$BUILD_PID" || true
    BUILD_PID=""
    for b in "${TO_BUILD[@]}"; do
      if is_ready "$WORK/llama-$b"; then LL[$b]="$WORK/llama-$b"; else FAILED+=("llama.cpp $b build"); fi
    done
  fi
}
quantizer() {  # a llama-quantize that runs, from any ready build (prebuilt first)
  for b in "${BACKEND_LIST[@]}"; do
    if [ -n "${LL[$b]:-}" ] && [ -x "${LL[$b]}/llama-quantize" ]; then echo "${LL[$b]}/llama-quantize"; return 0; fi
  done
  return 0
}

# ------------------------------------------------------------------ step 2: models
need_q8=0; [[ " ${TYPE_LIST[*]} " == *" q8_0 "* ]] && need_q8=1
models_missing() {
  for p in "${PRESETS[@]}"; do for t in "$@"; do [ -s "$MODELS_DIR/$p-$t.gguf" ] || return 0; done; done
  return 1
}
if [ -n "$MODEL_DIR" ]; then
  for p in "${PRESETS[@]}"; do for t in "${TYPE_LIST[@]}"; do
    [ -s "$MODEL_DIR/$p-$t.gguf" ] || die "--model-dir: $MODEL_DIR/$p-$t.gguf missing"
  done; done
elif models_missing "${TYPE_LIST[@]}"; then
  [ -f "$ROOT/.devkit/llama.cpp/convert_hf_to_gguf.py" ] || die "models must be made but .devkit is missing (tools/device/build_devkit.sh here; carry .devkit)"
  # The HF checkpoint (15 GB for 7B) is written and read once: keep it in RAM when /dev/shm has room.
  HF_ROOT="$WORK/hf"
  shm_free_gb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print int($4 / 1048576)}' || true)
  if [ "${shm_free_gb:-0}" -ge 40 ]; then
    HF_ROOT=/dev/shm/bench-vs-llamacpp-hf
    trap 'rm -rf /dev/shm/bench-vs-llamacpp-hf' EXIT
  fi
  # F16 first (CPU work that overlaps the llama.cpp build), then Q8_0 with llama-quantize.
  first=(f16); [ "$need_q8" = 1 ] && [ ${#BACKEND_LIST[@]} -eq 0 ] && first=("${TYPE_LIST[@]}")
  if models_missing "${first[@]}"; then
    log "making ${first[*]} GGUFs (logs/make-models.log)"
    presets_csv="$(IFS=,; echo "${PRESETS[*]}")"; types_csv="$(IFS=,; echo "${first[*]}")"
    bash "$D/make_bench_models.sh" "$MODELS_DIR" --presets "$presets_csv" --types "$types_csv" --fast \
      --skip-existing --hf-root "$HF_ROOT" >> "$WORK/logs/make-models.log" 2>&1 ||
      { tail -30 "$WORK/logs/make-models.log" >&2; die "making models failed (log: $WORK/logs/make-models.log)"; }
    grep -E "\] (built|saved|wrote|total)|done in" "$WORK/logs/make-models.log" | tail -12 | sed 's/^/    /'
  fi
  if [ "$need_q8" = 1 ] && models_missing q8_0; then
    q="$(quantizer)"
    if [ -z "$q" ]; then wait_builds; q="$(quantizer)"; fi
    qargs=()
    if [ -n "$q" ]; then
      log "making q8_0 GGUFs with $q"; qargs=(--quantize "$q")
    else
      log "no llama-quantize (llama.cpp build failed): q8_0 with the converter's own quantizer (slow for 7B)"
    fi
    bash "$D/make_bench_models.sh" "$MODELS_DIR" --presets "$(IFS=,; echo "${PRESETS[*]}")" --types q8_0 --fast \
      --skip-existing "${qargs[@]}" --hf-root "$HF_ROOT" >> "$WORK/logs/make-models.log" 2>&1 ||
      { tail -30 "$WORK/logs/make-models.log" >&2; die "quantizing failed (log: $WORK/logs/make-models.log)"; }
    grep -E "llama-quantize .* in " "$WORK/logs/make-models.log" | tail -4 | sed 's/^/    /'
  fi
else
  log "models: all there ($MODELS_DIR)"
fi
wait_builds

# ------------------------------------------------------------------ step 3: bandwidth
BW_JSON="$WORK/bw.json"
[ "$FORCE" = 1 ] && rm -f "$BW_JSON"
if [ -z "$BW_GBS" ] && [ ! -s "$BW_JSON" ]; then
  NVCC="$(command -v nvcc || true)"; [ -n "$NVCC" ] || { [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc; }
  if [ -n "$NVCC" ]; then
    if "$NVCC" -O3 -arch="sm_${CUDA_ARCH:-90}" -o "$WORK/bin/copy_bw" "$D/copy_bw.cu" > "$WORK/logs/copy_bw.log" 2>&1 &&
       "$WORK/bin/copy_bw" > "$BW_JSON.tmp" 2>> "$WORK/logs/copy_bw.log"; then
      mv "$BW_JSON.tmp" "$BW_JSON"; log "bandwidth: $(cat "$BW_JSON")"
    else
      rm -f "$BW_JSON.tmp"; FAILED+=("copy_bw"); log "copy_bw failed: $(tail -3 "$WORK/logs/copy_bw.log")"
    fi
  else
    log "no nvcc: bandwidth not measured (--bw-gbs N to give one); the floor columns stay empty"
  fi
fi

# ------------------------------------------------------------------ table
join_by() { local IFS="$1"; shift; echo "$*"; }
write_table() {
  python3 - "$WORK/manifest.json" "$@" <<'PY'
import json, sys
path, work, models_dir, tests, backends, bw, bw_over, presets, types, meta = sys.argv[1:11]
backends = [b for b in backends.split(",") if b]
runs = [l.split("\t") for l in open(f"{work}/runs.tsv").read().splitlines() if l] if __import__("os").path.exists(f"{work}/runs.tsv") else []
models = []
for p in presets.split(","):
    for t in types.split(","):
        tag = f"{p}-{t}"
        m = {"tag": tag, "model": p, "type": t, "gguf": f"{models_dir}/{tag}.gguf", "metallic": [], "llama": {b: [] for b in backends}}
        for engine, rtag, f in runs:
            if rtag != tag:
                continue
            if engine == "metallic":
                m["metallic"].append(f)
            elif engine in m["llama"]:
                m["llama"][engine].append(f)
        models.append(m)
json.dump({"tests": tests.split(","), "backends": backends, "bw": bw or None,
           "bw_gbs_override": float(bw_over) if bw_over else None, "meta": json.loads(meta), "models": models},
          open(path, "w"), indent=1)
PY
  python3 "$D/bench_table.py" "$WORK/manifest.json" --md "$OUT/bench.md" --json "$OUT/bench.json" > "$WORK/table.txt" 2> "$WORK/logs/table.err" ||
    { cat "$WORK/logs/table.err" >&2; return 1; }
  local infos=()
  for b in "${BACKEND_LIST[@]}"; do [ ! -f "$WORK/llama-$b/BUILDINFO" ] || infos+=("llama-$b/BUILDINFO"); done
  tar czf "$OUT/logs.tar.gz" -C "$WORK" logs "${infos[@]}" 2>/dev/null || true
}
GPU="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1 || true)"
llama_build_info() {  # {"cuda": "BUILDINFO lines but the cmake flags, joined", ...}
  local args=() b
  for b in "${BACKEND_LIST[@]}"; do
    if [ -n "${LL[$b]:-}" ]; then args+=("$b=${LL[$b]}/BUILDINFO"); fi
  done
  python3 - "${args[@]}" <<'PY'
import json, sys
out = {}
for b, f in (a.split("=", 1) for a in sys.argv[1:]):
    lines = open(f).read().splitlines()
    has = [l.split()[0] for l in lines if l.endswith(" supported by glslc") and " not supported" not in l]
    keep = [l for l in lines if not l.startswith(("cmake:", "backend:", "compiler:")) and not l.endswith(" by glslc")]
    out[b] = "; ".join(keep + ([f"glslc extensions: {', '.join(has)}"] if has else []))
print(json.dumps(out))
PY
}
META="$(python3 -c "import json,sys; print(json.dumps(dict(date=sys.argv[1], gpu=sys.argv[2], command=sys.argv[3],
  metallic_cmd=sys.argv[4], llama_cmd=sys.argv[5], llama_build=json.loads(sys.argv[6]))))" \
  "$(date -u +%FT%TZ)" "$GPU" "tools/bench_vs_llamacpp.sh --models $MODELS --types $TYPES --backends $BACKENDS --tests $TESTS --reps $REPS" \
  "metallic bench MODEL -p P -n N -r $REPS -o json" "llama-bench -m MODEL -p P -n N -r $REPS -fa 1 -ngl 99 -o json" \
  "$(llama_build_info)")"
table() {
  write_table "$WORK" "$MODELS_DIR" "$TESTS" "$(join_by , "${BACKEND_LIST[@]}")" \
    "$([ -s "$BW_JSON" ] && echo "$BW_JSON")" "$BW_GBS" "$(join_by , "${PRESETS[@]}")" "$(join_by , "${TYPE_LIST[@]}")" "$META"
}

# ------------------------------------------------------------------ export the builds
if [ -n "$EXPORT" ]; then
  for b in "${BACKEND_LIST[@]}"; do
    dir="${LL[$b]:-}"
    if [ -z "$dir" ] || [ "$dir" != "$WORK/llama-$b" ] || [ -f "$dir/.prebuilt" ]; then continue; fi
    bash "$D/llama_pack.sh" pack "$dir" "$EXPORT/llama-$b.tar.xz" || FAILED+=("export $b")
  done
fi

if [ "$PREPARE_ONLY" = 1 ]; then
  log "prepared (--prepare-only): models in $MODELS_DIR, llama.cpp in ${LL[*]:-(none)}"
  [ ${#FAILED[@]} -eq 0 ] || die "failed: ${FAILED[*]}"
  exit 0
fi

# ------------------------------------------------------------------ steps 4-5: benchmarks
RUNS="$WORK/runs.tsv"   # engine \t tag \t raw file, for the table (this run's selection only)
: > "$RUNS"
over_budget() { [ "$BUDGET" -gt 0 ] && [ "$SECONDS" -ge "$BUDGET" ]; }
valid_json() { [ -s "$1" ] && python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if isinstance(d, list) and d else 1)" "$1" 2>/dev/null; }
# bench ENGINE TAG RAW -- command...: runs unless RAW is valid already; records RAW for the table.
bench() {
  local engine="$1" tag="$2" raw="$3"; shift 4
  if [ "$FORCE" = 0 ] && valid_json "$raw"; then
    log "$engine $tag: done before ($(basename "$raw"))"
    printf '%s\t%s\t%s\n' "$engine" "$tag" "$raw" >> "$RUNS"
    return
  elif over_budget; then
    log "$engine $tag: skipped, over the --budget of ${BUDGET}s"; FAILED+=("$engine $tag (budget)"); return
  else
    local t0=$SECONDS err tmo="${BENCH_TIMEOUT:-420}"
    err="$WORK/logs/$(basename "${raw%.json}").err"
    # With --budget, a benchmark may run at most 50 s past it (then the table is written).
    if [ "$BUDGET" -gt 0 ] && [ $((BUDGET + 50 - SECONDS)) -lt "$tmo" ]; then tmo=$((BUDGET + 50 - SECONDS)); fi
    if timeout "$tmo" "$@" > "$raw.tmp" 2> "$err" && valid_json "$raw.tmp"; then
      mv "$raw.tmp" "$raw"; log "$engine $tag: $(python3 -c "import json,sys; print(', '.join(f\"{r.get('test') or ('pp%d' % r['n_prompt'] if r.get('n_prompt') else 'tg%d' % r['n_gen'])} {r['avg_ts']:.1f}±{r['stddev_ts']:.1f}\" for r in json.load(open(sys.argv[1]))))" "$raw") t/s ($((SECONDS - t0))s)"
    else
      rm -f "$raw.tmp"; FAILED+=("$engine $tag"); log "$engine $tag FAILED ($((SECONDS - t0))s): $(grep -v '^\s*$' "$err" | tail -3 | tr '\n' ' ')"
      return
    fi
  fi
  printf '%s\t%s\t%s\n' "$engine" "$tag" "$raw" >> "$RUNS"
  table || true
}
# Metallic: the first pp and tg in one process (like llama-bench, each test after a warm-up), the
# other tests each in its own.
metallic_jobs=()
if [ ${#PP[@]} -gt 0 ] && [ ${#TG[@]} -gt 0 ]; then metallic_jobs+=("${PP[0]} ${TG[0]}"); else
  [ ${#PP[@]} -gt 0 ] && metallic_jobs+=("${PP[0]} 0"); [ ${#TG[@]} -gt 0 ] && metallic_jobs+=("0 ${TG[0]}"); fi
for p in "${PP[@]:1}"; do metallic_jobs+=("$p 0"); done
for n in "${TG[@]:1}"; do metallic_jobs+=("0 $n"); done
[ ${#PP[@]} -gt 0 ] && LP="$(join_by , "${PP[@]}")" || LP=0
[ ${#TG[@]} -gt 0 ] && LN="$(join_by , "${TG[@]}")" || LN=0
for p in "${PRESETS[@]}"; do
  for t in "${TYPE_LIST[@]}"; do
    tag="$p-$t"; gguf="$MODELS_DIR/$tag.gguf"
    for j in "${metallic_jobs[@]}"; do
      read -r jp jn <<< "$j"
      bench metallic "$tag" "$WORK/raw/metallic__${tag}__p$jp-n$jn-r$REPS.json" -- \
        "$METALLIC" bench "$gguf" -p "$jp" -n "$jn" -r "$REPS" -o json
    done
    for b in "${BACKEND_LIST[@]}"; do
      [ -n "${LL[$b]:-}" ] || { FAILED+=("llama.cpp $b $tag (no build)"); continue; }
      bench "$b" "$tag" "$WORK/raw/llama-${b}__${tag}__p${LP}-n${LN}-r$REPS.json" -- \
        "${LL[$b]}/llama-bench" -m "$gguf" -p "$LP" -n "$LN" -r "$REPS" -fa 1 -ngl 99 -o json
    done
  done
done

# ------------------------------------------------------------------ step 6: the table
table || die "could not write the table (see $WORK/logs/table.err)"
echo
cat "$WORK/table.txt"
echo
log "wrote $OUT/bench.md, $OUT/bench.json, $OUT/logs.tar.gz"
[ ${#FAILED[@]} -eq 0 ] || die "failed or skipped: $(IFS=";"; echo "${FAILED[*]}") (logs in $WORK/logs)"
