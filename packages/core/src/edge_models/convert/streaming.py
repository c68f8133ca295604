"""Low-memory conversion: export the graph without its large weights, then write them in one tensor at a time.

litert-torch lowers every weight into MLIR and serializes a float flatbuffer that ai-edge-quantizer then parses
into Python objects and rewrites: several full copies of the model are alive at once (3.75x the fp32 weights
measured on TinyLlama-1.1B, and Phi-2 did not fit in 24 GiB). Here the 2-D weights (embedding, every linear layer,
the LM head) are signature inputs while litert-torch exports, so the "skeleton" it writes holds only the graph
and the small constants. Each weight input then becomes a constant tensor shared by all signatures, and its data
(float32, or int8 with one scale per output row exactly as ai-edge-quantizer computes it) is appended after the
flatbuffer as an offset buffer, the layout ai-edge-quantizer itself writes. Peak memory is the skeleton plus one
weight, on top of wherever the weights come from.

Schemes written here: fp32 and int8 (dynamic range). Recipes that use others take the ai-edge-quantizer path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import nn

from edge_models.convert.export import ExportSettings, Signature, lower_signatures
from edge_models.convert.recipes import Recipe, Scheme
from edge_models.layers import Decoder

WEIGHTS_ARG = "weights"  # the signature argument that carries the streamed weights during export
_ALIGN = 16  # ai-edge-quantizer aligns offset buffers to 16 bytes; so do we


def streamed_scheme(scheme: Scheme) -> str | None:
    """'fp32' or 'int8' when this writer emits `scheme` itself, else None."""
    if scheme.bits == 32 and scheme.mode == "float":
        return "fp32"
    if scheme.bits == 8 and scheme.mode == "dynamic" and scheme.block_size is None:
        return "int8"
    return None


def streamed_weights(model: Decoder) -> dict[str, tuple[int, ...]]:
    """The parameters written by this module: every 2-D one (embedding, linear layers, LM head)."""
    return {name: tuple(p.shape) for name, p in model.named_parameters() if p.dim() == 2}


def can_stream(model: Decoder, recipe: Recipe) -> bool:
    return all(streamed_scheme(recipe.scheme_for(name)) for name in streamed_weights(model))


def _arg_key(param: str) -> str:
    return param.replace(".", "__")


class _WeightsAsInputs(nn.Module):
    """A signature whose 2-D weights arrive as inputs instead of being constants of the graph."""

    def __init__(self, signature: Signature, params: list[str]) -> None:
        super().__init__()
        self.signature = signature
        self.params = params

    def forward(self, tokens, input_pos, kv_cache, weights):
        swapped = {f"model.{p}": weights[_arg_key(p)] for p in self.params}
        return torch.func.functional_call(self.signature, swapped, (tokens, input_pos, kv_cache))


@contextlib.contextmanager
def _weights_detached(model: Decoder, params: list[str]) -> Iterator[None]:
    """Swap the large parameters for empty ones while exporting, so litert-torch never reads or copies them."""
    saved = {}
    for name in params:
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name)
        saved[name] = (module, attr, getattr(module, attr))
        setattr(module, attr, nn.Parameter(torch.empty(0), requires_grad=False))
    try:
        yield
    finally:
        for module, attr, param in saved.values():
            setattr(module, attr, param)


def export_skeleton(model: Decoder, settings: ExportSettings, shapes: dict[str, tuple[int, ...]]) -> bytes:
    """The converted graph with `shapes`' parameters as inputs named `weights_<param with __>`."""
    params = list(shapes)
    # Never touched: export traces shapes only, so these pages are never committed.
    placeholders = {_arg_key(p): torch.empty(shape) for p, shape in shapes.items()}
    with _weights_detached(model, params):
        return lower_signatures(
            model, settings, lambda signature: _WeightsAsInputs(signature, params), {WEIGHTS_ARG: placeholders}
        )


