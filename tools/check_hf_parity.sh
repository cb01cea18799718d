#!/usr/bin/env bash
# Compare Metallic's greedy output with HF transformers' reference for a GGUF.
#
#   tools/check_hf_parity.sh MODEL.gguf REF.json [-- EXTRA_METALLIC_ARGS...]
#
# REF.json is written by tools/make_fixtures/hf_greedy.py: a JSON list of cases
#   {gguf, prompt, chat, prompt_ids, generated_ids, max_new_tokens, eos_token_ids, top2_margins, ...}
# For each case this runs
#   $METALLIC_BIN run MODEL.gguf [--no-chat-template] --temperature 0 --max-tokens N --output-format json PROMPT
# (--no-chat-template only for chat=false cases) and compares our JSON's `prompt_tokens` and
# `tokens` (fields: prompt_tokens, tokens, text, stop_reason) with the reference.
# Generated tokens are compared up to and including the stop token: if the reference stopped on
# EOS, ours must produce the same EOS (ours may also omit the EOS from `tokens` if its
# stop_reason says it stopped on EOS/stop).
#
# Env:
#   METALLIC_BIN      binary (default: <repo>/target/release/metallic)
#   TIE_TOLERANCE     if >0, a divergence at a step where the reference's top1-top2 logit margin
#                     was below this is reported as TIE (not counted as failure). Default 0: strict.
#   VERBOSE=1         print the command lines and our raw output
# Exit status: 0 if every case passed, 1 if any failed, 2 on usage errors.
set -uo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,22p' "$0"
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL="$1"
REF="$2"
shift 2
[ "${1:-}" = "--" ] && shift
export METALLIC_BIN="${METALLIC_BIN:-$ROOT/target/release/metallic}"
[ -f "$MODEL" ] || { echo "no such model: $MODEL" >&2; exit 2; }
[ -f "$REF" ] || { echo "no such reference: $REF" >&2; exit 2; }
[ -x "$METALLIC_BIN" ] || { echo "metallic binary not found/executable: $METALLIC_BIN (cargo build --release?)" >&2; exit 2; }

exec python3 - "$MODEL" "$REF" "$@" <<'PYEOF'
import json, os, subprocess, sys

model, ref_path, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
binary = os.environ["METALLIC_BIN"]
tie_tol = float(os.environ.get("TIE_TOLERANCE", "0") or 0)
verbose = os.environ.get("VERBOSE") == "1"

cases = json.load(open(ref_path))
if isinstance(cases, dict):
    cases = [cases]

def parse_json_output(out: str):
    out = out.strip()
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        pass
    # tolerate log lines around the JSON: take the last line (or trailing block) that parses
    lines = out.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        chunk = "\n".join(lines[i:])
        if chunk.lstrip().startswith("{"):
            try:
                return json.loads(chunk)
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object in output")

def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b)) if len(a) != len(b) else None

n_pass = n_fail = n_tie = 0
base = os.path.basename(model)
for idx, c in enumerate(cases):
    label = f"[{idx}] {'chat' if c.get('chat') else 'raw '} {c['prompt']!r}"
    if c.get("gguf") and c["gguf"] != base:
        print(f"note: reference case was made for {c['gguf']}, comparing with {base}")
    n = int(c.get("max_new_tokens") or len(c["generated_ids"]))
    cmd = [binary, "run", model]
    if not c.get("chat"):
        cmd.append("--no-chat-template")
    cmd += ["--temperature", "0", "--max-tokens", str(n), "--output-format", "json", *extra, c["prompt"]]
    if verbose:
        print("$ " + " ".join(repr(x) if " " in x or "\n" in x else x for x in cmd))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=float(os.environ.get("CASE_TIMEOUT", "600")))
    except subprocess.TimeoutExpired:
        print(f"FAIL {label}: timed out"); n_fail += 1; continue
    if verbose:
        print(p.stdout[-4000:]); print(p.stderr[-4000:], file=sys.stderr)
    if p.returncode != 0:
        print(f"FAIL {label}: exit {p.returncode}: {p.stderr.strip()[-800:]}"); n_fail += 1; continue
    try:
        ours = parse_json_output(p.stdout)
        our_prompt = [int(t) for t in ours["prompt_tokens"]]
        our_tokens = [int(t) for t in ours["tokens"]]
    except Exception as e:  # noqa: BLE001
        print(f"FAIL {label}: cannot parse output ({e}): {p.stdout.strip()[-800:]}"); n_fail += 1; continue

    ref_prompt = [int(t) for t in c["prompt_ids"]]
    ref_gen = [int(t) for t in c["generated_ids"]]
    eos = set(int(t) for t in c.get("eos_token_ids", []))
    problems = []
    if our_prompt != ref_prompt:
        d = first_diff(our_prompt, ref_prompt)
        problems.append(f"prompt_tokens differ at {d}: ours {our_prompt} vs ref {ref_prompt}"
                        + (f"; ref prompt text {c.get('prompt_text')!r}" if c.get("chat") else ""))
        status = "FAIL"
    else:
        cmp_ours = our_tokens
        # ours may leave the EOS out of `tokens` when it stopped on it
        if (ref_gen and ref_gen[-1] in eos and our_tokens == ref_gen[:-1]
                and str(ours.get("stop_reason", "")).lower() in ("eos", "stop", "end_of_sequence", "eog")):
            cmp_ours = ref_gen
        if cmp_ours == ref_gen:
            status = "PASS"
        else:
            d = first_diff(cmp_ours, ref_gen)
            margins = c.get("top2_margins") or []
            m = margins[d] if d is not None and d < len(margins) else None
            msg = (f"tokens differ at step {d}: ours {cmp_ours[d] if d < len(cmp_ours) else '<end>'} vs ref "
                   f"{ref_gen[d] if d < len(ref_gen) else '<end>'}"
                   + (f" (ref top1-top2 margin there {m:.3g})" if m is not None else "")
                   + f"\n      ours {cmp_ours} (stop_reason={ours.get('stop_reason')})\n      ref  {ref_gen} "
                   f"(stop_reason={c.get('stop_reason')})")
            problems.append(msg)
            status = "TIE" if (tie_tol > 0 and m is not None and m < tie_tol) else "FAIL"
    if status == "PASS":
        n_pass += 1
        print(f"PASS {label}: {len(ref_prompt)} prompt tokens, {len(ref_gen)} generated")
    elif status == "TIE":
        n_tie += 1
        print(f"TIE  {label}: " + "; ".join(problems))
    else:
        n_fail += 1
        print(f"FAIL {label}: " + "; ".join(problems))

print(f"{n_pass} passed, {n_fail} failed" + (f", {n_tie} skipped" if n_tie else ""))
sys.exit(1 if n_fail else 0)
PYEOF
