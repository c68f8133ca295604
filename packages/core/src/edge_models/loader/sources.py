"""Read-only views of checkpoint files: tensor names, shapes, and tensors on demand.

Every source hands out one tensor at a time, so the loader never holds a second
full copy of the weights. Safetensors and GGUF are memory-mapped.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Protocol

import torch

from edge_models.hf.hub_cache import resolve_checkpoint
from edge_models.loader.errors import CheckpointError


class TensorSource(Protocol):
    path: Path

    def names(self) -> list[str]: ...

    def shape(self, name: str) -> tuple[int, ...]: ...

    def get(self, name: str) -> torch.Tensor: ...


_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


class SafetensorsSource:
    """One `.safetensors` file, or a sharded directory with `model.safetensors.index.json`."""

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open

        self.path = path
        files = self._files(path)
        self._handles = {}
        self._where: dict[str, Path] = {}
        self._entries: dict[str, tuple[Path, int, dict]] = {}  # name -> (file, data start, header entry)
        for f in files:
            header_len, header = self._check_header(f)
            for name, entry in header.items():
                if name != "__metadata__":
                    self._entries[name] = (f, 8 + header_len, entry)
            try:
                handle = safe_open(str(f), framework="pt")
            except Exception as e:  # safetensors raises its own untyped errors
                raise CheckpointError(f"{f}: not a readable safetensors file ({e})") from None
            self._handles[f] = handle
            for name in handle.keys():
                self._where[name] = f

    @staticmethod
    def _files(path: Path) -> list[Path]:
        if path.is_file():
            return [path]
        index = path / "model.safetensors.index.json"
        if index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (ValueError, KeyError) as e:
                raise CheckpointError(f"{index}: not a valid safetensors index ({e})") from None
            files = sorted({path / shard for shard in weight_map.values()})
            missing = [str(f) for f in files if not f.exists()]
            if missing:
                raise CheckpointError(f"{index} names shards that are missing: {', '.join(missing)}")
            return files
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"{path}: no *.safetensors files")
        return files

    @staticmethod
    def _check_header(f: Path) -> tuple[int, dict]:
        # A truncated file otherwise fails later, deep in a read, with no file name.
        size = f.stat().st_size
        with open(f, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{f}: truncated safetensors file ({size} bytes)")
            (header_len,) = struct.unpack("<Q", head)
            if 8 + header_len > size:
                raise CheckpointError(f"{f}: truncated or corrupt safetensors header")
            try:
                header = json.loads(fh.read(header_len))
            except ValueError:
                raise CheckpointError(f"{f}: corrupt safetensors header (not JSON)") from None
        data_end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + header_len + data_end > size:
            raise CheckpointError(
                f"{f}: truncated safetensors file: header promises {8 + header_len + data_end} bytes, file has {size}"
            )
        return header_len, header

    def names(self) -> list[str]:
        return list(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._handles[self._where[name]].get_slice(name).get_shape())

    def get(self, name: str) -> torch.Tensor:
        return self._handles[self._where[name]].get_tensor(name)

    def read_copy(self, name: str) -> torch.Tensor:
        """The tensor read into memory of its own with pread: no mapping keeps its pages resident afterwards, so
        reading every weight once costs one tensor of memory, not the whole file."""
        f, data_start, entry = self._entries[name]
        dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:
            return self.get(name).clone()
        begin, end = entry["data_offsets"]
        return self._pread(f, name, data_start + begin, end - begin, dtype).reshape(entry["shape"])

    def read_rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows [start, stop) of a tensor (along its first dimension), read like `read_copy`: only those bytes."""
        f, data_start, entry = self._entries[name]
        dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
        shape = entry["shape"]
        if dtype is None:
            return self.get(name)[start:stop].clone()
        row_bytes = math.prod(shape[1:]) * dtype.itemsize
        begin = entry["data_offsets"][0] + start * row_bytes
        return self._pread(f, name, data_start + begin, (stop - start) * row_bytes, dtype).reshape(
            stop - start, *shape[1:]
        )

    @staticmethod
    def _pread(f: Path, name: str, at: int, size: int, dtype: torch.dtype) -> torch.Tensor:
        fd = os.open(f, os.O_RDONLY)
        try:
            data = bytearray(size)
            view, done = memoryview(data), 0
            while done < size:
                n = os.preadv(fd, [view[done:]], at + done)
                if n <= 0:
                    raise CheckpointError(f"{f}: tensor {name!r} is cut short")
                done += n
        finally:
            os.close(fd)
        return torch.frombuffer(data, dtype=dtype) if size else torch.empty(0, dtype=dtype)


class TorchPickleSource:
    """`.bin` / `.pt` state dicts (or a directory of `pytorch_model*.bin` shards)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        files = [path] if path.is_file() else sorted(path.glob("pytorch_model*.bin"))
        if not files:
            raise CheckpointError(f"{path}: no pytorch_model*.bin files")
        self._tensors: dict[str, torch.Tensor] = {}
        for f in files:
            try:
                state = torch.load(f, map_location="cpu", weights_only=True, mmap=True)
            except Exception as e:
                raise CheckpointError(
                    f"{f}: cannot be read as a PyTorch checkpoint ({type(e).__name__}: {e})"
                ) from None
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
            if not isinstance(state, dict):
                raise CheckpointError(f"{f}: holds a {type(state).__name__}, expected a dict of tensors")
            self._tensors.update({k: v for k, v in state.items() if isinstance(v, torch.Tensor)})

    def names(self) -> list[str]:
        return list(self._tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._tensors[name].shape)

    def get(self, name: str) -> torch.Tensor:
        return self._tensors[name]


def open_checkpoint(path: str | Path) -> TensorSource:
    """Pick the reader for a file or an HF checkpoint directory (or a hub id in the local cache)."""
    path = resolve_checkpoint(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    if suffix == ".gguf":
        from edge_models.loader.gguf_source import GGUFSource

        return GGUFSource(path)
    if suffix == ".safetensors":
        return SafetensorsSource(path)
    if suffix in (".bin", ".pt", ".pth"):
        return TorchPickleSource(path)
    if path.is_dir():
        if any(path.glob("*.safetensors")) or (path / "model.safetensors.index.json").exists():
            return SafetensorsSource(path)
        if any(path.glob("pytorch_model*.bin")):
            return TorchPickleSource(path)
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            from edge_models.loader.gguf_source import GGUFSource

            return GGUFSource(ggufs[0])
        raise CheckpointError(f"{path}: no *.safetensors, pytorch_model*.bin or single *.gguf file found")
    raise CheckpointError(f"{path}: unknown checkpoint format {suffix!r} (expected .safetensors, .bin, .pt or .gguf)")
