"""LoRA slots: linear layers that add B(A x) to their output, with A and B as inputs of the converted file.

A file converted with slots of rank R takes every adapter of rank R or lower (zero-padded); all-zero slots are the
base model exactly. In PyTorch the slots are ordinary parameters (zeros until an adapter is loaded).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edge_models.tflite.lora import TARGETS


class LoRALinear(nn.Linear):
    """The base layer's own weight and bias (the same Parameter objects), plus `lora_a` = Aᵀ [in, rank] and
    `lora_b` = Bᵀ [rank, out]: y = W x + b + (x A')B', litert-torch's and LiteRT-LM's layout, so their adapter
    files and ours fit the same inputs."""

    def __init__(self, base: nn.Linear, rank: int) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.lora_a = nn.Parameter(torch.zeros(base.in_features, rank), requires_grad=False)
        self.lora_b = nn.Parameter(torch.zeros(rank, base.out_features), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + torch.matmul(torch.matmul(x, self.lora_a), self.lora_b)


def parse_targets(text: str | None) -> tuple[str, ...]:
    """`q_proj,v_proj` -> the targets; None: every projection the model has."""
    if not text:
        return tuple(TARGETS)
    names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [t for t in names if t not in TARGETS]
    if unknown:
        raise ValueError(f"unknown LoRA target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    return names


def add_lora_slots(model: nn.Module, rank: int, targets: tuple[str, ...]) -> list[str]:
    """Put a slot on every targeted projection of every block (those the model has); returns their module paths."""
    if rank < 1:
        raise ValueError(f"LoRA rank must be at least 1, got {rank}")
    added = []
    for i, block in enumerate(model.layers):
        for target in targets:
            parent_name, _, attr = TARGETS[target][0].rpartition(".")
            try:
                parent = block.get_submodule(parent_name)
            except AttributeError:  # a layer without this projection (a short convolution has no attention)
                continue
            base = getattr(parent, attr, None)
            if isinstance(base, nn.Linear) and not isinstance(base, LoRALinear):
                setattr(parent, attr, LoRALinear(base, rank))
                added.append(f"layers.{i}.{TARGETS[target][0]}")
    if not added:
        raise ValueError(f"the model has none of the LoRA targets {', '.join(targets)}")
    return added


def lora_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if n.endswith((".lora_a", ".lora_b"))}
