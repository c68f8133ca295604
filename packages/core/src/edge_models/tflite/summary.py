"""What a converted file holds, read from its flatbuffer alone: the operators of each signature, its weights by how
they are stored, composites and custom operators, and what a runtime may refuse to run.

Nothing is loaded or run: the file is memory-mapped and walked with the flat API, so a 5 GB model is summarised in
a second without torch or a LiteRT interpreter.
"""

from __future__ import annotations

import functools
import mmap
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from edge_models.tflite.operator_codes import builtin_operator
from edge_models.tflite.reading import flat_model
from edge_models.tflite.tensors_read import buffer_bytes, quantization_tensors, weight_bytes_read

# TFLite's builtin kernels (every code before the StableHLO range) are what ai-edge-litert's CPU resolver registers;
# StableHLO operators other than composites run there only on slow reference kernels (a stacked KV cache updated by
# STABLEHLO_SCATTER prefilled 4x slower, ARCHITECTURE §5) and not at all on tflite-runtime.
_FIRST_STABLEHLO = 162  # BuiltinOperator.STABLEHLO_LOGISTIC

# The builtin operators TFLite's GPU delegate has a parser for: `NewOperationParser` in
# tensorflow/lite/delegates/gpu/common/model_builder.cc (tensorflow/tensorflow at 9a5c30170e25), DEQUANTIZE and QUANTIZE
# only with quantized models allowed; that delegate also takes only float32/float16 (or int8) tensors between ops.
# LiteRT's current GPU accelerator descends from it and may take more (its composites among them): an op outside the
# list is one this list does not promise, not one proven to fall back. No GPU was available to check a file.
GPU_DELEGATE_OPS = frozenset(
    {
        "ABS", "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "COS", "DEPTHWISE_CONV_2D", "DEQUANTIZE",
        "DIV", "FULLY_CONNECTED", "HARD_SWISH", "LOGISTIC", "LOG", "LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN",
        "MINIMUM", "MIRROR_PAD", "MUL", "PAD", "POW", "QUANTIZE", "RELU", "RELU6", "LEAKY_RELU", "PRELU", "RESHAPE",
        "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SIN", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SQRT",
        "SQUARE", "SQUARED_DIFFERENCE", "STRIDED_SLICE", "SUB", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
    }
)  # fmt: skip
GPU_SOURCE = "TFLite GPU delegate's operation parsers (tensorflow/lite/delegates/gpu/common/model_builder.cc)"

_WEIGHT_TYPES = {0, 1, 9, 17, 18, 3, 7}  # float and quantized storage
_TYPE_NAMES = {0: "fp32", 1: "fp16", 9: "int8", 17: "int4", 18: "bf16", 3: "uint8", 7: "int16", 2: "int32"}


@functools.cache
def operator_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


@functools.cache
def _builtin_names() -> frozenset[str]:
    """TFLite's builtin operators, and composites (which carry a decomposition into them)."""
    return frozenset(n for code, n in operator_names().items() if code < _FIRST_STABLEHLO) | {"STABLEHLO_COMPOSITE"}


