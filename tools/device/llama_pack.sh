#!/usr/bin/env bash
# Packs a llama.cpp build folder made by tools/device/build_llama.sh (llama-bench, llama-quantize,
# lib*.so with an $ORIGIN rpath, BUILDINFO) into FILE.tar.xz, stripped, split into parts of at most
# 15 MiB (FILE.tar.xz.00, .01, ...) when larger, so that it can come back from the GPU machine's $OUT
# (16 MiB a file) and be carried (e.g. in .llamabin/) the next time instead of being rebuilt.
#
#   tools/device/llama_pack.sh pack DIR FILE.tar.xz
#   tools/device/llama_pack.sh unpack FILE.tar.xz DIR     (FILE.tar.xz or its .00 part; DIR is replaced)
set -euo pipefail
die() { echo "llama_pack: $*" >&2; exit 1; }
[ $# -eq 3 ] || { sed -n '2,8p' "$0"; exit 2; }
PART=$((15 * 1024 * 1024))

case "$1" in
  pack)
    DIR="$2"; FILE="$3"
    [ -x "$DIR/llama-bench" ] || die "no llama-bench in $DIR"
    tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
    cp -P "$DIR"/llama-bench "$DIR"/llama-quantize "$DIR"/BUILDINFO "$tmp"/ 2>/dev/null || true
    cp -P "$DIR"/lib*.so* "$tmp"/ 2>/dev/null || true
    for f in "$tmp"/*; do [ -L "$f" ] || strip --strip-unneeded "$f" 2>/dev/null || true; done
    mkdir -p "$(dirname "$FILE")"
    rm -f "$FILE" "$FILE".[0-9][0-9]
    if command -v xz >/dev/null; then
      tar cf - -C "$tmp" . | xz -T0 -6 > "$FILE"
    else
      python3 -c "import sys, tarfile; t = tarfile.open(sys.argv[1], 'w:xz', preset=6); t.add(sys.argv[2], arcname='.'); t.close()" "$FILE" "$tmp"
    fi
    size=$(stat -c %s "$FILE")
    if [ "$size" -gt "$PART" ]; then
      split -b "$PART" -d -a 2 "$FILE" "$FILE."
      rm -f "$FILE"
      echo "llama_pack: $DIR -> $(ls "$FILE".[0-9][0-9] | tr '\n' ' ')($((size / 1048576)) MiB)"
    else
      echo "llama_pack: $DIR -> $FILE ($((size / 1024)) KiB)"
    fi
    ;;
  unpack)
    FILE="${2%.00}"; DIR="$3"
    if [ -f "$FILE" ]; then src="$FILE"
    elif [ -f "$FILE.00" ]; then src="$(mktemp)"; cat "$FILE".[0-9][0-9] > "$src"
    else die "neither $FILE nor $FILE.00 exists"; fi
    rm -rf "$DIR" && mkdir -p "$DIR"
    python3 -c "import sys, tarfile; kw = {'filter': 'tar'} if hasattr(tarfile, 'tar_filter') else {}; tarfile.open(sys.argv[1]).extractall(sys.argv[2], **kw)" "$src" "$DIR"
    [ "$src" = "$FILE" ] || rm -f "$src"
    [ -x "$DIR/llama-bench" ] || die "$FILE holds no llama-bench"
    ;;
  *) die "unknown command $1 (pack|unpack)";;
esac
