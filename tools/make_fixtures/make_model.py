#!/usr/bin/env python3
"""Build a random-init Qwen2ForCausalLM with HF transformers, save it as an HF dir with the real
Qwen tokenizer, and convert it to GGUF (F16 and Q8_0) with llama.cpp's convert_hf_to_gguf.py.

Works with transformers 4.x and 5.x.

Examples:
  .venv/bin/python tools/make_fixtures/make_model.py --preset tiny
  .venv/bin/python tools/make_fixtures/make_model.py --preset tiny-untied --seed 7
  .venv/bin/python tools/make_fixtures/make_model.py --config my.json --name foo --dtype bfloat16
  .venv/bin/python tools/make_fixtures/make_model.py --preset tiny --hidden-size 128 --name tiny128

Outputs (defaults; see flags):
  <hf-root>/<name>/          config.json, model.safetensors, tokenizer.json, tokenizer_config.json, ...
  <out-dir>/<name>-f16.gguf
  <out-dir>/<name>-q8_0.gguf
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Values follow the HF config.json field names (Qwen2Config).
QWEN_DEFAULTS = dict(
    vocab_size=151936,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    bos_token_id=151643,   # <|endoftext|>
    eos_token_id=151645,   # <|im_end|>  (as in Qwen2.5-*-Instruct config.json)
    hidden_act="silu",
    attention_dropout=0.0,
    use_sliding_window=False,
)

PRESETS: dict[str, dict] = {
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
        _dtype="float32",
    ),
    "tiny-untied": dict(
        hidden_size=64, intermediate_size=160, num_hidden_layers=3,
        num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=False,
        rope_theta=10000.0, rms_norm_eps=1e-5,
        _dtype="float32",
    ),
    # Exact values of the published Qwen/Qwen2.5-0.5B-Instruct config.json
    "qwen2.5-0.5b": dict(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
        tie_word_embeddings=True, rope_theta=1000000.0, rms_norm_eps=1e-6,
        max_position_embeddings=32768, max_window_layers=21, sliding_window=32768,
        _dtype="bfloat16",
    ),
    # Published Qwen/Qwen2.5-7B-Instruct config.json values
    "qwen2.5-7b": dict(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
        num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
        tie_word_embeddings=False, rope_theta=1000000.0, rms_norm_eps=1e-6,
        max_position_embeddings=32768, max_window_layers=28, sliding_window=131072,
        _dtype="bfloat16",
    ),
}

CONFIG_KEYS = [
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "vocab_size", "tie_word_embeddings", "rope_theta", "rms_norm_eps",
    "max_position_embeddings",
]


def find_first(cands):
    for c in cands:
        if c and Path(c).exists():
            return Path(c)
    return None


def default_converter():
    return find_first([
        os.environ.get("METALLIC_CONVERTER"),
        HERE / "llama.cpp" / "convert_hf_to_gguf.py",                # .devkit layout
        HERE.parent.parent / "work" / "llama.cpp" / "convert_hf_to_gguf.py",  # repo layout
    ])


def default_tokenizer_dir():
    for c in [os.environ.get("METALLIC_TOKENIZER_DIR"), HERE / "tokenizer",
              HERE.parent.parent / "work" / "tokenizer" / "qwen"]:
        if c and has_tokenizer(c):
            return Path(c)
    return None


def read_tokenizer_json(tok_dir: Path) -> bytes:
    """tokenizer.json, or tokenizer.json.gz (the .devkit ships it compressed)."""
    plain = Path(tok_dir) / "tokenizer.json"
    if plain.exists():
        return plain.read_bytes()
    import gzip
    return gzip.decompress((Path(tok_dir) / "tokenizer.json.gz").read_bytes())


def has_tokenizer(tok_dir) -> bool:
    return tok_dir is not None and ((Path(tok_dir) / "tokenizer.json").exists()
                                    or (Path(tok_dir) / "tokenizer.json.gz").exists())


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), help="base config preset")
    p.add_argument("--config", type=Path, help="JSON file with HF Qwen2 config.json values (overrides preset)")
    for k in CONFIG_KEYS:
        typ = {"tie_word_embeddings": None, "rope_theta": float, "rms_norm_eps": float}.get(k, int)
        flag = "--" + k.replace("_", "-")
        if typ is None:
            p.add_argument(flag, choices=["true", "false"], default=None)
        else:
            p.add_argument(flag, type=typ, default=None)
    p.add_argument("--name", help="model name (default: preset name)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="safetensors dtype (preset default)")
    p.add_argument("--init-std", type=float, default=0.0,
                   help="std of linear weights; 0 (default) = 1/sqrt(fan_in), so every layer matters")
    p.add_argument("--embed-std", type=float, default=0.1, help="std of token_embd (and of lm_head when tied)")
    p.add_argument("--bias-std", type=float, default=0.3, help="std of q/k/v biases (HF init would make them 0)")
    p.add_argument("--norm-std", type=float, default=0.1, help="norm weights = 1 + N(0, norm-std)")
    p.add_argument("--device", default="cpu", help="torch device used for init (cpu|cuda); weights differ per device")
    p.add_argument("--fast-init", action="store_true",
                   help="benchmark models: allocate directly in --dtype (no float32 copy, no HF init) and fill "
                        "each tensor by tiling one seeded N(0,1) pool of 2^24+ values at a random offset, scaled "
                        "as above (~1 GB/s per core instead of ~0.05; same scales, not the same values)")
    p.add_argument("--out-dir", type=Path, default=HERE.parent.parent / "models")
    p.add_argument("--hf-root", type=Path, default=None, help="where the HF dir goes (default <out-dir>/hf)")
    p.add_argument("--converter", type=Path, default=None, help="path to convert_hf_to_gguf.py")
    p.add_argument("--tokenizer-dir", type=Path, default=None, help="dir with tokenizer.json + tokenizer_config.json")
    p.add_argument("--outtypes", default="f16,q8_0", help="comma list of converter --outtype values ('' = none)")
    p.add_argument("--parallel-convert", action="store_true", help="run the conversions concurrently")
    p.add_argument("--skip-hf", action="store_true", help="reuse an existing HF dir, only convert")
    return p.parse_args()


def build_config_values(args):
    vals = dict(QWEN_DEFAULTS)
    dtype = "float32"
    if args.preset:
        pre = dict(PRESETS[args.preset])
        dtype = pre.pop("_dtype", dtype)
        vals.update(pre)
    if args.config:
        vals.update(json.loads(args.config.read_text()))
    for k in CONFIG_KEYS:
        v = getattr(args, k)
        if v is not None:
            vals[k] = (v == "true") if k == "tie_word_embeddings" else v
    missing = [k for k in CONFIG_KEYS if k not in vals]
    if missing:
        sys.exit(f"missing config values: {missing} (use --preset, --config or flags)")
    if args.dtype:
        dtype = args.dtype
    # drop keys that are not HF config fields
    vals = {k: v for k, v in vals.items() if not k.startswith("_")}
    return vals, dtype


def make_hf_config(vals):
    from transformers import Qwen2Config
    cfg_vals = dict(vals)
    rope_theta = cfg_vals.pop("rope_theta")
    cfg_vals["initializer_range"] = 0.02
    import inspect
    if "rope_parameters" in inspect.signature(Qwen2Config.__init__).parameters:
        # transformers 5.x: rope parameters live in `rope_parameters`
        cfg = Qwen2Config(rope_parameters={"rope_type": "default", "rope_theta": rope_theta}, **cfg_vals)
    else:
        cfg = Qwen2Config(rope_theta=rope_theta, **cfg_vals)
    # sanity: the effective rope theta as the model will see it
    eff = getattr(cfg, "rope_theta", None)
    if eff is None:
        eff = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta")
    assert float(eff) == float(rope_theta), (eff, rope_theta)
    cfg.architectures = ["Qwen2ForCausalLM"]
    return cfg


def random_init_(model, seed, std, embed_std, bias_std, norm_std, device):
    """Deterministic (per seed and device) init of every parameter, in sorted-name order.
    HF's own init (N(0, 0.02) weights, zero biases, unit norms) makes a tiny tied model just repeat
    its last input token (the embedding dominates the residual stream), so instead: linear weights
    N(0, 1/fan_in) (or N(0, std^2)), embeddings N(0, embed_std^2), q/k/v biases N(0, bias_std^2),
    RMSNorm weights 1 + N(0, norm_std^2)."""
    import math
    import torch
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("norm.weight"):
                p.normal_(0.0, norm_std, generator=gen).add_(1.0)
            elif name.endswith(".bias"):
                p.normal_(0.0, bias_std, generator=gen)
            elif "embed_tokens" in name:
                p.normal_(0.0, embed_std, generator=gen)
            else:
                assert p.dim() == 2, name
                p.normal_(0.0, std if std > 0 else 1.0 / math.sqrt(p.shape[1]), generator=gen)


def fast_init_(model, seed, std, embed_std, bias_std, norm_std):
    """Like random_init_ (same per-tensor scales, sorted-name order), but every tensor is a slice of
    one seeded N(0,1) pool, tiled from a random offset: memory speed instead of the generator's."""
    import math
    import torch
    gen = torch.Generator().manual_seed(seed)
    pool_n = (1 << 24) + 4099   # odd length: consecutive rows start at different pool phases
    with torch.no_grad():
        pools = {}
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if p.dtype not in pools:
                pools[p.dtype] = torch.randn(pool_n, generator=gen).to(p.dtype)
            pool = pools[p.dtype]
            flat = p.data.view(-1)
            n = flat.numel()
            off = int(torch.randint(0, pool_n, (1,), generator=gen))
            i = 0
            while i < n:
                k = min(pool_n - off, n - i)
                flat[i:i + k].copy_(pool[off:off + k])
                i += k
                off = 0
            if name.endswith("norm.weight"):
                p.mul_(norm_std).add_(1.0)
            elif name.endswith(".bias"):
                p.mul_(bias_std)
            elif "embed_tokens" in name:
                p.mul_(embed_std)
            else:
                assert p.dim() == 2, name
                p.mul_(std if std > 0 else 1.0 / math.sqrt(p.shape[1]))


