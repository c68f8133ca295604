"""Turn an exported graph's weight inputs into constants, their data written after the flatbuffer.

The low-memory converter (`edge_models.convert.streaming`) exports the graph with its 2-D weights as signature
inputs named `weights_<parameter, dots as __>`; here each becomes one constant tensor shared by every signature, stored
as its `WeightFormat` says (float32, float16 behind a DEQUANTIZE, int8 per row, int4 per block), and the weights are
written one at a time, in the offset-buffer layout ai-edge-quantizer writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np

from edge_models.quantize.formats import EncodedWeight, WeightFormat, encode, stored_bytes
from edge_models.quantize.row_chunks import RowRanges, encode_in_chunks, is_large
from edge_models.tflite.operator_codes import builtin_code, code_index
from edge_models.tflite.packing import has_offset, lay_out, pack_laid_out, shared_quantization, write_buffers

WEIGHTS_ARG = "weights"  # the signature argument that carries the weights while exporting

_TENSOR_TYPES = {"float32": "FLOAT32", "float16": "FLOAT16", "int8": "INT8", "int4": "INT4"}


def weight_key(param: str) -> str:
    """The key of parameter `param` in the weights argument (litert-torch names the input `weights_<key>`)."""
    return param.replace(".", "__")


def write_with_weights(
    skeleton: bytes,
    formats: dict[str, WeightFormat],
    read: Callable[[str], np.ndarray],
    out: BinaryIO,
    progress: Callable[[str], None] | None = None,
    encoded: dict[str, EncodedWeight] | None = None,
) -> None:
    """Turn the skeleton's weight inputs into constants and write the model to `out`.

    `formats` maps each parameter to how it is stored; `read(param)` returns its float32 [rows, cols] data (an array,
    or `RowRanges` for one too big to hold at once) and is called once per parameter, in the order the data is
    written, except for the parameters `encoded` already holds in their stored form (calibrated ones)."""
    encoded = dict(encoded or {})
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(skeleton, 0)
    uses = _weight_inputs(model, formats)
    shapes = {p: tuple(int(d) for d in graph.tensors[index].shape) for p, [(graph, index), *_] in uses.items()}

    # Every buffer ends up after the flatbuffer: the skeleton's own offset buffers are re-homed with the weights.
    # (the buffers one job fills, and the parameter it reads or a function giving the skeleton's bytes)
    jobs: list[tuple[list, str | Callable[[], memoryview]]] = []
    for buffer in model.buffers:
        if has_offset(buffer):
            start, size = buffer.offset, buffer.size
            jobs.append(([buffer], lambda s=start, n=size: memoryview(skeleton)[s : s + n]))
    row_scales: dict[str, object] = {}  # int8 scales live in the flatbuffer: filled in once each weight is quantized
    for param, places in uses.items():
        fmt, (rows, cols) = formats[param], shapes[param]
        buffers = [_new_buffer(model, size) for size in stored_bytes(fmt, rows, cols)]
        data_index = len(model.buffers) - len(buffers)
        for graph, index in places:
            stored = _dequantize_into(model, graph, index) if fmt.dequantize else graph.tensors[index]
            stored.buffer = data_index
            stored.type = getattr(schema.TensorType, _TENSOR_TYPES[fmt.storage])
            if fmt.storage == "int8":
                if param not in row_scales:
                    quant = row_scales[param] = shared_quantization()()
                    quant.quantizedDimension = 0
                    quant.scale, quant.zeroPoint = np.zeros(rows, np.float32), np.zeros(rows, np.int64)
                stored.quantization = row_scales[param]
            elif fmt.storage == "int4":
                scales_shape = (rows, cols // fmt.block_size)
                stored.quantization = _blockwise(graph, stored, data_index + 1, scales_shape, fmt.block_size)
        jobs.append((buffers, param))

    layout = lay_out(model, [buffer for buffers, _ in jobs for buffer in buffers])
    weights_total = len(uses)

    def payloads() -> Iterator[tuple[object, object]]:
        weights_done = 0
        for buffers, source in jobs:
            if isinstance(source, str):
                ready = encoded.pop(source, None)
                if ready is None:
                    data = read(source)
                    if data.shape != shapes[source]:
                        raise ValueError(
                            f"weight {source!r} has shape {list(data.shape)}, the graph expects {list(shapes[source])}"
                        )
                    # A weight over one chunk (Gemma 4's per-layer table) is encoded a chunk of rows at a time as
                    # its pieces are written: the same bytes, from one chunk of memory.
                    large = isinstance(data, RowRanges) or is_large(*shapes[source])
                    ready = (encode_in_chunks if large else encode)(data, formats[source])
                    del data
                if source in row_scales:
                    row_scales[source].scale = ready.row_scales
                stored = ready.buffers()
                weights_done += 1
                if progress and (weights_done % 16 == 0 or weights_done == weights_total):
                    progress(f"wrote {weights_done}/{weights_total} weights")
            else:
                stored = [source()]
            yield from zip(buffers, stored)

    # Data first (after room for the header), header last, once every scale is known.
    header_at = out.tell()
    out.write(b"\0" * layout.header_bytes)
    write_buffers(out, header_at, payloads(), layout.end)
    head = pack_laid_out(model, layout)
    out.seek(header_at)
    out.write(head)


def _weight_inputs(model, formats: dict[str, WeightFormat]) -> dict[str, list[tuple[object, int]]]:
    """Remove the weight inputs from every signature; where each parameter's tensor is, per subgraph."""
    uses: dict[str, list[tuple[object, int]]] = {p: [] for p in formats}
    by_input = {f"{WEIGHTS_ARG}_{weight_key(p)}": p for p in formats}
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


def _new_buffer(model, size: int):
    from ai_edge_litert import schema_py_generated as schema

    buffer = schema.BufferT()
    buffer.size = size
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
    op.opcodeIndex = code_index(model, builtin_code(schema.BuiltinOperator.DEQUANTIZE))
    op.inputs, op.outputs = [stored], [index]
    graph.operators.insert(first_use, op)
    return graph.tensors[stored]


def _blockwise(graph, weight, scales_buffer: int, scales_shape: tuple[int, int], block: int):
    """Blockwise quantization parameters for `weight`: a float16 scales tensor of this subgraph over the shared
    scales buffer (zero points are not used: symmetric). Readers find it through `tensors_read`."""
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
