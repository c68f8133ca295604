"""The decoder-only transformer every model family is built from."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edge_models.config import ATTENTION_LAYER_TYPES, ModelConfig
from edge_models.layers.attention import Attention
from edge_models.layers.gated_delta_net import GatedDeltaNet
from edge_models.layers.kv_cache import KVCache, empty_cache
from edge_models.layers.mlp import build_mlp
from edge_models.layers.norms import build_norm
from edge_models.layers.per_layer_embedding import PerLayerEmbedding, PerLayerGate
from edge_models.layers.short_conv import ShortConv


class LMHead(nn.Module):
    """Projection to logits; with tied embeddings it borrows the embedding matrix.

    A module of its own in both cases so that quantization recipes can find it by name.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.tied = cfg.tie_embeddings
        if not self.tied:
            self.weight = nn.Parameter(torch.empty(cfg.vocab_size, cfg.hidden_size))
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size)) if cfg.lm_head_bias else None

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return F.linear(x, embedding if self.tied else self.weight, self.bias)


class DecoderBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, index: int) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.parallel = cfg.block == "parallel"
        self.input_norm = build_norm(cfg.norm, d)
        kind = cfg.layer_type(index)
        # A layer mixes the sequence through attention over the KV cache, or through a mixer whose state has names
        # of its own in the cache dict (`state_names`).
        self.state_names: tuple[str, ...] = ()
        if kind in ATTENTION_LAYER_TYPES:
            self.attn = Attention(cfg, index)
        elif kind == "conv":
            self.conv = ShortConv(d, cfg.short_conv)
            # Signatures carry it as `kv_cache_c_<i>`: LiteRT-LM's executor binds inputs of that prefix in place
            # beside the KV caches (0.18.1 runs such a bundle; other names it leaves unbound and fails).
            self.state_names = (f"c_{index}",)
        elif kind == "linear":
            self.linear_attn = GatedDeltaNet(d, cfg.delta_net)
            # Its convolution's buffer as LiteRT-LM names one (see above), and the recurrent state under the same
            # prefix, which LiteRT-LM then binds in place too.
            self.state_names = (f"c_{index}", f"c_{index}_recurrent")
        else:
            raise ValueError(f"layer {index}: no mixer for layer type {kind!r}")
        self.mlp = build_mlp(d, cfg.mlp_for(index))
        if not self.parallel:
            self.pre_mlp_norm = build_norm(cfg.norm, d)
        self.post_attn_norm = build_norm(cfg.norm, d) if cfg.post_attention_norm else None
        self.post_mlp_norm = build_norm(cfg.norm, d) if cfg.post_mlp_norm else None
        self.residual_multiplier = cfg.residual_multiplier
        # Gemma 3n / 4: the block's share of the per-layer inputs, and a learned scalar on its output.
        self.per_layer_gate = PerLayerGate(cfg) if cfg.per_layer_embedding is not None else None
        self.layer_scalar = nn.Parameter(torch.ones(1)) if cfg.layer_scalar else None

    def forward(
        self, x, input_pos, k_cache, v_cache, mask, attend=None, per_layer_input=None, state=None, state_steps=None
    ):
        """(x, k_cache, v_cache) through attention; a layer with state takes `state` and returns (x, new state), and
        puts its state after each token into the dict `state_steps` when one is given (`Decoder.forward`)."""
        if self.state_names:
            return self.forward_state(x, input_pos, state, state_steps)
        h = self.input_norm(x)
        attn, k_cache, v_cache = self.attn(h, input_pos, k_cache, v_cache, mask, attend)
        if self.parallel:
            return x + self.scaled(attn) + self.scaled(self.mlp(h)), k_cache, v_cache
        if self.post_attn_norm is not None:
            attn = self.post_attn_norm(attn)
        return self.add_mlp(x, attn, per_layer_input), k_cache, v_cache

    def forward_state(
        self,
        x: torch.Tensor,
        input_pos: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        state_steps: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """A layer whose mixer carries state instead of a KV cache: (x, its state entries) -> (x, new entries)."""
        if state_steps is None:
            mixed, new_state = self.mixer(self.input_norm(x), input_pos, *state)
        else:
            mixed, new_state, steps = self.mixer(self.input_norm(x), input_pos, *state, per_position=True)
            state_steps.update(zip(self.state_names, steps))
        if self.post_attn_norm is not None:
            mixed = self.post_attn_norm(mixed)
        return self.add_mlp(x, mixed), new_state

    @property
    def mixer(self) -> nn.Module:
        """The sequence mixer of a layer with state."""
        return self.conv if hasattr(self, "conv") else self.linear_attn

    def empty_state(self) -> tuple[torch.Tensor, ...]:
        """Zeros for each of `state_names`: the state before the first token."""
        return self.mixer.empty_state() if self.state_names else ()

    def add_mlp(
        self, x: torch.Tensor, mixed: torch.Tensor, per_layer_input: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The sequential block after its mixer: the mixer's output joins the residual, then the MLP's, then (Gemma
        3n / 4) the block's per-layer input and output scalar."""
        x = x + self.scaled(mixed)
        m = self.mlp(self.pre_mlp_norm(x))
        if self.post_mlp_norm is not None:
            m = self.post_mlp_norm(m)
        x = x + self.scaled(m)
        if self.per_layer_gate is not None:
            x = x + self.per_layer_gate(x, per_layer_input)
        if self.layer_scalar is not None:
            x = x * self.layer_scalar
        return x

    def scaled(self, branch: torch.Tensor) -> torch.Tensor:
        """A branch's output as it joins the residual stream (Granite scales it; other families add no op)."""
        return branch if self.residual_multiplier == 1.0 else branch * self.residual_multiplier


class Decoder(nn.Module):
    """forward(tokens [1,T], input_pos [T], kv_cache, mask=None, attend=None) -> (logits [1,T,V], kv_cache).

    `attend` limits attention to the first cache slots (for positions below it), so a short context does not
    pay for reading the whole cache."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderBlock(cfg, i) for i in range(cfg.num_layers))
        self.final_norm = build_norm(cfg.norm, cfg.hidden_size)
        self.lm_head = LMHead(cfg)
        # Gemma's sqrt(d) and Granite's embedding_multiplier are one constant; None when it is 1.
        scale = (math.sqrt(cfg.hidden_size) if cfg.embedding_scale else 1.0) * cfg.embedding_multiplier
        self.embedding_scale = scale if scale != 1.0 else None
        self.per_layer_embedding = PerLayerEmbedding(cfg) if cfg.per_layer_embedding is not None else None

    def empty_cache(self, kv_len: int, dtype: torch.dtype = torch.float32) -> KVCache:
        """Zeroed `k_<i>` / `v_<i>` for every layer that keeps a cache (KV-sharing layers keep none), each in its
        layer's shape, and the zero state of each layer that carries one instead."""
        cfg = self.config
        if cfg.global_attention is None and not cfg.kv_shared_layers:
            a = cfg.attention
            cache = empty_cache(cfg.num_layers, a.num_kv_heads, a.head_dim, kv_len, dtype)
        else:
            cache = {}
            for i in range(cfg.first_kv_shared_layer):
                a = cfg.attention_for(i)
                cache[f"k_{i}"] = torch.zeros(1, a.num_kv_heads, kv_len, a.head_dim, dtype=dtype)
                cache[f"v_{i}"] = torch.zeros(1, a.num_kv_heads, a.head_dim, kv_len, dtype=dtype)
        # Layers with state (LFM2, Qwen3.5) keep it under their own names instead of a KV pair.
        for i, layer in enumerate(self.layers):
            if layer.state_names:
                del cache[f"k_{i}"], cache[f"v_{i}"]
                cache.update(zip(layer.state_names, layer.empty_state()))
        return cache

    @property
    def has_state(self) -> bool:
        """Whether some layer carries state beyond the KV cache (then a cache cannot be reused from an arbitrary
        prefix, and a verify call cannot be rolled back by overwriting slots)."""
        return any(layer.state_names for layer in self.layers)

    def forward(
        self,
        tokens: torch.Tensor,
        input_pos: torch.Tensor,
        kv_cache: KVCache,
        mask: torch.Tensor | None = None,
        attend: int | None = None,
        state_steps: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """`state_steps`, a dict, receives each state entry after every token of the call ([T, ...] under the
        entry's name): what a verify call needs to keep only the accepted tokens in the state."""
        x, new_cache = self.hidden_states(tokens, input_pos, kv_cache, mask, attend, state_steps)
        return self.finish_logits(self.lm_head(x, self.embed_tokens.weight)), new_cache

    def hidden_states(
        self,
        tokens: torch.Tensor,
        input_pos: torch.Tensor,
        kv_cache: KVCache,
        mask: torch.Tensor | None = None,
        attend: int | None = None,
        state_steps: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """The final-normed hidden states [1, T, D] the LM head reads, and the new cache."""
        x = self.embed_tokens(tokens)
        if self.embedding_scale is not None:
            x = x * torch.tensor(self.embedding_scale, dtype=x.dtype)
        if self.per_layer_embedding is not None or self.config.kv_shared_layers:
            return self._hidden_states_shared(x, tokens, input_pos, kv_cache, mask, attend)
        new_cache: KVCache = {}
        for i, layer in enumerate(self.layers):
            if layer.state_names:
                # Called as a module (not through forward_state) so hooks and the converter's op names see the block.
                state = tuple(kv_cache[n] for n in layer.state_names)
                x, state = layer(x, input_pos, None, None, mask, attend, state=state, state_steps=state_steps)
                new_cache.update(zip(layer.state_names, state))
                continue
            x, k, v = layer(x, input_pos, kv_cache[f"k_{i}"], kv_cache[f"v_{i}"], mask, attend)
            new_cache[f"k_{i}"], new_cache[f"v_{i}"] = k, v
        return self.final_norm(x), new_cache

    def _hidden_states_shared(self, x, tokens, input_pos, kv_cache, mask, attend) -> tuple[torch.Tensor, KVCache]:
        """`hidden_states` for models with per-layer inputs or KV sharing (Gemma 3n / 4): a KV-sharing layer reads
        the cache its source layer has just written, and writes none."""
        cfg = self.config
        per_layer = None if self.per_layer_embedding is None else self.per_layer_embedding(tokens, x)
        new_cache: KVCache = {}
        for i, layer in enumerate(self.layers):
            source = cfg.kv_source(i)
            cache = new_cache if source != i else kv_cache
            k, v = cache[f"k_{source}"], cache[f"v_{source}"]
            layer_input = None if per_layer is None else per_layer[:, :, i, :]
            x, k, v = layer(x, input_pos, k, v, mask, attend, layer_input)
            if source == i:
                new_cache[f"k_{i}"], new_cache[f"v_{i}"] = k, v
        return self.final_norm(x), new_cache

    def finish_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The LM head's output as the model's logits: divided by Granite's logits_scaling, then soft-capped
        (Gemma 2); each step only where the config asks for it."""
        cfg = self.config
        if cfg.logit_divisor != 1.0:
            logits = logits / cfg.logit_divisor
        cap = cfg.final_logit_softcap
        return logits if cap is None else torch.tanh(logits / cap) * cap
