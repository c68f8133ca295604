"""Rotary position embeddings, computed from positions on the fly (no tables to index)."""

from __future__ import annotations

import math

import torch
from torch import nn


def inverse_frequencies(rotary_dim: int, base: float, scaling: dict | None) -> torch.Tensor:
    # Explicitly on the CPU: models are built on the meta device before loading.
    exponents = torch.arange(0, rotary_dim, 2, dtype=torch.int64, device="cpu").float() / rotary_dim
    inv_freq = 1.0 / (base**exponents)
    if not scaling:
        return inv_freq
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind in (None, "default"):
        return inv_freq
    if kind == "linear":
        return inv_freq / float(scaling["factor"])
    if kind == "llama3":
        return _llama3_scaled(inv_freq, scaling)
    if kind == "longrope":
        # LongRoPE (Phi-3.5, Phi-4-mini): each frequency divided by its own factor. The short factors are the ones
        # for contexts up to original_max_position_embeddings, which every on-device KV cache stays within;
        # transformers switches to the long factors only past that length.
        factors = torch.tensor(scaling["short_factor"], dtype=torch.float32, device="cpu")
        if factors.numel() != inv_freq.numel():
            raise ValueError(
                f"rope short_factor has {factors.numel()} entries; the rotary dimension needs {inv_freq.numel()}"
            )
        return inv_freq / factors
    if kind == "proportional":
        return _proportional(inv_freq, scaling)
    raise ValueError(
        f"unsupported rope_scaling type {kind!r}; supported: default, linear, llama3, longrope, proportional"
    )


def _proportional(inv_freq: torch.Tensor, s: dict) -> torch.Tensor:
    # Gemma 4's global layers: the frequencies of a whole-head rotation (pairs i and i + D/2), of which only the
    # first `partial_rotary_factor` share turn; the others get frequency 0 (cos 1, sin 0: left as they are). Unlike
    # the partial rotary of Phi, the rotated features are spread over both halves of the head.
    turning = int(float(s.get("partial_rotary_factor", 1.0)) * inv_freq.numel())
    kept = torch.where(torch.arange(inv_freq.numel(), device="cpu") < turning, inv_freq, torch.zeros_like(inv_freq))
    return kept / float(s.get("factor", 1.0))


def _llama3_scaled(inv_freq: torch.Tensor, s: dict) -> torch.Tensor:
    # Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, and the
    # band between the two cut-offs is interpolated linearly in 1/wavelength.
    factor = float(s["factor"])
    low, high = float(s["low_freq_factor"]), float(s["high_freq_factor"])
    context = float(s["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv_freq
    slowed = torch.where(wavelen > context / low, inv_freq / factor, inv_freq)
    blend = (context / wavelen - low) / (high - low)
    interpolated = (1 - blend) * slowed / factor + blend * slowed
    in_band = (wavelen >= context / high) & (wavelen <= context / low)
    return torch.where(in_band, interpolated, slowed)


def rope_attention_factor(scaling: dict | None) -> float:
    """Cos/sin multiplier some scalings ask for: LongRoPE's, from its extension factor unless given."""
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type"))
    if kind == "longrope":
        if scaling.get("attention_factor") is not None:
            return float(scaling["attention_factor"])
        factor, original = float(scaling.get("factor") or 1.0), float(scaling["original_max_position_embeddings"])
        return 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    if scaling and scaling.get("attention_factor") not in (None, 1.0):
        raise ValueError("rope_scaling.attention_factor other than 1.0 is not supported")
    return 1.0


class RotaryEmbedding(nn.Module):
    """Rotates the first `rotary_dim` features of each head (HF's rotate-half layout)."""

    def __init__(self, rotary_dim: int, base: float, scaling: dict | None) -> None:
        super().__init__()
        self.rotary_dim = rotary_dim
        self.attention_factor = rope_attention_factor(scaling)
        self.register_buffer("inv_freq", inverse_frequencies(rotary_dim, base, scaling), persistent=False)

    def cos_sin(self, input_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = input_pos.float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)  # [T, rotary_dim]
        if self.attention_factor != 1.0:
            return emb.cos() * self.attention_factor, emb.sin() * self.attention_factor
        return emb.cos(), emb.sin()

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x: [B, T, heads, head_dim]; cos/sin: [T, rotary_dim]."""
        rot, rest = x[..., : self.rotary_dim], x[..., self.rotary_dim :]
        half = self.rotary_dim // 2
        rotated_half = torch.cat((-rot[..., half:], rot[..., :half]), dim=-1)
        cos, sin = cos[None, :, None, :], sin[None, :, None, :]
        rot = rot * cos + rotated_half * sin
        if rest.shape[-1] == 0:
            return rot
        return torch.cat((rot, rest), dim=-1)
