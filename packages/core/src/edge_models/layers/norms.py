"""RMSNorm (plain and Gemma's `1 + w` form) and LayerNorm."""

from __future__ import annotations

import torch
from torch import nn

from edge_models.config import NormConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, zero_centered: bool) -> None:
        super().__init__()
        self.eps = eps
        self.zero_centered = zero_centered
        self.weight = nn.Parameter(torch.zeros(dim) if zero_centered else torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        scale = 1.0 + self.weight.float() if self.zero_centered else self.weight.float()
        return (xf * scale).to(x.dtype)


def build_norm(cfg: NormConfig, dim: int) -> nn.Module:
    if cfg.kind == "rms":
        return RMSNorm(dim, cfg.eps, cfg.zero_centered)
    if cfg.kind == "layer":
        return nn.LayerNorm(dim, eps=cfg.eps, bias=cfg.bias)
    raise ValueError(f"unknown norm kind {cfg.kind!r}; expected 'rms' or 'layer'")
