#!/usr/bin/env bash
# Builds llama.cpp's llama-bench and llama-quantize from the carried llama-cpp-python sdist source
# (.llamasrc/llama.cpp.tar.xz) for one GPU backend, as shared libraries with an $ORIGIN rpath, so
# that the output folder is self-contained and can be packed, carried and run elsewhere.
#
#   tools/device/build_llama.sh cuda|vulkan OUT_DIR [--src TAR] [--build-dir DIR] [--vkdev DIR]
#                               [--jobs N] [--portable]
#
#   OUT_DIR/        llama-bench, llama-quantize, lib*.so, BUILDINFO (cmake flags, versions, duration)
#   --src           llama.cpp source tarball (default <repo>/.llamasrc/llama.cpp.tar.xz)
#   --build-dir     cmake build folder (default OUT_DIR.build; kept, so a rerun is incremental)
#   --vkdev         vulkan only: folder of Debian .debs (default <repo>/.vkdev; made by
#                   tools/device/fetch_vkdev.sh): glslc/shaderc, Vulkan headers and SPIRV-Headers from
#                   Debian 13, with the glibc and libstdc++ that glslc needs. They are unpacked into
#                   OUT_DIR.vkroot (never into /); glslc runs through that root's own ld.so.
#   --portable      GGML_NATIVE=OFF, no OpenMP, static libstdc++ (for a binary built here and run there)
#   --jobs N        parallel build jobs (default: all cores)
# Env: CUDA_ARCH (default 90), CMAKE (default cmake). Takes ~5 min for CUDA sm_90 on 16 cores.
# tools/device/llama_pack.sh packs OUT_DIR for carrying.
set -euo pipefail

usage() { sed -n '2,18p' "$0"; exit 2; }
die() { echo "build_llama: $*" >&2; exit 1; }
[ $# -ge 2 ] || usage
BACKEND="$1"; OUT="$2"; shift 2
case "$BACKEND" in cuda|vulkan) ;; *) usage;; esac
case "$OUT" in -*) usage;; esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SRC="$ROOT/.llamasrc/llama.cpp.tar.xz"
BUILD=""
VKDEV="$ROOT/.vkdev"
JOBS="$(nproc)"
PORTABLE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --src) SRC="$2"; shift;;
    --build-dir) BUILD="$2"; shift;;
    --vkdev) VKDEV="$2"; shift;;
    --jobs) JOBS="$2"; shift;;
    --portable) PORTABLE=1;;
    -h|--help) usage;;
    *) die "unknown option $1";;
  esac
  shift
done
CMAKE="${CMAKE:-cmake}"
command -v "$CMAKE" >/dev/null || die "cmake not found"
command -v ninja >/dev/null || die "ninja not found"
[ -f "$SRC" ] || die "llama.cpp source tarball not found: $SRC (see tools/device/README.md, carry .llamasrc)"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
BUILD="${BUILD:-$OUT.build}"
mkdir -p "$BUILD"
BUILD="$(cd "$BUILD" && pwd)"
t0=$(date +%s)

# Source: unpacked once next to the build folder (the tarball's top folder is llama.cpp/).
if [ ! -f "$BUILD/src/llama.cpp/CMakeLists.txt" ]; then
  rm -rf "$BUILD/src" && mkdir -p "$BUILD/src"
  tar xJf "$SRC" -C "$BUILD/src"
fi
S="$BUILD/src/llama.cpp"

flags=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON
  -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON "-DCMAKE_INSTALL_RPATH=\$ORIGIN" -DCMAKE_INSTALL_RPATH_USE_LINK_PATH=ON
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF
  -DLLAMA_OPENSSL=OFF -DGGML_BACKEND_DL=OFF -DGGML_CCACHE=OFF)
if [ "$PORTABLE" = 1 ]; then
  flags+=(-DGGML_NATIVE=OFF -DGGML_OPENMP=OFF
    "-DCMAKE_SHARED_LINKER_FLAGS=-static-libstdc++ -static-libgcc"
    "-DCMAKE_EXE_LINKER_FLAGS=-static-libstdc++ -static-libgcc")
else
  flags+=(-DGGML_NATIVE=ON)
fi

if [ "$BACKEND" = cuda ]; then
  command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || die "nvcc not found (CUDA toolkit needed for the cuda backend)"
  command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
  flags+=(-DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCH:-90}" -DGGML_CUDA_NCCL=OFF)
