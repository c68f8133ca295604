"""The text decoder of a multimodal checkpoint, under the tensor names of its text-only class.

Image-text(-audio) checkpoints (Gemma 4's `Gemma4ForConditionalGeneration`) keep the language model under
`model.language_model.` beside vision and audio towers. A `TextTowerSource` shows the decoder's tensors as
`model.*`, keeps the LM head, and leaves the other towers out, so a text-only family's TensorNames read it unchanged.
"""

from __future__ import annotations

from collections import Counter

import torch

from edge_models.loader.sources import TensorSource

TEXT_PREFIX = "model.language_model."


class TextTowerSource:
    def __init__(self, source: TensorSource, prefix: str = TEXT_PREFIX, renamed: str = "model.") -> None:
        self.path = source.path
        self._source = source
        self._original: dict[str, str] = {}
        left_out: Counter[str] = Counter()
        for name in source.names():
            if name.startswith(prefix):
                self._original[renamed + name[len(prefix) :]] = name
            elif name.startswith("lm_head."):
                self._original[name] = name
            else:
                left_out[".".join(name.split(".")[:2])] += 1
        # The towers not read, {"model.vision_tower": tensor count, ...}: the caller says what it left out.
        self.left_out = dict(sorted(left_out.items()))
        if hasattr(source, "read_copy"):
            self.read_copy = lambda name: source.read_copy(self._original[name])
        if hasattr(source, "read_rows"):
            self.read_rows = lambda name, start, stop: source.read_rows(self._original[name], start, stop)

    def names(self) -> list[str]:
        return list(self._original)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._source.shape(self._original[name])

    def get(self, name: str) -> torch.Tensor:
        return self._source.get(self._original[name])

    def describe_left_out(self) -> str:
        towers = ", ".join(f"{tower} ({count} tensors)" for tower, count in self.left_out.items())
        return f"{self.path}: reading the text decoder ({TEXT_PREFIX}*); left out: {towers or 'nothing'}"


def text_tower(source: TensorSource) -> TensorSource:
    """`source` itself, or its text decoder when it is a multimodal checkpoint (saying what is left out)."""
    if not any(name.startswith(TEXT_PREFIX) for name in source.names()):
        return source
    from edge_models.io import console

    tower = TextTowerSource(source)
    console.err(tower.describe_left_out())
    return tower
