"""Merge converted models into one: every subgraph and signature of each, one operator-code table, one buffer list.

Signatures exported by separate processes (`edge_models.convert.parallel`) come back as separate flatbuffers; their
graphs are independent, so merging appends subgraphs and signature definitions and renumbers operator codes and
buffers.
"""

from __future__ import annotations

from edge_models.tflite.operator_codes import code_index
from edge_models.tflite.packing import has_offset, pack_model


def merge_models(parts: list[bytes]) -> bytes:
    """One flatbuffer with every subgraph and signature of `parts` (each a converted model without control flow)."""
    from ai_edge_litert import schema_py_generated as schema

    models = [schema.ModelT.InitFromPackedBuf(raw, 0) for raw in parts]
    for m, raw in zip(models, parts):
        if len(m.subgraphs) != len(m.signatureDefs or []):
            raise RuntimeError("cannot merge a model whose subgraphs are not one per signature")
        _inline_offset_buffers(m, raw)
    merged = models[0]
    for other in models[1:]:
        codes = [code_index(merged, code) for code in other.operatorCodes]
        used = sorted({t.buffer for g in other.subgraphs for t in g.tensors} - {0})
        renumber = {0: 0}
        for index in used:
            merged.buffers.append(other.buffers[index])
            renumber[index] = len(merged.buffers) - 1
        first = len(merged.subgraphs)
        for graph in other.subgraphs:
            for tensor in graph.tensors:
                tensor.buffer = renumber[tensor.buffer]
            for op in graph.operators:
                op.opcodeIndex = codes[op.opcodeIndex]
            merged.subgraphs.append(graph)
        for sig in other.signatureDefs:
            sig.subgraphIndex += first
            merged.signatureDefs.append(sig)
    return pack_model(merged)


def _inline_offset_buffers(model, raw: bytes) -> None:
    """Buffers stored after the flatbuffer point into `raw`; keep their bytes inside the model instead."""
    import numpy as np

    for buffer in model.buffers:
        if has_offset(buffer):
            buffer.data = np.frombuffer(raw, np.uint8, buffer.size, buffer.offset).copy()
            buffer.offset = buffer.size = 0
