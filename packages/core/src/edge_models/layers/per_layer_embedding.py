"""Per-layer inputs (Gemma 3n / 4): a second token table gives every decoder block a small vector of its own.

`PerLayerEmbedding` turns the tokens (and their main embedding) into one [1, T, layers, dim] tensor once per call;
each block's `PerLayerGate` mixes its slice into the block's output. The table is big (Gemma 4 E2B: 262,144 x
35 x 256 = 2.3 billion entries) and is only ever indexed, one row per token, so that a converted file stores it once,
quantized, behind a gather, and reads one row of it per token.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edge_models.config import ModelConfig
from edge_models.layers.mlp import activation
from edge_models.layers.norms import build_norm


class PerLayerEmbedding(nn.Module):
    """tokens [1, T] and their embeddings [1, T, D] -> per-layer inputs [1, T, layers, dim]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        ple = cfg.per_layer_embedding
        if ple is None:
            raise ValueError("PerLayerEmbedding needs ModelConfig.per_layer_embedding")
        self.num_layers, self.dim = cfg.num_layers, ple.dim
        self.table = nn.Embedding(ple.vocab_size, cfg.num_layers * ple.dim)
        self.model_projection = nn.Linear(cfg.hidden_size, cfg.num_layers * ple.dim, bias=False)
        self.projection_norm = build_norm(cfg.norm, ple.dim)
        self.table_scale = math.sqrt(ple.dim)
        self.projection_scale = cfg.hidden_size**-0.5

    def forward(self, tokens: torch.Tensor, embedded: torch.Tensor) -> torch.Tensor:
        b, t = tokens.shape
        rows = self.table(tokens) * torch.tensor(self.table_scale, dtype=embedded.dtype)
        projected = self.model_projection(embedded) * torch.tensor(self.projection_scale, dtype=embedded.dtype)
        projected = self.projection_norm(projected.view(b, t, self.num_layers, self.dim))
        # The two halves carry equal weight: their sum is scaled back by 1/sqrt(2).
        return (projected + rows.view(b, t, self.num_layers, self.dim)) * torch.tensor(2.0**-0.5, dtype=embedded.dtype)


class PerLayerGate(nn.Module):
    """norm(projection(act(gate(x)) * per_layer_input)): one block's share of the per-layer inputs, which the block
    adds to its output (the add stays the block's own op, where `edge_models.tools.debug` finds the block's output)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        ple = cfg.per_layer_embedding
        if ple is None:
            raise ValueError("PerLayerGate needs ModelConfig.per_layer_embedding")
        self.gate = nn.Linear(cfg.hidden_size, ple.dim, bias=False)
        self.projection = nn.Linear(ple.dim, cfg.hidden_size, bias=False)
        self.norm = build_norm(cfg.norm, cfg.hidden_size)
        self.act = activation(cfg.mlp.activation)

    def forward(self, x: torch.Tensor, per_layer_input: torch.Tensor) -> torch.Tensor:
        return self.norm(self.projection(self.act(self.gate(x)) * per_layer_input))
