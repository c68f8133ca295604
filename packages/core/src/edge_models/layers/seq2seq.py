"""An encoder-decoder (T5) from core's blocks: relative position bias, pre-norm encoder blocks, decoder blocks with
a self-attention KV cache and cross-attention over a precomputed encoder cache.

Caches are fixed-size tensors passed in and returned (the decoder's convention): self-attention K and V
[1, heads, S, head_dim] written at `input_pos` with one dynamic-update-slice; cross-attention K and V
[1, heads, E, head_dim] computed once per input by `cross_cache`, with `cross_mask` [1, E] (1 = encoder token).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edge_models.config import RelativePositionConfig, Seq2SeqConfig
from edge_models.layers.encoder import _MASKED, BidirectionalAttention
from edge_models.layers.kv_cache import dynamic_update_slice
from edge_models.layers.mlp import build_mlp
from edge_models.layers.norms import build_norm


def relative_buckets(relative: torch.Tensor, bidirectional: bool, cfg: RelativePositionConfig) -> torch.Tensor:
    """Bucket of each (key position - query position). Half the buckets hold exact distances, the rest cover
    distances up to `max_distance` on a log scale; bidirectional buckets spend half of them on keys ahead."""
    buckets = cfg.num_buckets
    offset = torch.zeros_like(relative)
    if bidirectional:
        buckets //= 2
        offset = (relative > 0).to(relative.dtype) * buckets
        distance = relative.abs()
    else:
        distance = torch.clamp(-relative, min=0)
    exact = buckets // 2
    scaled = torch.log(torch.clamp(distance, min=1).to(torch.float32) / exact) / math.log(cfg.max_distance / exact)
    far = torch.clamp(exact + (scaled * (buckets - exact)).to(relative.dtype), max=buckets - 1)
    return offset + torch.where(distance < exact, distance, far)


class RelativePositionBias(nn.Module):
    def __init__(self, cfg: RelativePositionConfig, num_heads: int, bidirectional: bool) -> None:
        super().__init__()
        self.cfg, self.bidirectional = cfg, bidirectional
        self.embedding = nn.Embedding(cfg.num_buckets, num_heads)

    def forward(self, query_pos: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
        """[1, heads, len(query_pos), len(key_pos)]"""
        relative = key_pos[None, :] - query_pos[:, None]
        return self.embedding(relative_buckets(relative, self.bidirectional, self.cfg)).permute(2, 0, 1)[None]


class CachedSelfAttention(BidirectionalAttention):
    """The decoder's self-attention: new keys and values go into the cache at the tokens' positions, and queries
    attend to the whole cache under `bias` (causal mask and position bias)."""

    def forward(self, x, bias, k_cache, v_cache, input_pos):
        b, t, _ = x.shape
        h, hd = self.cfg.num_heads, self.cfg.head_dim
        q = self.q_proj(x).view(b, t, h, hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, h, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, h, hd).transpose(1, 2)
        k_cache = dynamic_update_slice(k_cache, k, input_pos, 2)
        v_cache = dynamic_update_slice(v_cache, v, input_pos, 2)
        return self._attend(q, k_cache, v_cache, bias), k_cache, v_cache

    def _attend(self, q, k, v, bias):
        b, h, t, hd = q.shape
        scale = self.cfg.query_scale if self.cfg.query_scale is not None else hd**-0.5
        scores = torch.matmul(q * scale, k.transpose(-1, -2)) + bias
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, h * hd))


class CrossAttention(CachedSelfAttention):
    """Queries from the decoder, keys and values from the encoder's output (projected once: `project`)."""

    def project(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, e, _ = states.shape
        h, hd = self.cfg.num_heads, self.cfg.head_dim
        k = self.k_proj(states).view(b, e, h, hd).transpose(1, 2)
        v = self.v_proj(states).view(b, e, h, hd).transpose(1, 2)
        return k, v

    def forward(self, x, bias, k, v):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.cfg.num_heads, self.cfg.head_dim).transpose(1, 2)
        return self._attend(q, k, v, bias)


