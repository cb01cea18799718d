#!/usr/bin/env bash
# Downloads (here, on the dev machine) the Debian packages that building llama.cpp's Vulkan backend
# needs into <repo>/.vkdev/ (git-ignored, ~7.5 MB): glslc + libshaderc1 (shader compiler),
# libvulkan-dev (headers), spirv-headers (CMake package SPIRV-Headers), all from Debian 13 "trixie",
# plus trixie's libc6, libstdc++6 and libgcc-s1, which that glslc needs (glibc 2.38+).
#
#   tools/device/fetch_vkdev.sh
#
# Why trixie: bookworm's glslc (shaderc 2023.2, glslang 12) lacks GL_KHR_cooperative_matrix,
# GL_NV_cooperative_matrix2 and GL_EXT_integer_dot_product, so llama.cpp would build without its
# tensor-core (coopmat/coopmat2) and int-dot shaders, which it uses on NVIDIA GPUs. Trixie's
# glslc (shaderc 2025.2, glslang 15.1) has those three; it lacks bfloat16/fp8/fp4 and coopmat2
# decode_vector, which the benchmark's F16/Q8_0 models don't need.
# tools/device/build_llama.sh unpacks these into a private root and runs glslc through that
# root's own ld.so, so nothing is installed into / and the host's glibc does not matter.
# apt state goes to a private folder; the system's sources and lists are not touched.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="$ROOT/.vkdev"
SUITE="${SUITE:-trixie}"
PKGS=(glslc libshaderc1 libvulkan-dev spirv-headers libc6 libstdc++6 libgcc-s1)
A="${TMPDIR:-/tmp}/metallic-apt-$SUITE"
mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$DEST"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $SUITE main" > "$A/sources.list"
O=(-o "Dir::State::Lists=$A/lists" -o "Dir::Etc::SourceList=$A/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
   -o "Dir::Cache=$A/cache" -o APT::Architecture=amd64 -o APT::Architectures=amd64)
apt-get "${O[@]}" update -qq
rm -f "$DEST"/*.deb
(cd "$DEST" && apt-get "${O[@]}" download "${PKGS[@]}")
grep -qxF "/.vkdev/" "$ROOT/.gitignore" 2>/dev/null || echo "note: add /.vkdev/ to .gitignore" >&2
ls -la "$DEST"
du -sh "$DEST"
