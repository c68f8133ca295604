"""Causal self-attention (MHA / GQA / MQA) over the external KV cache."""

from __future__ import annotations

import torch
from torch import nn

from edge_models.config import AttentionConfig, ModelConfig
from edge_models.layers.kv_cache import dynamic_update_slice
from edge_models.layers.norms import build_norm
from edge_models.layers.rope import RotaryEmbedding


def attention_mask(input_pos: torch.Tensor, kv_len: int, window: int | None) -> torch.Tensor:
    """Boolean [T, KV]: query at input_pos[t] may see cache slot k."""
    k = torch.arange(kv_len, dtype=input_pos.dtype)[None, :]
    q = input_pos[:, None]
    allowed = k <= q
    if window is not None:
        allowed = allowed & (k > q - window)
    return allowed


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_index: int) -> None:
        super().__init__()
        a: AttentionConfig = cfg.attention_for(layer_index)
        self.cfg = a
        d = cfg.hidden_size
        # A KV-sharing layer (Gemma 3n / 4) reads another layer's cache: no keys or values of its own.
        self.shares_kv = layer_index >= cfg.first_kv_shared_layer
        self.q_proj = nn.Linear(d, a.num_heads * a.head_dim * (2 if a.output_gate else 1), bias=a.qkv_bias)
        if not self.shares_kv:
            self.k_proj = nn.Linear(d, a.num_kv_heads * a.head_dim, bias=a.qkv_bias)
            if not a.k_eq_v:
                self.v_proj = nn.Linear(d, a.num_kv_heads * a.head_dim, bias=a.qkv_bias)
            if a.v_norm is not None:
                self.v_norm = build_norm(a.v_norm, a.head_dim)
        self.o_proj = nn.Linear(a.num_heads * a.head_dim, d, bias=a.out_bias)
        if a.qk_norm is not None:
            self.q_norm = build_norm(a.qk_norm, a.head_dim)
            if not self.shares_kv:
                self.k_norm = build_norm(a.qk_norm, a.head_dim)
        sliding = cfg.layer_type(layer_index) == "sliding"
        self.window = a.sliding_window if sliding else None
        rope = cfg.rope
        base = rope.local_base if sliding and rope.local_base is not None else rope.base
        scaling = rope.local_scaling if sliding and rope.local_base is not None else rope.scaling
        # A NoPE layer (SmolLM3) attends by content alone: no rotation, and none in its graph.
        rotary_dim = int(a.head_dim * rope.rotary_fraction)
        rotary_dim -= rotary_dim % 2
        self.rope = None if layer_index in cfg.nope_layers else RotaryEmbedding(rotary_dim, base, scaling)
        self.scale = a.query_scale if a.query_scale is not None else a.head_dim**-0.5

    def forward(
        self,
        x: torch.Tensor,
        input_pos: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        mask: torch.Tensor | None,
        attend: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`attend`: read only the first `attend` cache slots (all positions so far must lie below it)."""
        a = self.cfg
        b, t, _ = x.shape
        group = a.num_heads // a.num_kv_heads
        # One op order for every layer kind, the order files converted before KV sharing was added were traced in.
        owns_kv = not self.shares_kv
        gate = None
        if a.output_gate:
            q_and_gate = self.q_proj(x).view(b, t, a.num_heads, 2 * a.head_dim)
            q, gate = q_and_gate[..., : a.head_dim], q_and_gate[..., a.head_dim :].reshape(b, t, -1)
        else:
            q = self.q_proj(x).view(b, t, a.num_heads, a.head_dim)
        if owns_kv:
            k = self.k_proj(x).view(b, t, a.num_kv_heads, a.head_dim)
            v = k if a.k_eq_v else self.v_proj(x).view(b, t, a.num_kv_heads, a.head_dim)
        if a.qk_norm is not None:
            q = self.q_norm(q)
            if owns_kv:
                k = self.k_norm(k)
        if owns_kv and a.v_norm is not None:
            v = self.v_norm(v)
        if self.rope is not None:
            cos, sin = self.rope.cos_sin(input_pos)
            q = self.rope(q, cos, sin)
            if owns_kv:
                k = self.rope(k, cos, sin)

        if owns_kv:
            start = input_pos[:1]
            k_cache = dynamic_update_slice(k_cache, k.permute(0, 2, 1, 3), start, 2)
            v_cache = dynamic_update_slice(v_cache, v.permute(0, 2, 3, 1), start, 3)

        # Query heads that share a KV head are stacked along the row axis, so one
        # batched matmul per KV head serves the whole group without repeating K/V.
        kv_len = k_cache.shape[2] if attend is None else min(attend, k_cache.shape[2])
        k_read, v_read = k_cache[:, :, :kv_len], v_cache[..., :kv_len]
        q = q.view(b, t, a.num_kv_heads, group, a.head_dim).permute(0, 2, 3, 1, 4)
        q = q.reshape(b * a.num_kv_heads, group * t, a.head_dim) * self.scale
        # 3-D batched matmuls with the transpose last: the converter folds it into the matmul's adjoint flag,
        # so the cache is read in place instead of being transposed (copied) every step.
        keys = k_read.reshape(b * a.num_kv_heads, kv_len, a.head_dim)
        scores = torch.bmm(q, keys.transpose(1, 2))  # [B*KVH, G*T, KV]
        if a.logit_softcap is not None:
            scores = torch.tanh(scores / a.logit_softcap) * a.logit_softcap
        scores = scores.view(b, a.num_kv_heads, group, t, kv_len)
        if mask is None:
            allowed = attention_mask(input_pos, kv_len, self.window)
            scores = torch.where(allowed, scores, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask[..., :kv_len].reshape(1, 1, 1, t, kv_len)
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        probs = probs.reshape(b * a.num_kv_heads, group * t, kv_len)
        values = v_read.reshape(b * a.num_kv_heads, a.head_dim, kv_len)
        out = torch.bmm(probs, values.transpose(1, 2))  # [B*KVH, G*T, D]
        out = out.view(b, a.num_kv_heads, group, t, a.head_dim).permute(0, 3, 1, 2, 4)
        out = out.reshape(b, t, a.num_heads * a.head_dim)
        if gate is not None:
            out = out * torch.sigmoid(gate)
        return self.o_proj(out), k_cache, v_cache