class Seq2SeqEncoderBlock(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.attn_norm = build_norm(cfg.norm, d)
        self.attn = BidirectionalAttention(d, cfg.attention)
        self.mlp_norm = build_norm(cfg.norm, d)
        self.mlp = build_mlp(d, cfg.mlp)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), bias)
        return x + self.mlp(self.mlp_norm(x))


class Seq2SeqDecoderBlock(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.self_norm = build_norm(cfg.norm, d)
        self.self_attn = CachedSelfAttention(d, cfg.attention)
        self.cross_norm = build_norm(cfg.norm, d)
        self.cross_attn = CrossAttention(d, cfg.attention)
        self.mlp_norm = build_norm(cfg.norm, d)
        self.mlp = build_mlp(d, cfg.mlp)

    def forward(self, x, self_bias, k_cache, v_cache, input_pos, cross_bias, cross_k, cross_v):
        out, k_cache, v_cache = self.self_attn(self.self_norm(x), self_bias, k_cache, v_cache, input_pos)
        x = x + out
        x = x + self.cross_attn(self.cross_norm(x), cross_bias, cross_k, cross_v)
        return x + self.mlp(self.mlp_norm(x)), k_cache, v_cache


class Seq2Seq(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = cfg
        d, heads = cfg.hidden_size, cfg.attention.num_heads
        self.shared = nn.Embedding(cfg.vocab_size, d)
        self.encoder_bias = RelativePositionBias(cfg.relative_position, heads, bidirectional=True)
        self.encoder_layers = nn.ModuleList(Seq2SeqEncoderBlock(cfg) for _ in range(cfg.num_encoder_layers))
        self.encoder_norm = build_norm(cfg.norm, d)
        self.decoder_bias = RelativePositionBias(cfg.relative_position, heads, bidirectional=False)
        self.decoder_layers = nn.ModuleList(Seq2SeqDecoderBlock(cfg) for _ in range(cfg.num_decoder_layers))
        self.decoder_norm = build_norm(cfg.norm, d)
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(d, cfg.vocab_size, bias=False)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The encoder's output [B, N, D]."""
        n = ids.shape[1]
        positions = torch.arange(n)
        bias = self.encoder_bias(positions, positions) + ((1.0 - mask.to(torch.float32)) * _MASKED)[:, None, None, :]
        x = self.shared(ids)
        for layer in self.encoder_layers:
            x = layer(x, bias)
        return self.encoder_norm(x)

    def cross_cache(self, states: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every decoder block's cross-attention keys and values of the encoder output."""
        return [layer.cross_attn.project(states) for layer in self.decoder_layers]

    def empty_cache(self, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        a = self.config.attention
        shape = (1, a.num_heads, length, a.head_dim)
        return [(torch.zeros(shape), torch.zeros(shape)) for _ in self.decoder_layers]

    def decode(self, tokens, input_pos, cache, cross, cross_mask):
        """Logits [1, T, vocab] of decoder `tokens` at `input_pos` (consecutive), and the updated self cache."""
        s = cache[0][0].shape[2]
        keys = torch.arange(s)
        causal = torch.where(keys[None, :] <= input_pos[:, None], 0.0, _MASKED)
        self_bias = self.decoder_bias(input_pos, keys) + causal[None, None]
        cross_bias = ((1.0 - cross_mask.to(torch.float32)) * _MASKED)[:, None, None, :]
        x = self.shared(tokens)
        start = input_pos[:1]
        updated = []
        for layer, (k, v), (ck, cv) in zip(self.decoder_layers, cache, cross):
            x, k, v = layer(x, self_bias, k, v, start, cross_bias, ck, cv)
            updated.append((k, v))
        x = self.decoder_norm(x)
        if self.config.head_scale:
            x = x * self.config.hidden_size**-0.5
        logits = torch.matmul(x, self.shared.weight.T) if self.lm_head is None else self.lm_head(x)
        return logits, updated
