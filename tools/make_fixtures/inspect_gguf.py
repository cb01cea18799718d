#!/usr/bin/env python3
"""Print a GGUF's metadata keys (long arrays summarised) and tensors (name, type, shape)."""
import sys
import numpy as np
from gguf import GGUFReader, GGUFValueType


def field_value(f):
    t = f.types[0] if f.types else None
    if t == GGUFValueType.ARRAY:
        n = len(f.data)
        sub = f.types[-1]
        if sub == GGUFValueType.STRING:
            vals = [bytes(f.parts[i]).decode("utf-8", "replace") for i in f.data[:5]]
        else:
            vals = [f.parts[i].tolist()[0] for i in f.data[:5]]
        return f"[{sub.name} x {n}] {vals}{' ...' if n > 5 else ''}"
    if t == GGUFValueType.STRING:
        s = bytes(f.parts[f.data[0]]).decode("utf-8", "replace")
        return repr(s if len(s) < 120 else s[:120] + f"... ({len(s)} chars)")
    return f.parts[f.data[0]].tolist()[0] if len(f.parts[f.data[0]]) == 1 else f.parts[f.data[0]].tolist()


def main():
    for path in sys.argv[1:]:
        r = GGUFReader(path)
        print(f"== {path}")
        for k, f in r.fields.items():
            if k.startswith("GGUF."):
                continue
            print(f"  {k} = {field_value(f)}")
        print(f"  -- {len(r.tensors)} tensors")
        for t in r.tensors:
            print(f"  {t.name:32s} {t.tensor_type.name:6s} {list(map(int, t.shape))}")


if __name__ == "__main__":
    main()