def patch_config_json(hf_dir: Path, vals: dict, dtype: str):
    """Make config.json readable by both transformers 4.x/5.x and the converter: keep the
    legacy top-level rope_theta next to 5.x's rope_parameters, and both dtype spellings."""
    p = hf_dir / "config.json"
    c = json.loads(p.read_text())
    c["rope_theta"] = vals["rope_theta"]
    rp = c.get("rope_parameters")
    if isinstance(rp, dict):
        rp["rope_theta"] = vals["rope_theta"]
    c["torch_dtype"] = dtype
    c["dtype"] = dtype
    for k in CONFIG_KEYS:
        if k != "rope_theta":
            c[k] = vals[k]
    c["architectures"] = ["Qwen2ForCausalLM"]
    p.write_text(json.dumps(c, indent=2, sort_keys=True) + "\n")


def build_hf(args, vals, dtype, hf_dir: Path, tok_dir: Path):
    import torch
    from transformers import Qwen2ForCausalLM
    import transformers

    t0 = time.time()
    cfg = make_hf_config(vals)
    if args.fast_init:
        # Built on the meta device (no memory, no HF init), then allocated uninitialised in the
        # target dtype; to_empty unties shared parameters, so tie them again.
        with torch.device("meta"):
            model = Qwen2ForCausalLM(cfg)
        model = model.to(getattr(torch, dtype)).to_empty(device="cpu")
        model.tie_weights()
        model.eval()
        fast_init_(model, args.seed, args.init_std, args.embed_std, args.bias_std, args.norm_std)
    else:
        with torch.device(args.device):
            model = Qwen2ForCausalLM(cfg)
        model.eval()
        random_init_(model, args.seed, args.init_std, args.embed_std, args.bias_std, args.norm_std, args.device)
    if cfg.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "tie failed"
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[make_model] built {n_params/1e6:.2f}M params (transformers {transformers.__version__}, "
          f"torch {torch.__version__}) in {time.time()-t0:.1f}s", flush=True)

    t0 = time.time()
    if hf_dir.exists():
        shutil.rmtree(hf_dir)
    hf_dir.mkdir(parents=True)
    model = model.to(getattr(torch, dtype))
    model.save_pretrained(hf_dir)
    del model
    patch_config_json(hf_dir, vals, dtype)
    (hf_dir / "tokenizer.json").write_bytes(read_tokenizer_json(tok_dir))
    shutil.copy(tok_dir / "tokenizer_config.json", hf_dir / "tokenizer_config.json")
    (hf_dir / "metallic_fixture.json").write_text(json.dumps(dict(
        preset=args.preset, seed=args.seed, dtype=dtype, init_std=args.init_std or "1/sqrt(fan_in)",
        embed_std=args.embed_std, bias_std=args.bias_std, **({"fast_init": True} if args.fast_init else {}),
        norm_std=args.norm_std, init_device=args.device, config=vals,
        transformers=transformers.__version__, torch=torch.__version__,
    ), indent=2) + "\n")
    print(f"[make_model] saved HF dir {hf_dir} ({dtype}) in {time.time()-t0:.1f}s", flush=True)


