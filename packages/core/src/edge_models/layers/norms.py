"""RMSNorm (plain and Gemma's `1 + w` form) and LayerNorm."""

from __future__ import annotations

import torch
from torch import nn

from edge_models.config import NormConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, zero_centered: bool, scale: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.zero_centered = zero_centered
        if scale:
            self.weight = nn.Parameter(torch.zeros(dim) if zero_centered else torch.ones(dim))
        else:
            self.weight = None

    # Set by the converter for `ExportSettings.composites`: trace the norm inside an `odml.rms_norm` composite.
    composite = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.composite and self.weight is not None:
            return self._marked(x)
        return self._normed(x)

    def _normed(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight is None:
            return xf.to(x.dtype)
        if scale is None:
            scale = 1.0 + self.weight.float() if self.zero_centered else self.weight.float()
        return (xf * scale).to(x.dtype)

    def _marked(self, x: torch.Tensor) -> torch.Tensor:
        """The composite takes the input and the scale it multiplies by (Gemma's `1 + w` already added), as
        litert-torch's own `odml.rms_norm` does; its body is `_normed`, op for op."""
        from litert_torch.hlfb import StableHLOCompositeBuilder  # the public API: no TensorFlow import

        builder = StableHLOCompositeBuilder("odml.rms_norm", attr={"epsilon": float(self.eps)})
        scale = 1.0 + self.weight.float() if self.zero_centered else self.weight.float()
        x, scale = builder.mark_inputs(x, scale)
        return builder.mark_outputs(self._normed(x, scale))


def build_norm(cfg: NormConfig, dim: int) -> nn.Module:
    if cfg.kind == "rms":
        return RMSNorm(dim, cfg.eps, cfg.zero_centered, cfg.scale)
    if cfg.kind == "layer":
        if not cfg.scale:
            raise ValueError("a LayerNorm without a weight is not supported")
        return nn.LayerNorm(dim, eps=cfg.eps, bias=cfg.bias)
    raise ValueError(f"unknown norm kind {cfg.kind!r}; expected 'rms' or 'layer'")
