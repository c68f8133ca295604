"""Low-memory conversion: export the graph without its large weights, then write them in one tensor at a time.

litert-torch lowers every weight into MLIR and serializes a float flatbuffer that ai-edge-quantizer then parses
into Python objects and rewrites: several full copies of the model are alive at once (3.75x the fp32 weights
measured on TinyLlama-1.1B, and Phi-2 did not fit in 24 GiB). Here the 2-D weights (embedding, every linear layer,
the LM head) are signature inputs while litert-torch exports, so the "skeleton" it writes holds only the graph
and the small constants. Each weight input then becomes a constant tensor shared by all signatures, and its data
(in the recipe's storage: float32, float16, int8 per row, int4 per block; `edge_models.quantize.formats`) is
appended after the flatbuffer as an offset buffer, the layout ai-edge-quantizer itself writes.
Peak memory is the skeleton plus one weight, on top of wherever the weights come from.

Every built-in scheme is written here; a scheme from a plugin that `quantize.formats.format_for` does not know takes
the ai-edge-quantizer path.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import nn

from edge_models.convert.export import ExportSettings, Signature, lower_signatures
from edge_models.layers import Decoder
from edge_models.layers.lora import lora_parameters
from edge_models.quantize.formats import EncodedWeight, WeightFormat, encode, format_for, stored_bytes
from edge_models.quantize.recipes import Recipe
from edge_models.runtime.lora_format import INPUT_PREFIX, input_key

WEIGHTS_ARG = "weights"  # the signature argument that carries the streamed weights during export
LORA_ARG = INPUT_PREFIX.rstrip("_")  # the one that carries the LoRA slots: inputs named by `layers.lora.input_name`
_ALIGN = 16  # ai-edge-quantizer aligns offset buffers to 16 bytes; so do we


def streamed_weights(model: Decoder) -> dict[str, tuple[int, ...]]:
    """The parameters written by this module: every 2-D one (embedding, linear layers, LM head) except LoRA slots,
    which stay inputs of the file."""
    return {
        name: tuple(p.shape)
        for name, p in model.named_parameters()
        if p.dim() == 2 and not name.endswith((".lora_a", ".lora_b"))
    }


def can_stream(model: Decoder, recipe: Recipe) -> bool:
    return all(format_for(recipe.scheme_for(name)) for name in streamed_weights(model))


def _arg_key(param: str) -> str:
    return param.replace(".", "__")


class _WeightsAsInputs(nn.Module):
    """A signature whose 2-D weights arrive as inputs instead of being constants of the graph (and so do the LoRA
    slots' matrices, which stay inputs)."""

    def __init__(self, signature: Signature, params: list[str], lora: list[str]) -> None:
        super().__init__()
        self.signature = signature
        self.params = params
        self.lora = lora

    def forward(self, tokens, input_pos, kv_cache, weights, lora=None):
        swapped = {f"model.{p}": weights[_arg_key(p)] for p in self.params}
        swapped.update({f"model.{p}": lora[input_key(p)] for p in self.lora})
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


def export_skeleton(
    model: Decoder, settings: ExportSettings, shapes: dict[str, tuple[int, ...]], workers: int = 1
) -> bytes:
    """The converted graph with `shapes`' parameters as inputs named `weights_<param with __>`.

    With `workers` > 1 the signatures are exported by that many processes at once (`convert.parallel`)."""
    with _weights_detached(model, list(shapes)):
        if workers > 1 and len(settings.signatures()) > 1:
            from edge_models.convert.parallel import export_in_parallel

            return export_in_parallel(model, settings, shapes, workers)
        return export_signatures(model, settings, shapes)


def export_signatures(
    model: Decoder, settings: ExportSettings, shapes: dict[str, tuple[int, ...]], only: list[str] | None = None
) -> bytes:
    """`export_skeleton`'s work in this process, for a model whose `shapes` parameters are already detached."""
    params = list(shapes)
    # Never touched: export traces shapes only, so these pages are never committed.
    placeholders = {_arg_key(p): torch.empty(shape) for p, shape in shapes.items()}
    extra = {WEIGHTS_ARG: placeholders}
    lora = lora_parameters(model)
    if lora:
        extra[LORA_ARG] = {input_key(p): torch.zeros(tuple(t.shape)) for p, t in lora.items()}
    return lower_signatures(
        model,
        settings,
        lambda signature: _WeightsAsInputs(signature, params, list(lora)),
        extra,
        only=only,
    )


def write_with_weights(
    skeleton: bytes,
    formats: dict[str, WeightFormat],
    read: Callable[[str], np.ndarray],
    out: BinaryIO,
    progress: Callable[[str], None] | None = None,
    encoded: dict[str, EncodedWeight] | None = None,
) -> None:
    """Turn the skeleton's weight inputs into constants and write the model to `out`.

    `formats` maps each parameter to how it is stored; `read(param)` returns its float32 [rows, cols] data and is
    called once per parameter, in the order the data is written, except for the parameters `encoded` already holds
    in their stored form (calibrated ones)."""
    encoded = dict(encoded or {})
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(skeleton, 0)
    uses = _weight_inputs(model, formats)
    shapes = {p: tuple(int(d) for d in graph.tensors[index].shape) for p, [(graph, index), *_] in uses.items()}

    # Every buffer ends up after the flatbuffer: the skeleton's own offset buffers are re-homed with the weights.
    # (the buffers one job fills, and the parameter it reads or a function giving the skeleton's bytes)
    jobs: list[tuple[list, str | Callable[[], memoryview]]] = []
    sizes: list[int] = []
    for buffer in model.buffers:
        if buffer.offset is not None and buffer.offset > 1:
            start, size = buffer.offset, buffer.size
            jobs.append(([buffer], lambda s=start, n=size: memoryview(skeleton)[s : s + n]))
            sizes.append(int(size))
    row_scales: dict[str, object] = {}  # int8 scales live in the flatbuffer: filled in once each weight is quantized
    for param, places in uses.items():
        fmt, (rows, cols) = formats[param], shapes[param]
        buffers = [_new_buffer(model) for _ in stored_bytes(fmt, rows, cols)]
        data_index = len(model.buffers) - len(buffers)
        for graph, index in places:
            stored = _dequantize_into(model, graph, index) if fmt.dequantize else graph.tensors[index]
            stored.buffer = data_index
            stored.type = getattr(schema.TensorType, _TENSOR_TYPES[fmt.storage])
            if fmt.storage == "int8":
                if param not in row_scales:
                    quant = row_scales[param] = _shared_quantization()()
                    quant.quantizedDimension = 0
                    quant.scale, quant.zeroPoint = np.zeros(rows, np.float32), np.zeros(rows, np.int64)
                stored.quantization = row_scales[param]
            elif fmt.storage == "int4":
                scales_shape = (rows, cols // fmt.block_size)
                stored.quantization = _blockwise(graph, stored, data_index + 1, scales_shape, fmt.block_size)
        jobs.append((buffers, param))
        sizes.extend(stored_bytes(fmt, rows, cols))

    # Offsets are fixed-width fields, so packing with placeholders gives the final flatbuffer length.
    buffers_in_order = [buffer for buffers, _ in jobs for buffer in buffers]
    for buffer, size in zip(buffers_in_order, sizes):
        buffer.offset, buffer.size = 2**62, size  # Python ints: int32 shapes would overflow past 2 GiB
    head_len = len(pack_model(model))
    position = _aligned(head_len)
    for buffer, size in zip(buffers_in_order, sizes):
        buffer.offset = position
        position = _aligned(position + size)

    # Data first (to a position after the header), header last, once every scale is known.
    header_at = out.tell()
    out.write(b"\0" * _aligned(head_len))
    weights_total, weights_done = len(uses), 0
    for buffers, source in jobs:
        if isinstance(source, str):
            ready = encoded.pop(source, None)
            if ready is None:
                data = read(source)
                if data.shape != shapes[source]:
                    raise ValueError(
                        f"weight {source!r} has shape {list(data.shape)}, the graph expects {list(shapes[source])}"
                    )
                ready = encode(data, formats[source])
                del data
            if source in row_scales:
                row_scales[source].scale = ready.row_scales
            payloads = ready.buffers()
            weights_done += 1
            if progress and (weights_done % 16 == 0 or weights_done == weights_total):
                progress(f"wrote {weights_done}/{weights_total} weights")
        else:
            payloads = [source()]
        for buffer, payload in zip(buffers, payloads):
            if len(payload) != buffer.size:
                raise RuntimeError(f"buffer at {buffer.offset}: {len(payload)} bytes, planned {buffer.size}")
            out.seek(header_at + buffer.offset)
            out.write(payload)
    out.truncate(header_at + position)  # pads the last buffer; never cuts into it
    head = pack_model(model)
    if len(head) != head_len:
        raise RuntimeError("flatbuffer header changed size between packings")
    out.seek(header_at)
    out.write(head)


_TENSOR_TYPES = {"float32": "FLOAT32", "float16": "FLOAT16", "int8": "INT8", "int4": "INT4"}


def _weight_inputs(model, formats: dict[str, WeightFormat]) -> dict[str, list[tuple[object, int]]]:
    """Remove the weight inputs from every signature; where each parameter's tensor is, per subgraph."""
    uses: dict[str, list[tuple[object, int]]] = {p: [] for p in formats}
    by_input = {f"{WEIGHTS_ARG}_{_arg_key(p)}": p for p in formats}
    for sig in model.signatureDefs:
        graph = model.subgraphs[sig.subgraphIndex]
        kept = []
        for entry in sig.inputs:
            param = by_input.get(entry.name.decode())
            if param is None:
                kept.append(entry)
                continue
            uses[param].append((graph, entry.tensorIndex))
            graph.inputs = [i for i in graph.inputs if i != entry.tensorIndex]
        sig.inputs = kept
    unused = [p for p, places in uses.items() if not places]
    if unused:
        raise RuntimeError(f"the exported graph has no input for {', '.join(unused)}")
    return uses


def _new_buffer(model):
    from ai_edge_litert import schema_py_generated as schema

    buffer = schema.BufferT()
    model.buffers.append(buffer)
    return buffer


def _new_tensor(graph, name: bytes, shape, tensor_type: int, buffer: int) -> int:
    from ai_edge_litert import schema_py_generated as schema

    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = name, np.array(shape, np.int32), tensor_type, buffer
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _dequantize_into(model, graph, index: int):
    """Make tensor `index` the output of a new DEQUANTIZE op, placed before its first consumer as
    ai-edge-quantizer places it; returns the op's input tensor, which will hold the stored weight."""
    from ai_edge_litert import schema_py_generated as schema

    target = graph.tensors[index]
    first_use = next((k for k, consumer in enumerate(graph.operators) if index in list(consumer.inputs)), None)
    if first_use is None:
        return target  # pruned from this signature (a prefill without logits needs no LM head): stays unused
    stored = _new_tensor(graph, target.name + b"_stored", target.shape, target.type, 0)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = _opcode(model, schema.BuiltinOperator.DEQUANTIZE), [stored], [index]
    graph.operators.insert(first_use, op)
    return graph.tensors[stored]


def _opcode(model, builtin: int) -> int:
    from ai_edge_litert import schema_py_generated as schema

    for k, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return k
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, builtin, 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


@functools.cache
def _shared_quantization() -> type:
    """Quantization parameters packed once per flatbuffer, their table referenced by the weight's tensor in every
    subgraph. Written per subgraph, per-row scales and zero points repeat with each signature: 12 bytes a row, 3 MB
    per signature for Gemma 3's 262,144-row embedding, 23 MB of a 301 MB int8 file with six signatures."""
    from ai_edge_litert import schema_py_generated as schema

    class SharedQuantization(schema.QuantizationParametersT):
        def Pack(self, builder):  # noqa: N802  the object API's name
            if getattr(self, "_packed_in", None) is not builder:
                self._packed_in, self._offset = builder, super().Pack(builder)
            return self._offset

    return SharedQuantization


def _blockwise(graph, weight, scales_buffer: int, scales_shape: tuple[int, int], block: int):
    """Blockwise quantization parameters for `weight`: a float16 scales tensor of this subgraph over the shared
    scales buffer (zero points are not used: symmetric)."""
    from ai_edge_litert import schema_py_generated as schema

    details = schema.BlockwiseQuantizationT()
    details.scales = _new_tensor(
        graph, weight.name + b"_scales", scales_shape, schema.TensorType.FLOAT16, scales_buffer
    )
    details.zeroPoints, details.blockSize = -1, block
    quant = schema.QuantizationParametersT()
    quant.detailsType, quant.details, quant.quantizedDimension = (
        schema.QuantizationDetails.BlockwiseQuantization,
        details,
        0,
    )
    return quant


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def pack_model(model) -> bytes:
    """A schema object-API model as .tflite flatbuffer bytes."""
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
    workers: int = 1,
    encoded: dict[str, EncodedWeight] | None = None,
) -> None:
    """Export the skeleton of `model` (`workers` processes at once), then write `output` with each 2-D weight from
    `encoded` (already in its stored form) or `read(param)` (default: the model's own tensor), in the scheme
    `recipe` gives it."""
    from edge_models.io.files import write_atomically

    say = progress or (lambda _m: None)
    shapes = streamed_weights(model)
    formats = {p: format_for(recipe.scheme_for(p)) for p in shapes}
    if read is None:
        params = dict(model.named_parameters())

        def read(param: str) -> np.ndarray:
            return params[param].detach().to(torch.float32).numpy()

    say(
        f"exporting the graph of {len(settings.signature_names())} signatures without its {len(shapes)} weights"
        + (f" ({workers} processes)" if workers > 1 else "")
    )
    skeleton = export_skeleton(model, settings, shapes, workers)
    say(f"writing {len(shapes)} weights one at a time ({recipe.text})")
    weight_bytes = sum(sum(stored_bytes(formats[p], *shape)) for p, shape in shapes.items())
    write_atomically(
        output,
        lambda f: write_with_weights(skeleton, formats, read, f, say, encoded),
        check,
        size_hint=len(skeleton) + weight_bytes,
    )
