"""A zip writer for `.task` bundles: stored entries whose data starts on 4-byte boundaries.

Written by hand rather than through `zipfile` so the alignment needs no private hooks and big
models stream from disk. For entries under 2 GiB the bytes equal what MediaPipe's bundler
(`zipfile` plus an alignment hook) writes for the same entries and timestamp, including its
quirk of padding 4 bytes when a header already ends aligned.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from edge_models.formats.task import ALIGNMENT

# Reproducible bundles by default: the earliest time a zip can record.
DEFAULT_DATE_TIME = (1980, 1, 1, 0, 0, 0)

_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")
_END64 = struct.Struct("<4sQ2H2L4Q")
_END64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LIMIT = (1 << 31) - 1  # where Python's zipfile (and so MediaPipe) switches to zip64
_VERSION, _VERSION64 = 20, 45
_UNIX = 3
_MODE_RW = 0o600 << 16  # external attributes zipfile gives `writestr` entries
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """One entry: its name and either bytes or a file to stream."""

    name: str
    data: bytes | None = None
    path: Path | None = None

    def size(self) -> int:
        return len(self.data) if self.data is not None else os.path.getsize(self.path)  # type: ignore[arg-type]

    def chunks(self) -> Iterable[bytes]:
        if self.data is not None:
            yield self.data
            return
        with open(self.path, "rb") as f:  # type: ignore[arg-type]
            while chunk := f.read(_CHUNK):
                yield chunk


@dataclass
class _Written:
    name: bytes
    crc: int
    size: int
    header_offset: int
    zip64: bool


def _dos(date_time: tuple[int, ...]) -> tuple[int, int]:
    y, mo, d, h, mi, s = date_time
    return (h << 11 | mi << 5 | s // 2), ((y - 1980) << 9 | mo << 5 | d)


def _local_header(name: bytes, crc: int, size: int, zip64: bool, dostime: int, dosdate: int) -> bytes:
    extra = b""
    version = _VERSION
    if zip64:
        extra = struct.pack("<HHQQ", 1, 16, size, size)
        size32 = 0xFFFFFFFF
        version = _VERSION64
    else:
        size32 = size
    return (
        _LOCAL.pack(b"PK\x03\x04", version, 0, 0, 0, dostime, dosdate, crc, size32, size32, len(name), len(extra))
        + name
        + extra
    )


def write_aligned_zip(out: BinaryIO, sources: list[Source], date_time: tuple[int, ...] = DEFAULT_DATE_TIME) -> None:
    """Write `sources` as stored, 4-byte-aligned entries to the seekable stream `out`."""
    dostime, dosdate = _dos(date_time)
    written: list[_Written] = []
    for src in sources:
        name = src.name.encode("ascii")  # entry names are plain ASCII: no UTF-8 flag to match
        size = src.size()
        zip64 = size > _ZIP64_LIMIT
        header_len = len(_local_header(name, 0, size, zip64, dostime, dosdate))
        offset = out.tell()
        # Same arithmetic as MediaPipe's writer: 1..ALIGNMENT bytes of padding, never 0.
        out.write(b"\0" * (ALIGNMENT - (offset + header_len) % ALIGNMENT))
        header_offset = out.tell()
        out.write(b"\0" * header_len)  # placeholder until the CRC is known
        crc = 0
        for chunk in src.chunks():
            crc = zlib.crc32(chunk, crc)
            out.write(chunk)
        end = out.tell()
        if end - header_offset - header_len != size:
            raise OSError(f"{src.name}: source changed size while it was written")
        out.seek(header_offset)
        out.write(_local_header(name, crc, size, zip64, dostime, dosdate))
        out.seek(end)
        written.append(_Written(name, crc, size, header_offset, zip64))
    _central_directory(out, written, dostime, dosdate)


def _central_directory(out: BinaryIO, written: list[_Written], dostime: int, dosdate: int) -> None:
    start = out.tell()
    for w in written:
        fields: list[int] = []
        size32 = w.size
        if w.size > _ZIP64_LIMIT:
            fields += [w.size, w.size]
            size32 = 0xFFFFFFFF
        offset32 = w.header_offset
        if w.header_offset > _ZIP64_LIMIT:
            fields.append(w.header_offset)
            offset32 = 0xFFFFFFFF
        extra = struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields) if fields else b""
        version = _VERSION64 if (fields or w.zip64) else _VERSION
        out.write(
            _CENTRAL.pack(
                b"PK\x01\x02",
                version,
                _UNIX,
                version,
                0,
                0,
                0,
                dostime,
                dosdate,
                w.crc,
                size32,
                size32,
                len(w.name),
                len(extra),
                0,
                0,
                0,
                _MODE_RW,
                offset32,
            )
            + w.name
            + extra
        )
    end = out.tell()
    count, cd_size = len(written), end - start
    if count > 0xFFFF or start > _ZIP64_LIMIT or cd_size > _ZIP64_LIMIT:
        out.write(_END64.pack(b"PK\x06\x06", 44, _VERSION64, _VERSION64, 0, 0, count, count, cd_size, start))
        out.write(_END64_LOCATOR.pack(b"PK\x06\x07", 0, end, 1))
        count, cd_size, start = min(count, 0xFFFF), min(cd_size, 0xFFFFFFFF), min(start, 0xFFFFFFFF)
    out.write(_END.pack(b"PK\x05\x06", 0, 0, count, count, cd_size, start, 0))