else
  ls "$VKDEV"/glslc_*.deb >/dev/null 2>&1 || die "no glslc .deb in $VKDEV (run tools/device/fetch_vkdev.sh here, carry .vkdev)"
  VKROOT="$OUT.vkroot"
  if [ ! -x "$VKROOT/glslc" ]; then
    command -v dpkg >/dev/null || die "dpkg not found (needed to unpack $VKDEV/*.deb)"
    rm -rf "$VKROOT" && mkdir -p "$VKROOT"
    for f in "$VKDEV"/*.deb; do dpkg -x "$f" "$VKROOT"; done
    L="$VKROOT/usr/lib/x86_64-linux-gnu"
    [ -x "$L/ld-linux-x86-64.so.2" ] || die "$VKDEV lacks libc6 (glslc's own ld.so)"
    # glslc and libshaderc come from Debian 13 and need its glibc/libstdc++: run them through
    # that root's dynamic loader, whatever the host's glibc is.
    cat > "$VKROOT/glslc" <<EOF
#!/bin/sh
exec "$L/ld-linux-x86-64.so.2" --library-path "$L" "$VKROOT/usr/bin/glslc" "\$@"
EOF
    chmod +x "$VKROOT/glslc"
  fi
  "$VKROOT/glslc" --version | head -1 | grep -q shaderc || die "glslc from $VKDEV does not run"
  # The loader to link against: the system's libvulkan.so.1 (on the GPU machine: from .gl).
  VKLIB="$(ldconfig -p 2>/dev/null | awk '/libvulkan\.so\.1 .*x86-64/ {print $NF; exit}')"
  [ -n "$VKLIB" ] || VKLIB="$(ls "$VKROOT"/usr/lib/x86_64-linux-gnu/libvulkan.so.1 2>/dev/null || true)"
  [ -n "$VKLIB" ] || die "no libvulkan.so.1 (extract .gl/libvulkan1_*.deb first)"
  flags+=(-DGGML_VULKAN=ON "-DVulkan_INCLUDE_DIR=$VKROOT/usr/include" "-DVulkan_LIBRARY=$VKLIB"
    "-DVulkan_GLSLC_EXECUTABLE=$VKROOT/glslc" "-DSPIRV-Headers_DIR=$VKROOT/usr/share/cmake/SPIRV-Headers")
fi

echo "[build_llama] $BACKEND: cmake ${flags[*]}"
"$CMAKE" -S "$S" -B "$BUILD" "${flags[@]}" > "$BUILD/cmake.log" 2>&1 || {
  tail -40 "$BUILD/cmake.log" >&2; die "cmake configure failed (log: $BUILD/cmake.log)"; }
grep -E "supported by glslc|Using CMAKE_CUDA_ARCHITECTURES|CUDA Toolkit found|Vulkan found" "$BUILD/cmake.log" | sed 's/^/[build_llama] /' || true
ninja -C "$BUILD" -j "$JOBS" llama-bench llama-quantize > "$BUILD/build.log" 2>&1 || {
  grep -E "error|Error" "$BUILD/build.log" | head -20 >&2; tail -20 "$BUILD/build.log" >&2
  die "build failed (log: $BUILD/build.log)"; }

rm -f "$OUT"/llama-bench "$OUT"/llama-quantize "$OUT"/lib*.so*
cp -P "$BUILD"/bin/llama-bench "$BUILD"/bin/llama-quantize "$OUT"/
cp -P "$BUILD"/bin/lib*.so* "$OUT"/ 2>/dev/null || true
{
  echo "backend: $BACKEND"
  echo "source: $(basename "$SRC") sha256 $(sha256sum "$SRC" | cut -c1-16)"
  echo "cmake: ${flags[*]}"
  [ "$BACKEND" = vulkan ] && echo "glslc: $("$VKROOT/glslc" --version 2>&1 | tr '\n' ' ')"
  grep -E "supported by glslc" "$BUILD/cmake.log" | sed 's/^-- //' || true
  [ "$BACKEND" = cuda ] && echo "nvcc: $(nvcc --version | tail -1)"
  echo "compiler: $(c++ --version | head -1)"
  echo "built: $(date -u +%FT%TZ) on $(uname -n) in $(( $(date +%s) - t0 ))s"
} > "$OUT/BUILDINFO"
echo "[build_llama] $BACKEND done in $(( $(date +%s) - t0 ))s -> $OUT"
