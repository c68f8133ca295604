"""Export a skeleton's signatures in several processes at once and merge the flatbuffers.

Exporting is single-threaded Python (`torch.export`, decompositions, MLIR lowering), one signature after another:
on small models it is nearly all of a conversion. Each signature's graph is independent of the others, so worker
processes export disjoint groups of signatures and the results are merged into one model: subgraphs and signature
definitions appended, operator codes and buffers renumbered. The skeleton holds no large weights (they are signature
inputs), so the model is cheap to send to a worker; each worker costs a Python + torch + litert-torch process
(~1 GiB) and a few seconds to start.
"""

from __future__ import annotations

import pickle
import warnings
from concurrent.futures import ProcessPoolExecutor

from edge_models.convert.export import ExportSettings
from edge_models.layers import Decoder
from edge_models.runtime.memory import peak_rss_bytes

# The largest export worker's own peak resident memory in the last `export_in_parallel`, for the summary line.
worker_peak_rss_bytes = 0


def export_in_parallel(
    model: Decoder, settings: ExportSettings, shapes: dict[str, tuple[int, ...]], workers: int
) -> bytes:
    """The skeleton of `export_signatures`, its signatures shared round-robin between `workers` processes (this one
    included). `model`'s large parameters must already be detached."""
    import multiprocessing

    from edge_models.convert.streaming import export_signatures

    try:
        blob = pickle.dumps(model)
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        # A plugin's module holding a lambda or a closure cannot travel; export here, one signature at a time.
        warnings.warn(f"exporting in one process: the model cannot be sent to another ({e})", stacklevel=2)
        return export_signatures(model, settings, shapes)
    names = settings.signature_names()
    groups = [names[k::workers] for k in range(min(workers, len(names)))]
    # spawn: a forked child would inherit torch's thread pools and locks mid-use.
    global worker_peak_rss_bytes
    with ProcessPoolExecutor(len(groups) - 1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = [pool.submit(_export_group, blob, settings, shapes, group) for group in groups[1:]]
        parts = [export_signatures(model, settings, shapes, groups[0])]
        results = [job.result() for job in pending]
    worker_peak_rss_bytes = max((peak for _, peak in results), default=0)
    return merge_models(parts + [part for part, _ in results])


def _export_group(
    blob: bytes, settings: ExportSettings, shapes: dict[str, tuple[int, ...]], names: list[str]
) -> tuple[bytes, int]:
    from edge_models.convert.streaming import export_signatures

    return export_signatures(pickle.loads(blob), settings, shapes, names), peak_rss_bytes()


def merge_models(parts: list[bytes]) -> bytes:
    """One flatbuffer with every subgraph and signature of `parts` (each a converted model without control flow)."""
    from ai_edge_litert import schema_py_generated as schema

    from edge_models.convert.streaming import pack_model

    models = [schema.ModelT.InitFromPackedBuf(raw, 0) for raw in parts]
    for m, raw in zip(models, parts):
        if len(m.subgraphs) != len(m.signatureDefs or []):
            raise RuntimeError("cannot merge a model whose subgraphs are not one per signature")
        _inline_offset_buffers(m, raw)
    merged = models[0]
    for other in models[1:]:
        codes = [_find_or_add_code(merged, code) for code in other.operatorCodes]
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
        if buffer.offset is not None and buffer.offset > 1:
            buffer.data = np.frombuffer(raw, np.uint8, buffer.size, buffer.offset).copy()
            buffer.offset = buffer.size = 0


def _find_or_add_code(model, code) -> int:
    key = (code.builtinCode, code.deprecatedBuiltinCode, code.customCode, code.version)
    for k, mine in enumerate(model.operatorCodes):
        if (mine.builtinCode, mine.deprecatedBuiltinCode, mine.customCode, mine.version) == key:
            return k
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1
