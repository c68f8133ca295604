"""Pack a schema object-API model with its buffers after the flatbuffer, at aligned offsets.

A buffer's offset and size are fixed-width fields, so packing once with placeholder offsets gives the flatbuffer's
final length; the buffers are then placed after it and the model packed again with the real offsets. Every file
written here (converted models, pruned ones, LoRA adapters) is laid out this way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

ALIGN = 16  # ai-edge-quantizer aligns offset buffers to 16 bytes; so do we
# Any value that is not the field's default (0, which packing leaves out) packs to the same length as the real one.
_PLACEHOLDER_OFFSET = 2**62  # a Python int: int32 arithmetic would overflow past 2 GiB


def aligned(n: int, to: int = ALIGN) -> int:
    return -(-n // to) * to


def pack_model(model) -> bytes:
    """A schema object-API model as .tflite flatbuffer bytes."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def has_offset(buffer) -> bool:
    """Whether an object-API buffer's data lies after the flatbuffer (at an offset from the file's start; 0 and 1
    mean it has none there)."""
    return buffer.offset is not None and buffer.offset > 1


@dataclass(frozen=True)
class Layout:
    header_bytes: int  # the packed flatbuffer's length
    end: int  # the file's length: the last buffer's end, aligned


def lay_out(model, buffers: Sequence, align: int = ALIGN) -> Layout:
    """Give `buffers` (of `model`, their sizes set) offsets one after another after the flatbuffer, each aligned."""
    for buffer in buffers:
        buffer.offset = _PLACEHOLDER_OFFSET
    header = len(pack_model(model))
    position = aligned(header, align)
    for buffer in buffers:
        buffer.offset = position
        position = aligned(position + buffer.size, align)
    return Layout(header, position)


def pack_laid_out(model, layout: Layout) -> bytes:
    """`model` packed with the offsets `lay_out` gave it (anything else changed since must keep its length)."""
    head = pack_model(model)
    if len(head) != layout.header_bytes:
        raise RuntimeError("flatbuffer header changed size between packings")
    return head


def write_buffers(out: BinaryIO, start: int, placed: Iterable[tuple[object, object]], end: int) -> None:
    """Write each (buffer, payload) at `start` + the buffer's offset, in order, zeros between them and up to
    `start` + `end`. The header (`start` up to the first buffer) must be written already, or a placeholder for it.
    A payload is bytes-like, or an iterator of bytes-like pieces made while it is written (a weight too big to hold
    encoded at once)."""
    for buffer, payload in placed:
        pieces = payload if isinstance(payload, Iterator) else None
        if pieces is None and memoryview(payload).nbytes != buffer.size:
            raise RuntimeError(f"buffer at {buffer.offset}: {memoryview(payload).nbytes} bytes, planned {buffer.size}")
        gap = start + buffer.offset - out.tell()
        if gap < 0:
            raise RuntimeError(f"buffer at {buffer.offset} overlaps the one before it")
        out.write(b"\0" * gap)
        if pieces is None:
            out.write(payload)
            continue
        size = 0
        for piece in pieces:
            out.write(piece)
            size += memoryview(piece).nbytes
        if size != buffer.size:
            raise RuntimeError(f"buffer at {buffer.offset}: {size} bytes in pieces, planned {buffer.size}")
    out.write(b"\0" * (start + end - out.tell()))


@functools.cache
def shared_quantization() -> type:
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


def repacked(model, copies: Sequence[tuple[object, int]], data) -> Callable[[BinaryIO], None]:
    """A writer of `model` (a changed copy of the file in `data`) whose buffers in `copies` keep their bytes, read
    from their offsets in `data`: laid out and packed once here, written by the returned function."""
    layout = lay_out(model, [buffer for buffer, _ in copies])
    head = pack_laid_out(model, layout)

    def write(out: BinaryIO) -> None:
        start = out.tell()
        out.write(head)
        write_buffers(out, start, ((b, data[at : at + b.size]) for b, at in copies), layout.end)

    return write
