"""A vocabulary matrix held as two: its first K rows and the rest, so that each can be stored in its own scheme.

Tokenizers number their pieces roughly by frequency (BPE merges and SentencePiece scores come in order), so the
first rows are the tokens a text is mostly made of. Keeping those rows at int8 and the long tail at int4 costs a
fraction of an int8 matrix and most of the quality an int4 one loses (Gemma 3 270M: benchmarks/README.md). The
lookup and the tied head compute exactly what the whole matrix does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SplitEmbedding(nn.Module):
    """`lead_rows` [K, D] for ids below K, `weight` [V - K, D] for the rest."""

    def __init__(self, lead_rows: nn.Parameter, weight: nn.Parameter) -> None:
        super().__init__()
        self.lead_rows, self.weight = lead_rows, weight

    @property
    def split(self) -> int:
        return self.lead_rows.shape[0]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        k = self.split
        lead = F.embedding(torch.clamp(ids, max=k - 1), self.lead_rows)
        tail = F.embedding(torch.clamp(ids - k, min=0), self.weight)
        return torch.where((ids < k)[..., None], lead, tail)


class SplitHead(nn.Module):
    """The tied LM head over a SplitEmbedding: logits of both parts, in vocabulary order."""

    def __init__(self, embedding: SplitEmbedding, bias: nn.Parameter | None) -> None:
        super().__init__()
        self.tied = True
        self.bias = bias
        # A plain reference, not a submodule: the matrices are the embedding's parameters, registered once.
        object.__setattr__(self, "_embedding", embedding)

    def forward(self, x: torch.Tensor, _embedding: torch.Tensor) -> torch.Tensor:
        e = self._embedding
        logits = torch.cat([F.linear(x, e.lead_rows), F.linear(x, e.weight)], dim=-1)
        return logits if self.bias is None else logits + self.bias
