"""Every registered decoder family's tiny file through `explore` and the composite export (issue 32's goals):
Model Explorer's TFLite adapter (the `explore` extra) turns the int8 file into one graph per signature, the
weight-bits overlay names nodes of those graphs, `explore --summary` flags nothing a runtime may refuse, and
`--composites` keeps greedy tokens and logits within 1e-5 of the plain fp32 file.

    python benchmarks/explore_every_family.py     # ~10 min on 2 cores: three tiny conversions per family
"""

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
from model_explorer.builtin_tflite_flatbuffer_adapter import BuiltinTfliteFlatbufferAdapter

from edge_models import registry
from edge_models.convert import ExportSettings, convert
from edge_models.kinds.decoder import random_model
from edge_models.runtime.litert_model import LiteRTModel
from edge_models.tflite.reading import mapped
from edge_models.tflite.summary import summarize
from edge_models.tools.overlays import quantization_overlay

# One tiny model per distinct tiny config (presets of a family share theirs).
_first: dict[str, str] = {}
for _entry in registry().entries():
    _first.setdefault(repr(_entry.spec.tiny_config), _entry.spec.name)
CONVERTED_CASES = list(_first.values())
PLAIN = ExportSettings(prefill_lengths=(8,), kv_cache_len=32)
PROMPT = [3, 17, 5, 9, 11]


def greedy(path, steps=8):
    m = LiteRTModel(path, threads=1, windows=False)
    m.reset()
    m.prefill(PROMPT[:-1])
    tok, pos, toks, logits = PROMPT[-1], len(PROMPT) - 1, [], []
    for _ in range(steps):
        s = m.decode(tok, pos).reshape(-1)
        logits.append(s)
        tok, pos = int(s.argmax()), pos + 1
        toks.append(tok)
    return toks, np.stack(logits)


root = Path(tempfile.mkdtemp())
COLUMNS = ("family", "graphs", "overlay on graph nodes", "warnings", "norms marked", "same greedy", "max |dlogit|")
print(" | ".join(COLUMNS))
for name in CONVERTED_CASES:
    t = time.time()
    model = random_model(registry().get(name).tiny_config, seed=2)
    plain = convert(model, root / f"{name}.tflite", PLAIN, "int8", progress=None).path
    plain32 = convert(model, root / f"{name}-32.tflite", PLAIN, "fp32", progress=None).path
    marked = convert(
        model, root / f"{name}-c.tflite", dataclasses.replace(PLAIN, composites=True), "fp32", progress=None
    ).path
    collections = BuiltinTfliteFlatbufferAdapter().convert(str(plain), {})["graphCollections"]
    graphs = [g for c in collections for g in (c.graphs if hasattr(c, "graphs") else c["graphs"])]
    graphs = [g if isinstance(g, dict) else g.to_dict() for g in graphs]
    ids = [g["id"] for g in graphs]
    with mapped(plain) as data:
        summary = summarize(data)
        overlay = quantization_overlay(data)
    nodes = {g["id"]: {n["id"] if isinstance(n, dict) else n.id for n in g["nodes"]} for g in graphs}
    covered = all(set(v["results"]) <= nodes[k] for k, v in overlay.items()) and all(overlay[k]["results"] for k in ids)
    with mapped(marked) as data:
        comp = next(s for s in summarize(data).signatures if s.name == "decode").composites
    a, la = greedy(plain32)
    b, lb = greedy(marked)
    row = (name, ",".join(ids), covered, len(summary.warnings), comp.get("odml.rms_norm", 0), a == b)
    print(" | ".join(map(str, row)), f"| {np.abs(la - lb).max():.2e} ({time.time() - t:.0f} s)", flush=True)
