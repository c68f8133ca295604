"""The tensors a subgraph reads, from the flatbuffer (flat API: nothing is copied out of a mapped file).

Operators name their inputs, outputs and intermediates; int4 blocks' scales (and zero points, where a writer stores
them) are tensors of their own that no operator names, referenced from the weight's `BlockwiseQuantization`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from edge_models.tflite.operator_codes import builtin_operator


def _indices(table, field: str) -> list[int]:
    return [getattr(table, field)(i) for i in range(getattr(table, f"{field}Length")())]


def quantization_tensors(tensor) -> set[int]:
    """The tensors a tensor's quantization parameters refer to: an int4 weight's block scales and zero points."""
    from ai_edge_litert import schema_py_generated as schema

    quantization = tensor.Quantization()
    if quantization is None or quantization.DetailsType() != schema.QuantizationDetails.BlockwiseQuantization:
        return set()
    blocks = schema.BlockwiseQuantization()
    blocks.Init(quantization.Details().Bytes, quantization.Details().Pos)
    return {blocks.Scales(), blocks.ZeroPoints()} - {-1}


def tensors_read(model, subgraph: int) -> set[int]:
    """Every tensor of `model`'s subgraph `subgraph` an operator takes, gives or uses in between, the subgraph's own
    inputs and outputs, and the tensors their quantization refers to."""
    graph = model.Subgraphs(subgraph)
    found = {t for ts in (_indices(graph, "Inputs"), _indices(graph, "Outputs")) for t in ts}
    for o in range(graph.OperatorsLength()):
        op = graph.Operators(o)
        for field in ("Inputs", "Outputs", "Intermediates"):
            found.update(_indices(op, field))
    found -= {-1}  # an optional input left out
    for t in list(found):
        found |= quantization_tensors(graph.Tensors(t))
    return found


def lookup_tables() -> dict[int, int]:
    """Which input of a lookup operator holds the table it reads a row at a time (EMBEDDING_LOOKUP takes the ids
    first)."""
    from ai_edge_litert import schema_py_generated as schema

    return {schema.BuiltinOperator.EMBEDDING_LOOKUP: 1, schema.BuiltinOperator.GATHER: 0}


@dataclass(frozen=True)
class ConstantInput:
    operator: int  # the `BuiltinOperator` taking it
    position: int  # which of its inputs
    tensor: object  # the flat-API tensor
    buffer: int


def constant_inputs(model, graph) -> Iterator[ConstantInput]:
    """Every operator input of `graph` (a flat-API subgraph of `model`) that has a buffer, in operator order."""
    for o in range(graph.OperatorsLength()):
        op = graph.Operators(o)
        code = model.OperatorCodes(op.OpcodeIndex())
        operator = builtin_operator(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        for i in range(op.InputsLength()):
            if op.Inputs(i) < 0 or not (tensor := graph.Tensors(op.Inputs(i))).Buffer():
                continue
            yield ConstantInput(operator, i, tensor, tensor.Buffer())


def buffer_bytes(model, index: int) -> int:
    """The size of buffer `index`'s data, after the flatbuffer or inside it."""
    buffer = model.Buffers(index)
    return buffer.Size() if buffer.Offset() > 1 else buffer.DataLength()


def weight_bytes_read(model, subgraph: int) -> int:
    """Bytes of constant data (weights) subgraph `subgraph` reads each time it runs: every buffer an operator takes,
    with its int4 scales, except those only looked up a row at a time (an untied embedding, the head rows a shortlist
    scores)."""
    graph = model.Subgraphs(subgraph)
    tables = lookup_tables()
    read, looked_up = set(), set()
    for constant in constant_inputs(model, graph):
        found = looked_up if tables.get(constant.operator) == constant.position else read
        found.add(constant.buffer)
        found |= {graph.Tensors(t).Buffer() for t in quantization_tensors(constant.tensor)}
    return sum(buffer_bytes(model, b) for b in read)
