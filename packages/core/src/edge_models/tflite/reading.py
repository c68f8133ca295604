"""Read a .tflite without loading it: the file memory-mapped, its signatures, the dimensions of its model."""

from __future__ import annotations

import mmap
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_models.tflite.tensors_read import buffer_bytes, constant_inputs, lookup_tables, weight_bytes_read


def mapped(path: str | Path) -> mmap.mmap:
    """The file, memory-mapped read-only: reading a 5 GB model would add 5 GB to the resident memory."""
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def flat_model(tflite: bytes | mmap.mmap):
    """The flat-API `Model` over the bytes (nothing is copied)."""
    from ai_edge_litert import schema_py_generated as schema

    return schema.Model.GetRootAs(tflite, 0)


def signature_names(path: str | Path) -> list[str]:
    """The file's signature keys."""
    with mapped(path) as data:
        model = flat_model(data)
        return [model.SignatureDefs(i).SignatureKey().decode() for i in range(model.SignatureDefsLength())]


def _signature(model, pattern: bytes):
    signatures = (model.SignatureDefs(i) for i in range(model.SignatureDefsLength()))
    return next(s for s in signatures if re.fullmatch(pattern, s.SignatureKey()))


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of the decoder a converted file holds, read from its `decode` signature."""

    vocab_size: int
    num_layers: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    parameters: int  # elements of the constants `decode` reads or looks up (weights, norms, small tables)
    signatures: int  # subgraphs sharing those weights (XNNPACK packs them once for each without a weight cache)

    def differences(self, config) -> list[str]:
        """What differs from a `ModelConfig`, one phrase per dimension ("layers: file 30, model 22")."""
        pairs = {
            "vocabulary": (self.vocab_size, config.vocab_size),
            # Layers with a KV cache: KV-sharing layers (Gemma 3n / 4) have none.
            "layers": (self.num_layers, config.first_kv_shared_layer),
            "KV heads": (self.num_kv_heads, config.attention.num_kv_heads),
            "head size": (self.head_dim, config.attention.head_dim),
            "hidden size": (self.hidden_size, config.hidden_size),
        }
        return [f"{name}: file {ours:,}, model {theirs:,}" for name, (ours, theirs) in pairs.items() if ours != theirs]


def model_shape(tflite: bytes | mmap.mmap) -> ModelShape:
    """The file's dimensions: vocabulary from `decode`'s logits, layers and KV layout from its caches
    (K `[1, kv_heads, KV, head_dim]`), the hidden size from the embedding table it looks up."""
    model = flat_model(tflite)
    signature = _signature(model, rb"decode")
    graph = model.Subgraphs(signature.SubgraphIndex())
    inputs = {(t := signature.Inputs(i)).Name(): t.TensorIndex() for i in range(signature.InputsLength())}
    outputs = {(t := signature.Outputs(i)).Name(): t.TensorIndex() for i in range(signature.OutputsLength())}
    # The first attention layer's K cache: in a hybrid model layer 0 may carry state instead (`kv_cache_c_0`).
    first_k = next(index for name, index in sorted(inputs.items()) if name.startswith(b"kv_cache_k_"))
    k_cache = graph.Tensors(first_k).ShapeAsNumpy()
    tables = lookup_tables()
    hidden, constants = 0, {}
    for constant in constant_inputs(model, graph):
        if buffer_bytes(model, constant.buffer) == 0:
            continue
        tensor = constant.tensor
        dims = tensor.ShapeAsNumpy() if tensor.ShapeLength() else np.array([1])
        constants[constant.buffer] = int(np.prod(dims))
        if tables.get(constant.operator) == constant.position and len(dims) == 2 and not hidden:
            # The first table looked up is the token embedding (a per-layer-input table, Gemma 4, comes later).
            hidden = int(dims[1])
    return ModelShape(
        vocab_size=int(graph.Tensors(outputs[b"logits"]).ShapeAsNumpy()[-1]),
        num_layers=sum(1 for name in inputs if name.startswith(b"kv_cache_k_")),
        num_kv_heads=int(k_cache[1]),
        head_dim=int(k_cache[3]),
        hidden_size=hidden,
        parameters=sum(constants.values()),
        signatures=model.SignatureDefsLength(),
    )


def decode_weight_bytes(tflite: bytes | mmap.mmap, shortlist: bool = False) -> int:
    """Bytes of weights `decode` (or with `shortlist`, `shortlist_<K>`) reads per token (`weight_bytes_read`); the
    KV cache is not counted."""
    model = flat_model(tflite)
    signature = _signature(model, rb"shortlist_\d+" if shortlist else rb"decode")
    return weight_bytes_read(model, signature.SubgraphIndex())
