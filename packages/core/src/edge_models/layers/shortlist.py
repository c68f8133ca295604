"""A two-stage LM head for big vocabularies: an int4 copy of the head scores every token, its top K are scored
again exactly from the file's own (int8) head rows.

Decode reads every weight once per token, and on Gemma 3 270M the tied 262,144 x 640 head is 63 % of those bytes.
The int4 copy reads half of that, the exact pass only K rows. Emulated on that model, the int8 head's top token
was in the int4 copy's top 16 for every one of 2,435 evaluation-text tokens (top 4: 97.8 %), so greedy decoding
through the shortlist gives the full head's tokens (in the converted file: 297 of 300, the rest near-ties that the
head's int8 activations round differently); sampling through it is top-K sampling. Greedy decode went from 92-103
to 113-122 tokens/s on 2 threads (benchmarks/README.md). LiteRT-LM keeps using `decode` (full logits); the
`shortlist_<K>[_<W>]` signatures are our runtime's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SHORTLIST_PARAM = "shortlist.weight"
SHORTLIST_SCHEME = "int4-block32"  # the copy only ranks: round to nearest in blocks of 32 (see the module doc)
SHORTLIST_PREFIX = "shortlist_"


class ShortlistHead(nn.Module):
    """`weight`: a copy of the LM head's matrix (stored as SHORTLIST_SCHEME); `k`: tokens scored exactly."""

    def __init__(self, weight: nn.Parameter, k: int) -> None:
        super().__init__()
        self.weight = weight
        self.k = k

    def forward(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids [1, T, k] int32, their logits [1, T, k]) for the final-normed hidden states `x` [1, T, D]."""
        _, ids = torch.topk(F.linear(x, self.weight), self.k, dim=-1)
        head = model.lm_head
        rows = model.embed_tokens(ids) if head.tied else F.embedding(ids, head.weight)  # [1, T, k, D]
        logits = torch.matmul(rows, x.unsqueeze(-1)).squeeze(-1)
        if head.bias is not None:
            logits = logits + F.embedding(ids, head.bias.unsqueeze(-1)).squeeze(-1)
        return ids.to(torch.int32), model.soft_cap(logits)
