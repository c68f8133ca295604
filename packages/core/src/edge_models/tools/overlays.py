"""Per-node data for Model Explorer (its `node_data` JSON): numbers on the ops of each signature's graph.

Model Explorer's TFLite adapter names each signature's graph after the signature and each op's node after its
index in the subgraph, so an overlay is `{signature: {"results": {"<op index>": {"value": v}}, ...}}`. Values must
be numbers: a weight's scheme is shown as its bits per element.
"""

from __future__ import annotations

import json
import mmap

from edge_models.tflite.parts import HEAD, block_part, op_parts
from edge_models.tflite.reading import flat_model
from edge_models.tflite.summary import operator_name, scheme_bits, weight_uses

# Few bits green, 32 red: what a reader looks for is the weight left in float.
_BITS_COLOURS = [
    {"value": 4, "bgColor": "#a5d6a7"},
    {"value": 8, "bgColor": "#fff59d"},
    {"value": 16, "bgColor": "#ffcc80"},
    {"value": 32, "bgColor": "#ef9a9a"},
]
_LOW_TO_HIGH = [
    {"stop": 0, "bgColor": "#e8f5e9"},
    {"stop": 0.5, "bgColor": "#fff59d"},
    {"stop": 1, "bgColor": "#e53935"},
]


def _signatures(model) -> dict[str, int]:
    return {
        model.SignatureDefs(k).SignatureKey().decode(): model.SignatureDefs(k).SubgraphIndex()
        for k in range(model.SignatureDefsLength())
    }


def _graph_data(name: str, results: dict[int, float], **colours) -> dict:
    return {"name": name, "results": {str(o): {"value": v} for o, v in results.items()}, **colours}


def quantization_overlay(tflite: bytes | mmap.mmap) -> dict:
    """Bits per stored element of the weight each op takes (a DEQUANTIZE and the ops fed by it both show it)."""
    model = flat_model(tflite)
    data = {}
    for signature, subgraph in _signatures(model).items():
        graph = model.Subgraphs(subgraph)
        results: dict[int, float] = {}
        dequantized: dict[int, int] = {}  # tensor a DEQUANTIZE gives -> bits of what it read
        for use in weight_uses(model, subgraph):
            bits = scheme_bits(use.scheme)
            results[use.operator] = min(bits, results.get(use.operator, bits))
            op = graph.Operators(use.operator)
            if use.dequantized:
                dequantized[op.Outputs(0)] = bits
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            taken = [dequantized[op.Inputs(i)] for i in range(op.InputsLength()) if op.Inputs(i) in dequantized]
            if taken:
                results[o] = min(taken + [results.get(o, 32)])
        data[signature] = _graph_data("weight bits", results, thresholds=_BITS_COLOURS)
    return data


def part_overlay(tflite: bytes | mmap.mmap, name: str, values: dict[str, dict[str, float]]) -> dict:
    """`values[signature][part]` on every op of that part (`tflite.parts.op_parts`); signatures or parts without a
    value are left out."""
    model = flat_model(tflite)
    data = {}
    for signature, subgraph in _signatures(model).items():
        if signature not in values:
            continue
        by_part = values[signature]
        parts = op_parts(model, subgraph)
        results = {o: by_part[p] for o, p in enumerate(parts) if p in by_part}
        data[signature] = _graph_data(name, results, gradient=_LOW_TO_HIGH)
    return data


def profile_overlay(tflite: bytes | mmap.mmap, profile: dict) -> dict:
    """Milliseconds of each op's part, from `edge-models profile --json` (`Profile.to_json`)."""
    values = {s["signature"]: {p["part"]: round(p["ms"], 4) for p in s["parts"]} for s in profile["signatures"]}
    return part_overlay(tflite, "part time (ms)", values)


def debug_overlays(tflite: bytes | mmap.mmap, rows) -> dict[str, dict]:
    """From `tools.debug.compare_blocks`: each block's relative error, and how much a block grew the error it was
    given (its error over the previous block's): a broken block is the worst node of the second, however large the
    error it passes on to the blocks after it. The logits' error goes on the head."""
    relative: dict[str, float] = {}
    growth: dict[str, float] = {}
    previous = 0.0
    for row in rows:
        if row.block < 0:
            relative[HEAD] = row.relative
            continue
        relative[block_part(row.block)] = row.relative
        growth[block_part(row.block)] = row.relative / max(previous, 1e-6)
        previous = row.relative
    model = flat_model(tflite)
    signatures = list(_signatures(model))
    return {
        "relative error vs PyTorch": part_overlay(tflite, "relative error", {s: relative for s in signatures}),
        "error growth (x previous block)": part_overlay(tflite, "error growth", {s: growth for s in signatures}),
    }


def overlay_json(overlay: dict) -> str:
    return json.dumps(overlay)


def op_labels(tflite: bytes | mmap.mmap, signature: str) -> list[str]:
    """Each op's operator name in `signature`, in order (what Model Explorer labels its nodes, lower-cased)."""
    model = flat_model(tflite)
    graph = model.Subgraphs(_signatures(model)[signature])
    return [operator_name(model, graph.Operators(o)) for o in range(graph.OperatorsLength())]
