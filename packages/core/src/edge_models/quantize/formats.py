"""How the low-memory writer stores one weight: its tensor type, its quantization, and the bytes it writes.

Each encoding repeats ai-edge-quantizer's arithmetic step by step (float32 throughout, scales floored at 1e-9,
round half to even), so a file written here holds the same bytes as one that ai-edge-quantizer produced from
litert-torch's float flatbuffer; the tests compare the two.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge_models.quantize.recipes import Scheme

Storage = Literal["float32", "float16", "int8", "int4"]


@dataclass(frozen=True)
class WeightFormat:
    storage: Storage
    # Weight-only schemes: a DEQUANTIZE op turns the stored weight back into float32 for its consumer.
    dequantize: bool = False
    block_size: int | None = None  # int4: one float16 scale per block of this many inputs


@dataclass
class EncodedWeight:
    # The buffer's bytes (uint8, C order), or an iterator of them in pieces (`row_chunks.encode_in_chunks`).
    data: np.ndarray | Iterator[np.ndarray]
    row_scales: np.ndarray | None = None  # float32, one per output row (int8)
    block_scales: np.ndarray | None = None  # float16 [rows, cols / block] (int4), a buffer of its own

    def buffers(self) -> list[np.ndarray]:
        """The bytes of each buffer, in `stored_bytes` order."""
        return [self.data] if self.block_scales is None else [self.data, _bytes(self.block_scales)]


def format_for(scheme: Scheme) -> WeightFormat | None:
    """The format that stores `scheme`, or None when only ai-edge-quantizer can write it."""
    if scheme.mode == "float":
        return {32: WeightFormat("float32"), 16: WeightFormat("float16", dequantize=True)}.get(scheme.bits)
    if scheme.bits == 8 and scheme.block_size is None:
        return WeightFormat("int8", dequantize=scheme.mode == "weight_only")
    if scheme.bits == 4 and scheme.mode == "dynamic" and scheme.block_size:
        return WeightFormat("int4", block_size=scheme.block_size)
    return None


def stored_bytes(fmt: WeightFormat, rows: int, cols: int) -> list[int]:
    """Sizes of the buffers `encode` returns for a [rows, cols] weight: the data, then int4's block scales."""
    if fmt.storage == "int4":
        return [(rows * cols + 1) // 2, rows * (cols // fmt.block_size) * 2]
    return [rows * cols * {"float32": 4, "float16": 2, "int8": 1}[fmt.storage]]


def encode(weight: np.ndarray, fmt: WeightFormat) -> EncodedWeight:
    """`weight` (float32 [rows, cols]) in `fmt`."""
    if fmt.storage == "float32":
        return EncodedWeight(_bytes(weight))
    if fmt.storage == "float16":
        return EncodedWeight(_bytes(weight.astype(np.float16)))
    if fmt.storage == "int8":
        q, scale = quantize_int8_rows(weight)
        return EncodedWeight(_bytes(q), row_scales=scale)
    q, scale = quantize_int4_blocks(weight, fmt.block_size)
    return EncodedWeight(pack_int4(q), block_scales=scale)


def quantize_int8_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8, one scale per row, narrow range [-127, 127]."""
    bound = np.maximum(np.abs(weight.min(axis=1, keepdims=True)), np.abs(weight.max(axis=1, keepdims=True)))
    scale = np.maximum(bound, np.float32(1e-9)) / 127
    q = np.divide(weight, scale)
    np.clip(np.rint(q, out=q), -127, 127, out=q)
    return q.astype(np.int8), scale.reshape(-1).astype(np.float32)


def quantize_int4_blocks(weight: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int4 over blocks of `block` inputs, full range [-8, 7] (below 8 bits the quantizer keeps -8).
    Scales are rounded to bfloat16's 8-bit mantissa and stored as float16, and quantizing uses the rounded ones."""
    import ml_dtypes

    rows, cols = weight.shape
    blocks = weight.reshape(rows, cols // block, block)
    bound = np.maximum(np.abs(blocks.min(axis=2, keepdims=True)), np.abs(blocks.max(axis=2, keepdims=True)))
    scale = np.maximum(bound, np.float32(1e-9)) / 7
    scale = scale.astype(ml_dtypes.bfloat16).astype(np.float16).astype(np.float32)
    # The 1e-9 floor underflows float16, so an all-zero block has scale 0; its values are 0 (the quantizer's
    # 0/0 casts to 0 as well).
    q = np.divide(blocks, scale, out=np.zeros_like(blocks), where=scale > 0)
    np.clip(np.rint(q, out=q), -8, 7, out=q)
    return q.astype(np.int8).reshape(rows, cols), scale.reshape(rows, cols // block).astype(np.float16)


def pack_int4(q: np.ndarray) -> np.ndarray:
    """Two int4 values per byte, the first in the low nibble (TFLite's INT4 layout)."""
    flat = q.reshape(-1).view(np.uint8)
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    return ((flat[0::2] & 0x0F) | ((flat[1::2] & 0x0F) << 4)).astype(np.uint8)


def _bytes(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array).view(np.uint8).reshape(-1)


def decode(encoded: EncodedWeight, fmt: WeightFormat, shape: tuple[int, int]) -> np.ndarray:
    """The float32 weight a runtime computes with from `encoded` (the inverse of `encode`, up to its rounding)."""
    rows, cols = shape
    if fmt.storage == "float32":
        return encoded.data.view(np.float32).reshape(rows, cols).copy()
    if fmt.storage == "float16":
        return encoded.data.view(np.float16).reshape(rows, cols).astype(np.float32)
    if fmt.storage == "int8":
        return encoded.data.view(np.int8).reshape(rows, cols).astype(np.float32) * encoded.row_scales[:, None]
    low = (encoded.data & 0x0F).astype(np.int8)
    high = (encoded.data >> 4).astype(np.int8)
    values = np.stack([low, high], axis=1).reshape(-1)[: rows * cols]
    values = np.where(values > 7, values - 16, values).astype(np.float32).reshape(rows, cols)
    return values * np.repeat(encoded.block_scales.astype(np.float32), fmt.block_size, axis=1)