def quantize_int8_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8, one scale per row, narrow range [-127, 127]: ai-edge-quantizer's arithmetic step by step
    (float32 max |w| per row floored at 1e-9, divided by 127; round half to even), so files are bit-identical."""
    bound = np.maximum(np.abs(weight.min(axis=1, keepdims=True)), np.abs(weight.max(axis=1, keepdims=True)))
    scale = np.maximum(bound, np.float32(1e-9)) / 127
    q = np.divide(weight, scale)
    np.clip(np.rint(q, out=q), -127, 127, out=q)
    return q.astype(np.int8), scale.reshape(-1).astype(np.float32)


def write_with_weights(
    skeleton: bytes,
    schemes: dict[str, str],
    read: Callable[[str], np.ndarray],
    out: BinaryIO,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Turn the skeleton's weight inputs into constants and write the model to `out`.

    `schemes` maps each parameter to 'fp32' or 'int8'; `read(param)` returns its float32 [rows, cols] data and is
    called once per parameter, in the order the data is written."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(skeleton, 0)
    uses: dict[str, list] = {p: [] for p in schemes}
    prefix = f"{WEIGHTS_ARG}_"
    for sig in model.signatureDefs:
        graph = model.subgraphs[sig.subgraphIndex]
        kept = []
        for entry in sig.inputs:
            name = entry.name.decode()
            param = next((p for p in schemes if name == prefix + _arg_key(p)), None)
            if param is None:
                kept.append(entry)
                continue
            uses[param].append(graph.tensors[entry.tensorIndex])
            graph.inputs = [i for i in graph.inputs if i != entry.tensorIndex]
        sig.inputs = kept
    unused = [p for p, tensors in uses.items() if not tensors]
    if unused:
        raise RuntimeError(f"the exported graph has no input for {', '.join(unused)}")

    # Every buffer ends up after the flatbuffer: the skeleton's own offset buffers are re-homed with the weights.
    # (buffer, parameter name to read, or a function giving the skeleton's bytes)
    blobs: list[tuple[object, str | Callable[[], memoryview]]] = []
    for buffer in model.buffers:
        if buffer.offset is not None and buffer.offset > 1:
            start, size = buffer.offset, buffer.size
            blobs.append((buffer, lambda s=start, n=size: memoryview(skeleton)[s : s + n]))
    pending_scales: dict[str, list] = {}
    for param, tensors in uses.items():
        buffer = schema.BufferT()
        model.buffers.append(buffer)
        index = len(model.buffers) - 1
        for tensor in tensors:
            tensor.buffer = index
            if schemes[param] == "int8":
                tensor.type = schema.TensorType.INT8
                quant = schema.QuantizationParametersT()
                quant.quantizedDimension = 0
                tensor.quantization = quant
                pending_scales.setdefault(param, []).append(quant)
        blobs.append((buffer, param))

    # Scales live in the flatbuffer, data after it: quantize each weight once, keep its scales, drop its data.
    sizes: list[int] = []
    for buffer, source in blobs:
        if isinstance(source, str):
            # Python ints: the schema's int32 shapes would overflow offsets past 2 GiB.
            rows, cols = (int(d) for d in next(iter(uses[source])).shape)
            sizes.append(rows * cols * (1 if schemes[source] == "int8" else 4))
        else:
            sizes.append(int(buffer.size))
    # Offsets are fixed-width fields, so packing with placeholders gives the final flatbuffer length.
    for buffer, size in zip((b for b, _ in blobs), sizes):
        buffer.offset, buffer.size = 2**62, size
    for param, quants in pending_scales.items():
        rows = int(next(iter(uses[param])).shape[0])
        for quant in quants:
            quant.scale = np.zeros(rows, np.float32)
            quant.zeroPoint = np.zeros(rows, np.int64)
    head_len = len(_pack(model))
    offsets, position = [], _aligned(head_len)
    for size in sizes:
        offsets.append(position)
        position = _aligned(position + size)

    # Data first (to a position after the header), header last, once every scale is known.
    header_at = out.tell()
    out.write(b"\0" * _aligned(head_len))
    total = len(blobs)
    for done, ((buffer, source), offset, size) in enumerate(zip(blobs, offsets, sizes), 1):
        buffer.offset = offset
        if isinstance(source, str):
            data = read(source)
            expected = tuple(int(d) for d in next(iter(uses[source])).shape)
            if data.shape != expected:
                raise ValueError(f"weight {source!r} has shape {list(data.shape)}, the graph expects {list(expected)}")
            if schemes[source] == "int8":
                data, scale = quantize_int8_rows(data)
                for quant in pending_scales[source]:
                    quant.scale = scale
            payload = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
            if progress and (done % 16 == 0 or done == total):
                progress(f"wrote {done}/{total} weight buffers")
        else:
            payload = source()
        out.seek(header_at + offset)
        out.write(payload)
        if len(payload) != size:
            raise RuntimeError(f"buffer {done}: wrote {len(payload)} bytes, planned {size}")
    out.truncate(header_at + position)  # pads the last buffer; never cuts into it
    head = _pack(model)
    if len(head) != head_len:
        raise RuntimeError("flatbuffer header changed size between packings")
    out.seek(header_at)
    out.write(head)


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _pack(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def convert_streaming(
    model: Decoder,
    output: Path,
    settings: ExportSettings,
    recipe: Recipe,
    read: Callable[[str], np.ndarray] | None = None,
    progress: Callable[[str], None] | None = None,
    check: Callable[[Path], None] | None = None,
) -> None:
    """Export the skeleton of `model`, then write `output` with each 2-D weight from `read(param)` (default: the
    model's own tensor), in the scheme `recipe` gives it."""
    from edge_models.fileio import write_atomically

    say = progress or (lambda _m: None)
    shapes = streamed_weights(model)
    schemes = {p: streamed_scheme(recipe.scheme_for(p)) for p in shapes}
    if read is None:
        params = dict(model.named_parameters())

        def read(param: str) -> np.ndarray:
            return params[param].detach().to(torch.float32).numpy()

    say(f"exporting the graph of {len(settings.signature_names())} signatures without its {len(shapes)} weights")
    skeleton = export_skeleton(model, settings, shapes)
    say(f"writing {len(shapes)} weights one at a time ({recipe.text})")
    write_atomically(output, lambda f: write_with_weights(skeleton, schemes, read, f, say), check)
