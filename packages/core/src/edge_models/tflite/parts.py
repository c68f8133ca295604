"""A signature's operators grouped into the parts of a decoder (embedding, each block, KV cache writes, LM head), and
a file with one signature per part, so that each part can be timed on its own with the same weights and kernels.

litert-torch names every op output after the module that made it (`.../DecoderBlock_3/...Attention_attn;12`): ops
named after a block belong to it; the KV cache writes (DYNAMIC_UPDATE_SLICE into a `kv_cache_*` output) form a part
of their own; unnamed ops before the first block are the embedding (its lookup and scale), after the last block the
head (final norm, LM head, soft-capping); what is left between blocks (cache write positions, shared masks) is
`other`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edge_models.io.files import write_atomically
from edge_models.tflite.packing import has_offset, repacked
from edge_models.tflite.pruning import share_quantization
from edge_models.tflite.reading import flat_model, mapped
from edge_models.tflite.summary import operator_name

_BLOCK = re.compile(r"DecoderBlock_(\d+)[/;]")
EMBEDDING, CACHE, HEAD, OTHER = "embedding", "cache update", "head", "other"


def block_part(i: int) -> str:
    return f"block {i}"


def op_parts(model, subgraph: int) -> list[str]:
    """The part each op of `subgraph` (of the flat-API `model`) belongs to, in operator order."""
    graph = model.Subgraphs(subgraph)
    named: list[str | None] = []
    for o in range(graph.OperatorsLength()):
        op = graph.Operators(o)
        outputs = [graph.Tensors(op.Outputs(j)).Name().decode(errors="replace") for j in range(op.OutputsLength())]
        if operator_name(model, op) == "DYNAMIC_UPDATE_SLICE" and any("kv_cache_" in n for n in outputs):
            named.append(CACHE)
            continue
        found = None
        for name in outputs:
            match = next((m for m in (_BLOCK.search(n) for n in name.split(";;")) if m), None)
            if match:
                found = block_part(int(match.group(1)))
                break
        named.append(found)
    blocks = [o for o, part in enumerate(named) if part is not None and part != CACHE]
    first, last = (blocks[0], blocks[-1]) if blocks else (len(named), -1)
    return [
        part if part is not None else EMBEDDING if o < first else HEAD if o > last else OTHER
        for o, part in enumerate(named)
    ]


def part_order(parts: list[str]) -> list[str]:
    """Parts in the order a step meets them: embedding, blocks, cache update, head, other."""
    blocks = sorted({p for p in parts if p.startswith("block ")}, key=lambda p: int(p.split()[1]))
    return [p for p in (EMBEDDING, *blocks, CACHE, HEAD, OTHER) if p in set(parts)]


@dataclass(frozen=True)
class PartSignature:
    part: str
    signature: str  # its signature in the parts file
    operators: int
    inputs: dict[str, tuple[tuple[int, ...], str]]  # signature input -> (shape, numpy dtype name)
    # output -> the input it updates in place (a KV cache write), as the runtime binds one buffer to both
    in_place: dict[str, str]


_DTYPES = {0: "float32", 1: "float16", 2: "int32", 4: "int64", 6: "bool", 9: "int8"}


def write_parts_file(source: str | Path, output: str | Path, signature: str) -> list[PartSignature]:
    """Write a file with one signature per part of `source`'s `signature`, each the part's own ops over the same
    tensors and weights: its inputs are what it takes from other parts (or the signature's inputs), its outputs
    what it gives them. Weights are copied, not decoded; `source` is unchanged."""
    from ai_edge_litert import schema_py_generated as schema

    data = mapped(source)  # the parsed model's arrays point into the map: kept open until they are collected
    flat = flat_model(data)
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    share_quantization(model, flat)
    wanted = next((s for s in model.signatureDefs or [] if s.signatureKey.decode() == signature), None)
    if wanted is None:
        names = ", ".join(s.signatureKey.decode() for s in model.signatureDefs or [])
        raise ValueError(f"{source}: no signature {signature!r} (it has {names})")
    graph = model.subgraphs[wanted.subgraphIndex]
    parts = op_parts(flat, wanted.subgraphIndex)
    constants = {t for t, tensor in enumerate(graph.tensors) if tensor.buffer and _is_constant(model, tensor)}
    graph_outputs = set(graph.outputs)
    subgraphs, signatures, made = [], [], []
    for part in part_order(parts):
        ops = [op for op, p in zip(graph.operators, parts) if p == part]
        produced = {t for op in ops for t in op.outputs}
        taken = [t for op in ops for t in op.inputs if t >= 0]
        inputs = list(dict.fromkeys(t for t in taken if t not in produced and t not in constants))
        used_elsewhere = {t for op, p in zip(graph.operators, parts) if p != part for t in op.inputs}
        outputs = [t for t in dict.fromkeys(t for op in ops for t in op.outputs) if t in used_elsewhere | graph_outputs]
        if not outputs:
            outputs = list(ops[-1].outputs)
        sub = schema.SubGraphT()
        sub.tensors, sub.operators, sub.inputs, sub.outputs = graph.tensors, ops, inputs, outputs
        sub.name = part.replace(" ", "_").encode()
        key = "part_" + part.replace(" ", "_")
        definition = schema.SignatureDefT()
        definition.signatureKey, definition.subgraphIndex = key.encode(), len(subgraphs)
        definition.inputs = [_tensor_map(schema, f"in_{t}", t) for t in inputs]
        definition.outputs = [_tensor_map(schema, f"out_{t}", t) for t in outputs]
        subgraphs.append(sub)
        signatures.append(definition)
        shapes = {
            f"in_{t}": (tuple(int(d) for d in graph.tensors[t].shape), _DTYPES.get(graph.tensors[t].type, "float32"))
            for t in inputs
        }
        in_place = {
            f"out_{op.outputs[0]}": f"in_{op.inputs[0]}"
            for op, p in zip(graph.operators, parts)
            if p == CACHE == part and op.inputs[0] in inputs and op.outputs[0] in outputs
        }
        made.append(PartSignature(part, key, len(ops), shapes, in_place))
    model.subgraphs, model.signatureDefs = subgraphs, signatures
    copies = [(buffer, buffer.offset) for buffer in model.buffers if has_offset(buffer)]
    write = repacked(model, copies, data)

    write_atomically(Path(output), write)
    return made


def _is_constant(model, tensor) -> bool:
    """Data, or no elements at all (an empty shape constant has an empty buffer)."""
    buffer = model.buffers[tensor.buffer]
    empty = tensor.shape is not None and 0 in list(tensor.shape)
    return empty or has_offset(buffer) or (buffer.data is not None and len(buffer.data) > 0)


def _tensor_map(schema, name: str, index: int):
    entry = schema.TensorMapT()
    entry.name, entry.tensorIndex = name.encode(), index
    return entry