def convert(converter: Path, hf_dir: Path, out_dir: Path, name: str, outtypes, parallel: bool):
    procs = []
    outs = []
    for ot in outtypes:
        out = out_dir / f"{name}-{ot}.gguf"
        # written under a temporary name and renamed once complete: a killed run leaves no
        # truncated OUT file behind
        part = out_dir / f".{name}-{ot}.gguf.part"
        cmd = [sys.executable, str(converter), str(hf_dir), "--outtype", ot, "--outfile", str(part)]
        print("[make_model] $ " + " ".join(cmd), flush=True)
        log = open(out_dir / f".{name}-{ot}.convert.log", "w")
        t0 = time.time()
        pr = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        procs.append((pr, ot, out, part, log, t0))
        if not parallel:
            pr.wait()
    rc = 0
    for pr, ot, out, part, log, t0 in procs:
        pr.wait()
        log.close()
        if pr.returncode == 0:
            part.replace(out)
        if pr.returncode != 0:
            rc = pr.returncode
            print(f"[make_model] converter failed for {ot}; log:", flush=True)
            print(Path(log.name).read_text()[-4000:])
        else:
            print(f"[make_model] wrote {out} ({out.stat().st_size/1e6:.1f} MB) in {time.time()-t0:.1f}s", flush=True)
            outs.append(out)
    if rc:
        sys.exit(rc)
    return outs


