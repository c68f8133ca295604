"""PyTorch encoder-decoder -> one .tflite with `encode_<N>` and `decode` signatures.

`encode_<N>` takes `input_ids` and `attention_mask` (int32 [1, N]) and returns every decoder block's cross-attention
keys and values (`ck_<i>`, `cv_<i>`, [1, heads, E, head_dim], zero beyond N) and `cross_mask` ([1, E], 1 = encoder
token), E being the longest encode length. `decode` takes one token at `input_pos`, the self-attention caches
`k_<i>` / `v_<i>` ([1, heads, S, head_dim], in place: returned updated, as the decoder's files do) and the encode
outputs, and returns `logits` [1, 1, vocab].
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edge_models.convert.converter import ConvertResult
from edge_models.convert.export import register_lowerings
from edge_models.convert.small import lower_and_write, plain_recipe
from edge_models.layers.seq2seq import Seq2Seq

DEFAULT_ENCODE_LENGTHS = (32, 128)
DEFAULT_DECODE_CACHE = 128


class EncodeSignature(nn.Module):
    def __init__(self, model: Seq2Seq, longest: int) -> None:
        super().__init__()
        self.model, self.longest = model, longest

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        pad = self.longest - input_ids.shape[1]
        out = {}
        for i, (k, v) in enumerate(self.model.cross_cache(self.model.encode(input_ids, attention_mask))):
            out[f"ck_{i}"] = F.pad(k, (0, 0, 0, pad))
            out[f"cv_{i}"] = F.pad(v, (0, 0, 0, pad))
        out["cross_mask"] = F.pad(attention_mask.to(torch.float32), (0, pad))
        return out


class DecodeSignature(nn.Module):
    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens, input_pos, cross_mask, **caches) -> dict[str, torch.Tensor]:
        n = self.model.config.num_decoder_layers
        cache = [(caches[f"k_{i}"], caches[f"v_{i}"]) for i in range(n)]
        cross = [(caches[f"ck_{i}"], caches[f"cv_{i}"]) for i in range(n)]
        logits, cache = self.model.decode(tokens, input_pos, cache, cross, cross_mask)
        out = {"logits": logits}
        for i, (k, v) in enumerate(cache):
            out[f"k_{i}"], out[f"v_{i}"] = k, v
        return out


def decode_inputs(model: Seq2Seq, cache_len: int, encode_len: int) -> dict[str, torch.Tensor]:
    a = model.config.attention
    sample = {
        "tokens": torch.zeros((1, 1), dtype=torch.int32),
        "input_pos": torch.zeros((1,), dtype=torch.int32),
        "cross_mask": torch.ones((1, encode_len)),
    }
    for i in range(model.config.num_decoder_layers):
        for name, length in (("k", cache_len), ("v", cache_len), ("ck", encode_len), ("cv", encode_len)):
            sample[f"{name}_{i}"] = torch.zeros((1, a.num_heads, length, a.head_dim))
    return sample


def convert_seq2seq(
    model: Seq2Seq,
    output: str | Path,
    encode_lengths: Sequence[int] = DEFAULT_ENCODE_LENGTHS,
    cache_len: int = DEFAULT_DECODE_CACHE,
    recipe: str | None = "int8",
    progress: Callable[[str], None] | None = None,
) -> ConvertResult:
    """Write `output` with `encode_<N>` per length and `decode` (a self-attention cache of `cache_len` tokens)."""
    import litert_torch

    say = progress or (lambda _m: None)
    started = time.perf_counter()
    parsed = plain_recipe(recipe, "encoder-decoders")
    lengths = tuple(sorted(set(encode_lengths)))
    if not lengths or lengths[0] < 1 or cache_len < 2:
        raise ValueError("encode lengths must be positive and the decode cache at least 2 tokens")
    longest = lengths[-1]
    register_lowerings()
    model = model.eval()
    converter = litert_torch
    encode = EncodeSignature(model, longest).eval()
    for n in lengths:
        sample = {
            "input_ids": torch.zeros((1, n), dtype=torch.int32),
            "attention_mask": torch.ones((1, n), dtype=torch.int32),
        }
        converter = converter.signature(f"encode_{n}", encode, sample_kwargs=sample)
    converter = converter.signature(
        "decode", DecodeSignature(model).eval(), sample_kwargs=decode_inputs(model, cache_len, longest)
    )
    names = [*(f"encode_{n}" for n in lengths), "decode"]
    return lower_and_write(converter, parsed, output, names, say, started)
