"""Weights too big to hold in float32 at once, quantized and written a block of rows at a time.

Gemma 4 E2B's per-layer table is [262,144, 8,960]: 9.4 GB in float32, more than this writer may hold beside the rest
of a conversion. Every stored format is row-independent (int8 has one scale per row, int4's blocks run along a row,
float16/float32 are element-wise), so encoding `ROW_CHUNK_BYTES` of float32 rows at a time and writing each piece as
it is made gives the bytes `formats.encode` gives for the whole tensor, from one chunk of memory.

A checkpoint reader hands such a weight out as `RowRanges` (its rows read on demand, one range at a time) instead of
a float32 array; anything that needs it whole calls `np.asarray` on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from edge_models.quantize.formats import EncodedWeight, WeightFormat, encode

# float32 bytes of one chunk; a weight above it is read (`RowRanges`) and encoded (`encode_in_chunks`) in chunks.
ROW_CHUNK_BYTES = 256 << 20


def is_large(rows: int, cols: int) -> bool:
    return rows * cols * 4 > ROW_CHUNK_BYTES


def chunk_rows(cols: int) -> int:
    return max(1, ROW_CHUNK_BYTES // (4 * cols))


class RowRanges:
    """A [rows, cols] weight whose float32 rows are read a range at a time by `read(start, stop)`.

    Behaves as a float32 array where it matters to the weight readers: `shape`, row slices (`w[:k]`, `w[k:]`, which
    stay lazy) and `np.asarray(w)` (the whole weight, for the few consumers that need it so)."""

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, shape: tuple[int, int], read: Callable[[int, int], np.ndarray]) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self._read = read

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a float32 array of their own."""
        if not 0 <= start <= stop <= self.shape[0]:
            raise IndexError(f"rows {start}:{stop} of a weight with {self.shape[0]}")
        data = np.asarray(self._read(start, stop), dtype=np.float32)
        if data.shape != (stop - start, self.shape[1]):
            raise ValueError(f"rows {start}:{stop} came back as {list(data.shape)}")
        return data

    def __getitem__(self, key: slice) -> RowRanges:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("RowRanges takes a contiguous row slice only")
        start, stop, _ = key.indices(self.shape[0])
        stop = max(start, stop)
        return RowRanges((stop - start, self.shape[1]), lambda a, b: self._read(start + a, start + b))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = np.empty(self.shape, np.float32)
        step = chunk_rows(self.shape[1])
        for start in range(0, self.shape[0], step):
            stop = min(self.shape[0], start + step)
            whole[start:stop] = self.rows(start, stop)
        return whole if dtype is None else whole.astype(dtype, copy=False)


def encode_in_chunks(weight: np.ndarray | RowRanges, fmt: WeightFormat) -> EncodedWeight:
    """`encode(weight, fmt)` made `chunk_rows` rows at a time: its data is an iterator of pieces, each encoded as the
    writer asks for it, and its scales arrays fill in as the pieces are made (read them once the data is written)."""
    rows, cols = weight.shape
    read = weight.rows if isinstance(weight, RowRanges) else (lambda a, b: np.asarray(weight[a:b], np.float32))
    step = chunk_rows(cols)
    if fmt.storage == "int4" and cols % 2:
        raise ValueError(f"int4 rows of odd length ({cols}) do not start on a byte")
    row_scales = np.empty(rows, np.float32) if fmt.storage == "int8" else None
    block_scales = np.empty((rows, cols // fmt.block_size), np.float16) if fmt.storage == "int4" else None

    def pieces() -> Iterator[np.ndarray]:
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            part = encode(read(start, stop), fmt)
            if row_scales is not None:
                row_scales[start:stop] = part.row_scales
            if block_scales is not None:
                block_scales[start:stop] = part.block_scales
            yield part.data

    return EncodedWeight(pieces(), row_scales=row_scales, block_scales=block_scales)
