"""Feed-forward blocks: gated (SwiGLU / GeGLU) and plain two-layer MLPs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edge_models.config import MLPConfig


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


# Plain functions, not lambdas: a model is pickled to the processes that export its signatures in parallel.
_ACTIVATIONS = {"silu": F.silu, "gelu": F.gelu, "gelu_tanh": gelu_tanh, "relu": F.relu}


def activation(name: str):
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(_ACTIVATIONS)}") from None


class GatedMLP(nn.Module):
    def __init__(self, dim: int, cfg: MLPConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, cfg.intermediate_size, bias=cfg.bias)
        self.up_proj = nn.Linear(dim, cfg.intermediate_size, bias=cfg.bias)
        self.down_proj = nn.Linear(cfg.intermediate_size, dim, bias=cfg.bias)
        self.act = activation(cfg.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class PlainMLP(nn.Module):
    def __init__(self, dim: int, cfg: MLPConfig) -> None:
        super().__init__()
        self.up_proj = nn.Linear(dim, cfg.intermediate_size, bias=cfg.bias)
        self.down_proj = nn.Linear(cfg.intermediate_size, dim, bias=cfg.bias)
        self.act = activation(cfg.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.up_proj(x)))


def build_mlp(dim: int, cfg: MLPConfig) -> nn.Module:
    return GatedMLP(dim, cfg) if cfg.gated else PlainMLP(dim, cfg)
