#!/usr/bin/env python3
"""HF transformers greedy reference outputs for a Qwen2 GGUF, computed on exactly the GGUF's weights.

The GGUF's tensors are read with gguf.GGUFReader (Q8_0 etc. dequantized with gguf.quants.dequantize),
mapped onto a float32 Qwen2ForCausalLM (config from the HF dir the GGUF was converted from,
attn_implementation="eager"), checked against the HF safetensors (F16 files must match the HF weights
rounded to f16 exactly; quantized files must be within the quantization error), then
`generate(do_sample=False, max_new_tokens=N)` is run for each prompt, raw and chat-templated.

Usage:
  .venv/bin/python tools/make_fixtures/hf_greedy.py models/tiny-f16.gguf \
      [--hf-dir models/hf/tiny] [--prompt "..."]... [--max-new-tokens 24] [--out models/tiny-f16.ref.json]

Output: JSON list of cases
  {gguf, prompt, chat, prompt_text, prompt_ids, generated_ids, last_logits_top5, max_new_tokens,
   eos_token_ids, stop_reason ("eos"|"length"), min_top2_margin, min_top2_margin_step,
   top2_margins (per generated step: reference top1 - top2 logit), generated_text, reference}
  generated_ids includes the EOS token if generation stopped on one.
  last_logits_top5: [[token_id, logit], ...] of the logits that produced the last generated token.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

DEFAULT_PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):",
]

LAYER_MAP = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
GLOBAL_MAP = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def hf_name(gguf_name: str) -> str:
    if gguf_name in GLOBAL_MAP:
        return GLOBAL_MAP[gguf_name]
    m = re.fullmatch(r"blk\.(\d+)\.(.+)", gguf_name)
    if m and m.group(2) in LAYER_MAP:
        return f"model.layers.{m.group(1)}.{LAYER_MAP[m.group(2)]}"
    raise KeyError(f"unmapped GGUF tensor {gguf_name}")


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    from gguf import GGUFValueType
    if f.types[0] == GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    if f.types[0] == GGUFValueType.ARRAY:
        return f  # caller handles
    return f.parts[f.data[0]].tolist()[0]


def read_gguf_tensors(path):
    """-> (reader, {gguf_name: (np.float32 array in PyTorch [out, in] layout, type name)})"""
    from gguf import GGUFReader, GGMLQuantizationType
    from gguf.quants import dequantize
    r = GGUFReader(path)
    out = {}
    for t in r.tensors:
        ttype = GGMLQuantizationType(t.tensor_type)
        if ttype in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            arr = np.asarray(t.data).astype(np.float32)
        else:
            arr = dequantize(t.data, ttype)
        # GGUF shape is ne (fastest dim first); numpy/PyTorch layout is reversed
        want = tuple(int(d) for d in reversed(list(t.shape)))
        arr = np.ascontiguousarray(arr.reshape(want))
        out[t.name] = (arr, ttype.name)
    return r, out


def load_hf_safetensors(hf_dir: Path):
    from safetensors.torch import load_file
    sd = {}
    for f in sorted(hf_dir.glob("*.safetensors")):
        sd.update(load_file(str(f)))
    return sd


def check_config(reader, cfg):
    arch = field(reader, "general.architecture")
    assert arch == "qwen2", f"general.architecture={arch}"
    checks = {
        "qwen2.block_count": cfg.num_hidden_layers,
        "qwen2.embedding_length": cfg.hidden_size,
        "qwen2.feed_forward_length": cfg.intermediate_size,
        "qwen2.attention.head_count": cfg.num_attention_heads,
        "qwen2.attention.head_count_kv": cfg.num_key_value_heads,
    }
    for k, v in checks.items():
        got = field(reader, k)
        assert got == v, f"{k}: gguf {got} != hf config {v}"
    eps = field(reader, "qwen2.attention.layer_norm_rms_epsilon")
    assert abs(eps - cfg.rms_norm_eps) <= 1e-6 * cfg.rms_norm_eps + 1e-12, (eps, cfg.rms_norm_eps)
    theta = field(reader, "qwen2.rope.freq_base")
    cfg_theta = getattr(cfg, "rope_theta", None)
    if cfg_theta is None:
        cfg_theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta")
    assert abs(theta - float(cfg_theta)) <= 1e-6 * float(cfg_theta), (theta, cfg_theta)


def eos_ids_from_gguf(reader):
    ids = []
    for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"):
        v = field(reader, k)
        if v is not None and v not in ids:
            ids.append(int(v))
    return ids


def load_model_from_gguf(gguf_path: Path, hf_dir: Path, verify: bool = True):
    """A float32 eager Qwen2ForCausalLM holding exactly the GGUF's (dequantized) weights, config
    from the HF dir. With `verify`, every tensor is checked against the HF safetensors: F16/F32
    tensors must equal the HF weight rounded to that type, quantized ones must be within the
    quantization error. Returns (model, GGUFReader)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    t0 = time.time()
    reader, tensors = read_gguf_tensors(str(gguf_path))
    ftype = field(reader, "general.file_type")
    print(f"[hf_greedy] read {len(tensors)} tensors from {gguf_path.name} (general.file_type={ftype}) "
          f"in {time.time()-t0:.1f}s", flush=True)

    cfg = Qwen2Config.from_pretrained(str(hf_dir))
    cfg._attn_implementation = "eager"
    check_config(reader, cfg)
    vocab_gguf = tensors["token_embd.weight"][0].shape[0]
    assert vocab_gguf == cfg.vocab_size, (vocab_gguf, cfg.vocab_size)
    has_output = "output.weight" in tensors
    assert has_output != bool(cfg.tie_word_embeddings), \
        f"output.weight present={has_output} but tie_word_embeddings={cfg.tie_word_embeddings}"

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg).float().eval()
    params = dict(model.named_parameters())  # tied lm_head is deduplicated away
    covered = set()
    hf_sd = load_hf_safetensors(hf_dir) if verify else None
    worst = {}
    with torch.no_grad():
        for gname, (arr, tname) in tensors.items():
            hname = hf_name(gname)
            if hname not in params:
                raise KeyError(f"{gname} -> {hname} not a model parameter")
            p = params[hname]
            assert tuple(p.shape) == arr.shape, (gname, tuple(p.shape), arr.shape)
            w = torch.from_numpy(arr)
            p.copy_(w)
            covered.add(hname)
            if hf_sd is not None:
                ref = hf_sd[hname].float()
                if tname == "F16":
                    diff = (w - ref.half().float()).abs().max().item()
                    assert diff == 0.0, f"{gname}: F16 GGUF differs from HF weight rounded to f16 by {diff}"
                elif tname == "F32":
                    diff = (w - ref).abs().max().item()
                    assert diff == 0.0, f"{gname}: F32 GGUF differs from HF weight by {diff}"
                else:
                    # Q8_0: per-32 block scale d = amax/127 (stored f16); error <= d/2 (+ f16 scale rounding)
                    blocks = ref.reshape(-1, 32)
                    bound = (blocks.abs().amax(dim=1, keepdim=True) / 127.0 * 0.51 + 1e-7).expand_as(blocks)
                    err = (w.reshape(-1, 32) - blocks).abs()
                    diff = err.max().item()
                    assert bool((err <= bound + blocks.abs() * 2e-3).all()), f"{gname}: quant error {diff} too large"
                worst[tname] = max(worst.get(tname, 0.0), diff)
    missing = set(params) - covered
    assert not missing, f"parameters not set from GGUF: {sorted(missing)}"
    if cfg.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    if hf_sd is not None:
        print(f"[hf_greedy] weights verified against HF safetensors in {hf_dir}: max |diff| by GGUF type "
              f"{ {k: float(f'{v:.3g}') for k, v in worst.items()} } (F16/F32 compared to the HF weight "
              f"rounded to that type)", flush=True)
    del hf_sd

    return model, reader


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf", type=Path)
    ap.add_argument("--hf-dir", type=Path, help="HF dir the GGUF came from (default <gguf dir>/hf/<name>)")
    ap.add_argument("--prompt", action="append", help="prompt (repeatable; default: 3 built-in prompts)")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--modes", default="raw,chat", help="comma list of raw,chat")
    ap.add_argument("--extra-eos", default="", help="comma list of extra stop token ids")
    ap.add_argument("--out", type=Path, help="output JSON (default <gguf without .gguf>.ref.json)")
    ap.add_argument("--no-verify", action="store_true", help="skip comparison with the HF safetensors")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer
    import transformers

    gguf_path = args.gguf.resolve()
    name = re.sub(r"-(f16|f32|bf16|q8_0|q4_0|q4_k_m|tq1_0|tq2_0)$", "", gguf_path.stem, flags=re.I)
    hf_dir = (args.hf_dir or gguf_path.parent / "hf" / name).resolve()
    out_path = args.out or gguf_path.with_suffix(".ref.json")
    prompts = args.prompt or DEFAULT_PROMPTS

    model, reader = load_model_from_gguf(gguf_path, hf_dir, verify=not args.no_verify)

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    eos_ids = eos_ids_from_gguf(reader)
    eos_ids += [int(x) for x in args.extra_eos.split(",") if x and int(x) not in eos_ids]
    pad_id = field(reader, "tokenizer.ggml.padding_token_id", eos_ids[0])

    cases = []
    modes = [m for m in args.modes.split(",") if m]
    for prompt in prompts:
        for mode in modes:
            chat = mode == "chat"
            if chat:
                text = tok.apply_chat_template([{"role": "user", "content": prompt}],
                                               tokenize=False, add_generation_prompt=True)
            else:
                text = prompt
            ids = tok(text, add_special_tokens=False)["input_ids"]
            if not chat:
                # raw prompts: the tokenizer's own BOS policy (Qwen: none) -- same as llama.cpp's add_bos=false
                ids = tok(text)["input_ids"]
            inp = torch.tensor([ids], dtype=torch.long)
            t1 = time.time()
            with torch.no_grad():
                out = model.generate(
                    input_ids=inp, attention_mask=torch.ones_like(inp), do_sample=False,
                    max_new_tokens=args.max_new_tokens, eos_token_id=eos_ids, pad_token_id=pad_id,
                    temperature=None, top_p=None, top_k=None,
                    output_logits=True, return_dict_in_generate=True,
                )
            gen = out.sequences[0, len(ids):].tolist()
            logits = [l[0].float() for l in out.logits]
            assert len(logits) == len(gen), (len(logits), len(gen))
            margins = []
            for step, l in enumerate(logits):
                top2 = torch.topk(l, 2)
                assert int(top2.indices[0]) == gen[step], "generate() did not pick the argmax"
                margins.append(float(top2.values[0] - top2.values[1]))
            top5 = torch.topk(logits[-1], 5)
            stop = "eos" if gen and gen[-1] in eos_ids else "length"
            case = dict(
                gguf=gguf_path.name, prompt=prompt, chat=chat, prompt_text=text,
                prompt_ids=ids, generated_ids=gen,
                last_logits_top5=[[int(i), float(v)] for i, v in zip(top5.indices, top5.values)],
                max_new_tokens=args.max_new_tokens, eos_token_ids=eos_ids, stop_reason=stop,
                min_top2_margin=min(margins), min_top2_margin_step=int(np.argmin(margins)),
                top2_margins=[round(m, 6) for m in margins],
                generated_text=tok.decode(gen),
            )
            cases.append(case)
            print(f"[hf_greedy] {'chat' if chat else 'raw '} {prompt!r}: {len(ids)} prompt tokens -> "
                  f"{gen} ({stop}, min top1-top2 margin {min(margins):.4g}) {time.time()-t1:.1f}s", flush=True)

    meta = dict(transformers=transformers.__version__, torch=torch.__version__)
    for c in cases:
        c["reference"] = meta
    out_path.write_text(json.dumps(cases, indent=1) + "\n")
    print(f"[hf_greedy] wrote {out_path} ({len(cases)} cases)", flush=True)


if __name__ == "__main__":
    main()
