"""GGUF checkpoints (llama.cpp), read through the `gguf` package and dequantized per tensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge_models.loader.errors import CheckpointError
from edge_models.loader.gguf_config import ROPE_TENSORS

# llama.cpp stores Gemma's RMSNorm weights as 1 + w; our zero-centred norm wants w.
_NORM_OFFSET_ARCHS = {"gemma", "gemma2", "gemma3"}
_NORM_SUFFIXES = ("_norm.weight",)


class GGUFSource:
    def __init__(self, path: Path) -> None:
        from gguf import GGUFReader

        self.path = path
        try:
            self._reader = GGUFReader(path)
        except Exception as e:
            raise CheckpointError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from None
        self._tensors = {t.name: t for t in self._reader.tensors}
        self.architecture = self.metadata("general.architecture") or ""
        self._heads = self.metadata(f"{self.architecture}.attention.head_count")
        self._kv_heads = self.metadata(f"{self.architecture}.attention.head_count_kv") or self._heads

    def metadata(self, key: str):
        field = self._reader.fields.get(key)
        if field is None:
            return None
        return field.contents()

    def has_tensor(self, name: str) -> bool:
        return name in self._tensors

    def names(self) -> list[str]:
        # RoPE settings stored as tensors are the config's (gguf_config reads them), not weights to load.
        return [n for n in self._tensors if n not in ROPE_TENSORS]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in reversed(self._tensors[name].shape))

    def get(self, name: str) -> torch.Tensor:
        from gguf.quants import dequantize

        t = self._tensors[name]
        try:
            array = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        except Exception as e:
            raise CheckpointError(f"{self.path}: tensor {name!r} cannot be dequantized ({e})") from None
        tensor = torch.from_numpy(array.reshape(self.shape(name)).copy())
        if self.architecture in _NORM_OFFSET_ARCHS and name.endswith(_NORM_SUFFIXES):
            tensor = tensor - 1.0
        if self.architecture == "llama" and self._heads:
            # llama.cpp interleaves the rotary halves of q and k; undo it for HF's layout.
            if name.endswith(("attn_q.weight", "attn_q.bias")):
                tensor = _unpermute(tensor, self._heads)
            elif name.endswith(("attn_k.weight", "attn_k.bias")):
                tensor = _unpermute(tensor, self._kv_heads)
        return tensor


def _unpermute(w: torch.Tensor, heads: int) -> torch.Tensor:
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)
