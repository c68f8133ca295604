"""A bidirectional encoder (BERT): embeddings with learned positions and token types, post-norm blocks that attend
to every non-padding token, and the pooling that turns token states into one embedding.

Inputs are fixed-length rows of token ids with an attention mask (1 = token, 0 = padding), as the exported `embed_<N>`
signatures take them; padding never changes the states of real tokens or the pooled vector.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edge_models.config import AttentionConfig, EncoderConfig, PoolingConfig
from edge_models.layers.mlp import PlainMLP
from edge_models.layers.norms import build_norm

# Added to the attention scores of padding keys: exp() of it is exactly 0 in float32, and unlike -inf it cannot
# turn a row of scores into NaN.
_MASKED = -1e9


class EncoderEmbeddings(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.word_embeddings = nn.Embedding(cfg.vocab_size, d)
        self.position_embeddings = nn.Embedding(cfg.max_positions, d)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, d)
        self.norm = build_norm(cfg.norm, d)

    def forward(self, ids: torch.Tensor, token_types: torch.Tensor | None = None) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(positions)[None]
        if token_types is None:
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_types)
        return self.norm(x)


class BidirectionalAttention(nn.Module):
    """Multi-head self-attention over the whole sequence; padding keys are masked out."""

    def __init__(self, dim: int, cfg: AttentionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        inner = cfg.num_heads * cfg.head_dim
        self.q_proj = nn.Linear(dim, inner, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(dim, inner, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(dim, inner, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(inner, dim, bias=cfg.out_bias)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        """`key_bias` [B, 1, 1, T]: 0 for tokens, a large negative number for padding."""
        b, t, _ = x.shape
        h, hd = self.cfg.num_heads, self.cfg.head_dim
        q = self.q_proj(x).view(b, t, h, hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, h, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, h, hd).transpose(1, 2)
        scale = self.cfg.query_scale if self.cfg.query_scale is not None else hd**-0.5
        scores = torch.matmul(q * scale, k.transpose(-1, -2)) + key_bias
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, h * hd))


class EncoderBlock(nn.Module):
    """Post-norm (BERT): x = norm(x + attention(x)); x = norm(x + mlp(x))."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.attn = BidirectionalAttention(d, cfg.attention)
        self.attn_norm = build_norm(cfg.norm, d)
        self.mlp = PlainMLP(d, cfg.mlp)
        self.mlp_norm = build_norm(cfg.norm, d)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        x = self.attn_norm(x + self.attn(x, key_bias))
        return self.mlp_norm(x + self.mlp(x))


class Pooling(nn.Module):
    """Token states [B, T, D] and mask [B, T] -> one vector per row [B, D]."""

    def __init__(self, cfg: PoolingConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(states.dtype)[..., None]
        if self.cfg.mode == "mean":
            pooled = (states * m).sum(dim=1) / torch.clamp(m.sum(dim=1), min=1e-9)
        elif self.cfg.mode == "cls":
            pooled = states[:, 0]
        else:  # max over real tokens
            pooled = (states + (1.0 - m) * _MASKED).amax(dim=1)
        if self.cfg.normalize:
            pooled = F.normalize(pooled, p=2.0, dim=-1, eps=1e-12)
        return pooled


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embeddings = EncoderEmbeddings(cfg)
        self.layers = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.num_layers))
        self.pooling = Pooling(cfg.pooling)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, token_types: torch.Tensor | None = None) -> torch.Tensor:
        """Token states [B, T, D] (padding rows hold values no one should read)."""
        key_bias = ((1.0 - mask.to(torch.float32)) * _MASKED)[:, None, None, :]
        x = self.embeddings(ids, token_types)
        for layer in self.layers:
            x = layer(x, key_bias)
        return x

    def embed(self, ids: torch.Tensor, mask: torch.Tensor, token_types: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled embedding [B, D]."""
        return self.pooling(self(ids, mask, token_types), mask)
