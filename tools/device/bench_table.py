#!/usr/bin/env python3
"""The table of tools/bench_vs_llamacpp.sh: Metallic against llama.cpp on the same GGUF files.

  bench_table.py MANIFEST.json --md OUT.md --json OUT.json

MANIFEST (written by bench_vs_llamacpp.sh):
  {"tests": ["pp512", "tg128"], "backends": ["cuda", "vulkan"], "bw": "bw.json" | null,
   "bw_gbs_override": null | float, "meta": {...},
   "models": [{"tag": "qwen2.5-0.5b-f16", "model": "qwen2.5-0.5b", "type": "f16", "gguf": PATH,
               "metallic": [RAW.json, ...], "llama": {"cuda": [RAW.json], "vulkan": [...]}}]}

Raw files: `metallic bench -o json` (a list of {"test", "avg_ts", "stddev_ts", ...}) and
`llama-bench -o json` (a list of {"n_prompt", "n_gen", "n_depth", "avg_ts", "stddev_ts", ...}).

Bandwidth floor (tg rows only): bytes read per generated token / measured device bandwidth, where
bytes = every tensor of the file, except that token_embd counts one row when the file has its own
output.weight (untied: the embedding is a lookup), plus the KV cache read at the test's mean context
(tgN from an empty context attends to (N+1)/2 positions on average; f16 K and V, as llama.cpp
keeps them). Bandwidth = the copy figure of tools/device/copy_bw.cu (bytes read + written / time).
"""
from __future__ import annotations

import argparse
import json
import mmap
import struct
import sys
from pathlib import Path

# ggml type id -> (block elements, block bytes)
GGML_TYPES = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    30: (1, 2),
}
GGML_TYPE_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
                   10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 30: "BF16"}


