"""Leave signatures out of a converted file, and the weights only they read.

Phone bundles carry the signatures LiteRT-LM and MediaPipe run; `shortlist_<K>` signatures are our desktop
runtime's, and their int4 copy of the LM head is a third of Gemma 3 270M's file. Every kept signature's ops and the
weights they read are unchanged: only subgraphs, signature entries and buffers go, and weights are copied, not decoded.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from edge_models.io.files import write_atomically
from edge_models.tflite.packing import has_offset, repacked, shared_quantization
from edge_models.tflite.reading import flat_model, mapped, signature_names
from edge_models.tflite.tensors_read import tensors_read

# Options that name other subgraphs (control flow): removing subgraphs would renumber them, so such files are refused.
_SUBGRAPH_OPTIONS = ("IfOptions", "WhileOptions", "CallOnceOptions", "CallOptions")


class PruneError(ValueError):
    pass


def drop_signatures(source: str | Path, output: str | Path, names: Iterable[str]) -> int:
    """Write `source` without the signatures `names` (and every buffer only they use) to `output`, atomically;
    return the bytes saved."""
    from ai_edge_litert import schema_py_generated as schema

    source, output, names = Path(source), Path(output), set(names)
    if source.resolve() == output.resolve():
        raise PruneError(f"{output}: would overwrite the file it is read from")
    data = mapped(source)  # not closed here: the parsed model's arrays point into the map until they are collected
    model = schema.ModelT.InitFromPackedBuf(data, 0)  # offset buffers stay in the file: only the graph is read
    flat = flat_model(data)
    share_quantization(model, flat)
    signatures = model.signatureDefs or []
    unknown = names - {s.signatureKey.decode() for s in signatures}
    if unknown:
        raise PruneError(f"{source}: no signature {', '.join(sorted(unknown))}")
    gone = {s.subgraphIndex for s in signatures if s.signatureKey.decode() in names}
    kept = [i for i in range(len(model.subgraphs)) if i not in gone]
    for graph in (model.subgraphs[i] for i in kept):
        for op in graph.operators or []:
            options = type(op.builtinOptions).__name__.removesuffix("T")
            if options in _SUBGRAPH_OPTIONS:
                raise PruneError(f"{source}: control flow between subgraphs ({options}) is not pruned")
    renumbered = {old: new for new, old in enumerate(kept)}
    model.subgraphs = [model.subgraphs[i] for i in kept]
    model.signatureDefs = [s for s in signatures if s.signatureKey.decode() not in names]
    for s in model.signatureDefs:
        s.subgraphIndex = renumbered[s.subgraphIndex]

    # Weights reach every signature as tensors, read only where an op reads them.
    read = [tensors_read(flat, i) for i in kept]
    used = {0} | {m.buffer for m in model.metadata or []}
    used |= {graph.tensors[t].buffer for graph, ts in zip(model.subgraphs, read) for t in ts}
    for graph, ts in zip(model.subgraphs, read):
        for t, tensor in enumerate(graph.tensors or []):
            if t not in ts and tensor.buffer not in used:
                tensor.buffer = 0
    copies: list[tuple[object, int]] = []  # (buffer, its offset in source)
    for index, buffer in enumerate(model.buffers):
        if index not in used:
            model.buffers[index] = schema.BufferT()  # indices stay: tensors name buffers by position
        elif has_offset(buffer):
            copies.append((buffer, buffer.offset))
    write = repacked(model, copies, data)

    def check(path: Path) -> None:
        left = signature_names(path)
        if sorted(left) != sorted(s.signatureKey.decode() for s in model.signatureDefs):
            raise RuntimeError(f"{path}: signatures {left} after pruning")

    write_atomically(output, write, check)
    return source.stat().st_size - output.stat().st_size


def share_quantization(model, flat) -> None:
    """One object per quantization table the source shares between subgraphs (the object API reads a copy per
    tensor), packed once again: else per-row scales repeat per signature, 3 MB each on Gemma 3's embedding."""
    shared, seen = shared_quantization(), {}
    for g, graph in enumerate(model.subgraphs):
        tensors = flat.Subgraphs(g)
        for t, tensor in enumerate(graph.tensors or []):
            table = tensors.Tensors(t).Quantization()
            if table is None or tensor.quantization is None:
                continue
            position = table._tab.Pos
            if position in seen:
                tensor.quantization = seen[position]
            else:
                tensor.quantization.__class__ = shared
                seen[position] = tensor.quantization
