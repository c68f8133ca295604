"""The external KV cache and its one write primitive.

The runtimes want K as [1, kv_heads, KV, head_dim] and V as [1, kv_heads, head_dim, KV]
and a write that is one contiguous slice starting at input_pos[0] (LiteRT-LM zero-pads
the prompt, so a per-position scatter would write the padding over real entries).
`dynamic_update_slice` is a torch custom op so that eager PyTorch runs it directly and
the converter lowers it to StableHLO's dynamic_update_slice without the model changing.
"""

from __future__ import annotations

import torch

KVCache = dict[str, torch.Tensor]


@torch.library.custom_op("edge_models::dynamic_update_slice", mutates_args=())
def dynamic_update_slice(cache: torch.Tensor, update: torch.Tensor, start: torch.Tensor, dim: int) -> torch.Tensor:
    # Same clamping as StableHLO: the slice is moved back so that it fits.
    begin = int(start.reshape(-1)[0].clamp(0, cache.shape[dim] - update.shape[dim]))
    out = cache.clone()
    out.narrow(dim, begin, update.shape[dim]).copy_(update)
    return out


@dynamic_update_slice.register_fake
def _(cache, update, start, dim):
    return torch.empty_like(cache)


def _save_for_backward(ctx, inputs, output) -> None:
    cache, update, start, dim = inputs
    ctx.dim, ctx.length = dim, update.shape[dim]
    ctx.begin = int(start.reshape(-1)[0].clamp(0, cache.shape[dim] - update.shape[dim]))


def _backward(ctx, grad):
    # Gradients make the decoder trainable as written (tests train tiny models with it).
    grad_cache = grad.clone()
    grad_cache.narrow(ctx.dim, ctx.begin, ctx.length).zero_()
    grad_update = grad.narrow(ctx.dim, ctx.begin, ctx.length).contiguous()
    return grad_cache, grad_update, None, None


dynamic_update_slice.register_autograd(_backward, setup_context=_save_for_backward)


def empty_cache(
    num_layers: int, num_kv_heads: int, head_dim: int, kv_len: int, dtype: torch.dtype = torch.float32
) -> KVCache:
    cache: KVCache = {}
    for i in range(num_layers):
        cache[f"k_{i}"] = torch.zeros(1, num_kv_heads, kv_len, head_dim, dtype=dtype)
        cache[f"v_{i}"] = torch.zeros(1, num_kv_heads, head_dim, kv_len, dtype=dtype)
    return cache