def read_gguf_tensors(path: str):
    """[(name, dims, type)] from a GGUF header (v2/v3), without reading the tensor data."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if m[:4] != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", m, 4)
        if version < 2:
            raise ValueError(f"{path}: GGUF v{version} unsupported")
        pos = 24
        scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

        def skip_value(t, pos):
            if t in scalar:
                return pos + struct.calcsize("<" + scalar[t])
            if t == 8:
                (n,) = struct.unpack_from("<Q", m, pos)
                return pos + 8 + n
            if t == 9:
                et, n = struct.unpack_from("<IQ", m, pos)
                pos += 12
                if et in scalar:
                    return pos + n * struct.calcsize("<" + scalar[et])
                for _ in range(n):
                    pos = skip_value(et, pos)
                return pos
            raise ValueError(f"{path}: bad metadata type {t}")

        for _ in range(n_kv):
            (klen,) = struct.unpack_from("<Q", m, pos)
            pos += 8 + klen
            (t,) = struct.unpack_from("<I", m, pos)
            pos = skip_value(t, pos + 4)
        tensors = []
        for _ in range(n_tensors):
            (nlen,) = struct.unpack_from("<Q", m, pos)
            name = m[pos + 8:pos + 8 + nlen].decode()
            pos += 8 + nlen
            (nd,) = struct.unpack_from("<I", m, pos)
            dims = struct.unpack_from(f"<{nd}Q", m, pos + 4)
            pos += 4 + 8 * nd
            (typ,) = struct.unpack_from("<I", m, pos)
            pos += 4 + 8
            tensors.append((name, dims, typ))
        return tensors


def tensor_bytes(dims, typ):
    if typ not in GGML_TYPES:
        raise ValueError(f"ggml type {typ} not known to bench_table.py")
    blk, size = GGML_TYPES[typ]
    n = 1
    for d in dims:
        n *= d
    return n // blk * size


def model_traffic(path: str):
    """Bytes read per decode step (weights) and KV bytes per cached position (f16 K+V)."""
    tensors = read_gguf_tensors(path)
    names = {t[0] for t in tensors}
    untied = "output.weight" in names
    weights = 0
    total = 0
    types = {}
    for name, dims, typ in tensors:
        b = tensor_bytes(dims, typ)
        total += b
        types[GGML_TYPE_NAMES.get(typ, str(typ))] = types.get(GGML_TYPE_NAMES.get(typ, str(typ)), 0) + b
        if name == "token_embd.weight" and untied:
            b = b // dims[1]  # one row per token
        weights += b
    kv_layers = [(n, d) for n, d, _ in tensors if n.startswith("blk.") and n.endswith(".attn_k.weight")]
    kv_dim = kv_layers[0][1][1] if kv_layers else 0
    kv_per_pos = len(kv_layers) * 2 * kv_dim * 2
    return dict(file_bytes=total, weight_bytes_per_token=weights, kv_bytes_per_position=kv_per_pos,
                tied=not untied, n_layers=len(kv_layers), kv_dim=kv_dim,
                bytes_by_type={k: v for k, v in sorted(types.items())})


def llama_test_name(r):
    if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0:
        name = f"pp{r['n_prompt']}"
    elif r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0:
        name = f"tg{r['n_gen']}"
    else:
        name = f"pp{r.get('n_prompt', 0)}+tg{r.get('n_gen', 0)}"
    if r.get("n_depth", 0):
        name += f" @ d{r['n_depth']}"
    return name


def load_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"bench_table: cannot read {path}: {e}", file=sys.stderr)
        return None


def pct(v):
    return f"{v:.0f}%" if v >= 10 else f"{v:.1f}%"


def fmt(v, sd=None):
    if v is None:
        return "–"
    s = f"{v:.2f}" if v < 1000 else f"{v:.1f}"
    if sd is not None:
        s += f" ± {sd:.2f}" if sd < 1000 else f" ± {sd:.1f}"
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("--md", required=True)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    man = json.loads(Path(args.manifest).read_text())
    tests = man["tests"]
    backends = man["backends"]

    bw = load_json(man["bw"]) if man.get("bw") and Path(man["bw"]).exists() else None
    bw_gbs = man.get("bw_gbs_override") or (bw or {}).get("copy_gbs")
    bw_src = ("--bw-gbs" if man.get("bw_gbs_override") else "copy_bw (CUDA device-to-device copy)") if bw_gbs else None

    raw = {"meta": man.get("meta", {}), "bandwidth": bw, "bandwidth_gbs_used": bw_gbs, "models": []}
    rows = []
    metallic_device = None
    llama_devices = {}
    for m in man["models"]:
        entry = {"tag": m["tag"], "gguf": m["gguf"], "metallic": [], "llama": {}}
        traffic = None
        if Path(m["gguf"]).exists():
            try:
                traffic = model_traffic(m["gguf"])
            except (OSError, ValueError) as e:
                print(f"bench_table: {e}", file=sys.stderr)
        entry["traffic"] = traffic
        met = {}
        for f in m.get("metallic", []):
            data = load_json(f)
            if not isinstance(data, list):
                continue
            entry["metallic"].append({"file": Path(f).name, "rows": data})
            for r in data:
                met[r["test"]] = r
                metallic_device = metallic_device or r.get("device")
        lla = {}
        for b in backends:
            lla[b] = {}
            entry["llama"][b] = []
            for f in m.get("llama", {}).get(b, []):
                data = load_json(f)
                if not isinstance(data, list):
                    continue
                entry["llama"][b].append({"file": Path(f).name, "rows": data})
                for r in data:
                    lla[b][llama_test_name(r)] = r
                    llama_devices.setdefault(b, (r.get("gpu_info"), r.get("backends"), r.get("build_commit")))
        raw["models"].append(entry)
        for t in tests:
            row = {"model": m["model"], "type": m["type"].upper(), "test": t}
            mr = met.get(t)
            row["metallic"] = (mr["avg_ts"], mr["stddev_ts"]) if mr else None
            for b in backends:
                lr = lla[b].get(t)
                row[b] = (lr["avg_ts"], lr["stddev_ts"]) if lr else None
            row["floor"] = None
            if t.startswith("tg") and traffic and bw_gbs:
                n = int(t[2:].split()[0])
                ctx = (n + 1) / 2
                per_tok = traffic["weight_bytes_per_token"] + traffic["kv_bytes_per_position"] * ctx
                row["floor"] = bw_gbs * 1e9 / per_tok
                row["bytes_per_token"] = per_tok
            rows.append(row)

    names = {"cuda": "llama.cpp CUDA", "vulkan": "llama.cpp Vulkan"}
    hdr = ["model", "type", "test", "Metallic t/s"]
    for b in backends:
        hdr += [f"{names.get(b, 'llama.cpp ' + b)} t/s", f"Metallic / {b.upper() if b == 'cuda' else b.capitalize()}"]
    hdr += ["floor t/s", "Metallic % floor"] + [f"{b.upper() if b == 'cuda' else b.capitalize()} % floor" for b in backends]
    lines = ["| " + " | ".join(hdr) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(hdr) - 3)) + "|"]
    for r in rows:
        cells = [r["model"], r["type"], r["test"], fmt(*r["metallic"]) if r["metallic"] else "–"]
        for b in backends:
            cells.append(fmt(*r[b]) if r[b] else "–")
            cells.append(f"**{r['metallic'][0] / r[b][0]:.2f}×**" if r["metallic"] and r[b] and r[b][0] else "–")
        if r["floor"]:
            cells.append(fmt(r["floor"]))
            cells.append(pct(100 * r['metallic'][0] / r['floor']) if r["metallic"] else "–")
            for b in backends:
                cells.append(pct(100 * r[b][0] / r['floor']) if r[b] else "–")
        else:
            cells += ["–"] * (2 + len(backends))
        lines.append("| " + " | ".join(cells) + " |")
    raw["table"] = rows

    meta = man.get("meta", {})
    out = [f"# Metallic vs llama.cpp ({meta.get('date', '')})", ""]
    if meta.get("gpu"):
        out.append(f"- GPU: {meta['gpu']}")
    out.append(f"- Metallic: `{meta.get('metallic_cmd', 'metallic bench')}`; device: {metallic_device or '?'}")
    for b in backends:
        d = llama_devices.get(b)
        info = f"; device: {d[0]}, backends {d[1]}, build {d[2]}" if d else ""
        out.append(f"- llama.cpp {b}: `{meta.get('llama_cmd', 'llama-bench')}`{info}"
                   + (f"; {meta['llama_build'][b]}" if meta.get("llama_build", {}).get(b) else ""))
    if bw_gbs:
        extra = f", read-only {bw['read_gbs']:.0f} GB/s" if bw and bw.get("read_gbs") else ""
        out.append(f"- device bandwidth: {bw_gbs:.0f} GB/s copy ({bw_src}{extra})")
    else:
        out.append("- device bandwidth: not measured (no nvcc / --bw-gbs): floor columns empty")
    out.append("- t/s: mean ± sd over the repetitions; ratio = Metallic / llama.cpp (>1: Metallic faster); "
               "floor = bandwidth / bytes read per token (weights + f16 KV at the mean context)")
    for e in raw["models"]:
        t = e["traffic"]
        if t:
            out.append(f"- {e['tag']}: file {t['file_bytes'] / 1e6:.1f} MB, read per token {t['weight_bytes_per_token'] / 1e6:.1f} MB "
                       f"+ KV {t['kv_bytes_per_position'] / 1e3:.1f} kB/position ({'tied' if t['tied'] else 'untied'} output, "
                       f"{t['n_layers']} layers)")
    out += ["", *lines, ""]
    missing = [f"{r['model']}-{r['type']} {r['test']}" for r in rows if not r["metallic"] or any(not r[b] for b in backends)]
    if missing:
        out.append(f"Missing results: {', '.join(missing)} (see the logs)")
    Path(args.md).write_text("\n".join(out) + "\n")
    Path(args.json).write_text(json.dumps(raw, indent=1) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