def operator_name(model, op) -> str:
    """`FULLY_CONNECTED`, a custom operator's code (`custom:odml.update_kv_cache`)."""
    code = model.OperatorCodes(op.OpcodeIndex())
    name = operator_names().get(builtin_operator(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")
    if name == "CUSTOM":
        return f"custom:{(code.CustomCode() or b'?').decode(errors='replace')}"
    return name


def weight_scheme(tensor) -> str:
    """How a constant is stored: `fp32`, `fp16`, `int8 per-channel`, `int8 per-tensor`, `int4 block32`,
    `int4 per-channel`, from its type and quantization parameters."""
    from ai_edge_litert import schema_py_generated as schema

    kind = _TYPE_NAMES.get(tensor.Type(), f"type {tensor.Type()}")
    quantization = tensor.Quantization()
    if quantization is None or kind in ("fp32", "fp16", "bf16"):
        return kind
    if quantization.DetailsType() == schema.QuantizationDetails.BlockwiseQuantization:
        blocks = schema.BlockwiseQuantization()
        blocks.Init(quantization.Details().Bytes, quantization.Details().Pos)
        return f"{kind} block{blocks.BlockSize()}"
    scales = quantization.ScaleLength()
    if scales == 0:
        return kind
    return f"{kind} per-channel" if scales > 1 else f"{kind} per-tensor"


def scheme_bits(scheme: str) -> int:
    """Bits a stored element takes (scales aside): the number an overlay shows for a scheme."""
    head = scheme.split()[0]
    return {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8, "uint8": 8, "int16": 16, "int4": 4, "int32": 32}.get(head, 0)


@dataclass(frozen=True)
class WeightUse:
    """A weight (a constant of rank 2 or more) an operator takes."""

    operator: int  # index of the op in its subgraph
    buffer: int
    scheme: str
    bytes: int  # its data and the block scales its quantization refers to
    dequantized: bool  # stored behind a DEQUANTIZE (expanded to float at load on x86)


def weight_uses(model, subgraph: int) -> list[WeightUse]:
    """Every weight an operator of `subgraph` takes, in operator order."""
    graph = model.Subgraphs(subgraph)
    found = []
    for o in range(graph.OperatorsLength()):
        op = graph.Operators(o)
        dequantize = operator_name(model, op) == "DEQUANTIZE"
        for i in range(op.InputsLength()):
            index = op.Inputs(i)
            if index < 0:
                continue
            tensor = graph.Tensors(index)
            if not tensor.Buffer() or tensor.ShapeLength() < 2 or tensor.Type() not in _WEIGHT_TYPES:
                continue  # index tables and shapes are constants too, not weights
            size = buffer_bytes(model, tensor.Buffer())
            if size == 0:
                continue
            size += sum(buffer_bytes(model, graph.Tensors(t).Buffer()) for t in quantization_tensors(tensor))
            found.append(WeightUse(o, tensor.Buffer(), weight_scheme(tensor), size, dequantize))
    return found


@dataclass
class SignatureSummary:
    name: str
    subgraph: int
    operators: Counter = field(default_factory=Counter)  # op name -> count
    composites: Counter = field(default_factory=Counter)  # composite name (odml.rms_norm) -> count
    custom: Counter = field(default_factory=Counter)  # custom code -> count
    weights: dict[str, list[int]] = field(default_factory=dict)  # scheme -> [tensors, bytes] its operators take
    bytes_read: int = 0  # weights read per call: a table only looked up a row at a time is not read whole
    dynamic: list[str] = field(default_factory=list)  # inputs/outputs whose shape is only known at run time
    inputs: dict[str, str] = field(default_factory=dict)  # name -> "float32[1,1,32,32]"
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class ModelSummary:
    signatures: list[SignatureSummary]
    weights: dict[str, list[int]]  # scheme -> [tensors, bytes] over the whole file (shared weights once)
    file_bytes: int
    subgraphs: int  # signatures' subgraphs and the composites' decompositions

    def gpu_outside(self) -> dict[str, dict[str, int]]:
        """Per signature, the ops outside `GPU_DELEGATE_OPS` and how many of each (composites listed by name)."""
        found = {}
        for s in self.signatures:
            outside = {n: c for n, c in s.operators.items() if n not in GPU_DELEGATE_OPS and n != "STABLEHLO_COMPOSITE"}
            found[s.name] = dict(sorted(outside.items()))
        return found

    @property
    def warnings(self) -> list[str]:
        """What a runtime may not run, one line each."""
        lines = []
        for s in self.signatures:
            beyond = sorted(n for n in s.operators if n not in _builtin_names() and not n.startswith("custom:"))
            if beyond:
                lines.append(
                    f"{s.name}: operators past TFLite's builtin kernels: {', '.join(beyond)} (ai-edge-litert runs "
                    "them on reference kernels XNNPACK does not take; tflite-runtime does not know them)"
                )
            if s.custom:
                lines.append(
                    f"{s.name}: custom operators {', '.join(sorted(s.custom))}: only a runtime that registers them "
                    "runs this file"
                )
            if s.dynamic:
                lines.append(f"{s.name}: dynamic shapes on {', '.join(s.dynamic)}: delegates may refuse them")
        return lines

    def to_json(self) -> dict:
        return {
            "file_bytes": self.file_bytes,
            "subgraphs": self.subgraphs,
            "weights": {k: {"tensors": n, "bytes": b} for k, (n, b) in sorted(self.weights.items())},
            "signatures": [
                {
                    "name": s.name,
                    "operators": dict(s.operators.most_common()),
                    "composites": dict(s.composites),
                    "custom": dict(s.custom),
                    "weights": {k: {"tensors": n, "bytes": b} for k, (n, b) in sorted(s.weights.items())},
                    "weight_bytes_read": s.bytes_read,
                    "dynamic": s.dynamic,
                    "inputs": s.inputs,
                    "outputs": s.outputs,
                }
                for s in self.signatures
            ],
            "warnings": self.warnings,
            "gpu_delegate": {"source": GPU_SOURCE, "ops_outside_its_list": self.gpu_outside()},
        }


def _shape_text(tensor) -> str:
    dims = tensor.ShapeSignatureAsNumpy() if tensor.ShapeSignatureLength() else tensor.ShapeAsNumpy()
    dims = dims if isinstance(dims, np.ndarray) else []
    kind = {0: "float32", 1: "float16", 2: "int32", 9: "int8", 4: "int64", 6: "bool"}.get(tensor.Type(), "?")
    return f"{kind}[{','.join(str(int(d)) for d in dims)}]"


def _composite_name(op) -> str:
    from ai_edge_litert import schema_py_generated as schema

    if op.BuiltinOptions2Type() != schema.BuiltinOptions2.StableHLOCompositeOptions:
        return "?"
    options = schema.StableHLOCompositeOptions()
    table = op.BuiltinOptions2()
    options.Init(table.Bytes, table.Pos)
    return (options.Name() or b"?").decode(errors="replace")


def summarize(tflite: bytes | mmap.mmap) -> ModelSummary:
    """Summarise a .tflite's bytes (a mapped file: nothing is copied)."""
    model = flat_model(tflite)
    signatures = []
    whole: dict[int, tuple[str, int]] = {}  # buffer -> (scheme, bytes)
    for k in range(model.SignatureDefsLength()):
        definition = model.SignatureDefs(k)
        summary = SignatureSummary(definition.SignatureKey().decode(), definition.SubgraphIndex())
        graph = model.Subgraphs(summary.subgraph)
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            name = operator_name(model, op)
            summary.operators[name] += 1
            if name == "STABLEHLO_COMPOSITE":
                summary.composites[_composite_name(op)] += 1
            elif name.startswith("custom:"):
                summary.custom[name.removeprefix("custom:")] += 1
        summary.bytes_read = weight_bytes_read(model, summary.subgraph)
        seen = set()
        for use in weight_uses(model, summary.subgraph):
            if use.buffer in seen:
                continue
            seen.add(use.buffer)
            scheme = use.scheme + (" (dequantized at load)" if use.dequantized else "")
            count, size = summary.weights.get(scheme, [0, 0])
            summary.weights[scheme] = [count + 1, size + use.bytes]
            whole[use.buffer] = (scheme, use.bytes)
        for entries, into in ((definition.Inputs, summary.inputs), (definition.Outputs, summary.outputs)):
            length = definition.InputsLength() if into is summary.inputs else definition.OutputsLength()
            for i in range(length):
                entry = entries(i)
                tensor = graph.Tensors(entry.TensorIndex())
                into[entry.Name().decode()] = _shape_text(tensor)
                if tensor.ShapeSignatureLength() and (tensor.ShapeSignatureAsNumpy() < 0).any():
                    summary.dynamic.append(entry.Name().decode())
        signatures.append(summary)
    totals: dict[str, list[int]] = {}
    for scheme, size in whole.values():
        count, total = totals.get(scheme, [0, 0])
        totals[scheme] = [count + 1, total + size]
    return ModelSummary(signatures, totals, len(tflite), model.SubgraphsLength())


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e5 else f"{n / 1e3:,.1f} kB"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def format_summary(summary: ModelSummary, label: str = "") -> str:
    lines = [f"{label}: {_mb(summary.file_bytes)}, {len(summary.signatures)} signatures, {summary.subgraphs} subgraphs"]
    lines += ["", "weights in the file (each shared weight once):"]
    lines += _table(
        ["scheme", "tensors", "size"],
        [[k, str(n), _mb(b)] for k, (n, b) in sorted(summary.weights.items(), key=lambda kv: -kv[1][1])],
    )
    names = sorted({n for s in summary.signatures for n in s.operators})
    lines += ["", "operators per signature:"]
    lines += _table(
        ["operator", *(s.name for s in summary.signatures)],
        [[n, *(str(s.operators.get(n, 0) or "-") for s in summary.signatures)] for n in names]
        + [["weights read per call", *(_mb(s.bytes_read) for s in summary.signatures)]],
    )
    composites = sorted({n for s in summary.signatures for n in s.composites})
    lines += ["", "composites: " + (", ".join(composites) if composites else "none")]
    custom = sorted({n for s in summary.signatures for n in s.custom})
    lines += ["custom operators: " + (", ".join(custom) if custom else "none")]
    warnings = summary.warnings
    lines += ["", "a runtime may not run:" if warnings else "nothing a LiteRT CPU runtime is known to refuse"]
    lines += [f"  {w}" for w in warnings]
    lines += ["", f"GPU: ops outside the {GPU_SOURCE} (not checked on a GPU here):"]
    for s in summary.signatures:
        outside = summary.gpu_outside()[s.name]
        total = sum(s.operators.values())
        names = ", ".join(f"{n} x{c}" for n, c in outside.items()) or "none"
        lines.append(f"  {s.name}: {sum(outside.values())} of {total} ops: {names}")
    return "\n".join(lines)
