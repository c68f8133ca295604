"""A two-stage LM head for big vocabularies: an int4 copy of the head scores every token, its top K are scored
again exactly from the file's own (int8) head rows.

Decode reads every weight once per token, and on Gemma 3 270M the tied 262,144 x 640 head is 63 % of those bytes.
The int4 copy reads half of that, the exact pass only K rows. Emulated on that model, the int8 head's top token
was in the int4 copy's top 16 for every one of 2,435 evaluation-text tokens (top 4: 97.8 %), so greedy decoding
through the shortlist gives the full head's tokens; sampling through it is top-K sampling. A head stored with dynamic
int8 activations is scored on the activations that head's kernel sees (`as_dynamic_int8`): scored on float
activations instead, 3 of 300 greedy tokens on that model were near-ties that went the other way. Greedy decode
runs at 120-128 tokens/s on 2 threads against 98-107 through `decode` (benchmarks/README.md). LiteRT-LM keeps
using `decode` (full logits); the `shortlist_<K>[_<W>]` signatures are our runtime's, and bundles leave them out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SHORTLIST_PARAM = "shortlist.weight"
SHORTLIST_SCHEME = "int4-block32"  # the copy only ranks: round to nearest in blocks of 32 (see the module doc)
SHORTLIST_PREFIX = "shortlist_"


DEFAULT_K = 64
# `convert`'s default adds the shortlist where the head dominates decode: a big vocabulary (Gemma 3 270M's head is
# 63 % of what a decode step reads; 1B: 30 %; Qwen2.5 0.5B: 28 %) rather than TinyLlama's (6 %), where the copy
# would grow the file more than it speeds decoding.
BIG_VOCABULARY = 65_536
HEAD_SHARE = 0.25


def default_k(model: nn.Module, head_bits: int) -> int:
    """K for `convert`'s default: DEFAULT_K when `model` has a big vocabulary, its LM head stored at `head_bits`
    >= 8 is at least HEAD_SHARE of the weights a decode step reads, and its hidden size suits the int4 copy; else 0."""
    cfg = model.config
    if cfg.vocab_size < BIG_VOCABULARY or head_bits < 8 or cfg.hidden_size % 32:
        return 0
    head = cfg.vocab_size * cfg.hidden_size
    looked_up = 0 if cfg.tie_embeddings else head  # an untied embedding: one row a step, not the matrix
    read = sum(p.numel() for p in model.parameters()) - looked_up
    return DEFAULT_K if head >= HEAD_SHARE * read else 0


def as_dynamic_int8(x: torch.Tensor) -> torch.Tensor:
    """`x` [..., D] as a dynamically quantized fully-connected layer sees it on LiteRT's CPU (XNNPACK's qd8): each
    row rounded to int8 with its own scale (255 over the row's range, zero included) and zero point, then scaled
    back. In float32 step for step as XNNPACK computes them, so products with the head's int8 rows differ from the
    kernel's integer sums only by float rounding."""
    low = torch.clamp(x.amin(-1, keepdim=True), max=0.0)
    high = torch.clamp(x.amax(-1, keepdim=True), min=0.0)
    spread = high - low
    multiplier = 255.0 / torch.where(spread > 0, spread, torch.ones_like(spread))
    zero_point = torch.where(
        (low * multiplier - 128.0) + (high * multiplier + 127.0) > 0,
        -128.0 - low * multiplier,
        127.0 - high * multiplier,
    )
    zero_point = torch.round(torch.clamp(zero_point, -128.0, 127.0))
    scale = 1.0 / multiplier
    q = torch.clamp(torch.round(x * (1.0 / scale)) + zero_point, -128.0, 127.0)
    return (q - zero_point) * scale


GROUP = 256


def top_ids(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Ids of the k highest of `scores` [1, T, V], in two rounds where T == 1: the k groups of GROUP with the highest
    maxima hold the k highest scores (a score outside them has k group maxima, so k scores, above it), so a second
    top-k over those groups finishes. LiteRT's TOPK_V2 scans every score per call: 0.34 ms over 262,144 on 2 threads
    against 0.14 ms for the two rounds."""
    _, t, v = scores.shape
    if t != 1 or v % GROUP or v // GROUP < k:
        return torch.topk(scores, k, dim=-1)[1]
    groups = scores.reshape(v // GROUP, GROUP)
    _, best = torch.topk(groups.amax(-1), k)
    _, within = torch.topk(groups[best].reshape(1, k * GROUP), k, dim=-1)
    return (best[within // GROUP] * GROUP + within % GROUP).reshape(1, 1, k)


class ShortlistHead(nn.Module):
    """`weight`: a copy of the LM head's matrix (stored as SHORTLIST_SCHEME); `k`: tokens scored exactly;
    `dynamic_int8`: the full head quantizes its activations (its exact scores then start from the same ones)."""

    def __init__(self, weight: nn.Parameter, k: int, dynamic_int8: bool = False) -> None:
        super().__init__()
        self.weight = weight
        self.k = k
        self.dynamic_int8 = dynamic_int8

    def forward(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids [1, T, k] int32, their logits [1, T, k]) for the final-normed hidden states `x` [1, T, D]."""
        ids = top_ids(F.linear(x, self.weight), self.k)
        head = model.lm_head
        rows = model.embed_tokens(ids) if head.tied else F.embedding(ids, head.weight)  # [1, T, k, D]
        seen = as_dynamic_int8(x) if self.dynamic_int8 else x
        logits = torch.matmul(rows, seen.unsqueeze(-1)).squeeze(-1)
        if head.bias is not None:
            logits = logits + F.embedding(ids, head.bias.unsqueeze(-1)).squeeze(-1)
        return ids.to(torch.int32), model.finish_logits(logits)
