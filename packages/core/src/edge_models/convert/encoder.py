"""PyTorch encoder -> one .tflite with an `embed_<N>` signature per sequence length.

Each signature takes `input_ids` and `attention_mask` (int32, [1, N]; 1 = token, 0 = padding) and returns
`embedding` ([1, D], pooled as the checkpoint says). Weights go through litert-torch's own lowering and
ai-edge-quantizer (an embedding model is small: all-MiniLM-L6-v2 is 23M parameters), not the decoder's streaming
writer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from edge_models.convert.converter import ConvertResult
from edge_models.convert.small import lower_and_write, plain_recipe
from edge_models.layers.encoder import Encoder

DEFAULT_LENGTHS = (32, 128, 256)


class EmbedSignature(nn.Module):
    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": self.encoder.embed(input_ids, attention_mask)}


def signature_name(length: int) -> str:
    return f"embed_{length}"


def check_lengths(encoder: Encoder, lengths: Sequence[int] | None) -> tuple[int, ...]:
    """The signature lengths, sorted; None: the default ones the model's position embeddings allow."""
    limit = encoder.config.max_positions
    if lengths is None:
        return tuple(n for n in DEFAULT_LENGTHS if n <= limit) or (limit,)
    lengths = tuple(sorted(set(lengths)))
    if not lengths or lengths[0] < 1:
        raise ValueError("embed lengths must be positive, e.g. 32,128,256")
    if lengths[-1] > limit:
        raise ValueError(f"embed length {lengths[-1]} exceeds the model's {limit} position embeddings")
    return lengths


def convert_encoder(
    encoder: Encoder,
    output: str | Path,
    lengths: Sequence[int] | None = None,
    recipe: str | None = "int8",
    progress: Callable[[str], None] | None = None,
) -> ConvertResult:
    """Write `output` with one `embed_<N>` signature per length (default: 32, 128, 256 as far as the model's
    positions reach), quantized by `recipe` (not calibrated schemes)."""
    import litert_torch

    say = progress or (lambda _m: None)
    started = time.perf_counter()
    parsed = plain_recipe(recipe, "encoders")
    lengths = check_lengths(encoder, lengths)
    signature = EmbedSignature(encoder.eval()).eval()
    converter = litert_torch
    for n in lengths:
        sample = {
            "input_ids": torch.zeros((1, n), dtype=torch.int32),
            "attention_mask": torch.ones((1, n), dtype=torch.int32),
        }
        converter = converter.signature(signature_name(n), signature, sample_kwargs=sample)
    return lower_and_write(converter, parsed, output, [signature_name(n) for n in lengths], say, started)