def main():
    args = parse_args()
    vals, dtype = build_config_values(args)
    name = args.name or args.preset or (args.config.stem if args.config else None)
    if not name:
        sys.exit("--name required")
    out_dir = args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_root = (args.hf_root or out_dir / "hf").resolve()
    hf_dir = hf_root / name
    tok_dir = args.tokenizer_dir or default_tokenizer_dir()
    if not has_tokenizer(tok_dir):
        sys.exit("tokenizer dir not found (run tools/make_fixtures/setup.sh or pass --tokenizer-dir)")
    tok_vocab = json.loads(read_tokenizer_json(Path(tok_dir)))
    max_id = max([*tok_vocab["model"]["vocab"].values(), *(t["id"] for t in tok_vocab.get("added_tokens", []))])
    if vals["vocab_size"] <= max_id:
        sys.exit(f"vocab_size {vals['vocab_size']} must exceed the tokenizer's max id {max_id}")
    print(f"[make_model] {name}: {json.dumps(vals)} dtype={dtype} seed={args.seed}", flush=True)
    t_all = time.time()
    if not args.skip_hf:
        build_hf(args, vals, dtype, hf_dir, Path(tok_dir))
    outtypes = [o for o in args.outtypes.split(",") if o]
    if outtypes:
        converter = args.converter or default_converter()
        if converter is None or not Path(converter).exists():
            sys.exit("convert_hf_to_gguf.py not found (run setup.sh or pass --converter)")
        convert(Path(converter), hf_dir, out_dir, name, outtypes, args.parallel_convert)
    print(f"[make_model] total {time.time()-t_all:.1f}s", flush=True)


if __name__ == "__main__":
    main()
